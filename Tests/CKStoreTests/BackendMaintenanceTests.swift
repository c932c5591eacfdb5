// rm, gc, stats, fsck and `fsck --repair` through the library, on every library backend
// (SQLite + local files, and the in-memory protocol implementations): the maintenance code
// reaches metadata and blobs only through the protocols.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

private func specs(seed: UInt64) -> [TensorSpec] {
    var rng = SplitMix64(seed: seed)
    return [TensorSpec("embed", "BF16", [2500, 2], rng: &rng, compressible: true), TensorSpec("proj", "F32", [2000], rng: &rng)]
}

/// Puts a file of `tensors` as RUN@STEP and returns its bytes.
@discardableResult
private func put(
    _ store: Store, _ dir: TemporaryDirectory, _ run: String, _ step: Int, _ tensors: [TensorSpec], metrics: [(String, Double)] = []
) throws -> [UInt8] {
    let bytes = makeSafetensors(tensors: tensors)
    let path = dir.file("\(run)-\(step).safetensors")
    writeFile(path, bytes)
    _ = try store.put(from: .file(path), run: run, step: step, metrics: metrics)
    return bytes
}

/// The blob names of a tensor's chunks.
private func chunkIDs(_ spec: TensorSpec) -> Set<String> {
    Set(chunks(of: spec.bytes, dtype: spec.dtype, chunkSize: 4096).map { sha256Hex($0) })
}

@Suite("Maintenance on every library backend")
struct BackendMaintenanceTests {
    @Test(arguments: LibraryBackend.all)
    func rmRemovesOnlyTheBlobsNoOtherSnapshotUses(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("bm-rm") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let a = specs(seed: 1)
            let b = [a[0], specs(seed: 2)[1]]
            try put(store, dir, "r", 1, a, metrics: [("loss", 1)])
            let bBytes = try put(store, dir, "r", 2, b)
            let before = storedBlobs(store)
            let report = try store.remove([.step(run: "r", step: 1)])
            #expect(report.removedSnapshots == ["r@1"] && report.droppedMetrics == 1)
            #expect(report.removedReferencedBlobs == chunkIDs(a[1]).count && report.removedOrphans == 0)
            #expect(Set(before.keys).subtracting(storedBlobs(store).keys) == chunkIDs(a[1]))
            let out = dir.file("out")
            _ = try store.restore(try store.resolve(.step(run: "r", step: 2)), to: .file(out))
            #expect(readFile(out) == Data(bBytes))
            #expect(try store.check(full: true).problems.isEmpty)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func gcAppliesRetentionAndADryRunChangesNothing(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("bm-gc") { dir throws in
            let store = try backend.makeStore(dir, "store")
            for step in 1...4 { try put(store, dir, "r", step, specs(seed: UInt64(10 + step))) }
            let blobs = storedBlobs(store)
            let dry = try store.collectGarbage(run: "r", policy: RetentionPolicy(keepLast: 2), dryRun: true)
            #expect(dry.dryRun && dry.removedSnapshots == ["r@1", "r@2"] && dry.removedBlobs > 0)
            #expect(try store.snapshots(run: "r").map(\.step) == [1, 2, 3, 4] && storedBlobs(store) == blobs)
            let real = try store.collectGarbage(run: "r", policy: RetentionPolicy(keepLast: 2))
            #expect(real.removedSnapshots == dry.removedSnapshots && real.removedBlobs == dry.removedBlobs)
            #expect(real.freedBytes == dry.freedBytes)
            #expect(try store.snapshots(run: "r").map(\.step) == [3, 4])
            #expect(storedBlobs(store).count == blobs.count - real.removedBlobs)
            let stats = try store.statistics()
            #expect(stats.orphanBlobs == 0 && stats.blobCount == storedBlobs(store).count)
            #expect(try store.check(full: false).problems.isEmpty)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func gcRemovesOrphansButRefusesWhenNoRowNamesAnyBlob(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("bm-orphans") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let orphan: [UInt8] = Array(repeating: 7, count: 100)
            _ = try orphan.withUnsafeBytes { try store.blobs.put(SHA256Digest.hash(orphan), bytes: $0) { _ in true } }
            let refusal = #expect(throws: CKStoreError.self) { _ = try store.collectGarbage(run: nil, policy: RetentionPolicy()) }
            #expect(refusal?.code == .conflict && refusal?.message.contains("--all-orphans") == true)
            #expect(storedBlobs(store).count == 1)
            try put(store, dir, "r", 1, specs(seed: 3))
            #expect(try store.statistics().orphanBlobs == 1 && store.check(full: false).orphanBlobs == 1)
            let report = try store.collectGarbage(run: nil, policy: RetentionPolicy())
            #expect(report.removedOrphans == 1 && report.removedSnapshots.isEmpty)
            #expect(try store.statistics().orphanBlobs == 0)
            #expect(storedBlobs(store)[SHA256Digest.hash(orphan).hex] == nil)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func fsckNamesTheSnapshotADamagedBlobBreaks(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("bm-fsck") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let a = specs(seed: 4)
            try put(store, dir, "r", 4, a)
            #expect(try store.check(full: true).problems.isEmpty)
            let victim = SHA256Digest(hex: sha256Hex(chunks(of: a[1].bytes, dtype: "F32", chunkSize: 4096)[0]))!
            backend.damageBlob(store, victim)
            let report = try store.check(full: true)
            #expect(report.blobFaults[victim] != nil)
            #expect(report.problems.contains { $0.blob == victim && $0.subject.contains("r@4 tensor 'proj'") }, "\(report.problems)")
            #expect(report.damagedSnapshots.map { $0.names.map { "\($0.run)@\($0.step)" } } == [["r@4"]])
        }
    }

    @Test(arguments: LibraryBackend.all)
    func repairDropsADamagedCachedAverageWhichIsThenRecomputed(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("bm-repair") { dir throws in
            let store = try backend.makeStore(dir, "store").cachingFirstRequests()
            for step in [0, 10, 20] { try put(store, dir, "r", step, specs(seed: UInt64(20 + step))) }
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            let first = try store.materialize(plan, to: .file(dir.file("avg1")))
            let digest = try #require(first.derivedDigest)
            let manifest = try store.manifest(of: ResolvedRef(digest: digest, snapshot: nil))
            let victim = manifest.tensors.first { $0.info.name == "proj" }!.chunks[0].hash
            backend.damageBlob(store, victim)
            let report = try store.repair(full: true)
            #expect(report.repairs.contains { $0.action == "drop-derived" && $0.target == plan.recipe }, "\(report.repairs)")
            #expect(report.repairs.contains { $0.action == "quarantine-blob" && $0.target == victim.hex }, "\(report.repairs)")
            #expect(report.problems.isEmpty, "\(report.problems)")
            #expect(report.quarantinedFiles == 1)
            #expect(try store.derivedSnapshots(run: nil).isEmpty)
            let again = try store.materialize(plan, to: .file(dir.file("avg2")))
            #expect(!again.fromCache && again.derivedDigest == digest)
            #expect(readFile(dir.file("avg1")) == readFile(dir.file("avg2")))
            #expect(try store.check(full: true).problems.isEmpty)
        }
    }
}
