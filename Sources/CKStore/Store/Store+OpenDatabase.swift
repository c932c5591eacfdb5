import CSQLite

#if canImport(Glibc)
    import Glibc
#endif

extension LocalStoreFactory {
    /// Opens the store's metadata database (docs/FORMAT.md, "Read-only opens").
    ///
    /// With write access it is opened read-write (and migrated). Without, it never creates a
    /// file (a `-wal` or `-shm` owned by a reader would lock the store's owner out of writing):
    /// when both `ckstore.db-wal` and `ckstore.db-shm` exist it is opened read-only but not
    /// `immutable`, so that SQLite reads the write-ahead log through the `-shm` index and every
    /// committed snapshot is seen; when the log is absent or empty, the database file holds
    /// every commit and is opened `immutable`. When the log holds commits that this process
    /// cannot read, the open fails instead of showing stale data.
    ///
    /// Before any schema is created, a store whose `objects/` holds blobs is refused
    /// (`StoreLayout.refuseBlobsWithoutDatabase`).
    static func openDatabase(store: String, readOnly: Bool) throws(CKStoreError) -> SQLiteMetadataStore {
        let database = "\(store)/\(databaseName)"
        let refuseIfBlobs = { () throws(CKStoreError) in
            try StoreLayout.refuseBlobsWithoutDatabase(store: store, problem: "has no schema")
        }
        if !readOnly {
            return try wrapping("cannot open the store at \(store)") {
                try SQLiteMetadataStore(path: database, create: false, onMissingSchema: refuseIfBlobs)
            }
        }
        guard StoreLayout.canAccess(database, R_OK) else {
            throw CKStoreError(
                .environment, "cannot read the store at \(store): permission denied (\(databaseName) is not readable by this user)")
        }
        let openImmutable = { () throws(CKStoreError) -> SQLiteMetadataStore in
            try wrapping("cannot open the store at \(store)") {
                try SQLiteMetadataStore(path: database, create: false, readOnly: true, immutable: true, onMissingSchema: refuseIfBlobs)
            }
        }
        let walHoldsData: Bool
        if case .regularFile(let size) = try StoreLayout.entry("\(store)/\(databaseName)-wal", following: true), size > 0 {
            walHoldsData = true
        } else {
            walHoldsData = false
        }
        guard try StoreLayout.entry("\(store)/\(databaseName)-shm", following: true) != .missing else {
            // SQLite would create the -shm (and -wal) where the folder is writable.
            if walHoldsData { try refuseUnreadableWriteAheadLog(store: store) }
            return try openImmutable()
        }
        do {
            return try SQLiteMetadataStore(path: database, create: false, readOnly: true, onMissingSchema: refuseIfBlobs)
        } catch let error as CKStoreError where Self.cannotUseWriteAheadLog(error) {
            if walHoldsData { try refuseUnreadableWriteAheadLog(store: store) }
            return try openImmutable()
        } catch {
            throw CKStoreError.wrap(error, context: "cannot open the store at \(store)")
        }
    }

    /// True when a read-only open failed because SQLite could neither use nor create the
    /// database's `-shm` index (it reports "unable to open database file" or "attempt to write
    /// a readonly database").
    private static func cannotUseWriteAheadLog(_ error: CKStoreError) -> Bool {
        guard let cause = error.cause as? SQLiteError else { return false }
        return cause.primaryCode == SQLITE_CANTOPEN || cause.primaryCode == SQLITE_READONLY
    }

    /// Throws because the store's write-ahead log holds data (commits that may not be in the
    /// database file yet) that this process cannot read, naming the file at fault.
    private static func refuseUnreadableWriteAheadLog(store: String) throws(CKStoreError) -> Never {
        let wal = "\(databaseName)-wal"
        let shm = "\(databaseName)-shm"
        var size = 0
        if case .regularFile(let bytes) = try StoreLayout.entry("\(store)/\(wal)", following: true) { size = bytes }
        let why: String
        if !StoreLayout.canAccess("\(store)/\(wal)", R_OK) {
            why = "\(wal) is not readable by this user"
        } else if try StoreLayout.entry("\(store)/\(shm)") == .missing {
            why = "\(shm) is missing (a reader without write access does not create it)"
        } else if !StoreLayout.canAccess("\(store)/\(shm)", R_OK) {
            why = "\(shm) is not readable by this user"
        } else {
            why = "SQLite cannot use \(shm) read-only"
        }
        throw CKStoreError(
            .environment,
            "cannot read the store at \(store) without write access: its newest commits are in \(wal) (\(size) bytes) and \(why); "
                + "run a ckstore command on it once with write access (which checkpoints the log), or make both files readable")
    }
}
