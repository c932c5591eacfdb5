// End-to-end: malformed safetensors input (and bad put arguments) is refused with exit 1 and
// one `ckstore: error:` line naming the problem, and the store is left exactly as it was.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// One malformed put.
struct MalformedCase: Sendable, CustomTestStringConvertible {
    let label: String
    /// The input (a file, or standard input with `viaStdin`).
    let bytes: [UInt8]
    var viaStdin = false
    /// Substrings the error line must contain: the tensor name or byte offset at fault.
    let mentions: [String]
    var run = "good"
    var step = "2"
    /// 1 for bad input; a negative --step is a usage error of the command line (2).
    var status: Int32 = 1
    /// The input path is this (relative to the test folder) instead of a written file.
    var pathOverride: String? = nil

    var testDescription: String { label + (viaStdin ? " (stdin)" : "") }
}

/// The well-formed snapshot every case's store already holds, as good@1: two multi-chunk
/// tensors and a small one.
private let goodTensors: [TensorSpec] = {
    var rng = SplitMix64(seed: 0x600D)
    return [
        TensorSpec("shared", "F32", [2500], rng: &rng), TensorSpec("other", "I16", [5000], rng: &rng, compressible: true),
        TensorSpec("tiny", "U8", [3], rng: &rng),
    ]
}()

private func entry(_ name: String, _ dtype: String, _ shape: String, _ begin: Int, _ end: Int) -> String {
    "\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":[\(begin),\(end)]}"
}

/// A valid file with new content: `first` (3 chunks of fresh random bytes) then `last`.
private let freshFile: [UInt8] = {
    var rng = SplitMix64(seed: 0xF2E5)
    return makeSafetensors(tensors: [TensorSpec("first", "F32", [3000], rng: &rng), TensorSpec("last", "F64", [600], rng: &rng)])
}()

/// A valid file whose first tensor is the stored `shared` tensor (its chunks are dedup hits),
/// followed by new content.
private let sharingFile: [UInt8] = {
    var rng = SplitMix64(seed: 0x5A4E)
    return makeSafetensors(tensors: [goodTensors[0], TensorSpec("novel", "F32", [2000], rng: &rng)])
}()

private func headerLength(_ file: [UInt8]) -> Int {
    (0..<8).reduce(0) { $0 | Int(file[$1]) << (8 * $1) }
}

@Suite("CLI malformed input")
struct CLIMalformedInputTests {
    static let cases: [MalformedCase] = {
        var rng = SplitMix64(seed: 0xBAD)
        let eight = rng.bytes(8)
        var list: [MalformedCase] = []
        list.append(MalformedCase(label: "empty file", bytes: [], mentions: ["0 bytes"]))
        list.append(MalformedCase(label: "empty input", bytes: [], viaStdin: true, mentions: ["0 bytes"]))
        list.append(MalformedCase(label: "5-byte file", bytes: [1, 2, 3, 4, 5], mentions: ["5 bytes"]))
        list.append(
            MalformedCase(
                label: "header length beyond the file", bytes: rawSafetensors(header: "{}", declaredLength: 1000),
                mentions: ["1000", "byte 0"]))
        list.append(
            MalformedCase(
                label: "header length over 100,000,000", bytes: rawSafetensors(header: "{}", declaredLength: 100_000_001),
                mentions: ["100000001", "byte 0"]))
        list.append(
            MalformedCase(
                label: "header length over 100,000,000", bytes: rawSafetensors(header: "{}", declaredLength: 100_000_001), viaStdin: true,
                mentions: ["100000001", "byte 0"]))
        list.append(
            MalformedCase(
                label: "header length 2^63", bytes: rawSafetensors(header: "{}", declaredLength: 1 << 63), mentions: ["9223372036854775808"]
            ))
        let fullHeader = "{" + entry("w", "F32", "[2]", 0, 8) + "}"
        list.append(
            MalformedCase(
                label: "truncated header", bytes: Array(rawSafetensors(header: fullHeader).prefix(8 + 20)),
                mentions: ["\(fullHeader.utf8.count)"]))
        list.append(
            MalformedCase(
                label: "truncated header", bytes: Array(rawSafetensors(header: fullHeader).prefix(8 + 20)), viaStdin: true,
                mentions: ["byte 28", "\(fullHeader.utf8.count) bytes"]))
        list.append(MalformedCase(label: "zero header length", bytes: rawSafetensors(header: ""), mentions: ["empty"]))
        list.append(
            MalformedCase(
                label: "invalid UTF-8 in the header", bytes: rawSafetensors(header: Array("{\"".utf8) + [0xFF] + Array("\":1}".utf8)),
                mentions: ["UTF-8", "header byte 2"]))
        list.append(MalformedCase(label: "header is a JSON array", bytes: rawSafetensors(header: "[1,2]"), mentions: ["header byte 0"]))
        list.append(MalformedCase(label: "header is a JSON string", bytes: rawSafetensors(header: "\"abc\""), mentions: ["header byte 0"]))
        list.append(MalformedCase(label: "header starts with a space", bytes: rawSafetensors(header: " {}"), mentions: ["header byte 0"]))
        list.append(MalformedCase(label: "invalid JSON", bytes: rawSafetensors(header: "{\"w\":}"), mentions: ["JSON", "header byte 5"]))
        list.append(
            MalformedCase(
                label: "invalid JSON", bytes: rawSafetensors(header: "{\"w\":}"), viaStdin: true, mentions: ["JSON", "header byte 5"]))
        list.append(
            MalformedCase(
                label: "unterminated JSON object", bytes: rawSafetensors(header: "{" + entry("w", "F32", "[2]", 0, 8), data: eight),
                mentions: ["JSON", "header byte"]))
        list.append(
            MalformedCase(
                label: "unknown dtype", bytes: rawSafetensors(header: "{" + entry("w", "F128", "[2]", 0, 8) + "}", data: eight),
                mentions: ["'w'", "F128"]))
        list.append(
            MalformedCase(
                label: "unknown dtype", bytes: rawSafetensors(header: "{" + entry("w", "f32", "[2]", 0, 8) + "}", data: eight),
                viaStdin: true,
                mentions: ["'w'", "f32"]))
        list.append(
            MalformedCase(
                label: "negative shape", bytes: rawSafetensors(header: "{" + entry("w", "F32", "[-2]", 0, 8) + "}", data: eight),
                mentions: ["'w'", "shape[0]"]))
        list.append(
            MalformedCase(
                label: "shape product overflow",
                bytes: rawSafetensors(header: "{" + entry("w", "F32", "[4294967296,4294967296]", 0, 8) + "}", data: eight),
                mentions: ["'w'", "64-bit"]))
        list.append(
            MalformedCase(
                label: "bit count overflow",
                bytes: rawSafetensors(header: "{" + entry("w", "F64", "[2305843009213693952]", 0, 8) + "}", data: eight),
                mentions: ["'w'", "64-bit"]))
        list.append(
            MalformedCase(
                label: "F4 with an odd element count",
                bytes: rawSafetensors(header: "{" + entry("w", "F4", "[3]", 0, 2) + "}", data: [0, 0]),
                mentions: ["'w'", "whole number of bytes"]))
        list.append(
            MalformedCase(
                label: "offsets out of range of the file",
                bytes: rawSafetensors(header: "{" + entry("w", "F32", "[4]", 0, 16) + "}", data: eight), mentions: ["'w'", "truncated"]))
        list.append(
            MalformedCase(
                label: "offsets beyond 64 bits",
                bytes: rawSafetensors(
                    header: "{" + entry("w", "F32", "[2]", 0, 0).replacingOccurrences(of: "[0,0]", with: "[0,18446744073709551616]") + "}",
                    data: eight),
                mentions: ["'w'", "data_offsets[1]"]))
        list.append(
            MalformedCase(
                label: "offsets begin after they end",
                bytes: rawSafetensors(header: "{" + entry("w", "F32", "[0]", 8, 4) + "}", data: eight),
                mentions: ["'w'", "[8, 4]"]))
        list.append(
            MalformedCase(
                label: "overlapping offsets",
                bytes: rawSafetensors(
                    header: "{" + entry("a", "F32", "[4]", 0, 16) + "," + entry("b", "F32", "[4]", 8, 24) + "}", data: rng.bytes(24)),
                mentions: ["'a'", "'b'", "overlap"]))
        list.append(
            MalformedCase(
                label: "gap between tensors",
                bytes: rawSafetensors(
                    header: "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 16, 24) + "}", data: rng.bytes(24)),
                mentions: ["'a'", "'b'", "gap of 8 bytes"]))
        list.append(
            MalformedCase(
                label: "data section not starting at 0",
                bytes: rawSafetensors(header: "{" + entry("a", "F32", "[2]", 8, 16) + "}", data: rng.bytes(16)),
                mentions: ["'a'", "begin at 8"]))
        list.append(
            MalformedCase(
                label: "offsets not matching the dtype size",
                bytes: rawSafetensors(header: "{" + entry("w", "F32", "[2]", 0, 12) + "}", data: rng.bytes(12)),
                mentions: ["'w'", "12 bytes", "needs 8"]))
        list.append(
            MalformedCase(
                label: "missing data_offsets", bytes: rawSafetensors(header: "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", data: eight),
                mentions: ["'w'", "data_offsets"]))
        let dupHeader = "{" + entry("w", "F32", "[2]", 0, 8) + "," + entry("w", "F32", "[2]", 8, 16) + "}"
        list.append(
            MalformedCase(
                label: "duplicate tensor names", bytes: rawSafetensors(header: dupHeader, data: rng.bytes(16)),
                mentions: ["'w'", "duplicate", "header byte \(dupHeader.utf8.count / 2)"]))
        list.append(
            MalformedCase(
                label: "non-string metadata value",
                bytes: rawSafetensors(header: "{\"__metadata__\":{\"epoch\":1}," + entry("w", "F32", "[2]", 0, 8) + "}", data: eight),
                mentions: ["__metadata__", "'epoch'"]))
        list.append(
            MalformedCase(
                label: "metadata not an object", bytes: rawSafetensors(header: "{\"__metadata__\":[\"a\"]}"), mentions: ["__metadata__"]))
        list.append(
            MalformedCase(
                label: "trailing bytes after the data", bytes: freshFile + [1, 2, 3], mentions: ["trailing", "byte \(freshFile.count)"]))
        list.append(
            MalformedCase(
                label: "trailing bytes after the data", bytes: freshFile + [1, 2, 3], viaStdin: true,
                mentions: ["trailing", "byte \(freshFile.count)"]))
        list.append(
            MalformedCase(
                label: "data truncated", bytes: Array(freshFile.dropLast(5)),
                mentions: ["truncated", "'last'", "byte \(freshFile.count)"]))
        list.append(
            MalformedCase(
                label: "data truncated", bytes: Array(freshFile.dropLast(5)), viaStdin: true,
                mentions: ["truncated at byte \(freshFile.count - 5)", "'last'"]))
        list.append(
            MalformedCase(
                label: "data truncated inside the first tensor", bytes: Array(freshFile.prefix(8 + headerLength(freshFile) + 5000)),
                viaStdin: true, mentions: ["'first'", "byte \(8 + headerLength(freshFile) + 5000)"]))
        list.append(
            MalformedCase(
                label: "data truncated after a tensor shared with the stored snapshot", bytes: Array(sharingFile.dropLast(100)),
                viaStdin: true,
                mentions: ["'novel'"]))
        let good = makeSafetensors(tensors: goodTensors)
        list.append(MalformedCase(label: "invalid run name a@b", bytes: good, mentions: ["a@b"], run: "a@b"))
        list.append(MalformedCase(label: "invalid run name with a space", bytes: good, mentions: ["'a b'"], run: "a b"))
        list.append(MalformedCase(label: "invalid run name with a comma", bytes: good, mentions: ["'a,b'"], run: "a,b"))
        list.append(MalformedCase(label: "empty run name", bytes: good, mentions: ["run name"], run: ""))
        list.append(MalformedCase(label: "negative step", bytes: good, mentions: ["--step", "-1"], step: "-1", status: 2))
        list.append(
            MalformedCase(
                label: "input file does not exist", bytes: [], mentions: ["missing.safetensors"], pathOverride: "missing.safetensors"))
        list.append(MalformedCase(label: "input is a directory", bytes: [], mentions: ["subdir"], pathOverride: "subdir"))
        return list
    }()

    @Test func thereAreAtLeastTwentyMalformedCasesIncludingStdinOnes() {
        #expect(Self.cases.count >= 20)
        #expect(Self.cases.filter(\.viaStdin).count >= 5)
    }

    @Test(arguments: cases)
    func malformedPutFailsWithOneErrorLineAndLeavesTheStoreUnchanged(_ bad: MalformedCase) throws {
        try withTemporaryDirectory("malformed") { dir throws in
            let store = makeStore(in: dir)
            writeFile(dir.file("good.safetensors"), makeSafetensors(tensors: goodTensors, metadata: ["ok": "yes"]))
            putOK(dir.file("good.safetensors"), run: "good", step: 1, store: store)
            try FileManager.default.createDirectory(atPath: dir.file("subdir"), withIntermediateDirectories: false)
            let before = storeSnapshot(store)

            let input: String
            if bad.viaStdin {
                input = "-"
            } else if let override = bad.pathOverride {
                input = dir.file(override)
            } else {
                input = dir.file("bad.safetensors")
                writeFile(input, bad.bytes)
            }
            let r = runCLI(
                ["put", "--run", bad.run, "--step", bad.step, input], store: store, stdin: bad.viaStdin ? Data(bad.bytes) : nil)
            expectOneErrorLine(r, status: bad.status, mentions: bad.mentions)
            expectStoreUnchanged(store, since: before)
        }
    }

    /// Found by the "trailing bytes after the data (stdin)" case: the error surfaces after the
    /// last chunk was queued, and blobs written by chunks still in flight are left behind.
    @Test func stdinPutRejectedAfterItsLastChunkLeavesNoOrphanBlobs() {
        withTemporaryDirectory("orphan") { dir in
            let store = makeStore(in: dir)
            writeFile(dir.file("good.safetensors"), makeSafetensors(tensors: goodTensors))
            putOK(dir.file("good.safetensors"), run: "good", step: 1, store: store)
            let blobs = objectFiles(store)
            var rng = SplitMix64(seed: 0x0F9)
            let big = makeSafetensors(tensors: [TensorSpec("big", "F32", [20_000], rng: &rng)])
            let r = runCLI(["put", "--run", "good", "--step", "2", "-"], store: store, stdin: Data(big + [0]))
            expectOneErrorLine(r, status: 1, mentions: ["trailing bytes", "byte \(big.count)"])
            let stats = cliJSON(["stats"], store: store)
            #expect(stats["orphan_blobs"] as? Int == 0, "orphan blobs after a failed put")
            #expect(stats["orphan_bytes"] as? Int == 0, "orphan bytes after a failed put")
            #expect(objectFiles(store) == blobs, "blob files after a failed put")
        }
    }

    @Test func malformedPutIntoAMissingStoreCreatesNoSnapshot() {
        withTemporaryDirectory("malformed-new") { dir in
            let store = dir.file("fresh")
            writeFile(dir.file("bad.safetensors"), Array(freshFile.dropLast(5)))
            var r = runCLI(["put", "--run", "r", "--step", "1", dir.file("bad.safetensors")], store: store)
            // The explicitly named store is created (and said so) before the input is read.
            let note = "ckstore: created store at \(store)\n"
            #expect(r.stderr.hasPrefix(note), "\(r.stderr)")
            r.stderr = String(r.stderr.dropFirst(r.stderr.hasPrefix(note) ? note.count : 0))
            expectOneErrorLine(r, status: 1, mentions: ["truncated"])
            let ls = runCLI(["ls", "--json"], store: store)
            #expect(ls.status != 0 || text(ls.stdout) == "{\"runs\":[]}\n", "no run recorded")
            #expect(objectFiles(store).isEmpty, "no blob left behind")
        }
    }
}
