#if canImport(Glibc)
    import Glibc
#endif

/// What `put` did, for the summary line.
public struct PutReport: Sendable {
    /// The snapshot digest.
    public let digest: SHA256Digest
    /// Whether the snapshot was created, unchanged, or replaced.
    public let outcome: CommitOutcome
    /// Bytes read (the safetensors file size; for a directory, the total of its files).
    public let bytesIn: Int
    /// Chunks in the file, chunks that were new, and chunks already stored (dedup hits).
    public let chunkCount: Int
    public let newChunks: Int
    public let dedupHits: Int
    /// Blob bytes written by this put.
    public let bytesStored: Int
    /// Wall time in seconds.
    public let seconds: Double
    /// Chunks whose row existed but whose blob was missing or damaged, and which this put
    /// wrote again (counted in `newChunks`).
    public var repairedBlobs = 0
    /// Metric values dropped because they were measured on the content this put replaced (or
    /// on averages that used it).
    public var droppedMetrics = 0
    /// Files stored (1 for a single file; a directory's regular files).
    public var fileCount = 1
}

/// Where a snapshot is read from.
public enum InputSource: Sendable {
    /// A file path.
    case file(String)
    /// Standard input.
    case standardInput

    var displayName: String {
        switch self {
        case .file(let p): return p
        case .standardInput: return "<stdin>"
        }
    }
}

extension Store {
    /// Reads a safetensors file from `source`, stores its chunks and records it as RUN@STEP.
    ///
    /// The header is parsed and validated before any blob is written; the data section is
    /// streamed chunk by chunk (memory stays bounded whatever the file size). Chunks are
    /// hashed, filtered, compressed, verified and written by the worker threads; blobs are
    /// durable before the single metadata transaction that refers to them.
    ///
    /// - Throws: `.badInput` for malformed input (naming the tensor or byte offset),
    ///   `.conflict` for different content at an existing RUN@STEP without `force`.
    ///   On any error no metadata changes; blobs written by this put are removed when no other
    ///   process is using the store, else left for `gc`.
    public func put(
        from source: InputSource, run: String, step: Int, metrics: [(String, Double)] = [], force: Bool = false
    ) throws(CKStoreError) -> PutReport {
        try Store.validateRunName(run)
        for (name, _) in metrics { try Store.validateName(name, kind: "metric name") }
        guard step >= 0 else { throw CKStoreError(.badInput, "step must be a non-negative integer, got \(step)") }
        try requireWritable()
        let start = nowMilliseconds()
        let input: FileHandle
        do {
            switch source {
            case .file(let p): input = try FileHandle.openForReading(p)
            case .standardInput: input = FileHandle(adopting: dup(0), path: "<stdin>")
            }
        } catch {
            throw CKStoreError(.badInput, "cannot read \(source.displayName): \(error)", cause: error)
        }
        var reader = StreamReader(file: input, name: source.displayName)
        reader.progress = progressMeter(total: nil)
        let header = try reader.readHeader()
        return try withLock(exclusive: false) { () throws(CKStoreError) -> PutReport in
            var written: [SHA256Digest] = []
            do throws(CKStoreError) {
                let report = try ingest(
                    header: header, reader: &reader, run: run, step: step, metrics: metrics, force: force, start: start, written: &written)
                return report
            } catch {
                removeUncommittedBlobs(written)
                throw error
            }
        }
    }

    private func ingest(
        header: SafetensorsHeader, reader: inout StreamReader, run: String, step: Int, metrics: [(String, Double)],
        force: Bool, start: Int64, written: inout [SHA256Digest]
    ) throws(CKStoreError) -> PutReport {
        let session = IngestSession(store: self)
        defer { written = session.written }
        let manifest = try session.ingest(header: header, reader: &reader, context: "put \(run)@\(step)")
        let committed = try wrapping("put \(run)@\(step)") {
            try session.makeDurable()
            return try metadata.commit(manifest: manifest, run: run, step: step, metrics: metrics, force: force)
        }
        return session.report(
            digest: manifest.digest, outcome: committed.outcome, bytesIn: header.fileLength, start: start,
            droppedMetrics: committed.droppedMetrics)
    }

    /// After a failed put: deletes the blobs it wrote that no chunk row refers to, but only when
    /// no other process holds the store lock (one might be about to refer to them); otherwise
    /// they stay as orphans for `gc`.
    func removeUncommittedBlobs(_ hashes: [SHA256Digest]) {
        guard !hashes.isEmpty, tryUpgradeToExclusive() else { return }
        for hash in hashes where (try? metadata.hasChunk(hash)) == false {
            try? blobs.remove(hash)
        }
        try? blobs.syncNamespace()
    }
}
