import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// The PostgreSQL implementation of the store's metadata: the tables of `Schema/postgres/`,
/// reached over one libpq connection (plus one per ingest worker, `makeChunkIndex`).
///
/// Same semantics as `SQLiteMetadataStore`, with these choices (docs/FORMAT.md, "PostgreSQL
/// metadata"):
/// - Every write transaction first takes the transaction-level advisory lock `writeKey`: writers
///   run one at a time, as they do on SQLite, so a commit sees every earlier commit and the
///   conflict / `.unchanged` / replace decisions are the same. Reads never take it.
/// - A write transaction that fails with a serialization failure, a deadlock or a unique
///   violation (another writer's rows, which the write lock makes rare) is retried from the
///   start, at most `maxAttempts` times.
/// - Reads that must agree with each other run in one `REPEATABLE READ READ ONLY` transaction
///   (`readView`); nested calls join it.
/// - Every error is a `CKStoreError` classified by SQLSTATE (`PGError+CKStoreError.swift`).
///
/// An instance belongs to one thread at a time.
public final class PostgresMetadataStore {
    /// The connection.
    let conn: PGConnection
    /// The libpq connection string (no password), for worker connections.
    let conninfo: String
    /// The schema holding the tables (`current_schema()`).
    public let schema: String
    /// The transaction-level advisory lock every write transaction takes first.
    let writeKey: Int64
    /// Where `commit` finds the gc epoch the store lock saw (nil: not checked).
    let fence: GCFence?
    /// How many times a write transaction is tried.
    static let maxAttempts = 5

    /// Connects to `location` and checks the schema.
    /// - Parameters:
    ///   - create: create the schema (`CREATE SCHEMA` when `location.schema` names one) and apply
    ///     missing migrations; without it a database without ckstore's tables is `.notFound`.
    ///   - fence: shared with the store lock (see `GCFence`).
    /// - Throws: `CKStoreError` (`.environment` for connection or permission failures,
    ///   `.notFound` when there is no store, `.environment` for a newer schema).
    public init(location: PostgresLocation, create: Bool, fence: GCFence? = nil, applicationName: String = "ckstore") throws(CKStoreError) {
        conninfo = location.conninfo
        self.fence = fence
        let what = "the PostgreSQL metadata at \(location.redacted)"
        do {
            conn = try PGConnection(location.conninfo, applicationName: applicationName)
        } catch {
            throw CKStoreError.wrapPostgres(error, context: "cannot open \(what)")
        }
        do {
            if let name = location.schema {
                if create { try conn.execute("CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier(name))") }
                try conn.execute("SELECT set_config('search_path', $1, false)", [.text(quoteIdentifier(name))])
            }
            let found = try conn.execute("SELECT current_schema()::text")
            guard let current = try found.optional(0, 0, found.string) else {
                throw CKStoreError(.notFound, "no store at \(location.redacted): schema '\(location.schema ?? "public")' does not exist")
            }
            schema = current
            writeKey = PGConnection.advisoryKey("ckstore:metadata-writes:\(current)")
            let migrator = PGMigrator()
            let version = try migrator.currentVersion(conn)
            if version == 0 && !create {
                throw CKStoreError(.notFound, "no store at \(location.redacted) (run 'ckstore init --store …' to create its tables)")
            }
            if version != migrator.latestVersion { try migrator.migrate(conn) }
        } catch let error as CKStoreError {
            throw error
        } catch {
            throw CKStoreError.wrapPostgres(error, context: "cannot open \(what)")
        }
    }

    /// A new connection to the same database and schema (for a worker thread).
    func newConnection(applicationName: String = "ckstore-worker") throws -> PGConnection {
        let worker = try PGConnection(conninfo, applicationName: applicationName)
        try worker.execute("SELECT set_config('search_path', $1, false)", [.text(quoteIdentifier(schema))])
        return worker
    }

    // MARK: - Transactions

    /// Runs `body` in a write transaction holding the write lock; retried from the start after a
    /// serialization failure, a deadlock or a unique violation. Nested calls join the open
    /// transaction.
    func write<T>(_ body: () throws -> T) throws -> T {
        if conn.isInTransaction { return try body() }
        var attempt = 1
        while true {
            do {
                return try transaction("BEGIN") {
                    try conn.execute("SELECT pg_advisory_xact_lock($1)", [.int64(writeKey)])
                    return try body()
                }
            } catch let error as PGError
                where attempt < Self.maxAttempts && (error.isRetryableTransactionFailure || error.isUniqueViolation)
            {
                attempt += 1
                var pause = timespec(tv_sec: 0, tv_nsec: Int.random(in: 1_000_000...(10_000_000 * attempt)))
                nanosleep(&pause, nil)
            }
        }
    }

    /// Runs `body` in one `REPEATABLE READ READ ONLY` transaction (every statement sees the same
    /// committed state); nested calls join the open transaction.
    public func readView<T>(_ body: () throws -> T) throws -> T {
        if conn.isInTransaction { return try body() }
        return try transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
    }

    /// BEGIN (as `begin` says), `body`, COMMIT; ROLLBACK when anything throws.
    private func transaction<T>(_ begin: String, _ body: () throws -> T) throws -> T {
        try conn.execute(begin)
        let value: T
        do {
            value = try body()
            try conn.execute("COMMIT")
        } catch {
            if conn.isConnected && conn.isInTransaction { _ = try? conn.execute("ROLLBACK") }
            throw error
        }
        return value
    }

    /// Runs `body` in a write transaction that is rolled back instead of committed when `body`
    /// returns `commit: false` (a dry run, a refusal decided after reading).
    func writeOrRollback<T>(_ body: () throws -> (commit: Bool, value: T)) throws -> T {
        do {
            return try write { () throws -> T in
                let (commit, value) = try body()
                if !commit { throw Rollback(value: value) }
                return value
            }
        } catch let rollback as Rollback {
            return rollback.value as! T
        }
    }

    /// Carries a value out of a transaction that is rolled back.
    private struct Rollback: Error, @unchecked Sendable { let value: Any }

    /// Closes nothing explicitly: the connection closes when the store is released.
    public func close() {}

    // MARK: - Chunks

    /// True when a chunk row exists.
    public func hasChunk(_ hash: SHA256Digest) throws -> Bool {
        try conn.execute("SELECT 1 FROM chunks WHERE hash = $1", [.bytes(hash.bytes)]).rowCount > 0
    }

    /// The stored size of a chunk, or nil.
    public func storedSize(ofChunk hash: SHA256Digest) throws -> Int? {
        let r = try conn.execute("SELECT stored_size FROM chunks WHERE hash = $1", [.bytes(hash.bytes)])
        return r.rowCount == 0 ? nil : try r.int(0, 0)
    }

    /// Every chunk row: hash and stored size, by hash.
    public func allChunks() throws -> [(SHA256Digest, Int)] {
        let r = try conn.execute("SELECT hash, stored_size FROM chunks ORDER BY hash")
        return try (0..<r.rowCount).map { (try digest(r, $0, 0), try r.int($0, 1)) }
    }

    /// Every chunk row with its raw size (fsck).
    public func allChunksWithRawSize() throws -> [(SHA256Digest, Int, Int)] {
        let r = try conn.execute("SELECT hash, raw_size, stored_size FROM chunks ORDER BY hash")
        return try (0..<r.rowCount).map { (try digest(r, $0, 0), try r.int($0, 1), try r.int($0, 2)) }
    }

    /// How many chunk rows exist.
    public func chunkCount() throws -> Int {
        try conn.execute("SELECT count(*) FROM chunks").int(0, 0)
    }

    /// A per-worker dedup lookup on its own connection.
    public func makeChunkIndex() throws -> PostgresChunkIndex {
        PostgresChunkIndex(conn: try newConnection())
    }

    // MARK: - Runs and snapshots

    /// The id of a run, or nil.
    func runID(_ name: String) throws -> Int64? {
        let r = try conn.execute("SELECT id FROM runs WHERE name = $1", [.text(name)])
        return r.rowCount == 0 ? nil : try r.int64(0, 0)
    }

    /// All runs, by name.
    public func runs() throws -> [RunSummary] {
        let r = try conn.execute(
            """
            SELECT r.name, count(s.id), min(s.step), max(s.step) FROM runs r
            LEFT JOIN snapshots s ON s.run_id = r.id GROUP BY r.id, r.name ORDER BY r.name COLLATE "C"
            """)
        return try (0..<r.rowCount).map { i in
            RunSummary(
                name: try r.string(i, 0), snapshotCount: try r.int(i, 1), firstStep: try r.optional(i, 2, r.int),
                lastStep: try r.optional(i, 3, r.int))
        }
    }

    /// The size of the file(s) a manifest row `m` reproduces: a safetensors file has its 8-byte
    /// length prefix and header; a tree's data_length is the total of its files.
    static let logicalBytesSQL = "CASE m.kind WHEN 'safetensors' THEN 8 + octet_length(m.header) + m.data_length ELSE m.data_length END"

    private static let snapshotColumns = """
        SELECT r.name, s.step, m.digest, s.created_at, \(logicalBytesSQL), m.tensor_count, m.kind,
          CASE m.kind WHEN 'tree' THEN (SELECT count(*) FROM tree_entries te WHERE te.tree_id = m.id) ELSE 1 END
        FROM snapshots s JOIN runs r ON r.id = s.run_id JOIN manifests m ON m.id = s.manifest_id
        """

    private func snapshotInfos(_ r: PGResult) throws -> [SnapshotInfo] {
        try (0..<r.rowCount).map { i in
            SnapshotInfo(
                run: try r.string(i, 0), step: try r.int(i, 1), digest: try digest(r, i, 2), createdAtMilliseconds: try r.int64(i, 3),
                logicalBytes: try r.int(i, 4), tensorCount: try r.int(i, 5),
                kind: ContentKind(rawValue: try r.string(i, 6)) ?? .safetensors,
                fileCount: try r.int(i, 7))
        }
    }

    /// The snapshots of a run, by step (nil when the run does not exist).
    public func snapshots(run: String) throws -> [SnapshotInfo]? {
        try readView {
            guard try runID(run) != nil else { return nil }
            return try snapshotInfos(conn.execute(Self.snapshotColumns + " WHERE r.name = $1 ORDER BY s.step", [.text(run)]))
        }
    }

    /// One snapshot, or nil.
    public func snapshot(run: String, step: Int) throws -> SnapshotInfo? {
        try snapshotInfos(conn.execute(Self.snapshotColumns + " WHERE r.name = $1 AND s.step = $2", [.text(run), .int(step)])).first
    }

    /// The newest (highest-step) snapshot of a run, or nil.
    public func latestSnapshot(run: String) throws -> SnapshotInfo? {
        try snapshotInfos(conn.execute(Self.snapshotColumns + " WHERE r.name = $1 ORDER BY s.step DESC LIMIT 1", [.text(run)])).first
    }
}

/// A dedup lookup for one ingest worker, on the worker's own connection (libpq connections are
/// not shared between threads).
public final class PostgresChunkIndex {
    let conn: PGConnection

    init(conn: PGConnection) { self.conn = conn }

    /// The stored size of a chunk, or nil when no row exists.
    public func storedSize(ofChunk hash: SHA256Digest) throws -> Int? {
        do {
            let r = try conn.execute("SELECT stored_size FROM chunks WHERE hash = $1", [.bytes(hash.bytes)])
            return r.rowCount == 0 ? nil : try r.int(0, 0)
        } catch {
            throw CKStoreError.wrapPostgres(error, context: "look up chunk \(hash.hex)")
        }
    }
}

// MARK: - Helpers

/// The SHA-256 digest in column `column` of row `row`.
func digest(_ r: PGResult, _ row: Int, _ column: Int) throws -> SHA256Digest {
    guard let d = SHA256Digest(bytes: try r.bytes(row, column)) else {
        throw CKStoreError(.integrity, "a digest column of the PostgreSQL metadata is not 32 bytes (\(r.statement.prefix(60))…)")
    }
    return d
}

/// `"name"` with embedded quotes doubled: an SQL identifier, whatever the name holds.
func quoteIdentifier(_ name: String) -> String {
    "\"" + name.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
}

/// Milliseconds since 1970.
func nowMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Parses a shape stored as a JSON array of integers ("[768,2304]").
func parseShape(_ text: String) -> [Int]? {
    guard text.first == "[", text.last == "]" else { return nil }
    let inner = text.dropFirst().dropLast()
    if inner.isEmpty { return [] }
    var dims: [Int] = []
    for part in inner.split(separator: ",", omittingEmptySubsequences: false) {
        guard let v = Int(part), v >= 0 else { return nil }
        dims.append(v)
    }
    return dims
}

/// Formats a shape as a JSON array of integers.
func formatShape(_ shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ",") + "]"
}
