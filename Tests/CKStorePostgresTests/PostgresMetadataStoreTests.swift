import CKStore
import Foundation
import Synchronization
import Testing

@testable import CKStorePostgres

/// A location on the live server with its own new schema (dropped by `dropSchema`).
func scratchLocation() throws -> PostgresLocation {
    let schema = "s_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    let url = try #require(liveURL)
    return try PostgresLocation(url + (url.contains("?") ? "&" : "?") + "schema=\(schema)&blobs=file:///tmp/unused")
}

func dropSchema(_ location: PostgresLocation) {
    if let schema = location.schema, let c = try? connect() { _ = try? c.executeScript("DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE") }
}

/// A one-tensor manifest (F32, `count` elements, one chunk whose hash is derived from `seed`).
func sampleManifest(seed: UInt8, count: Int = 4) -> Manifest {
    let header = Array("{\"w\":{\"dtype\":\"F32\",\"shape\":[\(count)],\"data_offsets\":[0,\(count * 4)]}}".utf8)
    let chunk = ChunkRef(hash: SHA256Digest.hash([seed]), rawSize: count * 4, storedSize: 30 + Int(seed))
    let info = TensorInfo(name: "w", dtype: .f32, shape: [count], dataStart: 0, dataEnd: count * 4)
    return Manifest(headerBytes: header, dataLength: count * 4, tensors: [TensorEntry(info: info, chunks: [chunk])])
}

@Suite("PostgresMetadataStore (live)", .serialized, requiresLiveServer)
struct PostgresMetadataStoreTests {
    @Test func initCreatesTheSchemaAndReopenWithoutCreateFindsIt() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let missing = caught(CKStoreError.self) { _ = try PostgresMetadataStore(location: location, create: false) }
        #expect(missing?.code == .notFound)
        _ = try PostgresMetadataStore(location: location, create: true)
        let store = try PostgresMetadataStore(location: location, create: false)
        #expect(try PGMigrator().currentVersion(store.conn) == PGMigrator().latestVersion)
        #expect(try store.runs().isEmpty)
    }

    @Test func commitIsIdempotentConflictsWithoutForceAndReplacesWithForce() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let store = try PostgresMetadataStore(location: location, create: true)
        let a = sampleManifest(seed: 1)
        let b = sampleManifest(seed: 2)
        #expect(try store.commit(manifest: a, run: "r", step: 10, metrics: [("loss", 1.5)], force: false).outcome == .created)
        #expect(try store.commit(manifest: a, run: "r", step: 10, metrics: [], force: false).outcome == .unchanged)
        let conflict = caught(CKStoreError.self) { _ = try store.commit(manifest: b, run: "r", step: 10, metrics: [], force: false) }
        #expect(conflict?.code == .conflict)
        try store.recordMetrics(run: "r", step: 20, variant: "lawa-k2-s10", values: [("acc", 0.5)])
        let replaced = try store.commit(manifest: b, run: "r", step: 10, metrics: [], force: true)
        #expect(replaced.outcome == .replaced(previous: a.digest))
        #expect(replaced.droppedMetrics == 2)  // raw loss at 10, and the LAWA at 20 whose window holds 10
        #expect(try store.snapshot(run: "r", step: 10)?.digest == b.digest)
        #expect(try store.manifest(a.digest) == nil)  // unreferenced manifest deleted
        let loaded = try #require(try store.manifest(b.digest))
        #expect(loaded.digest == b.digest && loaded.tensors == b.tensors)
        #expect(try store.hasChunk(a.tensors[0].chunks[0].hash))  // chunk rows stay until gc
        #expect(try store.storedSize(ofChunk: b.tensors[0].chunks[0].hash) == 32)
        #expect(try store.runs() == [RunSummary(name: "r", snapshotCount: 1, firstStep: 10, lastStep: 10)])
        #expect(try store.manifestDigests(prefix: String(b.digest.hex.prefix(6)), limit: 5) == [b.digest])
        let stats = try store.statistics()
        #expect(stats.snapshots == 1 && stats.blobCount == 1 && stats.storedBytes == 32)
    }

    @Test func concurrentCommitsOfOneStepFromSeparateConnectionsAgree() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        _ = try PostgresMetadataStore(location: location, create: true)
        let outcomes = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            do {
                let store = try PostgresMetadataStore(location: location, create: false)
                let m = sampleManifest(seed: UInt8(i % 2))  // two contents race for one step
                let outcome = try store.commit(manifest: m, run: "race", step: 1, metrics: [], force: false).outcome
                outcomes.withLock { $0.append("\(outcome)") }
            } catch let e as CKStoreError {
                outcomes.withLock { $0.append(e.code.rawValue) }
            } catch {
                outcomes.withLock { $0.append("other: \(error)") }
            }
        }
        let all = outcomes.withLock { $0 }
        #expect(all.filter { $0 == "created" }.count == 1, "\(all)")
        #expect(all.allSatisfy { ["created", "unchanged", "conflict"].contains($0) }, "\(all)")
        let store = try PostgresMetadataStore(location: location, create: false)
        #expect(try store.snapshots(run: "race")?.count == 1)
    }

    @Test func derivedSnapshotsAreRecordedOnceAndDropped() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let store = try PostgresMetadataStore(location: location, create: true)
        _ = try store.commit(manifest: sampleManifest(seed: 1), run: "r", step: 1, metrics: [], force: false)
        let avg = sampleManifest(seed: 9)
        let key = SHA256Digest.hash(Array("k".utf8))
        try store.commitDerived(manifest: avg, key: key, recipe: "lawa run=r k=1", inputs: "sha256:x", run: "r")
        try store.commitDerived(manifest: sampleManifest(seed: 8), key: key, recipe: "lawa run=r k=1", inputs: "sha256:x", run: "r")
        #expect(try store.derivedDigest(key: key) == avg.digest)
        #expect(try store.derivedSnapshots(run: "r").map(\.digest) == [avg.digest])
        #expect(try store.referencedChunkHashes().count == 2)
        #expect(try store.dropDerived(key: key, digest: avg.digest))
        #expect(try store.derivedDigest(key: key) == nil)
    }

    @Test func collectDeletesRowsAndReportsReleasedChunksAndRollsBackOnRefusal() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let store = try PostgresMetadataStore(location: location, create: true)
        let a = sampleManifest(seed: 1)
        _ = try store.commit(manifest: a, run: "r", step: 1, metrics: [], force: false)
        _ = try store.commit(manifest: sampleManifest(seed: 2), run: "r", step: 2, metrics: [], force: false)
        let dry = try store.collect(removing: { [("r", 1)] }, dropsMetrics: false, dropDerived: true) { _ in false }
        #expect(dry.released == [a.tensors[0].chunks[0].hash])
        #expect(try store.snapshots(run: "r")?.count == 2)  // rolled back
        let done = try store.collect(removing: { [("r", 1)] }, dropsMetrics: false, dropDerived: true) { _ in true }
        #expect(done.removedSnapshots == [SnapshotKey(run: "r", step: 1)] && done.live.count == 1 && done.snapshotCount == 1)
        #expect(try store.hasChunk(a.tensors[0].chunks[0].hash) == false)
        #expect(try store.repairRows(derivedDigests: [], chunkHashes: [a.tensors[0].chunks[0].hash]).isEmpty)
    }

    @Test func readViewSeesOneSnapshotWhileAnotherConnectionCommits() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let reader = try PostgresMetadataStore(location: location, create: true)
        let writer = try PostgresMetadataStore(location: location, create: false)
        _ = try writer.commit(manifest: sampleManifest(seed: 1), run: "r", step: 1, metrics: [], force: false)
        try reader.readView {
            #expect(try reader.snapshots(run: "r")?.count == 1)
            _ = try writer.commit(manifest: sampleManifest(seed: 2), run: "r", step: 2, metrics: [], force: false)
            #expect(try reader.snapshots(run: "r")?.count == 1)
        }
        #expect(try reader.snapshots(run: "r")?.count == 2)
    }

    @Test func workerChunkIndexUsesItsOwnConnection() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let store = try PostgresMetadataStore(location: location, create: true)
        let m = sampleManifest(seed: 3)
        _ = try store.commit(manifest: m, run: "r", step: 1, metrics: [], force: false)
        let sizes = Mutex<[Int?]>([])
        nonisolated(unsafe) let indexes = try (0..<4).map { _ in try store.makeChunkIndex() }
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            let size = try? indexes[i].storedSize(ofChunk: m.tensors[0].chunks[0].hash)
            sizes.withLock { $0.append(size ?? nil) }
        }
        #expect(sizes.withLock { $0 } == [33, 33, 33, 33])
    }
}
