import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// Opens and creates stores at `postgres://user@host:port/db?blobs=…` locations: metadata in
/// PostgreSQL (`PostgresMetadataStore`), the store lock as advisory locks (`PostgresStoreLock`,
/// sharing a `GCFence` with the metadata), and the blobs where `blobs=` says. The CLI registers
/// it with `StoreFactories.register` at start-up.
///
/// Blob locations: `file:///absolute/path` (a local blob folder, laid out like a local store's
/// `objects/`, quarantine beside it) and, through `makeS3BlobStore`, `s3://bucket/prefix`.
/// The configuration lives in the database (`store_state.config`, written by `init` with the
/// defaults).
package struct PostgresStoreFactory: StoreBackendFactory {
    /// Makes the blob store of an `s3://` location (set by the CLI when the S3 backend is built
    /// in), creating the bucket when `create` (init); nil: `s3://` locations are refused.
    /// Workers for "workers": 0 (auto) when blobs are remote (S3): enough requests in flight.
    package static let remoteBlobWorkers = 8

    package nonisolated(unsafe) static var makeS3BlobStore: ((_ blobs: String, _ create: Bool) throws(CKStoreError) -> any BlobStore)?

    /// Creates the factory.
    package init() {}

    package func handles(_ location: String) -> Bool { PostgresLocation.isPostgres(location) }

    package func exists(_ location: String) throws(CKStoreError) -> Bool {
        do {
            _ = try PostgresMetadataStore(location: try PostgresLocation(location), create: false)
            return true
        } catch  where error.code == .notFound {
            return false
        }
    }

    package func initialize(_ location: String) throws(CKStoreError) -> Bool {
        let parsed = try PostgresLocation(location)
        let created = !(try exists(location))
        if created, parsed.localBlobsPath.map({ access($0, F_OK) == 0 }) ?? true {
            // Never metadata over existing blobs: an emptied or lost database looks like that,
            // and the first gc would delete them all.
            let blobs = try blobStore(parsed, configuration: StoreConfiguration.default, create: true)
            let count = try pgWrapping("list the blobs of \(parsed.redacted)") { try blobs.listing().blobs.count }
            if count > 0 {
                throw CKStoreError(
                    .integrity,
                    "the blob store \(parsed.blobs) holds \(count) blob(s) but \(parsed.redacted) has no ckstore tables: refusing to create "
                        + "metadata over existing blobs (restore the database, or give an empty blob location)")
            }
        }
        let metadata = try PostgresMetadataStore(location: parsed, create: true)
        try pgWrapping("cannot create the store at \(parsed.redacted)") {
            try metadata.recordConfigurationIfAbsent(Store.defaultConfigurationText)
        }
        if let path = parsed.localBlobsPath {
            if let problem = makeDirectories(path) {
                throw CKStoreError(.environment, "cannot create the blob folder \(path): \(problem)")
            }
        }
        _ = try blobStore(parsed, configuration: try configuration(metadata, parsed), create: true)
        return created
    }

    package func open(_ location: String) throws(CKStoreError) -> StoreBackends {
        let parsed = try PostgresLocation(location)
        let fence = GCFence()
        let metadata = try PostgresMetadataStore(location: parsed, create: false, fence: fence)
        var configuration = try configuration(metadata, parsed)
        let blobs = try blobStore(parsed, configuration: configuration)
        // Requests to an object store wait on the network more than on a core: "workers": 0
        // (auto) keeps several uploads and downloads in flight, as for sqlite:///…?blobs=s3://.
        if parsed.localBlobsPath == nil, configuration.workers == 0 {
            configuration.workers = max(Self.remoteBlobWorkers, configuration.effectiveWorkers)
        }
        let lock = try PostgresStoreLock(location: parsed, schema: metadata.schema, fence: fence)
        return StoreBackends(
            location: parsed.redacted, configuration: configuration, metadata: metadata, blobs: blobs, lock: lock, isReadOnly: false)
    }

    /// The configuration recorded in the database, or the defaults.
    private func configuration(_ metadata: PostgresMetadataStore, _ location: PostgresLocation) throws(CKStoreError) -> StoreConfiguration {
        let text = try pgWrapping("read the configuration of \(location.redacted)") { try metadata.configurationText() }
        return try StoreConfiguration.parse(
            Array((text ?? Store.defaultConfigurationText).utf8), source: "\(location.redacted) (store_state.config)")
    }

    /// The blob store `blobs=` names.
    private func blobStore(_ location: PostgresLocation, configuration: StoreConfiguration, create: Bool = false) throws(CKStoreError)
        -> any BlobStore
    {
        if let path = location.localBlobsPath {
            guard access(path, F_OK) == 0 else {
                throw CKStoreError(
                    .notFound, "the blob folder \(path) of \(location.redacted) does not exist (run 'ckstore init' with this location)")
            }
            let mode: LocalBlobStore.SyncMode =
                switch configuration.syncMode {
                case "each": .eachBlob
                case "syncfs": .fileSystem
                default: .batch
                }
            let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
            return LocalBlobStore(root: trimmed, syncMode: mode, quarantine: trimmed + ".quarantine")
        }
        if location.blobs.hasPrefix("s3://") {
            guard let make = Self.makeS3BlobStore else {
                throw CKStoreError(
                    .usage, "blobs=s3://… needs the S3 blob store, which this build does not include; use blobs=file:///path")
            }
            return try make(location.blobs, create)
        }
        throw CKStoreError(.usage, "unsupported blobs= location '\(location.blobs)': give s3://bucket/prefix or file:///absolute/path")
    }
}

/// `mkdir -p`: nil on success, else the reason.
private func makeDirectories(_ path: String) -> String? {
    var prefix = ""
    for part in path.split(separator: "/", omittingEmptySubsequences: true) {
        prefix += "/" + part
        if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return String(cString: strerror(errno)) }
    }
    return nil
}
