/// Identifies a filter in the on-disk blob header (raw values are part of the format: never renumber).
///
/// A filter is a reversible, size-preserving byte transform applied to a blob's payload before LZ4
/// compression. Float weights barely compress as they are; grouping the bytes (or bits) of equal
/// significance of consecutive elements puts the slowly varying sign/exponent bits next to each
/// other, which LZ4 can then exploit. The exact layouts are defined on ``Shuffle``.
public enum ShuffleFilter: UInt8, Sendable, CaseIterable {
    /// No transform: the output is a copy of the input.
    case none = 0
    /// Byte transposition of fixed-width lanes (see ``Shuffle`` for the layout).
    case byteShuffle = 1
    /// Bit-plane transposition of fixed-width lanes (see ``Shuffle`` for the layout).
    case bitShuffle = 2
    /// Byte transposition, then bit-plane transposition of the upper half of the byte planes
    /// only (see `Shuffle+Hybrid.swift` for the layout).
    case hybridShuffle = 3
}

/// The shuffle filters: size-preserving, exactly invertible transforms of a byte buffer viewed as
/// a sequence of fixed-width little-endian elements ("lanes") of `W` bytes, `W` ∈ {1, 2, 4, 8}.
///
/// Let `N = count` be the number of input bytes. Layouts (these are part of the on-disk format):
///
/// * `.none`: `out[k] = in[k]` for every `k`.
///
/// * `.byteShuffle`, lane width `W`: let `n = N / W` (whole elements) and `t = N % W`.
///   For byte index `b` in `0..<W` and element `i` in `0..<n`: `out[b·n + i] = in[i·W + b]`
///   ("byte 0 of every element, then byte 1 of every element, …, byte W−1").
///   The `t` trailing bytes are copied verbatim: `out[n·W + k] = in[n·W + k]` for `k` in `0..<t`.
///   With `W = 1` this is the identity.
///
/// * `.bitShuffle`, lane width `W`: let `g = N / (8·W)` and `m = 8·g` (the number of elements
///   transformed: the largest multiple of 8 elements that fits). The first `m·W` bytes become
///   `8·W` bit-planes of `g` bytes each; plane `p` occupies `out[p·g ..< (p+1)·g]`.
///   Plane `p = 8·b + j` (`b` in `0..<W`, `j` in `0..<8`) holds bit `j` (0 = least significant) of
///   byte `b` of every element `i` in `0..<m`, where byte `b` of element `i` is `in[i·W + b]`
///   (little-endian byte order within the element), packed LSB-first:
///   bit `(i % 8)` of `out[p·g + i / 8]` = bit `j` of `in[i·W + b]`.
///   The remaining `N − m·W` bytes (fewer than `8·W`) are copied verbatim to the same offsets.
///   With `W = 1` this is still a real transform (8 planes of `N / 8` bytes).
///   Equivalently: bit-shuffle = byte-shuffle of the first `m` elements, followed by an 8×8 bit
///   transpose of every run of 8 consecutive bytes of each byte plane, with the bytes of equal
///   bit index gathered into their own plane.
///
/// Both directions run entirely on raw pointers, use 128-bit SIMD byte interleaves (SSE2 on
/// x86-64, NEON on arm64) and 64-bit-lane bit-matrix transposes, and allocate nothing on the heap.
enum Shuffle {
    /// Applies `filter` to `source` with lanes of `laneWidth` bytes (1, 2, 4 or 8), writing exactly source.count bytes to `destination` (same count; must not overlap).
    static func apply(
        _ filter: ShuffleFilter, laneWidth: Int, source: UnsafeRawBufferPointer,
        destination: UnsafeMutableRawBufferPointer, scratch: UnsafeMutableRawBufferPointer? = nil
    ) {
        precondition(source.count == destination.count, "Shuffle.apply: source and destination sizes differ")
        precondition(laneWidth == 1 || laneWidth == 2 || laneWidth == 4 || laneWidth == 8, "Shuffle.apply: bad lane width")
        guard let src = source.baseAddress, let dst = destination.baseAddress, source.count > 0 else { return }
        let count = source.count
        switch filter {
        case .none:
            dst.copyMemory(from: src, byteCount: count)
        case .byteShuffle:
            let n = count / laneWidth
            if laneWidth == 1 {
                dst.copyMemory(from: src, byteCount: count)
                return
            }
            shuffleBytes(src, dst, elements: n, width: laneWidth, planeStride: n)
            copyTail(src, dst, from: n * laneWidth, to: count)
        case .bitShuffle:
            let groups = count / (8 * laneWidth)
            bitShuffleForward(src, dst, groups: groups, width: laneWidth)
            copyTail(src, dst, from: groups * 8 * laneWidth, to: count)
        case .hybridShuffle:
            hybridForward(src, dst, count: count, laneWidth: laneWidth, scratch: scratch)
        }
    }

    /// The exact inverse of `apply`.
    static func invert(
        _ filter: ShuffleFilter, laneWidth: Int, source: UnsafeRawBufferPointer,
        destination: UnsafeMutableRawBufferPointer, scratch: UnsafeMutableRawBufferPointer? = nil
    ) {
        precondition(source.count == destination.count, "Shuffle.invert: source and destination sizes differ")
        precondition(laneWidth == 1 || laneWidth == 2 || laneWidth == 4 || laneWidth == 8, "Shuffle.invert: bad lane width")
        guard let src = source.baseAddress, let dst = destination.baseAddress, source.count > 0 else { return }
        let count = source.count
        switch filter {
        case .none:
            dst.copyMemory(from: src, byteCount: count)
        case .byteShuffle:
            let n = count / laneWidth
            if laneWidth == 1 {
                dst.copyMemory(from: src, byteCount: count)
                return
            }
            unshuffleBytes(src, dst, elements: n, width: laneWidth, planeStride: n)
            copyTail(src, dst, from: n * laneWidth, to: count)
        case .bitShuffle:
            let groups = count / (8 * laneWidth)
            bitShuffleInverse(src, dst, groups: groups, width: laneWidth)
            copyTail(src, dst, from: groups * 8 * laneWidth, to: count)
        case .hybridShuffle:
            hybridInverse(src, dst, count: count, laneWidth: laneWidth, scratch: scratch)
        }
    }

    /// Copies bytes `start..<end` of `src` to the same offsets of `dst` (the untransformed tail).
    @inline(__always)
    static func copyTail(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, from start: Int, to end: Int) {
        if end > start { (dst + start).copyMemory(from: src + start, byteCount: end - start) }
    }

    // MARK: - SIMD building blocks
    //
    // The kernels view a block of 16-byte vectors as one array of bits whose index (the "address")
    // is split into fields: vector index (v…), 64-bit half of the vector (h), byte within the
    // 64-bit lane (a2 a1 a0) and bit within the byte (j2 j1 j0). Every shuffle of a block is a
    // permutation of these address bits, composed of three primitives:
    //  * `swapAcross` (a "delta swap" between two vectors: shift, xor, and, xor, shift, xor):
    //    exchanges one vector-index bit with one address bit inside the 64-bit lanes;
    //  * `swapHalves` (`punpcklqdq` / `punpckhqdq`): exchanges one vector-index bit with h;
    //  * renaming vectors (which variable is loaded from / stored to where): free.
    // Width 2 uses a single byte `deinterleave` / `interleave` instead (pand/psrlw + packuswb,
    // punpck{l,h}bw). Chains of several byte-granular shuffles are avoided on purpose: LLVM fuses
    // them into one many-input shuffle that SSE2 (no `pshufb`) lowers into long, slow sequences,
    // whereas the xors of `swapAcross` keep every step a plain instruction.
    // All of this assumes little-endian lanes; big-endian targets take the portable scalar path.

    /// A 16-byte vector: one SSE2 / NEON register, as bytes.
    typealias V = SIMD16<UInt8>
    /// The same 16 bytes as two little-endian 64-bit lanes.
    typealias L = SIMD2<UInt64>

    /// Delta-swap mask for address bit 0 inside a 64-bit lane (shift 1): a one at every lane bit
    /// position `p` whose bit 0 is zero. `maskN` likewise selects the positions `p` with
    /// `p & N == 0`, for the delta swap with shift `N`.
    static let mask1: UInt64 = 0x5555_5555_5555_5555
    /// Mask for a delta swap of address bit 1 (shift 2): see ``mask1``.
    static let mask2: UInt64 = 0x3333_3333_3333_3333
    /// Mask for a delta swap of address bit 2 (shift 4): see ``mask1``.
    static let mask4: UInt64 = 0x0F0F_0F0F_0F0F_0F0F
    /// Mask for a delta swap of byte-address bit 0 (shift 8): see ``mask1``.
    static let mask8: UInt64 = 0x00FF_00FF_00FF_00FF
    /// Mask for a delta swap of byte-address bit 1 (shift 16): see ``mask1``.
    static let mask16: UInt64 = 0x0000_FFFF_0000_FFFF
    /// Mask for a delta swap of byte-address bit 2 (shift 32): see ``mask1``.
    static let mask32: UInt64 = 0x0000_0000_FFFF_FFFF

    /// Loads 16 bytes from `p + offset` (no alignment requirement).
    @inline(__always)
    static func load(_ p: UnsafeRawPointer, _ offset: Int) -> V {
        p.loadUnaligned(fromByteOffset: offset, as: V.self)
    }

    /// Stores 16 bytes to `p + offset` (no alignment requirement).
    @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutableRawPointer, _ offset: Int) {
        p.storeBytes(of: v, toByteOffset: offset, as: V.self)
    }

    /// Loads 16 bytes from `p + offset` as two 64-bit lanes (no alignment requirement).
    @inline(__always)
    static func loadLanes(_ p: UnsafeRawPointer, _ offset: Int) -> L {
        p.loadUnaligned(fromByteOffset: offset, as: L.self)
    }

    /// Stores two 64-bit lanes as 16 bytes to `p + offset` (no alignment requirement).
    @inline(__always)
    static func storeLanes(_ v: L, _ p: UnsafeMutableRawPointer, _ offset: Int) {
        p.storeBytes(of: v, toByteOffset: offset, as: L.self)
    }

    /// Splits the 32 bytes `a ++ b` into their even-indexed and odd-indexed bytes (each 16 bytes,
    /// in order). SSE2: `pand`/`psrlw` + `packuswb`; rotates the byte address right by one bit.
    @inline(__always)
    static func deinterleave(_ a: V, _ b: V) -> (even: V, odd: V) {
        let x = unsafeBitCast(a, to: SIMD8<UInt16>.self)
        let y = unsafeBitCast(b, to: SIMD8<UInt16>.self)
        return (narrow(x, y), narrow(x &>> 8, y &>> 8))
    }

    /// The low bytes of the 16 `UInt16` lanes of `x ++ y` (a truncating narrow: `pand` +
    /// `packuswb` on SSE2), spelled out lane by lane so that it is always inlined.
    @inline(__always)
    static func narrow(_ x: SIMD8<UInt16>, _ y: SIMD8<UInt16>) -> V {
        V(
            UInt8(truncatingIfNeeded: x[0]), UInt8(truncatingIfNeeded: x[1]), UInt8(truncatingIfNeeded: x[2]),
            UInt8(truncatingIfNeeded: x[3]), UInt8(truncatingIfNeeded: x[4]), UInt8(truncatingIfNeeded: x[5]),
            UInt8(truncatingIfNeeded: x[6]), UInt8(truncatingIfNeeded: x[7]), UInt8(truncatingIfNeeded: y[0]),
            UInt8(truncatingIfNeeded: y[1]), UInt8(truncatingIfNeeded: y[2]), UInt8(truncatingIfNeeded: y[3]),
            UInt8(truncatingIfNeeded: y[4]), UInt8(truncatingIfNeeded: y[5]), UInt8(truncatingIfNeeded: y[6]),
            UInt8(truncatingIfNeeded: y[7]))
    }

    /// Interleaves `a` and `b` bytewise: returns `a0 b0 a1 b1 … a7 b7` and `a8 b8 … a15 b15`
    /// (`punpcklbw` / `punpckhbw`); the inverse of ``deinterleave(_:_:)``.
    @inline(__always)
    static func interleave(_ a: V, _ b: V) -> (V, V) {
        (
            V(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4], a[5], b[5], a[6], b[6], a[7], b[7]),
            V(
                a[8], b[8], a[9], b[9], a[10], b[10], a[11], b[11], a[12], b[12], a[13], b[13], a[14], b[14],
                a[15], b[15])
        )
    }

    /// Delta swap between two vectors: for every lane bit position `p` selected by `mask`,
    /// exchanges bit `p + shift` of `a` with bit `p` of `b`. With `shift = 1 << k` and the matching
    /// mask this exchanges address bit `k` (inside the lanes) with the vector-index bit that tells
    /// `a` (0) from `b` (1).
    @inline(__always)
    static func swapAcross(_ a: inout L, _ b: inout L, _ shift: UInt64, _ mask: UInt64) {
        let t = ((a &>> shift) ^ b) & L(repeating: mask)
        b ^= t
        a ^= t &<< shift
    }

    /// Exchanges the high lane of `a` with the low lane of `b`: `a' = (a.lo, b.lo)`,
    /// `b' = (a.hi, b.hi)` (`punpcklqdq` / `punpckhqdq`). Exchanges address bit 3 (the 64-bit half)
    /// with the vector-index bit that tells `a` from `b`.
    @inline(__always)
    static func swapHalves(_ a: inout L, _ b: inout L) {
        let x = unsafeBitCast(a, to: V.self)
        let y = unsafeBitCast(b, to: V.self)
        a = unsafeBitCast(
            V(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]),
            to: L.self)
        b = unsafeBitCast(
            V(
                x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15], y[8], y[9], y[10], y[11], y[12], y[13],
                y[14], y[15]),
            to: L.self)
    }

    // MARK: - Byte shuffle kernels

    /// Byte-shuffles elements `0..<n` of width `width` (2, 4 or 8) from `src`, writing byte `b` of
    /// element `i` to `dst[b·planeStride + i]`. `planeStride ≥ n`; the tail of `n % 16` elements is
    /// done bytewise.
    static func shuffleBytes(
        _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, elements n: Int, width: Int, planeStride: Int
    ) {
        var done = 0
        #if _endian(little)
            let blocks = n / 16
            switch width {
            case 2: shuffle2(src, dst, blocks: blocks, stride: planeStride)
            case 4: shuffle4(src, dst, blocks: blocks, stride: planeStride)
            case 8: shuffle8(src, dst, blocks: blocks, stride: planeStride)
            default: preconditionFailure("unsupported lane width")
            }
            done = blocks * 16
        #endif
        for i in done..<max(done, n) {
            for b in 0..<width {
                dst.storeBytes(
                    of: src.load(fromByteOffset: i * width + b, as: UInt8.self), toByteOffset: b * planeStride + i,
                    as: UInt8.self)
            }
        }
    }

    /// Inverse of ``shuffleBytes(_:_:elements:width:planeStride:)``: reads byte `b` of element `i`
    /// from `src[b·planeStride + i]` and writes the elements `0..<n` contiguously to `dst`.
    static func unshuffleBytes(
        _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, elements n: Int, width: Int, planeStride: Int
    ) {
        unshuffleBytes(lower: src, upper: src + width / 2 * planeStride, dst, elements: n, width: width, planeStride: planeStride)
    }

    /// ``unshuffleBytes(_:_:elements:width:planeStride:)`` with the byte planes in two places:
    /// planes `0..<width/2` at `lower + b·planeStride`, planes `width/2..<width` at
    /// `upper + (b − width/2)·planeStride`. The hybrid filter's inverse reads its lower planes
    /// where LZ4 left them and its upper planes from the bit-unshuffle's output, with no copy.
    static func unshuffleBytes(
        lower: UnsafeRawPointer, upper: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, elements n: Int, width: Int,
        planeStride: Int
    ) {
        var done = 0
        #if _endian(little)
            let blocks = n / 16
            switch width {
            case 2: unshuffle2(lower, upper, dst, blocks: blocks, stride: planeStride)
            case 4: unshuffle4(lower, upper, dst, blocks: blocks, stride: planeStride)
            case 8: unshuffle8(lower, upper, dst, blocks: blocks, stride: planeStride)
            default: preconditionFailure("unsupported lane width")
            }
            done = blocks * 16
        #endif
        let h = width / 2
        for i in done..<max(done, n) {
            for b in 0..<width {
                let byte =
                    b < h
                    ? lower.load(fromByteOffset: b * planeStride + i, as: UInt8.self)
                    : upper.load(fromByteOffset: (b - h) * planeStride + i, as: UInt8.self)
                dst.storeBytes(of: byte, toByteOffset: i * width + b, as: UInt8.self)
            }
        }
    }

    /// Width-2 byte shuffle of `blocks` blocks of 16 elements (32 bytes → 2 planes × 16 bytes):
    /// one deinterleave turns address `[e3 | e2 e1 e0 b0]` into `[b0 | e3 e2 e1 e0]`.
    static func shuffle2(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, blocks: Int, stride: Int) {
        var s = src
        var d = dst
        for _ in 0..<blocks {
            let p = deinterleave(load(s, 0), load(s, 16))
            store(p.even, d, 0)
            store(p.odd, d, stride)
            s += 32
            d += 16
        }
    }

    /// Width-4 byte shuffle of `blocks` blocks of 16 elements (64 bytes → 4 planes × 16 bytes).
    /// Address `[e3 e2 | e1 | e0 b1 b0]` (vector | half | byte in lane; x_k = bytes 16k…16k+15)
    /// becomes `[b1 b0 | e3 | e2 e1 e0]` through swap(v4↔a2) `[e3 e0|e1|e2 b1 b0]`,
    /// swap(v4↔a0) `[e3 b0|e1|e2 b1 e0]`, halves(v5↔h) `[e1 b0|e3|e2 b1 e0]`,
    /// swap(v5↔a1) `[b1 b0|e3|e2 e1 e0]`; so x_b is plane b.
    static func shuffle4(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, blocks: Int, stride: Int) {
        var s = src
        var d = dst
        for _ in 0..<blocks {
            var x0 = loadLanes(s, 0)
            var x1 = loadLanes(s, 16)
            var x2 = loadLanes(s, 32)
            var x3 = loadLanes(s, 48)
            swapAcross(&x0, &x1, 32, mask32); swapAcross(&x2, &x3, 32, mask32)
            swapAcross(&x0, &x1, 8, mask8); swapAcross(&x2, &x3, 8, mask8)
            swapHalves(&x0, &x2); swapHalves(&x1, &x3)
            swapAcross(&x0, &x2, 16, mask16); swapAcross(&x1, &x3, 16, mask16)
            storeLanes(x0, d, 0)
            storeLanes(x1, d, stride)
            storeLanes(x2, d, 2 &* stride)
            storeLanes(x3, d, 3 &* stride)
            s += 64
            d += 16
        }
    }

    /// Width-8 byte shuffle of `blocks` blocks of 16 elements (128 bytes → 8 planes × 16 bytes).
    /// Address `[e3 e2 e1 | e0 | b2 b1 b0]` (x_k = bytes 16k…16k+15) becomes
    /// `[b0 b2 b1 | e3 | e2 e1 e0]` through swap(v4↔a1) `[e3 e2 b1|e0|b2 e1 b0]`,
    /// swap(v5↔a2) `[e3 b2 b1|e0|e2 e1 b0]`, halves(v6↔h) `[e0 b2 b1|e3|e2 e1 b0]`,
    /// swap(v6↔a0) `[b0 b2 b1|e3|e2 e1 e0]`; so x_k holds plane `4·k1 + 2·k0 + k2`.
    static func shuffle8(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, blocks: Int, stride: Int) {
        var s = src
        var d = dst
        for _ in 0..<blocks {
            var x0 = loadLanes(s, 0)
            var x1 = loadLanes(s, 16)
            var x2 = loadLanes(s, 32)
            var x3 = loadLanes(s, 48)
            var x4 = loadLanes(s, 64)
            var x5 = loadLanes(s, 80)
            var x6 = loadLanes(s, 96)
            var x7 = loadLanes(s, 112)
            swapAcross(&x0, &x1, 16, mask16); swapAcross(&x2, &x3, 16, mask16)
            swapAcross(&x4, &x5, 16, mask16); swapAcross(&x6, &x7, 16, mask16)
            swapAcross(&x0, &x2, 32, mask32); swapAcross(&x1, &x3, 32, mask32)
            swapAcross(&x4, &x6, 32, mask32); swapAcross(&x5, &x7, 32, mask32)
            swapHalves(&x0, &x4); swapHalves(&x1, &x5); swapHalves(&x2, &x6); swapHalves(&x3, &x7)
            swapAcross(&x0, &x4, 8, mask8); swapAcross(&x1, &x5, 8, mask8)
            swapAcross(&x2, &x6, 8, mask8); swapAcross(&x3, &x7, 8, mask8)
            storeLanes(x0, d, 0)
            storeLanes(x4, d, stride)
            storeLanes(x1, d, 2 &* stride)
            storeLanes(x5, d, 3 &* stride)
            storeLanes(x2, d, 4 &* stride)
            storeLanes(x6, d, 5 &* stride)
            storeLanes(x3, d, 6 &* stride)
            storeLanes(x7, d, 7 &* stride)
            s += 128
            d += 16
        }
    }

    /// Width-2 inverse byte shuffle of `blocks` blocks of 16 elements: one interleave.
    static func unshuffle2(
        _ lower: UnsafeRawPointer, _ upper: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, blocks: Int, stride: Int
    ) {
        var s = lower
        var u = upper
        var d = dst
        for _ in 0..<blocks {
            let v = interleave(load(s, 0), load(u, 0))
            store(v.0, d, 0)
            store(v.1, d, 16)
            s += 16
            u += 16
            d += 32
        }
    }

    /// Width-4 inverse byte shuffle of `blocks` blocks of 16 elements: ``shuffle4(_:_:blocks:stride:)``
    /// backwards. Address `[b1 b0 | e3 | e2 e1 e0]` (x_b = plane b) becomes `[e3 e2 | e1 | e0 b1 b0]`
    /// through swap(v5↔a1) `[e1 b0|e3|e2 b1 e0]`, halves(v5↔h) `[e3 b0|e1|e2 b1 e0]`,
    /// swap(v4↔a0) `[e3 e0|e1|e2 b1 b0]`, swap(v4↔a2) `[e3 e2|e1|e0 b1 b0]`.
    static func unshuffle4(
        _ lower: UnsafeRawPointer, _ upper: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, blocks: Int, stride: Int
    ) {
        var s = lower
        var u = upper
        var d = dst
        for _ in 0..<blocks {
            var x0 = loadLanes(s, 0)
            var x1 = loadLanes(s, stride)
            var x2 = loadLanes(u, 0)
            var x3 = loadLanes(u, stride)
            swapAcross(&x0, &x2, 16, mask16); swapAcross(&x1, &x3, 16, mask16)
            swapHalves(&x0, &x2); swapHalves(&x1, &x3)
            swapAcross(&x0, &x1, 8, mask8); swapAcross(&x2, &x3, 8, mask8)
            swapAcross(&x0, &x1, 32, mask32); swapAcross(&x2, &x3, 32, mask32)
            storeLanes(x0, d, 0)
            storeLanes(x1, d, 16)
            storeLanes(x2, d, 32)
            storeLanes(x3, d, 48)
            s += 16
            u += 16
            d += 64
        }
    }

    /// Width-8 inverse byte shuffle of `blocks` blocks of 16 elements: ``shuffle8(_:_:blocks:stride:)``
    /// backwards (plane b is loaded into x_k with k = 4·b0 + 2·b2 + b1, the four exchanges run in
    /// reverse order, and x_k is stored as bytes 16k…16k+15).
    static func unshuffle8(
        _ lower: UnsafeRawPointer, _ upper: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, blocks: Int, stride: Int
    ) {
        var s = lower
        var u = upper
        var d = dst
        for _ in 0..<blocks {
            var x0 = loadLanes(s, 0)
            var x4 = loadLanes(s, stride)
            var x1 = loadLanes(s, 2 &* stride)
            var x5 = loadLanes(s, 3 &* stride)
            var x2 = loadLanes(u, 0)
            var x6 = loadLanes(u, stride)
            var x3 = loadLanes(u, 2 &* stride)
            var x7 = loadLanes(u, 3 &* stride)
            swapAcross(&x0, &x4, 8, mask8); swapAcross(&x1, &x5, 8, mask8)
            swapAcross(&x2, &x6, 8, mask8); swapAcross(&x3, &x7, 8, mask8)
            swapHalves(&x0, &x4); swapHalves(&x1, &x5); swapHalves(&x2, &x6); swapHalves(&x3, &x7)
            swapAcross(&x0, &x2, 32, mask32); swapAcross(&x1, &x3, 32, mask32)
            swapAcross(&x4, &x6, 32, mask32); swapAcross(&x5, &x7, 32, mask32)
            swapAcross(&x0, &x1, 16, mask16); swapAcross(&x2, &x3, 16, mask16)
            swapAcross(&x4, &x5, 16, mask16); swapAcross(&x6, &x7, 16, mask16)
            storeLanes(x0, d, 0)
            storeLanes(x1, d, 16)
            storeLanes(x2, d, 32)
            storeLanes(x3, d, 48)
            storeLanes(x4, d, 64)
            storeLanes(x5, d, 80)
            storeLanes(x6, d, 96)
            storeLanes(x7, d, 112)
            s += 16
            u += 16
            d += 128
        }
    }
}
