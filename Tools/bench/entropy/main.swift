import Foundation

// entropybench: single-thread encode and decode throughput of blob codec 2 (Huffman-coded
// exponent planes) against LZ4 + the default float filter, on the data section of a
// safetensors file cut into 4 MiB chunks (logical bytes per second, median of 7 runs).
// Build: temporarily add `.executableTarget(name: "entropybench", dependencies: ["CKStore"], path: "Tools/bench/entropy")`
// to Package.swift, then `swift build -c release -Xswiftc -enable-testing --product entropybench`
// and run `.build/release/entropybench FILE.safetensors f32|bf16`.
@testable import CKStore

#if canImport(Glibc)
    import Glibc
#endif

let args = CommandLine.arguments
guard args.count == 3, let dtype: DType = (args[2] == "bf16" ? .bf16 : args[2] == "f32" ? .f32 : nil) else {
    print("usage: entropybench FILE.safetensors f32|bf16")
    exit(2)
}
let fd = open(args[1], O_RDONLY)
var st = stat()
fstat(fd, &st)
var file = [UInt8](repeating: 0, count: Int(st.st_size))
_ = file.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
let headerLength = file.withUnsafeBytes { Int($0.loadUnaligned(as: UInt64.self)) }
let data = Array(file[(8 + headerLength)...])
let chunkSize = 4 << 20
// Chunks as a put cuts them: each tensor's bytes in 4 MiB pieces.
let json = try! JSONSerialization.jsonObject(with: Data(file[8..<(8 + headerLength)])) as! [String: Any]
let chunks: [[UInt8]] = json.filter { $0.key != "__metadata__" }.sorted { $0.key < $1.key }.flatMap { _, value in
    let offsets = (value as! [String: Any])["data_offsets"] as! [Int]
    return stride(from: offsets[0], to: offsets[1], by: chunkSize).map { Array(data[$0..<min(offsets[1], $0 + chunkSize)]) }
}
let runs = 7

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Median GB/s (10^9 logical bytes per thread-CPU second) of `body` over all chunks.
func measure(_ body: (Int) -> Void) -> Double {
    var rates: [Double] = []
    for _ in 0..<runs {
        let t0 = now()
        for i in chunks.indices { body(i) }
        rates.append(Double(data.count) / (now() - t0) / 1e9)
    }
    rates.sort()
    return rates[runs / 2]
}

for entropy in [false, true] {
    var settings = BlobCodec.Settings()
    settings.floatEntropy = entropy
    let codec = BlobCodec(maxChunkSize: chunkSize, settings: settings)
    var blobs: [[UInt8]] = []
    var stored = 0
    var codec2 = 0
    for c in chunks {
        let (bytes, header) = try! c.withUnsafeBytes { try codec.encode($0, dtype: dtype, name: SHA256Digest.hash(c)) }
        blobs.append(Array(bytes))
        stored += bytes.count
        if header.codec == .exponentPlanes { codec2 += 1 }
    }
    let names = chunks.map { SHA256Digest.hash($0) }
    let enc = measure { i in _ = try! chunks[i].withUnsafeBytes { try codec.encode($0, dtype: dtype, name: names[i]) } }
    let out = ByteBuffer(capacity: chunkSize)
    let dec = measure { i in _ = try! blobs[i].withUnsafeBytes { try codec.decode($0, into: out, name: names[i], rehash: false) } }
    let label = entropy ? "LZ4 or codec 2 (float_entropy huffman)" : "LZ4 + \(dtype == .f32 ? "hybrid" : "bitshuffle") (float_entropy none)"
    print(
        "\(args[2]) \(label): stored/raw \(String(format: "%.4f", Double(stored) / Double(data.count))), codec-2 chunks \(codec2)/\(chunks.count), encode+verify \(String(format: "%.2f", enc)) GB/s, decode \(String(format: "%.2f", dec)) GB/s"
    )
}

// Codec 2 alone (no header, checksum or copy): decode of the payload into the raw bytes.
let planes = ByteBuffer(capacity: chunkSize)
let out = ByteBuffer(capacity: chunkSize)
let table = UnsafeMutablePointer<UInt16>.allocate(capacity: Huffman.tableSize)
let dst = ByteBuffer(capacity: 2 * chunkSize)
let payloads: [[UInt8]] = chunks.map { c in
    let n = c.withUnsafeBytes {
        ExponentCodec.encode($0, laneWidth: dtype.shuffleLaneWidth, planes: planes.prefix(c.count), into: dst.storage, limit: Int.max)!
    }
    return Array(dst.storage[0..<n])
}
let dec2 = measure { i in
    try! payloads[i].withUnsafeBytes {
        try ExponentCodec.decode(
            $0, laneWidth: dtype.shuffleLaneWidth, into: out.prefix(chunks[i].count), planes: planes.prefix(chunks[i].count), table: table)
    }
}
print("\(args[2]) codec 2 payload decode alone: \(String(format: "%.2f", dec2)) GB/s")

// Codec 2 encode stages alone: plan (split + counts), write (Huffman coding), per logical GB/s.
let lane = dtype.shuffleLaneWidth
let planRate = measure { i in
    _ = chunks[i].withUnsafeBytes { ExponentCodec.plan($0, laneWidth: lane, planes: planes.prefix(chunks[i].count)) }
}
let plans = chunks.map { c in c.withUnsafeBytes { ExponentCodec.plan($0, laneWidth: lane, planes: planes.prefix(c.count)) } }
let writeRate = measure { i in
    _ = chunks[i].withUnsafeBytes { ExponentCodec.write(plans[i], raw: $0, planes: planes.prefix(chunks[i].count), into: dst.storage) }
}
print("\(args[2]) codec 2 plan \(String(format: "%.2f", planRate)) GB/s, write \(String(format: "%.2f", writeRate)) GB/s")
