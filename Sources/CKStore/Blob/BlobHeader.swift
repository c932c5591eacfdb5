/// The header at the start of every blob file: 64 bytes in format version 2 (written by this
/// binary), 32 bytes in version 1 (written by ckstore 0.1; still read).
///
/// ```
/// offset size field
///  0     4    magic "CKB1" (0x43 0x4B 0x42 0x31)
///  4     1    format version (2; 1 in blobs of ckstore 0.1)
///  5     1    codec: 0 = none (payload is the filtered bytes), 1 = LZ4 block, 2 = exponent
///              planes (`ExponentCodec`; filter 0, lane width 2, 4 or 8)
///  6     1    filter: 0 = none, 1 = byte-shuffle, 2 = bit-shuffle, 3 = hybrid (see `ShuffleFilter`)
///  7     1    filter lane width in bytes (1, 2, 4 or 8)
///  8     8    raw length: bytes of the chunk after decoding (u64 little-endian)
/// 16     8    payload length: bytes after the header (u64 little-endian)
/// 24     8    XXH64 (seed 0) of the payload bytes (u64 little-endian)
///              -- version 2 only --
/// 32    24    chunk address: the first 24 bytes of the SHA-256 of the raw chunk (the blob's name)
/// 56     8    XXH64 (seed 0) of header bytes 0..<56 (u64 little-endian)
/// 64     …    payload (32 … in version 1)
/// ```
/// The blob's name is the SHA-256 of the raw chunk bytes, so it survives a change of codec,
/// filter or compression level. The address field lets every read check, without hashing the
/// chunk, that the file holds the chunk it was asked for (a blob file copied or renamed over
/// another is caught); the header checksum covers every header field, so a damaged codec,
/// filter or lane width cannot decode into wrong bytes unnoticed. A version 1 header has neither:
/// its identity is only checked by re-hashing the decoded bytes. All integers are little-endian.
struct BlobHeader: Equatable, Sendable {
    /// The magic bytes "CKB1".
    static let magic: [UInt8] = [0x43, 0x4B, 0x42, 0x31]
    /// The format version this binary writes.
    static let currentVersion: UInt8 = 2
    /// Header size in bytes of the version this binary writes.
    static let size = 64
    /// Header size in bytes of version 1 blobs.
    static let v1Size = 32
    /// Bytes of the chunk address kept in a version 2 header.
    static let addressLength = 24
    /// Offset of the address field.
    static let addressOffset = 32
    /// Offset of the header checksum field.
    static let headerChecksumOffset = 56
    /// The largest raw length a reader accepts (a guard against absurd headers).
    static let maxRawLength = 1 << 30

    /// Codec ids (part of the format: never renumber).
    enum Codec: UInt8, Sendable {
        case none = 0
        case lz4 = 1
        /// Sign-rotated byte planes, each raw, constant or Huffman-coded (`ExponentCodec`).
        case exponentPlanes = 2
    }

    var codec: Codec
    var filter: ShuffleFilter
    var laneWidth: UInt8
    var rawLength: Int
    var payloadLength: Int
    var payloadChecksum: UInt64
    /// The first 24 bytes of the chunk's SHA-256, as three big-endian words (the first three
    /// words of `SHA256Digest`); nil in a version 1 header, which does not record it.
    var address: (UInt64, UInt64, UInt64)?

    /// The format version of this header: 2 when it records the address, else 1.
    var version: UInt8 { address == nil ? 1 : 2 }
    /// Size of this header in the file.
    var encodedSize: Int { address == nil ? BlobHeader.v1Size : BlobHeader.size }

    /// The address field for a chunk named `id`.
    static func address(of id: SHA256Digest) -> (UInt64, UInt64, UInt64) {
        (id.words.0, id.words.1, id.words.2)
    }

    /// Whether this header records `id` as its chunk's address; nil for a version 1 header.
    func records(_ id: SHA256Digest) -> Bool? {
        guard let a = address else { return nil }
        let b = BlobHeader.address(of: id)
        return a.0 == b.0 && a.1 == b.1 && a.2 == b.2
    }

    static func == (l: BlobHeader, r: BlobHeader) -> Bool {
        l.codec == r.codec && l.filter == r.filter && l.laneWidth == r.laneWidth && l.rawLength == r.rawLength
            && l.payloadLength == r.payloadLength && l.payloadChecksum == r.payloadChecksum
            && l.address.map { [$0.0, $0.1, $0.2] } == r.address.map { [$0.0, $0.1, $0.2] }
    }

    /// Writes the header into the first `encodedSize` bytes of `destination`: version 2 when
    /// `address` is set (what `BlobCodec` always writes), version 1 otherwise (for tests of
    /// the old format).
    func encode(into destination: UnsafeMutableRawBufferPointer) {
        precondition(destination.count >= encodedSize)
        for i in 0..<4 { destination[i] = BlobHeader.magic[i] }
        destination[4] = version
        destination[5] = codec.rawValue
        destination[6] = filter.rawValue
        destination[7] = laneWidth
        destination.storeBytes(of: UInt64(rawLength).littleEndian, toByteOffset: 8, as: UInt64.self)
        destination.storeBytes(of: UInt64(payloadLength).littleEndian, toByteOffset: 16, as: UInt64.self)
        destination.storeBytes(of: payloadChecksum.littleEndian, toByteOffset: 24, as: UInt64.self)
        guard let address else { return }
        destination.storeBytes(of: address.0.bigEndian, toByteOffset: 32, as: UInt64.self)
        destination.storeBytes(of: address.1.bigEndian, toByteOffset: 40, as: UInt64.self)
        destination.storeBytes(of: address.2.bigEndian, toByteOffset: 48, as: UInt64.self)
        let covered = UnsafeRawBufferPointer(rebasing: destination[0..<BlobHeader.headerChecksumOffset])
        destination.storeBytes(of: XXH64.hash(covered).littleEndian, toByteOffset: BlobHeader.headerChecksumOffset, as: UInt64.self)
    }

    /// Why a header was rejected, with the byte offset of the offending field.
    struct Problem: Error, Equatable, CustomStringConvertible {
        var offset: Int
        var reason: String
        var description: String { "at byte \(offset): \(reason)" }
    }

    /// Parses and bounds-checks a header (version 1 or 2) against the blob file's size.
    /// `bytes` must hold the file's first 64 bytes, or all of it when shorter. Each field is
    /// range-checked first (a failure names its offset); then, in version 2, the header
    /// checksum (offset 56) catches any other damage to the header.
    static func decode(_ bytes: UnsafeRawBufferPointer, fileSize: Int) -> Result<BlobHeader, Problem> {
        guard bytes.count >= v1Size, fileSize >= v1Size else {
            return .failure(Problem(offset: 0, reason: "file is \(fileSize) bytes, shorter than the \(v1Size)-byte header"))
        }
        for i in 0..<4 where bytes[i] != magic[i] {
            return .failure(Problem(offset: i, reason: "bad magic"))
        }
        let version = bytes[4]
        guard version == 1 || version == 2 else {
            return .failure(Problem(offset: 4, reason: "unsupported blob format version \(version)"))
        }
        let headerSize = version == 1 ? v1Size : size
        guard bytes.count >= headerSize, fileSize >= headerSize else {
            return .failure(Problem(offset: 0, reason: "file is \(fileSize) bytes, shorter than the \(headerSize)-byte header"))
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
        guard payload == UInt64(fileSize - headerSize) else {
            return .failure(
                Problem(
                    offset: 16,
                    reason: "payload length \(payload) does not match the file size \(fileSize) (expected \(fileSize - headerSize))"))
        }
        if codec == .none && payload != raw {
            return .failure(Problem(offset: 16, reason: "uncompressed payload length \(payload) differs from raw length \(raw)"))
        }
        if codec == .lz4 && payload > UInt64(LZ4.bound(Int(raw))) {
            return .failure(Problem(offset: 16, reason: "LZ4 payload length \(payload) exceeds the bound for \(raw) raw bytes"))
        }
        if codec == .exponentPlanes {
            guard filter == .none else {
                return .failure(Problem(offset: 6, reason: "codec 2 (exponent planes) with filter \(filter.rawValue), expected 0"))
            }
            guard ExponentCodec.supports(laneWidth: Int(lane)) else {
                return .failure(Problem(offset: 7, reason: "codec 2 (exponent planes) with lane width \(lane), expected 2, 4 or 8"))
            }
            guard payload <= UInt64(ExponentCodec.payloadBound(rawLength: Int(raw), laneWidth: Int(lane))) else {
                return .failure(
                    Problem(offset: 16, reason: "exponent-planes payload length \(payload) exceeds the bound for \(raw) raw bytes"))
            }
        }
        var address: (UInt64, UInt64, UInt64)? = nil
        if version == 2 {
            let stored = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: headerChecksumOffset, as: UInt64.self))
            guard XXH64.hash(UnsafeRawBufferPointer(rebasing: bytes[0..<headerChecksumOffset])) == stored else {
                return .failure(Problem(offset: headerChecksumOffset, reason: "header checksum mismatch"))
            }
            address = (
                UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 32, as: UInt64.self)),
                UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 40, as: UInt64.self)),
                UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 48, as: UInt64.self))
            )
        }
        return .success(
            BlobHeader(
                codec: codec, filter: filter, laneWidth: lane, rawLength: Int(raw), payloadLength: Int(payload),
                payloadChecksum: checksum, address: address))
    }

    /// The identity check every reader makes: a version 2 header must record `id` (the name
    /// the blob was read under). A version 1 header passes (it records no address).
    func checkIdentity(_ id: SHA256Digest) -> Problem? {
        guard records(id) == false, let a = address else { return nil }
        let held = [a.0, a.1, a.2].map { word in
            String(word, radix: 16).leftPadded(to: 16)
        }.joined()
        return Problem(
            offset: BlobHeader.addressOffset,
            reason: "holds chunk \(held.prefix(16))…, not \(id.hex.prefix(16))… (a blob file under the wrong name)")
    }

    /// What the structural check (`fsck` without `--full`) finds wrong with a blob from its
    /// first bytes alone: the header's own checks, its identity against `id`, and its raw
    /// length against the chunk row; nil when it is good.
    static func problem(prefix: UnsafeRawBufferPointer, fileSize: Int, id: SHA256Digest, rawSize: Int) -> String? {
        switch decode(prefix, fileSize: fileSize) {
        case .failure(let p):
            return "bad header \(p)"
        case .success(let h):
            if let p = h.checkIdentity(id) { return "bad header \(p)" }
            return h.rawLength == rawSize ? nil : "header raw length \(h.rawLength), expected \(rawSize)"
        }
    }
}

extension String {
    /// The string with leading zeros added up to `width` characters.
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
