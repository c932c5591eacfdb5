#if canImport(Glibc)
    import Glibc
#endif

/// A ckstore repository. Made of a `MetadataStore`, a `BlobStore` and a `StoreLock`, opened
/// from one location by a `StoreBackendFactory` (`StoreFactories` in CKStoreBackends). A local store is a
/// folder:
///
/// ```
/// <store>/
///   config.json     the store's configuration (a copy of Config/ckstore.json at init)
///   ckstore.db      SQLite metadata (WAL mode; -wal and -shm files beside it)
///   lock            flock(2) target: shared for writers and readers, exclusive for gc
///   objects/ab/ab…  blob files, named by the SHA-256 of their raw chunk bytes
/// ```
///
/// A `Store` value is used from one thread; its worker pools run their own threads.
public final class Store {
    /// The store's location as given: its root folder, or a URL (without credentials).
    public let path: String
    /// The configuration in effect (from `<store>/config.json`).
    public let configuration: StoreConfiguration
    /// The metadata backend (runs, snapshots, manifests, chunks, metrics).
    let metadata: any MetadataStore
    /// The blob backend.
    let blobs: any BlobStore
    /// The store lock (shared for put and reads, exclusive for rm, gc and repair).
    let lock: any StoreLock
    /// Why this process cannot write to the store now (nil: it can).
    let writeProblem: @Sendable () -> String?
    /// Where first requests are noted for `cache_policy: second-hit` (nil: nowhere).
    let requestLog: (any QueryRequestLog)?
    /// How this store's commands wait for the store lock (see `StoreLock.swift`).
    public var lockWait = Store.defaultLockWait.withLock { $0 }
    /// Re-hash every chunk read with SHA-256 even when the store's `verify_reads` is
    /// `checksum` (`get --verify`).
    public var forceSHA256Verification = false
    /// Called every 100 ms or so while `put` reads its input and `get` writes its output
    /// (from the calling thread), for a progress display; nil for none.
    public var progressHandler: ((TransferProgress) -> Void)?

    /// Whether reads re-hash decoded chunks with SHA-256.
    var verifiesSHA256OnRead: Bool { forceSHA256Verification || configuration.verifyReadsWithSHA256 }
    /// True when this process cannot write to the store (local: a read-only file system, or
    /// the store folder, `ckstore.db` or `objects/` not writable): it is opened for reading
    /// only, and query results are computed but not cached.
    public let isReadOnly: Bool

    /// The store location from the usual sources: an explicit path, else `$CKSTORE_DIR`,
    /// else `./.ckstore`.
    public static func resolvePath(explicit: String?) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = getenv("CKSTORE_DIR"), env.pointee != 0 { return String(cString: env) }
        return ".ckstore"
    }

    /// The default configuration file's text, written into new stores (equal to
    /// Config/ckstore.json, which a test checks).
    public static let defaultConfigurationText = """
        {
          "chunk_size": 4194304,
          "compression": {
            "codec": "lz4",
            "acceleration": 1,
            "min_savings": 0.03,
            "float_filter": "hybrid",
            "integer_filter": "byteshuffle",
            "float_entropy": "none"
          },
          "derived_compression": "none",
          "cache_policy": "second-hit",
          "workers": 0,
          "sync": "batch",
          "verify_reads": "checksum"
        }

        """

    /// Makes a store of already opened parts (what `init(path:)` does after the factory opened
    /// them; tests pass in-memory backends).
    package init(backends: StoreBackends) {
        path = backends.location
        configuration = backends.configuration
        metadata = backends.metadata
        blobs = backends.blobs
        lock = backends.lock
        isReadOnly = backends.isReadOnly
        writeProblem = backends.writeProblem
        requestLog = backends.requestLog
    }

    /// Throws a clear `.environment` error naming the store and the reason (read-only file
    /// system, or which permission is missing) when this process cannot write to the store.
    /// Called before any write, so that the error is not SQLite's "attempt to write a readonly
    /// database".
    func requireWritable() throws(CKStoreError) {
        guard let problem = writeProblem() else { return }
        throw CKStoreError(.environment, "cannot write to the store at \(path): \(problem)")
    }

    // MARK: - Locking

    /// Runs `body` holding the store lock: shared for puts and reads, exclusive for gc, so that
    /// gc never deletes a blob that a concurrent put has found and is about to refer to.
    /// When the wait gives up (`lockWait.timeout`), throws and nothing has been done.
    func withLock<T>(exclusive: Bool, _ body: () throws(CKStoreError) -> T) throws(CKStoreError) -> T {
        try lock.acquire(exclusive ? .exclusive : .shared, policy: lockWait)  // waits as `lockWait` says
        defer { lock.release() }
        return try body()
    }

    /// Tries to take the exclusive lock without waiting (while already holding the shared
    /// one); returns false when another process holds the lock (the shared lock may then be
    /// lost: only for the end of a failed put, see `StoreLock.tryUpgradeToExclusive`).
    func tryUpgradeToExclusive() -> Bool {
        lock.tryUpgradeToExclusive()
    }
}

/// Runs `body`, turning any error into a `CKStoreError` with `context`.
package func wrapping<T>(_ context: @autoclosure () -> String, _ body: () throws -> T) throws(CKStoreError) -> T {
    do {
        return try body()
    } catch {
        throw CKStoreError.wrap(error, context: context())
    }
}
