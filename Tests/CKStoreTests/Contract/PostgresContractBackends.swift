// PostgreSQL in the contract suites: metadata (a fresh schema per fixture) and the advisory
// store lock, on the live server of CKSTORE_TEST_PG_URL (password from PGPASSWORD). Absent
// without it.

import CKStorePostgres
import Foundation

@testable import CKStore

/// The live server's URL, or nil.
private let postgresURL: String? = ProcessInfo.processInfo.environment["CKSTORE_TEST_PG_URL"].flatMap { $0.isEmpty ? nil : $0 }

/// A location with a new schema on the live server (blobs unused by these suites).
private func freshPostgresLocation(_ url: String) throws -> PostgresLocation {
    let schema = "ct_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    return try PostgresLocation(url + (url.contains("?") ? "&" : "?") + "schema=\(schema)&blobs=file:///nonexistent")
}

extension MetadataBackendFactory {
    /// `PostgresMetadataStore`, each fixture in its own schema.
    static let postgres: MetadataBackendFactory? = postgresURL.map { url in
        MetadataBackendFactory(name: "postgres") { _ in
            let location = try freshPostgresLocation(url)
            _ = try PostgresMetadataStore(location: location, create: true)
            return MetadataStoreFixture { try PostgresMetadataStore(location: location, create: false) }
        }
    }
}

extension LockBackendFactory {
    /// `PostgresStoreLock`, each fixture on its own schema's lock key.
    static let postgres: LockBackendFactory? = postgresURL.map { url in
        LockBackendFactory(name: "postgres") { _ in
            let location = try freshPostgresLocation(url)
            let metadata = try PostgresMetadataStore(location: location, create: true)
            let schema = metadata.schema
            return StoreLockFixture { try PostgresStoreLock(location: location, schema: schema, fence: GCFence()) }
        }
    }
}
