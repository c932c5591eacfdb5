import Testing

@testable import CKStore

/// Codec 2 (Huffman-coded exponent planes): round trips on edge cases, and damaged payloads
/// that must be reported with a byte offset, never trap, read out of bounds or hang.
@Suite("Exponent codec") struct ExponentCodecTests {
    /// Weight-like values (sums of uniforms, scale `scale`) as little-endian bytes of width `w`
    /// (2 = bfloat16, 4 = float32, 8 = float64).
    static func weights(_ n: Int, width w: Int, seed: UInt64 = 1, scale: Double = 0.02) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        var out: [UInt8] = []
        out.reserveCapacity(n * w)
        for _ in 0..<n {
            var s = 0.0
            for _ in 0..<4 { s += Double(rng.next() >> 11) / Double(1 << 53) }
            let v = (s - 2) * scale
            switch w {
            case 2: withUnsafeBytes(of: UInt16(Float(v).bitPattern >> 16).littleEndian) { out += $0 }
            case 4: withUnsafeBytes(of: Float(v).bitPattern.littleEndian) { out += $0 }
            default: withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 }
            }
        }
        return out
    }

    /// Encodes `raw` with lane width `w` and no size limit.
    static func encode(_ raw: [UInt8], width w: Int) -> [UInt8] {
        var dst = [UInt8](repeating: 0, count: 2 * raw.count + 2048)
        var planes = [UInt8](repeating: 0, count: raw.count)
        let n = raw.withUnsafeBytes { r in
            planes.withUnsafeMutableBytes { p in
                dst.withUnsafeMutableBytes { d in ExponentCodec.encode(r, laneWidth: w, planes: p, into: d, limit: Int.max) }
            }
        }
        return Array(dst[0..<n!])
    }

    /// Decodes `payload` into `count` bytes.
    static func decode(_ payload: [UInt8], width w: Int, count: Int) throws(Huffman.Damage) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var planes = [UInt8](repeating: 0, count: count)
        let table = UnsafeMutablePointer<UInt16>.allocate(capacity: Huffman.tableSize)
        defer { table.deallocate() }
        let result: Result<Void, Huffman.Damage> = payload.withUnsafeBytes { p in
            out.withUnsafeMutableBytes { o in
                planes.withUnsafeMutableBytes { s in
                    Result { () throws(Huffman.Damage) in try ExponentCodec.decode(p, laneWidth: w, into: o, planes: s, table: table) }
                }
            }
        }
        try result.get()
        return out
    }

    /// The offset and mode of each plane of a payload for `count` raw bytes (walks the layout).
    static func planeOffsets(_ payload: [UInt8], width w: Int, count: Int) -> [(offset: Int, mode: UInt8)] {
        let n = count / w
        var o = 0
        var result: [(Int, UInt8)] = []
        for _ in 0..<w {
            let mode = payload[o]
            result.append((o, mode))
            switch mode {
            case 0: o += 1 + n
            case 1: o += 2
            default:
                var total = 1 + Huffman.fixedBytes
                for k in 0..<4 {
                    let at = o + 1 + Huffman.tableBytes + 4 * k
                    total += Int(payload[at]) | Int(payload[at + 1]) << 8 | Int(payload[at + 2]) << 16 | Int(payload[at + 3]) << 24
                }
                o += total
            }
        }
        return result
    }

    @Test(arguments: [2, 4, 8]) func weightLikeChunksRoundTripAndCodeTheExponentPlane(width w: Int) throws {
        for n in [0, 1, 2, 3, 4, 5, 7, 9, 17, 33, 1001, 4099, 50_000] {
            let raw = Self.weights(n, width: w, seed: UInt64(n))
            let payload = Self.encode(raw, width: w)
            #expect(try Self.decode(payload, width: w, count: raw.count) == raw, "n = \(n), width \(w)")
            if n >= 1001 {
                // The top (exponent) plane is Huffman-coded, and the payload is smaller than raw.
                #expect(Self.planeOffsets(payload, width: w, count: raw.count)[w - 1].mode == ExponentCodec.modeHuffman)
                #expect(payload.count < raw.count)
            }
        }
    }

    @Test(arguments: [2, 4, 8]) func chunksWhoseLengthIsNotAMultipleOfTheLaneKeepTheirTail(width w: Int) throws {
        for extra in 1..<w {
            for n in [0, 1, 6, 513] {
                var raw = Self.weights(n, width: w, seed: 9)
                raw += (0..<extra).map { UInt8(0xA0 + $0) }
                let payload = Self.encode(raw, width: w)
                #expect(Array(payload.suffix(extra)) == Array(raw.suffix(extra)))
                #expect(try Self.decode(payload, width: w, count: raw.count) == raw)
            }
        }
    }

    @Test func allEqualExponentsMakeAConstantPlane() throws {
        // float32 values in [1, 2): one exponent (0x7F), the sign 0.
        var rng = SplitMix64(seed: 3)
        let raw = (0..<4096).flatMap { _ -> [UInt8] in
            withUnsafeBytes(of: (1 + Float(rng.next() >> 40) / Float(1 << 24)).bitPattern.littleEndian) { Array($0) }
        }
        let payload = Self.encode(raw, width: 4)
        let planes = Self.planeOffsets(payload, width: 4, count: raw.count)
        #expect(planes[3].mode == ExponentCodec.modeConstant && payload[planes[3].offset + 1] == 0x7F)
        #expect(try Self.decode(payload, width: 4, count: raw.count) == raw)
    }

    @Test func allTwoHundredFiftySixSymbolsAreCodedWithLengthsWithinTheLimit() throws {
        // A skewed distribution over all 256 byte values (Fibonacci-like counts force a deep
        // tree that must be cut to 11 bits) in the top byte of float32 lanes.
        var raw: [UInt8] = []
        var rng = SplitMix64(seed: 5)
        for s in 0..<256 {
            let copies = s < 24 ? ((1 << (23 - s)) >> 8) + 1 : 1
            for _ in 0..<copies { raw += [UInt8(truncatingIfNeeded: rng.next()), 0, 0, UInt8(s)] }
        }
        let payload = Self.encode(raw, width: 4)
        let planes = Self.planeOffsets(payload, width: 4, count: raw.count)
        // Bytes 1 and 2 are zero apart from the rotated-in bits; the top plane holds all 256 values.
        #expect(planes[3].mode == ExponentCodec.modeHuffman)
        #expect(try Self.decode(payload, width: 4, count: raw.count) == raw)
    }

    @Test func lengthLimitingKeepsAValidCompleteCode() {
        var histogram = [UInt32](repeating: 0, count: 256)
        var a: UInt32 = 1
        var b: UInt32 = 1
        for s in 0..<40 {
            histogram[s] = a
            (a, b) = (b, a &+ b)
        }
        var lengths = [UInt8](repeating: 0, count: 256)
        histogram.withUnsafeBufferPointer { h in
            lengths.withUnsafeMutableBufferPointer { Huffman.buildLengths(h.baseAddress!, into: $0.baseAddress!) }
        }
        #expect(lengths.max()! == UInt8(Huffman.maxLength))
        #expect(lengths.withUnsafeBufferPointer { Huffman.validate($0.baseAddress!) } == nil)
        #expect(lengths[39] <= lengths[0], "more frequent symbols get codes no longer than rarer ones")
    }

    @Test func specialValuesRoundTripInEveryWidth() throws {
        let f32: [Float] = [
            .nan, -.nan, .infinity, -.infinity, 0, -0, .leastNonzeroMagnitude, -.leastNormalMagnitude, .greatestFiniteMagnitude, 1e-40, 3,
        ]
        let f64: [Double] = [.nan, .infinity, -.infinity, 0, -0, .leastNonzeroMagnitude, 4.9e-320, .greatestFiniteMagnitude, -1]
        var raw4: [UInt8] = []
        var raw2: [UInt8] = []
        var raw8: [UInt8] = []
        for _ in 0..<50 {
            for v in f32 {
                withUnsafeBytes(of: v.bitPattern.littleEndian) { raw4 += $0 }
                withUnsafeBytes(of: UInt16(v.bitPattern >> 16).littleEndian) { raw2 += $0 }  // bfloat16
                withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { raw2 += $0 }  // float16
            }
            for v in f64 { withUnsafeBytes(of: v.bitPattern.littleEndian) { raw8 += $0 } }
        }
        #expect(try Self.decode(Self.encode(raw4, width: 4), width: 4, count: raw4.count) == raw4)
        #expect(try Self.decode(Self.encode(raw2, width: 2), width: 2, count: raw2.count) == raw2)
        #expect(try Self.decode(Self.encode(raw8, width: 8), width: 8, count: raw8.count) == raw8)
    }

    // MARK: - Damaged payloads

    /// A float32 payload of 4096 weights whose exponent plane is Huffman-coded, and that
    /// plane's offset.
    static func codedSample() -> (raw: [UInt8], payload: [UInt8], plane: Int) {
        let raw = weights(4096, width: 4, seed: 11)
        let payload = encode(raw, width: 4)
        let planes = planeOffsets(payload, width: 4, count: raw.count)
        precondition(planes[3].mode == ExponentCodec.modeHuffman)
        return (raw, payload, planes[3].offset)
    }

    /// Expects decoding `payload` to fail with a damage offset inside the payload whose reason
    /// contains `words`.
    static func expectDamage(_ payload: [UInt8], count: Int, _ words: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try decode(payload, width: 4, count: count)
            Issue.record("damaged payload decoded without an error (\(words))", sourceLocation: sourceLocation)
        } catch {
            #expect(error.offset >= 0 && error.offset <= payload.count, sourceLocation: sourceLocation)
            #expect(words.isEmpty || error.reason.contains(words), "\(error.reason)", sourceLocation: sourceLocation)
        }
    }

    @Test func badCodeLengthTablesAreDamage() {
        let (raw, good, plane) = Self.codedSample()
        let table = plane + 1
        var zero = good
        for i in 0..<Huffman.tableBytes { zero[table + i] = 0 }
        Self.expectDamage(zero, count: raw.count, "at least 2 are needed")
        var one = zero
        one[table] = 0x01
        Self.expectDamage(one, count: raw.count, "at least 2 are needed")
        var over = good
        for i in 0..<Huffman.tableBytes { over[table + i] = 0x11 }
        Self.expectDamage(over, count: raw.count, "over-subscribed")
        var long = good
        long[table + 5] = 0xC0 | (long[table + 5] & 0x0F)
        Self.expectDamage(long, count: raw.count, "exceeds 11")
        var incomplete = zero
        incomplete[table] = 0x22  // two codes of length 2: half the code space unused
        Self.expectDamage(incomplete, count: raw.count, "incomplete")
        #expect(zero.count == good.count)
    }

    @Test func streamLengthsThatOverflowOrExceedThePayloadAreDamage() {
        let (raw, good, plane) = Self.codedSample()
        let lengths = plane + 1 + Huffman.tableBytes
        for k in 0..<4 {
            var huge = good
            for i in 0..<4 { huge[lengths + 4 * k + i] = 0xFF }
            Self.expectDamage(huge, count: raw.count, "stream \(k) length")
        }
        var shifted = good
        shifted[lengths] &+= 1  // stream 0 one byte longer: the others move and the tail is short
        Self.expectDamage(shifted, count: raw.count, "")
    }

    @Test func truncatedPayloadsAreDamageAtEveryLength() {
        let (raw, good, _) = Self.codedSample()
        for cut in stride(from: 0, to: good.count, by: max(1, good.count / 700)) {
            Self.expectDamage(Array(good[0..<cut]), count: raw.count, "")
        }
        Self.expectDamage(Array(good.dropLast()), count: raw.count, "")
        Self.expectDamage(good + [0], count: raw.count, "after its planes")
    }

    @Test func streamsThatRunPastTheirEndOrLeaveBytesOverAreDamage() {
        let (raw, good, plane) = Self.codedSample()
        let lengths = plane + 1 + Huffman.tableBytes
        let first = lengths + 16
        let n0 = Int(good[lengths]) | Int(good[lengths + 1]) << 8
        // Stream 0 loses its last byte (length and bytes): its symbols need bits it lacks.
        var short = good
        short.remove(at: first + n0 - 1)
        short[lengths] = UInt8((n0 - 1) & 0xFF)
        short[lengths + 1] = UInt8((n0 - 1) >> 8)
        Self.expectDamage(short, count: raw.count, "stream 0")
        // Stream 0 gains a byte it does not use.
        var long = good
        long.insert(0, at: first + n0)
        long[lengths] = UInt8((n0 + 1) & 0xFF)
        long[lengths + 1] = UInt8((n0 + 1) >> 8)
        Self.expectDamage(long, count: raw.count, "left over")
    }

    @Test func aSymbolCountThatDoesNotMatchIsDamage() {
        let (raw, good, _) = Self.codedSample()
        Self.expectDamage(good, count: raw.count + 4, "")
        Self.expectDamage(good, count: raw.count - 4, "")
        Self.expectDamage(good, count: 0, "")
    }

    @Test func unknownPlaneModesAreDamage() {
        let (raw, good, _) = Self.codedSample()
        var bad = good
        bad[0] = 7
        Self.expectDamage(bad, count: raw.count, "unknown mode 7 of plane 0")
        Self.expectDamage([], count: raw.count, "payload is empty")
    }

    @Test func randomCorruptionNeverTrapsAndDamageStaysInBounds() {
        let (raw, good, plane) = Self.codedSample()
        var rng = SplitMix64(seed: 99)
        var detected = 0
        for round in 0..<1500 {
            var bad = good
            let flips = 1 + Int(rng.next() % 4)
            for _ in 0..<flips {
                // Half of the rounds aim at the coded plane's table, lengths and first stream bytes.
                let span = round % 2 == 0 ? good.count : min(good.count - plane, Huffman.fixedBytes + 64)
                let base = round % 2 == 0 ? 0 : plane
                bad[base + Int(rng.next() % UInt64(span))] ^= UInt8(1 + rng.next() % 255)
            }
            if round % 5 == 0 { bad = Array(bad[0..<Int(rng.next() % UInt64(bad.count))]) }
            do {
                let out = try Self.decode(bad, width: 4, count: raw.count)
                #expect(out.count == raw.count)
            } catch {
                detected += 1
                #expect(error.offset >= 0 && error.offset <= bad.count)
            }
        }
        #expect(detected > 300, "most corruptions of the coded plane's structure are detected")
    }
}
