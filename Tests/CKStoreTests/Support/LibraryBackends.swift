// The backends the library suites run on: today's SQLite + local blobs + flock, and the
// in-memory implementations of the three protocols (which prove that `Store` needs nothing
// but the protocols).

import Foundation
import Testing

@testable import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// A way to make a `Store` for a library test, and to reach behind it where a test must.
struct LibraryBackend: Sendable, CustomTestStringConvertible {
    /// Shown in test names.
    let name: String
    /// Makes an empty store named `name` (inside the test's directory when the backend uses
    /// files) with chunk_size 4096.
    let makeStore: @Sendable (TemporaryDirectory, String) throws -> Store
    /// Damages a stored blob from outside (flips its last byte).
    let damageBlob: @Sendable (Store, SHA256Digest) -> Void

    var testDescription: String { name }

    /// SQLite metadata, blob files, flock(2): a store folder.
    static let sqliteLocal = LibraryBackend(
        name: "sqlite+local",
        makeStore: { dir, name in
            let path = dir.file(name)
            try Store.initialize(at: path)
            setChunkSize(store: path, 4096)
            return try Store(path: path)
        },
        damageBlob: { store, id in
            let hex = id.hex
            let path = "\(store.path)/objects/\(hex.prefix(2))/\(hex)"
            chmod(path, 0o644)
            var bytes = Array(readFile(path))
            bytes[bytes.count - 1] ^= 0x80
            writeFile(path, bytes)
        })

    /// `InMemoryMetadataStore`, `InMemoryBlobStore`, `InMemoryStoreLock`: no files at all.
    static let inMemory = LibraryBackend(
        name: "in-memory",
        makeStore: { _, name in
            var configuration = StoreConfiguration.default
            configuration.chunkSize = 4096
            return Store(
                backends: StoreBackends(
                    location: "memory://\(name)", configuration: configuration, metadata: InMemoryMetadataStore(),
                    blobs: InMemoryBlobStore(name: name), lock: InMemoryStoreLock()))
        },
        damageBlob: { store, id in
            let blobs = store.blobs as! InMemoryBlobStore
            var bytes = blobs.stored(id)!
            bytes[bytes.count - 1] ^= 0x80
            blobs.overwrite(id, with: bytes)
        })

    /// Every backend the library suites run on.
    static let all: [LibraryBackend] = [.sqliteLocal, .inMemory] + (postgresLocal.map { [$0] } ?? [])
}

/// The store's blobs and their sizes, by hex name, seen through the `BlobStore` protocol.
func storedBlobs(_ store: Store) -> [String: Int] {
    var result: [String: Int] = [:]
    for blob in (try? store.blobs.listing().blobs) ?? [] { result[blob.id.hex] = blob.size }
    return result
}
