// Helpers shared by the end-to-end suites: safetensors fixture files (well-formed and
// malformed) and named pipes.

import Foundation
import Testing

@testable import CKStore

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Safetensors fixtures

/// One tensor of a fixture file.
struct TensorSpec: Sendable {
    var name: String
    var dtype: String
    var shape: [Int]
    var bytes: [UInt8]

    init(_ name: String, _ dtype: String, _ shape: [Int], _ bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    /// A tensor of `dtype` and `shape` filled from `rng` (random or compressible bytes).
    init(_ name: String, _ dtype: String, _ shape: [Int], rng: inout SplitMix64, compressible: Bool = false) {
        let count = byteCount(dtype: dtype, shape: shape)
        self.init(name, dtype, shape, compressible ? rng.compressibleBytes(count) : rng.bytes(count))
    }
}

/// The number of data bytes a tensor of `dtype` and `shape` needs (bits rounded up).
func byteCount(dtype: String, shape: [Int]) -> Int {
    let bits = shape.reduce(1, *) * DType(rawValue: dtype)!.bitSize
    return (bits + 7) / 8
}

/// The order of the data section relative to the header's tensor keys.
enum DataOrder: Sendable {
    /// Data in the order the tensors are given (the header order).
    case headerOrder
    /// Data in reverse order.
    case reversed
    /// `permutation[i]` is the index (into the tensor list) of the i-th tensor in the data section.
    case permutation([Int])
}

/// A JSON string literal for `s`.
func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

/// The bytes of a safetensors file: 8-byte little-endian header length, the JSON header (tensor
/// keys in the given order; `__metadata__` first, or last with `metadataLast`, with its keys
/// sorted), `headerPadding` trailing spaces, then the data laid out in `order`.
func makeSafetensors(
    tensors: [TensorSpec], metadata: [String: String]? = nil, order: DataOrder = .headerOrder, headerPadding: Int = 0,
    metadataLast: Bool = false
) -> [UInt8] {
    let layout: [Int]
    switch order {
    case .headerOrder: layout = Array(tensors.indices)
    case .reversed: layout = Array(tensors.indices.reversed())
    case .permutation(let p):
        precondition(p.sorted() == Array(tensors.indices), "not a permutation of the tensors")
        layout = p
    }
    var offsets = [(Int, Int)](repeating: (0, 0), count: tensors.count)
    var data: [UInt8] = []
    for index in layout {
        let start = data.count
        data += tensors[index].bytes
        offsets[index] = (start, data.count)
    }
    var entries: [String] = []
    for (i, t) in tensors.enumerated() {
        let shape = t.shape.map(String.init).joined(separator: ",")
        entries.append(
            "\(jsonQuoted(t.name)):{\"dtype\":\(jsonQuoted(t.dtype)),\"shape\":[\(shape)],\"data_offsets\":[\(offsets[i].0),\(offsets[i].1)]}"
        )
    }
    if let metadata {
        let body = metadata.keys.sorted().map { "\(jsonQuoted($0)):\(jsonQuoted(metadata[$0]!))" }.joined(separator: ",")
        let entry = "\"__metadata__\":{\(body)}"
        if metadataLast { entries.append(entry) } else { entries.insert(entry, at: 0) }
    }
    let header = Array("{\(entries.joined(separator: ","))}".utf8) + [UInt8](repeating: 0x20, count: headerPadding)
    return rawSafetensors(header: header, data: data)
}

/// Raw mode, for malformed files: the length prefix (the header's real length unless
/// `declaredLength` is given), the header bytes as they are, then `data`.
func rawSafetensors(header: [UInt8], declaredLength: UInt64? = nil, data: [UInt8] = []) -> [UInt8] {
    littleEndian64(declaredLength ?? UInt64(header.count)) + header + data
}

/// Raw mode with a text header.
func rawSafetensors(header: String, declaredLength: UInt64? = nil, data: [UInt8] = []) -> [UInt8] {
    rawSafetensors(header: Array(header.utf8), declaredLength: declaredLength, data: data)
}

/// `value` as 8 little-endian bytes.
func littleEndian64(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

/// Writes `bytes` to `path`.
func writeFile(_ path: String, _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    let ok = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    #expect(ok, "cannot write \(path)", sourceLocation: sourceLocation)
}

/// The bytes of the file at `path` (empty when unreadable).
func readFile(_ path: String) -> Data {
    FileManager.default.contents(atPath: path) ?? Data()
}

/// The SHA-256 of `data`, as hex.
func sha256Hex(_ data: Data) -> String {
    SHA256Digest.hash(Array(data)).hex
}

/// The SHA-256 of `bytes`, as hex.
func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256Digest.hash(bytes).hex
}

// MARK: - Named pipes

/// Runs `body` with the path of a FIFO that a background thread fills with `bytes` (as a pipe
/// would: the reader cannot know the size up front). The writer stops when the reader closes
/// its end; it is always unblocked and joined before this returns.
func withFIFO<T>(in dir: TemporaryDirectory, _ bytes: [UInt8], _ body: (String) throws -> T) rethrows -> T {
    _ = ignoreSIGPIPE
    let path = dir.file("fifo-\(UUID().uuidString.prefix(8))")
    precondition(mkfifo(path, 0o600) == 0, "mkfifo failed: errno \(errno)")
    let done = DispatchGroup()
    DispatchQueue.global().async(group: done) {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { return }
        bytes.withUnsafeBytes { raw in
            var written = 0
            while written < raw.count {
                let n = write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                written += n
            }
        }
        close(fd)
    }
    defer {
        // If the reader never opened the FIFO, open and close it so the writer's open returns.
        if done.wait(timeout: .now() + 0.05) == .timedOut {
            let fd = open(path, O_RDONLY | O_NONBLOCK)
            if fd >= 0 {
                var sink = [UInt8](repeating: 0, count: 65536)
                while done.wait(timeout: .now() + 0.01) == .timedOut {
                    _ = read(fd, &sink, sink.count)
                }
                close(fd)
            }
            done.wait()
        }
    }
    return try body(path)
}
