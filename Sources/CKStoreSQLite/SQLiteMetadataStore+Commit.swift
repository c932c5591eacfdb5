import CKStore

extension SQLiteMetadataStore {
    /// Records `manifest` under RUN@STEP in one transaction: the run (if new), the manifest,
    /// its tensors and chunk rows (if the content is new), the snapshot row, and the metrics.
    /// A manifest left without any snapshot by `force` is deleted with its tensor rows; its
    /// chunks stay until `gc`. Metrics measured on replaced content (and on averages that used
    /// it) are dropped before the new ones are recorded (`dropMetrics`); the count is returned.
    package func commit(manifest: Manifest, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    ) {
        try commitNamed(digest: manifest.digest, run: run, step: step, metrics: metrics, force: force) { now in
            try insertManifestIfNew(manifest, now: now)
        }
    }

    /// Records a tree snapshot (`MetadataStore.commit(tree:…)`): the same transaction as
    /// `commit(manifest:…)`, inserting the tree's new file objects, the tree and its entries.
    package func commit(tree snapshot: TreeSnapshot, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    ) {
        try commitNamed(digest: snapshot.tree.digest, run: run, step: step, metrics: metrics, force: force) { now in
            try insertTreeIfNew(snapshot, now: now)
        }
    }

    /// The decisions shared by both commits: `insert` stores the content (when new) and returns
    /// the id of the manifest the snapshot names. Inside an open write transaction (a part's put
    /// completing its snapshot) it joins that transaction.
    func commitNamed(
        digest: SHA256Digest, run: String, step: Int, metrics: [(String, Double)], force: Bool, insert: (Int64) throws -> Int
    ) throws -> (outcome: CommitOutcome, droppedMetrics: Int) {
        try db.joiningTransaction {
            let now = nowMilliseconds()
            var runID = try runID(run)
            if runID == nil {
                try db.statement("INSERT INTO runs (name, created_at) VALUES (?, ?)").run([.text(run), .integer(now)])
                runID = db.lastInsertRowID
            }
            let existing = try db.statement(
                "SELECT s.id, m.id, m.digest FROM snapshots s JOIN manifests m ON m.id = s.manifest_id WHERE s.run_id = ? AND s.step = ?"
            ).firstRow([.int(runID!), .int(step)]) { ($0.int(0), $0.int(1), SHA256Digest(bytes: $0.blob(2))!) }
            if let existing, existing.2 == digest {
                if !metrics.isEmpty { try insertMetrics(runID: runID!, step: step, variant: "raw", values: metrics) }
                return (.commit, (.unchanged, 0))
            }
            if let existing, !force {
                throw CKStoreError(
                    .conflict,
                    "\(run)@\(step) already holds sha256:\(existing.2.hex), not sha256:\(digest.hex); use --force to replace it")
            }
            let manifestID = try insert(now)
            let outcome: CommitOutcome
            let dropped = try dropMetrics(measuredOn: runID!, step: step, includingStep: existing != nil)
            if let existing {
                try db.statement("UPDATE snapshots SET manifest_id = ?, created_at = ? WHERE id = ?")
                    .run([.int(manifestID), .integer(now), .int(existing.0)])
                try deleteManifestIfUnreferenced(existing.1)
                outcome = .replaced(previous: existing.2)
            } else {
                try db.statement("INSERT INTO snapshots (run_id, step, manifest_id, created_at) VALUES (?, ?, ?, ?)")
                    .run([.int(runID!), .int(step), .int(manifestID), .integer(now)])
                outcome = .created
            }
            if !metrics.isEmpty { try insertMetrics(runID: runID!, step: step, variant: "raw", values: metrics) }
            return (.commit, (outcome, dropped))
        }
    }

    /// Inserts a tree, its entries and its file objects (those not stored yet) unless a tree
    /// with this digest exists; returns its id.
    package func insertTreeIfNew(_ snapshot: TreeSnapshot, now: Int64) throws -> Int {
        let tree = snapshot.tree
        if let id = try manifestID(tree.digest) { return id }
        var fileIDs: [SHA256Digest: Int] = [:]
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
        let insertEntry = try db.statement("INSERT INTO tree_entries (tree_id, position, path, file_id) VALUES (?, ?, ?, ?)")
        for (position, entry) in tree.entries.enumerated() {
            try insertEntry.run([.int(treeID), .int(position), .text(entry.path), .int(fileIDs[entry.digest]!)])
        }
        return treeID
    }

    /// Inserts the manifest and its rows unless a manifest with this digest exists; returns its id.
    package func insertManifestIfNew(_ manifest: Manifest, now: Int64) throws -> Int {
        try insertObjectIfNew(
            digest: manifest.digest, kind: .safetensors, header: manifest.headerBytes, dataLength: manifest.dataLength,
            tensors: manifest.tensors, now: now)
    }

    /// Inserts a content object (a manifests row of `kind`, its tensor rows and chunk rows)
    /// unless one with this digest exists; returns its id.
    func insertObjectIfNew(
        digest: SHA256Digest, kind: ContentKind, header: [UInt8], dataLength: Int, tensors: [TensorEntry], tensorCount: Int? = nil,
        now: Int64
    ) throws -> Int {
        if let id = try manifestID(digest) { return id }
        try db.statement(
            "INSERT INTO manifests (digest, header, data_length, tensor_count, created_at, kind) VALUES (?, ?, ?, ?, ?, ?)"
        )
        .run([
            .blob(digest.bytes), .blob(header), .int(dataLength), .int(tensorCount ?? tensors.count), .integer(now), .text(kind.rawValue),
        ])
        let manifestID = db.lastInsertRowID
        let insertTensor = try db.statement(
            "INSERT INTO tensors (manifest_id, position, name, dtype, shape, data_start, byte_length, chunk_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        let insertChunk = try db.statement(
            "INSERT INTO chunks (hash, raw_size, stored_size) VALUES (?, ?, ?) ON CONFLICT(hash) DO NOTHING")
        let chunkID = try db.statement("SELECT id FROM chunks WHERE hash = ?")
        let insertRef = try db.statement(
            "INSERT INTO tensor_chunks (manifest_id, position, chunk_index, chunk_id) VALUES (?, ?, ?, ?)")
        var idCache: [SHA256Digest: Int] = [:]
        for (position, tensor) in tensors.enumerated() {
            let info = tensor.info
            try insertTensor.run([
                .int(manifestID), .int(position), .text(info.name), .text(info.dtype.rawValue), .text(formatShape(info.shape)),
                .int(info.dataStart), .int(info.byteCount), .int(tensor.chunks.count),
            ])
            for (index, chunk) in tensor.chunks.enumerated() {
                var id = idCache[chunk.hash]
                if id == nil {
                    try insertChunk.run([.blob(chunk.hash.bytes), .int(chunk.rawSize), .int(chunk.storedSize)])
                    id = try chunkID.firstRow([.blob(chunk.hash.bytes)]) { $0.int(0) }
                    idCache[chunk.hash] = id
                }
                try insertRef.run([.int(manifestID), .int(position), .int(index), .int(id!)])
            }
        }
        return manifestID
    }

    /// Deletes a manifest (and, by cascade, its tensor rows and tree entries) when no snapshot,
    /// derived row or tree names it; for a tree, then also each of its files nothing else names.
    package func deleteManifestIfUnreferenced(_ manifestID: Int) throws {
        let files = try db.statement("SELECT DISTINCT file_id FROM tree_entries WHERE tree_id = ?").rows([.int(manifestID)]) { $0.int(0) }
        try db.statement(
            """
            DELETE FROM manifests WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM snapshots WHERE manifest_id = ?1)
              AND NOT EXISTS (SELECT 1 FROM derived WHERE manifest_id = ?1) AND NOT EXISTS (SELECT 1 FROM tree_entries WHERE file_id = ?1)
              AND NOT EXISTS (SELECT 1 FROM pending_parts WHERE file_id = ?1)
            """
        ).run([.int(manifestID)])
        guard db.changes > 0 else { return }
        for file in files { try deleteManifestIfUnreferenced(file) }
    }
}
