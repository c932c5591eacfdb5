import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

private typealias Fx = NumericsFixtures

// MARK: - Helpers

extension NumericsFixtures {

    static let averagedDTypes: [DType] = [
        .f64, .f32, .f16, .bf16, .f8E5M2, .f8E4M3, .f8E4M3FNUZ, .f8E5M2FNUZ, .f8E8M0, .c64,
    ]

    /// Raw little-endian random data for `count` elements of `dtype`: uniformly random codes for
    /// the 8/16-bit types (every special value shows up), random bit patterns and ordinary
    /// normals for F32/F64/C64. With `negativeNaNs`, every NaN input is made negative (and F64
    /// NaNs canonical), so that an addition of two NaNs cannot depend on operand order.
    static func randomRaw(_ dtype: DType, count: Int, _ rng: inout SplitMix64, negativeNaNs: Bool = true) -> [UInt8] {
        let lanes = dtype == .c64 ? 2 * count : count
        let w = FloatCodec.laneWidth(dtype)
        var out = [UInt8](repeating: 0, count: lanes * w)
        for i in 0..<lanes {
            var code: UInt64
            switch dtype {
            case .f64:
                code = i % 4 == 0 ? rng.next() : Double.random(in: -3...3, using: &rng).bitPattern
                if negativeNaNs && Double(bitPattern: code).isNaN { code = 0xFFF8_0000_0000_0000 }
            case .f32, .c64:
                code =
                    i % 4 == 0
                    ? rng.next() & 0xFFFF_FFFF
                    : UInt64(Float(Double.random(in: -3...3, using: &rng)).bitPattern)
                if negativeNaNs && Float(bitPattern: UInt32(code)).isNaN { code |= 0x8000_0000 }
            case .f16:
                code = rng.next() & 0xFFFF
                if negativeNaNs && FloatCodec.decodeF16(UInt16(code)).isNaN { code |= 0x8000 }
            case .bf16:
                code = rng.next() & 0xFFFF
                if negativeNaNs && FloatCodec.decodeBF16(UInt16(code)).isNaN { code |= 0x8000 }
            default:
                code = rng.next() & 0xFF
                if negativeNaNs && FloatCodec.decodeF8(UInt8(code), dtype).isNaN && dtype != .f8E8M0 {
                    code |= 0x80
                }
            }
            for b in 0..<w { out[i * w + b] = UInt8(truncatingIfNeeded: code >> UInt64(8 * b)) }
        }
        return out
    }

    /// Scalar decode through the exact general path (independent of the kernels' fast paths).
    static func slowDecode(_ raw: [UInt8], _ dtype: DType) -> [Double] {
        let w = FloatCodec.laneWidth(dtype)
        return (0..<(raw.count / w)).map { i in
            var code: UInt64 = 0
            for b in 0..<w { code |= UInt64(raw[i * w + b]) << UInt64(8 * b) }
            switch dtype {
            case .f64: return Double(bitPattern: code)
            case .c64: return Double(bitPattern: FloatCodec.decodeBits(code, .f32))
            default: return Double(bitPattern: FloatCodec.decodeBits(code, formatOf(dtype)))
            }
        }
    }

    /// Scalar encode through the exact general path.
    static func slowEncode(_ values: [Double], _ dtype: DType) -> [UInt8] {
        let w = FloatCodec.laneWidth(dtype)
        var out: [UInt8] = []
        for v in values {
            let code: UInt64
            switch dtype {
            case .f64: code = v.bitPattern
            case .c64: code = FloatCodec.encodeBits(v, .f32)
            default: code = FloatCodec.encodeBits(v, formatOf(dtype))
            }
            for b in 0..<w { out.append(UInt8(truncatingIfNeeded: code >> UInt64(8 * b))) }
        }
        return out
    }

    enum Averaging {
        case mean
        case weighted([Double])
        case ema(Double)
    }

    /// Runs the kernels over whole inputs, optionally in chunks of `chunk` elements.
    static func kernelAverage(_ inputs: [[UInt8]], _ dtype: DType, _ how: Averaging, chunk: Int? = nil) throws
        -> [UInt8]
    {
        let w = FloatCodec.laneWidth(dtype)
        let granule = dtype.bitSize / 8
        let totalBytes = inputs[0].count
        let step = (chunk ?? (totalBytes / granule)) * granule
        var out = [UInt8](repeating: 0xAA, count: totalBytes)
        let normalized: [Double]
        if case .weighted(let ws) = how { normalized = ChunkAccumulator.normalizedWeights(ws) } else { normalized = [] }
        var lo = 0
        while lo < totalBytes {
            let hi = min(lo + step, totalBytes)
            let lanes = (hi - lo) / w
            var acc = [Double](repeating: .nan, count: lanes)
            try acc.withUnsafeMutableBufferPointer { a in
                for (k, input) in inputs.enumerated() {
                    try input.withUnsafeBytes { all in
                        let bytes = UnsafeRawBufferPointer(rebasing: all[lo..<hi])
                        switch how {
                        case .mean:
                            if k == 0 {
                                try ChunkAccumulator.start(from: bytes, dtype: dtype, into: a)
                            } else {
                                try ChunkAccumulator.add(bytes, dtype: dtype, into: a)
                            }
                        case .weighted:
                            if k == 0 {
                                try ChunkAccumulator.start(from: bytes, dtype: dtype, into: a, weight: normalized[0])
                            } else {
                                try ChunkAccumulator.add(bytes, dtype: dtype, into: a, weight: normalized[k])
                            }
                        case .ema(let d):
                            if k == 0 {
                                try ChunkAccumulator.start(from: bytes, dtype: dtype, into: a)
                            } else {
                                try ChunkAccumulator.emaStep(bytes, dtype: dtype, into: a, decay: d)
                            }
                        }
                    }
                }
                if case .mean = how { ChunkAccumulator.finishMean(a, divisor: Double(inputs.count)) }
                try out.withUnsafeMutableBytes { o in
                    try ChunkAccumulator.encode(
                        UnsafeBufferPointer(a), dtype: dtype, into: UnsafeMutableRawBufferPointer(rebasing: o[lo..<hi]))
                }
            }
            lo = hi
        }
        return out
    }

    /// The contract written out element by element with the slow exact codec.
    static func scalarAverage(_ inputs: [[UInt8]], _ dtype: DType, _ how: Averaging) -> [UInt8] {
        let xs = inputs.map { slowDecode($0, dtype) }
        var acc = [Double](repeating: 0, count: xs[0].count)
        for i in 0..<acc.count {
            switch how {
            case .mean:
                var a = xs[0][i]
                for k in 1..<xs.count { a = a + xs[k][i] }
                acc[i] = a / Double(xs.count)
            case .weighted(let ws):
                var s = ws[0]
                for k in 1..<ws.count { s = s + ws[k] }
                var a = (ws[0] / s) * xs[0][i]
                for k in 1..<xs.count {
                    let p = (ws[k] / s) * xs[k][i]
                    a = a + p
                }
                acc[i] = a
            case .ema(let d):
                var e = xs[0][i]
                for k in 1..<xs.count {
                    let kept = d * e
                    let added = (1.0 - d) * xs[k][i]
                    e = kept + added
                }
                acc[i] = e
            }
        }
        return slowEncode(acc, dtype)
    }
}

// MARK: - Kernel tests

@Suite struct AccumulatorTests {
    @Test(arguments: Fx.averagedDTypes)
    func kernelsMatchScalarContract(dtype: DType) throws {
        var rng = SplitMix64(seed: 99 &+ UInt64(dtype.bitSize))
        let n = 9001  // odd, and more than two F16 blocks
        let inputs = (0..<4).map { _ in Fx.randomRaw(dtype, count: n, &rng) }
        for how in [Fx.Averaging.mean, .weighted([0.5, 1.0, 2.0, 3.25]), .ema(0.9), .ema(0.999)] {
            let fast = try Fx.kernelAverage(inputs, dtype, how)
            let slow = Fx.scalarAverage(inputs, dtype, how)
            let diffs = zip(fast, slow).filter { $0 != $1 }.count
            #expect(fast.count == slow.count && diffs == 0, "\(dtype) \(how): \(diffs) bytes differ")
        }
    }

    @Test(arguments: [DType.f32, .f16, .bf16, .f8E4M3, .c64, .f64])
    func chunkingDoesNotChangeResults(dtype: DType) throws {
        var rng = SplitMix64(seed: 5)
        let inputs = (0..<3).map { _ in Fx.randomRaw(dtype, count: 10_000, &rng) }
        let whole = try Fx.kernelAverage(inputs, dtype, .mean)
        for chunk in [1, 7, 4096, 4097, 9999] {
            let chunked = try Fx.kernelAverage(inputs, dtype, .mean, chunk: chunk)
            let diffs = zip(chunked, whole).filter { $0 != $1 }.count
            #expect(chunked.count == whole.count && diffs == 0, "\(dtype) chunk \(chunk): \(diffs) bytes differ")
        }
    }

    @Test func operationOrderIsTheContracts() throws {
        // acc = x0; acc += x1; acc += x2; acc /= 3 -- not a pairwise or compensated sum
        let xs: [[Double]] = [[1e16, 0.1], [1.0, 0.2], [-1e16, 0.3]]
        let raws = xs.map { try! FloatCodec.encode($0, as: .f64) }
        let mean = try Fx.kernelAverage(raws, .f64, .mean)
        let m = try mean.withUnsafeBytes { try FloatCodec.decode($0, as: .f64) }
        #expect(m[0] == ((1e16 + 1.0) + -1e16) / 3.0)
        #expect(m[0] == 0)  // the 1.0 is absorbed by 1e16 first
        #expect(m[1] == ((0.1 + 0.2) + 0.3) / 3.0)
        // EMA: D*e + (1-D)*x with both products rounded (an FMA would differ here)
        let d = 0.9
        let e = try Fx.kernelAverage(raws, .f64, .ema(d))
        let ev = try e.withUnsafeBytes { try FloatCodec.decode($0, as: .f64) }
        var ref = 0.1
        for x in [0.2, 0.3] {
            let kept = d * ref
            let added = (1.0 - d) * x
            ref = kept + added
        }
        #expect(ev[1].bitPattern == ref.bitPattern)
        // weights: s = w0; s += w1 ...; w_i / s
        #expect(ChunkAccumulator.normalizedWeights([1, 1, 2]) == [0.25, 0.25, 0.5])
        let ws = [0.1, 0.2, 0.3, 1e-17]
        let s = ((0.1 + 0.2) + 0.3) + 1e-17
        #expect(ChunkAccumulator.normalizedWeights(ws) == ws.map { $0 / s })
        #expect(ChunkAccumulator.normalizedWeights([]) == [])
    }

    @Test func meanRoundsOnceToTheDtype() throws {
        // weighted mean of bf16 1.0 and 1 + 2^-7 with weights 1 and 1 + 2^-32: the Float64
        // result is 1 + 2^-8 + ~4.5e-13, just above the midpoint between 0x3F80 and 0x3F81.
        // One rounding gives 0x3F81; rounding through f32 first (as ml_dtypes' astype does)
        // would land exactly on the midpoint and tie to even, 0x3F80.
        let raws: [[UInt8]] = [[0x80, 0x3F], [0x81, 0x3F]]
        let w = try Fx.kernelAverage(raws, .bf16, .weighted([1.0, 1.0 + Fx.P(-32)]))
        #expect(w == [0x81, 0x3F])
        // the plain mean of the same two is exactly the midpoint: ties to even
        #expect(try Fx.kernelAverage(raws, .bf16, .mean) == [0x80, 0x3F])
        // three f16 values: (1 + 1 + (1 + 2^-10)) / 3 = 1 + 2^-10/3: rounds to 1.0 (0x3C00)
        let h = [1.0, 1.0, 1.0 + Fx.P(-10)].map { v -> [UInt8] in
            let c = FloatCodec.encodeF16(v)
            return [UInt8(c & 0xFF), UInt8(c >> 8)]
        }
        let o = try Fx.kernelAverage(h, .f16, .mean)
        #expect(o == [0x00, 0x3C])
        // f16 overflow in the mean: (65504 + 65504 + 65535.99...) cannot happen in f16 inputs,
        // but Inf and -Inf make NaN, and Inf with finite stays Inf
        let inf: [UInt8] = [0x00, 0x7C]
        let ninf: [UInt8] = [0x00, 0xFC]
        let one: [UInt8] = [0x00, 0x3C]
        #expect(try Fx.kernelAverage([inf, one], .f16, .mean) == inf)
        let nan = try Fx.kernelAverage([inf, ninf], .f16, .mean)
        #expect(nan[1] & 0x7E == 0x7E && nan[0] == 0)  // canonical quiet NaN (sign: hardware's)
    }

    @Test func c64AveragesRealAndImaginaryLanes() throws {
        let a = try FloatCodec.encode([1.0, -2.0, 3.0, 4.0], as: .c64)  // two complex numbers
        let b = try FloatCodec.encode([3.0, 2.0, 5.0, -4.0], as: .c64)
        #expect(a.count == 16)
        #expect(try ChunkAccumulator.laneCount(byteCount: 16, dtype: .c64) == 4)
        let m = try Fx.kernelAverage([a, b], .c64, .mean)
        #expect(m == (try FloatCodec.encode([2.0, 0.0, 4.0, 0.0], as: .c64)))
    }

    @Test func errors() throws {
        var acc = [Double](repeating: 0, count: 4)
        let bytes = [UInt8](repeating: 0, count: 8)
        try acc.withUnsafeMutableBufferPointer { a in
            try bytes.withUnsafeBytes { b in
                for dtype in [DType.i32, .u8, .bool, .i64, .f4, .f6E2M3, .f6E3M2] {
                    #expect(throws: NumericsError.unsupportedDType(dtype)) {
                        try ChunkAccumulator.start(from: b, dtype: dtype, into: a)
                    }
                    #expect(!ChunkAccumulator.supports(dtype))
                }
                // 8 bytes of F16 = 4 lanes: fine; of F32 = 2 lanes: wrong accumulator size
                try ChunkAccumulator.start(from: b, dtype: .f16, into: a)
                #expect(throws: NumericsError.sizeMismatch(expected: 2, actual: 4)) {
                    try ChunkAccumulator.add(b, dtype: .f32, into: a)
                }
                #expect(throws: NumericsError.sizeMismatch(expected: 6, actual: 7)) {
                    try ChunkAccumulator.add(
                        UnsafeRawBufferPointer(rebasing: b[0..<7]), dtype: .f16,
                        into: UnsafeMutableBufferPointer(rebasing: a[0..<3]))
                }
                #expect(throws: NumericsError.self) {
                    _ = try ChunkAccumulator.laneCount(byteCount: 12, dtype: .c64)
                }
            }
            var dst = [UInt8](repeating: 0, count: 7)
            dst.withUnsafeMutableBytes { d in
                #expect(throws: NumericsError.sizeMismatch(expected: 8, actual: 7)) {
                    try ChunkAccumulator.encode(UnsafeBufferPointer(a), dtype: .f16, into: d)
                }
                return
            }
        }
        // empty chunks are fine
        var none: [Double] = []
        try none.withUnsafeMutableBufferPointer { a in
            try ChunkAccumulator.start(from: UnsafeRawBufferPointer(start: nil, count: 0), dtype: .f32, into: a)
            ChunkAccumulator.finishMean(a, divisor: 3)
        }
    }
}

// MARK: - Cross-check against the Python reference (Tests/reference/ckref.py)

extension NumericsFixtures {

    /// Tests/reference/ckref.py, found relative to this file.
    static let ckrefPath: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("reference").appendingPathComponent("ckref.py").path

    /// True when `python3` with numpy runs here and ckref.py exists.
    static let pythonWithNumpy: Bool = {
        guard FileManager.default.fileExists(atPath: ckrefPath) else { return false }
        return (try? runPython(["-c", "import numpy"])) == 0
    }()

    @discardableResult
    static func runPython(_ arguments: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + arguments
        p.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        try p.run()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus != 0, let s = String(data: errData, encoding: .utf8) {
            print("python3 \(arguments.first ?? ""): \(s)")
        }
        return p.terminationStatus
    }

    /// A tiny safetensors writer/reader for the cross-check (the store has its own).
    static func writeSafetensors(_ path: String, _ tensors: [(String, DType, Int, [UInt8])]) throws {
        var header: [String] = []
        var offset = 0
        var data: [UInt8] = []
        for (name, dtype, count, raw) in tensors {
            header.append(
                "\"\(name)\":{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(count)],\"data_offsets\":[\(offset),\(offset + raw.count)]}")
            offset += raw.count
            data += raw
        }
        var json = Array(("{" + header.joined(separator: ",") + "}").utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var file = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(json.count) >> UInt64(8 * $0)) }
        file += json
        file += data
        try Data(file).write(to: URL(fileURLWithPath: path))
    }

    static func readSafetensors(_ path: String) throws -> [String: (String, [UInt8])] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var n = 0
        for i in 0..<8 { n |= Int(bytes[i]) << (8 * i) }
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
        var out: [String: (String, [UInt8])] = [:]
        for (name, info) in header where name != "__metadata__" {
            let d = info as! [String: Any]
            let offs = d["data_offsets"] as! [Int]
            out[name] = (d["dtype"] as! String, Array(bytes[(8 + n + offs[0])..<(8 + n + offs[1])]))
        }
        return out
    }
}

@Suite(.enabled(if: Fx.pythonWithNumpy, "needs python3 with numpy"))
struct NumericsReferenceCrossCheckTests {
    /// Decode, encode and the three averages of the Swift kernels against ckref.py, bit for bit,
    /// on a few thousand random + special values per dtype.
    @Test func kernelsAgreeWithPythonReference() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("ckref-crosscheck-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 2024)
        let n = 3000

        // 1. decode + encode through a driver that imports ckref
        var jobs: [String] = []
        var expectations: [(String, String, [UInt8])] = []  // (label, out path, swift bytes)
        for dtype in Fx.averagedDTypes {
            let raw = Fx.randomRaw(dtype, count: n, &rng, negativeNaNs: false)
            let inPath = "\(dir)/dec_\(dtype.rawValue).bin"
            try Data(raw).write(to: URL(fileURLWithPath: inPath))
            let decoded = try raw.withUnsafeBytes { try FloatCodec.decode($0, as: dtype) }
            let swiftBytes = try FloatCodec.encode(decoded, as: .f64)
            jobs.append("{\"kind\":\"decode\",\"dtype\":\"\(dtype.rawValue)\",\"in\":\"\(inPath)\",\"out\":\"\(inPath).out\"}")
            expectations.append(("decode \(dtype)", "\(inPath).out", swiftBytes))

            var values = Fx.randomDoubles(n, &rng)
            if dtype != .f64 && dtype != .f32 && dtype != .c64 {
                values += Fx.gridAndMidpoints(dtype, sample: 1000, &rng)
            }
            values += [0, -0.0, .infinity, -.infinity, .nan, -.nan, 65520, 65519.99, 464, 448.5, 1.5, 3]
            if dtype == .c64 && values.count % 2 == 1 { values.append(1) }
            let encPath = "\(dir)/enc_\(dtype.rawValue).bin"
            try Data(try FloatCodec.encode(values, as: .f64)).write(to: URL(fileURLWithPath: encPath))
            let swiftEncoded = try FloatCodec.encode(values, as: dtype)
            jobs.append("{\"kind\":\"encode\",\"dtype\":\"\(dtype.rawValue)\",\"in\":\"\(encPath)\",\"out\":\"\(encPath).out\"}")
            expectations.append(("encode \(dtype)", "\(encPath).out", swiftEncoded))
        }
        let driver = """
            import json, sys
            import numpy as np
            sys.path.insert(0, sys.argv[1])
            import ckref
            for j in json.load(open(sys.argv[2])):
                raw = open(j["in"], "rb").read()
                if j["kind"] == "decode":
                    out = ckref.decode(j["dtype"], raw).astype("<f8").tobytes()
                else:
                    out = ckref.encode(j["dtype"], np.frombuffer(raw, dtype="<f8"))
                open(j["out"], "wb").write(out)
            """
        try driver.write(toFile: "\(dir)/driver.py", atomically: true, encoding: .utf8)
        try ("[" + jobs.joined(separator: ",") + "]").write(toFile: "\(dir)/jobs.json", atomically: true, encoding: .utf8)
        let refDir = URL(fileURLWithPath: Fx.ckrefPath).deletingLastPathComponent().path
        #expect(try Fx.runPython(["\(dir)/driver.py", refDir, "\(dir)/jobs.json"]) == 0)
        for (label, path, swiftBytes) in expectations {
            let py = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            #expect(py.count == swiftBytes.count, "\(label)")
            let firstDiff = zip(py, swiftBytes).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(firstDiff == nil, "\(label): first difference at byte \(firstDiff ?? -1)")
        }

        // 2. the CLI (lawa / weighted mean / ema) on safetensors files, one tensor per dtype
        let k = 3
        var inputs: [[(String, DType, Int, [UInt8])]] = Array(repeating: [], count: k)
        for dtype in Fx.averagedDTypes {
            for s in 0..<k {
                inputs[s].append((dtype.rawValue.lowercased(), dtype, n, Fx.randomRaw(dtype, count: n, &rng)))
            }
        }
        for s in 0..<k {
            let steps: [Int64] = [Int64(s), 1000 + Int64(s)]
            let raw = steps.flatMap { v in (0..<8).map { UInt8(truncatingIfNeeded: v >> Int64(8 * $0)) } }
            inputs[s].append(("step", .i64, 2, raw))
            try Fx.writeSafetensors("\(dir)/in\(s).safetensors", inputs[s])
        }
        let inPaths = (0..<k).map { "\(dir)/in\($0).safetensors" }
        let weights = [1.0, 2.0, 3.5]
        let runs: [(String, [String], Fx.Averaging)] = [
            ("lawa", [], .mean),
            ("mean", ["--weights"] + weights.map { "\($0)" }, .weighted(weights)),
            ("ema", ["--decay", "0.9"], .ema(0.9)),
        ]
        for (mode, extra, how) in runs {
            let out = "\(dir)/out_\(mode).safetensors"
            #expect(try Fx.runPython([Fx.ckrefPath, mode, out] + inPaths + extra) == 0)
            let result = try Fx.readSafetensors(out)
            for (idx, dtype) in Fx.averagedDTypes.enumerated() {
                let name = dtype.rawValue.lowercased()
                let swiftBytes = try Fx.kernelAverage(inputs.map { $0[idx].3 }, dtype, how)
                guard let (pyDtype, pyBytes) = result[name] else {
                    Issue.record("\(mode): missing \(name)")
                    continue
                }
                #expect(pyDtype == dtype.rawValue)
                var diffs = 0
                for i in 0..<min(pyBytes.count, swiftBytes.count) where pyBytes[i] != swiftBytes[i] {
                    diffs += 1
                }
                #expect(pyBytes.count == swiftBytes.count && diffs == 0, "\(mode) \(dtype): \(diffs) bytes differ")
            }
            #expect(result["step"]?.1 == inputs[k - 1].last!.3, "\(mode): I64 copied from the last input")
        }
    }
}
