// Averaging queries through the Swift API: planning (which inputs, errors), the lazy
// checkpoint, the derived-snapshot cache, and averaging across inputs cut into chunks of
// different sizes, on every library backend. Bit-exactness against the independent reference is in
// Tests/python/test_averaging.py.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// Float32 bytes of `values`.
private func f32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
}

/// Float32 values of `bytes`.
private func f32Values(_ bytes: [UInt8]) -> [Float] {
    stride(from: 0, to: bytes.count, by: 4).map { i in
        Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
    }
}

/// A store holding run "r" with one snapshot every 10 steps from 0 to `last`: tensor "w" (F32,
/// 3000 values = step + index/1000) and "n" (I64 counter).
private func makeRun(_ dir: TemporaryDirectory, backend: LibraryBackend? = nil, last: Int = 50, chunkSize: Int = 4096) throws -> Store {
    let store: Store
    if let backend {
        precondition(chunkSize == 4096, "library backends make stores with chunk_size 4096")
        store = try backend.makeStore(dir, "store")
    } else {
        let path = dir.file("store")
        try Store.initialize(at: path)
        setChunkSize(store: path, chunkSize)
        store = try Store(path: path)
    }
    for step in stride(from: 0, through: last, by: 10) {
        try putStep(store, dir, step: step)
    }
    return store
}

private func putStep(_ store: Store, _ dir: TemporaryDirectory, step: Int, run: String = "r") throws {
    let values = (0..<3000).map { Float(step) + Float($0) / 1000 }
    let bytes = makeSafetensors(
        tensors: [
            TensorSpec("w", "F32", [3000], f32Bytes(values)),
            TensorSpec("n", "I64", [1], withUnsafeBytes(of: Int64(step).littleEndian) { Array($0) }),
        ], metadata: ["step": "\(step)"])
    let path = dir.file("s\(step)-\(run).safetensors")
    writeFile(path, bytes)
    _ = try store.put(from: .file(path), run: run, step: step)
}

@Suite("Queries") struct QueryTests {
    @Test(arguments: LibraryBackend.all)
    func lawaPlanPicksTheWindowOldestFirst(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try makeRun(dir, backend: backend)
            let plan = try store.plan(.lawa(k: 3, stride: 20, at: 50), run: nil)
            #expect(plan.inputs.map(\.step) == [10, 30, 50])
            #expect(plan.recipe == "lawa run=r k=3 stride=20 at=50")
            #expect(plan.combination == .uniform)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func lawaWithAMissingStepListsItAndTheNearestStoredStep(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try makeRun(dir, backend: backend)
            #expect {
                _ = try store.plan(.lawa(k: 2, stride: 25, at: 50), run: "r")
            } throws: { error in
                guard let e = error as? CKStoreError else { return false }
                return e.code == .notFound && e.message.contains("25 (nearest stored: 20)") && e.message.contains("missing 1 of 2")
            }
        }
    }

    @Test(arguments: LibraryBackend.all)
    func swaSelectsStoredStepsFromStartOnTheStrideGrid(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try makeRun(dir, backend: backend)
            #expect(try store.plan(.swa(start: 20, stride: nil, at: 45), run: "r").inputs.map(\.step) == [20, 30, 40])
            #expect(try store.plan(.swa(start: nil, stride: 20, at: 50), run: "r").inputs.map(\.step) == [10, 30, 50])
            #expect(throws: CKStoreError.self) { try store.plan(.swa(start: 41, stride: nil, at: 45), run: "r") }
        }
    }

    @Test(arguments: LibraryBackend.all)
    func meanNormalizesTheWeights(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try makeRun(dir, backend: backend)
            let query = try AverageQuery.parseMean("r@10,r@20", weights: "1,3")
            let plan = try store.plan(query, run: nil)
            #expect(plan.combination == .weighted([0.25, 0.75]))
            #expect(plan.inputs.map(\.label) == ["r@10", "r@20"])
        }
    }

    @Test(arguments: [
        ("k=0,stride=10", 50), ("k=3", 50), ("k=3,stride=0", 50), ("k=3,stride=10,x=1", 50), ("k=7,stride=10", 50),
        ("k=3,stride=10,k=3", 50), ("stride=10", 50), ("k=a,stride=10", 50),
    ])
    func malformedLAWAParametersAreUsageErrors(text: String, at: Int) {
        #expect {
            _ = try AverageQuery.parseLAWA(text, at: at)
        } throws: { ($0 as? CKStoreError)?.code == .usage }
    }

    @Test func emaNeedsADecayBelowOne() {
        #expect(throws: CKStoreError.self) { try AverageQuery.parseEMA("start=0", at: 10) }
        #expect(throws: CKStoreError.self) { try AverageQuery.parseEMA("decay=1", at: 10) }
        #expect(throws: CKStoreError.self) { try AverageQuery.parseEMA("decay=-0.1", at: 10) }
        #expect((try? AverageQuery.parseEMA("decay=0.9,stride=10", at: 10)) == .ema(decay: 0.9, start: nil, stride: 10, at: 10))
    }

    @Test(arguments: LibraryBackend.all)
    func theRunMayBeOmittedOnlyWhenTheStoreHoldsOne(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try makeRun(dir, backend: backend, last: 10)
            #expect(try store.runForQuery(nil) == "r")
            try putStep(store, dir, step: 0, run: "other")
            #expect {
                _ = try store.runForQuery(nil)
            } throws: { error in
                guard let e = error as? CKStoreError else { return false }
                return e.code == .usage && e.message.contains("other") && e.message.contains("r")
            }
        }
    }

    @Test(arguments: LibraryBackend.all)
    func lazyCheckpointReadsOneTensorExactlyAsGetWritesIt(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try makeRun(dir, backend: backend)
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 50), run: "r")
            let lazy = try store.lazyCheckpoint(plan)
            #expect(lazy.tensors.map(\.name).sorted() == ["n", "w"])
            #expect(lazy.copiedTensors == ["n"])
            let values = try lazy.values(of: "w")
            #expect(values.count == 3000)
            for i in [0, 1, 1500, 2999] {
                let expected = Float(
                    (Double(Float(30) + Float(i) / 1000) + Double(Float(40) + Float(i) / 1000) + Double(Float(50) + Float(i) / 1000)) / 3)
                #expect(Float(values[i]) == expected, "element \(i)")
            }
            // Reading lazily stores nothing.
            #expect(try store.cachedResult(for: plan) == nil)
            // The full materialization holds the same bytes for the tensor.
            let out = dir.file("lawa.safetensors")
            _ = try store.materialize(plan, to: .file(out), useCache: false)
            let file = Array(readFile(out))
            let headerLength = try SafetensorsHeader.headerLength(prefix: file.prefix(8), fileSize: file.count)
            let header = try SafetensorsHeader.parse(headerBytes: Array(file[8..<(8 + headerLength)]))
            let w = header.tensor(named: "w")!
            let dataStart = 8 + header.headerBytes.count
            #expect(Array(file[(dataStart + w.dataStart)..<(dataStart + w.dataEnd)]) == (try lazy.bytes(of: "w")))
            #expect(header.metadata?.first { $0.key == "ckstore.recipe" }?.value == plan.recipe)
            #expect(header.metadata?.first { $0.key == "step" }?.value == "50")
        }
    }

    @Test(arguments: LibraryBackend.all)
    func materializeCachesAndTheCacheKeyFollowsTheInputs(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try makeRun(dir, backend: backend).cachingFirstRequests()
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 50), run: "r")
            let first = try store.materialize(plan, to: .file(dir.file("a")))
            #expect(!first.fromCache && first.derivedDigest != nil)
            let second = try store.materialize(plan, to: .file(dir.file("b")))
            #expect(second.fromCache && second.derivedDigest == first.derivedDigest)
            #expect(readFile(dir.file("a")) == readFile(dir.file("b")))
            #expect(try store.derivedSnapshots(run: "r").map(\.recipe) == [plan.recipe])
            // Replace an input: same recipe, new key, recomputed.
            let path = dir.file("s0-r.safetensors")
            _ = try store.put(from: .file(path), run: "r", step: 50, force: true)
            let replanned = try store.plan(.lawa(k: 2, stride: 10, at: 50), run: "r")
            #expect(replanned.recipe == plan.recipe && replanned.cacheKey != plan.cacheKey)
            let third = try store.materialize(replanned, to: .file(dir.file("c")))
            #expect(!third.fromCache)
            #expect(readFile(dir.file("c")) != readFile(dir.file("a")))
        }
    }

    @Test func inputsCutIntoDifferentChunkSizesAverageTheSameAsEqualChunking() throws {
        try withTemporaryDirectory { dir in
            // The 12,000-byte tensor is cut 4096+4096+3808 at steps 0–20 and 10000+2000 at steps
            // 30–50; the output is cut 6000+6000: output chunks straddle input chunk boundaries.
            let store = try makeRun(dir, last: 20, chunkSize: 4096)
            setChunkSize(store: store.path, 10000)
            let second = try Store(path: store.path)
            for step in [30, 40, 50] { try putStep(second, dir, step: step) }
            setChunkSize(store: store.path, 6000)
            let mixed = try Store(path: store.path)
            let plan = try mixed.plan(.swa(start: nil, stride: nil, at: 50), run: "r")
            let values = try mixed.lazyCheckpoint(plan).values(of: "w")
            for i in [0, 1023, 1024, 1250, 2999] {
                var acc = 0.0
                for step in stride(from: 0, through: 50, by: 10) { acc += Double(Float(step) + Float(i) / 1000) }
                #expect(Float(values[i]) == Float(acc / 6), "element \(i)")
            }
        }
    }

    @Test func packedSubByteFloatsCannotBeAveragedAndTheErrorNamesTheTensor() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            let store = try Store(path: path)
            for step in [0, 1] {
                let file = dir.file("f4-\(step)")
                writeFile(file, makeSafetensors(tensors: [TensorSpec("packed", "F4", [8], [1, 2, 3, 4])]))
                _ = try store.put(from: .file(file), run: "q", step: step)
            }
            let plan = try store.plan(.lawa(k: 2, stride: 1, at: 1), run: "q")
            #expect {
                _ = try store.materialize(plan, to: nil, useCache: false)
            } throws: { error in
                guard let e = error as? CKStoreError else { return false }
                return e.code == .badInput && e.message.contains("'packed'") && e.message.contains("F4")
            }
        }
    }

    @Test func piecesCoverTheRequestedRangeAcrossChunkBoundaries() {
        func chunk(_ size: Int) -> ChunkRef {
            ChunkRef(hash: SHA256Digest.hash([UInt8(size & 0xff)]), rawSize: size, storedSize: size + 32)
        }
        let chunks = [chunk(100), chunk(100), chunk(50)]
        let p = pieces(of: chunks, start: 80, length: 150)
        #expect(p.map(\.offset) == [80, 0, 0])
        #expect(p.map(\.length) == [20, 100, 30])
        #expect(pieces(of: chunks, start: 0, length: 100).map(\.length) == [100])
        #expect(pieces(of: chunks, start: 200, length: 50).map(\.offset) == [0])
    }
}
