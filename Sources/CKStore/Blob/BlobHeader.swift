/// The 32-byte header at the start of every blob file.
///
/// ```
/// offset size field
///  0     4    magic "CKB1" (0x43 0x4B 0x42 0x31)
///  4     1    format version (1)
///  5     1    codec: 0 = none (payload is the filtered bytes), 1 = LZ4 block
///  6     1    filter: 0 = none, 1 = byte-shuffle, 2 = bit-shuffle (see `ShuffleFilter`)
///  7     1    filter lane width in bytes (1, 2, 4 or 8)
///  8     8    raw length: bytes of the chunk after decoding (u64 little-endian)
/// 16     8    payload length: bytes after this header (u64 little-endian)
/// 24     8    XXH64 (seed 0) of the payload bytes (u64 little-endian)
/// 32     …    payload
/// ```
/// The blob's name is the SHA-256 of the raw chunk bytes, so it survives a change of codec,
/// filter or compression level. All integers are little-endian.
struct BlobHeader: Equatable, Sendable {
    /// The magic bytes "CKB1".
    static let magic: [UInt8] = [0x43, 0x4B, 0x42, 0x31]
    /// The only format version this binary writes and reads.
    static let currentVersion: UInt8 = 1
    /// Header size in bytes.
    static let size = 32
    /// The largest raw length a reader accepts (a guard against absurd headers).
    static let maxRawLength = 1 << 30

    /// Codec ids (part of the format: never renumber).
    enum Codec: UInt8, Sendable {
        case none = 0
        case lz4 = 1
    }

    var codec: Codec
    var filter: ShuffleFilter
    var laneWidth: UInt8
    var rawLength: Int
    var payloadLength: Int
    var payloadChecksum: UInt64

    /// Writes the header into the first 32 bytes of `destination`.
    func encode(into destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count >= BlobHeader.size)
        for i in 0..<4 { destination[i] = BlobHeader.magic[i] }
        destination[4] = BlobHeader.currentVersion
        destination[5] = codec.rawValue
        destination[6] = filter.rawValue
        destination[7] = laneWidth
        destination.storeBytes(of: UInt64(rawLength).littleEndian, toByteOffset: 8, as: UInt64.self)
        destination.storeBytes(of: UInt64(payloadLength).littleEndian, toByteOffset: 16, as: UInt64.self)
        destination.storeBytes(of: payloadChecksum.littleEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// Why a header was rejected, with the byte offset of the offending field.
    struct Problem: Error, Equatable, CustomStringConvertible {
        var offset: Int
        var reason: String
        var description: String { "at byte \(offset): \(reason)" }
    }

    /// Parses and bounds-checks a header against the blob file's size.
    static func decode(_ bytes: UnsafeRawBufferPointer, fileSize: Int) -> Result<BlobHeader, Problem> {
        guard bytes.count >= size, fileSize >= size else {
            return .failure(Problem(offset: 0, reason: "file is \(fileSize) bytes, shorter than the \(size)-byte header"))
        }
        for i in 0..<4 where bytes[i] != magic[i] {
            return .failure(Problem(offset: i, reason: "bad magic"))
        }
        guard bytes[4] == currentVersion else {
            return .failure(Problem(offset: 4, reason: "unsupported blob format version \(bytes[4])"))
        }
        guard let codec = Codec(rawValue: bytes[5]) else {
            return .failure(Problem(offset: 5, reason: "unknown codec \(bytes[5])"))
        }
        guard let filter = ShuffleFilter(rawValue: bytes[6]) else {
            return .failure(Problem(offset: 6, reason: "unknown filter \(bytes[6])"))
        }
        let lane = bytes[7]
        guard [1, 2, 4, 8].contains(lane) else {
            return .failure(Problem(offset: 7, reason: "invalid lane width \(lane)"))
        }
        let raw = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let payload = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        let checksum = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        guard raw <= UInt64(maxRawLength) else {
            return .failure(Problem(offset: 8, reason: "raw length \(raw) exceeds the maximum \(maxRawLength)"))
        }
        guard payload == UInt64(fileSize - size) else {
            return .failure(
                Problem(
                    offset: 16, reason: "payload length \(payload) does not match the file size \(fileSize) (expected \(fileSize - size))"))
        }
        if codec == .none && payload != raw {
            return .failure(Problem(offset: 16, reason: "uncompressed payload length \(payload) differs from raw length \(raw)"))
        }
        if codec == .lz4 && payload > UInt64(LZ4.bound(Int(raw))) {
            return .failure(Problem(offset: 16, reason: "LZ4 payload length \(payload) exceeds the bound for \(raw) raw bytes"))
        }
        return .success(
            BlobHeader(
                codec: codec, filter: filter, laneWidth: lane, rawLength: Int(raw), payloadLength: Int(payload),
                payloadChecksum: checksum))
    }
}
