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

    /// The largest payload a reader accepts for `rawLength` bytes: the LZ4 bound, as for codec
    /// 1 (so read buffers sized for LZ4 blobs hold every blob). A writer keeps codec 2 only
    /// when its payload is smaller than the raw chunk.
    static func payloadBound(rawLength: Int, laneWidth: Int) -> Int {
        LZ4.bound(rawLength)
    }

    /// A Huffman-coded plane is kept only when it saves at least 1/32 of the raw plane: below
    /// that, the plane's decoding time is not worth the bytes.
    static let minimumPlaneSavingsShift = 5

    /// What ``plan(_:laneWidth:planes:)`` decided for a chunk: each plane's mode and code, the
    /// exact payload size, and whether the lowest plane looked like noise.
    struct Plan {
        /// Lane width.
        var width: Int
        /// Mode of each plane.
        var modes: [UInt8]
        /// 256 code lengths per plane (used by Huffman planes).
        var lengths: [UInt8]
        /// Payload bytes `write` will produce.
        var size: Int
        /// True when plane 0 (the low mantissa bits) was sampled and no code pays on it: the
        /// elements do not repeat, so LZ4 has nothing to find beyond what the exponent plane's
        /// code already takes.
        var lowPlaneIsNoise: Bool
    }

    /// Splits `raw` into its sign-rotated byte planes in `planes` (at least raw.count bytes) and
    /// chooses each plane's mode.
    static func plan(_ raw: UnsafeRawBufferPointer, laneWidth w: Int, planes: UnsafeMutableRawBufferPointer) -> Plan {
        precondition(supports(laneWidth: w) && planes.count >= raw.count)
        let total = raw.count
        let n = total / w
        let src = raw.baseAddress ?? UnsafeRawPointer(placeholder)
        let p = planes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? placeholder
        splitRotated(src, into: p, elements: n, width: w)
        var plan = Plan(
            width: w, modes: [UInt8](repeating: modeRaw, count: w), lengths: [UInt8](repeating: 0, count: 256 * w),
            size: total - n * w, lowPlaneIsNoise: false)
        let histogram = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { histogram.deallocate() }
        plan.lengths.withUnsafeMutableBufferPointer { lengthsBuffer in
            let lengths = lengthsBuffer.baseAddress!
            for b in 0..<w {
                plan.size += 1 + n
                guard n > 0 else { continue }
                // The top plane (the exponent) is always counted; the others, mostly mantissa
                // bits close to random, only when every 16th byte suggests a code would pay.
                if b < w - 1 && n >= 4096 && !sampleSuggestsCoding(p + b * n, count: n, histogram: histogram, lengths: lengths + 256 * b) {
                    if b == 0 { plan.lowPlaneIsNoise = true }
                    continue
                }
                Huffman.histogram(p + b * n, count: n, into: histogram)
                var distinct = 0
                for s in 0..<256 where histogram[s] > 0 { distinct += 1 }
                if distinct == 1 {
                    plan.modes[b] = modeConstant
                    plan.size -= n - 1
                    continue
                }
                Huffman.buildLengths(histogram, into: lengths + 256 * b)
                let coded = Huffman.codedSizeBound(histogram, lengths + 256 * b)
                if coded <= n - (n >> minimumPlaneSavingsShift) {
                    plan.modes[b] = modeHuffman
                    plan.size -= n - coded
                }
            }
        }
        return plan
    }

    /// Writes the payload of `plan` for `raw`, whose planes `plan(_:laneWidth:planes:)` left in
    /// `planes`, to `dst` (at least plan.size + 8 bytes). Returns the payload size (at most
    /// plan.size: stream lengths were bounded from above).
    static func write(
        _ plan: Plan, raw: UnsafeRawBufferPointer, planes: UnsafeMutableRawBufferPointer, into dst: UnsafeMutableRawBufferPointer
    ) -> Int {
        let w = plan.width
        let total = raw.count
        let n = total / w
        precondition(dst.count >= plan.size + 8)
        let out = dst.baseAddress!
        let p = planes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? placeholder
        var o = 0
        plan.lengths.withUnsafeBufferPointer { lengthsBuffer in
            let lengths = lengthsBuffer.baseAddress!
            for b in 0..<w {
                out.storeBytes(of: plan.modes[b], toByteOffset: o, as: UInt8.self)
                o += 1
                let plane = p + b * n
                switch plan.modes[b] {
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
        }
        if total > n * w { (out + o).copyMemory(from: raw.baseAddress! + n * w, byteCount: total - n * w) }
        return o + total - n * w
    }

    /// Encodes `raw` (lane width `laneWidth`) into `dst`, using `planes` (at least raw.count
    /// bytes) as scratch. Returns nil, writing nothing to `dst`, when the payload would be
    /// larger than `limit` bytes or `dst` is too small (it needs the payload size + 8).
    static func encode(
        _ raw: UnsafeRawBufferPointer, laneWidth w: Int, planes: UnsafeMutableRawBufferPointer,
        into dst: UnsafeMutableRawBufferPointer, limit: Int
    ) -> Int? {
        let plan = plan(raw, laneWidth: w, planes: planes)
        guard plan.size <= limit, plan.size + 8 <= dst.count else { return nil }
        return write(plan, raw: raw, planes: planes, into: dst)
    }

    /// Whether a code for every 16th byte of a plane saves clearly more than the
    /// per-plane minimum (then the whole plane is counted).
    static func sampleSuggestsCoding(
        _ p: UnsafePointer<UInt8>, count: Int, histogram: UnsafeMutablePointer<UInt32>, lengths: UnsafeMutablePointer<UInt8>
    ) -> Bool {
        histogram.initialize(repeating: 0, count: 256)
        var i = 0
        var samples = 0
        while i < count {
            histogram[Int(p[i])] &+= 1
            i &+= 16
            samples &+= 1
        }
        var distinct = 0
        for s in 0..<256 where histogram[s] > 0 { distinct += 1 }
        if distinct < 2 { return true }
        Huffman.buildLengths(histogram, into: lengths)
        var bits = 0
        for s in 0..<256 { bits += Int(histogram[s]) * Int(lengths[s]) }
        // Coded bits per byte at most 8·(1 − 2/32): twice the minimum saving, for sampling noise.
        return bits * 32 <= samples * 8 * 30
    }

    /// Decodes `payload` (lane width `laneWidth`) into `out` (exactly the raw length), using
    /// `planes` (at least out.count bytes) and `table` (``Huffman/tableSize`` entries) as scratch.
    ///
    /// - Throws: ``Huffman/Damage`` with the byte offset in the payload of the first bad field.
    static func decode(
        _ payload: UnsafeRawBufferPointer, laneWidth w: Int, into out: UnsafeMutableRawBufferPointer,
        planes: UnsafeMutableRawBufferPointer, table: UnsafeMutablePointer<UInt16>
    ) throws(Huffman.Damage) {
        let o = try decodePlanes(payload, laneWidth: w, rawLength: out.count, planes: planes, table: table)
        guard let dst = out.baseAddress, let src = payload.baseAddress else { return }
        let n = out.count / w
        let p = planes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? placeholder
        joinRotated(p, into: dst, elements: n, width: w)
        if out.count > n * w { (dst + n * w).copyMemory(from: src + o, byteCount: out.count - n * w) }
    }

    /// The round-trip check of a written payload, at the level of the planes (as LZ4 payloads
    /// are checked against the filtered bytes): decodes the planes of `payload` into `scratch`
    /// and compares them, and the tail, with the `original` planes and `raw`. Returns why they
    /// differ, or nil.
    static func verify(
        _ payload: UnsafeRawBufferPointer, laneWidth w: Int, raw: UnsafeRawBufferPointer, original: UnsafeRawBufferPointer,
        scratch: UnsafeMutableRawBufferPointer, table: UnsafeMutablePointer<UInt16>
    ) -> String? {
        let o: Int
        do {
            o = try decodePlanes(payload, laneWidth: w, rawLength: raw.count, planes: scratch, table: table)
        } catch {
            return "byte \(error.offset): \(error.reason)"
        }
        let n = raw.count / w
        let planeBytes = n * w
        if planeBytes > 0 && memcmp(scratch.baseAddress!, original.baseAddress!, planeBytes) != 0 { return "planes differ" }
        if raw.count > planeBytes && memcmp(payload.baseAddress! + o, raw.baseAddress! + planeBytes, raw.count - planeBytes) != 0 {
            return "tail differs"
        }
        return nil
    }

    /// Decodes the planes of `payload` into `planes` (checking every field); returns the offset
    /// of the tail in the payload.
    static func decodePlanes(
        _ payload: UnsafeRawBufferPointer, laneWidth w: Int, rawLength total: Int, planes: UnsafeMutableRawBufferPointer,
        table: UnsafeMutablePointer<UInt16>
    ) throws(Huffman.Damage) -> Int {
        precondition(supports(laneWidth: w) && planes.count >= total)
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
        return o
    }

    /// Rotates each of `n` elements of `width` bytes left by one bit and byte-shuffles them
    /// into `width` planes of `n` bytes at `dst`.
    static func splitRotated(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<UInt8>, elements n: Int, width: Int) {
        guard n > 0 else { return }
        Shuffle.shuffleBytes(src, UnsafeMutableRawPointer(dst), elements: n, width: width, planeStride: n)
        switch width {
        case 2: rotatePlanesLeft(dst, n, 2)
        case 4: rotatePlanesLeft(dst, n, 4)
        default: rotatePlanesLeft(dst, n, 8)
        }
    }

    /// Rotates every element left by one bit in byte-plane form: plane b takes its own bits
    /// shifted up and the top bit of plane b−1 (plane 0 the top bit of plane w−1).
    @inline(__always)
    private static func rotatePlanesLeft(_ p: UnsafeMutablePointer<UInt8>, _ n: Int, _ w: Int) {
        // Eight elements at a time: one 64-bit word from each plane.
        let raw = UnsafeMutableRawPointer(p)
        let high: UInt64 = 0xFEFE_FEFE_FEFE_FEFE
        let low: UInt64 = 0x0101_0101_0101_0101
        var i = 0
        while i &+ 8 <= n {
            var carry = (raw.loadUnaligned(fromByteOffset: (w &- 1) &* n &+ i, as: UInt64.self) &>> 7) & low
            for b in 0..<w {
                let x = raw.loadUnaligned(fromByteOffset: b &* n &+ i, as: UInt64.self)
                raw.storeBytes(of: (x &<< 1) & high | carry, toByteOffset: b &* n &+ i, as: UInt64.self)
                carry = (x &>> 7) & low
            }
            i &+= 8
        }
        while i < n {
            var carry = p[(w &- 1) &* n &+ i] &>> 7
            for b in 0..<w {
                let x = p[b &* n &+ i]
                p[b &* n &+ i] = x &<< 1 | carry
                carry = x &>> 7
            }
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

#if canImport(Glibc)
    import Glibc
#endif
