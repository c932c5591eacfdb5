// Hardening of the query and read paths (issue 9): query values validated before planning
// (item 10), reads that resolve and load in one consistent view while `put --force` replaces
// their inputs (item 13), lazy checkpoints that read under the store lock (item 15), and which
// metric variants a changed step makes stale (item 12). The CLI sides are in
// Tests/python/test_hardening_reads.py.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Float32 bytes of `values`.
private func f32(_ values: [Float]) -> [UInt8] {
    values.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
}

/// Puts a snapshot with one F32 tensor "w" of `count` values (`base + i/1000`) at `run`@`step`.
@discardableResult
private func put(
    _ store: Store, _ dir: TemporaryDirectory, step: Int, base: Float? = nil, count: Int = 3000, force: Bool = false
) throws -> PutReport {
    let b = base ?? Float(step)
    let bytes = makeSafetensors(tensors: [TensorSpec("w", "F32", [count], f32((0..<count).map { b + Float($0 % 1000) / 1000 }))])
    let path = dir.file("s\(step)-\(b).safetensors")
    writeFile(path, bytes)
    return try store.put(from: .file(path), run: "r", step: step, force: force)
}

private func makeStore(_ dir: TemporaryDirectory, steps: [Int], count: Int = 3000, chunkSize: Int = 4096) throws -> Store {
    let path = dir.file("store")
    try Store.initialize(at: path)
    setChunkSize(store: path, chunkSize)
    let store = try Store(path: path)
    for s in steps { try put(store, dir, step: s, count: count) }
    return store
}

/// Hands a (non-Sendable) lazy checkpoint to one reader thread; the test thread does not use it
/// meanwhile.
private final class Handoff: @unchecked Sendable {
    let lazy: LazyCheckpoint
    init(_ lazy: LazyCheckpoint) { self.lazy = lazy }
}

private func code(of body: () throws -> Void) -> CKStoreError.Code? {
    do {
        try body()
        return nil
    } catch let e as CKStoreError {
        return e.code
    } catch {
        return .environment
    }
}

@Suite("Hardening: queries and reads") struct HardeningQueryTests {
    // MARK: - Item 10

    @Test func meanWeightsMustBeFiniteWithAFiniteSumAndMatchTheRefs() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir, steps: [0, 10])
            let refs = ["r@0", "r@10"]
            for weights in [[1e308, 1e308], [1, .infinity], [.nan, 1], [-1, 2], [0, 0], [1, 1, 1]] {
                #expect(code { _ = try store.plan(.mean(refs: refs, weights: weights), run: nil) } == .badInput, "weights \(weights)")
            }
            do {
                _ = try store.plan(.mean(refs: refs, weights: [1e308, 1e308]), run: nil)
            } catch let e as CKStoreError {
                #expect(e.message.contains("weight 2"), "\(e.message)")
            }
            // The CLI parser gives the same answer (exit 1, naming the weight).
            #expect(code { _ = try AverageQuery.parseMean("r@0,r@10", weights: "1e308,1e308") } == .badInput)
            let ok = try store.plan(.mean(refs: refs, weights: [1e307, 3e307]), run: nil)
            #expect(ok.combination == .weighted([0.25, 0.75]))
        }
    }

    @Test func emaDecayAndLAWAParametersAreCheckedForLibraryCallersToo() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir, steps: [0, 10])
            for decay in [Double.nan, .infinity, -0.5, 1] {
                #expect(code { _ = try store.plan(.ema(decay: decay, start: nil, stride: nil, at: 10), run: "r") } == .badInput)
            }
            #expect(code { _ = try store.plan(.lawa(k: 0, stride: 10, at: 10), run: "r") } == .badInput)
            #expect(code { _ = try store.plan(.lawa(k: Int.max, stride: Int.max, at: 10), run: "r") } == .badInput)
        }
    }

    // MARK: - Item 13

    @Test func getOfAStepReplacedAfterItWasResolvedReadsTheNewContent() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir, steps: [0, 10])
            let resolved = try store.resolve(.step(run: "r", step: 10))
            let other = try Store(path: store.path)
            let replaced = try put(other, dir, step: 10, base: 99, force: true)
            let out = dir.file("out.safetensors")
            _ = try store.restore(resolved, to: .file(out))  // the old manifest is gone: resolved again
            #expect(sha256Hex(readFile(out)) == sha256Hex(readFile(dir.file("s10-99.0.safetensors"))))
            if case .replaced = replaced.outcome {} else { Issue.record("expected a replacement") }
        }
    }

    @Test func averageOfAPlanWhoseInputWasReplacedIsPlannedAgainNotNotFound() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir, steps: [0, 10, 20])
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            let other = try Store(path: store.path)
            let replaced = try put(other, dir, step: 20, base: 99, force: true)
            for useCache in [false, true] {
                let report = try store.materialize(plan, to: .file(dir.file("avg-\(useCache).safetensors")), useCache: useCache)
                #expect(report.plan.inputs.map(\.digest) == [plan.inputs[0].digest, replaced.digest])
            }
            let lazy = try store.lazyCheckpoint(plan)
            #expect(lazy.plan.inputs.last?.digest == replaced.digest)
            #expect(try lazy.values(of: "w")[0] == Double(Float((10.0 + 99.0) / 2)))
        }
    }

    // MARK: - Item 15

    @Test func lazyCheckpointHoldsTheSharedLockWhileItReads() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir, steps: [0, 10, 20], count: 400_000, chunkSize: 16384)
            let lazy = try store.lazyCheckpoint(try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "r"))
            let done = LockedValue(false)
            let handoff = Handoff(lazy)
            let reader = Thread {
                for _ in 0..<20 { _ = try? handoff.lazy.bytes(of: "w") }
                done.withLock { $0 = true }
            }
            let probe = open("\(store.path)/lock", O_RDWR)
            defer { close(probe) }
            reader.start()
            var heldSeen = 0
            var probes = 0
            while !done.withLock({ $0 }) {
                probes += 1
                if flock(probe, LOCK_EX | LOCK_NB) == 0 {
                    flock(probe, LOCK_UN)
                } else {
                    heldSeen += 1
                }
                usleep(200)
            }
            #expect(heldSeen > 0, "the store lock was never held during \(probes) probes of 20 lazy reads")
        }
    }

    @Test func rmAndGcRacingLazyReadsNeverBreakARead() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir, steps: [0, 10, 20], count: 200_000, chunkSize: 16384)
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "r")
            let lazy = try store.lazyCheckpoint(plan)
            let expected = try lazy.bytes(of: "w")
            let outcomes = LockedValue<[String]>([])
            let collected = LockedValue(false)
            let handoff = Handoff(lazy)
            let reader = Thread {
                var after = 0
                while after < 3 {
                    if collected.withLock({ $0 }) { after += 1 }
                    do {
                        let bytes = try handoff.lazy.bytes(of: "w")
                        outcomes.withLock { $0.append(bytes == expected ? "ok" : "wrong bytes") }
                    } catch let error as CKStoreError {
                        outcomes.withLock { $0.append("\(error.code): \(error.message)") }
                    } catch {
                        outcomes.withLock { $0.append("other: \(error)") }
                    }
                }
            }
            reader.start()
            usleep(20_000)
            let other = try Store(path: store.path)
            _ = try other.remove([.step(run: "r", step: 20)])
            _ = try other.collectGarbage(run: nil, policy: RetentionPolicy())
            collected.withLock { $0 = true }
            while outcomes.withLock({ $0.count }) < 3 || !reader.isFinished { usleep(1000) }
            let seen = outcomes.withLock { $0 }
            #expect(!seen.contains("wrong bytes"))
            #expect(!seen.contains { $0.hasPrefix("integrity") }, "\(seen.filter { $0 != "ok" }.prefix(3))")
            // After the removal the checkpoint says which input went, as a not-found.
            #expect(seen.last?.hasPrefix("notFound") == true && seen.last?.contains("r@20") == true, "\(seen.last ?? "")")
        }
    }

    // MARK: - Item 12

    @Test func averagedVariantsKnowWhichStepsTheyUsed() {
        let includes = SQLiteMetadataStore.variant
        #expect(includes("lawa-k6-s1000", 7000, 2000))
        #expect(!includes("lawa-k6-s1000", 7000, 1000))
        #expect(!includes("lawa-k6-s1000", 7000, 2500))
        #expect(includes("swa", 7000, 0))
        #expect(includes("swa-from3000-s1000", 7000, 3000))
        #expect(!includes("swa-from3000-s1000", 7000, 2000))
        #expect(!includes("swa-s2000", 7000, 4000))
        #expect(includes("ema-d0.99-s1000", 7000, 4000))
        #expect(includes("ema-d0.99", 7000, 1))
        #expect(!includes("raw", 7000, 1000))
        #expect(!includes("mean", 7000, 1000))
        #expect(!includes("lawa-k6-s1000", 1000, 7000))
    }

    @Test func replacingAStepDropsItsMetricsAndThoseOfAveragesOverIt() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir, steps: [0, 10, 20])
            try store.recordMetrics(run: "r", step: 10, variant: "raw", values: [("val_loss", 2.5)])
            try store.recordMetrics(run: "r", step: 20, variant: "lawa-k2-s10", values: [("val_loss", 2.0)])
            try store.recordMetrics(run: "r", step: 20, variant: "raw", values: [("val_loss", 1.5)])
            let report = try put(store, dir, step: 10, base: 99, force: true)
            #expect(report.droppedMetrics == 2)
            #expect(try store.metrics(run: "r").map { "\($0.step) \($0.variant)" } == ["20 raw"])
            try store.recordMetrics(run: "r", step: 10, variant: "raw", values: [("val_loss", 2.5)])
            let removal = try store.remove([.step(run: "r", step: 10)])
            #expect(removal.droppedMetrics == 1)
            #expect(try store.metrics(run: "r").map(\.step) == [20])
        }
    }
}
