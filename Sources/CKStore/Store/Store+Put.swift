import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What `put` did, for the summary line.
public struct PutReport: Sendable {
    /// The snapshot digest.
    public let digest: SHA256Digest
    /// Whether the snapshot was created, unchanged, or replaced.
    public let outcome: CommitOutcome
    /// Bytes read (the safetensors file size).
    public let bytesIn: Int
    /// Chunks in the file, chunks that were new, and chunks already stored (dedup hits).
    public let chunkCount: Int
    public let newChunks: Int
    public let dedupHits: Int
    /// Blob bytes written by this put.
    public let bytesStored: Int
    /// Wall time in seconds.
    public let seconds: Double
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

/// One chunk on its way through the ingest pipeline.
private struct IngestJob: Sendable {
    let buffer: ByteBuffer
    let dtype: DType
}

/// A chunk after hashing (and, when new, encoding and writing).
private struct IngestResult: Sendable {
    let buffer: ByteBuffer
    let hash: SHA256Digest
    let rawSize: Int
    let storedSize: Int
    let isNew: Bool
}

/// The blobs a put has created, recorded by the workers as they write them (so that a failed
/// put can remove them even when their results were never delivered), and the stored size of
/// every chunk this put has already stored or found (so a chunk that recurs within one file is
/// a dedup hit before the commit makes it visible in the database).
private final class CreatedBlobs: Sendable {
    let hashes = Mutex<[SHA256Digest]>([])
    let storedSizes = Mutex<[SHA256Digest: Int]>([:])
}

/// A worker's private state: its codec scratch buffers and its own read-only metadata
/// connection for dedup lookups.
private struct IngestWorker {
    let codec: BlobCodec
    let metadata: SQLiteMetadataStore
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
        let config = configuration
        let chunkCapacity = config.chunkSize
        let dbPath = "\(path)/\(Store.databaseName)"
        let blobs = self.blobs
        let settings = config.codecSettings
        let workers = config.effectiveWorkers
        let created = CreatedBlobs()
        defer { written = created.hashes.withLock { $0 } }
        let pipeline = OrderedPipeline<IngestJob, IngestResult, IngestWorker>(
            workers: workers, capacity: workers * 2,
            makeState: {
                IngestWorker(
                    codec: BlobCodec(maxChunkSize: chunkCapacity, settings: settings),
                    metadata: try SQLiteMetadataStore(path: dbPath, create: false, readOnly: true))
            },
            process: { worker, job in
                let raw = job.buffer.bytes
                let hash = SHA256Digest.hash(raw)
                if let stored = try created.storedSizes.withLock({ $0[hash] }) ?? worker.metadata.storedSize(ofChunk: hash) {
                    return IngestResult(buffer: job.buffer, hash: hash, rawSize: raw.count, storedSize: stored, isNew: false)
                }
                let encoded = try worker.codec.encode(raw, dtype: job.dtype)
                let codec = worker.codec
                let (isNew, size) = try blobs.put(hash, bytes: encoded.bytes) { existing in
                    let scratch = ByteBuffer(capacity: raw.count)
                    return (try? codec.decode(existing, into: scratch, expected: hash)) == raw.count
                }
                if isNew { created.hashes.withLock { $0.append(hash) } }
                created.storedSizes.withLock { $0[hash] = size }
                return IngestResult(buffer: job.buffer, hash: hash, rawSize: raw.count, storedSize: size, isNew: isNew)
            })
        defer { pipeline.shutdown() }

        var pool: [ByteBuffer] = []
        var chunkLists: [[(SHA256Digest, Int)]] = Array(repeating: [], count: header.tensors.count)
        var storedSizes: [SHA256Digest: Int] = [:]
        var tensorOfResult: [Int] = []  // tensor index of each submitted chunk, in order
        var delivered = 0
        var newChunks = 0
        var dedupHits = 0
        var bytesStored = 0
        let deliver: (IngestResult) -> Void = { result in
            chunkLists[tensorOfResult[delivered]].append((result.hash, result.rawSize))
            delivered += 1
            storedSizes[result.hash] = result.storedSize
            if result.isNew {
                newChunks += 1
                bytesStored += result.storedSize
            } else {
                dedupHits += 1
            }
            pool.append(result.buffer)
        }
        do {
            for (index, tensor) in header.tensors.enumerated() {
                let granule = tensor.dtype.byteGranule
                let step = max(granule, chunkCapacity - chunkCapacity % granule)
                var offset = 0
                while offset < tensor.byteCount {
                    let length = min(step, tensor.byteCount - offset)
                    let buffer = pool.popLast() ?? ByteBuffer(capacity: chunkCapacity)
                    try reader.readExactly(length, into: buffer, tensor: tensor.name)
                    tensorOfResult.append(index)
                    try pipeline.submit(IngestJob(buffer: buffer, dtype: tensor.dtype), deliver: deliver)
                    offset += length
                }
            }
            try reader.expectEnd()
            try pipeline.drain(deliver)
        } catch {
            pipeline.cancel()
            pipeline.shutdown()  // wait for jobs in flight: their blobs must be known before cleanup
            throw CKStoreError.wrap(error, context: "put \(run)@\(step)")
        }
        let tensors = header.tensors.enumerated().map { (index, info) in
            TensorEntry(
                info: info,
                chunks: chunkLists[index].map { ChunkRef(hash: $0.0, rawSize: $0.1, storedSize: storedSizes[$0.0]!) })
        }
        let manifest = Manifest(headerBytes: header.headerBytes, dataLength: header.dataLength, tensors: tensors)
        let outcome = try wrapping("put \(run)@\(step)") {
            try blobs.syncNamespace()
            return try metadata.commit(manifest: manifest, run: run, step: step, metrics: metrics, force: force)
        }
        let seconds = Double(nowMilliseconds() - start) / 1000
        return PutReport(
            digest: manifest.digest, outcome: outcome, bytesIn: header.fileLength, chunkCount: delivered,
            newChunks: newChunks, dedupHits: dedupHits, bytesStored: bytesStored, seconds: seconds)
    }

    /// After a failed put: deletes the blobs it wrote that no chunk row refers to, but only when
    /// no other process holds the store lock (one might be about to refer to them); otherwise
    /// they stay as orphans for `gc`.
    private func removeUncommittedBlobs(_ hashes: [SHA256Digest]) {
        guard !hashes.isEmpty, tryUpgradeToExclusive() else { return }
        for hash in hashes where (try? metadata.hasChunk(hash)) == false {
            try? blobs.remove(hash)
        }
        try? blobs.syncNamespace()
    }
}
