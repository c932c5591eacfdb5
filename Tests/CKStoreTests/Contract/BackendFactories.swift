// The backends the contract suites run on. Every suite in Contract/ runs identically over each
// factory in these lists; a new backend is one more line in `all` (PostgreSQL and S3 factories
// join only when their environment variables name a live server, see below).

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// Opens instances ("connections") of one fresh metadata store.
struct MetadataStoreFixture {
    /// A new instance on the same store, as another process would open it.
    let open: () throws -> any MetadataStore
}

/// A metadata backend under test.
struct MetadataBackendFactory: Sendable, CustomTestStringConvertible {
    let name: String
    /// Creates a fresh, empty store (files, if any, inside `dir`).
    let make: @Sendable (TemporaryDirectory) throws -> MetadataStoreFixture
    var testDescription: String { name }

    static let sqlite = MetadataBackendFactory(name: "sqlite") { dir in
        let path = dir.file("contract.db")
        try SQLiteMetadataStore(path: path, create: true).close()
        return MetadataStoreFixture { try SQLiteMetadataStore(path: path, create: false) }
    }

    static let inMemory = MetadataBackendFactory(name: "in-memory") { _ in
        let database = InMemoryDatabase()
        return MetadataStoreFixture { InMemoryMetadataStore(database: database) }
    }

    /// Every metadata backend. PostgreSQL joins when `CKSTORE_TEST_PG_URL` is set (one
    /// line here, with a factory that creates a fresh schema or database per fixture).
    static var all: [MetadataBackendFactory] {
        var list: [MetadataBackendFactory] = [.sqlite, .inMemory]
        list += ContractBackendHooks.extraMetadataBackends()
        return list
    }
}

/// Opens instances of one fresh blob store.
struct BlobStoreFixture {
    /// A new instance on the same namespace, as another process would open it.
    let open: () throws -> any BlobStore
}

/// A blob backend under test.
struct BlobBackendFactory: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable (TemporaryDirectory) throws -> BlobStoreFixture
    var testDescription: String { name }

    static let local = BlobBackendFactory(name: "local") { dir in
        let root = dir.file("objects")
        try FileSystem.makeDirectories(root)
        return BlobStoreFixture { LocalBlobStore(root: root, durable: true) }
    }

    static let inMemory = BlobBackendFactory(name: "in-memory") { _ in
        let store = InMemoryBlobStore()
        return BlobStoreFixture { store }
    }

    /// Every blob backend. S3 joins when `CKSTORE_TEST_S3=1` (with `AWS_ENDPOINT_URL`)
    /// names a live endpoint (one line here, with a factory using a fresh prefix per fixture).
    static var all: [BlobBackendFactory] {
        var list: [BlobBackendFactory] = [.local, .inMemory]
        list += ContractBackendHooks.extraBlobBackends()
        return list
    }
}

/// Opens holders of one fresh store lock.
struct StoreLockFixture {
    /// A new, independent holder of the same lock (another process, another connection).
    let open: () throws -> any StoreLock
}

/// A lock backend under test.
struct LockBackendFactory: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable (TemporaryDirectory) throws -> StoreLockFixture
    var testDescription: String { name }

    static let flock = LockBackendFactory(name: "flock") { dir in
        let path = dir.file("lock")
        return StoreLockFixture { try FlockStoreLock(path: path) }
    }

    static let inMemory = LockBackendFactory(name: "in-memory") { _ in
        let table = InMemoryLockTable()
        return StoreLockFixture { InMemoryStoreLock(table: table) }
    }

    /// Every lock backend (PostgreSQL advisory locks join with the PostgreSQL metadata).
    static var all: [LockBackendFactory] {
        var list: [LockBackendFactory] = [.flock, .inMemory]
        list += ContractBackendHooks.extraLockBackends()
        return list
    }
}

/// Where backends from other targets join the lists (each returns [] unless its environment
/// variables are set). Kept in one place so that adding a backend touches one line per list.
enum ContractBackendHooks {
    static func extraMetadataBackends() -> [MetadataBackendFactory] { MetadataBackendFactory.postgres.map { [$0] } ?? [] }
    static func extraBlobBackends() -> [BlobBackendFactory] { S3ContractBackend.enabled ? [S3ContractBackend.factory] : [] }
    static func extraLockBackends() -> [LockBackendFactory] { LockBackendFactory.postgres.map { [$0] } ?? [] }
}

// MARK: - Fixtures shared by the contract suites

/// A deterministic digest for test content.
func testDigest(_ label: String) -> SHA256Digest { SHA256Digest.hash(Array(label.utf8)) }

/// A manifest of `tensors` (name and chunk labels; each chunk is `rawSize` bytes and stored
/// as `rawSize / 2 + 40` bytes), with a header naming `label`.
func testManifest(_ label: String, tensors: [(String, [String])], rawSize: Int = 64) -> Manifest {
    var offset = 0
    let entries = tensors.map { name, chunks -> TensorEntry in
        let length = rawSize * chunks.count
        defer { offset += length }
        return TensorEntry(
            info: TensorInfo(name: name, dtype: .f32, shape: [length / 4], dataStart: offset, dataEnd: offset + length),
            chunks: chunks.map { ChunkRef(hash: testDigest($0), rawSize: rawSize, storedSize: rawSize / 2 + 40) })
    }
    let header = Array("{\"__metadata__\":{\"label\":\"\(label)\"}}".utf8)
    return Manifest(headerBytes: header, dataLength: offset, tensors: entries)
}
