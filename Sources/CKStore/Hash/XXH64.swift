/// XXH64 (seed 0 unless given), as specified by the xxHash project; used as the per-blob payload checksum.
///
/// Implemented from the published algorithm description (xxHash `doc/xxhash_spec.md`): four
/// accumulator lanes consume 32-byte stripes, the lanes are merged, the remaining 0–31 bytes are
/// folded in 8-, 4- and 1-byte steps, and the result goes through a final avalanche. All
/// multi-byte reads are little-endian, so the digest is the same on every platform.
public struct XXH64 {
    /// First of the five 64-bit primes of the specification.
    @usableFromInline static let prime1: UInt64 = 0x9E37_79B1_85EB_CA87
    /// Second prime.
    @usableFromInline static let prime2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    /// Third prime.
    @usableFromInline static let prime3: UInt64 = 0x1656_67B1_9E37_79F9
    /// Fourth prime.
    @usableFromInline static let prime4: UInt64 = 0x85EB_CA77_C2B2_AE63
    /// Fifth prime.
    @usableFromInline static let prime5: UInt64 = 0x27D4_EB2F_1656_67C5

    /// Rotates `x` left by `r` bits (0 < r < 64); compiles to a single rotate instruction.
    @inline(__always)
    static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 {
        (x &<< r) | (x &>> (64 &- r))
    }

    /// One accumulator round: `acc = rotl(acc + input·P2, 31)·P1`.
    @inline(__always)
    static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* prime2, 31) &* prime1
    }

    /// Folds one lane accumulator into the converged hash: `(acc ^ round(0, val))·P1 + P4`.
    @inline(__always)
    static func mergeRound(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* prime1 &+ prime4
    }

    /// Reads a little-endian `UInt64` at byte offset `o` of `p` (no alignment requirement).
    @inline(__always)
    static func read64(_ p: UnsafeRawPointer, _ o: Int) -> UInt64 {
        UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self))
    }

    /// Reads a little-endian `UInt32` at byte offset `o` of `p`, widened to `UInt64`.
    @inline(__always)
    static func read32(_ p: UnsafeRawPointer, _ o: Int) -> UInt64 {
        UInt64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
    }

    /// Returns the XXH64 digest of `bytes` with the given `seed`.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        let length = bytes.count
        guard let p = bytes.baseAddress, length > 0 else {
            return avalanche(seed &+ prime5)  // empty input: h = seed + P5 + 0, then avalanche
        }
        var offset = 0
        var h: UInt64
        if length >= 32 {
            var v1 = seed &+ prime1 &+ prime2
            var v2 = seed &+ prime2
            var v3 = seed
            var v4 = seed &- prime1
            let stripeEnd = length - 32
            while offset <= stripeEnd {
                v1 = round(v1, read64(p, offset))
                v2 = round(v2, read64(p, offset + 8))
                v3 = round(v3, read64(p, offset + 16))
                v4 = round(v4, read64(p, offset + 24))
                offset += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = mergeRound(h, v1)
            h = mergeRound(h, v2)
            h = mergeRound(h, v3)
            h = mergeRound(h, v4)
        } else {
            h = seed &+ prime5
        }
        h = h &+ UInt64(truncatingIfNeeded: length)
        while offset + 8 <= length {
            h ^= round(0, read64(p, offset))
            h = rotl(h, 27) &* prime1 &+ prime4
            offset += 8
        }
        if offset + 4 <= length {
            h ^= read32(p, offset) &* prime1
            h = rotl(h, 23) &* prime2 &+ prime3
            offset += 4
        }
        while offset < length {
            h ^= UInt64(p.load(fromByteOffset: offset, as: UInt8.self)) &* prime5
            h = rotl(h, 11) &* prime1
            offset += 1
        }
        return avalanche(h)
    }

    /// Returns the XXH64 digest of `bytes` with the given `seed`.
    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    /// The final mixing step that spreads every input bit over the whole digest.
    @inline(__always)
    static func avalanche(_ h0: UInt64) -> UInt64 {
        var h = h0
        h ^= h &>> 33
        h = h &* prime2
        h ^= h &>> 29
        h = h &* prime3
        h ^= h &>> 32
        return h
    }
}
