/// Encoding of a Huffman-coded plane (layout in `ExponentCodec` and docs/FORMAT.md).
extension Huffman {
    /// Bytes of the nibble-packed code-length table.
    static let tableBytes = 128
    /// Bytes of a coded plane's fixed part: the length table and four u32 stream lengths.
    static let fixedBytes = tableBytes + 4 * streams

    /// An upper bound of the coded size of a plane whose symbol counts are `histogram` under
    /// the code `lengths`: the fixed part plus every stream rounded up to whole bytes.
    static func codedSizeBound(_ histogram: UnsafePointer<UInt32>, _ lengths: UnsafePointer<UInt8>) -> Int {
        var bits = 0
        for s in 0..<256 { bits += Int(histogram[s]) * Int(lengths[s]) }
        return fixedBytes + bits / 8 + streams
    }

    /// Writes a coded plane of the `count` symbols at `src` under the code `lengths` to `dst`:
    /// the length table, the four stream lengths, then the streams. `dst` must have room for
    /// ``codedSizeBound(_:_:)`` plus 8 bytes (the bit writer stores whole 64-bit words).
    ///
    /// - Returns: the bytes written.
    static func encodePlane(
        _ src: UnsafePointer<UInt8>, count: Int, lengths: UnsafePointer<UInt8>, into dst: UnsafeMutableRawPointer
    ) -> Int {
        for i in 0..<tableBytes {
            dst.storeBytes(of: lengths[2 * i] | lengths[2 * i + 1] << 4, toByteOffset: i, as: UInt8.self)
        }
        let codes = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { codes.deallocate() }
        reversedCodes(lengths, into: codes)
        var out = dst + fixedBytes
        for k in 0..<streams {
            let range = segment(k, of: count)
            let n = encodeStream(src + range.lowerBound, count: range.count, codes: codes, into: out)
            dst.storeBytes(of: UInt32(n).littleEndian, toByteOffset: tableBytes + 4 * k, as: UInt32.self)
            out += n
        }
        return out - dst
    }

    /// Codes `count` symbols into one bit stream at `out` (least-significant bit first, zero
    /// padding to a whole byte); returns its length in bytes.
    @inline(__always)
    static func encodeStream(
        _ src: UnsafePointer<UInt8>, count: Int, codes: UnsafePointer<UInt32>, into out: UnsafeMutableRawPointer
    ) -> Int {
        var acc: UInt64 = 0
        var bits: UInt64 = 0
        var p = out
        var i = 0
        // Four codes (≤ 44 bits) on top of ≤ 7 pending bits fit the 64-bit accumulator.
        while i &+ 4 <= count {
            for j in 0..<4 {
                let c = codes[Int(src[i &+ j])]
                acc |= UInt64(c & 0xFFFF) &<< bits
                bits &+= UInt64(c &>> 16)
            }
            p.storeBytes(of: acc.littleEndian, as: UInt64.self)
            let whole = bits & ~7
            p += Int(whole &>> 3)
            acc = acc &>> whole
            bits &= 7
            i &+= 4
        }
        while i < count {
            let c = codes[Int(src[i])]
            acc |= UInt64(c & 0xFFFF) &<< bits
            bits &+= UInt64(c &>> 16)
            p.storeBytes(of: acc.littleEndian, as: UInt64.self)
            let whole = bits & ~7
            p += Int(whole &>> 3)
            acc = acc &>> whole
            bits &= 7
            i &+= 1
        }
        if bits > 0 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: acc), as: UInt8.self)
            p += 1
        }
        return p - out
    }
}
