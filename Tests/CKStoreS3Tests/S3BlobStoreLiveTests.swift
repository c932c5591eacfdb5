import Foundation
import Testing

@testable import CKStore
@testable import CKStoreS3

/// Helpers for the S3BlobStore tests: a store under a fresh prefix of the shared test bucket,
/// and valid version 2 blobs made by the real codec.
enum S3BlobLive {
    /// An S3 blob store under a prefix unique to one test.
    static func store(_ name: String, listPageSize: Int? = nil) throws -> S3BlobStore {
        _ = try S3Live.client()  // creates the bucket
        let location = S3Location(bucket: S3Live.bucket, prefix: S3Live.prefix(name))
        return S3BlobStore(location: location, config: try S3Live.config(), listPageSize: listPageSize)
    }

    /// A chunk's raw bytes (compressible float-like data), its name and its encoded blob.
    static func blob(_ count: Int = 1 << 20, seed: UInt64) throws -> (raw: [UInt8], id: SHA256Digest, encoded: [UInt8]) {
        var raw = S3Live.bytes(count, seed: seed)
        for i in stride(from: 3, to: raw.count, by: 4) { raw[i] = 0x3f }  // a shared exponent byte
        let id = raw.withUnsafeBytes { SHA256Digest.hash($0) }
        let codec = BlobCodec(maxChunkSize: count, settings: BlobCodec.Settings())
        let encoded = try raw.withUnsafeBytes { Array(try codec.encode($0, dtype: .f32, name: id).bytes) }
        return (raw, id, encoded)
    }

    /// Whether `file` decodes (with every read check and a re-hash) to `raw`.
    static func decodes(_ file: UnsafeRawBufferPointer, to raw: [UInt8], id: SHA256Digest) -> Bool {
        let codec = BlobCodec(maxChunkSize: raw.count, settings: BlobCodec.Settings())
        let out = ByteBuffer(capacity: raw.count)
        guard (try? codec.decode(file, into: out, name: id, rehash: true)) == raw.count else { return false }
        return Array(out.bytes) == raw
    }
}

@Suite(.enabled(if: S3Live.enabled, S3Live.skipReason))
struct S3BlobStoreLiveTests {
    @Test func putStoresUnderTheLayoutKeyAndReadsBack() throws {
        let store = try S3BlobLive.store("layout")
        let (raw, id, encoded) = try S3BlobLive.blob(seed: 1)
        let codec = BlobCodec(maxChunkSize: raw.count, settings: BlobCodec.Settings())
        let result = try encoded.withUnsafeBytes { bytes in
            try store.put(id, bytes: bytes) { existing in raw.withUnsafeBytes { codec.isIntact(existing, name: id, raw: $0) } }
        }
        #expect(result.isNew && result.size == encoded.count)
        #expect(store.key(for: id) == "\(store.s3Location.prefix)objects/\(id.hex.prefix(2))/\(id.hex)")
        // The object is where the layout says, byte for byte.
        #expect(try S3Live.client().getObject(store.key(for: id)) == encoded)
        var buffer = ByteBuffer(capacity: 16)
        let n = try store.read(id, into: &buffer)
        #expect(n == encoded.count && S3BlobLive.decodes(buffer.bytes, to: raw, id: id))
        #expect(try store.size(of: id) == encoded.count)
        let prefix = try store.readPrefix(id, count: BlobHeader.size)
        #expect(prefix.size == encoded.count && prefix.bytes == Array(encoded.prefix(BlobHeader.size)))
        // A second put of the same name is a no-op that reports the stored size.
        let again = try encoded.withUnsafeBytes { bytes in
            try store.put(id, bytes: bytes) { existing in raw.withUnsafeBytes { codec.isIntact(existing, name: id, raw: $0) } }
        }
        #expect(!again.isNew && again.size == encoded.count)
    }

    /// Eight threads put the same chunk at once: the conditional PUT lets exactly one write it;
    /// the others get 412, read the winner's object, validate it and reuse it.
    @Test func putOnceRaceHasOneWriterAndEveryoneSeesAValidBlob() throws {
        let store = try S3BlobLive.store("race")
        let (raw, id, encoded) = try S3BlobLive.blob(seed: 2)
        let results = S3Live.onThreads(8) { _ -> String in
            let codec = BlobCodec(maxChunkSize: raw.count, settings: BlobCodec.Settings())
            var sawValid = false
            do {
                let result = try encoded.withUnsafeBytes { bytes in
                    try store.put(id, bytes: bytes) { existing in
                        let ok = raw.withUnsafeBytes { codec.isIntact(existing, name: id, raw: $0) }
                        sawValid = ok
                        return ok
                    }
                }
                return result.isNew ? "new" : (sawValid && result.size == encoded.count ? "reused" : "bad")
            } catch {
                return "error: \(error)"
            }
        }
        #expect(results.filter { $0 == "new" }.count == 1, "\(results)")
        #expect(results.filter { $0 == "reused" }.count == 7, "\(results)")
        var buffer = ByteBuffer(capacity: 16)
        _ = try store.read(id, into: &buffer)
        #expect(S3BlobLive.decodes(buffer.bytes, to: raw, id: id))
    }

    /// An existing object that fails validation (a damaged blob whose chunk row exists: the
    /// put-repair rule) is replaced by the put; a valid one never is.
    @Test func damagedObjectIsReplacedByAPut() throws {
        let store = try S3BlobLive.store("repair")
        let (raw, id, encoded) = try S3BlobLive.blob(seed: 3)
        var damaged = encoded
        damaged[BlobHeader.size + 100] ^= 0x40  // payload checksum mismatch
        try S3Live.client().putObject(store.key(for: id), bytes: damaged)
        let codec = BlobCodec(maxChunkSize: raw.count, settings: BlobCodec.Settings())
        var checked = 0
        let result = try encoded.withUnsafeBytes { bytes in
            try store.put(id, bytes: bytes) { existing in
                checked += 1
                return raw.withUnsafeBytes { codec.isIntact(existing, name: id, raw: $0) }
            }
        }
        #expect(checked == 1 && result.isNew)
        let stored = try S3Live.client().getObject(store.key(for: id))
        #expect(stored == encoded)
        stored.withUnsafeBytes { #expect(S3BlobLive.decodes($0, to: raw, id: id)) }
        // A truncated leftover (a foreign writer's partial object) is replaced too.
        try S3Live.client().putObject(store.key(for: id), bytes: Array(encoded.prefix(10)))
        let second = try encoded.withUnsafeBytes { bytes in
            try store.put(id, bytes: bytes) { existing in raw.withUnsafeBytes { codec.isIntact(existing, name: id, raw: $0) } }
        }
        let replaced = try S3Live.client().getObject(store.key(for: id))
        #expect(second.isNew && replaced == encoded)
    }

    @Test func missingBlobIsNotFoundAndRemoveIsIdempotent() throws {
        let store = try S3BlobLive.store("missing")
        let id = SHA256Digest.hash(UnsafeRawBufferPointer(start: nil, count: 0))
        var buffer = ByteBuffer(capacity: 16)
        #expect {
            try store.read(id, into: &buffer)
        } throws: { error in
            guard case BlobStoreError.notFound(let missing) = error else { return false }
            return missing == id
        }
        #expect(throws: BlobStoreError.self) { try store.readPrefix(id, count: 64) }
        #expect(try store.size(of: id) == nil)
        try store.remove(id)
        try store.remove(id)
    }

    /// Listing follows continuation tokens across more than 1000 keys and tells blobs from
    /// foreign keys.
    @Test func listingPaginatesOverMoreThan1000Keys() throws {
        let store = try S3BlobLive.store("list")
        let count = 1003
        let ids = (0..<count).map { i -> SHA256Digest in
            var seed = UInt64(i)
            return withUnsafeBytes(of: &seed) { SHA256Digest.hash($0) }
        }
        let keys = ids.map { store.key(for: $0) }
        let failures = S3Live.onThreads(8) { t -> Int in
            guard let client = try? S3Live.client() else { return 1 }
            var failed = 0
            for index in stride(from: t, to: keys.count, by: 8) where (try? client.putObject(keys[index], bytes: [1, 2, 3])) == nil {
                failed += 1
            }
            return failed
        }
        #expect(failures.reduce(0, +) == 0)
        let client = try S3Live.client()
        try client.putObject("\(store.objectsPrefix)ab/not-a-blob", bytes: [1])
        try client.putObject("\(store.objectsPrefix)\(ids[0].hex)", bytes: [1])  // a blob name outside its folder
        try client.putObject("\(store.s3Location.prefix)elsewhere", bytes: [1])  // outside objects/: not listed
        let listing = try store.listing()
        #expect(listing.blobs.count == count)
        #expect(Set(listing.blobs.map(\.id)) == Set(ids))
        #expect(listing.blobs.allSatisfy { $0.size == 3 })
        #expect(
            Set(listing.foreign) == [
                "ab/not-a-blob (object of 1 bytes with a foreign name)", "\(ids[0].hex) (object of 1 bytes with a foreign name)",
            ])
        var seen = 0
        try store.forEach { _, _ in seen += 1 }
        #expect(seen == count)
    }

    /// Failures map to the store's error codes by their typed class.
    @Test func wrongCredentialsAreAClassifiedErrorWithoutTheSecret() throws {
        var config = try S3Live.config()
        config.credentials = S3Credentials(accessKeyId: config.credentials.accessKeyId, secretAccessKey: "wrong-secret-xyz")
        let store = S3BlobStore(location: S3Location(bucket: S3Live.bucket, prefix: "auth/"), config: config)
        _ = try S3Live.client()
        let id = SHA256Digest.hash(UnsafeRawBufferPointer(start: nil, count: 0))
        #expect {
            try store.size(of: id)
        } throws: { error in
            guard case BlobStoreError.backend(let kind, let message) = error else { return false }
            return kind == .readOnly && kind.code == .environment && !message.contains("wrong-secret-xyz")
                && message.contains("access denied")
        }
    }
}

@Suite struct S3ObjectsEntryTests {
    @Test func classifiesKeys() {
        let hex = String(repeating: "ab", count: 32)
        #expect(S3ObjectsEntry(key: "p/objects/ab/\(hex)", size: 5, objectsPrefix: "p/objects/") == .blob(SHA256Digest(hex: hex)!, size: 5))
        #expect(S3ObjectsEntry(key: "p/objects/cd/\(hex)", size: 5, objectsPrefix: "p/objects/") == .foreign("cd/\(hex)", size: 5))
        #expect(
            S3ObjectsEntry(key: "p/objects/ab/\(hex.uppercased())", size: 1, objectsPrefix: "p/objects/")
                == .foreign("ab/\(hex.uppercased())", size: 1))
        #expect(
            S3ObjectsEntry(key: "p/objects/ab/\(hex).tmp-1-2-3", size: 1, objectsPrefix: "p/objects/")
                == .foreign("ab/\(hex).tmp-1-2-3", size: 1))
        #expect(S3ObjectsEntry(key: "p/objects/ab/x/\(hex)", size: 1, objectsPrefix: "p/objects/") == .foreign("ab/x/\(hex)", size: 1))
    }

    @Test func failureKindsFollowTheS3ErrorClass() {
        let context = S3ErrorContext(operation: "GetObject", bucket: "b", key: "k")
        var slow = context
        slow.status = 503
        var malformed = context
        malformed.code = "MalformedResponse"
        #expect(S3Error.notFound(context).failureKind == .notFound)
        #expect(S3Error.unavailable(context).failureKind == .unavailable)
        #expect(S3Error.unavailable(slow).failureKind == .busy)
        #expect(S3Error.auth(context).failureKind == .readOnly)
        #expect(S3Error.conflict(context).failureKind == .conflict)
        #expect(S3Error.permanent(context).failureKind == .environment)
        #expect(S3Error.permanent(malformed).failureKind == .integrity)
        #expect(S3Error.unavailable(context).failureKind.code == .environment)
        #expect(S3Error.permanent(malformed).failureKind.code == .integrity)
    }
}
