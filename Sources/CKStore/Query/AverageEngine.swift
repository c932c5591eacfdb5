/// One output segment (a chunk of the output) to compute.
struct AverageJob: Sendable {
    /// Which file of the run (`computeAverages`' `files` index; 0 for a single file).
    let file: Int
    let tensorIndex: Int
    let tensor: String
    let dtype: DType
    let averaged: Bool
    /// Each input's pieces covering the segment, oldest input first (copied tensors: newest only).
    let inputs: [[ChunkPiece]]
    let inputLabels: [String]
    let length: Int
    let output: ByteBuffer
    /// Where the worker writes the computed segment itself, when the output allows it.
    let outputOffset: Int?
}

/// A computed segment, and its stored chunk when the result is being cached.
struct AverageResult: Sendable {
    /// Which file of the run the segment belongs to.
    let file: Int
    let tensorIndex: Int
    let output: ByteBuffer
    let stored: ChunkRef?
    let isNewBlob: Bool
}

/// Where computed chunks go when the result is cached as a derived snapshot.
struct CacheTarget: Sendable {
    let blobs: any BlobStore
    /// Makes each worker's chunk index (`MetadataStore.chunkIndexFactory`).
    let makeChunkIndex: @Sendable () throws -> any ChunkIndex
    /// Check (and rewrite when missing or damaged) the blob of every computed chunk even when a
    /// chunk row exists: set when recomputing a cached result whose blobs were damaged, since
    /// the chunk rows outlive the dropped result and would otherwise point at the same damage.
    var rewritesExisting = false
}

/// A worker's state: a chunk reader, a decode scratch buffer, a Float64 accumulator, and
/// (when caching) its own chunk index for dedup.
final class AverageWorker {
    let reader: ChunkReaderWorker
    let scratch: ByteBuffer
    var accumulator: UnsafeMutableBufferPointer<Double>
    let cacheMetadata: (any ChunkIndex)?
    /// Decoded input chunks for the blocked path (`computeBlocked`), allocated on first use.
    var groupInputs: [DecodedInput] = []
    /// One block of one input, byte-unshuffled (`computeBlocked`); 8 bytes per lane.
    let blockScratch = ByteBuffer(capacity: AverageWorker.blockLanes * 8)
    /// The capacity of every decode buffer (the largest chunk).
    let bufferCapacity: Int

    init(chunkSize: Int, blobs: any BlobStore, settings: BlobCodec.Settings, verify: Bool, cache: CacheTarget?) throws {
        reader = ChunkReaderWorker(chunkSize: chunkSize, blobs: blobs, settings: settings, verify: verify)
        scratch = ByteBuffer(capacity: chunkSize)
        bufferCapacity = chunkSize
        accumulator = .allocate(capacity: 1)
        cacheMetadata = try cache.map { try $0.makeChunkIndex() }
    }

    deinit { accumulator.deallocate() }

    /// An accumulator of exactly `lanes` lanes (reallocated only when it must grow).
    func accumulatorView(lanes: Int) -> UnsafeMutableBufferPointer<Double> {
        if accumulator.count < lanes {
            accumulator.deallocate()
            accumulator = .allocate(capacity: lanes)
        }
        return UnsafeMutableBufferPointer(rebasing: accumulator[0..<lanes])
    }

    /// Computes one segment into `job.output`.
    func compute(_ job: AverageJob, combination: Combination) throws(CKStoreError) {
        job.output.count = job.length
        guard job.length > 0 else { return }
        if !job.averaged {
            var at = 0
            for piece in job.inputs[job.inputs.count - 1] {
                try reader.fetch(piece.chunk, tensor: job.tensor, label: job.inputLabels[job.inputs.count - 1], into: scratch)
                (job.output.storage.baseAddress! + at).copyMemory(
                    from: scratch.storage.baseAddress! + piece.offset, byteCount: piece.length)
                at += piece.length
            }
            return
        }
        if job.inputs.allSatisfy({ $0.count == 1 && $0[0].length == job.length }) {
            try computeBlocked(job, combination: combination)
            return
        }
        do {
            let lanes = try ChunkAccumulator.laneCount(byteCount: job.length, dtype: job.dtype)
            let acc = accumulatorView(lanes: lanes)
            for (i, pieces) in job.inputs.enumerated() {
                var at = 0
                for piece in pieces {
                    try reader.fetch(piece.chunk, tensor: job.tensor, label: job.inputLabels[i], into: scratch)
                    let bytes = UnsafeRawBufferPointer(rebasing: scratch.storage[piece.offset..<(piece.offset + piece.length)])
                    let first = try ChunkAccumulator.laneCount(byteCount: at, dtype: job.dtype)
                    let count = try ChunkAccumulator.laneCount(byteCount: piece.length, dtype: job.dtype)
                    let slice = UnsafeMutableBufferPointer(rebasing: acc[first..<(first + count)])
                    switch combination {
                    case .uniform:
                        if i == 0 {
                            try ChunkAccumulator.start(from: bytes, dtype: job.dtype, into: slice)
                        } else {
                            try ChunkAccumulator.add(bytes, dtype: job.dtype, into: slice)
                        }
                    case .weighted(let weights):
                        if i == 0 {
                            try ChunkAccumulator.start(from: bytes, dtype: job.dtype, into: slice, weight: weights[i])
                        } else {
                            try ChunkAccumulator.add(bytes, dtype: job.dtype, into: slice, weight: weights[i])
                        }
                    case .ema(let decay):
                        if i == 0 {
                            try ChunkAccumulator.start(from: bytes, dtype: job.dtype, into: slice)
                        } else {
                            try ChunkAccumulator.emaStep(bytes, dtype: job.dtype, into: slice, decay: decay)
                        }
                    }
                    at += piece.length
                }
            }
            if case .uniform = combination {
                ChunkAccumulator.finishMean(acc, divisor: Double(job.inputs.count))
            }
            try ChunkAccumulator.encode(UnsafeBufferPointer(acc), dtype: job.dtype, into: job.output.prefix(job.length))
        } catch let e as CKStoreError {
            throw e
        } catch {
            throw CKStoreError(.badInput, "tensor '\(job.tensor)': cannot average \(job.dtype.rawValue) values: \(error)", cause: error)
        }
    }

    /// Hashes the computed segment and, unless a chunk row already has it with an intact blob,
    /// encodes and stores its blob (a missing or damaged blob is written again, as in `put`).
    func store(_ job: AverageJob, cache: CacheTarget) throws -> (ChunkRef, Bool) {
        let raw = job.output.bytes
        let hash = SHA256Digest.hash(raw)
        if let size = try cacheMetadata?.storedSize(ofChunk: hash),
            cache.blobs.holdsIntact(hash, storedSize: size, raw: raw, codec: reader.codec, scratch: &reader.fileBuffer)
        {
            return (ChunkRef(hash: hash, rawSize: raw.count, storedSize: size), false)
        }
        let encoded = try reader.codec.encode(raw, dtype: job.dtype, name: hash)
        let codec = reader.codec
        // An existing file is kept only when it decodes to exactly these bytes (SHA-256
        // checked); otherwise it is replaced.
        let (isNew, size) = try cache.blobs.put(hash, bytes: encoded.bytes) { existing in
            codec.isIntact(existing, name: hash, raw: raw)
        }
        // `size` is the blob file's size (new, rewritten or kept); commitDerived makes an
        // existing chunk row agree with it.
        return (ChunkRef(hash: hash, rawSize: raw.count, storedSize: size), isNew)
    }
}
