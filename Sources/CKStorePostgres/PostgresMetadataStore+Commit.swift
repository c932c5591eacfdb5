import CKStore

extension PostgresMetadataStore {
    /// Records `manifest` under RUN@STEP in one transaction: the run (if new), the manifest, its
    /// tensors and chunk rows (if the content is new), the snapshot row, and the metrics. The
    /// same decisions as SQLite (one writer at a time, `write`): identical content is
    /// `.unchanged`, other content is a `.conflict` without `force` and replaced with it, the
    /// replaced manifest is deleted when nothing else names it, and the metrics measured on
    /// replaced content are dropped (their count is returned).
    /// - Throws: `.conflict`; `.environment` when the store lock was lost and a gc ran since it
    ///   was taken (`GCFence`): nothing is recorded.
    public func commit(manifest: Manifest, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    ) {
        try commitNamed(digest: manifest.digest, run: run, step: step, metrics: metrics, force: force) { now in
            try insertManifestIfNew(manifest, now: now)
        }
    }

    /// Records a tree snapshot (`MetadataStore.commit(tree:…)`): the same transaction and
    /// decisions as `commit(manifest:…)`, inserting the tree's new file objects, the tree and
    /// its entries.
    public func commit(tree snapshot: TreeSnapshot, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    ) {
        try commitNamed(digest: snapshot.tree.digest, run: run, step: step, metrics: metrics, force: force) { now in
            try insertTreeIfNew(snapshot, now: now)
        }
    }

    /// The decisions shared by both commits: `insert` stores the content (when new) and returns
    /// the id of the manifest the snapshot names.
    func commitNamed(
        digest contentDigest: SHA256Digest, run: String, step: Int, metrics: [(String, Double)], force: Bool,
        insert: (Int64) throws -> Int64
    ) throws -> (outcome: CommitOutcome, droppedMetrics: Int) {
        try write {
            try checkFence(what: "put \(run)@\(step)")
            let now = nowMilliseconds()
            try conn.execute(
                "INSERT INTO runs (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", [.text(run), .int64(now)])
            guard let runID = try runID(run) else { throw CKStoreError(.environment, "run '\(run)' vanished while it was being created") }
            let r = try conn.execute(
                "SELECT s.id, m.id, m.digest FROM snapshots s JOIN manifests m ON m.id = s.manifest_id WHERE s.run_id = $1 AND s.step = $2",
                [.int64(runID), .int(step)])
            let existing = r.rowCount == 0 ? nil : (try r.int64(0, 0), try r.int64(0, 1), try digest(r, 0, 2))
            if let existing, existing.2 == contentDigest {
                if !metrics.isEmpty { try insertMetrics(runID: runID, step: step, variant: "raw", values: metrics) }
                return (.unchanged, 0)
            }
            if let existing, !force {
                throw CKStoreError(
                    .conflict,
                    "\(run)@\(step) already holds sha256:\(existing.2.hex), not sha256:\(contentDigest.hex); use --force to replace it")
            }
            let manifestID = try insert(now)
            let dropped = try dropMetrics(measuredOn: runID, step: step, includingStep: existing != nil)
            let outcome: CommitOutcome
            if let existing {
                try conn.execute(
                    "UPDATE snapshots SET manifest_id = $1, created_at = $2 WHERE id = $3",
                    [.int64(manifestID), .int64(now), .int64(existing.0)])
                try deleteManifestIfUnreferenced(existing.1)
                outcome = .replaced(previous: existing.2)
            } else {
                try conn.execute(
                    "INSERT INTO snapshots (run_id, step, manifest_id, created_at) VALUES ($1, $2, $3, $4)",
                    [.int64(runID), .int(step), .int64(manifestID), .int64(now)])
                outcome = .created
            }
            if !metrics.isEmpty { try insertMetrics(runID: runID, step: step, variant: "raw", values: metrics) }
            return (outcome, dropped)
        }
    }

    /// Inserts a tree, its entries and its file objects (those not stored yet) unless a tree
    /// with this digest exists; returns its id.
    func insertTreeIfNew(_ snapshot: TreeSnapshot, now: Int64) throws -> Int64 {
        let tree = snapshot.tree
        if let id = try manifestID(tree.digest) { return id }
        var fileIDs: [SHA256Digest: Int64] = [:]
        var tensorCount = 0
        for entry in tree.entries {
            guard let content = snapshot.files[entry.digest] else {
                throw CKStoreError(.integrity, "tree sha256:\(tree.digest.hex): no content for '\(entry.path)'")
            }
            if case .safetensors(let manifest) = content { tensorCount += manifest.tensors.count }
            if fileIDs[entry.digest] != nil { continue }
            switch content {
            case .safetensors(let manifest): fileIDs[entry.digest] = try insertManifestIfNew(manifest, now: now)
            case .bytes(let file):
                fileIDs[entry.digest] = try insertObjectIfNew(
                    digest: file.digest, kind: .bytes, header: [], dataLength: file.size, tensors: [file.pseudoTensor], now: now)
            }
        }
        let treeID = try insertObjectIfNew(
            digest: tree.digest, kind: .tree, header: [], dataLength: tree.totalSize, tensors: [], tensorCount: tensorCount, now: now)
        try insertRows(
            "INSERT INTO tree_entries (tree_id, position, path, file_id) VALUES",
            rows: tree.entries.enumerated().map { [.int64(treeID), .int($0), .text($1.path), .int64(fileIDs[$1.digest]!)] })
        return treeID
    }

    /// Inserts the manifest and its rows unless a manifest with this digest exists; returns its id.
    func insertManifestIfNew(_ manifest: Manifest, now: Int64) throws -> Int64 {
        try insertObjectIfNew(
            digest: manifest.digest, kind: .safetensors, header: manifest.headerBytes, dataLength: manifest.dataLength,
            tensors: manifest.tensors, now: now)
    }

    /// Inserts a content object (a manifests row of `kind`, its tensor rows and chunk rows)
    /// unless one with this digest exists; returns its id. Rows go in multi-row INSERTs (a few
    /// round trips per object, not one per chunk).
    func insertObjectIfNew(
        digest objectDigest: SHA256Digest, kind: ContentKind, header: [UInt8], dataLength: Int, tensors: [TensorEntry],
        tensorCount: Int? = nil, now: Int64
    ) throws -> Int64 {
        if let id = try manifestID(objectDigest) { return id }
        let inserted = try conn.execute(
            """
            INSERT INTO manifests (digest, header, data_length, tensor_count, created_at, kind) VALUES ($1, $2, $3, $4, $5, $6)
            RETURNING id
            """,
            [
                .bytes(objectDigest.bytes), .bytes(header), .int(dataLength), .int(tensorCount ?? tensors.count), .int64(now),
                .text(kind.rawValue),
            ])
        let manifestID = try inserted.int64(0, 0)
        // Chunk rows first (ON CONFLICT: another snapshot may share them), then their ids.
        var chunkSizes: [SHA256Digest: ChunkRef] = [:]
        for chunk in tensors.flatMap(\.chunks) where chunkSizes[chunk.hash] == nil { chunkSizes[chunk.hash] = chunk }
        let distinct = chunkSizes.values.sorted { $0.hash.hex < $1.hash.hex }  // one lock order for every writer
        try insertRows(
            "INSERT INTO chunks (hash, raw_size, stored_size) VALUES", suffix: "ON CONFLICT (hash) DO NOTHING",
            rows: distinct.map { [.bytes($0.hash.bytes), .int($0.rawSize), .int($0.storedSize)] })
        var ids: [SHA256Digest: Int64] = [:]
        for batch in stride(from: 0, to: distinct.count, by: 1000) {
            let part = distinct[batch..<min(batch + 1000, distinct.count)]
            let placeholders = (1...part.count).map { "$\($0)" }.joined(separator: ",")
            let r = try conn.execute("SELECT hash, id FROM chunks WHERE hash IN (\(placeholders))", part.map { .bytes($0.hash.bytes) })
            for i in 0..<r.rowCount { ids[try digest(r, i, 0)] = try r.int64(i, 1) }
        }
        try insertRows(
            "INSERT INTO tensors (manifest_id, position, name, dtype, shape, data_start, byte_length, chunk_count) VALUES",
            rows: tensors.enumerated().map { position, tensor in
                let info = tensor.info
                return [
                    .int64(manifestID), .int(position), .text(info.name), .text(info.dtype.rawValue), .text(formatShape(info.shape)),
                    .int(info.dataStart), .int(info.byteCount), .int(tensor.chunks.count),
                ]
            })
        var refs: [[PGValue]] = []
        for (position, tensor) in tensors.enumerated() {
            for (index, chunk) in tensor.chunks.enumerated() {
                guard let id = ids[chunk.hash] else {
                    throw CKStoreError(
                        .environment, "chunk row \(chunk.hash.hex) vanished while content sha256:\(objectDigest.hex) was recorded")
                }
                refs.append([.int64(manifestID), .int(position), .int(index), .int64(id)])
            }
        }
        try insertRows("INSERT INTO tensor_chunks (manifest_id, position, chunk_index, chunk_id) VALUES", rows: refs)
        return manifestID
    }

    /// Runs `prefix (…), (…) suffix` for `rows`, as many rows per statement as the parameter
    /// limit allows.
    func insertRows(_ prefix: String, suffix: String = "", rows: [[PGValue]]) throws {
        guard let width = rows.first?.count, width > 0 else { return }
        let perStatement = max(1, 30000 / width)
        for start in stride(from: 0, to: rows.count, by: perStatement) {
            let part = rows[start..<min(start + perStatement, rows.count)]
            var n = 0
            let tuples = part.map { row in
                "("
                    + row.map { _ in
                        n += 1
                        return "$\(n)"
                    }.joined(separator: ",") + ")"
            }
            try conn.execute(prefix + " " + tuples.joined(separator: ",") + " " + suffix, part.flatMap { $0 })
        }
    }

    /// The id of the manifest with this digest, or nil.
    func manifestID(_ digest: SHA256Digest) throws -> Int64? {
        let r = try conn.execute("SELECT id FROM manifests WHERE digest = $1", [.bytes(digest.bytes)])
        return r.rowCount == 0 ? nil : try r.int64(0, 0)
    }

    /// Deletes a manifest (and, by cascade, its tensor rows and tree entries) when no snapshot,
    /// derived row or tree names it; for a tree, then also each of its files nothing else names.
    func deleteManifestIfUnreferenced(_ manifestID: Int64) throws {
        let f = try conn.execute("SELECT DISTINCT file_id FROM tree_entries WHERE tree_id = $1", [.int64(manifestID)])
        let files = try (0..<f.rowCount).map { try f.int64($0, 0) }
        let deleted = try conn.execute(
            """
            DELETE FROM manifests WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM snapshots WHERE manifest_id = $1)
              AND NOT EXISTS (SELECT 1 FROM derived WHERE manifest_id = $1) AND NOT EXISTS (SELECT 1 FROM tree_entries WHERE file_id = $1)
              AND NOT EXISTS (SELECT 1 FROM pending_parts WHERE file_id = $1)
            """, [.int64(manifestID)])
        guard (deleted.affectedRows ?? 0) > 0 else { return }
        for file in files { try deleteManifestIfUnreferenced(file) }
    }

    /// Sets the recorded blob size of chunks whose blob was just written again (see
    /// `SQLiteMetadataStore.updateStoredSizes`).
    public func updateStoredSizes(_ sizes: [(SHA256Digest, Int)]) throws {
        guard !sizes.isEmpty else { return }
        try write {
            for (hash, size) in sizes {
                try conn.execute(
                    "UPDATE chunks SET stored_size = $1 WHERE hash = $2 AND stored_size <> $1", [.int(size), .bytes(hash.bytes)])
            }
        }
    }

    /// Throws when a gc has run since the store lock was taken (the lock was lost: its
    /// connection broke). Waits for a gc transaction in progress (FOR SHARE).
    func checkFence(what: String) throws {
        guard let expected = fence?.epoch else { return }
        let now = try conn.execute("SELECT gc_epoch FROM store_state WHERE id = 1 FOR SHARE").int64(0, 0)
        guard now == expected else {
            throw CKStoreError(
                .environment,
                "\(what): the store lock was lost (its PostgreSQL connection broke) and a gc ran meanwhile, so blobs this command "
                    + "found may have been deleted; nothing was recorded; run it again")
        }
    }

    /// Increments the gc epoch (first statement of every transaction that deletes chunk rows).
    func bumpGCEpoch() throws {
        let epoch = try conn.execute("UPDATE store_state SET gc_epoch = gc_epoch + 1 WHERE id = 1 RETURNING gc_epoch").int64(0, 0)
        fence?.advanced(to: epoch)
    }

    // MARK: - Metrics

    /// Metrics of a run (all variants), by step, variant and name.
    public func metrics(run: String) throws -> [MetricRecord] {
        let r = try conn.execute(
            """
            SELECT r.name, m.step, m.variant, m.name, m.value FROM metrics m JOIN runs r ON r.id = m.run_id
            WHERE r.name = $1 ORDER BY m.step, m.variant COLLATE "C", m.name COLLATE "C"
            """, [.text(run)])
        return try (0..<r.rowCount).map { i in
            MetricRecord(
                run: try r.string(i, 0), step: try r.int(i, 1), variant: try r.string(i, 2), name: try r.string(i, 3),
                value: try r.double(i, 4))
        }
    }

    /// Records metric values for RUN@STEP under `variant`, replacing earlier values of the same names.
    /// - Throws: `.notFound` when the run does not exist.
    public func recordMetrics(run: String, step: Int, variant: String, values: [(String, Double)]) throws {
        try write {
            guard let runID = try runID(run) else { throw CKStoreError(.notFound, "run '\(run)' does not exist") }
            try insertMetrics(runID: runID, step: step, variant: variant, values: values)
        }
    }

    func insertMetrics(runID: Int64, step: Int, variant: String, values: [(String, Double)]) throws {
        let now = nowMilliseconds()
        for (name, value) in values {
            try conn.execute(
                """
                INSERT INTO metrics (run_id, step, variant, name, value, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (run_id, step, variant, name) DO UPDATE SET value = EXCLUDED.value, recorded_at = EXCLUDED.recorded_at
                """, [.int64(runID), .int(step), .text(variant), .text(name), .double(value), .int64(now)])
        }
    }

    /// Deletes the metrics measured on the content at `runID`@`step` (the rule of
    /// `SQLiteMetadataStore+StaleMetrics.swift`); returns how many rows.
    func dropMetrics(measuredOn runID: Int64, step: Int, includingStep: Bool) throws -> Int {
        let r = try conn.execute(
            "SELECT DISTINCT step, variant FROM metrics WHERE run_id = $1 AND step >= $2", [.int64(runID), .int(step)])
        var dropped = 0
        for i in 0..<r.rowCount {
            let t = try r.int(i, 0)
            let variant = try r.string(i, 1)
            guard t == step ? includingStep : MetricVariants.variant(variant, at: t, includes: step) else { continue }
            let d = try conn.execute(
                "DELETE FROM metrics WHERE run_id = $1 AND step = $2 AND variant = $3", [.int64(runID), .int(t), .text(variant)])
            dropped += d.affectedRows ?? 0
        }
        return dropped
    }
}

/// The gc epoch a store lock saw when it was taken, shared by the lock and the metadata store of
/// one `Store` (the fencing token of docs/FORMAT.md, "Locking on PostgreSQL").
public final class GCFence: @unchecked Sendable {
    // @unchecked: one Store is used from one thread; the fields are read and written there.
    /// The epoch seen under the shared lock, nil when no lock is held (nothing is checked).
    public private(set) var epoch: Int64?

    /// A fence with nothing recorded.
    public init() {}

    /// Records the epoch read after taking the lock (nil when the lock is released).
    public func record(_ epoch: Int64?) { self.epoch = epoch }

    /// The lock holder itself moved the epoch (gc under the exclusive lock).
    func advanced(to epoch: Int64) { if self.epoch != nil { self.epoch = epoch } }
}
