import Testing

@testable import CKStore

/// Codec 2 inside blob files: the writer's per-chunk choice, the header checks, damage reported
/// with the blob-file offset, and the `compression.float_entropy` setting.
@Suite("Exponent codec blobs") struct ExponentBlobTests {
    /// Encodes `raw` as a blob with `settings`, returning the file and header.
    static func blob(_ raw: [UInt8], _ dtype: DType, _ settings: BlobCodec.Settings = .init(floatEntropy: true)) throws -> (
        [UInt8], BlobHeader
    ) {
        let codec = BlobCodec(maxChunkSize: max(raw.count, 1), settings: settings)
        let (bytes, header) = try raw.withUnsafeBytes { try codec.encode($0, dtype: dtype, name: SHA256Digest.hash(raw)) }
        return (Array(bytes), header)
    }

    /// Decodes a blob file of `raw`'s chunk.
    static func decode(_ file: [UInt8], _ raw: [UInt8]) throws(CKStore.BlobDamage) -> [UInt8] {
        let codec = BlobCodec(maxChunkSize: max(raw.count, 1), settings: .init())
        let out = ByteBuffer(capacity: raw.count)
        let result: Result<Int, CKStore.BlobDamage> = file.withUnsafeBytes { f in
            Result { () throws(CKStore.BlobDamage) in try codec.decode(f, into: out, name: SHA256Digest.hash(raw), rehash: true) }
        }
        _ = try result.get()
        return Array(out.bytes)
    }

    /// `file` with its payload and header checksums recomputed (so only the codec's own checks
    /// can catch the damage).
    static func resealed(_ file: [UInt8]) -> [UInt8] {
        var f = file
        f.withUnsafeMutableBytes { b in
            var h = BlobHeader.decodeUnchecked(UnsafeRawBufferPointer(b))
            h.payloadChecksum = XXH64.hash(UnsafeRawBufferPointer(rebasing: b[BlobHeader.size...]))
            h.encode(into: b)
        }
        return f
    }

    @Test(arguments: [DType.f32, .bf16, .f16, .f64]) func weightChunksTakeCodec2WhenItIsSmallerAndReadBack(dtype: DType) throws {
        let w = dtype.shuffleLaneWidth
        var raw = ExponentCodecTests.weights(65536 / w, width: w == 2 ? 2 : w, seed: 4)
        if dtype == .f16 {
            raw = stride(from: 0, to: raw.count, by: 2).flatMap { i -> [UInt8] in
                let bf = UInt32(raw[i]) << 16 | UInt32(raw[i + 1]) << 24
                return withUnsafeBytes(of: Float16(Float(bitPattern: bf)).bitPattern.littleEndian) { Array($0) }
            }
        }
        let (file, header) = try Self.blob(raw, dtype)
        let (lz4File, lz4Header) = try Self.blob(raw, dtype, .init(floatEntropy: false))
        #expect(lz4Header.codec == .lz4)
        if header.codec == .exponentPlanes {
            #expect(file.count < lz4File.count && header.filter == .none && Int(header.laneWidth) == w)
        } else {
            #expect(file == lz4File, "codec 2 is kept only when smaller")
        }
        if dtype == .f32 || dtype == .bf16 { #expect(header.codec == .exponentPlanes) }
        #expect(try Self.decode(file, raw) == raw)
        #expect(try Self.decode(lz4File, raw) == raw, "LZ4 blobs still read with the entropy stage on")
    }

    @Test func codec2IsNeverTriedForIntegersOrWhenOff() throws {
        let raw = ExponentCodecTests.weights(16384, width: 4, seed: 2)
        #expect(try Self.blob(raw, .i32).1.codec != .exponentPlanes)
        #expect(try Self.blob(raw, .f32, .init(floatEntropy: false)).1.codec == .lz4)
        #expect(try Self.blob(raw, .f32, .init(minimumSavings: 2, floatEntropy: true)).1.codec == .none)
    }

    @Test func aDamagedCodec2PayloadIsBlobDamageWithAFileOffset() throws {
        let raw = ExponentCodecTests.weights(16384, width: 4, seed: 6)
        let (file, header) = try Self.blob(raw, .f32)
        try #require(header.codec == .exponentPlanes)
        let payload = Array(file[BlobHeader.size...])
        let plane = ExponentCodecTests.planeOffsets(payload, width: 4, count: raw.count)[3].offset
        var bad = file
        for i in 0..<Huffman.tableBytes { bad[BlobHeader.size + plane + 1 + i] = 0x11 }
        #expect(
            throws: CKStore.BlobDamage(
                offset: BlobHeader.size + plane + 1, reason: "plane 3: code lengths are over-subscribed (not a prefix code)")
        ) {
            try Self.decode(Self.resealed(bad), raw)
        }
        // Without resealing, the payload checksum catches it first.
        #expect(throws: CKStore.BlobDamage(offset: BlobHeader.size, reason: "payload checksum mismatch")) { try Self.decode(bad, raw) }
    }

    @Test func headerChecksOfCodec2NameTheField() throws {
        let raw = ExponentCodecTests.weights(16384, width: 4, seed: 8)
        let (file, _) = try Self.blob(raw, .f32)
        func problem(_ edit: (inout BlobHeader) -> Void) -> BlobHeader.Problem? {
            var f = file
            return f.withUnsafeMutableBytes { b -> BlobHeader.Problem? in
                var h = BlobHeader.decodeUnchecked(UnsafeRawBufferPointer(b))
                edit(&h)
                h.encode(into: b)
                if case .failure(let p) = BlobHeader.decode(UnsafeRawBufferPointer(b), fileSize: b.count) { return p }
                return nil
            }
        }
        #expect(problem { _ in } == nil)
        #expect(problem { $0.filter = .bitShuffle }?.offset == 6)
        #expect(problem { $0.laneWidth = 1 }?.offset == 7)
        #expect(problem { $0.rawLength = 100 }?.offset == 16)
    }

    @Test func theFloatEntropySettingParses() throws {
        #expect(!StoreConfiguration.default.floatEntropy && !BlobCodec.Settings().floatEntropy)
        let off = try StoreConfiguration.parse(Array(#"{"compression": {"float_entropy": "none"}}"#.utf8), source: "c.json")
        #expect(!off.floatEntropy && !off.codecSettings.floatEntropy)
        let on = try StoreConfiguration.parse(Array(#"{"compression": {"float_entropy": "huffman"}}"#.utf8), source: "c.json")
        #expect(on.floatEntropy)
        #expect(throws: CKStoreError.self) {
            _ = try StoreConfiguration.parse(Array(#"{"compression": {"float_entropy": "zstd"}}"#.utf8), source: "c.json")
        }
    }
}

extension BlobHeader {
    /// The fields of a version 2 header without any check (tests only).
    static func decodeUnchecked(_ b: UnsafeRawBufferPointer) -> BlobHeader {
        BlobHeader(
            codec: Codec(rawValue: b[5]) ?? .none, filter: ShuffleFilter(rawValue: b[6]) ?? .none, laneWidth: b[7],
            rawLength: Int(b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            payloadLength: Int(b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            payloadChecksum: b.loadUnaligned(fromByteOffset: 24, as: UInt64.self),
            address: (
                UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 32, as: UInt64.self)),
                UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 40, as: UInt64.self)),
                UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 48, as: UInt64.self))
            ))
    }
}
