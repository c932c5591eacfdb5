import CKStore
import Foundation

/// Blobs as objects of an S3-compatible bucket, under `<prefix>objects/<first 2 hex>/<64 hex>`
/// (docs/FORMAT.md, "S3 key layout"): the same names as the local `objects/` folder, so a store's
/// blobs can be copied between the two by name.
///
/// - A put is create-once: a single `PUT` with `If-None-Match: *`. HTTP 412 means the name is
///   taken (another writer got there first, or a leftover): the existing object is read and
///   checked with `isValid` — exactly what `link(2)` failing with `EEXIST` leads to locally — and
///   reused when valid. An invalid existing object (a damaged blob, or a crashed writer's
///   leftover that is not one) is replaced with an unconditional `PUT`, and only then.
/// - A successful `PUT` is durable and its name visible when the service answers, so
///   `syncNamespace()` has nothing to do. S3 writes are atomic: there are no temporary objects.
/// - Reads fetch at most one blob's worth of bytes (a range request capped at the largest valid
///   blob), so a damaged, huge object never exhausts memory; the caller's codec checks every
///   blob exactly as it checks a local file.
/// - Requests run on the calling thread with a client borrowed from a small pool, so the
///   store's worker threads upload and download in parallel.
///
/// Errors: a missing blob is `BlobStoreError.notFound`; an object larger than any blob can be is
/// `BlobStoreError.tooLarge`; every other failure is `BlobStoreError.backend` whose
/// `BackendFailureKind` follows the typed `S3Error` class (`S3Error.failureKind`), so the store
/// maps it to a `CKStoreError` code without reading message text.
package final class S3BlobStore: BlobStore {
    /// The bucket and the store's key prefix.
    package let s3Location: S3Location
    /// The service configuration.
    package let config: S3Config
    private let clients: S3ClientPool
    /// Keys per list request (nil: the service's default, at most 1000).
    package let listPageSize: Int?

    /// A blob store in `location` (the bucket must exist: see `createBucketIfMissing()`).
    package init(location: S3Location, config: S3Config, maxClients: Int = 32, listPageSize: Int? = nil) {
        self.s3Location = location
        self.config = config
        self.listPageSize = listPageSize
        clients = S3ClientPool(config: config, bucket: s3Location.bucket, capacity: maxClients)
    }

    package var properties: BlobStoreProperties { BlobStoreProperties(hasAtomicCreate: true) }

    /// `s3://bucket/prefix/objects/`.
    package var location: String { "s3://\(s3Location.bucket)/\(objectsPrefix)" }

    /// The key prefix of all blobs: `<prefix>objects/`.
    package var objectsPrefix: String { s3Location.key("objects/") }

    /// The object key of blob `id`: `<prefix>objects/ab/ab…` (64 lowercase hex digits).
    package func key(for id: SHA256Digest) -> String {
        let hex = id.hex
        return "\(objectsPrefix)\(hex.prefix(2))/\(hex)"
    }

    /// `s3://bucket/key` of blob `id`, for messages.
    package func displayName(of id: SHA256Digest) -> String { "s3://\(s3Location.bucket)/\(key(for: id))" }

    /// Creates the bucket when it does not exist; returns true when it was created.
    @discardableResult
    package func createBucketIfMissing() throws(BlobStoreError) -> Bool {
        try request("create bucket s3://\(s3Location.bucket)") { (client) throws(S3Error) in try client.createBucket() }
    }

    // MARK: Writing

    package func put(_ id: SHA256Digest, bytes: UnsafeRawBufferPointer, isValid: (UnsafeRawBufferPointer) -> Bool) throws -> (
        isNew: Bool, size: Int
    ) {
        let key = key(for: id)
        // Two rounds: a 412 whose object vanished before it could be read (deleted meanwhile)
        // is retried once as a conditional put.
        for _ in 0..<2 {
            let outcome = try request("put blob \(id.hex)") { (client) throws(S3Error) in
                try client.putObject(key, bytes: bytes, ifNoneMatch: true)
            }
            if outcome == .created { return (true, bytes.count) }
            // 412: the name is taken. Validate what is there, as a local put does after EEXIST.
            let existing: [UInt8]
            do {
                existing = try fetch(id)
            } catch BlobStoreError.notFound {
                continue
            } catch BlobStoreError.tooLarge {
                existing = []  // certainly not a valid blob: replace it below
            }
            if !existing.isEmpty, existing.withUnsafeBytes({ isValid($0) }) { return (false, existing.count) }
            // Damaged (a failed check, not a failed request): replace it unconditionally. Every
            // writer writes a valid encoding of the same chunk, so a race here is harmless.
            try request("replace damaged blob \(id.hex)") { (client) throws(S3Error) in
                _ = try client.putObject(key, bytes: bytes, ifNoneMatch: false)
            }
            return (true, bytes.count)
        }
        throw BlobStoreError.backend(
            kind: .conflict, message: "put blob \(id.hex): \(displayName(of: id)) exists and vanishes again (412, then 404, twice)")
    }

    /// Deletes blob `id`; a missing object is not an error.
    package func remove(_ id: SHA256Digest) throws {
        let key = key(for: id)
        try request("delete blob \(id.hex)") { (client) throws(S3Error) in try client.deleteObject(key) }
    }

    /// Nothing to do: a `PUT` the service acknowledged is durable and visible (S3 has strong
    /// read-after-write consistency; Ceph RGW commits an object before it answers).
    package func syncNamespace() throws {}

    // MARK: Reading

    /// The whole object of blob `id`, read with a range request capped one byte past the largest
    /// valid blob: a longer object is `tooLarge` without reading it all.
    func fetch(_ id: SHA256Digest) throws -> [UInt8] {
        let key = key(for: id)
        let limit = BlobLimits.maxBlobSize
        let bytes: [UInt8]
        do {
            bytes = try clients.withClient { (client) throws(S3Error) in try client.getObject(key, range: 0..<(limit + 1)) }
        } catch {
            if case .notFound = error { throw BlobStoreError.notFound(id) }
            // The caller names the blob; the S3 error names the request and its key.
            throw BlobStoreError.backend(kind: error.failureKind, message: "\(error)")
        }
        if bytes.count > limit {
            let size = (try? size(of: id)) ?? nil
            throw BlobStoreError.tooLarge(id, size ?? bytes.count)
        }
        return bytes
    }

    package func read(_ id: SHA256Digest, into buffer: inout ByteBuffer) throws -> Int {
        let bytes = try fetch(id)
        if buffer.capacity < bytes.count { buffer = ByteBuffer(capacity: bytes.count) }
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress, !source.isEmpty {
                buffer.storage.baseAddress!.copyMemory(from: base, byteCount: source.count)
            }
        }
        buffer.count = bytes.count
        return bytes.count
    }

    package func withBytes<T>(of id: SHA256Digest, scratch: inout ByteBuffer, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let bytes = try fetch(id)
        return try bytes.withUnsafeBytes { try body($0) }
    }

    package func readPrefix(_ id: SHA256Digest, count: Int) throws -> (bytes: [UInt8], size: Int) {
        guard let size = try size(of: id) else { throw BlobStoreError.notFound(id) }
        let key = key(for: id)
        let wanted = min(count, size)
        let bytes = try request("read blob \(id.hex)") { (client) throws(S3Error) in try client.getObject(key, range: 0..<wanted) }
        return (bytes, size)
    }

    package func size(of id: SHA256Digest) throws -> Int? {
        let key = key(for: id)
        return try request("look up blob \(id.hex)") { (client) throws(S3Error) in try client.headObject(key) }
    }

    // MARK: Listing

    package func forEach(_ body: (SHA256Digest, Int) throws -> Void) throws {
        try forEachEntry { entry in
            if case .blob(let id, let size) = entry { try body(id, size) }
        }
    }

    /// Calls `body` with every object under `<prefix>objects/`, classified (`S3ObjectsEntry`),
    /// page by page in key order, so a listing of millions of blobs never sits in memory at once.
    package func forEachEntry(_ body: (S3ObjectsEntry) throws -> Void) throws {
        let prefix = objectsPrefix
        let pageSize = listPageSize
        var token: String?
        repeat {
            let page = try request("list \(s3Location)objects/") { (client) throws(S3Error) in
                try client.listObjects(prefix: prefix, continuationToken: token, maxKeys: pageSize)
            }
            for object in page.objects { try body(S3ObjectsEntry(key: object.key, size: object.size, objectsPrefix: prefix)) }
            if page.isTruncated, page.nextContinuationToken == token {
                throw BlobStoreError.backend(
                    kind: .integrity, message: "list \(s3Location)objects/: the service repeats its continuation token")
            }
            token = page.isTruncated ? page.nextContinuationToken : nil
        } while token != nil
    }

    package func listing() throws -> BlobListing {
        var listing = BlobListing()
        try forEachEntry { entry in
            switch entry {
            case .blob(let id, let size): listing.blobs.append(BlobListing.Blob(id: id, size: size))
            case .foreign(let path, let size): listing.foreign.append("\(path) (object of \(size) bytes with a foreign name)")
            }
        }
        return listing
    }

    /// S3 writes are atomic (a single PUT): there are never temporary leftovers to remove.
    package func removeTemporary(_ leftover: BlobListing.Temporary) throws -> Bool { false }

    /// The state of blob `id`'s key: missing or an object of some size. (An object store has no
    /// links or folders, so nothing can stand foreign under a blob's own key.)
    package func state(of id: SHA256Digest) throws -> BlobEntryState {
        guard let size = try size(of: id) else { return .missing }
        return .regular(size: size)
    }

    // MARK: Quarantine

    /// `<prefix>quarantine/`: where damaged blobs go (outside `objects/`, so listing, gc and
    /// reads never see them).
    package var quarantinePrefix: String { s3Location.key("quarantine/") }

    /// Copies the damaged blob to `<prefix>quarantine/<hex>.fsck-<seconds>` (GET, then PUT of
    /// the same bytes: one blob, bounded), then deletes it from `objects/`. Returns the key
    /// relative to the store prefix, or nil when there was no blob.
    package func quarantine(_ id: SHA256Digest) throws -> String? {
        let bytes: [UInt8]
        do {
            bytes = try fetch(id)
        } catch BlobStoreError.notFound {
            return nil
        }
        let name = "quarantine/\(id.hex).fsck-\(Int(Date.now.timeIntervalSince1970))"
        let target = s3Location.key(name)
        try request("quarantine blob \(id.hex)") { (client) throws(S3Error) in _ = try client.putObject(target, bytes: bytes) }
        try remove(id)
        return name
    }

    package func quarantined() throws -> (count: Int, location: String) {
        let prefix = quarantinePrefix
        let objects = try request("list \(s3Location)quarantine/") { (client) throws(S3Error) in try client.listAllObjects(prefix: prefix) }
        return (objects.count, "s3://\(s3Location.bucket)/\(prefix)")
    }

    /// Why no blob can be present: the bucket does not exist.
    package func namespaceProblem() throws -> String? {
        let exists = try request("look up bucket s3://\(s3Location.bucket)") { (client) throws(S3Error) in try client.bucketExists() }
        return exists ? nil : "bucket s3://\(s3Location.bucket) does not exist"
    }

    // MARK: Errors

    /// Runs one request with a pooled client, turning an `S3Error` into a classified
    /// `BlobStoreError.backend`.
    private func request<T>(_ what: String, _ body: (S3Client) throws(S3Error) -> T) throws(BlobStoreError) -> T {
        do {
            return try clients.withClient(body)
        } catch {
            throw Self.storeError(error, what)
        }
    }

    /// The error for a failed request: `what` and the S3 error's one-line summary (which never
    /// holds credentials), classified by the S3 error's class.
    package static func storeError(_ error: S3Error, _ what: String) -> BlobStoreError {
        .backend(kind: error.failureKind, message: "\(what): \(error)")
    }
}

/// An object found under a store's `objects/` prefix.
package enum S3ObjectsEntry: Equatable {
    /// A blob: the key is `<objects prefix>ab/<64 lowercase hex>` with `ab` its first two digits.
    case blob(SHA256Digest, size: Int)
    /// Anything else (a path relative to `objects/`, and its size): reported, never deleted.
    case foreign(String, size: Int)

    /// Classifies `key`, which starts with `objectsPrefix`.
    package init(key: String, size: Int, objectsPrefix: String) {
        let relative = key.hasPrefix(objectsPrefix) ? String(key.dropFirst(objectsPrefix.count)) : key
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 2, Self.isLowercaseHex(parts[0], count: 2), Self.isLowercaseHex(parts[1], count: 64),
            parts[1].hasPrefix(parts[0]), let id = SHA256Digest(hex: parts[1])
        {
            self = .blob(id, size: size)
        } else {
            self = .foreign(relative, size: size)
        }
    }

    private static func isLowercaseHex(_ s: Substring, count: Int) -> Bool {
        s.utf8.count == count && s.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }
}

extension S3Error: ClassifiedBackendError {
    /// The class of this failure, from its typed case (never from message text): a missing
    /// object or bucket is `.notFound`; a precondition conflict `.conflict`; a service that kept
    /// failing or could not be reached `.unavailable` (`.busy` when it asked to slow down);
    /// refused credentials `.readOnly`; an answer that breaks the protocol `.integrity`; any
    /// other refused request `.environment`.
    package var failureKind: BackendFailureKind {
        switch self {
        case .notFound: return .notFound
        case .conflict: return .conflict
        case .unavailable(let c): return c.status == 429 || c.status == 503 || c.code == "SlowDown" ? .busy : .unavailable
        case .auth: return .readOnly
        case .permanent(let c): return c.code == "MalformedResponse" ? .integrity : .environment
        }
    }

    /// The one-line description.
    package var failureMessage: String { description }
}
