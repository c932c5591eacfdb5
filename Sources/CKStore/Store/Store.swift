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
    let lockFile: FileHandle
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
    /// True when this process cannot write to the store (a read-only file system, or the
    /// store folder, `ckstore.db` or `objects/` not writable): it is opened for reading only,
    /// and query results are computed but not cached.
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
    /// was created now. An existing store is opened (and checked) but not changed, so this
    /// works on a store the caller may only read.
    ///
    /// - Throws: `.integrity` when the folder holds blobs but no database (or a database that is
    ///   empty or has no schema): ckstore never creates a database over existing blobs.
    @discardableResult
    public static func initialize(at path: String) throws(CKStoreError) -> Bool {
        let database = "\(path)/\(databaseName)"
        if FileSystem.exists(database) {
            _ = try Store(path: path)
            return false
        }
        // Refuse before creating anything (not even the lock file) when blobs are there without
        // a database, unless a concurrent creator made the database meanwhile.
        do {
            try StoreLayout.refuseMissingDatabase(store: path)
            try StoreLayout.refuseStrangeObjects(store: path)
        } catch {
            if !FileSystem.exists(database) { throw error }
        }
        // Two processes may create the same store at once (two trainers' first puts): the
        // exclusive store lock serializes creation, so the loser finds a finished store.
        let lock = try lockForCreation(path)
        defer { _ = Sys.lock(lock.fd, LOCK_UN, path: nil) }
        if FileSystem.exists(database) {
            _ = try Store(path: path)
            return false
        }
        // Under the lock, so that a concurrent creator's first blobs are not mistaken for
        // blobs without a database.
        try StoreLayout.refuseMissingDatabase(store: path)
        try StoreLayout.refuseStrangeObjects(store: path)
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
            try SQLiteMetadataStore(path: database, create: true) { () throws(CKStoreError) in
                try StoreLayout.refuseBlobsWithoutDatabase(store: path, problem: "has no schema")
            }
        }
        try? metadata.close()
        do {
            try FileSystem.syncDirectory(path)
        } catch {
            throw CKStoreError(.environment, "cannot create the store at \(path): \(error)", cause: error)
        }
        return true
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

    /// Opens an existing store, checking that its database and `objects/` agree (see
    /// `StoreLayout`). Without write access the store is opened for reading only and still
    /// sees every committed snapshot, including those in the write-ahead log.
    /// - Throws: `.notFound` when there is no store at `path`; `.integrity` when the store is
    ///   inconsistent (blobs without a database, a database without `objects/`, no
    ///   `config.json`, a file that is not a database).
    public init(path: String) throws(CKStoreError) {
        let database = "\(path)/\(Store.databaseName)"
        switch try StoreLayout.entry(database, following: true) {
        case .missing:
            do {
                try StoreLayout.refuseMissingDatabase(store: path)
                try StoreLayout.refuseStrangeObjects(store: path)
            } catch {
                // A store created meanwhile (its database first, then blobs) is no damage.
                guard try StoreLayout.entry(database, following: true) != .missing else { throw error }
            }
            if try StoreLayout.entry(database, following: true) == .missing {
                throw CKStoreError(.notFound, "no store at \(path) (run 'ckstore init' or set --store / CKSTORE_DIR)")
            }
        case .regularFile(size: 0):
            try StoreLayout.refuseBlobsWithoutDatabase(store: path, problem: "is empty (0 bytes)")
        case .directory, .other:
            throw CKStoreError(.integrity, "\(StoreLayout.inconsistent(path)): \(Store.databaseName) is not a regular file")
        case .regularFile, .symbolicLink:
            break
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
        } catch let e as SystemError where e.isNotFound {
            throw CKStoreError(
                .integrity,
                "\(StoreLayout.inconsistent(path)): config.json is missing next to its database; restore it (Config/ckstore.json holds the defaults)",
                cause: e)
        } catch {
            throw CKStoreError(.environment, "cannot read \(configPath): \(error)", cause: error)
        }
        let writeProblem = StoreLayout.writeProblem(store: path)
        isReadOnly = writeProblem != nil
        metadata = try Store.openDatabase(store: path, readOnly: isReadOnly)
        try StoreLayout.checkObjects(store: path, metadata: metadata, writable: !isReadOnly)
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

    /// Throws a clear `.environment` error naming the store and the reason (read-only file
    /// system, or which permission is missing) when this process cannot write to the store.
    /// Called before any write, so that the error is not SQLite's "attempt to write a readonly
    /// database".
    func requireWritable() throws(CKStoreError) {
        guard let problem = StoreLayout.writeProblem(store: path) else { return }
        throw CKStoreError(.environment, "cannot write to the store at \(path): \(problem)")
    }

    // MARK: - Locking

    /// Runs `body` holding the store lock: shared for puts and reads, exclusive for gc, so that
    /// gc never deletes a blob that a concurrent put has found and is about to refer to.
    /// When the wait gives up (`lockWait.timeout`), throws and nothing has been done.
    func withLock<T>(exclusive: Bool, _ body: () throws(CKStoreError) -> T) throws(CKStoreError) -> T {
        try acquireLock(exclusive: exclusive)  // waits as `lockWait` says (StoreLock.swift)
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
