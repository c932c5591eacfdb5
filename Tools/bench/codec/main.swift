// codecbench: throughput of the shuffle filters and XXH64 on 4 MiB of float32 weights.
// Build: temporarily add `.executableTarget(name: "codecbench", dependencies: ["CKStore"], path: "Tools/bench/codec")`, then run `swift build -c release -Xswiftc -enable-testing --product codecbench && .build/release/codecbench` (-enable-testing because Shuffle is internal).
@testable import CKStore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Deterministic 64-bit generator (SplitMix64) for the benchmark input.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

let size = 4 << 20
let runs = 7
let itersPerRun = 40
var rng = SplitMix64(state: 42)
// Weight-like float32 values: roughly normal, scale 0.02.
var input = [UInt8](repeating: 0, count: size)
input.withUnsafeMutableBytes { raw in
    let f = raw.bindMemory(to: Float.self)
    for i in 0..<f.count {
        var s: Float = 0
        for _ in 0..<4 { s += Float(rng.next() >> 40) / Float(1 << 24) }
        f[i] = (s - 2) * 0.035
    }
}
var shuffled = [UInt8](repeating: 0, count: size)
var output = [UInt8](repeating: 0, count: size)

/// CPU time consumed by this thread, in seconds (immune to time slices lost to other processes).
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Runs `body` itersPerRun times per run, `runs` runs; returns the median MB/s (1 MB = 10^6 bytes)
/// by wall-clock time and by thread CPU time.
func measure(_ body: () -> Void) -> (wall: Double, cpu: Double) {
    var wall: [Double] = []
    var cpu: [Double] = []
    body()
    for _ in 0..<runs {
        let clock = ContinuousClock()
        let c0 = threadCPUSeconds()
        let t = clock.measure { for _ in 0..<itersPerRun { body() } }
        let c1 = threadCPUSeconds()
        let secs = Double(t.components.seconds) + Double(t.components.attoseconds) * 1e-18
        wall.append(Double(size * itersPerRun) / secs / 1e6)
        cpu.append(Double(size * itersPerRun) / (c1 - c0) / 1e6)
    }
    wall.sort()
    cpu.sort()
    return (wall[runs / 2], cpu[runs / 2])
}

func fmt(_ x: (wall: Double, cpu: Double)) -> String { "\(Int(x.wall + 0.5)) MB/s (cpu-time \(Int(x.cpu + 0.5)))" }

var sink: UInt64 = 0
for filter in [ShuffleFilter.byteShuffle, .bitShuffle] {
    for w in [1, 2, 4, 8] {
        if filter == .byteShuffle && w == 1 { continue }
        let a = input.withUnsafeBytes { src in
            shuffled.withUnsafeMutableBytes { dst in
                measure { Shuffle.apply(filter, laneWidth: w, source: src, destination: dst) }
            }
        }
        let b = shuffled.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                measure { Shuffle.invert(filter, laneWidth: w, source: src, destination: dst) }
            }
        }
        precondition(output == input, "round trip failed")
        print("\(filter) W=\(w): apply \(fmt(a)), invert \(fmt(b))")
    }
}
let h = input.withUnsafeBytes { src in measure { sink &+= XXH64.hash(src) } }
print("XXH64: \(fmt(h)) (sink \(sink & 1))")
let c = input.withUnsafeBytes { src in
    output.withUnsafeMutableBytes { dst in measure { Shuffle.apply(.none, laneWidth: 4, source: src, destination: dst) } }
}
print("memcpy (.none): \(fmt(c))")
