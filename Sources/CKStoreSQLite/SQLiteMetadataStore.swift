import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// The SQLite implementation of `MetadataStore`: one database file in WAL mode.
///
/// The schema lives in `Schema/NNN-*.sql`, compiled into the binary (`SchemaMigrations.swift`)
/// and applied in order, each migration in its own transaction and recorded in
/// `schema_migrations` and `PRAGMA user_version`. A database whose version is newer than this
/// binary knows is refused.
package final class SQLiteMetadataStore: MetadataStore, ChunkIndex {
    let db: Connection
    /// The database file's path (worker connections open it again, read-only).
    let path: String

    /// The schema version this binary creates and understands.
    package static var schemaVersion: Int { schemaMigrations.map(\.id).max() ?? 0 }

    /// Opens (creating and migrating when `create`) the database at `path`.
    /// - Parameters:
    ///   - readOnly: open for reading only (worker threads' dedup lookups, readers without
    ///     write access).
    ///   - immutable: open with SQLite's `immutable` flag (no locks, no WAL): only for a
    ///     database that nobody can be writing and whose WAL is empty.
    ///   - onMissingSchema: called before anything is written when the database has no schema
    ///     at all (a new or emptied file); it may throw to refuse creating one.
    /// - Throws: `.integrity` when the file is not a database or its schema version is damaged;
    ///   `.environment` when its schema is newer than this binary.
    package init(
        path: String, create: Bool, readOnly: Bool = false, immutable: Bool = false,
        onMissingSchema: (() throws(CKStoreError) -> Void)? = nil
    ) throws {
        self.path = path
        do {
            let mode: Connection.Mode =
                immutable ? .readOnlyImmutable : readOnly ? .readOnly : create ? .readWriteCreate : .readWrite
            db = try Connection(path: path, mode: mode)
        } catch {
            throw CKStoreError.wrap(error, context: "cannot open the metadata database \(path)")
        }
        do {
            try checkSchema(path: path, onMissingSchema: onMissingSchema)
            if !readOnly {
                try db.execute("PRAGMA journal_mode = WAL")
                try db.execute("PRAGMA synchronous = FULL")
            }
            try migrate(path: path, readOnly: readOnly)
        } catch {
            throw CKStoreError.wrap(error, context: "cannot open the metadata database \(path)")
        }
    }

    /// Reads the schema version before anything is written: a negative version, or tables
    /// without a version, is damage; no schema at all is reported to `onMissingSchema`.
    private func checkSchema(path: String, onMissingSchema: (() throws(CKStoreError) -> Void)?) throws {
        let version = try db.statement("PRAGMA user_version").firstRow { $0.int(0) } ?? 0
        if version < 0 {
            throw CKStoreError(.integrity, "the metadata database \(path) has a damaged schema version (\(version))")
        }
        guard version == 0 else { return }
        let tables = try db.statement("SELECT count(*) FROM sqlite_master WHERE type = 'table'").firstRow { $0.int(0) } ?? 0
        if tables > 0 {
            throw CKStoreError(
                .integrity, "the metadata database \(path) has tables but no schema version (not a ckstore database, or damaged)")
        }
        try onMissingSchema?()
    }

    /// Applies the migrations the database lacks, in order.
    private func migrate(path: String, readOnly: Bool) throws {
        let version = try db.statement("PRAGMA user_version").firstRow { $0.int(0) } ?? 0
        if version > Self.schemaVersion {
            throw CKStoreError(
                .environment,
                "the metadata database \(path) has schema version \(version), newer than this ckstore understands (\(Self.schemaVersion)); upgrade ckstore"
            )
        }
        guard version < Self.schemaVersion else { return }
        if readOnly {
            throw CKStoreError(
                .environment,
                "the metadata database \(path) has schema version \(version) and needs migration; open the store once with write access")
        }
        for migration in schemaMigrations where migration.id > version {
            try db.inTransaction {
                // Re-check under the write lock: another process may have migrated meanwhile.
                let current = try db.statement("PRAGMA user_version").firstRow { $0.int(0) } ?? 0
                guard current < migration.id else { return (.rollback, ()) }
                try db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
                )
                try db.execute(migration.sql)
                try db.statement("INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, ?)")
                    .run([.int(migration.id), .text(migration.name), .integer(nowMilliseconds())])
                try db.execute("PRAGMA user_version = \(migration.id)")
                return (.commit, ())
            }
        }
    }

    /// Closes the connection, reporting leaked statements.
    package func close() throws {
        try db.close()
    }

    // MARK: - Chunks

    package func hasChunk(_ hash: SHA256Digest) throws -> Bool {
        try db.statement("SELECT 1 FROM chunks WHERE hash = ?").firstRow([.blob(hash.bytes)]) { _ in true } ?? false
    }

    package func storedSize(ofChunk hash: SHA256Digest) throws -> Int? {
        try db.statement("SELECT stored_size FROM chunks WHERE hash = ?").firstRow([.blob(hash.bytes)]) { $0.int(0) }
    }

    // MARK: - Runs and snapshots

    package func runID(_ name: String) throws -> Int? {
        try db.statement("SELECT id FROM runs WHERE name = ?").firstRow([.text(name)]) { $0.int(0) }
    }

    package func runs() throws -> [RunSummary] {
        try db.statement(
            """
            SELECT r.name, count(s.id), min(s.step), max(s.step) FROM runs r
            LEFT JOIN snapshots s ON s.run_id = r.id GROUP BY r.id ORDER BY r.name
            """
        ).rows { row in
            RunSummary(name: row.text(0), snapshotCount: row.int(1), firstStep: row.optionalInt(2), lastStep: row.optionalInt(3))
        }
    }

    /// The size of the file(s) a manifest row reproduces (`m` is the manifests row): a
    /// safetensors file has its 8-byte length prefix and header; a tree's data_length is the
    /// total of its files.
    static let logicalBytesSQL = "CASE m.kind WHEN 'safetensors' THEN 8 + length(m.header) + m.data_length ELSE m.data_length END"

    private static let snapshotColumns = """
        SELECT r.name, s.step, m.digest, s.created_at, \(logicalBytesSQL), m.tensor_count, m.kind,
          CASE m.kind WHEN 'tree' THEN (SELECT count(*) FROM tree_entries te WHERE te.tree_id = m.id) ELSE 1 END
        FROM snapshots s JOIN runs r ON r.id = s.run_id JOIN manifests m ON m.id = s.manifest_id
        """

    private static func snapshotInfo(_ row: Row) -> SnapshotInfo {
        SnapshotInfo(
            run: row.text(0), step: row.int(1), digest: SHA256Digest(bytes: row.blob(2))!,
            createdAtMilliseconds: Int64(row.int(3)), logicalBytes: row.int(4), tensorCount: row.int(5),
            kind: ContentKind(rawValue: row.text(6)) ?? .safetensors, fileCount: row.int(7))
    }

    package func snapshots(run: String) throws -> [SnapshotInfo]? {
        guard try runID(run) != nil else { return nil }
        return try db.statement(Self.snapshotColumns + " WHERE r.name = ? ORDER BY s.step").rows([.text(run)], Self.snapshotInfo)
    }

    package func snapshot(run: String, step: Int) throws -> SnapshotInfo? {
        try db.statement(Self.snapshotColumns + " WHERE r.name = ? AND s.step = ?").firstRow([.text(run), .int(step)], Self.snapshotInfo)
    }

    package func allSnapshots() throws -> [SnapshotInfo] {
        try db.statement(Self.snapshotColumns + " ORDER BY r.name, s.step").rows([], Self.snapshotInfo)
    }

    package func latestSnapshot(run: String) throws -> SnapshotInfo? {
        try db.statement(Self.snapshotColumns + " WHERE r.name = ? ORDER BY s.step DESC LIMIT 1").firstRow([.text(run)], Self.snapshotInfo)
    }

    // MARK: - Manifests

    package func manifestDigests(prefix: String, limit: Int) throws -> [SHA256Digest] {
        let lower = prefix.lowercased().padding(toLength: 64, withPad: "0", startingAt: 0)
        let upper = prefix.lowercased().padding(toLength: 64, withPad: "f", startingAt: 0)
        guard let lo = SHA256Digest(hex: lower), let hi = SHA256Digest(hex: upper) else { return [] }
        return try db.statement("SELECT digest FROM manifests WHERE digest BETWEEN ? AND ? ORDER BY digest LIMIT ?")
            .rows([.blob(lo.bytes), .blob(hi.bytes), .int(limit)]) { SHA256Digest(bytes: $0.blob(0))! }
    }

    package func manifestID(_ digest: SHA256Digest) throws -> Int? {
        try db.statement("SELECT id FROM manifests WHERE digest = ?").firstRow([.blob(digest.bytes)]) { $0.int(0) }
    }

    package func manifest(_ digest: SHA256Digest) throws -> Manifest? {
        try manifestRows(digest, kind: .safetensors)
    }

    /// The rows of a content object of `kind` as a `Manifest` (a bytes file's pseudo tensor is
    /// its one tensor), or nil when there is no object of that kind with this digest.
    func manifestRows(_ digest: SHA256Digest, kind: ContentKind) throws -> Manifest? {
        try db.readTransaction { () throws -> Manifest? in
            guard
                let (id, header, dataLength) = try db.statement(
                    "SELECT id, header, data_length FROM manifests WHERE digest = ? AND kind = ?"
                )
                .firstRow([.blob(digest.bytes), .text(kind.rawValue)], { ($0.int(0), $0.blob(1), $0.int(2)) })
            else { return nil }
            var chunksByTensor: [Int: [ChunkRef]] = [:]
            try db.statement(
                """
                SELECT tc.position, c.hash, c.raw_size, c.stored_size FROM tensor_chunks tc
                JOIN chunks c ON c.id = tc.chunk_id WHERE tc.manifest_id = ? ORDER BY tc.position, tc.chunk_index
                """
            ).forEachRow([.int(id)]) { row in
                chunksByTensor[row.int(0), default: []].append(
                    ChunkRef(hash: SHA256Digest(bytes: row.blob(1))!, rawSize: row.int(2), storedSize: row.int(3)))
            }
            let tensors = try db.statement(
                "SELECT position, name, dtype, shape, data_start, byte_length, chunk_count FROM tensors WHERE manifest_id = ? ORDER BY position"
            ).rows([.int(id)]) { row -> TensorEntry in
                let name = row.text(1)
                guard let dtype = DType(rawValue: row.text(2)), let shape = parseShape(row.text(3)) else {
                    throw CKStoreError(.integrity, "snapshot sha256:\(digest.hex): tensor '\(name)' has a damaged dtype or shape row")
                }
                let chunks = chunksByTensor[row.int(0)] ?? []
                // Overflow-checked: damaged rows may hold any integer.
                var total = 0
                var sane = chunks.count == row.int(6) && row.int(4) >= 0 && row.int(5) >= 0
                for chunk in chunks where sane {
                    let (sum, overflow) = total.addingReportingOverflow(chunk.rawSize)
                    sane = !overflow && chunk.rawSize >= 0
                    total = sum
                }
                let (end, overflow) = row.int(4).addingReportingOverflow(row.int(5))
                guard sane, !overflow, total == row.int(5) else {
                    throw CKStoreError(.integrity, "snapshot sha256:\(digest.hex): tensor '\(name)' has damaged chunk rows")
                }
                return TensorEntry(
                    info: TensorInfo(name: name, dtype: dtype, shape: shape, dataStart: row.int(4), dataEnd: end),
                    chunks: chunks)
            }
            let manifest = Manifest(headerBytes: header, dataLength: dataLength, tensors: tensors, recordedDigest: digest)
            if let problem = manifest.layoutProblem() { throw CKStoreError(.integrity, "snapshot sha256:\(digest.hex): \(problem)") }
            return manifest
        }
    }

    // MARK: - Metrics

    package func metrics(run: String) throws -> [MetricRecord] {
        try db.statement(
            """
            SELECT r.name, m.step, m.variant, m.name, m.value FROM metrics m JOIN runs r ON r.id = m.run_id
            WHERE r.name = ? ORDER BY m.step, m.variant, m.name
            """
        ).rows([.text(run)]) { row in
            MetricRecord(run: row.text(0), step: row.int(1), variant: row.text(2), name: row.text(3), value: row.double(4))
        }
    }

    package func recordMetrics(run: String, step: Int, variant: String, values: [(String, Double)]) throws {
        try db.inTransaction {
            guard let runID = try runID(run) else { throw CKStoreError(.notFound, "run '\(run)' does not exist") }
            try insertMetrics(runID: runID, step: step, variant: variant, values: values)
            return (.commit, ())
        }
    }

    package func insertMetrics(runID: Int, step: Int, variant: String, values: [(String, Double)]) throws {
        let insert = try db.statement(
            "INSERT OR REPLACE INTO metrics (run_id, step, variant, name, value, recorded_at) VALUES (?, ?, ?, ?, ?, ?)")
        let now = nowMilliseconds()
        for (name, value) in values {
            try insert.run([.int(runID), .int(step), .text(variant), .text(name), .real(value), .integer(now)])
        }
    }

    // MARK: - Statistics

    package func statistics() throws -> StoreStatistics {
        try db.readTransaction {
            var stats = StoreStatistics()
            stats.runs = try db.statement("SELECT count(*) FROM runs").firstRow { $0.int(0) } ?? 0
            try db.statement(
                "SELECT count(*), coalesce(sum(\(Self.logicalBytesSQL)), 0) FROM snapshots s JOIN manifests m ON m.id = s.manifest_id"
            ).firstRow { row in
                stats.snapshots = row.int(0)
                stats.logicalBytes = row.int(1)
            }
            try db.statement(
                """
                SELECT count(*), coalesce(sum(raw_size), 0), coalesce(sum(stored_size), 0) FROM chunks WHERE id IN (
                  SELECT tc.chunk_id FROM tensor_chunks tc JOIN manifest_objects o ON o.object_id = tc.manifest_id
                  JOIN snapshots s ON s.manifest_id = o.root_id)
                """
            ).firstRow { row in
                stats.blobCount = row.int(0)
                stats.uniqueRawBytes = row.int(1)
                stats.storedBytes = row.int(2)
            }
            try db.statement(
                """
                SELECT count(*), coalesce(sum(stored_size), 0) FROM chunks WHERE id IN (
                  SELECT tc.chunk_id FROM tensor_chunks tc JOIN derived d ON d.manifest_id = tc.manifest_id)
                AND id NOT IN (SELECT tc.chunk_id FROM tensor_chunks tc JOIN manifest_objects o ON o.object_id = tc.manifest_id
                  JOIN snapshots s ON s.manifest_id = o.root_id)
                """
            ).firstRow { row in
                stats.derivedBlobs = row.int(0)
                stats.derivedBytes = row.int(1)
            }
            try db.statement(
                """
                SELECT count(*), coalesce(sum(f.data_length), 0) FROM snapshots s JOIN tree_entries te ON te.tree_id = s.manifest_id
                JOIN manifests f ON f.id = te.file_id WHERE f.kind = 'bytes'
                """
            ).firstRow { row in
                stats.sideFiles = row.int(0)
                stats.sideFileBytes = row.int(1)
            }
            stats.sideFileUniqueBytes =
                try db.statement(
                    """
                    SELECT coalesce(sum(data_length), 0) FROM manifests WHERE kind = 'bytes' AND id IN (
                      SELECT te.file_id FROM snapshots s JOIN tree_entries te ON te.tree_id = s.manifest_id)
                    """
                ).firstRow { $0.int(0) } ?? 0
            return stats
        }
    }
}

extension SQLiteMetadataStore {
    package func storedBytesByStep(run: String) throws -> [Int: Int] {
        var result: [Int: Int] = [:]
        try db.statement(
            """
            SELECT s.step, (SELECT coalesce(sum(c.stored_size), 0) FROM chunks c WHERE c.id IN
              (SELECT tc.chunk_id FROM tensor_chunks tc JOIN manifest_objects o ON o.object_id = tc.manifest_id
               WHERE o.root_id = s.manifest_id))
            FROM snapshots s JOIN runs r ON r.id = s.run_id WHERE r.name = ?
            """
        ).forEachRow([.text(run)]) { result[$0.int(0)] = $0.int(1) }
        return result
    }

    package func referencedChunkHashes() throws -> Set<SHA256Digest> {
        var set = Set<SHA256Digest>()
        try db.statement(
            """
            SELECT DISTINCT c.hash FROM chunks c JOIN tensor_chunks tc ON tc.chunk_id = c.id
            WHERE tc.manifest_id IN (SELECT o.object_id FROM manifest_objects o
              WHERE o.root_id IN (SELECT manifest_id FROM snapshots UNION SELECT manifest_id FROM derived
                UNION SELECT file_id FROM pending_parts))
            """
        ).forEachRow { set.insert(SHA256Digest(bytes: $0.blob(0))!) }
        return set
    }
}
