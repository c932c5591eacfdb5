// Bit-shuffle kernels. Layout: see the doc comment of `Shuffle` (plane p = 8·b + j holds bit j of
// byte b of every element, LSB-first packing of 8 consecutive elements per plane byte).
//
// Strategy, per chunk of up to `bitChunkElements` elements (a multiple of 128):
//   1. byte-shuffle the chunk into an L1-resident scratch buffer (W byte planes of k bytes); for
//      W = 1 the input already is the single byte plane;
//   2. every 128-byte block of a byte plane (8 vectors, 128 elements) becomes 16 bytes of each of
//      its 8 bit planes through seven address-bit exchanges (see `bitPlanesForward`): an 8×8 bit
//      transpose and the regrouping of bytes, done together with 64-bit-lane delta swaps.
// The inverse runs the same steps backwards. Element groups beyond the last whole 128-element
// block (fewer than 128 elements) are handled one 8-element group at a time with a scalar 8×8
// bit-matrix transpose.

extension Shuffle {
    /// Elements per scratch chunk for widths > 1 (a multiple of 128; 16 KiB of scratch at width 8,
    /// so the chunk stays in L1 between the byte-shuffle and bit-plane passes).
    static let bitChunkElements = 2048

    /// Transposes the 8×8 bit matrix held in a 64-bit word (row r = byte r, column c = bit c):
    /// bit `8·r + c` moves to bit `8·c + r`. Three delta swaps (the classic "transpose8").
    @inline(__always)
    static func transposeBits(_ word: UInt64) -> UInt64 {
        var x = word
        var t = (x ^ (x &>> 7)) & 0x00AA_00AA_00AA_00AA
        x = x ^ t ^ (t &<< 7)
        t = (x ^ (x &>> 14)) & 0x0000_CCCC_0000_CCCC
        x = x ^ t ^ (t &<< 14)
        t = (x ^ (x &>> 28)) & 0x0000_0000_F0F0_F0F0
        x = x ^ t ^ (t &<< 28)
        return x
    }

    /// Bit-shuffles the first `8·groups` elements of width `width` from `src` into `dst`
    /// (`8·width` planes of `groups` bytes each). Does not touch the trailing bytes.
    static func bitShuffleForward(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, groups: Int, width: Int) {
        var simdEnd = 0  // elements done by the vector kernels
        #if _endian(little)
            simdEnd = (groups &* 8) & ~127
            if width == 1 {
                bitPlanesForward(src, dst, bytes: simdEnd, planeStride: groups)
            } else if simdEnd > 0 {
                let chunk = bitChunkElements
                withUnsafeTemporaryAllocation(byteCount: chunk * width, alignment: 16) { scratch in
                    let tmp = scratch.baseAddress!
                    var e = 0
                    while e < simdEnd {
                        let k = min(chunk, simdEnd - e)
                        shuffleBytes(src + e * width, tmp, elements: k, width: width, planeStride: k)
                        for b in 0..<width {
                            bitPlanesForward(tmp + b * k, dst + 8 * b * groups + e / 8, bytes: k, planeStride: groups)
                        }
                        e += k
                    }
                }
            }
        #endif
        for g in (simdEnd / 8)..<max(simdEnd / 8, groups) {
            for b in 0..<width {
                var x: UInt64 = 0
                for i in 0..<8 {
                    x |= UInt64(src.load(fromByteOffset: (8 * g + i) * width + b, as: UInt8.self)) &<< UInt64(8 * i)
                }
                x = transposeBits(x)
                for j in 0..<8 {
                    dst.storeBytes(
                        of: UInt8(truncatingIfNeeded: x &>> UInt64(8 * j)), toByteOffset: (8 * b + j) * groups + g,
                        as: UInt8.self)
                }
            }
        }
    }

    /// Inverse of ``bitShuffleForward(_:_:groups:width:)``.
    static func bitShuffleInverse(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, groups: Int, width: Int) {
        var simdEnd = 0
        #if _endian(little)
            simdEnd = (groups &* 8) & ~127
            if width == 1 {
                bitPlanesInverse(src, planeStride: groups, dst, bytes: simdEnd)
            } else if simdEnd > 0 {
                let chunk = bitChunkElements
                withUnsafeTemporaryAllocation(byteCount: chunk * width, alignment: 16) { scratch in
                    let tmp = scratch.baseAddress!
                    var e = 0
                    while e < simdEnd {
                        let k = min(chunk, simdEnd - e)
                        for b in 0..<width {
                            bitPlanesInverse(src + 8 * b * groups + e / 8, planeStride: groups, tmp + b * k, bytes: k)
                        }
                        unshuffleBytes(UnsafeRawPointer(tmp), dst + e * width, elements: k, width: width, planeStride: k)
                        e += k
                    }
                }
            }
        #endif
        for g in (simdEnd / 8)..<max(simdEnd / 8, groups) {
            for b in 0..<width {
                var x: UInt64 = 0
                for j in 0..<8 {
                    x |= UInt64(src.load(fromByteOffset: (8 * b + j) * groups + g, as: UInt8.self)) &<< UInt64(8 * j)
                }
                x = transposeBits(x)
                for i in 0..<8 {
                    dst.storeBytes(
                        of: UInt8(truncatingIfNeeded: x &>> UInt64(8 * i)), toByteOffset: (8 * g + i) * width + b,
                        as: UInt8.self)
                }
            }
        }
    }

    /// Splits one byte plane into its 8 bit planes: reads `bytes` (a multiple of 128) bytes from
    /// `src` (byte `i` = byte `b` of element `i`) and writes bit `j` of byte `i` to bit `i % 8` of
    /// `dst[j·planeStride + i / 8]`.
    ///
    /// A 128-byte block is 8 vectors x_r (elements 16r…16r+15); its 1024-bit address is
    /// `[r2 r1 r0 | c3 | c2 c1 c0 | j2 j1 j0]` (vector v6 v5 v4 | 64-bit half h | byte in lane
    /// a2 a1 a0 | bit in byte j2 j1 j0; element = 16r + c). The target is
    /// `[j0 j2 j1 | r2 | r1 r0 c3 | c2 c1 c0]`: vector ↔ bit plane, byte = element / 8,
    /// bit = element % 8. Seven exchanges:
    /// swap(v5↔a2) `[r2 c2 r0|c3|r1 c1 c0|j2 j1 j0]`, swap(v5↔j2) `[r2 j2 r0|c3|r1 c1 c0|c2 j1 j0]`,
    /// halves(v6↔h) `[c3 j2 r0|r2|r1 c1 c0|c2 j1 j0]`, swap(v4↔a1) `[c3 j2 c1|r2|r1 r0 c0|c2 j1 j0]`,
    /// swap(v4↔j1) `[c3 j2 j1|r2|r1 r0 c0|c2 c1 j0]`, swap(v6↔a0) `[c0 j2 j1|r2|r1 r0 c3|c2 c1 j0]`,
    /// swap(v6↔j0) `[j0 j2 j1|r2|r1 r0 c3|c2 c1 c0]`. So x_k ends up holding plane
    /// `4·k1 + 2·k0 + k2` (k = 4·k2 + 2·k1 + k0).
    static func bitPlanesForward(
        _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, bytes: Int, planeStride g: Int
    ) {
        var s = src
        var d = dst
        for _ in 0..<(bytes &>> 7) {
            var x0 = loadLanes(s, 0)
            var x1 = loadLanes(s, 16)
            var x2 = loadLanes(s, 32)
            var x3 = loadLanes(s, 48)
            var x4 = loadLanes(s, 64)
            var x5 = loadLanes(s, 80)
            var x6 = loadLanes(s, 96)
            var x7 = loadLanes(s, 112)
            swapAcross(&x0, &x2, 32, mask32); swapAcross(&x1, &x3, 32, mask32)
            swapAcross(&x4, &x6, 32, mask32); swapAcross(&x5, &x7, 32, mask32)
            swapAcross(&x0, &x2, 4, mask4); swapAcross(&x1, &x3, 4, mask4)
            swapAcross(&x4, &x6, 4, mask4); swapAcross(&x5, &x7, 4, mask4)
            swapHalves(&x0, &x4); swapHalves(&x1, &x5); swapHalves(&x2, &x6); swapHalves(&x3, &x7)
            swapAcross(&x0, &x1, 16, mask16); swapAcross(&x2, &x3, 16, mask16)
            swapAcross(&x4, &x5, 16, mask16); swapAcross(&x6, &x7, 16, mask16)
            swapAcross(&x0, &x1, 2, mask2); swapAcross(&x2, &x3, 2, mask2)
            swapAcross(&x4, &x5, 2, mask2); swapAcross(&x6, &x7, 2, mask2)
            swapAcross(&x0, &x4, 8, mask8); swapAcross(&x1, &x5, 8, mask8)
            swapAcross(&x2, &x6, 8, mask8); swapAcross(&x3, &x7, 8, mask8)
            swapAcross(&x0, &x4, 1, mask1); swapAcross(&x1, &x5, 1, mask1)
            swapAcross(&x2, &x6, 1, mask1); swapAcross(&x3, &x7, 1, mask1)
            storeLanes(x0, d, 0)
            storeLanes(x4, d, g)
            storeLanes(x1, d, 2 &* g)
            storeLanes(x5, d, 3 &* g)
            storeLanes(x2, d, 4 &* g)
            storeLanes(x6, d, 5 &* g)
            storeLanes(x3, d, 6 &* g)
            storeLanes(x7, d, 7 &* g)
            s += 128
            d += 16
        }
    }

    /// Inverse of ``bitPlanesForward(_:_:bytes:planeStride:)``: gathers 8 bit planes (stride
    /// `planeStride`) of `bytes / 8` bytes each back into `bytes` bytes of one byte plane at `dst`,
    /// applying the same seven exchanges in reverse order.
    static func bitPlanesInverse(
        _ src: UnsafeRawPointer, planeStride g: Int, _ dst: UnsafeMutableRawPointer, bytes: Int
    ) {
        var s = src
        var d = dst
        for _ in 0..<(bytes &>> 7) {
            var x0 = loadLanes(s, 0)
            var x4 = loadLanes(s, g)
            var x1 = loadLanes(s, 2 &* g)
            var x5 = loadLanes(s, 3 &* g)
            var x2 = loadLanes(s, 4 &* g)
            var x6 = loadLanes(s, 5 &* g)
            var x3 = loadLanes(s, 6 &* g)
            var x7 = loadLanes(s, 7 &* g)
            swapAcross(&x0, &x4, 1, mask1); swapAcross(&x1, &x5, 1, mask1)
            swapAcross(&x2, &x6, 1, mask1); swapAcross(&x3, &x7, 1, mask1)
            swapAcross(&x0, &x4, 8, mask8); swapAcross(&x1, &x5, 8, mask8)
            swapAcross(&x2, &x6, 8, mask8); swapAcross(&x3, &x7, 8, mask8)
            swapAcross(&x0, &x1, 2, mask2); swapAcross(&x2, &x3, 2, mask2)
            swapAcross(&x4, &x5, 2, mask2); swapAcross(&x6, &x7, 2, mask2)
            swapAcross(&x0, &x1, 16, mask16); swapAcross(&x2, &x3, 16, mask16)
            swapAcross(&x4, &x5, 16, mask16); swapAcross(&x6, &x7, 16, mask16)
            swapHalves(&x0, &x4); swapHalves(&x1, &x5); swapHalves(&x2, &x6); swapHalves(&x3, &x7)
            swapAcross(&x0, &x2, 4, mask4); swapAcross(&x1, &x3, 4, mask4)
            swapAcross(&x4, &x6, 4, mask4); swapAcross(&x5, &x7, 4, mask4)
            swapAcross(&x0, &x2, 32, mask32); swapAcross(&x1, &x3, 32, mask32)
            swapAcross(&x4, &x6, 32, mask32); swapAcross(&x5, &x7, 32, mask32)
            storeLanes(x0, d, 0)
            storeLanes(x1, d, 16)
            storeLanes(x2, d, 32)
            storeLanes(x3, d, 48)
            storeLanes(x4, d, 64)
            storeLanes(x5, d, 80)
            storeLanes(x6, d, 96)
            storeLanes(x7, d, 112)
            s += 16
            d += 128
        }
    }
}
