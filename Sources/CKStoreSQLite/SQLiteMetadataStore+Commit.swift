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
        try db.inTransaction {
            let now = nowMilliseconds()
            var runID = try runID(run)
            if runID == nil {
                try db.statement("INSERT INTO runs (name, created_at) VALUES (?, ?)").run([.text(run), .integer(now)])
                runID = db.lastInsertRowID
            }
            let existing = try db.statement(
                "SELECT s.id, m.id, m.digest FROM snapshots s JOIN manifests m ON m.id = s.manifest_id WHERE s.run_id = ? AND s.step = ?"
            ).firstRow([.int(runID!), .int(step)]) { ($0.int(0), $0.int(1), SHA256Digest(bytes: $0.blob(2))!) }
            if let existing, existing.2 == manifest.digest {
                if !metrics.isEmpty { try insertMetrics(runID: runID!, step: step, variant: "raw", values: metrics) }
                return (.commit, (.unchanged, 0))
            }
            if let existing, !force {
                throw CKStoreError(
                    .conflict,
                    "\(run)@\(step) already holds sha256:\(existing.2.hex), not sha256:\(manifest.digest.hex); use --force to replace it")
            }
            let manifestID = try insertManifestIfNew(manifest, now: now)
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

    /// Inserts the manifest and its rows unless a manifest with this digest exists; returns its id.
    package func insertManifestIfNew(_ manifest: Manifest, now: Int64) throws -> Int {
        if let id = try manifestID(manifest.digest) { return id }
        try db.statement("INSERT INTO manifests (digest, header, data_length, tensor_count, created_at) VALUES (?, ?, ?, ?, ?)")
            .run([
                .blob(manifest.digest.bytes), .blob(manifest.headerBytes), .int(manifest.dataLength), .int(manifest.tensors.count),
                .integer(now),
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
        for (position, tensor) in manifest.tensors.enumerated() {
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

    /// Deletes a manifest (and, by cascade, its tensor rows) when no snapshot names it.
    package func deleteManifestIfUnreferenced(_ manifestID: Int) throws {
        try db.statement(
            "DELETE FROM manifests WHERE id = ? AND NOT EXISTS (SELECT 1 FROM snapshots WHERE manifest_id = ?) AND NOT EXISTS (SELECT 1 FROM derived WHERE manifest_id = ?)"
        ).run([.int(manifestID), .int(manifestID), .int(manifestID)])
    }
}
