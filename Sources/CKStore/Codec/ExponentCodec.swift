/// Codec 2, "exponent planes": an entropy coder for floating-point chunks (the ZipNN approach).
///
/// Each element of `W` bytes (2, 4 or 8; little-endian) is rotated left by one bit, which
/// moves the sign bit to bit 0 and the top eight exponent bits into the element's top byte
/// (the whole exponent for BF16 and F32). The rotated elements are byte-shuffled into `W`
/// byte planes of `n = R / W` bytes (plane `b` holds byte `b` of every element), and each plane
/// is stored on its own: raw, as one repeated byte, or Huffman-coded (see ``Huffman``). In
/// trained weights and optimizer moments the exponent plane holds only a few bits of entropy
/// per byte while the mantissa planes are close to random, so coding the exponent plane alone
/// saves most of what can be saved, and decoding costs one table lookup per element.
///
/// Payload layout (all integers little-endian; docs/FORMAT.md has the full description):
/// ```
/// plane 0, plane 1, …, plane W−1, then the R mod W tail bytes of the chunk verbatim
/// plane := mode u8, then
///   mode 0 (raw):      n bytes
///   mode 1 (constant): 1 byte, the value of all n bytes
///   mode 2 (Huffman):  128 bytes of code lengths (symbol 2i in the low nibble of byte i,
///                      symbol 2i+1 in the high nibble), four u32 stream lengths in bytes,
///                      then the four streams back to back
/// ```
enum ExponentCodec {
    /// Plane stored verbatim.
    static let modeRaw: UInt8 = 0
    /// Plane of one repeated byte.
    static let modeConstant: UInt8 = 1
    /// Huffman-coded plane.
    static let modeHuffman: UInt8 = 2

    /// A valid address for the planes of an empty chunk (nothing is ever read or written there).
    nonisolated(unsafe) private static let placeholder = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)

    /// Whether the codec handles lanes of `laneWidth` bytes.
    static func supports(laneWidth: Int) -> Bool { laneWidth == 2 || laneWidth == 4 || laneWidth == 8 }

    /// The largest payload a reader accepts for `rawLength` bytes (a sanity bound for the
    /// header check; the decoder checks the exact layout).
    static func payloadBound(rawLength: Int, laneWidth: Int) -> Int {
        2 * rawLength + laneWidth * (1 + Huffman.fixedBytes + Huffman.streams)
    }

    /// A Huffman-coded plane is kept only when it saves at least 1/32 of the raw plane: below
    /// that, the plane's decoding time is not worth the bytes.
    static let minimumPlaneSavingsShift = 5

    /// Encodes `raw` (lane width `laneWidth`) into `dst`, using `planes` (at least raw.count
    /// bytes) as scratch. Returns nil, writing nothing to `dst`, when the payload would be
    /// larger than `limit` bytes or `dst` is too small (it needs the payload size + 8).
    static func encode(
        _ raw: UnsafeRawBufferPointer, laneWidth w: Int, planes: UnsafeMutableRawBufferPointer,
        into dst: UnsafeMutableRawBufferPointer, limit: Int
    ) -> Int? {
        precondition(supports(laneWidth: w) && planes.count >= raw.count)
        let total = raw.count
        let n = total / w
        let src = raw.baseAddress ?? UnsafeRawPointer(placeholder)
        let p = planes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? placeholder
        splitRotated(src, into: p, elements: n, width: w)
        let histogram = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        let lengths = UnsafeMutablePointer<UInt8>.allocate(capacity: 256 * w)
        defer {
            histogram.deallocate()
            lengths.deallocate()
        }
        var modes = [UInt8](repeating: modeRaw, count: w)
        var size = total - n * w
        for b in 0..<w {
            size += 1 + n
            guard n > 0 else { continue }
            Huffman.histogram(p + b * n, count: n, into: histogram)
            var distinct = 0
            for s in 0..<256 where histogram[s] > 0 { distinct += 1 }
            if distinct == 1 {
                modes[b] = modeConstant
                size -= n - 1
                continue
            }
            Huffman.buildLengths(histogram, into: lengths + 256 * b)
            let coded = Huffman.codedSizeBound(histogram, lengths + 256 * b)
            if coded <= n - (n >> minimumPlaneSavingsShift) {
                modes[b] = modeHuffman
                size -= n - coded
            }
        }
        guard size <= limit, size + 8 <= dst.count, let out = dst.baseAddress else { return nil }
        var o = 0
        for b in 0..<w {
            out.storeBytes(of: modes[b], toByteOffset: o, as: UInt8.self)
            o += 1
            let plane = p + b * n
            switch modes[b] {
            case modeConstant:
                out.storeBytes(of: plane[0], toByteOffset: o, as: UInt8.self)
                o += 1
            case modeHuffman:
                o += Huffman.encodePlane(plane, count: n, lengths: lengths + 256 * b, into: out + o)
            default:
                if n > 0 { (out + o).copyMemory(from: plane, byteCount: n) }
                o += n
            }
        }
        if total > n * w { (out + o).copyMemory(from: src + n * w, byteCount: total - n * w) }
        return o + total - n * w
    }

    /// Decodes `payload` (lane width `laneWidth`) into `out` (exactly the raw length), using
    /// `planes` (at least out.count bytes) and `table` (``Huffman/tableSize`` entries) as scratch.
    ///
    /// - Throws: ``Huffman/Damage`` with the byte offset in the payload of the first bad field.
    static func decode(
        _ payload: UnsafeRawBufferPointer, laneWidth w: Int, into out: UnsafeMutableRawBufferPointer,
        planes: UnsafeMutableRawBufferPointer, table: UnsafeMutablePointer<UInt16>
    ) throws(Huffman.Damage) {
        precondition(supports(laneWidth: w) && planes.count >= out.count)
        let total = out.count
        let n = total / w
        let tail = total - n * w
        guard let src = payload.baseAddress, payload.count > 0 else { throw Huffman.Damage(offset: 0, reason: "payload is empty") }
        let p = planes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? placeholder
        var o = 0
        for b in 0..<w {
            guard o < payload.count else {
                throw Huffman.Damage(offset: o, reason: "payload ends before plane \(b)")
            }
            let mode = payload[o]
            o += 1
            let plane = p + b * n
            let left = payload.count - o
            switch mode {
            case modeRaw:
                guard left >= n else { throw Huffman.Damage(offset: o, reason: "raw plane \(b) needs \(n) bytes, \(left) left") }
                if n > 0 { plane.update(from: (src + o).assumingMemoryBound(to: UInt8.self), count: n) }
                o += n
            case modeConstant:
                guard left >= 1 else { throw Huffman.Damage(offset: o, reason: "constant plane \(b) has no value byte") }
                if n > 0 { plane.update(repeating: payload[o], count: n) }
                o += 1
            case modeHuffman:
                do {
                    o += try Huffman.decodePlane(src + o, available: left, count: n, into: plane, table: table)
                } catch {
                    throw Huffman.Damage(offset: o + error.offset, reason: "plane \(b): \(error.reason)")
                }
            default:
                throw Huffman.Damage(offset: o - 1, reason: "unknown mode \(mode) of plane \(b)")
            }
        }
        guard payload.count - o == tail else {
            throw Huffman.Damage(
                offset: o, reason: "payload has \(payload.count - o) bytes after its planes, expected the \(tail)-byte tail")
        }
        guard let dst = out.baseAddress else { return }
        joinRotated(p, into: dst, elements: n, width: w)
        if tail > 0 { (dst + n * w).copyMemory(from: src + o, byteCount: tail) }
    }

    /// Rotates each of `n` elements of `width` bytes left by one bit and byte-shuffles them
    /// into `width` planes of `n` bytes at `dst`.
    static func splitRotated(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<UInt8>, elements n: Int, width: Int) {
        switch width {
        case 2: split(src, dst, n, UInt16.self)
        case 4: split(src, dst, n, UInt32.self)
        default: split(src, dst, n, UInt64.self)
        }
    }

    @inline(__always)
    private static func split<T: FixedWidthInteger & UnsignedInteger>(
        _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<UInt8>, _ n: Int, _: T.Type
    ) {
        let w = MemoryLayout<T>.size
        var i = 0
        while i < n {
            let x = T(littleEndian: src.loadUnaligned(fromByteOffset: i &* w, as: T.self))
            let r = x &<< 1 | x &>> (T.bitWidth &- 1)
            for b in 0..<w { dst[b &* n &+ i] = UInt8(truncatingIfNeeded: r &>> (8 &* b)) }
            i &+= 1
        }
    }

    /// The inverse of ``splitRotated(_:into:elements:width:)``: byte-unshuffles `width` planes
    /// of `n` bytes into `dst`, then rotates each element right by one bit.
    static func joinRotated(_ src: UnsafeMutablePointer<UInt8>, into dst: UnsafeMutableRawPointer, elements n: Int, width: Int) {
        guard n > 0 else { return }
        Shuffle.unshuffleBytes(UnsafeRawPointer(src), dst, elements: n, width: width, planeStride: n)
        switch width {
        case 2: rotateRight(dst, n, UInt16.self)
        case 4: rotateRight(dst, n, UInt32.self)
        default: rotateRight(dst, n, UInt64.self)
        }
    }

    @inline(__always)
    private static func rotateRight<T: FixedWidthInteger & UnsignedInteger>(_ p: UnsafeMutableRawPointer, _ n: Int, _: T.Type) {
        let w = MemoryLayout<T>.size
        var i = 0
        while i < n {
            let x = T(littleEndian: p.loadUnaligned(fromByteOffset: i &* w, as: T.self))
            p.storeBytes(of: (x &>> 1 | x &<< (T.bitWidth &- 1)).littleEndian, toByteOffset: i &* w, as: T.self)
            i &+= 1
        }
    }
}
