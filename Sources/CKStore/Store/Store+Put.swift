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
    /// Chunks whose row existed but whose blob was missing or damaged, and which this put
    /// wrote again (counted in `newChunks`).
    public var repairedBlobs = 0
    /// Metric values dropped because they were measured on the content this put replaced (or
    /// on averages that used it).
    public var droppedMetrics = 0
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
    /// Whether a chunk row existed but its blob was missing or damaged, so this put wrote it
    /// again (or found it rewritten by a concurrent put).
    var repaired = false
}

/// The blobs a put has created, recorded by the workers as they write them (so that a failed
/// put can remove them even when their results were never delivered), and the stored size of
/// every chunk this put has already stored or found (so a chunk that recurs within one file is
/// a dedup hit before the commit makes it visible in the database).
private final class CreatedBlobs: Sendable {
    let hashes = Mutex<[SHA256Digest]>([])
    let storedSizes = Mutex<[SHA256Digest: Int]>([:])
}

/// A worker's private state: its codec scratch buffers, its own chunk index for dedup lookups
/// (`MetadataStore.chunkIndexFactory`), and a buffer for reading existing blobs.
private struct IngestWorker {
    let codec: BlobCodec
    let chunks: any ChunkIndex
    var scratch: ByteBuffer
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
        let config = configuration
        let chunkCapacity = config.chunkSize
        let makeChunkIndex = metadata.chunkIndexFactory()
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
                    chunks: try makeChunkIndex(),
                    scratch: ByteBuffer(capacity: BlobHeader.size + LZ4.bound(chunkCapacity)))
            },
            process: { worker, job in
                let raw = job.buffer.bytes
                let hash = SHA256Digest.hash(raw)
                if let stored = created.storedSizes.withLock({ $0[hash] }) {
                    return IngestResult(buffer: job.buffer, hash: hash, rawSize: raw.count, storedSize: stored, isNew: false)
                }
                // A chunk row is a dedup hit only when its blob is intact (the checks of a read,
                // without decoding): a missing or damaged blob is written again from these bytes,
                // so that an acknowledged put is always readable. The shared store lock keeps gc
                // from deleting the blob between this check and the commit.
                let row = try worker.chunks.storedSize(ofChunk: hash)
                if let row, blobs.holdsIntact(hash, storedSize: row, raw: raw, codec: worker.codec, scratch: &worker.scratch) {
                    created.storedSizes.withLock { $0[hash] = row }
                    return IngestResult(buffer: job.buffer, hash: hash, rawSize: raw.count, storedSize: row, isNew: false)
                }
                let encoded = try worker.codec.encode(raw, dtype: job.dtype, name: hash)
                let codec = worker.codec
                let (isNew, size) = try blobs.put(hash, bytes: encoded.bytes) { existing in
                    codec.isIntact(existing, name: hash, raw: raw)
                }
                if isNew { created.hashes.withLock { $0.append(hash) } }
                created.storedSizes.withLock { $0[hash] = size }
                return IngestResult(
                    buffer: job.buffer, hash: hash, rawSize: raw.count, storedSize: size, isNew: isNew, repaired: row != nil)
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
        var repaired: [SHA256Digest: Int] = [:]
        let deliver: (IngestResult) -> Void = { result in
            chunkLists[tensorOfResult[delivered]].append((result.hash, result.rawSize))
            delivered += 1
            storedSizes[result.hash] = result.storedSize
            if result.repaired { repaired[result.hash] = result.storedSize }
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
        let committed = try wrapping("put \(run)@\(step)") {
            try blobs.syncNamespace()
            // A rewritten blob may differ in size from what its row recorded (another encoding,
            // or a version 1 blob): the row follows the durable file.
            try metadata.updateStoredSizes(repaired.map { ($0.key, $0.value) })
            return try metadata.commit(manifest: manifest, run: run, step: step, metrics: metrics, force: force)
        }
        let seconds = Double(nowMilliseconds() - start) / 1000
        return PutReport(
            digest: manifest.digest, outcome: committed.outcome, bytesIn: header.fileLength, chunkCount: delivered,
            newChunks: newChunks, dedupHits: dedupHits, bytesStored: bytesStored, seconds: seconds,
            repairedBlobs: repaired.count, droppedMetrics: committed.droppedMetrics)
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
