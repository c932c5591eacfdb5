// The (k, ν) sweep through the Swift API: every result bit-identical to the same recipe
// materialized alone (float dtypes of random bits, NaN and Inf included; integer tensors
// copied; inputs cut into chunks of different sizes), cached as the same derived snapshot the
// single query stores, cells lacking inputs with their reasons, and argument checks.
// Tests/python/test_sweep.py covers the command line, CMD and the heatmap.

import Foundation
import Synchronization
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// Puts run "r" at `steps`: F32, BF16, F16 and F8_E4M3 tensors of random bits (different at
/// each step) and an I64 tensor.
private func putSteps(_ store: Store, _ dir: TemporaryDirectory, steps: [Int]) throws {
    for step in steps {
        var rng = SplitMix64(seed: UInt64(step) &+ 17)
        let bytes = makeSafetensors(
            tensors: [
                TensorSpec("a", "F32", [2100], rng: &rng),
                TensorSpec("b", "BF16", [3000], rng: &rng),
                TensorSpec("c", "F16", [999], rng: &rng),
                TensorSpec("d", "F8_E4M3", [5000], rng: &rng),
                TensorSpec("n", "I64", [4], rng: &rng),
            ], metadata: ["step": "\(step)"])
        let path = dir.file("s\(step).safetensors")
        writeFile(path, bytes)
        _ = try store.put(from: .file(path), run: "r", step: step)
    }
}

private func readAll(_ path: String) -> [UInt8] {
    Array(FileManager.default.contents(atPath: path) ?? Data())
}

/// An in-memory blob store that counts the reads of each blob.
private final class CountingBlobStore: BlobStore {
    let inner = InMemoryBlobStore(name: "counting")
    let reads = Mutex([SHA256Digest: Int]())

    var properties: BlobStoreProperties { inner.properties }
    var location: String { inner.location }
    func put(_ id: SHA256Digest, bytes: UnsafeRawBufferPointer, isValid: (UnsafeRawBufferPointer) -> Bool) throws -> (
        isNew: Bool, size: Int
    ) { try inner.put(id, bytes: bytes, isValid: isValid) }
    func read(_ id: SHA256Digest, into buffer: inout ByteBuffer) throws -> Int {
        reads.withLock { $0[id, default: 0] += 1 }
        return try inner.read(id, into: &buffer)
    }
    func withBytes<T>(of id: SHA256Digest, scratch: inout ByteBuffer, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        reads.withLock { $0[id, default: 0] += 1 }
        return try inner.withBytes(of: id, scratch: &scratch, body)
    }
    func readPrefix(_ id: SHA256Digest, count: Int) throws -> (bytes: [UInt8], size: Int) { try inner.readPrefix(id, count: count) }
    func size(of id: SHA256Digest) throws -> Int? { try inner.size(of: id) }
    func state(of id: SHA256Digest) throws -> BlobEntryState { try inner.state(of: id) }
    func remove(_ id: SHA256Digest) throws { try inner.remove(id) }
    func forEach(_ body: (SHA256Digest, Int) throws -> Void) throws { try inner.forEach(body) }
    func listing() throws -> BlobListing { try inner.listing() }
    func removeTemporary(_ leftover: BlobListing.Temporary) throws -> Bool { try inner.removeTemporary(leftover) }
    func quarantine(_ id: SHA256Digest) throws -> String? { try inner.quarantine(id) }
    func quarantined() throws -> (count: Int, location: String) { try inner.quarantined() }
    func namespaceProblem() throws -> String? { try inner.namespaceProblem() }
    func syncNamespace() throws { try inner.syncNamespace() }
}

@Suite("Sweep") struct SweepTests {
    @Test func eachInputChunkIsReadOnceForAllPairs() throws {
        try withTemporaryDirectory { dir in
            var configuration = StoreConfiguration.default
            configuration.chunkSize = 4096
            let blobs = CountingBlobStore()
            let store = Store(
                backends: StoreBackends(
                    location: "memory://counting", configuration: configuration, metadata: InMemoryMetadataStore(), blobs: blobs,
                    lock: InMemoryStoreLock()))
            try putSteps(store, dir, steps: Array(stride(from: 0, through: 120, by: 10)))
            let plans = try store.planSweep(run: "r", ks: [2, 3, 5], strides: [10, 20, 30], at: [120]).cells.compactMap(\.plan)
            #expect(plans.count == 9)
            blobs.reads.withLock { $0 = [:] }
            _ = try store.materializeSweep(plans, to: plans.map { _ in nil }, useCache: false)
            let reads = blobs.reads.withLock { $0 }
            // The 9 distinct inputs' float chunks, and the newest input's integer chunk (copied).
            var expected = Set<SHA256Digest>()
            for step in [0, 30, 40, 60, 80, 90, 100, 110, 120] {
                let manifest = try store.manifest(of: try store.resolve(.step(run: "r", step: step)))
                for tensor in manifest.tensors where tensor.info.dtype.isFloatingPoint || step == 120 {
                    expected.formUnion(tensor.chunks.map(\.hash))
                }
            }
            #expect(Set(reads.keys) == expected)
            #expect(reads.values.allSatisfy { $0 == 1 }, "some chunk was read more than once: \(reads.values.sorted().suffix(3))")
            // The same nine recipes one by one read the shared inputs again.
            blobs.reads.withLock { $0 = [:] }
            for plan in plans { _ = try store.materialize(plan, to: nil, useCache: false) }
            #expect(blobs.reads.withLock { $0.values.reduce(0, +) } > reads.values.reduce(0, +) * 2)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func sweepResultsAreBitIdenticalToSingleQueriesAndCachedUnderTheirKeys(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try backend.makeStore(dir, "store").cachingFirstRequests()
            try putSteps(store, dir, steps: Array(stride(from: 0, through: 120, by: 10)))
            // A second store with the same snapshots, where each recipe is materialized alone.
            let alone = try backend.makeStore(dir, "alone").cachingFirstRequests()
            try putSteps(alone, dir, steps: Array(stride(from: 0, through: 120, by: 10)))
            let plan = try store.planSweep(run: "r", ks: [1, 2, 3, 5], strides: [10, 20, 30], at: [120])
            let plans = plan.cells.compactMap(\.plan)
            #expect(plans.count == 12)
            let files = plans.indices.map { dir.file("sweep-\($0)") }
            let reports = try store.materializeSweep(plans, to: files.map { .file($0) })
            for (i, p) in plans.enumerated() {
                #expect(!reports[i].fromCache)
                let single = try alone.materialize(try alone.plan(p.query, run: "r"), to: .file(dir.file("alone-\(i)")))
                let same = readAll(files[i]) == readAll(dir.file("alone-\(i)"))
                #expect(same, "\(p.recipe): the sweep's bytes differ from the single query's")
                #expect(reports[i].derivedDigest != nil && reports[i].derivedDigest == single.derivedDigest, "\(p.recipe)")
                let again = try store.materialize(p, to: .file(dir.file("again-\(i)")))
                #expect(again.fromCache, "\(p.recipe) is not a cache hit after the sweep")
                let cached = readAll(dir.file("again-\(i)")) == readAll(files[i])
                #expect(cached, "\(p.recipe): the cached result differs")
            }
            // A second sweep serves every result from the cache.
            let second = try store.materializeSweep(plans, to: plans.map { _ in nil })
            #expect(second.allSatisfy { $0.fromCache })
        }
    }

    @Test func inputsCutIntoDifferentChunkSizesGiveTheSameBytesAsSingleQueries() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            setChunkSize(store: path, 4096)
            try putSteps(try Store(path: path), dir, steps: [0, 10, 20, 30])
            setChunkSize(store: path, 10000)
            try putSteps(try Store(path: path), dir, steps: [40, 50, 60])
            setChunkSize(store: path, 6000)  // output segments straddle input chunk boundaries
            let store = try Store(path: path)
            let plans = try store.planSweep(run: "r", ks: [2, 4, 7], strides: [10, 20], at: [60]).cells.compactMap(\.plan)
            #expect(plans.count == 5)  // k=7, stride 20 reaches below 0
            let reports = try store.materializeSweep(plans, to: plans.indices.map { .file(dir.file("s\($0)")) }, useCache: false)
            #expect(reports.allSatisfy { $0.derivedDigest == nil })
            for (i, p) in plans.enumerated() {
                _ = try store.materialize(p, to: .file(dir.file("one\(i)")), useCache: false)
                let same = readAll(dir.file("s\(i)")) == readAll(dir.file("one\(i)"))
                #expect(same, "\(p.recipe): the sweep's bytes differ from the single query's")
            }
            #expect(try store.derivedSnapshots(run: nil).isEmpty)
        }
    }

    @Test func cellsLackingInputsSayWhy() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            let store = try Store(path: path)
            try putSteps(store, dir, steps: [0, 100, 200, 400, 500])  // 300 missing
            let plan = try store.planSweep(run: "r", ks: [2, 3, 6], strides: [50, 100], at: [500])
            func reason(_ k: Int, _ stride: Int) -> String? {
                plan.cells.first { $0.combination == SweepCombination(k: k, stride: stride) }?.missingReason
            }
            #expect(reason(2, 100) == nil)
            #expect(reason(3, 100) == "missing 1 of 3 inputs: step 300 not stored")
            #expect(reason(2, 50) == "missing 1 of 2 inputs: step 450 off the run's grid (snapshots every 100 steps from 0)")
            #expect(reason(6, 100) == "missing 1 of 6 inputs: step 300 not stored")
            #expect(
                reason(6, 50)
                    == "missing 4 of 6 inputs: steps 250, 350, 450 off the run's grid (snapshots every 100 steps from 0); step 300 not stored"
            )
            #expect(plan.cells.count == 6 && plan.cells.filter { $0.plan != nil }.count == 1)
            #expect(plan.inputSteps(at: 500) == [400, 500])
            #expect {
                _ = try store.planSweep(run: "r", ks: [2], strides: [100], at: [300])
            } throws: { error in
                guard let e = error as? CKStoreError else { return false }
                return e.code == .usage && e.message.contains("r@300 is not a stored step (missing; nearest stored: 200 and 400)")
            }
            #expect {
                _ = try store.planSweep(run: "r", ks: [2], strides: [100], at: [450])
            } throws: { error in
                (error as? CKStoreError)?.message.contains("off the run's grid, snapshots every 100 steps from 0") == true
            }
        }
    }

    @Test(arguments: [
        ([0], [10], [10]), ([10_001], [10], [10]), ([2, 2], [10], [10]), ([2], [0], [10]), ([2], [10, 10], [10]),
        ([2], [10], [-1]), ([2], [10], [10, 10]), ([], [10], [10]), ([2], [], [10]), ([2], [10], []),
        (Array(1...17), Array(1...16), [10]),
    ])
    func badNumbersAreUsageErrors(_ ks: [Int], _ strides: [Int], _ steps: [Int]) {
        #expect {
            try SweepPlan.validate(ks: ks, strides: strides, steps: steps)
        } throws: { error in
            (error as? CKStoreError)?.code == .usage
        }
    }

    @Test func plansThatAreNotLAWAWindowsEndingAtOneStepAreRefused() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            let store = try Store(path: path)
            try putSteps(store, dir, steps: [0, 10, 20])
            let a = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            let b = try store.plan(.lawa(k: 2, stride: 10, at: 10), run: "r")
            #expect {
                _ = try store.materializeSweep([a, b], to: [nil, nil])
            } throws: { error in
                (error as? CKStoreError)?.code == .usage
            }
            let mean = try store.plan(.mean(refs: ["r@10", "r@20"], weights: nil), run: nil)
            #expect {
                _ = try store.materializeSweep([a, mean], to: [nil, nil])
            } throws: { error in
                (error as? CKStoreError)?.code == .usage
            }
            #expect {
                _ = try store.materializeSweep([a], to: [nil, nil])
            } throws: { error in
                (error as? CKStoreError)?.code == .usage
            }
            #expect(try store.derivedSnapshots(run: nil).isEmpty)
        }
    }

    @Test func aDamagedCachedResultIsDroppedAndRecomputed() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            setChunkSize(store: path, 4096)
            cacheFirstRequests(store: path)
            let store = try Store(path: path)
            try putSteps(store, dir, steps: [0, 10, 20])
            let plans = try store.planSweep(run: "r", ks: [2, 3], strides: [10], at: [20]).cells.compactMap(\.plan)
            let first = try store.materializeSweep(plans, to: [.file(dir.file("x0")), .file(dir.file("x1"))])
            // Damage every blob of the k=3 result that no other snapshot shares.
            let manifest = try store.manifest(of: ResolvedRef(digest: try #require(first[1].derivedDigest), snapshot: nil))
            let other = try store.manifest(of: ResolvedRef(digest: try #require(first[0].derivedDigest), snapshot: nil))
            let shared = Set(other.tensors.flatMap(\.chunks).map(\.hash))
            for chunk in manifest.tensors.flatMap(\.chunks) where !shared.contains(chunk.hash) {
                LibraryBackend.sqliteLocal.damageBlob(store, chunk.hash)
            }
            let second = try store.materializeSweep(plans, to: [.file(dir.file("y0")), .file(dir.file("y1"))])
            #expect(second[0].fromCache)
            #expect(!second[1].fromCache && second[1].cacheNotes.count == 1)
            let same = readAll(dir.file("y1")) == readAll(dir.file("x1"))
            #expect(same, "the recomputed result differs")
            #expect(try store.materialize(plans[1], to: nil).fromCache)
        }
    }
}
