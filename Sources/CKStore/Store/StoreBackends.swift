/// The parts a `Store` is made of, opened from one store location by a `StoreBackendFactory`.
///
/// A local path (or `file://` URL) gives SQLite metadata, blob files under `objects/` and a
/// flock(2) lock (`LocalStoreFactory`). Other locations (`postgres://…?blobs=s3://…`) are
/// handled by factories registered with `StoreFactories.register` (CKStoreBackends).
package struct StoreBackends {
    /// The location as given (a path or URL without credentials), for messages.
    package var location: String
    /// The store's configuration.
    package var configuration: StoreConfiguration
    /// The metadata store (owned by the `Store`, used from its thread).
    package var metadata: any MetadataStore
    /// The blob store (shared with worker threads).
    package var blobs: any BlobStore
    /// The store lock.
    package var lock: any StoreLock
    /// True when this process may only read: queries are computed but not cached.
    package var isReadOnly: Bool
    /// Why this process cannot write to the store now, or nil when it can; asked before every
    /// write, so that the user gets one clear line instead of a backend's error.
    package var writeProblem: @Sendable () -> String?
    /// Where first requests of query recipes are noted for `cache_policy: second-hit` (nil:
    /// nowhere, so `second-hit` caches at once like `always`).
    package var requestLog: (any QueryRequestLog)?

    /// Creates the parts.
    package init(
        location: String, configuration: StoreConfiguration, metadata: any MetadataStore, blobs: any BlobStore, lock: any StoreLock,
        isReadOnly: Bool = false, writeProblem: @escaping @Sendable () -> String? = { nil }, requestLog: (any QueryRequestLog)? = nil
    ) {
        self.requestLog = requestLog
        self.location = location
        self.configuration = configuration
        self.metadata = metadata
        self.blobs = blobs
        self.lock = lock
        self.isReadOnly = isReadOnly
        self.writeProblem = writeProblem
    }
}

/// Opens and creates stores at the locations it handles.
///
/// Contract: `initialize` is idempotent and safe to run from several processes at once (one
/// creates, the others find a finished store); it never creates metadata over existing blobs
/// (`.integrity`). `open` throws `.notFound` when there is no store at the location, and
/// `.integrity` when what is there is inconsistent.
package protocol StoreBackendFactory: Sendable {
    /// True when this factory handles `location` (by its URL scheme).
    func handles(_ location: String) -> Bool

    /// Opens the existing store at `location`.
    func open(_ location: String) throws(CKStoreError) -> StoreBackends

    /// Creates the store at `location` if it does not exist; returns true when it was created
    /// now. An existing store is opened (and checked) but not changed.
    func initialize(_ location: String) throws(CKStoreError) -> Bool

    /// True when a store exists at `location` (so that `openOrCreate` need not create).
    func exists(_ location: String) throws(CKStoreError) -> Bool
}
