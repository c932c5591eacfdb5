/// Turns raw chunk bytes into blob files (filter, compress, verify) and back (check, decode).
///
/// One codec per worker thread: it owns its scratch buffers, so encoding and decoding
/// allocate nothing per chunk.
final class BlobCodec {
    /// Compression settings.
    struct Settings: Sendable {
        /// LZ4 acceleration (1 = default speed/ratio, as `lz4 -1`; higher is faster).
        var acceleration: Int32 = 1
        /// A compressed chunk is kept only if it is at most this fraction of the raw size;
        /// otherwise the chunk is stored uncompressed (no filter).
        var minimumSavings: Double = 0.03
        /// Decode every compressed payload again and compare with the input before the blob
        /// counts (verify-before-acknowledge). Off only for benchmarks.
        var verifyAfterCompress: Bool = true
        /// The filter for floating-point tensors.
        var floatFilter: ShuffleFilter = .hybridShuffle
        /// The filter for multi-byte integer tensors.
        var integerFilter: ShuffleFilter = .byteShuffle
        /// Also try codec 2 (Huffman-coded exponent planes, `ExponentCodec`) on F16, BF16, F32
        /// and F64 chunks, and keep it when its payload is smaller than the LZ4 one.
        var floatEntropy: Bool = false
    }

    let settings: Settings
    private let filtered: ByteBuffer
    private let blob: ByteBuffer
    private let check: ByteBuffer
    /// The byte planes of a chunk tried with codec 2 (allocated on first use).
    private var planes: ByteBuffer?
    /// Scratch decode table of codec 2.
    private let huffmanTable: UnsafeMutablePointer<UInt16>

    /// Creates a codec for chunks of up to `maxChunkSize` raw bytes.
    init(maxChunkSize: Int, settings: Settings) {
        self.settings = settings
        filtered = ByteBuffer(capacity: maxChunkSize)
        blob = ByteBuffer(capacity: BlobHeader.size + max(LZ4.bound(maxChunkSize), maxChunkSize))
        check = ByteBuffer(capacity: maxChunkSize)
        huffmanTable = .allocate(capacity: Huffman.tableSize)
    }

    deinit {
        huffmanTable.deallocate()
    }

    /// Whether chunks of `dtype` also try codec 2.
    func triesEntropy(for dtype: DType) -> Bool {
        guard settings.floatEntropy else { return false }
        switch dtype {
        case .f16, .bf16, .f32, .f64: return true
        default: return false
        }
    }

    /// The filter and lane width used for a chunk of `dtype`.
    func filterChoice(for dtype: DType) -> (ShuffleFilter, Int) {
        let lane = dtype.shuffleLaneWidth
        if dtype.isFloatingPoint {
            // The hybrid filter pays off for 4- and 8-byte floats (noise-only low mantissa bytes);
            // 2-byte floats keep a full bit-shuffle, whose byte 0 still holds an exponent bit.
            if settings.floatFilter == .hybridShuffle && lane < 4 { return (.bitShuffle, lane) }
            return (settings.floatFilter, lane)
        }
        if lane > 1 { return (settings.integerFilter, lane) }
        return (.none, 1)
    }

    /// Encodes `raw`, the chunk named `name` (its SHA-256), as a complete version 2 blob file
    /// (header + payload) and returns a view of it, valid until the next call. Compressed
    /// payloads are decoded again and compared with the filtered input before returning (unless
    /// disabled), so a codec fault cannot reach disk.
    func encode(_ raw: UnsafeRawBufferPointer, dtype: DType, name: SHA256Digest) throws(CKStoreError) -> (
        bytes: UnsafeRawBufferPointer, header: BlobHeader
    ) {
        let (filter, lane) = filterChoice(for: dtype)
        let limit = Int(Double(raw.count) * (1 - settings.minimumSavings))
        let tryCompression = raw.count > 0 && limit > 0
        let payloadArea = UnsafeMutableRawBufferPointer(rebasing: blob.storage[BlobHeader.size...])
        var header = BlobHeader(
            codec: .none, filter: .none, laneWidth: 1, rawLength: raw.count, payloadLength: raw.count, payloadChecksum: 0,
            address: BlobHeader.address(of: name))
        // Codec 2 is planned first (split into planes, count symbols: cheap). LZ4 is skipped
        // when codec 2 fits and the chunk's low mantissa plane is noise (then LZ4 finds no
        // repeats beyond the exponent bits that codec 2 codes better); otherwise both run and
        // the smaller payload is kept.
        var plan: ExponentCodec.Plan? = nil
        if tryCompression && triesEntropy(for: dtype) {
            if planes == nil { planes = ByteBuffer(capacity: filtered.capacity) }
            plan = ExponentCodec.plan(raw, laneWidth: dtype.shuffleLaneWidth, planes: planes!.prefix(raw.count))
        }
        let skipLZ4 = plan.map { $0.lowPlaneIsNoise && $0.size <= limit } ?? false
        var source = raw
        if filter != .none && tryCompression && !skipLZ4 {
            Shuffle.apply(filter, laneWidth: lane, source: raw, destination: filtered.prefix(raw.count), scratch: check.storage)
            source = UnsafeRawBufferPointer(filtered.prefix(raw.count))
        }
        if tryCompression && !skipLZ4, let n = LZ4.compress(source, into: payloadArea, acceleration: settings.acceleration), n <= limit {
            header.codec = .lz4
            header.filter = filter
            header.laneWidth = UInt8(lane)
            header.payloadLength = n
        }
        if let plan, plan.size <= (header.codec == .lz4 ? header.payloadLength - 1 : limit), plan.size + 8 <= payloadArea.count {
            header.codec = .exponentPlanes
            header.filter = .none
            header.laneWidth = UInt8(plan.width)
            header.payloadLength = ExponentCodec.write(plan, raw: raw, planes: planes!.prefix(raw.count), into: payloadArea)
        }
        if header.codec == .lz4 && settings.verifyAfterCompress {
            let compressed = UnsafeRawBufferPointer(rebasing: payloadArea[0..<header.payloadLength])
            let decoded = LZ4.decompress(compressed, into: check.prefix(raw.count))
            guard decoded == raw.count, memcmp(check.storage.baseAddress!, source.baseAddress!, raw.count) == 0 else {
                throw CKStoreError(.integrity, "LZ4 round trip check failed for a \(raw.count)-byte chunk: refusing to store it")
            }
        } else if header.codec == .exponentPlanes && settings.verifyAfterCompress {
            let coded = UnsafeRawBufferPointer(rebasing: payloadArea[0..<header.payloadLength])
            if let problem = ExponentCodec.verify(
                coded, laneWidth: Int(header.laneWidth), raw: raw, original: UnsafeRawBufferPointer(planes!.prefix(raw.count)),
                scratch: check.prefix(raw.count), table: huffmanTable)
            {
                throw CKStoreError(
                    .integrity, "exponent-planes round trip check failed for a \(raw.count)-byte chunk (\(problem)): refusing to store it")
            }
        } else if header.codec == .none && raw.count > 0 {
            payloadArea.baseAddress!.copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        }
        let payload = UnsafeRawBufferPointer(rebasing: payloadArea[0..<header.payloadLength])
        header.payloadChecksum = XXH64.hash(payload)
        header.encode(into: blob.storage)
        blob.count = BlobHeader.size + header.payloadLength
        return (blob.bytes, header)
    }

    /// The checks every read makes before decoding: the header (field ranges, and in version 2
    /// its checksum), the identity (a version 2 header must record `name`) and the payload
    /// checksum. Returns the header and the payload.
    func checkedPayload(_ file: UnsafeRawBufferPointer, name: SHA256Digest) throws(BlobDamage) -> (BlobHeader, UnsafeRawBufferPointer) {
        let header: BlobHeader
        switch BlobHeader.decode(file, fileSize: file.count) {
        case .success(let h): header = h
        case .failure(let p): throw BlobDamage(offset: p.offset, reason: p.reason)
        }
        if let p = header.checkIdentity(name) { throw BlobDamage(offset: p.offset, reason: p.reason) }
        let payloadOffset = header.encodedSize
        let payload = UnsafeRawBufferPointer(rebasing: file[payloadOffset...])
        guard XXH64.hash(payload) == header.payloadChecksum else {
            throw BlobDamage(offset: payloadOffset, reason: "payload checksum mismatch")
        }
        return (header, payload)
    }

    /// Checks and decodes the blob file `file`, read under the name `name`, into `destination`
    /// (exactly the raw length): header bounds, identity (version 2), the payload checksum and
    /// the decoded length; with `rehash`, also that the SHA-256 of the result is `name`.
    ///
    /// - Returns: the raw length.
    /// - Throws: `BlobDamage` naming the byte offset of the first failed check.
    func decode(_ file: UnsafeRawBufferPointer, into destination: ByteBuffer, name: SHA256Digest, rehash: Bool) throws(BlobDamage)
        -> Int
    {
        let (header, payload) = try checkedPayload(file, name: name)
        let payloadOffset = header.encodedSize
        guard header.rawLength <= destination.capacity else {
            throw BlobDamage(offset: 8, reason: "raw length \(header.rawLength) exceeds the expected chunk size \(destination.capacity)")
        }
        let out = destination.prefix(header.rawLength)
        switch header.codec {
        case .none:
            if header.rawLength > 0 { out.baseAddress!.copyMemory(from: payload.baseAddress!, byteCount: header.rawLength) }
        case .lz4:
            let target = header.filter == .none ? out : filtered.prefix(header.rawLength)
            guard LZ4.decompress(payload, into: target) == header.rawLength else {
                throw BlobDamage(offset: payloadOffset, reason: "LZ4 payload does not decode to \(header.rawLength) bytes")
            }
            if header.filter != .none {
                Shuffle.invert(
                    header.filter, laneWidth: Int(header.laneWidth), source: UnsafeRawBufferPointer(target), destination: out,
                    scratch: check.storage)
            }
        case .exponentPlanes:
            do {
                try ExponentCodec.decode(
                    payload, laneWidth: Int(header.laneWidth), into: out, planes: filtered.prefix(header.rawLength),
                    table: huffmanTable)
            } catch {
                throw BlobDamage(offset: payloadOffset + error.offset, reason: error.reason)
            }
        }
        destination.count = header.rawLength
        if rehash {
            let actual = SHA256Digest.hash(UnsafeRawBufferPointer(out))
            guard actual == name else {
                throw BlobDamage(offset: payloadOffset, reason: "decoded bytes hash to \(actual.hex.prefix(16))…, not the blob's name")
            }
        }
        return header.rawLength
    }

    /// Whether `file` is a good blob of the chunk `raw` named `name`, as a put must know before
    /// it counts an existing blob as stored. A version 2 blob is checked as a read checks it
    /// (header, identity, payload checksum, raw length) without decoding; a version 1 blob,
    /// whose header records no identity, is decoded and compared with `raw` byte for byte.
    func isIntact(_ file: UnsafeRawBufferPointer, name: SHA256Digest, raw: UnsafeRawBufferPointer) -> Bool {
        guard let (header, _) = try? checkedPayload(file, name: name), header.rawLength == raw.count else { return false }
        if header.address != nil { return true }
        let decoded = ByteBuffer(capacity: raw.count)
        guard (try? decode(file, into: decoded, name: name, rehash: false)) == raw.count else { return false }
        return raw.count == 0 || memcmp(decoded.storage.baseAddress!, raw.baseAddress!, raw.count) == 0
    }
}

/// A blob that failed a check on read: the byte offset in the blob file and the reason.
struct BlobDamage: Error, Equatable, CustomStringConvertible {
    var offset: Int
    var reason: String
    var description: String { "byte \(offset): \(reason)" }
}

#if canImport(Glibc)
    import Glibc
#endif
