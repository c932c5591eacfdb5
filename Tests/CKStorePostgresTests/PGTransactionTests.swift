import CKStorePostgres
import Testing

/// An error thrown by a transaction body.
private struct BodyFailed: Error, Equatable {}

@Suite("PostgreSQL transactions (live)", requiresLiveServer)
struct PGTransactionTests {
    @Test func commitMakesRowsVisibleToOtherConnections() throws {
        try withScratchSchema { conn, schema throws in
            try conn.execute("CREATE TABLE t (x BIGINT)")
            let other = try connect(schema: schema)
            let value = try conn.inTransaction { () throws -> Int in
                try conn.execute("INSERT INTO t VALUES (1), (2)")
                #expect(conn.isInTransaction)
                #expect(try other.execute("SELECT count(*) FROM t").int64(0, 0) == 0)  // not yet committed
                return 42
            }
            #expect(value == 42)
            #expect(!conn.isInTransaction)
            #expect(try other.execute("SELECT count(*) FROM t").int64(0, 0) == 2)
        }
    }

    @Test func aThrowingBodyRollsBackAndItsErrorWins() throws {
        try withScratchSchema { conn, _ throws in
            try conn.execute("CREATE TABLE t (x BIGINT)")
            let error = caught(BodyFailed.self) {
                try conn.inTransaction {
                    try conn.execute("INSERT INTO t VALUES (1)")
                    throw BodyFailed()
                }
            }
            #expect(error == BodyFailed())
            #expect(!conn.isInTransaction)
            #expect(try conn.execute("SELECT count(*) FROM t").int64(0, 0) == 0)
        }
    }

    @Test func anSQLErrorInTheBodyRollsBackEarlierStatementsAndIsTheErrorReported() throws {
        try withScratchSchema { conn, _ throws in
            try conn.execute("CREATE TABLE t (x BIGINT PRIMARY KEY)")
            let error = caught(PGError.self) {
                try conn.inTransaction {
                    try conn.execute("INSERT INTO t VALUES (1)")
                    try conn.execute("INSERT INTO t VALUES (1)")  // 23505: the first error
                }
            }
            #expect(error?.isUniqueViolation == true)
            #expect(try conn.execute("SELECT count(*) FROM t").int64(0, 0) == 0)
        }
    }

    @Test func aBodyThatSwallowsAnSQLErrorDoesNotReportACommit() throws {
        try withScratchSchema { conn, _ throws in
            try conn.execute("CREATE TABLE t (x BIGINT PRIMARY KEY)")
            let error = caught(PGError.self) {
                try conn.inTransaction {
                    try conn.execute("INSERT INTO t VALUES (1)")
                    _ = try? conn.execute("INSERT INTO t VALUES (1)")  // caught: the transaction is aborted anyway
                }
            }
            #expect(error?.isInFailedTransaction == true)
            #expect(!conn.isInTransaction)
            #expect(try conn.execute("SELECT count(*) FROM t").int64(0, 0) == 0)
        }
    }

    @Test func transactionsDoNotNest() throws {
        let conn = try connect()
        let error = caught(PGError.self) {
            try conn.inTransaction { try conn.inTransaction {} }
        }
        #expect(error?.origin == .client)
        #expect(!conn.isInTransaction)
    }

    @Test func serializableConflictIsASerializationFailure() throws {
        try withScratchSchema { a, schema throws in
            try a.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, v INTEGER)")
            try a.execute("INSERT INTO s VALUES (1, 0)")
            let b = try connect(schema: schema)
            let error = caught(PGError.self) {
                try a.inTransaction(.serializable) {
                    _ = try a.execute("SELECT v FROM s WHERE id = 1")
                    // b commits a change to the row a read; a's own write must then fail.
                    try b.inTransaction(.serializable) { try b.execute("UPDATE s SET v = v + 1 WHERE id = 1") }
                    try a.execute("UPDATE s SET v = v + 10 WHERE id = 1")
                }
            }
            #expect(error?.isSerializationFailure == true)
            #expect(error?.isRetryableTransactionFailure == true)
            #expect(try a.execute("SELECT v FROM s WHERE id = 1").int64(0, 0) == 1)
        }
    }
}
