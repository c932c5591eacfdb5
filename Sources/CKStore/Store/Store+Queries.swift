/// Read-only queries behind `ls`, `show` and `stats`.
extension Store {
    /// All runs, by name.
    public func runs() throws(CKStoreError) -> [RunSummary] {
        try wrapping("list runs") { try metadata.runs() }
    }

    /// The snapshots of a run, by step.
    /// - Throws: `.notFound` when the run does not exist.
    public func snapshots(run: String) throws(CKStoreError) -> [SnapshotInfo] {
        guard let list = try wrapping("list \(run)", { try metadata.snapshots(run: run) }) else {
            throw CKStoreError(.notFound, "run '\(run)' does not exist")
        }
        return list
    }

    /// For each step of a run, the blob bytes its snapshot refers to (distinct chunks).
    public func storedBytesByStep(run: String) throws(CKStoreError) -> [Int: Int] {
        try wrapping("list \(run)") {
            var result: [Int: Int] = [:]
            try metadata.db.statement(
                """
                SELECT s.step, (SELECT coalesce(sum(c.stored_size), 0) FROM chunks c WHERE c.id IN
                  (SELECT chunk_id FROM tensor_chunks WHERE manifest_id = s.manifest_id))
                FROM snapshots s JOIN runs r ON r.id = s.run_id WHERE r.name = ?
                """
            ).forEachRow([.text(run)]) { result[$0.int(0)] = $0.int(1) }
            return result
        }
    }

    /// The metrics recorded for a run.
    public func metrics(run: String) throws(CKStoreError) -> [MetricRecord] {
        try wrapping("list metrics of \(run)") { try metadata.metrics(run: run) }
    }

    /// Records metric values for RUN@STEP under a variant ("raw" for the snapshot itself).
    public func recordMetrics(run: String, step: Int, variant: String, values: [(String, Double)]) throws(CKStoreError) {
        try wrapping("record metrics for \(run)@\(step)") {
            try metadata.recordMetrics(run: run, step: step, variant: variant, values: values)
        }
    }

    /// Store-wide totals, including the blob files no snapshot refers to (what gc would free).
    public func statistics() throws(CKStoreError) -> StoreStatistics {
        try wrapping("compute statistics") {
            var stats = try metadata.statistics()
            let referenced = try referencedChunkHashes()
            let derivedOnly = try metadata.db.statement(
                """
                SELECT count(*), coalesce(sum(stored_size), 0) FROM chunks WHERE id IN (
                  SELECT tc.chunk_id FROM tensor_chunks tc JOIN derived d ON d.manifest_id = tc.manifest_id)
                AND id NOT IN (SELECT tc.chunk_id FROM tensor_chunks tc JOIN snapshots s ON s.manifest_id = tc.manifest_id)
                """
            ).firstRow { ($0.int(0), $0.int(1)) } ?? (0, 0)
            stats.derivedBlobs = derivedOnly.0
            stats.derivedBytes = derivedOnly.1
            try blobs.forEach { id, size in
                if !referenced.contains(id) {
                    stats.orphanBlobs += 1
                    stats.orphanBytes += size
                }
            }
            for temp in blobs.temporaryFiles() {
                if case .success(let st) = Sys.fileStatus(temp) {
                    stats.orphanBlobs += 1
                    stats.orphanBytes += st.size
                }
            }
            return stats
        }
    }

    /// The hashes of the chunks that some snapshot or derived snapshot refers to.
    func referencedChunkHashes() throws -> Set<SHA256Digest> {
        var set = Set<SHA256Digest>()
        try metadata.db.statement(
            """
            SELECT DISTINCT c.hash FROM chunks c JOIN tensor_chunks tc ON tc.chunk_id = c.id
            WHERE tc.manifest_id IN (SELECT manifest_id FROM snapshots UNION SELECT manifest_id FROM derived)
            """
        ).forEachRow { set.insert(SHA256Digest(bytes: $0.blob(0))!) }
        return set
    }
}
