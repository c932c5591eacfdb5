import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

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

/// The chunking half of `put`, shared by a single file and by every file of a directory: one
/// ordered worker pipeline that hashes each chunk, checks for it (dedup), and encodes and
/// writes the new ones. A session is used for one put on one thread; files go through it one
/// after another, each drained before the next starts. Nothing is recorded in the metadata:
/// the caller makes the blobs durable (`makeDurable`) and commits.
final class IngestSession {
    private let store: Store
    private let pipeline: OrderedPipeline<IngestJob, IngestResult, IngestWorker>
    private let created = CreatedBlobs()
    private let chunkCapacity: Int
    private var pool: [ByteBuffer] = []
    /// The stored size of every chunk delivered so far, and the chunks rewritten over a missing
    /// or damaged blob.
    private var storedSizes: [SHA256Digest: Int] = [:]
    private var repaired: [SHA256Digest: Int] = [:]
    /// Totals over every file of the session.
    private(set) var chunkCount = 0
    private(set) var newChunks = 0
    private(set) var dedupHits = 0
    private(set) var bytesStored = 0

    /// The blobs this session created (for cleanup after a failure).
    var written: [SHA256Digest] { created.hashes.withLock { $0 } }

    /// Starts the workers.
    init(store: Store) {
        self.store = store
        let config = store.configuration
        let chunkCapacity = config.chunkSize
        self.chunkCapacity = chunkCapacity
        let makeChunkIndex = store.metadata.chunkIndexFactory()
        let blobs = store.blobs
        let settings = config.codecSettings
        let workers = config.effectiveWorkers
        let created = self.created
        pipeline = OrderedPipeline<IngestJob, IngestResult, IngestWorker>(
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
    }

    deinit {
        pipeline.shutdown()
    }

    /// One stretch of a file to chunk: a tensor's bytes, or a whole opaque file.
    struct Segment {
        /// For messages (tensor name, or the file's path).
        let name: String
        /// Chooses the codec's filter; chunk boundaries respect its element size.
        let dtype: DType
        let byteCount: Int
    }

    /// Reads `segments` from `reader`, in order, through the pipeline; returns the chunks of each.
    /// On failure the pipeline is stopped (jobs in flight finish, so `written` is complete).
    func chunk(_ segments: [Segment], reader: inout StreamReader, context: @autoclosure () -> String) throws(CKStoreError)
        -> [[ChunkRef]]
    {
        var lists: [[(SHA256Digest, Int)]] = Array(repeating: [], count: segments.count)
        var segmentOfResult: [Int] = []
        var delivered = 0
        let deliver: (IngestResult) -> Void = { result in
            lists[segmentOfResult[delivered]].append((result.hash, result.rawSize))
            delivered += 1
            self.storedSizes[result.hash] = result.storedSize
            if result.repaired { self.repaired[result.hash] = result.storedSize }
            self.chunkCount += 1
            if result.isNew {
                self.newChunks += 1
                self.bytesStored += result.storedSize
            } else {
                self.dedupHits += 1
            }
            self.pool.append(result.buffer)
        }
        do {
            for (index, segment) in segments.enumerated() {
                let granule = segment.dtype.byteGranule
                let step = max(granule, chunkCapacity - chunkCapacity % granule)
                var offset = 0
                while offset < segment.byteCount {
                    let length = min(step, segment.byteCount - offset)
                    let buffer = pool.popLast() ?? ByteBuffer(capacity: chunkCapacity)
                    try reader.readExactly(length, into: buffer, tensor: segment.name)
                    segmentOfResult.append(index)
                    try pipeline.submit(IngestJob(buffer: buffer, dtype: segment.dtype), deliver: deliver)
                    offset += length
                }
            }
            try reader.expectEnd()
            try pipeline.drain(deliver)
        } catch {
            pipeline.cancel()
            pipeline.shutdown()  // wait for jobs in flight: their blobs must be known before cleanup
            throw CKStoreError.wrap(error, context: context())
        }
        return lists.map { list in list.map { ChunkRef(hash: $0.0, rawSize: $0.1, storedSize: storedSizes[$0.0]!) } }
    }

    /// Chunks the data section of a safetensors file whose header `reader` has just read.
    func ingest(header: SafetensorsHeader, reader: inout StreamReader, context: @autoclosure () -> String) throws(CKStoreError)
        -> Manifest
    {
        let segments = header.tensors.map { Segment(name: $0.name, dtype: $0.dtype, byteCount: $0.byteCount) }
        let lists = try chunk(segments, reader: &reader, context: context())
        let tensors = zip(header.tensors, lists).map { TensorEntry(info: $0.0, chunks: $0.1) }
        return Manifest(headerBytes: header.headerBytes, dataLength: header.dataLength, tensors: tensors)
    }

    /// Chunks an opaque file of `size` bytes (plain LZ4, raw when it does not shrink).
    func ingestBytes(size: Int, reader: inout StreamReader, name: String, context: @autoclosure () -> String) throws(CKStoreError)
        -> BytesFile
    {
        let lists = try chunk([Segment(name: name, dtype: .u8, byteCount: size)], reader: &reader, context: context())
        return BytesFile(size: size, chunks: lists[0])
    }

    /// Makes every blob written so far durable, then records the stored size of chunks that
    /// were written again over a missing or damaged blob: a rewritten blob may differ in size
    /// from what its row recorded (another encoding, or a version 1 blob). Call before the
    /// commit.
    func makeDurable() throws {
        try store.blobs.syncNamespace()
        try store.metadata.updateStoredSizes(repaired.map { ($0.key, $0.value) })
    }

    /// The summary of a put through this session.
    func report(digest: SHA256Digest, outcome: CommitOutcome, bytesIn: Int, start: Int64, droppedMetrics: Int) -> PutReport {
        PutReport(
            digest: digest, outcome: outcome, bytesIn: bytesIn, chunkCount: chunkCount, newChunks: newChunks, dedupHits: dedupHits,
            bytesStored: bytesStored, seconds: Double(nowMilliseconds() - start) / 1000, repairedBlobs: repaired.count,
            droppedMetrics: droppedMetrics)
    }
}
