import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// Tests of the shuffle filters: round trips, the exact documented layouts, and tails.
@Suite struct ShuffleTests {
    /// Runs `Shuffle.apply` on an array.
    static func apply(_ filter: ShuffleFilter, _ width: Int, _ input: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: input.count)
        input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in Shuffle.apply(filter, laneWidth: width, source: src, destination: dst) }
        }
        return out
    }

    /// Runs `Shuffle.invert` on an array.
    static func invert(_ filter: ShuffleFilter, _ width: Int, _ input: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: input.count)
        input.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in Shuffle.invert(filter, laneWidth: width, source: src, destination: dst) }
        }
        return out
    }

    /// A deliberately naive, bit-by-bit implementation of the documented layouts (independent of the
    /// vector kernels), used as the oracle.
    static func reference(_ filter: ShuffleFilter, _ w: Int, _ input: [UInt8]) -> [UInt8] {
        var out = input
        switch filter {
        case .none:
            break
        case .byteShuffle:
            let n = input.count / w
            for b in 0..<w {
                for i in 0..<n { out[b * n + i] = input[i * w + b] }
            }
        case .bitShuffle:
            let g = input.count / (8 * w)
            for p in 0..<(8 * w) {
                let b = p / 8
                let j = p % 8
                for q in 0..<g {
                    var v: UInt8 = 0
                    for i in 0..<8 {
                        let bit = (input[(8 * q + i) * w + b] >> j) & 1
                        v |= bit << i
                    }
                    out[p * g + q] = v
                }
            }
        case .hybridShuffle:
            if w == 1 { return reference(.bitShuffle, 1, input) }
            out = reference(.byteShuffle, w, input)
            let n = input.count / w
            let region = (w / 2 * n)..<(w * n)
            out.replaceSubrange(region, with: reference(.bitShuffle, 1, Array(out[region])))
        }
        return out
    }

    /// Parses space-separated hex bytes, e.g. `"00 ff 3f"`.
    static func hex(_ s: String) -> [UInt8] {
        s.split(separator: " ").map { UInt8($0, radix: 16)! }
    }

    /// Every filter paired with every lane width.
    static let allFilterWidths: [(ShuffleFilter, Int)] = ShuffleFilter.allCases.flatMap { f in [1, 2, 4, 8].map { (f, $0) } }

    /// `invert(apply(x)) == x` for every filter, lane width and size, including 4 MiB + 3.
    @Test(arguments: ShuffleTests.allFilterWidths)
    func roundTripIsIdentity(filter: ShuffleFilter, width: Int) {
        var rng = SplitMix64(seed: 0x5EED_0000 &+ UInt64(filter.rawValue) &* 16 &+ UInt64(width))
        for size in [0, 1, 7, 8, 63, 64, 65, 4096, (4 << 20) + 3] {
            let input = rng.bytes(size)
            let shuffled = Self.apply(filter, width, input)
            let restored = Self.invert(filter, width, shuffled)
            #expect(restored == input, "\(filter) W=\(width) size \(size)")
        }
    }

    /// The vector kernels produce exactly the documented layout (naive oracle), around every block and chunk boundary.
    @Test(arguments: ShuffleTests.allFilterWidths)
    func matchesReferenceLayout(filter: ShuffleFilter, width: Int) {
        var rng = SplitMix64(seed: 0xABCD &+ UInt64(filter.rawValue) &* 16 &+ UInt64(width))
        // Sizes around the 16-element, 128-element and scratch-chunk (1024-element) boundaries,
        // with and without trailing bytes.
        let elementCounts = [0, 1, 8, 15, 16, 17, 120, 127, 128, 129, 136, 1000, 1024, 1152, 2048 + 128 + 56, 3001]
        for n in elementCounts {
            for extra in [0, width - 1, 8 * width - 1] where extra >= 0 {
                let input = rng.bytes(n * width + extra)
                let expected = Self.reference(filter, width, input)
                #expect(Self.apply(filter, width, input) == expected, "\(filter) W=\(width) n=\(n)+\(extra)")
                #expect(Self.invert(filter, width, expected) == input, "\(filter) W=\(width) n=\(n)+\(extra)")
            }
        }
    }

    /// Float32 weight-like data through all filters matches the oracle in both directions.
    @Test func weightLikeDataMatchesReference() {
        // Realistic float32 data through the vector paths (many 128-element blocks and chunks).
        var rng = SplitMix64(seed: 7)
        var floats = [Float]()
        for _ in 0..<50_000 { floats.append(Float(Int64(bitPattern: rng.next()) >> 40) * 1e-9) }
        let input = floats.withUnsafeBytes { [UInt8]($0) }
        for filter in ShuffleFilter.allCases {
            for width in [1, 2, 4, 8] {
                let expected = Self.reference(filter, width, input)
                #expect(Self.apply(filter, width, input) == expected, "\(filter) W=\(width)")
                #expect(Self.invert(filter, width, expected) == input, "\(filter) W=\(width)")
            }
        }
    }

    /// 8 float32 values: 1, 2, −1, 0.5, 0, 3, −2, 1.5 (little-endian bytes).
    static let eightFloats = Self.hex(
        "00 00 80 3f 00 00 00 40 00 00 80 bf 00 00 00 3f 00 00 00 00 00 00 40 40 00 00 00 c0 00 00 c0 3f")

    /// Pins the byte-shuffle layout on 8 hand-written float32 values.
    @Test func byteShuffleKnownAnswerFloat32() {
        #expect(
            Self.eightFloats.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                == [1, 2, -1, 0.5, 0, 3, -2, 1.5])
        let expected = Self.hex(
            "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 80 00 80 00 00 40 00 c0 3f 40 bf 3f 00 40 c0 3f")
        #expect(Self.apply(.byteShuffle, 4, Self.eightFloats) == expected)
        #expect(Self.invert(.byteShuffle, 4, expected) == Self.eightFloats)
    }

    /// Pins the bit-plane layout on 8 hand-written float32 values.
    @Test func bitShuffleKnownAnswerFloat32() {
        // 32 planes of 1 byte. Plane 8·b + j, bit i = bit j of byte b of float i.
        // Byte 2 = 80 00 80 00 00 40 00 c0: plane 22 (bit 6) = floats 5, 7 → 0xa0; plane 23 (bit 7)
        // = floats 0, 2, 7 → 0x85. Byte 3 = 3f 40 bf 3f 00 40 c0 3f: bits 0…5 set in floats 0, 2, 3, 7
        // → 0x8d; bit 6 in floats 1, 5, 6 → 0x62; bit 7 in floats 2, 6 → 0x44.
        let expected = Self.hex(
            "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 a0 85 8d 8d 8d 8d 8d 8d 62 44")
        #expect(Self.apply(.bitShuffle, 4, Self.eightFloats) == expected)
        #expect(Self.invert(.bitShuffle, 4, expected) == Self.eightFloats)
    }

    /// Pins the LSB-first packing across plane bytes and the verbatim tail (width 2).
    @Test func bitShuffleKnownAnswerMultiBytePlanesAndTail() {
        // 16 little-endian UInt16 values 0…15 and 3 trailing bytes: 2 bytes per plane, element i at
        // bit i % 8 of plane byte i / 8; trailing bytes copied verbatim.
        var input = [UInt8]()
        for i in 0..<16 { input += [UInt8(i), 0] }
        input += [0xDE, 0xAD, 0xBE]
        let expected = Self.hex(
            "aa aa cc cc f0 f0 00 ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 de ad be")
        #expect(Self.apply(.bitShuffle, 2, input) == expected)
        #expect(Self.invert(.bitShuffle, 2, expected) == input)
    }

    /// Pins byte-shuffle tail handling: whole elements are shuffled, the `count % W` rest is copied.
    @Test func byteShuffleKnownAnswerWithTail() {
        // Same 35 bytes with byteShuffle W=2: 17 whole elements (the last one is de ad), 1 trailing byte.
        var input = [UInt8]()
        for i in 0..<16 { input += [UInt8(i), 0] }
        input += [0xDE, 0xAD, 0xBE]
        let expected = Self.hex(
            "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f de 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ad be")
        #expect(Self.apply(.byteShuffle, 2, input) == expected)
        #expect(Self.invert(.byteShuffle, 2, expected) == input)
    }

    /// Pins the byte-shuffle layout for width 8 with a 5-byte tail.
    @Test func byteShuffleKnownAnswerWidth8() {
        let input = Self.hex("10 11 12 13 14 15 16 17 20 21 22 23 24 25 26 27 a1 a2 a3 a4 a5")
        let expected = Self.hex("10 20 11 21 12 22 13 23 14 24 15 25 16 26 17 27 a1 a2 a3 a4 a5")
        #expect(Self.apply(.byteShuffle, 8, input) == expected)
        #expect(Self.invert(.byteShuffle, 8, expected) == input)
    }

    /// Pins bit-shuffle at width 1 (a real transform) and the LSB-first bit order.
    @Test func bitShuffleKnownAnswerWidth1IsLSBFirst() {
        // Plane j, bit i = bit j of byte i. Byte 0 = ff sets bit 0 of every plane; byte 7 = 01 sets
        // bit 7 of plane 0. Bytes 8…9 are a trailing partial group, copied verbatim.
        let input = Self.hex("ff 00 00 00 00 00 00 01 5a a5")
        let expected = Self.hex("81 01 01 01 01 01 01 01 5a a5")
        #expect(Self.apply(.bitShuffle, 1, input) == expected)
        #expect(Self.invert(.bitShuffle, 1, expected) == input)
        let diagonal = Self.hex("01 02 04 08 10 20 40 80")
        #expect(Self.apply(.bitShuffle, 1, diagonal) == diagonal)
    }

    /// The untransformed tail of each filter is a verbatim copy of the input tail.
    @Test(arguments: [1, 2, 4, 8])
    func trailingBytesAreCopiedVerbatim(width: Int) {
        var rng = SplitMix64(seed: 99 &+ UInt64(width))
        for count in [5, 8 * width - 1, 8 * width + 3, 1024 * width + 8 * width - 1, 128 * 8 * width + 7] {
            let input = rng.bytes(count)
            let byteBody = (count / width) * width
            let bitBody = (count / (8 * width)) * 8 * width
            #expect(Self.apply(.byteShuffle, width, input)[byteBody...] == input[byteBody...])
            #expect(Self.apply(.bitShuffle, width, input)[bitBody...] == input[bitBody...])
        }
    }

    /// `.none` copies; byte-shuffle at width 1 is the identity while bit-shuffle is not.
    @Test(arguments: [1, 2, 4, 8])
    func noneIsCopyAndWidthOneByteShuffleIsIdentity(width: Int) {
        var rng = SplitMix64(seed: 3)
        let input = rng.bytes(1000 + width)
        #expect(Self.apply(.none, width, input) == input)
        #expect(Self.invert(.none, width, input) == input)
        if width == 1 {
            #expect(Self.apply(.byteShuffle, 1, input) == input)
            #expect(Self.invert(.byteShuffle, 1, input) == input)
            #expect(Self.apply(.bitShuffle, 1, input) != input)
        }
    }

    /// The on-disk raw values of the filters never change.
    @Test func filterRawValuesAreFrozen() {
        #expect(ShuffleFilter.none.rawValue == 0)
        #expect(ShuffleFilter.byteShuffle.rawValue == 1)
        #expect(ShuffleFilter.bitShuffle.rawValue == 2)
        #expect(ShuffleFilter.hybridShuffle.rawValue == 3)
        #expect(ShuffleFilter.allCases.count == 4)
    }

    /// The scalar 8×8 bit transpose moves bit 8r+c to 8c+r and is an involution.
    @Test func transposeBitsMatchesDefinition() {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<1000 {
            let x = rng.next()
            let t = Shuffle.transposeBits(x)
            for r in 0..<8 {
                for c in 0..<8 {
                    #expect((x >> UInt64(8 * r + c)) & 1 == (t >> UInt64(8 * c + r)) & 1)
                }
            }
            #expect(Shuffle.transposeBits(t) == x)
        }
    }
}

/// The hybrid filter (3): byte-shuffle, then bit-shuffle of the upper half of the byte planes.
@Suite struct HybridShuffleTests {
    private func roundTrip(_ input: [UInt8], width: Int) -> ([UInt8], [UInt8]) {
        var filtered = [UInt8](repeating: 0, count: input.count)
        var back = [UInt8](repeating: 0, count: input.count)
        input.withUnsafeBytes { src in
            filtered.withUnsafeMutableBytes { Shuffle.apply(.hybridShuffle, laneWidth: width, source: src, destination: $0) }
        }
        filtered.withUnsafeBytes { src in
            back.withUnsafeMutableBytes { Shuffle.invert(.hybridShuffle, laneWidth: width, source: src, destination: $0) }
        }
        return (filtered, back)
    }

    private func apply(_ filter: ShuffleFilter, _ width: Int, _ input: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: input.count)
        input.withUnsafeBytes { src in out.withUnsafeMutableBytes { Shuffle.apply(filter, laneWidth: width, source: src, destination: $0) }
        }
        return out
    }

    @Test(arguments: [1, 2, 4, 8], [0, 1, 7, 63, 64, 65, 1000, 4096, 4099, 1 << 20])
    func roundTripsExactly(width: Int, count: Int) {
        var rng = SplitMix64(seed: UInt64(width * 1_000_003 + count))
        let input = rng.bytes(count)
        let (_, back) = roundTrip(input, width: width)
        #expect(back == input)
    }

    @Test(arguments: [2, 4, 8], [64, 4096, 4103])
    func layoutIsByteShuffleThenBitShuffleOfTheUpperPlanes(width: Int, count: Int) {
        var rng = SplitMix64(seed: 42)
        let input = rng.bytes(count)
        let (filtered, _) = roundTrip(input, width: width)
        let bytePlanes = apply(.byteShuffle, width, input)
        let n = count / width
        let region = (width / 2 * n)..<(width * n)
        #expect(Array(filtered[0..<region.lowerBound]) == Array(bytePlanes[0..<region.lowerBound]))
        #expect(Array(filtered[region]) == apply(.bitShuffle, 1, Array(bytePlanes[region])))
        #expect(Array(filtered[region.upperBound...]) == Array(bytePlanes[region.upperBound...]))
    }

    @Test func widthOneIsTheBitShuffle() {
        var rng = SplitMix64(seed: 3)
        let input = rng.bytes(100)
        #expect(roundTrip(input, width: 1).0 == apply(.bitShuffle, 1, input))
    }
}
