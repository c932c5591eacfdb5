import CKStore

/// What a collection's transaction changed, for the store to decide about the blobs.
public struct PostgresCollectedRows: Sendable {
    /// RUN@STEP of the snapshot rows deleted.
    package var removedSnapshots: [SnapshotKey] = []
    /// Recipes of the derived rows deleted.
    public var removedDerived: [String] = []
    /// Metric rows dropped with the snapshots.
    public var droppedMetrics = 0
    /// Chunks whose rows this transaction deleted.
    public var released: Set<SHA256Digest> = []
    /// Chunks whose rows remain.
    public var live: Set<SHA256Digest> = []
    /// Snapshot rows that remain.
    public var snapshotCount = 0
}

/// gc, rm and fsck: their queries, as `Store+Collect.swift`, `Store+Repair.swift` and
/// `Store+Check.swift` issue them on SQLite.
extension PostgresMetadataStore {
    /// In one write transaction that first increments the gc epoch: deletes the snapshot rows
    /// `removing()` returns (called inside the transaction; dropping their metrics when `dropsMetrics`), every derived row when
    /// `dropDerived`, the manifests no longer named and the chunk rows no longer used. `decide`
    /// sees the result and returns whether to commit (false: roll back, for a dry run or a
    /// refusal); it may throw (rolled back).
    public func collect(
        removing: () throws -> [(run: String, step: Int)], dropsMetrics: Bool, dropDerived: Bool,
        decide: (PostgresCollectedRows) throws -> Bool
    ) throws -> PostgresCollectedRows {
        try writeOrRollback { () throws -> (commit: Bool, value: PostgresCollectedRows) in
            try bumpGCEpoch()
            var rows = PostgresCollectedRows()
            for (run, step) in try removing() {
                if dropsMetrics, let runID = try runID(run) {
                    rows.droppedMetrics += try dropMetrics(measuredOn: runID, step: step, includingStep: true)
                }
                let deleted = try conn.execute(
                    "DELETE FROM snapshots WHERE step = $1 AND run_id = (SELECT id FROM runs WHERE name = $2)", [.int(step), .text(run)])
                if (deleted.affectedRows ?? 0) > 0 { rows.removedSnapshots.append(SnapshotKey(run: run, step: step)) }
            }
            if dropDerived {
                let r = try conn.execute("DELETE FROM derived RETURNING id, recipe")
                rows.removedDerived = try (0..<r.rowCount).map { (try r.int($0, 0), try r.string($0, 1)) }.sorted { $0.0 < $1.0 }.map(\.1)
            }
            // Trees first: a file's row cannot go while an entry of a tree still names it, and
            // PostgreSQL checks that before the cascade from a tree deleted in the same statement.
            try conn.execute("DELETE FROM manifests m WHERE m.kind = 'tree' AND \(Self.unnamedManifest)")
            try conn.execute("DELETE FROM manifests m WHERE \(Self.unnamedManifest)")
            let released = try conn.execute(
                "DELETE FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM tensor_chunks tc WHERE tc.chunk_id = c.id) RETURNING hash")
            rows.released = Set(try (0..<released.rowCount).map { try digest(released, $0, 0) })
            let live = try conn.execute("SELECT hash FROM chunks")
            rows.live = Set(try (0..<live.rowCount).map { try digest(live, $0, 0) })
            rows.snapshotCount = try conn.execute("SELECT count(*) FROM snapshots").int(0, 0)
            return (try decide(rows), rows)
        }
    }

    /// The condition on a manifests row `m` that nothing names it: no snapshot, no derived row,
    /// and no tree that a snapshot or derived row names (a tree's files live while the tree does).
    static let unnamedManifest = """
        NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.manifest_id = m.id)
          AND NOT EXISTS (SELECT 1 FROM derived d WHERE d.manifest_id = m.id)
          AND NOT EXISTS (SELECT 1 FROM tree_entries te WHERE te.file_id = m.id
            AND te.tree_id IN (SELECT manifest_id FROM snapshots UNION SELECT manifest_id FROM derived))
          AND NOT EXISTS (SELECT 1 FROM pending_parts pp WHERE pp.file_id = m.id)
        """

    /// `fsck --repair`'s row changes, in one write transaction that first increments the gc
    /// epoch: drops the derived rows naming `derivedDigests` (and those manifests when nothing
    /// else names them), and the chunk rows of `chunkHashes` that no tensor uses. Returns the
    /// chunk rows it dropped.
    public func repairRows(derivedDigests: [SHA256Digest], chunkHashes: [SHA256Digest]) throws -> [SHA256Digest] {
        try write { () throws -> [SHA256Digest] in
            try bumpGCEpoch()
            for d in derivedDigests {
                try conn.execute("DELETE FROM derived WHERE manifest_id = (SELECT id FROM manifests WHERE digest = $1)", [.bytes(d.bytes)])
                try conn.execute("DELETE FROM manifests m WHERE digest = $1 AND \(Self.unnamedManifest)", [.bytes(d.bytes)])
            }
            var dropped: [SHA256Digest] = []
            for hash in chunkHashes {
                let r = try conn.execute(
                    "DELETE FROM chunks c WHERE hash = $1 AND NOT EXISTS (SELECT 1 FROM tensor_chunks tc WHERE tc.chunk_id = c.id)",
                    [.bytes(hash.bytes)])
                if (r.affectedRows ?? 0) > 0 { dropped.append(hash) }
            }
            return dropped
        }
    }

    // MARK: - fsck queries (run inside `readView`)

    /// Every manifest digest, in insertion order.
    public func manifestDigestsInOrder() throws -> [SHA256Digest] {
        let r = try conn.execute("SELECT digest FROM manifests ORDER BY id")
        return try (0..<r.rowCount).map { try digest(r, $0, 0) }
    }

    /// RUN@STEP of a snapshot naming each manifest (one of them).
    public func snapshotNamesByDigest() throws -> [SHA256Digest: String] {
        let r = try conn.execute(
            "SELECT m.digest, r.name, s.step FROM snapshots s JOIN runs r ON r.id = s.run_id JOIN manifests m ON m.id = s.manifest_id")
        var names: [SHA256Digest: String] = [:]
        for i in 0..<r.rowCount { names[try digest(r, i, 0)] = "\(try r.string(i, 1))@\(try r.int(i, 2))" }
        return names
    }

    /// Tensor rows whose offsets or chunk sizes are out of any valid range: (manifest, tensor,
    /// data_start, byte_length), by manifest and position.
    public func outOfRangeTensors(maxOffset: Int, maxRawSize: Int) throws -> [(SHA256Digest, String, Int, Int)] {
        let r = try conn.execute(
            """
            SELECT m.digest, t.name, t.data_start, t.byte_length FROM tensors t JOIN manifests m ON m.id = t.manifest_id
            WHERE t.data_start < 0 OR t.byte_length < 0 OR t.data_start > $1 OR t.byte_length > $1
               OR EXISTS (SELECT 1 FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id
                          WHERE tc.manifest_id = t.manifest_id AND tc.position = t.position AND c.raw_size > $2)
            ORDER BY m.id, t.position
            """, [.int(maxOffset), .int(maxRawSize)])
        return try (0..<r.rowCount).map { (try digest(r, $0, 0), try r.string($0, 1), try r.int($0, 2), try r.int($0, 3)) }
    }

    /// For each chunk, one user: "RUN@STEP tensor 'NAME'" (or the manifest digest).
    public func chunkUsers() throws -> [SHA256Digest: String] {
        let r = try conn.execute(
            """
            SELECT c.hash, coalesce(r.name || '@' || s.step::text, 'sha256:' || encode(m.digest, 'hex')), t.name
            FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id JOIN manifests m ON m.id = tc.manifest_id
            JOIN tensors t ON t.manifest_id = tc.manifest_id AND t.position = tc.position
            LEFT JOIN snapshots s ON s.manifest_id = m.id LEFT JOIN runs r ON r.id = s.run_id
            """)
        var users: [SHA256Digest: String] = [:]
        for i in 0..<r.rowCount {
            let id = try digest(r, i, 0)
            if users[id] == nil { users[id] = "\(try r.string(i, 1)) tensor '\(try r.string(i, 2))'" }
        }
        return users
    }

    /// Every manifest: id and digest.
    public func manifestIDs() throws -> [Int: SHA256Digest] {
        let r = try conn.execute("SELECT id, digest FROM manifests")
        var ids: [Int: SHA256Digest] = [:]
        for i in 0..<r.rowCount { ids[try r.int(i, 0)] = try digest(r, i, 1) }
        return ids
    }

    /// Every (manifest id, chunk hash) pair, distinct.
    public func manifestChunkPairs() throws -> [(Int, SHA256Digest)] {
        let r = try conn.execute("SELECT DISTINCT tc.manifest_id, c.hash FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id")
        return try (0..<r.rowCount).map { (try r.int($0, 0), try digest(r, $0, 1)) }
    }

    /// Every snapshot: manifest id, run, step, by run and step.
    public func snapshotsByManifest() throws -> [(Int, String, Int)] {
        let r = try conn.execute(
            "SELECT s.manifest_id, r.name, s.step FROM snapshots s JOIN runs r ON r.id = s.run_id ORDER BY r.name COLLATE \"C\", s.step")
        return try (0..<r.rowCount).map { (try r.int($0, 0), try r.string($0, 1), try r.int($0, 2)) }
    }

    /// Every derived row: manifest id and recipe, by id.
    public func derivedRecipesByManifest() throws -> [(Int, String)] {
        let r = try conn.execute("SELECT manifest_id, recipe FROM derived ORDER BY id")
        return try (0..<r.rowCount).map { (try r.int($0, 0), try r.string($0, 1)) }
    }

    /// Database-level problems: PostgreSQL enforces the schema's keys and checks itself, so
    /// this only confirms the tables answer (a missing table is `.integrity`).
    public func databaseProblems() throws -> [String] {
        _ = try conn.execute("SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM store_state)")
        return []
    }
}

extension PostgresMetadataStore {
    /// The store's configuration text (`config.json` of a local store), nil for the defaults.
    public func configurationText() throws -> String? {
        let r = try conn.execute("SELECT config FROM store_state WHERE id = 1")
        return r.rowCount == 0 ? nil : try r.optional(0, 0, r.string)
    }

    /// Records the configuration text unless one is recorded (init; idempotent, first wins).
    public func recordConfigurationIfAbsent(_ text: String) throws {
        try write { try conn.execute("UPDATE store_state SET config = $1 WHERE id = 1 AND config IS NULL", [.text(text)]) }
    }
}
