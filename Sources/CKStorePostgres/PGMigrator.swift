/// One numbered schema migration: `Schema/postgres/NNN-name.sql`, compiled into the binary.
public struct PGMigration: Sendable, Equatable {
    /// The number (NNN), strictly increasing.
    public let id: Int
    /// The file name, e.g. `001-initial.sql`.
    public let name: String
    /// The SQL text (several statements).
    public let sql: String

    /// A migration.
    public init(id: Int, name: String, sql: String) {
        self.id = id
        self.name = name
        self.sql = sql
    }
}

/// Why a database's schema cannot be used by this binary.
public enum PGSchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The database was migrated by a newer ckstore (`found` > `known`).
    case newerSchema(found: Int, known: Int)
    /// Migration `id` is recorded under another name: the database has another schema history.
    case historyMismatch(id: Int, recorded: String, expected: String)

    /// One line naming the versions and the remedy.
    public var description: String {
        switch self {
        case .newerSchema(let found, let known):
            return "the database's schema version \(found) is newer than this ckstore understands (\(known)); upgrade ckstore"
        case .historyMismatch(let id, let recorded, let expected):
            return "schema migration \(id) is recorded as \(recorded), but this ckstore's migration \(id) is \(expected)"
        }
    }
}

/// Applies numbered migrations to a PostgreSQL database, each in its own transaction, recorded
/// in the table `schema_migrations` (id, name, applied_at in unix milliseconds) of the first
/// schema on the `search_path`.
///
/// Safe to run from several processes at once: each step holds a transaction-level advisory lock
/// and re-reads the version under it, so every migration is applied exactly once. A database
/// whose recorded version is newer than the newest migration known here is refused, as is one
/// whose history names a migration differently.
public struct PGMigrator: Sendable {
    /// The migrations, in increasing id order.
    public let migrations: [PGMigration]

    /// The lock key serializing migrations (transaction-scoped, so never left behind).
    public static let lockKey = PGConnection.advisoryKey("ckstore:schema-migrations")

    /// A migrator for `migrations` (default: the ckstore PostgreSQL schema compiled into the binary).
    public init(migrations: [PGMigration] = postgresSchemaMigrations) {
        self.migrations = migrations.sorted { $0.id < $1.id }
    }

    /// The version this migrator brings a database to.
    public var latestVersion: Int { migrations.last?.id ?? 0 }

    /// The database's version: the highest recorded migration, 0 when none is.
    public func currentVersion(_ conn: PGConnection) throws -> Int {
        guard try tableExists(conn) else { return 0 }
        return try conn.execute("SELECT coalesce(max(id), 0)::bigint FROM schema_migrations").int(0, 0)
    }

    /// Applies the migrations the database lacks, in order; returns the ids applied (empty
    /// when it was up to date).
    /// - Throws: `PGSchemaError` for a newer or different schema (nothing is changed), or the
    ///   `PGError` of a failing migration (that migration is rolled back; earlier ones stay).
    @discardableResult
    public func migrate(_ conn: PGConnection) throws -> [Int] {
        try conn.inTransaction {
            try lock(conn)
            try conn.executeScript(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    id          INTEGER PRIMARY KEY CHECK (id > 0),
                    name        TEXT    NOT NULL,
                    applied_at  BIGINT  NOT NULL
                )
                """)
            try verifyHistory(conn)
        }
        var applied: [Int] = []
        for migration in migrations {
            let done = try conn.inTransaction { () throws -> Bool in
                try lock(conn)
                // Re-read under the lock: another process may have applied it meanwhile.
                let current = try conn.execute("SELECT coalesce(max(id), 0)::bigint FROM schema_migrations").int(0, 0)
                if current > latestVersion { throw PGSchemaError.newerSchema(found: current, known: latestVersion) }
                guard current < migration.id else { return false }
                try conn.executeScript(migration.sql)
                try conn.execute(
                    "INSERT INTO schema_migrations (id, name, applied_at) VALUES ($1, $2, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
                    [.int(migration.id), .text(migration.name)])
                return true
            }
            if done { applied.append(migration.id) }
        }
        return applied
    }

    private func tableExists(_ conn: PGConnection) throws -> Bool {
        try conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").bool(0, 0)
    }

    private func lock(_ conn: PGConnection) throws {
        try conn.execute("SELECT pg_advisory_xact_lock($1)", [.int64(Self.lockKey)])
    }

    /// Refuses a newer schema or a different history.
    private func verifyHistory(_ conn: PGConnection) throws {
        let rows = try conn.execute("SELECT id::bigint, name FROM schema_migrations ORDER BY id")
        let known = Dictionary(uniqueKeysWithValues: migrations.map { ($0.id, $0.name) })
        var highest = 0
        for row in 0..<rows.rowCount {
            let id = try rows.int(row, 0)
            let name = try rows.string(row, 1)
            highest = max(highest, id)
            if id <= latestVersion, let expected = known[id], expected != name {
                throw PGSchemaError.historyMismatch(id: id, recorded: name, expected: expected)
            }
        }
        if highest > latestVersion { throw PGSchemaError.newerSchema(found: highest, known: latestVersion) }
    }
}
