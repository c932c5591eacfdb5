#if canImport(Glibc)
    import Glibc
#endif

/// A ckstore repository on the local disk:
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
    /// The store's root folder.
    public let path: String
    /// The configuration in effect (from `<store>/config.json`).
    public let configuration: StoreConfiguration
    let metadata: SQLiteMetadataStore
    let blobs: LocalBlobStore
    private let lockFile: FileHandle
    /// Re-hash every chunk read with SHA-256 even when the store's `verify_reads` is
    /// `checksum` (`get --verify`).
    public var forceSHA256Verification = false
    /// Called every 100 ms or so while `put` reads its input and `get` writes its output
    /// (from the calling thread), for a progress display; nil for none.
    public var progressHandler: ((TransferProgress) -> Void)?

    /// Whether reads re-hash decoded chunks with SHA-256.
    var verifiesSHA256OnRead: Bool { forceSHA256Verification || configuration.verifyReadsWithSHA256 }
    /// True when the store's folder is not writable (opened for reading only; query results
    /// are computed but not cached).
    public let isReadOnly: Bool
    /// The name of the metadata database inside the store.
    static let databaseName = "ckstore.db"

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
            "integer_filter": "byteshuffle"
          },
          "derived_compression": "none",
          "workers": 0,
          "sync": "batch",
          "verify_reads": "checksum"
        }

        """

    /// Creates the store at `path` if it does not exist (idempotent). Returns true when it
    /// was created now.
    @discardableResult
    public static func initialize(at path: String) throws(CKStoreError) -> Bool {
        let existed = FileSystem.exists("\(path)/\(databaseName)")
        // Two processes may create the same store at once (two trainers' first puts): the
        // exclusive store lock serializes creation, so the loser finds a finished store.
        let lock = try lockForCreation(path)
        defer { _ = Sys.lock(lock.fd, LOCK_UN, path: nil) }
        do {
            try FileSystem.makeDirectory("\(path)/objects")
            let configPath = "\(path)/config.json"
            if !FileSystem.exists(configPath) {
                let temp = FileSystem.temporaryName(prefix: configPath)
                let file = try FileHandle(path: temp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
                try Array(defaultConfigurationText.utf8).withUnsafeBytes { try file.writeAll($0) }
                try file.sync()
                try file.close()
                // link(2) never replaces: an existing config.json (a concurrent init) wins.
                let linked = Sys.link(temp, configPath)
                FileSystem.removeIfPresent(temp)
                if case .failure(let e) = linked, !e.isAlreadyExists { throw e }
            }
        } catch {
            throw CKStoreError(.environment, "cannot create the store at \(path): \(error)", cause: error)
        }
        let metadata = try wrapping("cannot create the store at \(path)") {
            try SQLiteMetadataStore(path: "\(path)/\(databaseName)", create: true)
        }
        try? metadata.close()
        do {
            try FileSystem.syncDirectory(path)
        } catch {
            throw CKStoreError(.environment, "cannot create the store at \(path): \(error)", cause: error)
        }
        return !existed
    }

    /// Creates the store folder (and missing parents) and takes the store lock exclusively.
    private static func lockForCreation(_ path: String) throws(CKStoreError) -> FileHandle {
        do {
            try FileSystem.makeDirectories(path)
            let lock = try FileHandle(path: "\(path)/lock", flags: O_RDWR | O_CREAT, mode: 0o644)
            _ = try Sys.lock(lock.fd, LOCK_EX, path: "\(path)/lock").get()
            return lock
        } catch {
            throw CKStoreError(.environment, "cannot create the store at \(path): \(error)", cause: error)
        }
    }

    /// Opens an existing store.
    /// - Throws: `.notFound` when there is no store at `path`.
    public init(path: String) throws(CKStoreError) {
        guard FileSystem.exists("\(path)/\(Store.databaseName)") else {
            throw CKStoreError(.notFound, "no store at \(path) (run 'ckstore init' or set --store / CKSTORE_DIR)")
        }
        self.path = path
        let configPath = "\(path)/config.json"
        do {
            let file = try FileHandle.openForReading(configPath)
            let size = try file.size()
            var bytes = [UInt8](repeating: 0, count: size)
            _ = try bytes.withUnsafeMutableBytes { try file.pread(into: $0, at: 0) }
            configuration = try StoreConfiguration.parse(bytes, source: configPath)
        } catch let e as CKStoreError {
            throw e
        } catch {
            throw CKStoreError(.environment, "cannot read \(configPath): \(error)", cause: error)
        }
        // On a read-only file system (a mounted archive of checkpoints) the store is opened for
        // reading only, immutable: SQLite could not create its WAL index there. Writes then fail
        // cleanly ("attempt to write a readonly database"), reads work.
        let writable = access(path, W_OK) == 0
        isReadOnly = !writable
        metadata = try wrapping("cannot open the store at \(path)") {
            try SQLiteMetadataStore(
                path: "\(path)/\(Store.databaseName)", create: false, readOnly: !writable, immutable: !writable)
        }
        let mode: LocalBlobStore.SyncMode =
            switch configuration.syncMode {
            case "each": .eachBlob
            case "syncfs": .fileSystem
            default: .batch
            }
        blobs = LocalBlobStore(root: "\(path)/objects", syncMode: mode)
        do {
            lockFile = try FileHandle(path: "\(path)/lock", flags: O_RDWR | O_CREAT, mode: 0o644)
        } catch let e where e.isReadOnly {
            do {
                lockFile = try FileHandle.openForReading("\(path)/lock")
            } catch {
                throw CKStoreError(.environment, "cannot open \(path)/lock: \(error)", cause: error)
            }
        } catch {
            throw CKStoreError(.environment, "cannot open \(path)/lock: \(error)", cause: error)
        }
    }

    /// Opens the store, creating it first when it does not exist (as `put` does).
    public static func openOrCreate(path: String) throws(CKStoreError) -> Store {
        if !FileSystem.exists("\(path)/\(databaseName)") { try initialize(at: path) }
        return try Store(path: path)
    }

    // MARK: - Locking

    /// Runs `body` holding the store lock: shared for puts and reads, exclusive for gc, so that
    /// gc never deletes a blob that a concurrent put has found and is about to refer to.
    func withLock<T>(exclusive: Bool, _ body: () throws(CKStoreError) -> T) throws(CKStoreError) -> T {
        do {
            _ = try Sys.lock(lockFile.fd, exclusive ? LOCK_EX : LOCK_SH, path: "\(path)/lock").get()
        } catch {
            throw CKStoreError(.environment, "cannot lock the store at \(path): \(error)", cause: error)
        }
        defer { _ = Sys.lock(lockFile.fd, LOCK_UN, path: nil) }
        return try body()
    }

    /// Tries to take the exclusive lock without waiting (while already holding the shared
    /// one, flock converts it); returns false when another process holds the lock.
    func tryUpgradeToExclusive() -> Bool {
        if case .success = Sys.lock(lockFile.fd, LOCK_EX | LOCK_NB, path: nil) { return true }
        return false
    }
}

/// Runs `body`, turning any error into a `CKStoreError` with `context`.
func wrapping<T>(_ context: @autoclosure () -> String, _ body: () throws -> T) throws(CKStoreError) -> T {
    do {
        return try body()
    } catch {
        throw CKStoreError.wrap(error, context: context())
    }
}
