/// A chunk to fetch and decode, with the context its error messages need.
struct ChunkFetch: Sendable {
    let chunk: ChunkRef
    let tensor: String
    let buffer: ByteBuffer
    /// Where the worker writes the decoded chunk itself, when the output allows it.
    let outputOffset: Int?
}

/// A worker's state for reading chunks: its codec scratch and its blob read buffer.
final class ChunkReaderWorker {
    let codec: BlobCodec
    var fileBuffer: ByteBuffer
    let blobs: any BlobStore
    let verify: Bool

    init(chunkSize: Int, blobs: any BlobStore, settings: BlobCodec.Settings, verify: Bool) {
        codec = BlobCodec(maxChunkSize: chunkSize, settings: settings)
        fileBuffer = ByteBuffer(capacity: BlobHeader.size + LZ4.bound(chunkSize))
        self.blobs = blobs
        self.verify = verify
    }

    /// Reads, checks and decodes one chunk into `buffer`. Every read checks the blob's size
    /// against the row, its header, its identity (a version 2 header records the chunk's
    /// address, which must be the name it was read under), the payload checksum and the
    /// decoded length; with `verify`, also the SHA-256 of the decoded bytes.
    /// - Throws: `.integrity` naming `label`, the tensor, the blob and the byte offset.
    func fetch(_ chunk: ChunkRef, tensor: String, label: String, into buffer: ByteBuffer) throws(CKStoreError) {
        let codec = self.codec
        let verify = self.verify
        try fetch(chunk, tensor: tensor, label: label) { file throws -> Int in
            try codec.decode(file, into: buffer, name: chunk.hash, rehash: verify)
        }
    }

    /// `fetch(_:tensor:label:into:)` with the decoding step given: `decode` gets the blob file
    /// once its size matches the row and returns the raw length; the checks and error messages
    /// are the same.
    func fetch(
        _ chunk: ChunkRef, tensor: String, label: String, decode: (UnsafeRawBufferPointer) throws -> Int
    ) throws(CKStoreError) {
        do {
            let n = try blobs.withBytes(of: chunk.hash, scratch: &fileBuffer) { file throws -> Int in
                guard file.count == chunk.storedSize else {
                    throw CKStoreError(
                        .integrity,
                        "\(label): tensor '\(tensor)': blob \(chunk.hash.hex) is \(file.count) bytes, expected \(chunk.storedSize)")
                }
                return try decode(file)
            }
            guard n == chunk.rawSize else {
                throw CKStoreError(
                    .integrity, "\(label): tensor '\(tensor)': blob \(chunk.hash.hex) decodes to \(n) bytes, expected \(chunk.rawSize)")
            }
        } catch let e as CKStoreError {
            throw e
        } catch BlobStoreError.notFound {
            throw CKStoreError(.integrity, "\(label): tensor '\(tensor)': blob \(chunk.hash.hex) is missing")
        } catch BlobStoreError.tooLarge(_, let size) {
            throw CKStoreError(
                .integrity, "\(label): tensor '\(tensor)': blob \(chunk.hash.hex) is \(size) bytes, expected \(chunk.storedSize)")
        } catch let e as BlobDamage {
            throw CKStoreError(.integrity, "\(label): tensor '\(tensor)': blob \(chunk.hash.hex) is damaged at \(e)", cause: e)
        } catch {
            throw CKStoreError(.environment, "\(label): tensor '\(tensor)': cannot read blob \(chunk.hash.hex): \(error)", cause: error)
        }
    }
}

/// What `get` did, for the summary line.
public struct GetReport: Sendable {
    /// Bytes written.
    public let bytesOut: Int
    /// Wall time in seconds.
    public let seconds: Double
}

extension Store {
    /// Writes the exact safetensors file a manifest describes: the length prefix, the original
    /// header bytes, then every tensor's chunks in data-section order. Chunks are read and
    /// decoded (and checked) in parallel, written in order.
    ///
    /// The manifest is loaded under the shared store lock, in one read transaction; when a
    /// RUN@STEP ref's content was replaced since it was resolved (a concurrent `put --force`),
    /// the step is resolved again there, so a reader gets the old or the new content, whole,
    /// and never a false "does not exist". The blobs are then read under the same lock, which
    /// keeps gc and rm out until the file is written.
    ///
    /// - Throws: `.integrity` when a blob is missing or damaged (naming the snapshot, tensor
    ///   and blob); for a file target nothing is left behind on failure.
    public func restore(_ resolved: ResolvedRef, to target: OutputTarget) throws(CKStoreError) -> GetReport {
        let start = nowMilliseconds()
        return try withLock(exclusive: false) { () throws(CKStoreError) -> GetReport in
            let (ref, manifest) = try currentManifest(of: resolved)
            let output = try OutputWriter(target)
            output.progress = progressMeter(total: manifest.fileLength)
            try write(.safetensors(manifest), label: ref.label, to: output)
            try output.commit()
            return GetReport(bytesOut: output.bytesWritten, seconds: Double(nowMilliseconds() - start) / 1000)
        }
    }

    /// Writes the exact file `content` describes to `output` (not committed): a safetensors
    /// file's length prefix and header, then the chunks of every tensor (or of an opaque file)
    /// in order, read and checked in parallel.
    func write(_ content: FileContent, label: String, to output: OutputWriter) throws(CKStoreError) {
        let manifest: Manifest
        switch content {
        case .safetensors(let m):
            manifest = m
            try output.write(SafetensorsHeader.lengthPrefix(manifest.headerBytes.count))
            try output.write(manifest.headerBytes)
        case .bytes(let file):
            manifest = Manifest(headerBytes: [], dataLength: file.size, tensors: [file.pseudoTensor], recordedDigest: file.digest)
        }
        if let sink = output.positional {
            // The workers have written each chunk when it is delivered: count it.
            try forEachChunk(of: manifest, label: label, writingTo: (sink, output.bytesWritten)) { (bytes) throws(CKStoreError) in
                output.advance(by: bytes.count)
            }
        } else {
            try forEachChunk(of: manifest, label: label) { (bytes) throws(CKStoreError) in try output.write(bytes) }
        }
    }

    /// Calls `body` with every chunk of `manifest`, decoded and checked, in data-section order.
    /// Workers fetch ahead in parallel; memory stays bounded by (2 × workers + 1) chunks.
    /// With `writingTo` (an output file and the offset of the data section in it), the workers
    /// write each decoded chunk at its place themselves and `body` only sees it afterwards.
    func forEachChunk(
        of manifest: Manifest, label: String, writingTo output: (PositionalOutput, Int)? = nil,
        _ body: (UnsafeRawBufferPointer) throws(CKStoreError) -> Void
    ) throws(CKStoreError) {
        let chunkSize = max(configuration.chunkSize, manifest.tensors.flatMap(\.chunks).map(\.rawSize).max() ?? 0)
        let blobs = self.blobs
        let settings = configuration.codecSettings
        let verify = verifiesSHA256OnRead
        let workers = configuration.effectiveWorkers
        let pipeline = OrderedPipeline<ChunkFetch, ByteBuffer, ChunkReaderWorker>(
            workers: workers, capacity: workers * 2,
            makeState: { ChunkReaderWorker(chunkSize: chunkSize, blobs: blobs, settings: settings, verify: verify) },
            process: { worker, job in
                try worker.fetch(job.chunk, tensor: job.tensor, label: label, into: job.buffer)
                if let sink = output?.0, let offset = job.outputOffset { try sink.write(job.buffer.bytes, at: offset) }
                return job.buffer
            })
        defer { pipeline.shutdown() }
        var pool: [ByteBuffer] = []
        var failure: CKStoreError?
        let deliver: (ByteBuffer) throws -> Void = { buffer in
            do throws(CKStoreError) {
                try body(buffer.bytes)
            } catch {
                failure = error
                throw error
            }
            pool.append(buffer)
        }
        do {
            var offset = output?.1 ?? 0
            for tensor in manifest.tensors {
                for chunk in tensor.chunks {
                    let buffer = pool.popLast() ?? ByteBuffer(capacity: chunkSize)
                    // Up to `capacity` jobs wait in the pipeline: start reading their blobs now.
                    blobs.prefetch(chunk.hash)
                    let job = ChunkFetch(chunk: chunk, tensor: tensor.info.name, buffer: buffer, outputOffset: output == nil ? nil : offset)
                    try pipeline.submit(job, deliver: deliver)
                    offset += chunk.rawSize
                }
            }
            try pipeline.drain(deliver)
        } catch {
            pipeline.cancel()
            throw failure ?? CKStoreError.wrap(error, context: "read \(label)")
        }
    }
}
