/// Where blob files live: the local `objects/` folder today, an object store later.
///
/// Contract, for every implementation:
/// - Blobs are immutable and named by the SHA-256 of their *raw* (decoded) chunk bytes.
/// - `put` is idempotent: storing a name that already holds a valid blob is a no-op that
///   returns `false`. It never replaces a valid blob; it replaces a damaged file (an orphan
///   from a crash, or a referenced blob damaged from outside, which no reader can use) after
///   `isValid` rejects it.
/// - After `put` returns, the blob's bytes are durable; after `syncNamespace()` returns, so are
///   the names of all blobs put so far. Metadata may refer to a blob only after both.
/// - `read` returns the stored bytes unchanged; a missing blob is `BlobStoreError.notFound`,
///   anything else is permanent (an I/O error).
/// - `remove` of a missing blob is not an error.
/// - Implementations are safe to call from several threads at once.
package protocol BlobStore: Sendable {
    /// What the backend guarantees.
    var properties: BlobStoreProperties { get }

    /// Stores `bytes` under `id` (see the contract above). Returns whether a new blob was
    /// written and the size of the blob now stored under `id` (an existing valid blob may have
    /// been encoded differently). `isValid` checks an existing blob's bytes when the name is
    /// already taken.
    func put(_ id: SHA256Digest, bytes: UnsafeRawBufferPointer, isValid: (UnsafeRawBufferPointer) -> Bool) throws -> (
        isNew: Bool, size: Int
    )

    /// Reads the blob into `buffer` (resized as needed) and returns its size.
    func read(_ id: SHA256Digest, into buffer: inout ByteBuffer) throws -> Int

    /// Calls `body` with the blob's bytes. Backends that can map files do so (no copy);
    /// `scratch` is used (and grown) otherwise. The bytes are valid only inside `body`.
    func withBytes<T>(of id: SHA256Digest, scratch: inout ByteBuffer, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T

    /// The first `count` bytes of the blob (fewer if it is shorter) and its size.
    func readPrefix(_ id: SHA256Digest, count: Int) throws -> (bytes: [UInt8], size: Int)

    /// The blob's stored size, or nil when absent.
    func size(of id: SHA256Digest) throws -> Int?

    /// Deletes a blob; a missing blob is not an error.
    func remove(_ id: SHA256Digest) throws

    /// Calls `body` with every stored blob's name and size.
    func forEach(_ body: (SHA256Digest, Int) throws -> Void) throws

    /// Makes the names of all blobs put so far durable (directory fsyncs for the local store).
    func syncNamespace() throws
}

/// What a blob store backend guarantees.
package struct BlobStoreProperties: Sendable {
    /// True when a new name can be created without replacing an existing one atomically
    /// (`link(2)` locally, a conditional PUT on an object store).
    package var hasAtomicCreate: Bool

    /// Properties from their parts.
    package init(hasAtomicCreate: Bool) { self.hasAtomicCreate = hasAtomicCreate }
}

/// Limits every blob store enforces.
package enum BlobLimits {
    /// The largest blob of a valid chunk (`LocalBlobStore.maxBlobSize`): larger objects are damage
    /// and are never read into memory.
    package static var maxBlobSize: Int { LocalBlobStore.maxBlobSize }
}

/// Errors of a blob store.
package enum BlobStoreError: Error, CustomStringConvertible {
    /// The blob does not exist.
    case notFound(SHA256Digest)
    /// The backend failed.
    case io(SystemError)
    /// The blob file is larger than any blob can be (`LocalBlobStore.maxBlobSize`): it is not
    /// read (a huge or sparse file would exhaust memory).
    case tooLarge(SHA256Digest, Int)

    package var description: String {
        switch self {
        case .notFound(let id): return "blob \(id.hex) is missing"
        case .tooLarge(let id, let size): return "blob \(id.hex) is \(size) bytes, larger than any blob can be"
        case .io(let e): return "\(e)"
        }
    }
}
