// `cache_policy` (always | second-hit | never): when a computed query result is stored in the
// derived-snapshot cache, the request log behind `second-hit`, and a hostile config value.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Float32 bytes of `values`.
private func f32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
}

/// A local store whose config.json sets `cache_policy` (nil: key absent), holding run "r" with
/// snapshots at steps 0, 10, 20 (tensor "w", F32, 3000 values).
private func makePolicyStore(_ dir: TemporaryDirectory, policy: String?) throws -> Store {
    let path = dir.file("store")
    try Store.initialize(at: path)
    setChunkSize(store: path, 4096)
    if let policy {
        setCachePolicy(store: path, policy)
    } else {
        removeCachePolicy(store: path)
    }
    let store = try Store(path: path)
    for step in [0, 10, 20] {
        let values = (0..<3000).map { Float(step) + Float($0) / 1000 }
        let file = dir.file("s\(step).safetensors")
        writeFile(file, makeSafetensors(tensors: [TensorSpec("w", "F32", [3000], f32Bytes(values))]))
        _ = try store.put(from: .file(file), run: "r", step: step)
    }
    return store
}

/// Adds `"cache_policy": VALUE` (VALUE as JSON text) to `<store>/config.json`.
private func setCachePolicy(store: String, json value: String) {
    let path = "\(store)/config.json"
    let config = String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    #expect(config.contains("\"sync\": "), "config.json has no sync line: \(config)")
    let updated =
        config.contains("\"cache_policy\": ")
        ? config.replacingOccurrences(of: #""cache_policy": [^,]*,"#, with: "\"cache_policy\": \(value),", options: .regularExpression)
        : config.replacingOccurrences(of: "\"sync\": ", with: "\"cache_policy\": \(value),\n  \"sync\": ")
    _ = FileManager.default.createFile(atPath: path, contents: Data(updated.utf8))
}

private func setCachePolicy(store: String, _ policy: String) {
    setCachePolicy(store: store, json: "\"\(policy)\"")
}

@Suite("Cache policy") struct CachePolicyTests {
    @Test func theConfigurationKeyParsesEachPolicyAndDefaultsToSecondHit() throws {
        #expect(StoreConfiguration.default.cachePolicy == .secondHit)
        #expect(try StoreConfiguration.parse(Array("{}".utf8), source: "c.json").cachePolicy == .secondHit)
        #expect(Store.defaultConfigurationText.contains("\"cache_policy\": \"second-hit\","))
        for policy in CachePolicy.allCases {
            let config = try StoreConfiguration.parse(Array("{\"cache_policy\": \"\(policy.rawValue)\"}".utf8), source: "c.json")
            #expect(config.cachePolicy == policy)
        }
    }

    @Test(arguments: [
        ("\"sometimes\"", "c.json: cache_policy: unknown policy 'sometimes' (always, second-hit, never)"),
        ("\"SECOND-HIT\"", "c.json: cache_policy: unknown policy 'SECOND-HIT' (always, second-hit, never)"),
        ("\"\"", "c.json: cache_policy: unknown policy '' (always, second-hit, never)"),
        ("2", "c.json: cache_policy: expected a string"),
        ("null", "c.json: cache_policy: expected a string"),
    ])
    func aHostileValueIsAnErrorNamingTheKey(value: String, message: String) {
        #expect {
            _ = try StoreConfiguration.parse(Array("{\"cache_policy\": \(value)}".utf8), source: "c.json")
        } throws: { error in
            (error as? CKStoreError)?.message == message && (error as? CKStoreError)?.code == .badInput
        }
    }

    @Test func secondHitCachesTheSecondRequestAndServesTheThird() throws {
        try withTemporaryDirectory { dir in
            let store = try makePolicyStore(dir, policy: "second-hit")
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "r")
            let first = try store.materialize(plan, to: .file(dir.file("a")))
            #expect(!first.fromCache && first.derivedDigest == nil)
            #expect(try store.derivedSnapshots(run: "r").isEmpty)
            let second = try store.materialize(plan, to: .file(dir.file("b")))
            #expect(!second.fromCache && second.derivedDigest != nil)
            #expect(try store.derivedSnapshots(run: "r").map(\.recipe) == [plan.recipe])
            let third = try store.materialize(plan, to: .file(dir.file("c")))
            #expect(third.fromCache && third.derivedDigest == second.derivedDigest)
            #expect(readFile(dir.file("a")) == readFile(dir.file("b")))
            #expect(readFile(dir.file("a")) == readFile(dir.file("c")))
            // Another recipe starts again at its first request.
            let other = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            #expect(try store.materialize(other, to: .file(dir.file("d"))).derivedDigest == nil)
        }
    }

    @Test func alwaysCachesTheFirstRequest() throws {
        try withTemporaryDirectory { dir in
            let store = try makePolicyStore(dir, policy: "always")
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "r")
            let first = try store.materialize(plan, to: .file(dir.file("a")))
            #expect(!first.fromCache && first.derivedDigest != nil)
            #expect(try store.materialize(plan, to: .file(dir.file("b"))).fromCache)
        }
    }

    @Test func anAbsentKeyMeansSecondHit() throws {
        try withTemporaryDirectory { dir in
            let store = try makePolicyStore(dir, policy: nil)
            #expect(store.configuration.cachePolicy == .secondHit)
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "r")
            let first = try store.materialize(plan, to: .file(dir.file("a")))
            #expect(!first.fromCache && first.derivedDigest == nil)
            let second = try store.materialize(plan, to: .file(dir.file("b")))
            #expect(!second.fromCache && second.derivedDigest != nil)
            #expect(try store.materialize(plan, to: .file(dir.file("c"))).fromCache)
        }
    }

    @Test func secondHitWithoutARequestLogCachesAtOnce() throws {
        try withTemporaryDirectory { dir in
            var configuration = StoreConfiguration.default
            configuration.chunkSize = 4096
            configuration.cachePolicy = .secondHit
            let store = Store(
                backends: StoreBackends(
                    location: "memory://policy", configuration: configuration, metadata: InMemoryMetadataStore(),
                    blobs: InMemoryBlobStore(name: "policy"), lock: InMemoryStoreLock()))
            #expect(store.requestLog == nil)
            for step in [0, 10, 20] {
                let values = (0..<3000).map { Float(step) + Float($0) / 1000 }
                let file = dir.file("s\(step).safetensors")
                writeFile(file, makeSafetensors(tensors: [TensorSpec("w", "F32", [3000], f32Bytes(values))]))
                _ = try store.put(from: .file(file), run: "r", step: step)
            }
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "r")
            #expect(try store.materialize(plan, to: .file(dir.file("a"))).derivedDigest != nil)
            #expect(try store.materialize(plan, to: .file(dir.file("b"))).fromCache)
        }
    }

    @Test func neverCachesNothingAndIgnoresAnExistingEntry() throws {
        try withTemporaryDirectory { dir in
            let store = try makePolicyStore(dir, policy: "always")
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "r")
            #expect(try store.materialize(plan, to: .file(dir.file("a"))).derivedDigest != nil)
            setCachePolicy(store: store.path, "never")
            let reopened = try Store(path: store.path)
            #expect(reopened.configuration.cachePolicy == .never)
            for name in ["b", "c"] {
                let r = try reopened.materialize(plan, to: .file(dir.file(name)))
                #expect(!r.fromCache && r.derivedDigest == nil)
            }
            #expect(readFile(dir.file("a")) == readFile(dir.file("c")))
            // The entry cached before is left alone (gc drops it as usual).
            #expect(try reopened.derivedSnapshots(run: "r").count == 1)
        }
    }

    @Test func aDamagedEntryIsRecomputedUnderSecondHit() throws {
        try withTemporaryDirectory { dir in
            let store = try makePolicyStore(dir, policy: "second-hit")
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            _ = try store.materialize(plan, to: .file(dir.file("a")))
            let cached = try store.materialize(plan, to: .file(dir.file("b")))
            let digest = try #require(cached.derivedDigest)
            // Truncate every blob of the derived snapshot (the mean of steps 10 and 20 shares no
            // chunk with an input).
            let manifest = try store.manifest(of: ResolvedRef(digest: digest, snapshot: nil))
            for chunk in manifest.tensors.flatMap(\.chunks) {
                let hex = chunk.hash.hex
                let blob = "\(store.path)/objects/\(hex.prefix(2))/\(hex)"
                chmod(blob, 0o644)
                #expect(truncate(blob, 3) == 0)
            }
            let again = try store.materialize(plan, to: .file(dir.file("c")))
            #expect(!again.fromCache && again.derivedDigest == digest)
            #expect(again.cacheNotes.count == 1 && again.cacheNotes[0].contains("recomputing"))
            #expect(readFile(dir.file("a")) == readFile(dir.file("c")))
            #expect(try store.materialize(plan, to: .file(dir.file("d"))).fromCache)
        }
    }

    @Test func theRequestLogRemembersKeysAndShrugsOffDamage() {
        withTemporaryDirectory { dir in
            let log = FileQueryRequestLog(path: dir.file("cache-requests"))
            let a = SHA256Digest.hash(Array("a".utf8))
            let b = SHA256Digest.hash(Array("b".utf8))
            #expect(!log.noteRequest(a))
            #expect(log.noteRequest(a))
            log.release(a)
            #expect(!log.noteRequest(b))
            #expect(log.noteRequest(a) && log.noteRequest(b))
            log.release(a)
            // Garbage or a truncated file reads as "not requested"; the note is written again.
            writeFile(dir.file("cache-requests"), Array(repeating: 0xAB, count: 100))
            #expect(!log.noteRequest(a))
            #expect(log.noteRequest(a))
            let size = (try? FileManager.default.attributesOfItem(atPath: dir.file("cache-requests"))[.size] as? Int) ?? -1
            #expect(size <= FileQueryRequestLog.slots * 32)
        }
    }

    @Test func aRequestLogThatIsNotARegularFileCountsAsARepeat() {
        withTemporaryDirectory { dir in
            let key = SHA256Digest.hash(Array("k".utf8))
            writeFile(dir.file("target"), [])
            #expect(symlink(dir.file("target"), dir.file("link")) == 0)
            #expect(FileQueryRequestLog(path: dir.file("link")).noteRequest(key))
            #expect(readFile(dir.file("target")).isEmpty, "the log does not write through a symbolic link")
            #expect(mkdir(dir.file("folder"), 0o755) == 0)
            #expect(FileQueryRequestLog(path: dir.file("folder")).noteRequest(key))
            // A FIFO is opened without blocking (O_RDWR) and refused as not a regular file.
            #expect(mkfifo(dir.file("fifo"), 0o644) == 0)
            #expect(FileQueryRequestLog(path: dir.file("fifo")).noteRequest(key))
        }
    }
}
