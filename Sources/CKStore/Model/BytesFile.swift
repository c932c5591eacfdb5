/// The content of one opaque file of a tree (anything that is not a `.safetensors` file: JSON,
/// tokenizer files, `.pt` pickles): its size and the chunks whose concatenation is its bytes.
/// Identified by `digest`, computed from the chunk list (no second pass over the bytes).
public struct BytesFile: Sendable, Equatable {
    /// The file's size in bytes.
    public let size: Int
    /// The chunks, in order; their raw sizes add up to `size`.
    public let chunks: [ChunkRef]
    /// `sha256(canonicalEncoding)`.
    public let digest: SHA256Digest

    /// The name of the single pseudo tensor under which the metadata tables record the chunks.
    package static let pseudoTensorName = "bytes"

    /// Builds the record of a file and computes its digest.
    public init(size: Int, chunks: [ChunkRef]) {
        self.size = size
        self.chunks = chunks
        self.digest = SHA256Digest.hash(BytesFile.canonicalEncoding(size: size, chunks: chunks))
    }

    /// Reassembles a record read from the metadata store, keeping its recorded digest.
    package init(size: Int, chunks: [ChunkRef], recordedDigest: SHA256Digest) {
        self.size = size
        self.chunks = chunks
        self.digest = recordedDigest
    }

    /// The canonical encoding whose SHA-256 is the file's digest (docs/FORMAT.md):
    ///
    /// ```
    /// "ckstore-bytes-v1\n"                         17 ASCII bytes
    /// u64 size
    /// u64 chunk count, per chunk: u64 raw length, 32-byte SHA-256 of the raw bytes
    /// ```
    /// All integers are unsigned 64-bit little-endian.
    public static func canonicalEncoding(size: Int, chunks: [ChunkRef]) -> [UInt8] {
        var out = CanonicalWriter(magic: "ckstore-bytes-v1\n", capacity: 16 + chunks.count * 40)
        out.u64(size)
        out.u64(chunks.count)
        for chunk in chunks {
            out.u64(chunk.rawSize)
            out.digest(chunk.hash)
        }
        return out.bytes
    }

    /// Why this record cannot describe a file, or nil: the chunk sizes must be non-negative,
    /// at most a blob's limit, and add up to `size` without overflow.
    package func layoutProblem() -> String? {
        var total = 0
        for chunk in chunks {
            guard chunk.rawSize >= 0, chunk.rawSize <= BlobHeader.maxRawLength else {
                return "a chunk of \(chunk.rawSize) bytes is outside 0...\(BlobHeader.maxRawLength)"
            }
            let (sum, overflow) = total.addingReportingOverflow(chunk.rawSize)
            guard !overflow else { return "its chunk sizes overflow" }
            total = sum
        }
        guard total == size else { return "size \(size) disagrees with its chunks, which hold \(total) bytes" }
        return nil
    }

    /// The pseudo tensor (`bytes`, U8, shape [size]) under which the metadata tables record the
    /// chunks, so that reachability, fsck and dedup treat them as tensor chunks.
    package var pseudoTensor: TensorEntry {
        TensorEntry(info: TensorInfo(name: Self.pseudoTensorName, dtype: .u8, shape: [size], dataStart: 0, dataEnd: size), chunks: chunks)
    }

    /// The distinct chunks.
    public var distinctChunks: Set<SHA256Digest> { Set(chunks.map(\.hash)) }
}

extension BytesFile {
    /// Reassembles a bytes file from its metadata rows read as a `Manifest` (one pseudo tensor
    /// `bytes` spanning the file, or none for an empty file), keeping the recorded digest.
    /// - Throws: `.integrity` when the rows do not have that shape.
    package init(fromRows rows: Manifest) throws(CKStoreError) {
        let tensors = rows.tensors
        guard rows.headerBytes.isEmpty, tensors.count <= 1,
            tensors.allSatisfy({ $0.info.name == Self.pseudoTensorName && $0.info.dataStart == 0 && $0.info.dataEnd == rows.dataLength })
        else {
            throw CKStoreError(.integrity, "file sha256:\(rows.digest.hex): its rows do not describe an opaque file")
        }
        self.init(size: rows.dataLength, chunks: tensors.first?.chunks ?? [], recordedDigest: rows.digest)
        if let problem = layoutProblem() { throw CKStoreError(.integrity, "file sha256:\(rows.digest.hex): \(problem)") }
    }
}
