/// Decoding of a Huffman-coded plane: a single-lookup table of 2^11 (symbol, length) entries,
/// four interleaved streams, 64-bit bit-buffer refills. Every length and bit position read from
/// the payload is checked: damage is reported as a ``Huffman/Damage`` (never a trap, an
/// out-of-bounds read or a hang).
extension Huffman {
    /// A damaged coded plane: the byte offset (from the start of the coded plane) and why.
    struct Damage: Error, Equatable {
        var offset: Int
        var reason: String
    }

    /// Fills `table` (``tableSize`` entries) for the valid code `lengths`: entry `w` is
    /// `symbol | length << 8` of the code that is a prefix of the bit window `w` (read least
    /// significant bit first).
    static func buildDecodeTable(_ lengths: UnsafePointer<UInt8>, into table: UnsafeMutablePointer<UInt16>) {
        let codes = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        defer { codes.deallocate() }
        reversedCodes(lengths, into: codes)
        for s in 0..<256 where lengths[s] > 0 {
            let l = Int(lengths[s])
            let entry = UInt16(s) | UInt16(l) << 8
            var w = Int(codes[s] & 0xFFFF)
            while w < tableSize {
                table[w] = entry
                w += 1 << l
            }
        }
    }

    /// Decodes a coded plane of `count` symbols from the `available` bytes at `src` into `dst`.
    /// `table` is scratch of ``tableSize`` entries.
    ///
    /// - Returns: the bytes of `src` the plane occupies.
    /// - Throws: ``Damage`` for a bad length table, stream lengths beyond `available`, or a
    ///   stream whose bits do not decode to exactly its symbols.
    static func decodePlane(
        _ src: UnsafeRawPointer, available: Int, count: Int, into dst: UnsafeMutablePointer<UInt8>,
        table: UnsafeMutablePointer<UInt16>
    ) throws(Damage) -> Int {
        guard available >= fixedBytes else {
            throw Damage(offset: 0, reason: "coded plane is \(available) bytes, shorter than its \(fixedBytes)-byte table")
        }
        let l = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
        defer { l.deallocate() }
        for i in 0..<tableBytes {
            let b = src.load(fromByteOffset: i, as: UInt8.self)
            l[2 * i] = b & 0x0F
            l[2 * i + 1] = b >> 4
        }
        let problem = validate(l)
        if problem == nil { buildDecodeTable(l, into: table) }
        if let problem { throw Damage(offset: 0, reason: problem.reason) }
        var starts = [Int](repeating: 0, count: streams + 1)
        starts[0] = fixedBytes
        for k in 0..<streams {
            let n = Int(UInt32(littleEndian: src.loadUnaligned(fromByteOffset: tableBytes + 4 * k, as: UInt32.self)))
            starts[k + 1] = starts[k] + n
            guard starts[k + 1] <= available else {
                throw Damage(
                    offset: tableBytes + 4 * k,
                    reason: "stream \(k) length \(n) runs past the end of the payload (\(available - starts[k]) bytes left)")
            }
        }
        var bases = (0..<streams).map { src + starts[$0] }
        var sizes = (0..<streams).map { starts[$0 + 1] - starts[$0] }
        var outs = (0..<streams).map { dst + segment($0, of: count).lowerBound }
        var counts = (0..<streams).map { segment($0, of: count).count }
        var positions = [0, 0, 0, 0]
        let common = decodeInterleaved(
            bases: &bases, sizes: &sizes, outs: &outs, counts: &counts, positions: &positions, table: table)
        for k in 0..<streams {
            let pos = decodeTail(
                bases[k], size: sizes[k], position: positions[k], from: common, to: counts[k], into: outs[k], table: table)
            guard pos <= 8 * sizes[k] else {
                throw Damage(
                    offset: starts[k], reason: "stream \(k) runs past its end (\(sizes[k]) bytes hold too few bits for its symbols)")
            }
            guard (pos + 7) / 8 == sizes[k] else {
                throw Damage(
                    offset: starts[k] + (pos + 7) / 8,
                    reason: "stream \(k) has \(sizes[k] - (pos + 7) / 8) bytes left over after its symbols")
            }
        }
        return starts[streams]
    }

    /// The fast path: decodes the four streams in lockstep, five symbols per stream per 64-bit
    /// refill, while every stream has eight bytes left to load and symbols left to decode.
    /// Returns the number of symbols decoded per stream; updates `positions` (bits consumed).
    @inline(__always)
    static func decodeInterleaved(
        bases: inout [UnsafeRawPointer], sizes: inout [Int], outs: inout [UnsafeMutablePointer<UInt8>], counts: inout [Int],
        positions: inout [Int], table: UnsafeMutablePointer<UInt16>
    ) -> Int {
        let s0 = bases[0]
        let s1 = bases[1]
        let s2 = bases[2]
        let s3 = bases[3]
        let o0 = outs[0]
        let o1 = outs[1]
        let o2 = outs[2]
        let o3 = outs[3]
        let end0 = sizes[0] &- 8
        let end1 = sizes[1] &- 8
        let end2 = sizes[2] &- 8
        let end3 = sizes[3] &- 8
        let limit = counts[3] &- 5
        var p0 = 0
        var p1 = 0
        var p2 = 0
        var p3 = 0
        var i = 0
        let mask: UInt64 = UInt64(tableSize - 1)
        while i <= limit && (p0 &>> 3) <= end0 && (p1 &>> 3) <= end1 && (p2 &>> 3) <= end2 && (p3 &>> 3) <= end3 {
            var b0 = UInt64(littleEndian: s0.loadUnaligned(fromByteOffset: p0 &>> 3, as: UInt64.self)) &>> UInt64(p0 & 7)
            var b1 = UInt64(littleEndian: s1.loadUnaligned(fromByteOffset: p1 &>> 3, as: UInt64.self)) &>> UInt64(p1 & 7)
            var b2 = UInt64(littleEndian: s2.loadUnaligned(fromByteOffset: p2 &>> 3, as: UInt64.self)) &>> UInt64(p2 & 7)
            var b3 = UInt64(littleEndian: s3.loadUnaligned(fromByteOffset: p3 &>> 3, as: UInt64.self)) &>> UInt64(p3 & 7)
            var u0: UInt64 = 0
            var u1: UInt64 = 0
            var u2: UInt64 = 0
            var u3: UInt64 = 0
            for j in 0..<5 {
                let e0 = table[Int(b0 & mask)]
                let e1 = table[Int(b1 & mask)]
                let e2 = table[Int(b2 & mask)]
                let e3 = table[Int(b3 & mask)]
                o0[i &+ j] = UInt8(truncatingIfNeeded: e0)
                o1[i &+ j] = UInt8(truncatingIfNeeded: e1)
                o2[i &+ j] = UInt8(truncatingIfNeeded: e2)
                o3[i &+ j] = UInt8(truncatingIfNeeded: e3)
                let l0 = UInt64(e0 &>> 8)
                let l1 = UInt64(e1 &>> 8)
                let l2 = UInt64(e2 &>> 8)
                let l3 = UInt64(e3 &>> 8)
                b0 &>>= l0
                b1 &>>= l1
                b2 &>>= l2
                b3 &>>= l3
                u0 &+= l0
                u1 &+= l1
                u2 &+= l2
                u3 &+= l3
            }
            p0 &+= Int(u0)
            p1 &+= Int(u1)
            p2 &+= Int(u2)
            p3 &+= Int(u3)
            i &+= 5
        }
        positions = [p0, p1, p2, p3]
        return i
    }

    /// The checked path: decodes symbols `from ..< to` of one stream one at a time, reading
    /// bytes past the stream's end as zeros. Returns the bit position reached (which the caller
    /// compares with the stream size).
    static func decodeTail(
        _ base: UnsafeRawPointer, size: Int, position: Int, from: Int, to: Int, into out: UnsafeMutablePointer<UInt8>,
        table: UnsafeMutablePointer<UInt16>
    ) -> Int {
        var pos = position
        var i = from
        while i < to {
            let byte = pos >> 3
            var window: UInt64 = 0
            if byte + 8 <= size {
                window = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: byte, as: UInt64.self))
            } else {
                var k = 0
                while byte + k < size {
                    window |= UInt64(base.load(fromByteOffset: byte + k, as: UInt8.self)) << (8 * k)
                    k += 1
                }
            }
            let e = table[Int((window >> UInt64(pos & 7)) & UInt64(tableSize - 1))]
            out[i] = UInt8(truncatingIfNeeded: e)
            pos += Int(e >> 8)
            i += 1
            // A damaged stream cannot make this loop run longer: it is bounded by `to`; once
            // past the end, the caller reports it.
        }
        return pos
    }
}
