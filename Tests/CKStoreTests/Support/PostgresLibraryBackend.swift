// The PostgreSQL backend for the library suites: PostgreSQL metadata (a new schema per store on
// the live server of CKSTORE_TEST_PG_URL, password from PGPASSWORD), blob files in the test's
// directory, advisory-lock store lock. Absent (nil) when no live server is configured.

import CKStorePostgres
import Foundation
import Testing

@testable import CKStore

#if canImport(Glibc)
    import Glibc
#endif

extension LibraryBackend {
    /// `postgres://…?schema=…&blobs=file:///…`, or nil without CKSTORE_TEST_PG_URL.
    static let postgresLocal: LibraryBackend? = {
        guard let url = ProcessInfo.processInfo.environment["CKSTORE_TEST_PG_URL"], !url.isEmpty else { return nil }
        return LibraryBackend(
            name: "postgres+local",
            makeStore: { dir, name in
                _ = registerPostgresFactory
                let schema = "lib_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
                let location = url + (url.contains("?") ? "&" : "?") + "schema=\(schema)&blobs=file://\(dir.file(name))-blobs"
                let metadata = try PostgresMetadataStore(location: try PostgresLocation(location), create: true)
                try metadata.recordConfigurationIfAbsent(
                    Store.defaultConfigurationText.replacingOccurrences(of: "\"chunk_size\": 4194304", with: "\"chunk_size\": 4096"))
                try Store.initialize(at: location)
                return try Store(path: location)
            },
            damageBlob: { store, id in
                let hex = id.hex
                let root = (store.blobs as! LocalBlobStore).root
                let path = "\(root)/\(hex.prefix(2))/\(hex)"
                chmod(path, 0o644)
                var bytes = Array(readFile(path))
                bytes[bytes.count - 1] ^= 0x80
                writeFile(path, bytes)
            })
    }()
}

/// Registers the PostgreSQL factory once per process.
private let registerPostgresFactory: Void = StoreFactories.register(PostgresStoreFactory())
