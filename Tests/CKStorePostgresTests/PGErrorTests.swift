import CKStorePostgres
import Foundation
import Testing

@Suite("PostgreSQL errors (live)", requiresLiveServer)
struct PGErrorLiveTests {
    @Test func uniqueViolationCarriesSQLStateMessageAndStatement() throws {
        try withScratchSchema { conn, _ throws in
            try conn.execute("CREATE TABLE u (k BYTEA PRIMARY KEY)")
            let insert = "INSERT INTO u (k) VALUES ($1)"
            try conn.execute(insert, [.bytes([7, 0, 7])])
            let error = caught(PGError.self) { try conn.execute(insert, [.bytes([7, 0, 7])]) }
            #expect(error?.sqlState == "23505")
            #expect(error?.origin == .server)
            #expect(error?.isUniqueViolation == true)
            #expect(error?.isIntegrityConstraintViolation == true)
            #expect(error?.isConnectionFailure == false)
            #expect(error?.statement == insert)
            #expect(error?.message.isEmpty == false)
            #expect(error?.description.contains("[SQLSTATE 23505]") == true)
            // Outside a transaction the failed statement leaves the connection usable.
            #expect(try conn.execute("SELECT count(*) FROM u").int64(0, 0) == 1)
        }
    }

    @Test func syntaxErrorAndUndefinedTable() throws {
        let conn = try connect()
        let syntax = caught(PGError.self) { try conn.execute("SELEC 1") }
        #expect(syntax?.sqlState == "42601")
        #expect(syntax?.isSyntaxError == true)
        #expect(syntax?.statement == "SELEC 1")
        let missing = caught(PGError.self) { try conn.execute("SELECT * FROM no_such_table_ckstore") }
        #expect(missing?.isUndefinedTable == true)
        let script = caught(PGError.self) { try conn.executeScript("SELECT 1; SELEC 2;") }
        #expect(script?.isSyntaxError == true)
    }

    @Test func constraintViolationsOfTheSchemaAreClassified() throws {
        try withScratchSchema { conn, _ throws in
            try PGMigrator().migrate(conn)
            let check = caught(PGError.self) {
                try conn.execute("INSERT INTO chunks (hash, raw_size, stored_size) VALUES ($1, 1, 1)", [.bytes([1, 2, 3])])
            }
            #expect(check?.isCheckViolation == true)
            let foreignKey = caught(PGError.self) {
                try conn.execute("INSERT INTO snapshots (run_id, step, manifest_id, created_at) VALUES (12345, 0, 12345, 0)")
            }
            #expect(foreignKey?.isForeignKeyViolation == true)
            let notNull = caught(PGError.self) { try conn.execute("INSERT INTO runs (name, created_at) VALUES ($1, NULL)", [.text("r")]) }
            #expect(notNull?.isNotNullViolation == true)
        }
    }

    @Test func aWrongPasswordFailsClearlyWithoutLeakingIt() throws {
        let secret = "wrong-Pa55word-\(UInt32.random(in: 0...UInt32.max))"
        let live = try #require(liveURL)
        var components = try #require(URLComponents(string: live))
        components.password = secret
        let url = try #require(components.string)
        let error = caught(PGError.self) { _ = try PGConnection(url) }
        #expect(error?.isConnectionFailure == true)
        #expect(error?.origin == .connection)
        #expect(error?.sqlState == "08001")
        let text = "\(error.map(String.init(describing:)) ?? "") \(error?.statement ?? "")"
        #expect(!text.contains(secret), "the password leaked: \(text)")
        #expect(text.contains("127.0.0.1") || text.contains("localhost"))
        #expect(text.contains("password authentication failed"))
    }

    @Test func aDeadlockIsClassified() throws {
        try withScratchSchema { a, schema throws in
            try a.execute("CREATE TABLE d (id INTEGER PRIMARY KEY, v INTEGER)")
            try a.execute("INSERT INTO d VALUES (1, 0), (2, 0)")
            let b = try connect(schema: schema)
            try a.execute("BEGIN")
            try b.execute("BEGIN")
            try a.execute("UPDATE d SET v = 1 WHERE id = 1")
            try b.execute("UPDATE d SET v = 1 WHERE id = 2")
            // b waits for row 1 (held by a) in the background; a then waits for row 2: a deadlock.
            // After deadlock_timeout (1 s by default) one of the two is aborted with 40P01; the other proceeds.
            let box = ConnectionBox(b)
            let waiter = Thread {
                box.error = Result { try box.conn.execute("UPDATE d SET v = 2 WHERE id = 1") }.failure
                box.done.signal()
            }
            waiter.start()
            Thread.sleep(forTimeInterval: 0.2)
            let aError = Result { try a.execute("UPDATE d SET v = 2 WHERE id = 2") }.failure
            box.done.wait()
            let errors = [aError, box.error].compactMap { $0 as? PGError }
            #expect(errors.count == 1)
            #expect(errors.first?.isDeadlock == true)
            #expect(errors.first?.isRetryableTransactionFailure == true)
            _ = try? a.execute("ROLLBACK")
            _ = try? b.execute("ROLLBACK")
        }
    }
}

/// Hands a connection to one helper thread; the test thread touches it again only after `done`.
private final class ConnectionBox: @unchecked Sendable {
    let conn: PGConnection
    var error: Error?
    let done = DispatchSemaphore(value: 0)
    init(_ conn: PGConnection) { self.conn = conn }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

@Suite("PostgreSQL errors (no server needed)")
struct PGErrorOfflineTests {
    @Test func anUnreachableServerFailsClearlyWithoutLeakingThePassword() throws {
        // Port 1 on 127.0.0.1: nothing listens, the connection is refused at once.
        let secret = "s3cret-Value-\(UInt32.random(in: 0...UInt32.max))"
        for url in [
            "postgresql://ckstore:\(secret)@127.0.0.1:1/ckstore?connect_timeout=5",
            "host=127.0.0.1 port=1 user=ckstore password=\(secret) dbname=ckstore connect_timeout=5",
        ] {
            let error = caught(PGError.self) { _ = try PGConnection(url) }
            #expect(error?.isConnectionFailure == true)
            #expect(error?.sqlState == PGError.SQLState.unableToConnect)
            let text = "\(error.map(String.init(describing:)) ?? "") \(error?.statement ?? "")"
            #expect(!text.contains(secret), "the password leaked: \(text)")
            #expect(text.contains("ckstore@127.0.0.1:1/ckstore"), "\(text)")
        }
    }

    @Test func aMalformedConnectionStringIsAClientErrorWithoutThePassword() throws {
        let secret = "n0t-Printed-\(UInt32.random(in: 0...UInt32.max))"
        for conninfo in ["postgresql://u:\(secret)@127.0.0.1:1/db?bogus_option=1", "password=\(secret) nonsense_keyword=1"] {
            let error = caught(PGError.self) { _ = try PGConnection(conninfo) }
            #expect(error?.origin == .client)
            let text = error.map(String.init(describing:)) ?? ""
            #expect(text.contains("invalid connection string"))
            #expect(!text.contains(secret), "the password leaked: \(text)")
        }
    }

    @Test func classificationUsesSQLStateOnly() {
        func error(_ state: String?, origin: PGError.Origin = .server) -> PGError {
            PGError(origin: origin, sqlState: state, message: "unique_violation deadlock serialization (words that must not matter)")
        }
        #expect(error("23505").isUniqueViolation && error("23505").isIntegrityConstraintViolation)
        #expect(error("40001").isSerializationFailure && error("40001").isRetryableTransactionFailure)
        #expect(error("40P01").isDeadlock && error("40P01").isRetryableTransactionFailure)
        #expect(error("08006").isConnectionFailure && error("08P01").isConnectionFailure && error("57P01").isConnectionFailure)
        #expect(error(nil, origin: .connection).isConnectionFailure)
        #expect(error("28P01").isAuthenticationFailure)
        #expect(error("55P03").isLockNotAvailable && error("57014").isQueryCanceled && error("53100").isInsufficientResources)
        let none = error("XX000")
        #expect(!none.isUniqueViolation && !none.isDeadlock && !none.isSerializationFailure && !none.isConnectionFailure)
        #expect(!error(nil, origin: .client).isConnectionFailure)
        #expect(PGError(origin: .client, sqlState: nil, message: "a\nb\n").message == "a; b")
    }

    @Test func advisoryKeysAreStableAcrossProcesses() {
        // FNV-1a 64 of the UTF-8 bytes: pinned, since every host must derive the same key.
        #expect(PGConnection.advisoryKey("") == Int64(bitPattern: 0xcbf2_9ce4_8422_2325))
        #expect(PGConnection.advisoryKey("a") == Int64(bitPattern: 0xaf63_dc4c_8601_ec8c))
        #expect(PGConnection.advisoryKey("ckstore:a") != PGConnection.advisoryKey("ckstore:b"))
    }
}
