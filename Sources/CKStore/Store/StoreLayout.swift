#if canImport(Glibc)
    import Glibc
#endif

/// The checks that keep a store's database and its `objects/` folder consistent when the store
/// is opened or created (docs/FORMAT.md, "Database and objects consistency").
///
/// The database is the only record of which blobs are in use. A store whose `objects/` holds
/// blobs but whose `ckstore.db` is missing, empty or has no schema has lost that record: it is
/// an integrity failure for every command, and no command creates a database there (a new,
/// empty database would make every blob an orphan for the next `gc`). Likewise a database that
/// references chunks needs its `objects/` folder, which must be a real directory.
///
/// The checks are cheap on a healthy store: one `stat` of the database, one `lstat` of
/// `objects/`. The blob scan runs only when the database is missing, empty or schema-less.
enum StoreLayout {
    /// What is at a path, without following a final symbolic link.
    enum Entry: Equatable {
        case missing
        case directory
        case regularFile(size: Int)
        case symbolicLink
        case other
    }

    /// The kind of entry at `path` (`lstat`, or `stat` when `following` a final symbolic
    /// link: a dangling link is then missing), or an error other than "not found".
    static func entry(_ path: String, following: Bool = false) throws(CKStoreError) -> Entry {
        var st = stat()
        guard (following ? stat(path, &st) : lstat(path, &st)) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return .missing }
            let error = SystemError(call: "lstat", path: path, errno: code)
            throw CKStoreError(.environment, "cannot examine \(path): \(String(cString: strerror(code)))", cause: error)
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFREG: return .regularFile(size: Int(st.st_size))
        case S_IFLNK: return .symbolicLink
        default: return .other
        }
    }

    /// True when `name` is a blob file name: 64 lowercase hexadecimal digits.
    static func isBlobName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        return bytes.count == 64 && bytes.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The number of blob files in `objects` (in its two-digit fan-out folders, symbolic links
    /// not followed), counting no further than `limit`. Zero when `objects` does not exist.
    static func blobCount(objects: String, limit: Int = .max) throws(CKStoreError) -> Int {
        guard try entry(objects) == .directory else { return 0 }
        let folders: [String]
        switch Sys.listDirectory(objects) {
        case .success(let names): folders = names.sorted()
        case .failure(let e):
            throw CKStoreError(.environment, "cannot list \(objects): \(e)", cause: e)
        }
        var count = 0
        for folder in folders where folder.utf8.count == 2 {
            let fanOut = "\(objects)/\(folder)"
            guard try entry(fanOut) == .directory else { continue }
            switch Sys.listDirectory(fanOut) {
            case .success(let names):
                for name in names where isBlobName(name) && name.hasPrefix(folder) {
                    count += 1
                    if count >= limit { return count }
                }
            case .failure(let e):
                throw CKStoreError(.environment, "cannot list \(fanOut): \(e)", cause: e)
            }
        }
        return count
    }

    /// The first words of every inconsistency message.
    static func inconsistent(_ store: String) -> String { "the store at \(store) is inconsistent" }

    /// Throws `.integrity` when `objects/` holds blobs, for a database that is missing, empty or
    /// has no schema (`problem`, e.g. "is missing"): such a store has lost the record of its
    /// content, and creating a database there would make every blob garbage.
    static func refuseBlobsWithoutDatabase(store: String, problem: String) throws(CKStoreError) {
        let objects = "\(store)/objects"
        guard try blobCount(objects: objects, limit: 1) > 0 else { return }
        let count = try blobCount(objects: objects)
        throw CKStoreError(
            .integrity,
            "\(inconsistent(store)): objects/ holds \(count) blob\(count == 1 ? "" : "s") but the database \(LocalStoreFactory.databaseName) \(problem); "
                + "restore \(LocalStoreFactory.databaseName) from a backup (ckstore never creates a database over existing blobs)")
    }

    /// The checks for a store folder without a database file: `.integrity` when `objects/` holds
    /// blobs or a write-ahead log is left without its database; nothing otherwise.
    static func refuseMissingDatabase(store: String) throws(CKStoreError) {
        try refuseBlobsWithoutDatabase(store: store, problem: "is missing")
        let wal = "\(store)/\(LocalStoreFactory.databaseName)-wal"
        if case .regularFile(let size) = try entry(wal), size > 0 {
            throw CKStoreError(
                .integrity,
                "\(inconsistent(store)): \(LocalStoreFactory.databaseName) is missing but \(LocalStoreFactory.databaseName)-wal (\(size) bytes) is there; restore \(LocalStoreFactory.databaseName) from a backup"
            )
        }
    }

    /// Throws `.integrity` when `objects/` is a symbolic link or not a directory.
    static func refuseStrangeObjects(store: String) throws(CKStoreError) {
        switch try entry("\(store)/objects") {
        case .symbolicLink:
            throw CKStoreError(
                .integrity, "\(inconsistent(store)): objects/ is a symbolic link (ckstore does not follow links inside a store)")
        case .regularFile, .other:
            throw CKStoreError(.integrity, "\(inconsistent(store)): objects/ is not a directory")
        case .missing, .directory:
            return
        }
    }

    /// Checks `objects/` against an open database: `.integrity` when it is a symbolic link or
    /// not a directory, or when it is missing while the database references chunks. A missing
    /// `objects/` of a store without chunks is recreated when `writable`.
    static func checkObjects(store: String, metadata: any MetadataStore, writable: Bool) throws(CKStoreError) {
        let objects = "\(store)/objects"
        try refuseStrangeObjects(store: store)
        guard try entry(objects) == .missing else { return }
        let chunks = try wrapping("cannot read the database of the store at \(store)") {
            try metadata.chunkRowCount()
        }
        if chunks > 0 {
            throw CKStoreError(
                .integrity,
                "\(inconsistent(store)): its database references \(chunks) chunk\(chunks == 1 ? "" : "s") but objects/ is missing")
        }
        if writable {
            do {
                try FileSystem.makeDirectory(objects)
            } catch {
                throw CKStoreError(.environment, "cannot create \(objects): \(error)", cause: error)
            }
        }
    }

    // MARK: - Access

    /// True when this process may access `path` in `mode` (effective ids, like open(2)).
    static func canAccess(_ path: String, _ mode: Int32) -> Bool {
        faccessat(AT_FDCWD, path, mode, AT_EACCESS) == 0
    }

    /// True when `path` is on a file system mounted read-only.
    static func isOnReadOnlyFileSystem(_ path: String) -> Bool {
        var info = statvfs()
        return statvfs(path, &info) == 0 && (info.f_flag & UInt(ST_RDONLY)) != 0
    }

    /// Why this process cannot write to the store at `store`, or nil when it can: a read-only
    /// file system, or which part of the store its permissions protect.
    static func writeProblem(store: String) -> String? {
        if isOnReadOnlyFileSystem(store) { return "read-only file system" }
        if !canAccess(store, W_OK) { return "permission denied (the store folder is not writable by this user)" }
        let database = "\(store)/\(LocalStoreFactory.databaseName)"
        if FileSystem.exists(database), !canAccess(database, W_OK) {
            return "permission denied (\(LocalStoreFactory.databaseName) is read-only for this user)"
        }
        let objects = "\(store)/objects"
        if FileSystem.exists(objects), !canAccess(objects, W_OK) {
            return "permission denied (objects/ is not writable by this user)"
        }
        return nil
    }
}
