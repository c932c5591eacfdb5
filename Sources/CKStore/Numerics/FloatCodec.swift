// FloatCodec: exact conversions between the floating-point element types of a safetensors
// file (little-endian bytes) and Float64, written with integer bit manipulation.
//
// The numerics contract (shared with Accumulator.swift and Tests/reference/ckref.py):
//
// Decoding (dtype -> Float64) is exact: every supported format embeds in Float64.
//   * F32/F16/BF16 NaN -> a quiet Float64 NaN with the same sign, the payload moved to the top
//     of the fraction and the quiet bit set (IEEE widening, what the hardware does for f32).
//   * Every F8 NaN -> the canonical Float64 NaN 0x7FF8_0000_0000_0000 with the code's sign bit;
//     the FNUZ types' single NaN 0x80 decodes to 0xFFF8_0000_0000_0000. This is bit for bit what
//     ml_dtypes 0.6 gives for all 256 codes of each F8 type.
//
// Encoding (Float64 -> dtype) is ONE rounding, round-to-nearest ties-to-even, decided on the
// Float64 value (never via Float32: f64 -> f32 -> bf16 would round twice).
//   * F32, F16, BF16, F8_E5M2 (have Inf): overflow -> +-Inf; subnormals produced exactly;
//     NaN -> the canonical quiet NaN with the input's sign: F32 0x7FC00000, F16 0x7E00,
//     BF16 0x7FC0, F8_E5M2 0x7E (sign bit or'ed in). Payloads are not kept, so a NaN's bits
//     never depend on which operand of an addition the compiler put first.
//   * F8_E4M3 (ml_dtypes float8_e4m3fn: no Inf, NaN = S.1111.111, max 448): NaN, +-Inf and
//     overflow (a value that rounds past 448, i.e. |x| > 464; 464 itself ties to 448) -> S|0x7F.
//   * F8_E4M3FNUZ / F8_E5M2FNUZ (no Inf, no -0, single NaN 0x80): NaN, +-Inf, overflow -> 0x80;
//     a value that rounds to zero gives +0 (0x00) whatever its sign.
//   * F8_E8M0 (float8_e8m0fnu: 2^(c-127) for c = 0...254, 0xFF = NaN, no sign, no zero):
//     NaN, +-Inf, +-0 and negative values -> 0xFF; positive values below 2^-127 saturate to
//     0x00; a tie (exactly 1.5 * 2^k) rounds UP, as ml_dtypes does (a format without fraction
//     bits has no "even" significand); rounding past 2^127 -> 0xFF.
//   * C64 is two F32 lanes.
// NaN signs: a NaN input keeps its sign through the arithmetic; a NaN that the arithmetic makes
// (Inf - Inf, 0 * Inf) has the hardware's default sign (negative on x86-64, positive on ARM64),
// and when two NaNs of different signs meet in one addition the survivor depends on the operand
// order the compiler picked. Results are bit-reproducible whenever those cases do not occur
// (e.g. all NaN inputs of one position share a sign) -- and always on one machine and build.
//
// Differences from ml_dtypes / numpy (measured with ml_dtypes 0.6.0, numpy 2.4):
//   * ml_dtypes rounds float64 to bfloat16 / float8 through float32, i.e. twice. On
//     float32-representable inputs it agrees with this file bit for bit (all F8 types and BF16,
//     including E8M0's tie rule; one E8M0 quirk aside, below); on other float64 inputs it can be one code off next to a
//     rounding midpoint (bf16(1 + 2^-8 + 2^-40) is 0x3F81 here, 0x3F80 in ml_dtypes;
//     e4m3fn(1 + 2^-4 + 2^-40) 0x39 vs 0x38), and it maps positive float64 values below
//     float32's range to E8M0 NaN (here 0x00, the saturating rule). One more E8M0 quirk of
//     ml_dtypes: a float32 subnormal in (2^-127, 2^-126) always becomes 2^-126 (0x01), even
//     1.0625 * 2^-127, whose nearest value 2^-127 (0x00) is what this file gives.
//   * numpy's float64 -> float16 rounds once, like this file, but keeps NaN payloads; its
//     float16 -> float64 keeps a signalling NaN signalling (here the quiet bit is set).
//   * Decoding agrees with ml_dtypes for all 256 codes of every F8 type and all non-NaN codes
//     of BF16/F16 (the tests hold hashes of ml_dtypes' and numpy's tables).
//
// F4 and F6_* (packed; the bit order of the packing is not fixed by safetensors) are not handled.

/// The parameters of one of the small binary floating-point formats.
@usableFromInline
struct MinifloatFormat: Sendable, Hashable {
    /// How the format spends its special codes.
    @usableFromInline
    enum Kind: Sendable, Hashable {
        /// IEEE-like: all-ones exponent is Inf (fraction 0) or NaN.
        case ieee
        /// "fn": no Inf; the all-ones code S.1111.111 is NaN (float8_e4m3fn).
        case finiteNaNAllOnes
        /// "fnuz": no Inf, no negative zero; 0x80 is the single NaN.
        case finiteUnsignedZero
        /// Exponent only, unsigned, no zero; 0xFF is NaN (float8_e8m0fnu).
        case exponentOnly
    }

    @usableFromInline let exponentBits: Int
    @usableFromInline let fractionBits: Int
    @usableFromInline let bias: Int
    @usableFromInline let kind: Kind

    @usableFromInline
    init(exponentBits: Int, fractionBits: Int, bias: Int, kind: Kind) {
        self.exponentBits = exponentBits
        self.fractionBits = fractionBits
        self.bias = bias
        self.kind = kind
    }

    /// Total bits of one element.
    @usableFromInline var totalBits: Int {
        kind == .exponentOnly ? exponentBits : 1 + exponentBits + fractionBits
    }

    /// The exponent of the smallest normal number.
    @usableFromInline var minExponent: Int { 1 - bias }

    static let f32 = MinifloatFormat(exponentBits: 8, fractionBits: 23, bias: 127, kind: .ieee)
    static let f16 = MinifloatFormat(exponentBits: 5, fractionBits: 10, bias: 15, kind: .ieee)
    static let bf16 = MinifloatFormat(exponentBits: 8, fractionBits: 7, bias: 127, kind: .ieee)
    static let e5m2 = MinifloatFormat(exponentBits: 5, fractionBits: 2, bias: 15, kind: .ieee)
    static let e4m3fn = MinifloatFormat(
        exponentBits: 4, fractionBits: 3, bias: 7, kind: .finiteNaNAllOnes)
    static let e4m3fnuz = MinifloatFormat(
        exponentBits: 4, fractionBits: 3, bias: 8, kind: .finiteUnsignedZero)
    static let e5m2fnuz = MinifloatFormat(
        exponentBits: 5, fractionBits: 2, bias: 16, kind: .finiteUnsignedZero)
    static let e8m0 = MinifloatFormat(exponentBits: 8, fractionBits: 0, bias: 127, kind: .exponentOnly)

    /// The format of an 8-bit float dtype, or nil.
    static func float8(_ dtype: DType) -> MinifloatFormat? {
        switch dtype {
        case .f8E5M2: return .e5m2
        case .f8E4M3: return .e4m3fn
        case .f8E4M3FNUZ: return .e4m3fnuz
        case .f8E5M2FNUZ: return .e5m2fnuz
        case .f8E8M0: return .e8m0
        default: return nil
        }
    }
}

/// Errors of the numerics layer.
public enum NumericsError: Error, Equatable, Sendable {
    /// The dtype is not one whose values are averaged (integers, BOOL, packed F4/F6).
    case unsupportedDType(DType)
    /// A byte count that is not a whole number of elements, or an accumulator of the wrong size.
    case sizeMismatch(expected: Int, actual: Int)
}

/// Exact conversions between dtype element codes and Float64 (see the file comment).
public enum FloatCodec {
    private static let f64Sign: UInt64 = 0x8000_0000_0000_0000
    private static let f64QuietNaN: UInt64 = 0x7FF8_0000_0000_0000

    /// True for the dtypes the codec and the accumulator kernels handle: F64, F32, F16, BF16,
    /// the five F8 types, and C64 (as two F32 lanes).
    public static func supports(_ dtype: DType) -> Bool {
        switch dtype {
        case .f64, .f32, .f16, .bf16, .c64, .f8E5M2, .f8E4M3, .f8E4M3FNUZ, .f8E5M2FNUZ, .f8E8M0:
            return true
        default:
            return false
        }
    }

    /// Bytes of one Float64 lane of `dtype` (C64 has two 4-byte lanes per element).
    @inlinable
    static func laneWidth(_ dtype: DType) -> Int {
        dtype == .c64 ? 4 : dtype.bitSize / 8
    }

    // MARK: - Decoding

    /// F32 bits -> Float64 (exact; NaN keeps sign and payload, quiet bit set).
    @inlinable @inline(__always)
    public static func decodeF32(_ bits: UInt32) -> Double {
        Double(Float(bitPattern: bits))
    }

    /// BF16 bits -> Float64: bf16 is the top half of an f32, and f32 widens exactly.
    @inlinable @inline(__always)
    public static func decodeBF16(_ bits: UInt16) -> Double {
        Double(Float(bitPattern: UInt32(bits) &<< 16))
    }

    /// F16 bits -> Float64 (exact, branch-free; see `f16ToF32Bits`). NaN: quiet bit set, sign
    /// and payload kept.
    @inlinable @inline(__always)
    public static func decodeF16(_ h: UInt16) -> Double {
        Double(Float(bitPattern: f16ToF32Bits(h)))
    }

    /// F16 bits -> the F32 bits of the same value (exact; 32-bit lanes only, so the compiler
    /// vectorises it four wide even on baseline x86-64). Normals: re-bias the exponent by an
    /// integer add. Subnormals and zero: give the bits the exponent of 2^-14, which makes the
    /// f32 2^-14 * (1 + m/1024), and subtract 2^-14 (exact: m * 2^-24; no subnormal f32 is ever
    /// an operand, so no slow microcoded arithmetic). Inf/NaN: all-ones exponent. The exact
    /// f32 -> f64 widening then sets a NaN's quiet bit and keeps its payload.
    @inlinable @inline(__always)
    static func f16ToF32Bits(_ h: UInt16) -> UInt32 {
        let x = UInt32(h)
        let mag = x & 0x7FFF
        let normal = (mag &<< 13) &+ (112 &<< 23)
        let subnormal = (Float(bitPattern: normal &+ (1 &<< 23)) - 0x1p-14).bitPattern
        var r = mag < 0x0400 ? subnormal : normal
        r = mag >= 0x7C00 ? normal | 0x7F80_0000 : r
        return r | ((x & 0x8000) &<< 16)
    }

    /// One code of a minifloat format -> Float64 bits (exact; used to build the F8 tables and
    /// as the slow reference in tests).
    static func decodeBits(_ code: UInt64, _ f: MinifloatFormat) -> UInt64 {
        if f.kind == .exponentOnly {
            if code == 0xFF { return f64QuietNaN }
            // 2^(code - 127): code - 127 >= -127 is a Float64 normal
            return UInt64(1023 + Int(code) - f.bias) &<< 52
        }
        let m = f.fractionBits
        let signBit = (code >> UInt64(f.totalBits - 1)) & 1
        let mag = code & ((1 &<< UInt64(f.totalBits - 1)) &- 1)
        let expField = Int(mag >> UInt64(m))
        let frac = mag & ((1 &<< UInt64(m)) &- 1)
        let sign: UInt64 = signBit == 1 ? f64Sign : 0
        switch f.kind {
        case .finiteUnsignedZero:
            if code == 0x80 { return f64Sign | f64QuietNaN }
        case .finiteNaNAllOnes:
            if mag == (1 &<< UInt64(f.totalBits - 1)) &- 1 { return sign | f64QuietNaN }
        case .ieee:
            if expField == (1 << f.exponentBits) - 1 {
                if frac == 0 { return sign | 0x7FF0_0000_0000_0000 }
                if f.totalBits == 8 { return sign | f64QuietNaN }
                return sign | 0x7FF0_0000_0000_0000 | (1 &<< 51) | (frac &<< UInt64(52 - m))
            }
        case .exponentOnly:
            break
        }
        if mag == 0 { return sign }
        // value = significand * 2^(e - m), significand = [1.]frac
        var significand = frac
        var e = f.minExponent
        if expField != 0 {
            significand |= 1 &<< UInt64(m)
            e = expField - f.bias
        }
        // normalise the significand to 53 bits (the value is a Float64 normal for all formats)
        let lead = 63 - significand.leadingZeroBitCount  // position of the leading 1
        let unbiased = e - m + lead
        let fraction = (significand &<< UInt64(52 - lead)) & 0x000F_FFFF_FFFF_FFFF
        return sign | (UInt64(unbiased + 1023) &<< 52) | fraction
    }

    /// An F8 code -> Float64 (table lookup).
    @inlinable
    public static func decodeF8(_ code: UInt8, _ dtype: DType) -> Double {
        F8Tables.table(dtype)[Int(code)]
    }

    // MARK: - Encoding

    /// RNE of the magnitude of a finite Float64 (bits) onto the grid of a format with `m`
    /// fraction bits and smallest normal exponent `emin`: returns the magnitude code
    /// `((eff - emin) << m) + q`, which may exceed the format's largest finite code (the caller
    /// maps that to Inf/NaN). Exact integer arithmetic, no Float conversions.
    @inlinable
    static func roundedMagnitudeCode(_ bits: UInt64, fractionBits m: Int, minExponent emin: Int)
        -> UInt64
    {
        let a = bits & 0x7FFF_FFFF_FFFF_FFFF
        let expField = Int(a >> 52)
        let frac = a & 0x000F_FFFF_FFFF_FFFF
        let significand = expField > 0 ? frac | (1 &<< 52) : frac  // value = sig * 2^(e - 52)
        let e = max(expField, 1) - 1023
        let eff = max(e, emin)
        // q = RNE(sig / 2^r), r >= 52 - m >= 29; any r >= 55 gives 0 with no tie
        let r = min((eff - m) - (e - 52), 60)
        let q = significand >> UInt64(r)
        let rem = significand & ((1 &<< UInt64(r)) &- 1)
        let half: UInt64 = 1 &<< UInt64(r - 1)
        let up: UInt64 = (rem > half || (rem == half && q & 1 == 1)) ? 1 : 0
        return (UInt64(eff - emin) &<< UInt64(m)) &+ q &+ up
    }

    /// Float64 -> code of a minifloat format, exact and general (slow path and test oracle).
    static func encodeBits(_ d: Double, _ f: MinifloatFormat) -> UInt64 {
        let bits = d.bitPattern
        let negative = bits & f64Sign != 0
        if f.kind == .exponentOnly {
            if d.isNaN || d.isInfinite || d <= 0 { return 0xFF }
            let expField = Int(bits >> 52)
            if expField == 0 { return 0 }  // Float64 subnormal: far below 2^-127
            let up = Int((bits >> 51) & 1)  // >= 1.5 * 2^k: round up (ties up)
            let c = expField - 1023 + f.bias + up
            if c < 0 { return 0 }
            return c > 254 ? 0xFF : UInt64(c)
        }
        let m = f.fractionBits
        let top = UInt64(f.totalBits - 1)
        let signBit: UInt64 = negative ? 1 &<< top : 0
        let allOnesMag = (1 &<< top) &- 1
        let infCode = ((1 &<< UInt64(f.exponentBits)) &- 1) &<< UInt64(m)
        if d.isNaN {
            switch f.kind {
            case .ieee: return signBit | infCode | (1 &<< UInt64(m - 1))
            case .finiteNaNAllOnes: return signBit | allOnesMag
            default: return 0x80
            }
        }
        if d.isInfinite {
            switch f.kind {
            case .ieee: return signBit | infCode
            case .finiteNaNAllOnes: return signBit | allOnesMag
            default: return 0x80
            }
        }
        let q = roundedMagnitudeCode(bits, fractionBits: m, minExponent: f.minExponent)
        switch f.kind {
        case .ieee:
            return signBit | min(q, infCode)
        case .finiteNaNAllOnes:
            return signBit | min(q, allOnesMag)
        default:
            if q > allOnesMag { return 0x80 }
            return q == 0 ? 0 : signBit | q
        }
    }

    /// Float64 -> F32 bits: the hardware conversion is a single IEEE RNE rounding (subnormals,
    /// overflow to Inf included); NaN is made canonical (sign | 0x7FC00000).
    @inlinable @inline(__always)
    public static func encodeF32(_ d: Double) -> UInt32 {
        let f = Float(d)
        let nan = UInt32(truncatingIfNeeded: d.bitPattern &>> 32) & 0x8000_0000 | 0x7FC0_0000
        return f != f ? nan : f.bitPattern
    }

    /// RNE of a non-negative Float64 `ad` to a minifloat magnitude code, branch-free (the
    /// hot-path twin of `roundedMagnitudeCode`):
    ///
    /// 1. Clamp: x = ad < limit ? ad : limit, where `limit` is the first value past the
    ///    format's range whose code is the overflow code (Inf for IEEE formats); NaN and Inf
    ///    land there too (the NaN callers or a quiet bit into the code).
    /// 2. Round with the hardware: c = 2^(eff + 52 - m), where eff = max(exponent of x, emin),
    ///    is a number whose ulp is the format's quantum at x (2^(eff - m)), so s = x + c is x
    ///    rounded to the format (RNE, ties to even) plus c, and s = (2^52 + q) * 2^(eff - m)
    ///    with q the rounded x in quanta. Subnormals (eff = emin) and zero need no other path.
    /// 3. The code is ((eff - emin) << m) + q: q is bits(s) - bits(c), and e = 2^eff has
    ///    bits(e) >> (52 - m) = (eff + 1023) << m, so code = bits(s) - bits(c) +
    ///    (bits(e) >> (52 - m)) - `codeBase`, with codeBase = (emin + 1023) << m. (A carry of q
    ///    into the next binade gives the right code too.) No step makes a Float64 subnormal,
    ///    so there are no slow microcoded operations on tiny values.
    /// Relies on the default floating-point environment (RNE), like every other Float64
    /// operation of the contract.
    @inlinable @inline(__always)
    static func fastMagnitudeCode(
        _ ad: Double, shift: UInt64, magic: Double, minNormal: Double, limit: Double, codeBase: UInt64
    ) -> UInt64 {
        let x = ad < limit ? ad : limit
        let e = max(Double(bitPattern: x.bitPattern & 0x7FF0_0000_0000_0000), minNormal)
        let c = e * magic
        let s = x + c
        return s.bitPattern &- c.bitPattern &+ (e.bitPattern &>> shift) &- codeBase
    }

    /// Float64 -> F16 bits, one RNE rounding, branch-free (overflow and Inf -> 0x7C00 via the
    /// clamp at 2^16, which values from 65520 = (65504 + 65536) / 2 on reach by rounding;
    /// NaN -> 0x7C00 | 0x0200 = the canonical quiet NaN; the sign is or'ed in).
    @inlinable @inline(__always)
    public static func encodeF16(_ d: Double) -> UInt16 {
        let bits = d.bitPattern
        let ad = Double(bitPattern: bits & 0x7FFF_FFFF_FFFF_FFFF)
        let q = fastMagnitudeCode(
            ad, shift: 42, magic: 0x1p42, minNormal: 0x1p-14, limit: 0x1p16, codeBase: 1009 << 10)
        let quiet: UInt64 = ad != ad ? 0x0200 : 0
        return UInt16(truncatingIfNeeded: q | quiet | ((bits &>> 48) & 0x8000))
    }

    /// Float64 -> BF16 bits, one RNE rounding (never via Float32), branch-free; same scheme as
    /// `encodeF16` (clamp at 2^128 -> 0x7F80; NaN -> 0x7FC0).
    @inlinable @inline(__always)
    public static func encodeBF16(_ d: Double) -> UInt16 {
        let bits = d.bitPattern
        let ad = Double(bitPattern: bits & 0x7FFF_FFFF_FFFF_FFFF)
        let q = fastMagnitudeCode(
            ad, shift: 45, magic: 0x1p45, minNormal: 0x1p-126, limit: 0x1p128, codeBase: 897 << 7)
        let quiet: UInt64 = ad != ad ? 0x0040 : 0
        return UInt16(truncatingIfNeeded: q | quiet | ((bits &>> 48) & 0x8000))
    }

    /// Float64 -> F8_E5M2, branch-free (clamp at 2^16 -> Inf 0x7C; NaN -> 0x7E).
    @inlinable @inline(__always)
    static func encodeE5M2(_ d: Double) -> UInt8 {
        let bits = d.bitPattern
        let ad = Double(bitPattern: bits & 0x7FFF_FFFF_FFFF_FFFF)
        let q = fastMagnitudeCode(
            ad, shift: 50, magic: 0x1p50, minNormal: 0x1p-14, limit: 0x1p16, codeBase: 1009 << 2)
        let quiet: UInt64 = ad != ad ? 0x02 : 0
        return UInt8(truncatingIfNeeded: q | quiet | ((bits &>> 56) & 0x80))
    }

    /// Float64 -> F8_E4M3 (fn), branch-free: values above 464 round to 480 or more, and 480's
    /// code is the NaN code 0x7F, so the clamp at 480 gives S|0x7F for overflow, Inf and NaN
    /// (464 itself ties to 448).
    @inlinable @inline(__always)
    static func encodeE4M3FN(_ d: Double) -> UInt8 {
        let bits = d.bitPattern
        let ad = Double(bitPattern: bits & 0x7FFF_FFFF_FFFF_FFFF)
        let q = fastMagnitudeCode(
            ad, shift: 49, magic: 0x1p49, minNormal: 0x1p-6, limit: 480.0, codeBase: 1017 << 3)
        return UInt8(truncatingIfNeeded: q | ((bits &>> 56) & 0x80))
    }

    /// Float64 -> an FNUZ F8 code, branch-free: clamped at `limit` (2^(emax+1), whose code is
    /// 0x80); codes >= 0x80 (overflow, Inf, NaN) -> 0x80; a zero result is +0.
    @inlinable @inline(__always)
    static func encodeFNUZ(
        _ d: Double, shift: UInt64, magic: Double, minNormal: Double, limit: Double, codeBase: UInt64
    ) -> UInt8 {
        let bits = d.bitPattern
        let ad = Double(bitPattern: bits & 0x7FFF_FFFF_FFFF_FFFF)
        let q = fastMagnitudeCode(
            ad, shift: shift, magic: magic, minNormal: minNormal, limit: limit, codeBase: codeBase)
        let sign = q == 0 || q >= 0x80 ? 0 : (bits &>> 56) & 0x80
        return UInt8(truncatingIfNeeded: q | sign)
    }

    /// Float64 -> F8_E4M3FNUZ (max 240; 248 ties to 256 = overflow).
    @inlinable @inline(__always)
    static func encodeE4M3FNUZ(_ d: Double) -> UInt8 {
        encodeFNUZ(d, shift: 49, magic: 0x1p49, minNormal: 0x1p-7, limit: 256.0, codeBase: 1016 << 3)
    }

    /// Float64 -> F8_E5M2FNUZ (max 57344; 61440 ties to 65536 = overflow).
    @inlinable @inline(__always)
    static func encodeE5M2FNUZ(_ d: Double) -> UInt8 {
        encodeFNUZ(d, shift: 50, magic: 0x1p50, minNormal: 0x1p-15, limit: 65536.0, codeBase: 1008 << 2)
    }

    /// Float64 -> F8_E8M0, branch-free: 2^k with k = floor(log2 x), plus one if x >= 1.5 * 2^k
    /// (ties up); below 2^-127 -> 0x00; +0, negatives (sign bit set, so -0 too), Inf, NaN and
    /// rounding past 2^127 -> 0xFF.
    @inlinable @inline(__always)
    static func encodeE8M0(_ d: Double) -> UInt8 {
        let bits = d.bitPattern
        let c = Int64(bitPattern: bits &>> 52) &- 896 &+ Int64(bitPattern: (bits &>> 51) & 1)
        var code = max(c, 0)
        code = code > 254 || d == 0 ? 0xFF : code
        return UInt8(truncatingIfNeeded: code)
    }

    /// Float64 -> an F8 code (the branch-free kernels; `encodeBits` is the exact general path
    /// they are tested against).
    @inlinable @inline(__always)
    public static func encodeF8(_ d: Double, _ dtype: DType) -> UInt8 {
        switch dtype {
        case .f8E5M2: return encodeE5M2(d)
        case .f8E4M3: return encodeE4M3FN(d)
        case .f8E4M3FNUZ:
            return encodeE4M3FNUZ(d)
        case .f8E5M2FNUZ:
            return encodeE5M2FNUZ(d)
        case .f8E8M0: return encodeE8M0(d)
        default: preconditionFailure("encodeF8 called with \(dtype)")
        }
    }

    // MARK: - Whole buffers (convenience; the hot loops are in ChunkAccumulator)

    /// Decodes little-endian raw bytes of `dtype` to Float64 (C64: two values per element).
    public static func decode(_ bytes: UnsafeRawBufferPointer, as dtype: DType) throws -> [Double] {
        guard supports(dtype) else { throw NumericsError.unsupportedDType(dtype) }
        let w = laneWidth(dtype)
        guard bytes.count % w == 0 else {
            throw NumericsError.sizeMismatch(expected: bytes.count / w * w, actual: bytes.count)
        }
        let n = bytes.count / w
        return try [Double](unsafeUninitializedCapacity: n) { out, count in
            try ChunkAccumulator.start(from: bytes, dtype: dtype, into: out, weight: nil)
            count = n
        }
    }

    /// Encodes Float64 values to little-endian raw bytes of `dtype` (C64: two values per element).
    public static func encode(_ values: [Double], as dtype: DType) throws -> [UInt8] {
        guard supports(dtype) else { throw NumericsError.unsupportedDType(dtype) }
        let n = values.count * laneWidth(dtype)
        return try [UInt8](unsafeUninitializedCapacity: n) { out, count in
            try values.withUnsafeBufferPointer { src in
                try ChunkAccumulator.encode(src, dtype: dtype, into: UnsafeMutableRawBufferPointer(out))
            }
            count = n
        }
    }
}

/// Decode tables of the five F8 types (256 Float64 each), built once from `decodeBits`.
@usableFromInline
enum F8Tables {
    static func build(_ f: MinifloatFormat) -> [Double] {
        (0..<256).map { Double(bitPattern: FloatCodec.decodeBits(UInt64($0), f)) }
    }

    @usableFromInline static let e5m2 = build(.e5m2)
    @usableFromInline static let e4m3fn = build(.e4m3fn)
    @usableFromInline static let e4m3fnuz = build(.e4m3fnuz)
    @usableFromInline static let e5m2fnuz = build(.e5m2fnuz)
    @usableFromInline static let e8m0 = build(.e8m0)

    @usableFromInline
    static func table(_ dtype: DType) -> [Double] {
        switch dtype {
        case .f8E5M2: return e5m2
        case .f8E4M3: return e4m3fn
        case .f8E4M3FNUZ: return e4m3fnuz
        case .f8E5M2FNUZ: return e5m2fnuz
        case .f8E8M0: return e8m0
        default: preconditionFailure("no F8 table for \(dtype)")
        }
    }
}
