/// A stored chunk as a manifest refers to it.
public struct ChunkRef: Sendable, Equatable {
    /// The SHA-256 of the chunk's raw bytes: its address.
    public let hash: SHA256Digest
    /// Raw (decoded) length in bytes.
    public let rawSize: Int
    /// Size of the blob file, header included.
    public let storedSize: Int

    /// Creates a reference.
    package init(hash: SHA256Digest, rawSize: Int, storedSize: Int) {
        self.hash = hash
        self.rawSize = rawSize
        self.storedSize = storedSize
    }
}

/// One tensor of a manifest: its header entry and its chunks, in order.
public struct TensorEntry: Sendable, Equatable {
    /// Name, dtype, shape and data offsets.
    public let info: TensorInfo
    /// The chunks whose concatenation is the tensor's bytes.
    public let chunks: [ChunkRef]

    /// Creates an entry.
    package init(info: TensorInfo, chunks: [ChunkRef]) {
        self.info = info
        self.chunks = chunks
    }
}

/// The content of one safetensors file: its header bytes and, for each tensor in data-section
/// order, the chunks holding its bytes. Identified by `digest`.
public struct Manifest: Sendable {
    /// The header bytes exactly as in the file (without the 8-byte length prefix).
    public let headerBytes: [UInt8]
    /// The length of the data section.
    public let dataLength: Int
    /// The tensors in data-section order.
    public let tensors: [TensorEntry]
    /// `sha256(canonicalEncoding)`.
    public let digest: SHA256Digest

    /// Builds a manifest and computes its digest.
    public init(headerBytes: [UInt8], dataLength: Int, tensors: [TensorEntry]) {
        self.headerBytes = headerBytes
        self.dataLength = dataLength
        self.tensors = tensors
        self.digest = SHA256Digest.hash(Manifest.canonicalEncoding(headerBytes: headerBytes, tensors: tensors))
    }

    /// Reassembles a manifest read from the metadata store, checking its recorded digest.
    package init(headerBytes: [UInt8], dataLength: Int, tensors: [TensorEntry], recordedDigest: SHA256Digest) {
        self.headerBytes = headerBytes
        self.dataLength = dataLength
        self.tensors = tensors
        self.digest = recordedDigest
    }

    /// The size of the safetensors file this manifest reproduces.
    public var fileLength: Int { 8 + headerBytes.count + dataLength }

    /// Why this manifest cannot describe a safetensors file, or nil: its tensors must tile the
    /// data section in order (each starting where the previous one ends, the last ending at
    /// `dataLength`), the whole file must fit in a signed 64-bit size, and no chunk may be longer
    /// than a blob can hold. A manifest built from a validated header always passes; one read
    /// from damaged (or crafted) database rows may not, and then offsets computed from it could
    /// overflow and read buffers sized by it could exhaust memory.
    package func layoutProblem() -> String? {
        var end = 0
        for tensor in tensors {
            if let chunk = tensor.chunks.first(where: { $0.rawSize > BlobHeader.maxRawLength }) {
                return "tensor '\(tensor.info.name)' has a chunk of \(chunk.rawSize) bytes, over the limit of \(BlobHeader.maxRawLength)"
            }
            guard tensor.info.dataStart == end, tensor.info.dataEnd >= end else {
                return "tensor '\(tensor.info.name)' spans [\(tensor.info.dataStart), \(tensor.info.dataEnd)), not contiguous with the "
                    + "previous tensor's end \(end)"
            }
            end = tensor.info.dataEnd
        }
        guard end == dataLength else { return "data length \(dataLength) disagrees with the tensors, which end at \(end)" }
        guard dataLength <= SafetensorsHeader.maxDataLength(headerLength: headerBytes.count) else {
            return "data length \(dataLength) makes the file longer than \(Int.max) bytes"
        }
        return nil
    }

    /// The number of distinct chunks.
    public var distinctChunks: Set<SHA256Digest> { Set(tensors.flatMap { $0.chunks.map(\.hash) }) }

    /// The canonical byte encoding whose SHA-256 is the snapshot digest (docs/FORMAT.md):
    ///
    /// ```
    /// "ckstore-manifest-v1\n"                      20 ASCII bytes
    /// u64 header length, header bytes
    /// u64 tensor count
    /// per tensor, in data-section order:
    ///   u64 name length, name (UTF-8)
    ///   u64 dtype length, dtype (ASCII, e.g. "F32")
    ///   u64 rank, rank × u64 dimensions
    ///   u64 data start, u64 data end             (offsets in the data section)
    ///   u64 chunk count, per chunk: u64 raw length, 32-byte SHA-256
    /// ```
    /// All integers are unsigned 64-bit little-endian.
    public static func canonicalEncoding(headerBytes: [UInt8], tensors: [TensorEntry]) -> [UInt8] {
        var out: [UInt8] = Array("ckstore-manifest-v1\n".utf8)
        out.reserveCapacity(64 + headerBytes.count + tensors.count * 160)
        func u64(_ v: Int) {
            var x = UInt64(v).littleEndian
            withUnsafeBytes(of: &x) { out.append(contentsOf: $0) }
        }
        func string(_ s: String) {
            let bytes = Array(s.utf8)
            u64(bytes.count)
            out.append(contentsOf: bytes)
        }
        u64(headerBytes.count)
        out.append(contentsOf: headerBytes)
        u64(tensors.count)
        for t in tensors {
            string(t.info.name)
            string(t.info.dtype.rawValue)
            u64(t.info.shape.count)
            for d in t.info.shape { u64(d) }
            u64(t.info.dataStart)
            u64(t.info.dataEnd)
            u64(t.chunks.count)
            for c in t.chunks {
                u64(c.rawSize)
                out.append(contentsOf: c.hash.bytes)
            }
        }
        return out
    }
}
