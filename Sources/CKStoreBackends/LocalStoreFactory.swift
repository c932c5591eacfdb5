import CKStore
import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Opens and creates local stores: a folder (or a `file://` URL) with SQLite metadata in
/// `ckstore.db`, blob files under `objects/` and a flock(2) lock on `lock`:
///
/// ```
/// <store>/
///   config.json     the store's configuration (a copy of Config/ckstore.json at init)
///   ckstore.db      SQLite metadata (WAL mode; -wal and -shm files beside it)
///   lock            flock(2) target: shared for writers and readers, exclusive for gc
///   objects/ab/ab…  blob files, named by the SHA-256 of their raw chunk bytes
///   quarantine/     blob files fsck --repair moved aside
/// ```
package struct LocalStoreFactory: StoreBackendFactory {
    /// The name of the metadata database inside the store.
    package static let databaseName = "ckstore.db"
    /// The request log of `cache_policy: second-hit` (`FileQueryRequestLog`).
    package static let requestLogName = "cache-requests"

    /// Creates the factory.
    package init() {}

    /// The folder a location names: the path itself, or a `file://` URL's path.
    package static func folder(_ location: String) -> String {
        for prefix in ["file://", "FILE://"] where location.hasPrefix(prefix) {
            let rest = String(location.dropFirst(prefix.count))
            return rest.hasPrefix("localhost/") ? String(rest.dropFirst("localhost".count)) : rest
        }
        return location
    }

    package func handles(_ location: String) -> Bool { !StoreFactories.isRemote(location) }

    package func exists(_ location: String) throws(CKStoreError) -> Bool {
        FileSystem.exists("\(Self.folder(location))/\(Self.databaseName)")
    }

    /// Creates the store folder if it does not exist (idempotent). Returns true when it was
    /// created now. An existing store is opened (and checked) but not changed, so this works
    /// on a store the caller may only read.
    ///
    /// - Throws: `.integrity` when the folder holds blobs but no database (or a database that is
    ///   empty or has no schema): ckstore never creates a database over existing blobs.
    @discardableResult
    package func initialize(_ location: String) throws(CKStoreError) -> Bool {
        let path = Self.folder(location)
        let database = "\(path)/\(Self.databaseName)"
        if FileSystem.exists(database) {
            _ = try open(path)
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
            _ = try open(path)
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
                try Array(Store.defaultConfigurationText.utf8).withUnsafeBytes { try file.writeAll($0) }
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
    private func lockForCreation(_ path: String) throws(CKStoreError) -> FileHandle {
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
    package func open(_ location: String) throws(CKStoreError) -> StoreBackends {
        let path = Self.folder(location)
        let database = "\(path)/\(Self.databaseName)"
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
            throw CKStoreError(.integrity, "\(StoreLayout.inconsistent(path)): \(Self.databaseName) is not a regular file")
        case .regularFile, .symbolicLink:
            break
        }
        let configuration: StoreConfiguration
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
        let isReadOnly = writeProblem != nil
        let metadata = try Self.openDatabase(store: path, readOnly: isReadOnly)
        try StoreLayout.checkObjects(store: path, metadata: metadata, writable: !isReadOnly)
        let mode: LocalBlobStore.SyncMode =
            switch configuration.syncMode {
            case "each": .eachBlob
            case "syncfs": .fileSystem
            default: .batch
            }
        let blobs = LocalBlobStore(root: "\(path)/objects", syncMode: mode, quarantine: "\(path)/quarantine")
        let lock = try FlockStoreLock(path: "\(path)/lock")
        return StoreBackends(
            location: location, configuration: configuration, metadata: metadata, blobs: blobs, lock: lock, isReadOnly: isReadOnly,
            writeProblem: { StoreLayout.writeProblem(store: path) },
            requestLog: isReadOnly ? nil : FileQueryRequestLog(path: "\(path)/\(Self.requestLogName)"))
    }
}
