import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

private typealias Fx = NumericsFixtures

// MARK: - Shared helpers (also used by AccumulatorTests), in a namespace so that they cannot
// clash with other test files of the module.

enum NumericsFixtures {

    /// FNV-1a 64 over the little-endian bytes of a sequence of UInt64 values.
    static func fnv1a(_ values: [UInt64]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for v in values {
            for i in 0..<8 {
                h ^= (v >> UInt64(8 * i)) & 0xFF
                h = h &* 0x0000_0100_0000_01B3
            }
        }
        return h
    }

    static func formatOf(_ dtype: DType) -> MinifloatFormat {
        switch dtype {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: return MinifloatFormat.float8(dtype)!
        }
    }

    /// The fast (kernel) encoder of a rounding target, as a code.
    static func fastEncode(_ d: Double, _ dtype: DType) -> UInt64 {
        switch dtype {
        case .f32: return UInt64(FloatCodec.encodeF32(d))
        case .f16: return UInt64(FloatCodec.encodeF16(d))
        case .bf16: return UInt64(FloatCodec.encodeBF16(d))
        default: return UInt64(FloatCodec.encodeF8(d, dtype))
        }
    }

    /// Random Float64 test values: raw bit patterns (all exponents, NaN payloads, subnormals) and
    /// normals at many scales.
    static func randomDoubles(_ count: Int, _ rng: inout SplitMix64) -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(count)
        let scales: [Double] = [1e-45, 1e-40, 1e-38, 1e-8, 6e-5, 1e-3, 1, 300, 6e4, 1e38, 3e38]
        for i in 0..<count {
            if i % 3 == 0 {
                out.append(Double(bitPattern: rng.next()))
            } else {
                let s = scales[Int(rng.next() % UInt64(scales.count))]
                out.append(Double.random(in: -2...2, using: &rng) * s)
            }
        }
        return out
    }

    /// Every finite value of a format (by decoding all codes), sorted, with the midpoints between
    /// neighbours and the Float64 values just next to each midpoint.
    static func gridAndMidpoints(_ dtype: DType, sample: Int? = nil, _ rng: inout SplitMix64) -> [Double] {
        let f = formatOf(dtype)
        let codes = f.totalBits == 8 ? 256 : 65536
        var values = (0..<codes).map { Double(bitPattern: FloatCodec.decodeBits(UInt64($0), f)) }
            .filter { $0.isFinite }
        values = Array(Set(values)).sorted()
        var out = values
        for i in 1..<values.count {
            if let s = sample, rng.next() % UInt64(values.count) >= UInt64(s) { continue }
            let mid = (values[i - 1] + values[i]) / 2
            out += [mid, mid.nextUp, mid.nextDown]
        }
        return out
    }

    /// 2^e
    static func P(_ e: Int) -> Double { Double(sign: .plus, exponent: e, significand: 1) }

    /// (dtype, value, expected code), each worked out by hand (the same table as
    /// Tests/reference/test_ckref.py).
    static let handCases: [(DType, Double, UInt64)] = [
        // F32
        (.f32, 1.0, 0x3F80_0000),
        (.f32, 1 + P(-24), 0x3F80_0000),  // tie between 1 and 1+2^-23 -> even
        (.f32, 1 + 3 * P(-24), 0x3F80_0002),  // tie -> even (...02)
        (.f32, 1 + P(-24) + P(-52), 0x3F80_0001),  // just above the tie
        (.f32, 1 + P(-24) - P(-52), 0x3F80_0000),  // just below the tie
        (.f32, (2 - P(-23)) * P(127), 0x7F7F_FFFF),  // largest finite
        (.f32, (2 - P(-24)) * P(127), 0x7F80_0000),  // halfway to 2^128: ties to even = Inf
        (.f32, (2 - P(-24) - P(-52)) * P(127), 0x7F7F_FFFF),
        (.f32, -(2 - P(-24)) * P(127), 0xFF80_0000),
        (.f32, P(-149), 0x0000_0001),  // smallest subnormal
        (.f32, P(-150), 0x0000_0000),  // tie with 0 -> 0
        (.f32, P(-150) + P(-200), 0x0000_0001),
        (.f32, 3 * P(-150), 0x0000_0002),
        (.f32, Double((1 << 23) - 1) * P(-149), 0x007F_FFFF),  // largest subnormal
        (.f32, (Double(1 << 23) - 0.5) * P(-149), 0x0080_0000),  // tie -> smallest normal
        (.f32, P(-126), 0x0080_0000),
        (.f32, 0.0, 0x0000_0000),
        (.f32, -0.0, 0x8000_0000),
        (.f32, .infinity, 0x7F80_0000),
        (.f32, -.infinity, 0xFF80_0000),
        (.f32, .nan, 0x7FC0_0000),
        (.f32, -.nan, 0xFFC0_0000),
        (.f32, 1e300, 0x7F80_0000),
        (.f32, -1e-300, 0x8000_0000),
        // F16
        (.f16, 1.0, 0x3C00),
        (.f16, 1 + P(-11), 0x3C00),  // tie -> even
        (.f16, 1 + 3 * P(-11), 0x3C02),
        (.f16, 1 + P(-11) + P(-40), 0x3C01),
        (.f16, 65504.0, 0x7BFF),  // largest finite
        (.f16, 65519.99, 0x7BFF),  // just below the overflow threshold
        (.f16, 65520.0, 0x7C00),  // halfway between 65504 and 65536: ties to even = Inf
        (.f16, -65520.0, 0xFC00),
        (.f16, P(-24), 0x0001),  // smallest subnormal
        (.f16, P(-25), 0x0000),  // tie with 0
        (.f16, P(-25) + P(-60), 0x0001),
        (.f16, 3 * P(-25), 0x0002),
        (.f16, 1023 * P(-24), 0x03FF),  // largest subnormal
        (.f16, 1023.5 * P(-24), 0x0400),  // tie -> smallest normal (even)
        (.f16, 1022.5 * P(-24), 0x03FE),  // tie -> even subnormal
        (.f16, P(-14), 0x0400),
        (.f16, -P(-26), 0x8000),
        (.f16, 0.0, 0x0000),
        (.f16, -0.0, 0x8000),
        (.f16, .infinity, 0x7C00),
        (.f16, -.infinity, 0xFC00),
        (.f16, .nan, 0x7E00),
        (.f16, -.nan, 0xFE00),
        (.f16, 0.1, 0x2E66),  // 1.6 * 2^-4: fraction 0.6 * 1024 = 614.4 -> 614 = 0x266
        // BF16
        (.bf16, 1.0, 0x3F80),
        (.bf16, 1 + P(-8), 0x3F80),  // tie -> even
        (.bf16, 1 + 3 * P(-8), 0x3F82),
        (.bf16, 1 + P(-8) + P(-40), 0x3F81),  // one rounding (via f32 would give 0x3F80)
        (.bf16, (2 - P(-7)) * P(127), 0x7F7F),  // largest finite
        (.bf16, (2 - P(-8)) * P(127), 0x7F80),  // ties to even = Inf
        (.bf16, (2 - P(-8) - P(-52)) * P(127), 0x7F7F),
        (.bf16, P(-133), 0x0001),  // smallest subnormal
        (.bf16, P(-134), 0x0000),
        (.bf16, 3 * P(-134), 0x0002),
        (.bf16, 127 * P(-133), 0x007F),  // largest subnormal
        (.bf16, 127.5 * P(-133), 0x0080),  // tie -> smallest normal
        (.bf16, 126.5 * P(-133), 0x007E),
        (.bf16, -0.0, 0x8000),
        (.bf16, .infinity, 0x7F80),
        (.bf16, -.infinity, 0xFF80),
        (.bf16, .nan, 0x7FC0),
        (.bf16, -.nan, 0xFFC0),
        (.bf16, 1e39, 0x7F80),
        // F8_E5M2
        (.f8E5M2, 57344.0, 0x7B),
        (.f8E5M2, 61439.99, 0x7B),
        (.f8E5M2, 61440.0, 0x7C),  // tie between 57344 and 65536 -> even -> Inf
        (.f8E5M2, -.infinity, 0xFC),
        (.f8E5M2, .nan, 0x7E),
        (.f8E5M2, -.nan, 0xFE),
        (.f8E5M2, P(-16), 0x01),
        (.f8E5M2, P(-17), 0x00),
        (.f8E5M2, 1 + P(-3), 0x3C),
        (.f8E5M2, 1 + P(-3) + P(-40), 0x3D),
        // F8_E4M3 (fn)
        (.f8E4M3, 448.0, 0x7E),
        (.f8E4M3, 463.99, 0x7E),
        (.f8E4M3, 464.0, 0x7E),  // tie between 448 (...110) and 480 (...111): even -> 448
        (.f8E4M3, 464.01, 0x7F),  // rounds to 480, the NaN code
        (.f8E4M3, -464.01, 0xFF),
        (.f8E4M3, 500.0, 0x7F),
        (.f8E4M3, .infinity, 0x7F),
        (.f8E4M3, -.infinity, 0xFF),
        (.f8E4M3, .nan, 0x7F),
        (.f8E4M3, -.nan, 0xFF),
        (.f8E4M3, P(-9), 0x01),
        (.f8E4M3, P(-10), 0x00),
        (.f8E4M3, -P(-10), 0x80),
        (.f8E4M3, 7 * P(-9), 0x07),
        (.f8E4M3, 7.5 * P(-9), 0x08),
        (.f8E4M3, 1 + P(-4) + P(-40), 0x39),  // ml_dtypes (via f32): 0x38
        // F8_E4M3FNUZ
        (.f8E4M3FNUZ, 240.0, 0x7F),
        (.f8E4M3FNUZ, 247.99, 0x7F),
        (.f8E4M3FNUZ, 248.0, 0x80),  // tie between 240 (...111) and 256: even -> 256 -> NaN
        (.f8E4M3FNUZ, -248.0, 0x80),
        (.f8E4M3FNUZ, -0.0, 0x00),
        (.f8E4M3FNUZ, -P(-11), 0x00),  // rounds to zero: +0
        (.f8E4M3FNUZ, -P(-10), 0x81),
        (.f8E4M3FNUZ, .infinity, 0x80),
        (.f8E4M3FNUZ, .nan, 0x80),
        (.f8E4M3FNUZ, -1.0, 0xC0),
        // F8_E5M2FNUZ
        (.f8E5M2FNUZ, 57344.0, 0x7F),
        (.f8E5M2FNUZ, 61440.0, 0x80),
        (.f8E5M2FNUZ, -0.0, 0x00),
        (.f8E5M2FNUZ, P(-17), 0x01),
        (.f8E5M2FNUZ, 0.5, 0x3C),
        // F8_E8M0
        (.f8E8M0, 1.0, 0x7F),
        (.f8E8M0, 1.5, 0x80),  // tie rounds up
        (.f8E8M0, 3.0, 0x81),
        (.f8E8M0, 1.4999999, 0x7F),
        (.f8E8M0, 0.75, 0x7F),
        (.f8E8M0, P(-127), 0x00),
        (.f8E8M0, P(-130), 0x00),  // below the smallest value: saturates
        (.f8E8M0, 1.25 * P(-127), 0x00),  // nearest (ml_dtypes rounds f32 subnormals up: 0x01)
        (.f8E8M0, 1.5 * P(-127), 0x01),  // tie: up
        (.f8E8M0, 1e-300, 0x00),  // (ml_dtypes goes via f32 -> 0 -> NaN 0xFF)
        (.f8E8M0, P(127), 0xFE),
        (.f8E8M0, 1.5 * P(127), 0xFF),
        (.f8E8M0, 0.0, 0xFF),
        (.f8E8M0, -0.0, 0xFF),
        (.f8E8M0, -1.0, 0xFF),
        (.f8E8M0, .infinity, 0xFF),
        (.f8E8M0, .nan, 0xFF),
    ]
}

// MARK: - Tests

@Suite struct FloatCodecTests {
    @Test func handComputedBitPatterns() {
        for (dtype, value, expected) in Fx.handCases {
            let exact = FloatCodec.encodeBits(value, Fx.formatOf(dtype))
            #expect(exact == expected, "exact \(dtype) \(value): \(String(exact, radix: 16))")
            let fast = Fx.fastEncode(value, dtype)
            #expect(fast == expected, "fast \(dtype) \(value): \(String(fast, radix: 16))")
        }
    }

    @Test func f16AllCodesDecodeAndRoundTrip() {
        var decoded: [UInt64] = []
        for c in 0...0xFFFF {
            let h = UInt16(c)
            let d = FloatCodec.decodeF16(h)
            #expect(d.bitPattern == FloatCodec.decodeBits(UInt64(c), .f16), "decode \(c)")
            let back = FloatCodec.encodeF16(d)
            let exp = (c >> 10) & 0x1F
            if exp == 0x1F && c & 0x3FF != 0 {
                // NaN: quiet, same sign, payload at the top of the fraction; encodes canonical
                #expect(d.isNaN && d.bitPattern & (1 << 51) != 0)
                #expect((d.bitPattern >> 42) & 0x1FF == UInt64(c & 0x1FF))
                #expect(d.sign == (c & 0x8000 != 0 ? .minus : .plus))
                #expect(back == UInt16(c & 0x8000) | 0x7E00)
            } else {
                #expect(back == h, "round trip \(String(c, radix: 16))")
                decoded.append(d.bitPattern)
            }
        }
        // numpy float16 -> float64 of the 63,490 non-NaN codes, hashed
        #expect(decoded.count == 63490)
        #expect(Fx.fnv1a(decoded) == 0xCE06_A8DF_F454_BF05)
        // the decode table at a few hand points
        #expect(FloatCodec.decodeF16(0x0001) == Fx.P(-24))
        #expect(FloatCodec.decodeF16(0x03FF) == 1023 * Fx.P(-24))
        #expect(FloatCodec.decodeF16(0x7BFF) == 65504)
        #expect(FloatCodec.decodeF16(0xFC00) == -.infinity)
        #expect(FloatCodec.decodeF16(0x8000).bitPattern == 0x8000_0000_0000_0000)
        #expect(FloatCodec.decodeF16(0x7C01).bitPattern == 0x7FF8_0400_0000_0000)
    }

    @Test func bf16AllCodesDecodeAndRoundTrip() {
        var decoded: [UInt64] = []
        for c in 0...0xFFFF {
            let b = UInt16(c)
            let d = FloatCodec.decodeBF16(b)
            #expect(d.bitPattern == FloatCodec.decodeBits(UInt64(c), .bf16), "decode \(c)")
            let back = FloatCodec.encodeBF16(d)
            if (c >> 7) & 0xFF == 0xFF && c & 0x7F != 0 {
                #expect(d.isNaN && d.bitPattern & (1 << 51) != 0)
                #expect(d.sign == (c & 0x8000 != 0 ? .minus : .plus))
                #expect(back == UInt16(c & 0x8000) | 0x7FC0)
            } else {
                #expect(back == b, "round trip \(String(c, radix: 16))")
                decoded.append(d.bitPattern)
            }
        }
        // ml_dtypes bfloat16 -> float64 of the 65,282 non-NaN codes, hashed
        #expect(decoded.count == 65282)
        #expect(Fx.fnv1a(decoded) == 0x6495_F9C1_3C70_BE65)
        #expect(FloatCodec.decodeBF16(0x0001) == Fx.P(-133))
        #expect(FloatCodec.decodeBF16(0x7F81).bitPattern == 0x7FF8_2000_0000_0000)
    }

    /// All 256 codes of each F8 type decode bit for bit like ml_dtypes 0.6 (FNV-1a of the 256
    /// float64 bit patterns as ml_dtypes produces them, NaNs included), and re-encode to
    /// themselves (NaN codes to the canonical NaN).
    @Test(arguments: [
        (DType.f8E5M2, UInt64(0x0607_C8F7_B453_EF15)),
        (DType.f8E4M3, UInt64(0x4D4D_6D90_C4F5_0035)),
        (DType.f8E4M3FNUZ, UInt64(0xCDA2_A0ED_FA17_5030)),
        (DType.f8E5M2FNUZ, UInt64(0xA83A_170F_BAE9_DBD0)),
        (DType.f8E8M0, UInt64(0x04B7_D9D8_5633_D505)),
    ])
    func f8AllCodes(dtype: DType, mlDtypesHash: UInt64) {
        let table = F8Tables.table(dtype)
        let bits = (0..<256).map { table[$0].bitPattern }
        #expect(Fx.fnv1a(bits) == mlDtypesHash, "\(dtype)")
        for c in 0..<256 {
            let d = FloatCodec.decodeF8(UInt8(c), dtype)
            #expect(d.bitPattern == FloatCodec.decodeBits(UInt64(c), Fx.formatOf(dtype)))
            let back = FloatCodec.encodeF8(d, dtype)
            #expect(UInt64(back) == FloatCodec.encodeBits(d, Fx.formatOf(dtype)))
            if d.isNaN {
                let canonical: UInt8
                switch dtype {
                case .f8E5M2: canonical = UInt8(c & 0x80) | 0x7E
                case .f8E4M3: canonical = UInt8(c & 0x80) | 0x7F
                case .f8E8M0: canonical = 0xFF
                default: canonical = 0x80
                }
                #expect(back == canonical, "\(dtype) NaN \(c)")
            } else {
                #expect(back == UInt8(c), "\(dtype) round trip \(c)")
            }
        }
    }

    @Test func f8HandDecodes() {
        #expect(FloatCodec.decodeF8(0x7E, .f8E4M3) == 448)
        #expect(FloatCodec.decodeF8(0x7F, .f8E4M3).bitPattern == 0x7FF8_0000_0000_0000)
        #expect(FloatCodec.decodeF8(0xFF, .f8E4M3).bitPattern == 0xFFF8_0000_0000_0000)
        #expect(FloatCodec.decodeF8(0x01, .f8E4M3) == Fx.P(-9))
        #expect(FloatCodec.decodeF8(0x7B, .f8E5M2) == 57344)
        #expect(FloatCodec.decodeF8(0x7C, .f8E5M2) == .infinity)
        #expect(FloatCodec.decodeF8(0x7D, .f8E5M2).bitPattern == 0x7FF8_0000_0000_0000)
        #expect(FloatCodec.decodeF8(0x7F, .f8E4M3FNUZ) == 240)
        #expect(FloatCodec.decodeF8(0x80, .f8E4M3FNUZ).bitPattern == 0xFFF8_0000_0000_0000)
        #expect(FloatCodec.decodeF8(0x7F, .f8E5M2FNUZ) == 57344)
        #expect(FloatCodec.decodeF8(0x00, .f8E8M0) == Fx.P(-127))
        #expect(FloatCodec.decodeF8(0xFE, .f8E8M0) == Fx.P(127))
        #expect(FloatCodec.decodeF8(0xFF, .f8E8M0).bitPattern == 0x7FF8_0000_0000_0000)
    }

    /// The branch-free encoders agree with the exact general rounding on random values, on
    /// every midpoint between neighbouring values of the format and on the values just next to
    /// those midpoints.
    @Test(arguments: [DType.f32, .f16, .bf16, .f8E5M2, .f8E4M3, .f8E4M3FNUZ, .f8E5M2FNUZ, .f8E8M0])
    func fastEncoderMatchesExactRounding(dtype: DType) {
        var rng = SplitMix64(seed: 0x5EED ^ UInt64(dtype.bitSize))
        var values = Fx.randomDoubles(60_000, &rng)
        if dtype != .f32 {
            values += Fx.gridAndMidpoints(dtype, sample: dtype.bitSize == 16 ? 6000 : nil, &rng)
        }
        values += [
            0, -0.0, .infinity, -.infinity, .nan, -.nan, .greatestFiniteMagnitude,
            .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude,
        ]
        let f = Fx.formatOf(dtype)
        var mismatches = 0
        for v in values {
            let exact = FloatCodec.encodeBits(v, f)
            let fast = Fx.fastEncode(v, dtype)
            if exact != fast {
                mismatches += 1
                if mismatches < 5 {
                    Issue.record("\(dtype) \(v) (\(String(v.bitPattern, radix: 16))): fast \(fast) exact \(exact)")
                }
            }
        }
        #expect(mismatches == 0)
    }

    /// The exact general rounding agrees with the hardware's float64 -> float32 conversion
    /// (an independent RNE implementation) on every non-NaN value.
    @Test func exactRoundingMatchesHardwareF32() {
        var rng = SplitMix64(seed: 42)
        for v in Fx.randomDoubles(100_000, &rng) where !v.isNaN {
            #expect(FloatCodec.encodeBits(v, .f32) == UInt64(Float(v).bitPattern), "\(v)")
        }
    }

    @Test func f32DecodeEncodeRoundTrip() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<100_000 {
            let bits = UInt32(truncatingIfNeeded: rng.next())
            let d = FloatCodec.decodeF32(bits)
            #expect(d.bitPattern == FloatCodec.decodeBits(UInt64(bits), .f32))
            let back = FloatCodec.encodeF32(d)
            if Float(bitPattern: bits).isNaN {
                #expect(d.isNaN && d.bitPattern & (1 << 51) != 0)
                #expect(back == (bits & 0x8000_0000) | 0x7FC0_0000)
            } else {
                #expect(back == bits)
            }
        }
        #expect(FloatCodec.decodeF32(0x0000_0001) == Fx.P(-149))
        #expect(FloatCodec.decodeF32(0x7F80_0001).bitPattern == 0x7FF8_0000_2000_0000)
    }

    /// Subnormal inputs decode exactly and the smallest/largest subnormals and normals survive.
    @Test func subnormalBoundaries() {
        for (dtype, sub, maxSub, minNormal) in [
            (DType.f16, Fx.P(-24), 1023 * Fx.P(-24), Fx.P(-14)),
            (DType.bf16, Fx.P(-133), 127 * Fx.P(-133), Fx.P(-126)),
        ] {
            for v in [sub, maxSub, minNormal, -sub, -maxSub, -minNormal] {
                let code = Fx.fastEncode(v, dtype)
                let back =
                    dtype == .f16
                    ? FloatCodec.decodeF16(UInt16(code)) : FloatCodec.decodeBF16(UInt16(code))
                #expect(back == v, "\(dtype) \(v)")
            }
        }
    }

    @Test func bufferConvenienceAndErrors() throws {
        let values: [Double] = [1, -2.5, 0.1, .infinity]
        for dtype in [DType.f64, .f32, .f16, .bf16, .f8E5M2, .c64] {
            let raw = try FloatCodec.encode(values, as: dtype)
            #expect(raw.count == values.count * FloatCodec.laneWidth(dtype))
            let back = try raw.withUnsafeBytes { try FloatCodec.decode($0, as: dtype) }
            #expect(back.count == values.count)
            #expect(back[0] == 1 && back[1] == -2.5)
        }
        let f16 = try FloatCodec.encode([1.0, -2.0], as: .f16)
        #expect(f16 == [0x00, 0x3C, 0x00, 0xC0])  // little-endian
        for dtype in [DType.i32, .bool, .u8, .f4, .f6E2M3, .f6E3M2, .i64] {
            #expect(throws: NumericsError.unsupportedDType(dtype)) {
                _ = try FloatCodec.encode([1.0], as: dtype)
            }
            #expect(!FloatCodec.supports(dtype))
        }
        #expect(throws: NumericsError.self) {
            _ = try [UInt8](repeating: 0, count: 3).withUnsafeBytes { try FloatCodec.decode($0, as: .f16) }
        }
    }
}
