// Throughput benchmark of the averaging kernels (Sources/CKStore/Numerics).
//
// Run it from the repository root (release flags as the package uses for CKStore):
//
//   swiftc -Ounchecked -wmo -parse-as-library -module-name numbench \
//       Sources/CKStore/Safetensors/DType.swift Sources/CKStore/Numerics/*.swift \
//       Tools/bench/numerics/main.swift -o /tmp/numbench && /tmp/numbench
//
// (or, in a package that has this folder as an executable target depending on CKStore,
// `swift run -c release numbench`). Arguments: [elementsPerChunk=16384] [repeats=15]
// [endToEndMiB=200] (endToEndMiB = size of each of the six F32 snapshots of the end-to-end run;
// 500 is the real target, 0 skips it). Prints the median G elements/s of each kernel, single
// thread, over a chunk that stays in L2, then the six-snapshot mean on two threads.

import Dispatch

#if canImport(CKStore)
    import CKStore
#endif

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

@main
struct NumericsBench {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s[s.count / 2]
    }

    /// Runs `body` `repeats` times (after one warm-up) and returns the median seconds.
    static func time(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
        try body()
        var ts: [Double] = []
        for _ in 0..<repeats {
            let t0 = now()
            try body()
            ts.append(now() - t0)
        }
        return median(ts)
    }

    static func main() throws {
        let args = CommandLine.arguments.dropFirst().compactMap { Int($0) }
        let n = args.count > 0 ? args[0] : 16384
        let repeats = args.count > 1 ? args[1] : 15
        let e2eMiB = args.count > 2 ? args[2] : 200
        // inner iterations so that one timed sample is ~ 64M elements
        let inner = max(1, (64 << 20) / n)

        let acc = UnsafeMutableBufferPointer<Double>.allocate(capacity: n)
        defer { acc.deallocate() }
        print("elements per chunk: \(n), samples: \(repeats), elements per sample: \(n * inner)")
        // "typical": uniform in +-0.1 (weights); "tiny": values in the dtype's subnormal range,
        // which exercise the code paths that avoid slow subnormal arithmetic
        let tinyScale: [DType: Double] = [
            .f32: 1e-39, .bf16: 1e-39, .f16: 5e-5, .f64: 0x1p-1030, .f8E4M3: 1e-2, .f8E5M2: 5e-5,
        ]
        for dataset in ["typical", "tiny"] {
            print("\(dataset) values")
            print("dtype  start  add    wadd   ema    encode   (G elements/s, median, 1 thread)")
            for dtype in [DType.f32, .bf16, .f16, .f64, .f8E4M3, .f8E5M2] {
                var rng = SystemRandomNumberGenerator()
                let scale = dataset == "typical" ? 0.1 : tinyScale[dtype]!
                let values: [Double] = (0..<n).map { _ in Double.random(in: -scale...scale, using: &rng) }
                let raw = try FloatCodec.encode(values, as: dtype)
                let out = UnsafeMutableRawBufferPointer.allocate(byteCount: raw.count, alignment: 16)
                defer { out.deallocate() }
                var row: [Double] = []
                try raw.withUnsafeBytes { src in
                    let kernels: [() throws -> Void] = [
                        { try ChunkAccumulator.start(from: src, dtype: dtype, into: acc) },
                        { try ChunkAccumulator.add(src, dtype: dtype, into: acc) },
                        { try ChunkAccumulator.add(src, dtype: dtype, into: acc, weight: 0.25) },
                        { try ChunkAccumulator.emaStep(src, dtype: dtype, into: acc, decay: 0.999) },
                        { try ChunkAccumulator.encode(UnsafeBufferPointer(acc), dtype: dtype, into: out) },
                    ]
                    for k in kernels {
                        // the accumulator holds the decoded input (the encode kernel rounds it)
                        try ChunkAccumulator.start(from: src, dtype: dtype, into: acc)
                        let t = try time(repeats) { for _ in 0..<inner { try k() } }
                        row.append(Double(n * inner) / t / 1e9)
                    }
                }
                print(pad(dtype.rawValue, 7) + row.map { format4($0) }.joined(separator: "  "))
            }
        }

        if e2eMiB > 0 { try endToEnd(snapshotMiB: e2eMiB, chunk: n) }
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? String(s.prefix(width)) : s + String(repeating: " ", count: width - s.count)
    }

    static func format4(_ x: Double) -> String {
        let s = String(Double(Int(x * 100 + 0.5)) / 100)
        return pad(s, 5)
    }

    /// Six F32 snapshots averaged chunk by chunk on two threads (start, 5 adds, finishMean,
    /// encode per chunk), like the store's LAWA read.
    static func endToEnd(snapshotMiB: Int, chunk: Int) throws {
        let k = 6
        let elements = snapshotMiB << 18  // MiB / 4 bytes
        print("end to end: mean of \(k) F32 snapshots of \(snapshotMiB) MiB, chunk \(chunk), 2 threads")
        var snapshots: [UnsafeMutableRawBufferPointer] = []
        for s in 0..<k {
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: elements * 4, alignment: 64)
            let f = b.bindMemory(to: Float.self)
            for i in 0..<elements { f[i] = Float(i % 1000) * 0.001 + Float(s) }
            snapshots.append(b)
        }
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: elements * 4, alignment: 64)
        defer {
            output.deallocate()
            for b in snapshots { b.deallocate() }
        }
        let chunks = (elements + chunk - 1) / chunk
        let threads = 2
        struct Shared: @unchecked Sendable {
            let snapshots: [UnsafeMutableRawBufferPointer]
            let output: UnsafeMutableRawBufferPointer
        }
        let shared = Shared(snapshots: snapshots, output: output)
        var times: [Double] = []
        for _ in 0..<5 {
            let t0 = now()
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let acc = UnsafeMutableBufferPointer<Double>.allocate(capacity: chunk)
                defer { acc.deallocate() }
                var c = t
                while c < chunks {
                    let lo = c * chunk
                    let count = min(chunk, elements - lo)
                    let a = UnsafeMutableBufferPointer(rebasing: acc[0..<count])
                    func slice(_ b: UnsafeMutableRawBufferPointer) -> UnsafeRawBufferPointer {
                        UnsafeRawBufferPointer(rebasing: b[(lo * 4)..<((lo + count) * 4)])
                    }
                    try! ChunkAccumulator.start(from: slice(shared.snapshots[0]), dtype: .f32, into: a)
                    for s in 1..<shared.snapshots.count {
                        try! ChunkAccumulator.add(slice(shared.snapshots[s]), dtype: .f32, into: a)
                    }
                    ChunkAccumulator.finishMean(a, divisor: Double(shared.snapshots.count))
                    try! ChunkAccumulator.encode(
                        UnsafeBufferPointer(a), dtype: .f32,
                        into: UnsafeMutableRawBufferPointer(rebasing: shared.output[(lo * 4)..<((lo + count) * 4)]))
                    c += threads
                }
            }
            times.append(now() - t0)
        }
        let t = median(times)
        let perSnapshot500 = t * 500 / Double(snapshotMiB)
        print("  median \(t) s  (scaled to 6 x 500 MiB: \(perSnapshot500) s)")
    }
}
