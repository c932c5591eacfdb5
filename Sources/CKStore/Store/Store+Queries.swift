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
        try wrapping("list \(run)") { try metadata.storedBytesByStep(run: run) }
    }

    /// The metrics recorded for a run.
    public func metrics(run: String) throws(CKStoreError) -> [MetricRecord] {
        try wrapping("list metrics of \(run)") { try metadata.metrics(run: run) }
    }

    /// Records metric values for RUN@STEP under a variant ("raw" for the snapshot itself).
    public func recordMetrics(run: String, step: Int, variant: String, values: [(String, Double)]) throws(CKStoreError) {
        try requireWritable()
        try Store.validateName(variant, kind: "variant name")
        for (name, _) in values { try Store.validateName(name, kind: "metric name") }
        try wrapping("record metrics for \(run)@\(step)") {
            try metadata.recordMetrics(run: run, step: step, variant: variant, values: values)
        }
    }

    /// Store-wide totals, including the blob files no snapshot refers to (what gc would free).
    public func statistics() throws(CKStoreError) -> StoreStatistics {
        try wrapping("compute statistics") {
            var stats = try metadata.statistics()
            let referenced = try metadata.referencedChunkHashes()
            let listing = try blobs.listing()
            for blob in listing.blobs where !referenced.contains(blob.id) {
                stats.orphanBlobs += 1
                stats.orphanBytes += blob.size
            }
            for temp in listing.temporary {
                stats.orphanBlobs += 1
                stats.orphanBytes += temp.size
            }
            return stats
        }
    }
}
