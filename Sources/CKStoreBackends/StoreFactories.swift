import CKStore
import Synchronization

/// Maps a store location to the factory that opens it.
///
/// Local paths and `file://` URLs always go to `LocalStoreFactory`. Backends in other targets
/// (PostgreSQL metadata with S3 blobs: `postgres://user@host:port/db?blobs=s3://bucket/prefix`)
/// plug in here with `register` (the CLI registers them at start-up); the first registered
/// factory that `handles` a location opens it.
package enum StoreFactories {
    private static let registered = Mutex<[any StoreBackendFactory]>([])

    /// Adds a factory for locations that are not local paths.
    package static func register(_ factory: any StoreBackendFactory) {
        registered.withLock { $0.append(factory) }
    }

    /// True when `location` is a URL with a scheme other than `file` (`postgres://…`).
    package static func isRemote(_ location: String) -> Bool {
        guard let colon = location.firstIndex(of: ":"), location[colon...].hasPrefix("://") else { return false }
        let scheme = location[..<colon]
        return !scheme.isEmpty && scheme.lowercased() != "file"
            && scheme.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }
    }

    /// The factory for `location`.
    /// - Throws: `.usage` for a URL scheme no registered factory handles.
    package static func factory(for location: String) throws(CKStoreError) -> any StoreBackendFactory {
        guard isRemote(location) else { return LocalStoreFactory() }
        if let factory = registered.withLock({ list in list.first { $0.handles(location) } }) { return factory }
        let scheme = location.prefix { $0 != ":" }
        throw CKStoreError(
            .usage,
            "unsupported store location '\(scheme)://…': give a path, a file:// URL, or postgres://…?blobs=s3://… (needs a build with that backend)"
        )
    }
}
