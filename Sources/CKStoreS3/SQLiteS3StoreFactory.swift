import CKStore
import CKStoreBackends
import Foundation

/// Opens stores whose metadata is a local SQLite store and whose blobs live in S3:
/// `sqlite:///path/to/store?blobs=s3://bucket/prefix` (the path is the store folder, which holds
/// `ckstore.db`, `config.json` and the lock; its `objects/` stays empty).
///
/// The S3 endpoint comes from `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), the region from
/// `AWS_REGION` (default `us-east-1`), the credentials from `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY` or the shared credentials file — never from the location.
///
/// The lock is the folder's flock(2) lock, so this layout is for one machine (publishing a
/// store's blobs to a bucket, tests, benchmarks); several hosts share a store through
/// `postgres://…?blobs=s3://…`, whose locks work across hosts.
package struct SQLiteS3StoreFactory: StoreBackendFactory {
    /// The environment the S3 settings are read from.
    let environment: [String: String]

    /// A factory reading S3 settings from `environment` (the process environment by default).
    package init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    package func handles(_ location: String) -> Bool {
        location.lowercased().hasPrefix("sqlite://")
    }

    /// Worker threads when the configuration says auto (0): requests in flight at once.
    package static let autoWorkers = 8

    /// The store folder and the blob location of `sqlite://PATH?blobs=s3://bucket/prefix`.
    package static func parse(_ location: String) throws(CKStoreError) -> (folder: String, blobs: S3Location) {
        let rest = location.dropFirst("sqlite://".count)
        guard let question = rest.firstIndex(of: "?") else {
            throw CKStoreError(.usage, "store location '\(location)': expected sqlite:///path?blobs=s3://bucket/prefix")
        }
        let folder = String(rest[..<question])
        let query = rest[rest.index(after: question)...]
        guard query.hasPrefix("blobs="), !folder.isEmpty else {
            throw CKStoreError(.usage, "store location '\(location)': expected sqlite:///path?blobs=s3://bucket/prefix")
        }
        do {
            return (folder, try S3Location(parsing: String(query.dropFirst("blobs=".count))))
        } catch {
            throw CKStoreError(.usage, "store location '\(location)': \(error)", cause: error)
        }
    }

    /// The S3 blob store of a parsed location.
    func blobStore(_ blobs: S3Location) throws(CKStoreError) -> S3BlobStore {
        do {
            return S3BlobStore(location: blobs, config: try S3Config.fromEnvironment(environment))
        } catch {
            throw CKStoreError(.usage, "S3 settings for \(blobs): \(error)", cause: error)
        }
    }

    package func exists(_ location: String) throws(CKStoreError) -> Bool {
        try LocalStoreFactory().exists(Self.parse(location).folder)
    }

    package func open(_ location: String) throws(CKStoreError) -> StoreBackends {
        let (folder, blobs) = try Self.parse(location)
        var backends = try LocalStoreFactory().open(folder)
        backends.location = location
        backends.blobs = try blobStore(blobs)
        // Requests to S3 wait on the network more than on a core: "workers": 0 (auto) runs
        // enough workers to keep several uploads and downloads in flight.
        if backends.configuration.workers == 0 {
            backends.configuration.workers = max(Self.autoWorkers, backends.configuration.effectiveWorkers)
        }
        return backends
    }

    /// Creates the local metadata folder and the bucket when missing.
    package func initialize(_ location: String) throws(CKStoreError) -> Bool {
        let (folder, blobs) = try Self.parse(location)
        let store = try blobStore(blobs)
        do {
            try store.createBucketIfMissing()
        } catch {
            throw CKStoreError(error.failureKind.code, "cannot create the store at \(location): \(error)", cause: error)
        }
        return try LocalStoreFactory().initialize(folder)
    }
}

extension S3BlobStore {
    /// The blob store of `s3://bucket/prefix` with the S3 settings of `environment` (endpoint,
    /// region, credentials: see `S3Config.fromEnvironment`), creating the bucket when it does not
    /// exist (one HEAD request when it does). What `postgres://…?blobs=s3://…` locations use.
    package static func opening(
        _ location: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(CKStoreError) -> S3BlobStore {
        let parsed: S3Location
        let config: S3Config
        do {
            parsed = try S3Location(parsing: location)
            config = try S3Config.fromEnvironment(environment)
        } catch {
            throw CKStoreError(.usage, "blobs=\(location): \(error)", cause: error)
        }
        let store = S3BlobStore(location: parsed, config: config)
        do {
            try store.createBucketIfMissing()
        } catch {
            throw CKStoreError(error.failureKind.code, "blobs=\(location): \(error)", cause: error)
        }
        return store
    }
}
