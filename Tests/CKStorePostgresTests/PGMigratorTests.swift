import CKStorePostgres
import Foundation
import Testing

@Suite("PostgreSQL schema migrations (live)", requiresLiveServer)
struct PGMigratorTests {
    @Test func migratingIsIdempotent() throws {
        try withScratchSchema { conn, _ throws in
            let migrator = PGMigrator()
            #expect(try migrator.currentVersion(conn) == 0)
            #expect(try migrator.migrate(conn) == postgresSchemaMigrations.map(\.id))
            #expect(try migrator.currentVersion(conn) == migrator.latestVersion)
            #expect(try migrator.migrate(conn) == [])
            #expect(try migrator.migrate(try connect(schema: try conn.execute("SELECT current_schema()").string(0, 0))) == [])
            let tables = try conn.execute(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1")
            let names = try (0..<tables.rowCount).map { try tables.string($0, 0) }
            #expect(
                names == [
                    "chunks", "derived", "manifest_objects", "manifests", "metrics", "pending", "pending_parts", "runs",
                    "schema_migrations", "snapshots",
                    "store_state",
                    "tensor_chunks", "tensors", "tree_entries",
                ])
            let recorded = try conn.execute("SELECT id::bigint, name, applied_at FROM schema_migrations ORDER BY id")
            #expect(try (0..<recorded.rowCount).map { try recorded.string($0, 1) } == postgresSchemaMigrations.map(\.name))
            #expect(try recorded.int64(0, 2) > 1_700_000_000_000)
        }
    }

    @Test func aNewerSchemaIsRefusedAndLeftUnchanged() throws {
        try withScratchSchema { conn, _ throws in
            let migrator = PGMigrator()
            try migrator.migrate(conn)
            try conn.execute("INSERT INTO schema_migrations (id, name, applied_at) VALUES (999, '999-future.sql', 0)")
            let error = caught(PGSchemaError.self) { try migrator.migrate(conn) }
            #expect(error == .newerSchema(found: 999, known: migrator.latestVersion))
            #expect(error?.description.contains("upgrade ckstore") == true)
            #expect(try migrator.currentVersion(conn) == 999)
        }
    }

    @Test func aDifferentHistoryIsRefused() throws {
        try withScratchSchema { conn, _ throws in
            try PGMigrator(migrations: [PGMigration(id: 1, name: "001-other.sql", sql: "CREATE TABLE other (x INTEGER)")]).migrate(conn)
            let error = caught(PGSchemaError.self) { try PGMigrator().migrate(conn) }
            #expect(error == .historyMismatch(id: 1, recorded: "001-other.sql", expected: postgresSchemaMigrations[0].name))
        }
    }

    @Test func eachMigrationIsItsOwnTransaction() throws {
        try withScratchSchema { conn, _ throws in
            let good = PGMigration(id: 1, name: "001-a.sql", sql: "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);")
            let bad = PGMigration(id: 2, name: "002-b.sql", sql: "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);")
            let error = caught(PGError.self) { try PGMigrator(migrations: [good, bad]).migrate(conn) }
            #expect(error?.isUndefinedTable == true)
            #expect(try PGMigrator(migrations: [good, bad]).currentVersion(conn) == 1)
            #expect(try conn.execute("SELECT to_regclass('a') IS NOT NULL, to_regclass('b') IS NULL").bool(0, 0))
            #expect(try conn.execute("SELECT to_regclass('b') IS NULL").bool(0, 0))
            let fixed = PGMigration(id: 2, name: "002-b.sql", sql: "CREATE TABLE b (x INTEGER);")
            #expect(try PGMigrator(migrations: [good, fixed]).migrate(conn) == [2])
        }
    }

    @Test func concurrentMigratorsApplyEachMigrationOnce() throws {
        try withScratchSchema { conn, schema throws in
            let results = ResultsBox()
            let threads = (0..<4).map { _ in
                Thread {
                    let outcome = Result { () throws -> [Int] in try PGMigrator().migrate(try connect(schema: schema)) }
                    results.append(outcome)
                }
            }
            threads.forEach { $0.start() }
            results.wait(for: threads.count)
            let applied = results.values.compactMap { try? $0.get() }
            #expect(applied.count == threads.count, "\(results.values)")
            #expect(applied.flatMap { $0 }.sorted() == postgresSchemaMigrations.map(\.id))
            #expect(try PGMigrator().currentVersion(conn) == PGMigrator().latestVersion)
        }
    }
}

/// Results gathered from helper threads.
private final class ResultsBox: @unchecked Sendable {
    private let lock = NSCondition()
    private(set) var values: [Result<[Int], any Error>] = []
    func append(_ value: Result<[Int], any Error>) {
        lock.lock()
        values.append(value)
        lock.broadcast()
        lock.unlock()
    }
    func wait(for count: Int) {
        lock.lock()
        while values.count < count { lock.wait() }
        lock.unlock()
    }
}

@Suite("PostgreSQL schema files (no server needed)")
struct PGSchemaFileTests {
    /// The repository root, from this file's path (Tests/CKStorePostgresTests/…).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func compiledMigrationsMatchSchemaPostgresFiles() throws {
        let dir = Self.root.appendingPathComponent("Schema/postgres")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.wholeMatch(of: /\d{3}-.*\.sql/) != nil }.sorted()
        try #require(!files.isEmpty)
        #expect(postgresSchemaMigrations.map(\.name) == files, "run Tools/gen-schema-postgres.sh")
        #expect(postgresSchemaMigrations.map(\.id) == files.map { Int($0.prefix(3))! })
        #expect(postgresSchemaMigrations.map(\.id) == Array(1...files.count), "migration numbers must be 1, 2, 3, … without gaps")
        for (migration, name) in zip(postgresSchemaMigrations, files) {
            let text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                String(line.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
            }
            if lines.last == "" { lines.removeLast() }
            #expect(migration.sql == lines.joined(separator: "\n"), "\(name): compiled SQL differs; run Tools/gen-schema-postgres.sh")
        }
    }
}
