import CSQLite

#if canImport(Glibc)
    import Glibc
#endif

extension Store {
    /// Opens the store's metadata database (docs/FORMAT.md, "Read-only opens").
    ///
    /// With write access it is opened read-write (and migrated). Without, it is opened
    /// read-only but not `immutable`, so that SQLite reads the write-ahead log through the
    /// existing `-shm` index and every committed snapshot is seen. Only when SQLite cannot do
    /// that (no `-shm` and no right to create one) and the log holds nothing is the database
    /// opened `immutable`; when the log does hold commits that this process cannot read, the
    /// open fails instead of showing stale data.
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
        do {
            return try SQLiteMetadataStore(path: database, create: false, readOnly: true, onMissingSchema: refuseIfBlobs)
        } catch let error as CKStoreError where Store.cannotUseWriteAheadLog(error) {
            try refuseUnreadableWriteAheadLog(store: store)
            return try wrapping("cannot open the store at \(store)") {
                try SQLiteMetadataStore(path: database, create: false, readOnly: true, immutable: true, onMissingSchema: refuseIfBlobs)
            }
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

    /// Throws when the store's write-ahead log holds data (commits that may not be in the
    /// database file yet) that this process cannot read, naming the file at fault.
    private static func refuseUnreadableWriteAheadLog(store: String) throws(CKStoreError) {
        let wal = "\(databaseName)-wal"
        let shm = "\(databaseName)-shm"
        guard case .regularFile(let size) = try StoreLayout.entry("\(store)/\(wal)"), size > 0 else { return }
        let why: String
        if !StoreLayout.canAccess("\(store)/\(wal)", R_OK) {
            why = "\(wal) is not readable by this user"
        } else if try StoreLayout.entry("\(store)/\(shm)") == .missing {
            why = "\(shm) is missing and this user cannot create it"
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
