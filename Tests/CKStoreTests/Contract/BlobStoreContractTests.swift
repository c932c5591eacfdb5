// The BlobStore contract (Sources/CKStore/Blob/BlobStore.swift), run identically on every
// backend in `BlobBackendFactory.all`.

import Dispatch
import Foundation
import Synchronization
import Testing

@testable import CKStore

/// A valid blob of `raw` (encoded as the store would) and its name.
private func encodedBlob(_ raw: [UInt8]) throws -> (id: SHA256Digest, bytes: [UInt8], codec: BlobCodec) {
    let id = SHA256Digest.hash(raw)
    let codec = BlobCodec(maxChunkSize: max(raw.count, 1), settings: StoreConfiguration.default.codecSettings)
    let encoded = try raw.withUnsafeBytes { try codec.encode($0, dtype: .f32, name: id) }
    return (id, Array(encoded.bytes), codec)
}

private func rawBytes(_ seed: UInt64, count: Int = 4096) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return rng.bytes(count)
}

private func withBlobs(_ backend: BlobBackendFactory, _ body: (BlobStoreFixture, any BlobStore) throws -> Void) throws {
    try withTemporaryDirectory("contract-blob") { dir throws in
        let fixture = try backend.make(dir)
        try body(fixture, try fixture.open())
    }
}

@Suite("Contract: BlobStore")
struct BlobStoreContractTests {
    @Test(arguments: BlobBackendFactory.all)
    func putIsCreateOnceAndReadsBackTheSameBytes(_ backend: BlobBackendFactory) throws {
        try withBlobs(backend) { fixture, blobs throws in
            let blob = try encodedBlob(rawBytes(1))
            let first = try blob.bytes.withUnsafeBytes { try blobs.put(blob.id, bytes: $0) { _ in true } }
            #expect(first.isNew && first.size == blob.bytes.count)
            let again = try blob.bytes.withUnsafeBytes { try blobs.put(blob.id, bytes: $0) { _ in true } }
            #expect(!again.isNew && again.size == blob.bytes.count)
            try blobs.syncNamespace()
            let other = try fixture.open()
            var buffer = ByteBuffer(capacity: 1)
            #expect(try other.read(blob.id, into: &buffer) == blob.bytes.count)
            #expect(Array(buffer.bytes) == blob.bytes)
            #expect(try other.withBytes(of: blob.id, scratch: &buffer) { Array($0) } == blob.bytes)
            let prefix = try other.readPrefix(blob.id, count: 10)
            #expect(prefix.bytes == Array(blob.bytes.prefix(10)) && prefix.size == blob.bytes.count)
            #expect(try other.size(of: blob.id) == blob.bytes.count)
            #expect(try other.state(of: blob.id) == .regular(size: blob.bytes.count))
            #expect(try blobs.namespaceProblem() == nil)
        }
    }

    @Test(arguments: BlobBackendFactory.all)
    func aValidBlobIsNeverReplacedAndADamagedOneIs(_ backend: BlobBackendFactory) throws {
        try withBlobs(backend) { _, blobs throws in
            let raw = rawBytes(2)
            let blob = try encodedBlob(raw)
            _ = try blob.bytes.withUnsafeBytes { try blobs.put(blob.id, bytes: $0) { _ in true } }
            // Someone else's valid blob under the name wins (isValid accepts it).
            let other = Array(blob.bytes.reversed())
            let kept = try other.withUnsafeBytes { try blobs.put(blob.id, bytes: $0) { $0.count == blob.bytes.count } }
            #expect(!kept.isNew)
            var scratch = ByteBuffer(capacity: 1)
            #expect(try blobs.withBytes(of: blob.id, scratch: &scratch) { Array($0) } == blob.bytes)
            #expect(
                raw.withUnsafeBytes {
                    blobs.holdsIntact(blob.id, storedSize: blob.bytes.count, raw: $0, codec: blob.codec, scratch: &scratch)
                })
            // A blob isValid rejects (damaged) is replaced.
            let replaced = try other.withUnsafeBytes { try blobs.put(blob.id, bytes: $0) { _ in false } }
            #expect(replaced.isNew && replaced.size == other.count)
            #expect(try blobs.withBytes(of: blob.id, scratch: &scratch) { Array($0) } == other)
            #expect(
                !raw.withUnsafeBytes { blobs.holdsIntact(blob.id, storedSize: other.count, raw: $0, codec: blob.codec, scratch: &scratch) })
        }
    }

    @Test(arguments: BlobBackendFactory.all)
    func aMissingBlobIsNotFoundAndRemovingItIsNoError(_ backend: BlobBackendFactory) throws {
        try withBlobs(backend) { _, blobs throws in
            let id = testDigest("missing")
            var buffer = ByteBuffer(capacity: 1)
            for read in [{ _ = try blobs.read(id, into: &buffer) }, { _ = try blobs.readPrefix(id, count: 4) }] {
                do {
                    try read()
                    Issue.record("reading a missing blob succeeded")
                } catch let error as BlobStoreError {
                    guard case .notFound(let name) = error else {
                        Issue.record("not .notFound: \(error)")
                        continue
                    }
                    #expect(name == id && error.failureKind == .notFound)
                    #expect(CKStoreError.wrap(error, context: "x").code == .notFound)
                }
            }
            #expect(try blobs.size(of: id) == nil && blobs.state(of: id) == .missing)
            try blobs.remove(id)
            let blob = try encodedBlob(rawBytes(3))
            _ = try blob.bytes.withUnsafeBytes { try blobs.put(blob.id, bytes: $0) { _ in true } }
            try blobs.remove(blob.id)
            try blobs.remove(blob.id)
            try blobs.syncNamespace()
            #expect(try blobs.size(of: blob.id) == nil && blobs.listing().blobs.isEmpty)
            #expect(try blobs.quarantine(blob.id) == nil)
        }
    }

    @Test(arguments: BlobBackendFactory.all)
    func listingNamesEveryBlobWithItsSize(_ backend: BlobBackendFactory) throws {
        try withBlobs(backend) { _, blobs throws in
            var expected: [SHA256Digest: Int] = [:]
            for seed in 10..<16 {
                let blob = try encodedBlob(rawBytes(UInt64(seed), count: 100 * seed))
                _ = try blob.bytes.withUnsafeBytes { try blobs.put(blob.id, bytes: $0) { _ in true } }
                expected[blob.id] = blob.bytes.count
            }
            let listing = try blobs.listing()
            #expect(Dictionary(uniqueKeysWithValues: listing.blobs.map { ($0.id, $0.size) }) == expected)
            #expect(listing.temporary.isEmpty && listing.foreign.isEmpty)
            var seen: [SHA256Digest: Int] = [:]
            try blobs.forEach { seen[$0] = $1 }
            #expect(seen == expected)
        }
    }

    @Test(arguments: BlobBackendFactory.all)
    func quarantineMovesABlobAsideWithoutDeletingIt(_ backend: BlobBackendFactory) throws {
        try withBlobs(backend) { _, blobs throws in
            let blob = try encodedBlob(rawBytes(4))
            _ = try blob.bytes.withUnsafeBytes { try blobs.put(blob.id, bytes: $0) { _ in true } }
            let before = try blobs.quarantined().count
            let whereTo = try #require(try blobs.quarantine(blob.id))
            #expect(whereTo.contains(blob.id.hex))
            #expect(try blobs.state(of: blob.id) == .missing)
            #expect(try blobs.quarantined().count == before + 1)
        }
    }

    @Test(arguments: BlobBackendFactory.all)
    func concurrentPutsOfOneNameHaveExactlyOneWinner(_ backend: BlobBackendFactory) throws {
        try withBlobs(backend) { fixture, _ throws in
            let blob = try encodedBlob(rawBytes(5))
            let id = blob.id
            let bytes = blob.bytes
            let winners = Mutex(0)
            let failures = Mutex<[String]>([])
            let stores = try (0..<8).map { _ in try fixture.open() }
            DispatchQueue.concurrentPerform(iterations: stores.count) { i in
                do {
                    let result = try bytes.withUnsafeBytes { try stores[i].put(id, bytes: $0) { $0.elementsEqual(bytes) } }
                    if result.isNew { winners.withLock { $0 += 1 } }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
            #expect(failures.withLock { $0 }.isEmpty)
            #expect(winners.withLock { $0 } == 1)
        }
    }
}
