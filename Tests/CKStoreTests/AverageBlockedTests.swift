// The blocked averaging path (AverageWorker+Blocked.swift) against the plain one: every output
// byte must be what whole-chunk accumulation gives (start with the oldest input, add the others
// in order, one division, one rounding), for every float dtype, uniform / weighted / EMA
// combinations, windows smaller than, equal to and larger than one decode group, tensors of
// several chunks whose last chunk is short, and blocks that end inside a chunk. The reference
// is computed here on whole tensors with the public ChunkAccumulator kernels, so it shares no
// blocking or chunking with the engine. Inputs cut into different chunk sizes take the plain
// path; the same reference holds both paths to the same bytes.

import Foundation
import Testing

@testable import CKStore

@Suite("Blocked averaging path") struct AverageBlockedTests {
    /// Tensors of every averaged dtype: sizes chosen so that a tensor spans several 96 KiB
    /// chunks, a chunk holds several 8192-lane blocks, and the last block and chunk are short.
    static let specs: [(name: String, dtype: DType, elements: Int)] = [
        ("f32", .f32, 50_001), ("bf16", .bf16, 60_003), ("f16", .f16, 30_001), ("f64", .f64, 25_003),
        ("c64", .c64, 20_001), ("e4m3", .f8E4M3, 100_003), ("tiny", .f32, 3), ("f64s", .f64, 30_001),
    ]

    /// The raw bytes of every tensor at `step` (random bit patterns: NaNs with payloads,
    /// infinities, subnormals and signed zeros included).
    static func tensors(step: Int) -> [String: [UInt8]] {
        var rng = SplitMix64(seed: UInt64(step) &* 0x9E37_79B9 &+ 7)
        var out: [String: [UInt8]] = [:]
        for spec in specs {
            var bytes = rng.bytes(spec.elements * spec.dtype.bitSize / 8)
            // Mostly finite, near values, as checkpoints are; raw bit patterns in a few places.
            if spec.name == "f32" {
                for i in stride(from: 0, to: spec.elements, by: 1) where i % 97 != 0 {
                    let v = Float(Double(i % 1000) / 1000 + Double(step) / 7)
                    withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.replaceSubrange((i * 4)..<(i * 4 + 4), with: $0) }
                }
            }
            if spec.name == "f64s" {
                for i in stride(from: 0, to: spec.elements, by: 1) where i % 89 != 0 {
                    let v = Double(i % 777) / 777 - Double(step) / 3
                    withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.replaceSubrange((i * 8)..<(i * 8 + 8), with: $0) }
                }
            }
            out[spec.name] = bytes
        }
        return out
    }

    /// A store of run "r", steps 0, 10, …, `last`, with chunk size `chunkSize` (and
    /// `laterChunkSize` from step `switchAt` on, so those inputs are cut differently).
    static func makeStore(_ dir: TemporaryDirectory, last: Int, chunkSize: Int, laterChunkSize: Int? = nil, switchAt: Int = 0)
        throws -> Store
    {
        let path = dir.file("store")
        try Store.initialize(at: path)
        setChunkSize(store: path, chunkSize)
        var store = try Store(path: path)
        for step in stride(from: 0, through: last, by: 10) {
            if let later = laterChunkSize, step == switchAt {
                setChunkSize(store: path, later)
                store = try Store(path: path)
            }
            let data = tensors(step: step)
            let file = makeSafetensors(
                tensors: specs.map { TensorSpec($0.name, $0.dtype.rawValue, [$0.elements], data[$0.name]!) }
                    + [TensorSpec("count", "I64", [1], withUnsafeBytes(of: Int64(step).littleEndian) { Array($0) })])
            let input = dir.file("s\(step).safetensors")
            writeFile(input, file)
            _ = try store.put(from: .file(input), run: "r", step: step)
        }
        if laterChunkSize != nil {
            setChunkSize(store: path, chunkSize)
            store = try Store(path: path)
        }
        return store
    }

    /// The expected bytes of tensor `name` for `plan`: the contract's operations on the whole
    /// tensor at once.
    static func reference(_ plan: QueryPlan, _ spec: (name: String, dtype: DType, elements: Int)) throws -> [UInt8] {
        let inputs = plan.inputs.map { tensors(step: $0.step!)[spec.name]! }
        let lanes = try ChunkAccumulator.laneCount(byteCount: inputs[0].count, dtype: spec.dtype)
        var acc = [Double](repeating: 0, count: lanes)
        try acc.withUnsafeMutableBufferPointer { a in
            for (i, input) in inputs.enumerated() {
                try input.withUnsafeBytes { x in
                    switch plan.combination {
                    case .uniform:
                        if i == 0 {
                            try ChunkAccumulator.start(from: x, dtype: spec.dtype, into: a)
                        } else {
                            try ChunkAccumulator.add(x, dtype: spec.dtype, into: a)
                        }
                    case .weighted(let w):
                        if i == 0 {
                            try ChunkAccumulator.start(from: x, dtype: spec.dtype, into: a, weight: w[0])
                        } else {
                            try ChunkAccumulator.add(x, dtype: spec.dtype, into: a, weight: w[i])
                        }
                    case .ema(let d):
                        if i == 0 {
                            try ChunkAccumulator.start(from: x, dtype: spec.dtype, into: a)
                        } else {
                            try ChunkAccumulator.emaStep(x, dtype: spec.dtype, into: a, decay: d)
                        }
                    }
                }
            }
            if case .uniform = plan.combination { ChunkAccumulator.finishMean(a, divisor: Double(inputs.count)) }
        }
        var out = [UInt8](repeating: 0, count: inputs[0].count)
        try acc.withUnsafeBufferPointer { a in
            try out.withUnsafeMutableBytes { try ChunkAccumulator.encode(a, dtype: spec.dtype, into: $0) }
        }
        return out
    }

    /// Materializes `plan` without the cache and checks every tensor against `reference`.
    static func check(_ store: Store, _ plan: QueryPlan, _ dir: TemporaryDirectory, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        let out = dir.file("out-\(UUID().uuidString).safetensors")
        _ = try store.materialize(plan, to: .file(out), useCache: false)
        let file = Array(readFile(out))
        let headerLength = try SafetensorsHeader.headerLength(prefix: file.prefix(8), fileSize: file.count)
        let header = try SafetensorsHeader.parse(headerBytes: Array(file[8..<(8 + headerLength)]))
        let dataStart = 8 + header.headerBytes.count
        for spec in specs {
            let t = header.tensor(named: spec.name)!
            let got = Array(file[(dataStart + t.dataStart)..<(dataStart + t.dataEnd)])
            let want = try reference(plan, spec)
            let first = zip(got, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(
                got.count == want.count && first == nil, "\(plan.recipe): tensor \(spec.name) differs from byte \(first ?? -1)",
                sourceLocation: sourceLocation)
        }
        let count = header.tensor(named: "count")!
        let newest = plan.inputs.last!.step!
        #expect(
            Array(file[(dataStart + count.dataStart)..<(dataStart + count.dataEnd)])
                == withUnsafeBytes(of: Int64(newest).littleEndian) { Array($0) }, sourceLocation: sourceLocation)
    }

    @Test(arguments: [1, 2, 5, 6, 7, 12, 13])
    func lawaMatchesWholeTensorAccumulation(k: Int) throws {
        try withTemporaryDirectory { dir in
            let store = try Self.makeStore(dir, last: 120, chunkSize: 96 << 10)
            try Self.check(store, try store.plan(.lawa(k: k, stride: 10, at: 120), run: "r"), dir)
        }
    }

    @Test func theStructuredFloatInputsAreStoredWithTheHybridFilterSoTheirPlanesAreAveraged() throws {
        try withTemporaryDirectory { dir in
            // Without this the tests above could pass on the contiguous path alone.
            let store = try Self.makeStore(dir, last: 0, chunkSize: 96 << 10)
            let manifest = try store.manifest(of: try store.resolve(.step(run: "r", step: 0)))
            for name in ["f32", "f64s"] {
                let hash = manifest.tensors.first { $0.info.name == name }!.chunks[0].hash
                let hex = hash.hex
                let file = Array(readFile("\(store.path)/objects/\(hex.prefix(2))/\(hex)"))
                let decoded = file.withUnsafeBytes { BlobHeader.decode($0, fileSize: file.count) }
                guard case .success(let header) = decoded else {
                    Issue.record("\(name): the blob header does not decode")
                    continue
                }
                #expect(header.codec == .lz4 && header.filter == .hybridShuffle, "\(name): \(header)")
            }
        }
    }

    @Test func weightedMeanAndEMAMatchWholeTensorAccumulation() throws {
        try withTemporaryDirectory { dir in
            let store = try Self.makeStore(dir, last: 80, chunkSize: 96 << 10)
            let refs = (0...8).map { "r@\($0 * 10)" }
            let weighted = try store.plan(.mean(refs: refs, weights: (1...9).map { Double($0) * 0.37 }), run: nil)
            guard case .weighted = weighted.combination else {
                Issue.record("expected weights, got \(weighted.combination)")
                return
            }
            try Self.check(store, weighted, dir)
            try Self.check(store, try store.plan(.mean(refs: Array(refs.prefix(4)), weights: [3, 1, 4, 1]), run: nil), dir)
            let ema = try store.plan(.ema(decay: 0.9, start: nil, stride: 10, at: 80), run: "r")
            guard case .ema = ema.combination else {
                Issue.record("expected an EMA, got \(ema.combination)")
                return
            }
            try Self.check(store, ema, dir)
        }
    }

    @Test(arguments: [4, 8])
    func inputsChunkedDifferentlyTakeThePlainPathAndGiveTheSameBytes(k: Int) throws {
        try withTemporaryDirectory { dir in
            // Steps 0–30 cut at 96 KiB, 40–80 at 40 000 bytes, the output at 96 KiB: the later
            // inputs' pieces straddle chunks, so those segments take the plain path.
            let store = try Self.makeStore(dir, last: 80, chunkSize: 96 << 10, laterChunkSize: 40_000, switchAt: 40)
            try Self.check(store, try store.plan(.lawa(k: k, stride: 10, at: 80), run: "r"), dir)
        }
    }

    @Test func withSHA256VerificationOnReadTheContiguousDecodeGivesTheSameBytes() throws {
        try withTemporaryDirectory { dir in
            let store = try Self.makeStore(dir, last: 60, chunkSize: 96 << 10)
            store.forceSHA256Verification = true
            try Self.check(store, try store.plan(.lawa(k: 7, stride: 10, at: 60), run: "r"), dir)
        }
    }

    @Test func aDamagedPayloadOfAPlanarInputIsAnIntegrityErrorAndLeavesNoOutput() throws {
        try withTemporaryDirectory { dir in
            let store = try Self.makeStore(dir, last: 50, chunkSize: 96 << 10)
            let plan = try store.plan(.lawa(k: 6, stride: 10, at: 50), run: "r")
            let manifest = try store.manifest(of: try store.resolve(.step(run: "r", step: 30)))
            let hex = manifest.tensors.first { $0.info.name == "f32" }!.chunks[0].hash.hex
            let path = "\(store.path)/objects/\(hex.prefix(2))/\(hex)"
            var file = Array(readFile(path))
            file[file.count - 100] ^= 0x40
            writeFile(path, file)
            let out = dir.file("out.safetensors")
            #expect {
                _ = try store.materialize(plan, to: .file(out), useCache: false)
            } throws: { error in
                guard let e = error as? CKStoreError else { return false }
                return e.code == .integrity && e.message.contains("r@30") && e.message.contains("'f32'")
                    && e.message.contains(hex) && e.message.contains("checksum")
            }
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    @Test func aMissingInputBlobIsAnIntegrityErrorNamingTheInput() throws {
        try withTemporaryDirectory { dir in
            let store = try Self.makeStore(dir, last: 50, chunkSize: 96 << 10)
            let plan = try store.plan(.lawa(k: 6, stride: 10, at: 50), run: "r")
            // Remove one blob of the oldest input's "f32" tensor.
            let manifest = try store.manifest(of: try store.resolve(.step(run: "r", step: 0)))
            let hash = manifest.tensors.first { $0.info.name == "f32" }!.chunks[1].hash
            let hex = hash.hex
            try FileManager.default.removeItem(atPath: "\(store.path)/objects/\(hex.prefix(2))/\(hex)")
            let out = dir.file("out.safetensors")
            #expect {
                _ = try store.materialize(plan, to: .file(out), useCache: false)
            } throws: { error in
                guard let e = error as? CKStoreError else { return false }
                return e.code == .integrity && e.message.contains("r@0") && e.message.contains("f32") && e.message.contains(hex)
            }
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }
}
