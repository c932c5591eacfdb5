/// Builds the canonical byte encodings whose SHA-256 are content digests (docs/FORMAT.md):
/// unsigned 64-bit little-endian integers and length-prefixed byte strings.
struct CanonicalWriter {
    /// The bytes written so far.
    private(set) var bytes: [UInt8]

    /// Starts an encoding with a magic line (e.g. `"ckstore-tree-v1\n"`).
    init(magic: String, capacity: Int = 0) {
        bytes = Array(magic.utf8)
        bytes.reserveCapacity(bytes.count + capacity)
    }

    /// Appends `value` as u64 little-endian.
    mutating func u64(_ value: Int) {
        var x = UInt64(value).littleEndian
        withUnsafeBytes(of: &x) { bytes.append(contentsOf: $0) }
    }

    /// Appends a u64 length, then the UTF-8 bytes of `string`.
    mutating func string(_ string: String) {
        let utf8 = Array(string.utf8)
        u64(utf8.count)
        bytes.append(contentsOf: utf8)
    }

    /// Appends the 32 bytes of a digest.
    mutating func digest(_ digest: SHA256Digest) {
        bytes.append(contentsOf: digest.bytes)
    }
}
