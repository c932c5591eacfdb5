import CKStorePostgres
import Foundation
import Testing

@Suite("PostgreSQL connection and values (live)", requiresLiveServer)
struct PGConnectionTests {
    @Test func connectsAndReportsTheServerAndTarget() throws {
        let conn = try connect()
        #expect(conn.isConnected)
        #expect(conn.serverVersion >= 120000)
        #expect(!conn.isInTransaction)
        let result = try conn.execute("SELECT current_setting('client_encoding'), current_setting('application_name')")
        #expect(try result.string(0, 0) == "UTF8")
        #expect(try result.string(0, 1) == "ckstore-tests")
        #expect(conn.target.contains("@127.0.0.1:") || conn.target.contains("@localhost"))
        #expect(!conn.target.contains(ProcessInfo.processInfo.environment["PGPASSWORD"] ?? "\u{0}"))
    }

    @Test func bytesRoundTripExactlyIncludingNULs() throws {
        let conn = try connect()
        let cases: [[UInt8]] = [
            [], [0], [0, 0, 0], [0, 1, 0, 255, 0, 92, 120, 0], Array(0...255), (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7919) },
        ]
        for bytes in cases {
            let result = try conn.execute("SELECT $1::bytea, octet_length($1::bytea)::bigint", [.bytes(bytes)])
            #expect(try result.bytes(0, 0) == bytes)
            #expect(try result.int64(0, 1) == Int64(bytes.count))
        }
    }

    @Test func unicodeTextRoundTrips() throws {
        let conn = try connect()
        let texts = [
            "", "plain", "héllo wörld", "日本語のテキスト", "emoji 🧪🌍👩‍👩‍👧", "e\u{301} combining", "עברית RTL", "\u{10FFFF}\u{FFFD}",
            "quote ' and \\ backslash $1",
        ]
        for text in texts {
            let result = try conn.execute("SELECT $1::text, char_length($1::text)::bigint", [.text(text)])
            #expect(try result.string(0, 0) == text)
            #expect(try result.int64(0, 1) == Int64(text.unicodeScalars.count))
        }
    }

    @Test func textWithANULIsRefusedBeforeSending() throws {
        let conn = try connect()
        let error = caught(PGError.self) { try conn.execute("SELECT $1::text", [.text("a\u{0}b")]) }
        #expect(error?.origin == .client)
        #expect(error?.sqlState == nil)
        #expect(error?.message.contains("NUL") == true)
        #expect(try conn.execute("SELECT 1::bigint").int64(0, 0) == 1)  // still usable
    }

    @Test func int64ExtremesRoundTrip() throws {
        let conn = try connect()
        for value: Int64 in [.min, .min + 1, -1, 0, 1, Int64(Int32.max) + 1, .max - 1, .max] {
            let result = try conn.execute("SELECT $1::bigint, $1::bigint::text", [.int64(value)])
            #expect(try result.int64(0, 0) == value)
            #expect(try result.string(0, 1) == String(value))
        }
        // Narrower integer columns read as Int64 too.
        let narrow = try conn.execute("SELECT (-32768)::smallint, (-2147483648)::integer, 4294967295::oid")
        #expect(try narrow.int64(0, 0) == -32768)
        #expect(try narrow.int64(0, 1) == -2_147_483_648)
        #expect(try narrow.int64(0, 2) == 4_294_967_295)
        // Overflow on assignment to a narrower type is the server's error, not a silent wrap.
        let error = caught(PGError.self) { try conn.execute("SELECT $1::integer", [.int64(.max)]) }
        #expect(error?.sqlState == "22003")
    }

    @Test func doublesRoundTripBitExactlyIncludingNaNAndInfinities() throws {
        let conn = try connect()
        let values: [Double] = [
            0, -0.0, 1, -1, 0.1, .pi, .infinity, -.infinity, .greatestFiniteMagnitude, .leastNonzeroMagnitude, .leastNormalMagnitude, 1e308,
            -2.5e-300,
        ]
        for value in values {
            let back = try conn.execute("SELECT $1::float8", [.double(value)]).double(0, 0)
            #expect(back.bitPattern == value.bitPattern, "\(value)")
        }
        let nan = try conn.execute("SELECT $1::float8, $1::float8 = 'NaN'::float8", [.double(.nan)])
        #expect(try nan.double(0, 0).isNaN)
        #expect(try nan.bool(0, 1))  // PostgreSQL treats NaN as equal to itself
        let real = try conn.execute("SELECT 1.5::real").double(0, 0)
        #expect(real == 1.5)
    }

    @Test func nullsBooleansAndRowsInATable() throws {
        try withScratchSchema { conn, _ throws in
            try conn.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, label TEXT, payload BYTEA, score DOUBLE PRECISION, ok BOOLEAN)")
            let insert = try conn.execute(
                "INSERT INTO t VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)",
                [.int64(1), .text("one"), .bytes([0, 1]), .double(0.5), .bool(true), .int64(2), .null, .null, .null, .bool(false)])
            #expect(insert.affectedRows == 2)
            #expect(insert.commandTag == "INSERT 0 2")
            let rows = try conn.execute("SELECT id, label, payload, score, ok FROM t ORDER BY id")
            #expect(rows.rowCount == 2)
            #expect(rows.columnCount == 5)
            #expect(rows.columnIndex("score") == 3)
            #expect(try rows.columnName(1) == "label")
            #expect(try rows.string(0, 1) == "one")
            #expect(try rows.bytes(0, 2) == [0, 1])
            #expect(try rows.bool(0, 4))
            #expect(try rows.isNull(1, 1))
            #expect(try rows.optional(1, 1, rows.string) == nil)
            #expect(try rows.optional(0, 3, rows.double) == 0.5)
            #expect(try !rows.bool(1, 4))
            // Misreads throw, never trap.
            #expect(caught(PGError.self) { _ = try rows.string(1, 1) }?.origin == .client)  // NULL
            #expect(caught(PGError.self) { _ = try rows.int64(0, 1) }?.origin == .client)  // text as integer
            #expect(caught(PGError.self) { _ = try rows.int64(2, 0) }?.origin == .client)  // row out of range
            #expect(caught(PGError.self) { _ = try rows.int64(0, 5) }?.origin == .client)  // column out of range
            #expect(caught(PGError.self) { _ = try rows.int64(-1, 0) }?.origin == .client)
            let numeric = try conn.execute("SELECT sum(id) FROM t")  // numeric: must be cast
            #expect(caught(PGError.self) { _ = try numeric.int64(0, 0) }?.message.contains("cast") == true)
        }
    }

    @Test func scriptsRunSeveralStatements() throws {
        try withScratchSchema { conn, _ throws in
            try conn.executeScript("CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1); INSERT INTO a VALUES (2);")
            #expect(try conn.execute("SELECT count(*) FROM a").int64(0, 0) == 2)
        }
    }
}
