import CCrypto

/// A SHA-256 digest: 32 bytes, shown as 64 lowercase hex characters.
///
/// Chunk addresses and snapshot digests are SHA-256 values. Hashing uses libcrypto's
/// `SHA256`, which uses the SHA-NI instructions where the CPU has them.
public struct SHA256Digest: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The 32 digest bytes, as four big-endian 64-bit words (cheap to hash and compare).
    let words: (UInt64, UInt64, UInt64, UInt64)

    /// Creates a digest from exactly 32 bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        let array = Array(bytes)
        func word(_ i: Int) -> UInt64 {
            var w: UInt64 = 0
            for b in array[(i * 8)..<(i * 8 + 8)] { w = (w << 8) | UInt64(b) }
            return w
        }
        words = (word(0), word(1), word(2), word(3))
    }

    /// Parses 64 hex characters (either case).
    public init?(hex: some StringProtocol) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let hi = hexValue(utf8[2 * i]), let lo = hexValue(utf8[2 * i + 1]) else { return nil }
            bytes[i] = hi << 4 | lo
        }
        self.init(bytes: bytes)
    }

    /// The 32 bytes, most significant first.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let w = [words.0, words.1, words.2, words.3]
        for i in 0..<32 { out[i] = UInt8(truncatingIfNeeded: w[i / 8] >> (56 - 8 * UInt64(i % 8))) }
        return out
    }

    /// 64 lowercase hex characters.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    public static func == (a: SHA256Digest, b: SHA256Digest) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
    }

    public static func < (a: SHA256Digest, b: SHA256Digest) -> Bool {
        (a.words.0, a.words.1, a.words.2, a.words.3) < (b.words.0, b.words.1, b.words.2, b.words.3)
    }

    // MARK: - Hashing

    /// The SHA-256 of `data` (`SHA256` from libcrypto).
    public static func hash(_ data: UnsafeRawBufferPointer) -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 32
        let ok = out.withUnsafeMutableBufferPointer { o in
            EVP_Digest(data.baseAddress ?? UnsafeRawPointer(bitPattern: 1), data.count, o.baseAddress, &length, EVP_sha256(), nil)
        }
        precondition(ok == 1 && length == 32, "EVP_Digest(SHA-256) failed")
        return SHA256Digest(bytes: out)!
    }

    /// The SHA-256 of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> SHA256Digest {
        bytes.withUnsafeBytes { hash($0) }
    }
}

/// An incremental SHA-256 (`EVP_DigestInit_ex` / `EVP_DigestUpdate` / `EVP_DigestFinal_ex`),
/// owning its `EVP_MD_CTX`.
final class SHA256Hasher {
    private let context: OpaquePointer

    init() {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        context = ctx
        precondition(EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1, "EVP_DigestInit_ex(SHA-256) failed")
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Feeds `data` into the hash.
    func update(_ data: UnsafeRawBufferPointer) {
        guard data.count > 0 else { return }
        precondition(EVP_DigestUpdate(context, data.baseAddress, data.count) == 1)
    }

    /// Feeds `bytes` into the hash.
    func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Finishes the hash.
    func finalize() -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 32
        precondition(EVP_DigestFinal_ex(context, &out, &length) == 1 && length == 32)
        return SHA256Digest(bytes: out)!
    }
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}
