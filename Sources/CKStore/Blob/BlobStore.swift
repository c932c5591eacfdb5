/// Where blobs live: the local `objects/` folder (`LocalBlobStore`), an S3-compatible bucket,
/// or memory (tests).
///
/// Contract, for every implementation and every method unless its documentation says more:
/// - Blobs are immutable and named by the SHA-256 of their *raw* (decoded) chunk bytes.
/// - **Idempotence.** `put` is idempotent: storing a name that already holds a valid blob is a
///   no-op that returns `isNew: false`. It never replaces a valid blob; it replaces a damaged
///   one (an orphan from a crash, or a referenced blob damaged from outside, which no reader
///   can use) after `isValid` rejects it. `remove` of a missing blob is not an error.
/// - **Atomicity.** A blob appears whole or not at all: a reader never sees a partly written
///   blob under its name (local: `link(2)` of a complete, fsynced temporary file; S3: a single
///   PUT, create-once with `If-None-Match: *`).
/// - **Durability.** After `put` returns, the blob's bytes are durable; after `syncNamespace()`
///   returns, so are the names of all blobs put so far. Metadata may refer to a blob only after
///   both.
/// - **Not found vs permanent.** A missing blob is `BlobStoreError.notFound` (or nil / false
///   where a method says so). Anything else is a failure of the backend: `BlobStoreError.io`
///   locally, or `BlobStoreError.backend` with a `BackendFailureKind` saying whether it is
///   transient (`.busy`, `.unavailable`) or permanent.
/// - **Foreign entries.** Names the store did not make (symbolic links, other files) are never
///   followed, read, moved or deleted; they are reported by `listing()`.
/// - **Threads.** Implementations are safe to call from several threads at once.
package protocol BlobStore: Sendable {
    /// What the backend guarantees.
    var properties: BlobStoreProperties { get }

    /// Where the blobs live, for messages: a folder (`/data/store/objects`) or a URL
    /// (`s3://bucket/prefix`).
    var location: String { get }

    /// Stores `bytes` under `id` (see the contract above). Returns whether a new blob was
    /// written and the size of the blob now stored under `id` (an existing valid blob may have
    /// been encoded differently). `isValid` checks an existing blob's bytes when the name is
    /// already taken (a concurrent writer's blob, or an orphan).
    func put(_ id: SHA256Digest, bytes: UnsafeRawBufferPointer, isValid: (UnsafeRawBufferPointer) -> Bool) throws -> (
        isNew: Bool, size: Int
    )

    /// Reads the blob into `buffer` (resized as needed) and returns its size.
    /// - Throws: `.notFound` when absent; `.tooLarge` when larger than any blob can be.
    func read(_ id: SHA256Digest, into buffer: inout ByteBuffer) throws -> Int

    /// Calls `body` with the blob's bytes. Backends that can map files do so (no copy);
    /// `scratch` is used (and grown) otherwise. The bytes are valid only inside `body`.
    /// - Throws: `.notFound` when absent; `.tooLarge` when larger than any blob can be; errors
    ///   of `body` as they are.
    func withBytes<T>(of id: SHA256Digest, scratch: inout ByteBuffer, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T

    /// A hint that blob `id` will be read soon (a local store starts reading it into the page
    /// cache). Never fails; the default does nothing.
    func prefetch(_ id: SHA256Digest)

    /// The first `count` bytes of the blob (fewer if it is shorter) and its size, without
    /// following a foreign entry (fsck).
    /// - Throws: `.notFound` when absent.
    func readPrefix(_ id: SHA256Digest, count: Int) throws -> (bytes: [UInt8], size: Int)

    /// The blob's stored size, or nil when absent.
    func size(of id: SHA256Digest) throws -> Int?

    /// The state of blob `id`'s name: missing, a blob of some size, or a foreign entry in its
    /// place (fsck). Never follows a link.
    func state(of id: SHA256Digest) throws -> BlobEntryState

    /// Deletes a blob; a missing blob (or a foreign entry under its name, which is left alone)
    /// is not an error. Idempotent.
    func remove(_ id: SHA256Digest) throws

    /// Calls `body` with every stored blob's name and size.
    func forEach(_ body: (SHA256Digest, Int) throws -> Void) throws

    /// Everything in the blob namespace: blobs, temporary leftovers of interrupted writes
    /// (backends that write through temporary names), and foreign entries.
    func listing() throws -> BlobListing

    /// Deletes a temporary leftover found by `listing()`. Returns false when it is already gone
    /// (not an error). Idempotent.
    @discardableResult
    func removeTemporary(_ leftover: BlobListing.Temporary) throws -> Bool

    /// Moves a blob proven damaged out of the namespace, keeping its bytes (local: into
    /// `<store>/quarantine/`; an object store: under a quarantine prefix). Returns where it went
    /// (for the repair report, e.g. `quarantine/<hex>.<stamp>`), or nil when there was no blob
    /// to move. Never deletes.
    func quarantine(_ id: SHA256Digest) throws -> String?

    /// How many quarantined items there are and where (for fsck's note).
    func quarantined() throws -> (count: Int, location: String)

    /// Why no blob can be present at all (the namespace itself is missing, e.g. "/s/objects is
    /// missing"), or nil when the namespace exists.
    func namespaceProblem() throws -> String?

    /// Makes the names of all blobs put (or removed) so far durable (directory fsyncs for the
    /// local store; nothing for an object store whose PUT is durable on return). Idempotent.
    func syncNamespace() throws
}

extension BlobStore {
    /// No prefetching.
    package func prefetch(_ id: SHA256Digest) {}

    /// Whether the blob stored under `name` is an intact copy of the chunk `raw`: it exists, is
    /// `storedSize` bytes (the chunk row's size) and passes `BlobCodec.isIntact` (header,
    /// identity and payload checksum; a version 1 blob is decoded and compared). A put asks
    /// this before it counts a chunk row as a dedup hit, so a missing or damaged blob is
    /// rewritten instead of referred to. Any failure to read counts as not intact.
    func holdsIntact(
        _ name: SHA256Digest, storedSize: Int, raw: UnsafeRawBufferPointer, codec: BlobCodec, scratch: inout ByteBuffer
    ) -> Bool {
        let intact = try? withBytes(of: name, scratch: &scratch) { file in
            file.count == storedSize && codec.isIntact(file, name: name, raw: raw)
        }
        return intact ?? false
    }
}

/// Everything found in a blob namespace.
package struct BlobListing: Sendable {
    /// A stored blob.
    package struct Blob: Sendable, Equatable {
        /// The chunk address its name gives.
        package let id: SHA256Digest
        /// Its size in bytes.
        package let size: Int

        /// Creates an entry.
        package init(id: SHA256Digest, size: Int) {
            self.id = id
            self.size = size
        }
    }

    /// A temporary leftover of an interrupted write.
    package struct Temporary: Sendable, Equatable {
        /// Its name relative to the namespace (local: `ab/<64 hex>.tmp-…`).
        package let name: String
        /// Its size in bytes.
        package let size: Int

        /// Creates an entry.
        package init(name: String, size: Int) {
            self.name = name
            self.size = size
        }
    }

    /// Blobs, by name.
    package var blobs: [Blob] = []
    /// Temporary leftovers.
    package var temporary: [Temporary] = []
    /// Foreign entries, described ("ab/notes.txt (regular file with a foreign name)").
    package var foreign: [String] = []

    /// Creates a listing.
    package init(blobs: [Blob] = [], temporary: [Temporary] = [], foreign: [String] = []) {
        self.blobs = blobs
        self.temporary = temporary
        self.foreign = foreign
    }
}

/// What a blob store backend guarantees.
package struct BlobStoreProperties: Sendable {
    /// True when a new name can be created without replacing an existing one atomically
    /// (`link(2)` locally, a conditional PUT on an object store).
    package var hasAtomicCreate: Bool

    /// Creates properties.
    package init(hasAtomicCreate: Bool) { self.hasAtomicCreate = hasAtomicCreate }
}

/// Errors of a blob store.
package enum BlobStoreError: Error, CustomStringConvertible {
    /// The blob does not exist.
    case notFound(SHA256Digest)
    /// A local system call failed.
    case io(SystemError)
    /// The blob is larger than any blob can be (`LocalBlobStore.maxBlobSize`): it is not read
    /// (a huge or sparse file would exhaust memory).
    case tooLarge(SHA256Digest, Int)
    /// A remote backend failed; `kind` classifies it, `message` names the request.
    case backend(kind: BackendFailureKind, message: String)

    package var description: String {
        switch self {
        case .notFound(let id): return "blob \(id.hex) is missing"
        case .tooLarge(let id, let size): return "blob \(id.hex) is \(size) bytes, larger than any blob can be"
        case .io(let e): return "\(e)"
        case .backend(_, let message): return message
        }
    }
}
