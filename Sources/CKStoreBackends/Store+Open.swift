import CKStore

/// Opening and creating stores by location (a path, a `file://` URL, or a URL a registered
/// factory handles): the entry points the CLI uses. They live here, beside the factories, so
/// that the core library sees no backend.
extension Store {
    /// Creates the store at `path` (a folder, a `file://` URL, or a location a registered
    /// backend handles) if it does not exist (idempotent). Returns true when it was created
    /// now. An existing store is opened (and checked) but not changed, so this works on a store
    /// the caller may only read.
    ///
    /// - Throws: `.integrity` when the location holds blobs but no metadata (or metadata that is
    ///   empty or has no schema): ckstore never creates metadata over existing blobs.
    @discardableResult
    public static func initialize(at path: String) throws(CKStoreError) -> Bool {
        try StoreFactories.factory(for: path).initialize(path)
    }

    /// Opens an existing store (see `StoreFactories` for the locations understood), checking
    /// that its metadata and blobs agree. Without write access the store is opened for reading
    /// only and still sees every committed snapshot.
    /// - Throws: `.notFound` when there is no store at `path`; `.integrity` when the store is
    ///   inconsistent (blobs without a database, a database without `objects/`, no
    ///   `config.json`, a file that is not a database).
    public convenience init(path: String) throws(CKStoreError) {
        self.init(backends: try StoreFactories.factory(for: path).open(path))
    }

    /// Opens the store, creating it first when it does not exist (as `put` does).
    public static func openOrCreate(path: String) throws(CKStoreError) -> Store {
        let factory = try StoreFactories.factory(for: path)
        if try !factory.exists(path) { _ = try factory.initialize(path) }
        return Store(backends: try factory.open(path))
    }
}
