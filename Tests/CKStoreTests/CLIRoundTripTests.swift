// End-to-end: files put into a store with the `ckstore` binary come back byte for byte.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// The 22 dtypes a safetensors header may declare.
let allDTypeNames = [
    "BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "BF16", "F32", "F64", "C64", "F4", "F6_E2M3",
    "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
]

/// Puts `bytes` (written to a file) as RUN@STEP, then checks `get -o FILE` and `get -o -` give
/// the same bytes back.
private func expectRoundTrip(
    _ bytes: [UInt8], store: String, dir: TemporaryDirectory, run: String = "rt", step: Int = 1,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let input = dir.file("in-\(run)-\(step).safetensors")
    writeFile(input, bytes, sourceLocation: sourceLocation)
    putOK(input, run: run, step: step, store: store, sourceLocation: sourceLocation)
    let output = dir.file("out-\(run)-\(step).safetensors")
    let r = runCLI(["get", "\(run)@\(step)", "-o", output], store: store, sourceLocation: sourceLocation)
    #expect(r.status == 0, "get -o FILE failed: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stdout.isEmpty, "get -o FILE printed on stdout", sourceLocation: sourceLocation)
    let written = readFile(output)
    #expect(
        written.count == bytes.count, "get -o FILE wrote \(written.count) bytes, expected \(bytes.count)", sourceLocation: sourceLocation)
    #expect(sha256Hex(written) == sha256Hex(bytes), "get -o FILE: SHA-256 differs from the input", sourceLocation: sourceLocation)
    let streamed = getBytes("\(run)@\(step)", store: store, sourceLocation: sourceLocation)
    #expect(
        streamed == Data(bytes), "get -o -: bytes differ from the input (\(streamed.count) vs \(bytes.count))",
        sourceLocation: sourceLocation)
}

/// A named fixture file for parameterized tests.
struct FixtureCase: Sendable, CustomTestStringConvertible {
    let label: String
    let tensors: [TensorSpec]
    var metadata: [String: String]? = nil
    var metadataLast = false
    var testDescription: String { label }
}

@Suite("CLI round trips")
struct CLIRoundTripTests {
    @Test func theDTypeListIsExactlyTheTwentyTwoSafetensorsDTypes() {
        #expect(allDTypeNames.count == 22)
        #expect(Set(allDTypeNames).count == 22)
        #expect(Set(allDTypeNames) == Set(DType.allCases.map(\.rawValue)))
    }

    @Test(arguments: allDTypeNames.enumerated().map { ($0.offset, $0.element) })
    func everyDTypeRoundTripsByteExactThroughFileAndStdout(index: Int, dtype: String) {
        withTemporaryDirectory("dtype") { dir in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 0xD7 + UInt64(index))
            let bits = DType(rawValue: dtype)!.bitSize
            // About 10 kB: three chunks of at most 4096 bytes. A multiple of 4 elements keeps
            // F4 (even count) and the F6 types (multiple of 4) whole bytes.
            let n = (10_000 * 8 / bits) / 4 * 4
            let file = makeSafetensors(
                tensors: [
                    TensorSpec("weights.big", dtype, [n / 4, 4], rng: &rng, compressible: true),
                    TensorSpec("noise", dtype, [4], rng: &rng),
                    TensorSpec("empty", dtype, [0, 4], []),
                ],
                metadata: ["dtype": dtype])
            expectRoundTrip(file, store: store, dir: dir)
        }
    }

    @Test(arguments: ["F32", "I64", "BOOL", "BF16", "C64", "F8_E4M3"])
    func zeroDimensionalTensorRoundTripsByteExact(dtype: String) {
        withTemporaryDirectory("scalar") { dir in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 7)
            let file = makeSafetensors(tensors: [TensorSpec("scalar", dtype, [], rng: &rng)])
            expectRoundTrip(file, store: store, dir: dir)
            let show = cliJSON(["show", "rt@1"], store: store)
            let tensors = show["tensors"] as? [[String: Any]] ?? []
            #expect((tensors.first?["shape"] as? [Int]) == [], "a 0-d tensor's shape is []")
            #expect((tensors.first?["bytes"] as? Int) == DType(rawValue: dtype)!.bitSize / 8)
        }
    }

    static let zeroSizeCases: [FixtureCase] = {
        var rng = SplitMix64(seed: 11)
        return [
            FixtureCase(
                label: "only zero-size tensors",
                tensors: [TensorSpec("e", "F32", [0], []), TensorSpec("f", "I8", [3, 0], []), TensorSpec("g", "F4", [0, 7], [])]),
            FixtureCase(
                label: "zero-size tensor between non-empty ones",
                tensors: [
                    TensorSpec("a", "F32", [4], rng: &rng), TensorSpec("z", "F16", [0, 5], []), TensorSpec("b", "U8", [3], rng: &rng),
                ]),
            FixtureCase(label: "no tensors at all", tensors: []),
            FixtureCase(label: "no tensors, only metadata", tensors: [], metadata: ["only": "metadata"]),
        ]
    }()

    @Test(arguments: zeroSizeCases)
    func zeroSizeTensorsRoundTripByteExact(_ fixture: FixtureCase) {
        withTemporaryDirectory("zero") { dir in
            let store = makeStore(in: dir)
            let file = makeSafetensors(tensors: fixture.tensors, metadata: fixture.metadata)
            expectRoundTrip(file, store: store, dir: dir)
            let show = cliJSON(["show", "rt@1"], store: store)
            #expect((show["tensors"] as? [Any])?.count == fixture.tensors.count)
        }
    }

    static let metadataCases: [FixtureCase] = {
        var rng = SplitMix64(seed: 13)
        let tensors = [TensorSpec("w", "F32", [3, 5], rng: &rng), TensorSpec("b", "F32", [5], rng: &rng)]
        return [
            FixtureCase(label: "without __metadata__", tensors: tensors),
            FixtureCase(label: "empty __metadata__", tensors: tensors, metadata: [:]),
            FixtureCase(label: "one metadata entry", tensors: tensors, metadata: ["format": "pt"]),
            FixtureCase(
                label: "metadata with escapes and non-ASCII", tensors: tensors,
                metadata: ["note": "ünïcödé \"quoted\" back\\slash\nnew line\ttab", "emoji": "🧪", "empty": ""]),
            FixtureCase(
                label: "__metadata__ after the tensors", tensors: tensors, metadata: ["k": "v", "step": "100"], metadataLast: true),
        ]
    }()

    @Test(arguments: metadataCases)
    func metadataRoundTripsByteExactAndShowsItsEntries(_ fixture: FixtureCase) {
        withTemporaryDirectory("meta") { dir in
            let store = makeStore(in: dir)
            let file = makeSafetensors(tensors: fixture.tensors, metadata: fixture.metadata, metadataLast: fixture.metadataLast)
            expectRoundTrip(file, store: store, dir: dir)
            let show = cliJSON(["show", "rt@1"], store: store)
            let shown = show["metadata"] as? [String: String]
            #expect(shown == (fixture.metadata ?? [:]), "show --json metadata")
        }
    }

    @Test(arguments: [DataOrder.reversed, .permutation([2, 0, 3, 1])])
    func dataLaidOutInAnotherOrderThanTheHeaderKeysRoundTripsByteExact(order: DataOrder) {
        withTemporaryDirectory("order") { dir in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 17)
            let tensors = [
                TensorSpec("a", "F32", [700], rng: &rng), TensorSpec("b", "I16", [3000], rng: &rng, compressible: true),
                TensorSpec("c", "U8", [5], rng: &rng), TensorSpec("d", "F64", [600], rng: &rng),
            ]
            let file = makeSafetensors(tensors: tensors, order: order)
            expectRoundTrip(file, store: store, dir: dir)
            // show lists tensors in data-section order.
            let expected: [String]
            switch order {
            case .reversed: expected = ["d", "c", "b", "a"]
            case .permutation(let p): expected = p.map { tensors[$0].name }
            case .headerOrder: expected = tensors.map(\.name)
            }
            let show = cliJSON(["show", "rt@1"], store: store)
            let names = (show["tensors"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            #expect(names == expected)
        }
    }

    @Test(arguments: [("F32", 12_500), ("BF16", 9_001), ("F6_E2M3", 20_000), ("F4", 25_002), ("C64", 1_700)])
    func tensorSpanningSeveralChunksRoundTripsAndIsStoredAsContentAddressedChunks(dtype: String, elements: Int) {
        withTemporaryDirectory("chunks") { dir in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 19)
            let big = TensorSpec("big", dtype, [elements], rng: &rng)
            let file = makeSafetensors(tensors: [big, TensorSpec("tail", "F32", [3], rng: &rng)])
            expectRoundTrip(file, store: store, dir: dir)
            let expectedChunks = chunks(of: big.bytes, dtype: dtype, chunkSize: 4096)
            #expect(expectedChunks.count >= 3, "fixture must span several chunks")
            let show = cliJSON(["show", "rt@1"], store: store)
            let entry = (show["tensors"] as? [[String: Any]] ?? []).first { ($0["name"] as? String) == "big" }
            #expect((entry?["chunks"] as? Int) == expectedChunks.count, "chunk count of a \(big.bytes.count)-byte \(dtype) tensor")
            for chunk in expectedChunks {
                #expect(FileManager.default.fileExists(atPath: blobPath(store: store, chunk: chunk)), "blob named by the chunk's SHA-256")
            }
            #expect(objectFiles(store).count == expectedChunks.count + 1)
        }
    }

    @Test func standardInputPutRoundTripsAndHasTheSameDigestAsTheFile() {
        withTemporaryDirectory("stdin") { dir in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 23)
            let file = makeSafetensors(
                tensors: [TensorSpec("x", "F32", [5000], rng: &rng, compressible: true), TensorSpec("y", "I32", [17], rng: &rng)],
                metadata: ["from": "stdin"])
            let viaStdin = putOK("-", run: "s", step: 1, store: store, stdin: Data(file))
            let path = dir.file("same.safetensors")
            writeFile(path, file)
            let viaFile = putOK(path, run: "s", step: 2, store: store)
            #expect(viaStdin != nil && viaStdin == viaFile)
            #expect(getBytes("s@1", store: store) == Data(file))
        }
    }

    @Test(arguments: [1, 6, 4096])
    func headerPaddedWithSpacesRoundTripsByteExact(padding: Int) {
        withTemporaryDirectory("pad") { dir in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 29)
            let file = makeSafetensors(
                tensors: [TensorSpec("w", "F16", [33], rng: &rng), TensorSpec("v", "F32", [2], rng: &rng)], metadata: ["a": "b"],
                headerPadding: padding)
            expectRoundTrip(file, store: store, dir: dir)
        }
    }

    /// Three different files at steps 1, 5 and 3 of run `r`.
    private func storeThreeSteps(_ dir: TemporaryDirectory) -> (store: String, files: [Int: [UInt8]], digests: [Int: String]) {
        let store = makeStore(in: dir)
        var files: [Int: [UInt8]] = [:]
        var digests: [Int: String] = [:]
        for step in [1, 5, 3] {
            var rng = SplitMix64(seed: UInt64(100 + step))
            let file = makeSafetensors(tensors: [TensorSpec("w", "F32", [64], rng: &rng)], metadata: ["step": "\(step)"])
            let path = dir.file("step\(step).safetensors")
            writeFile(path, file)
            files[step] = file
            digests[step] = putOK(path, run: "r", step: step, store: store)
        }
        return (store, files, digests)
    }

    @Test func latestRefGetsTheHighestStep() {
        withTemporaryDirectory("latest") { dir in
            let (store, files, _) = storeThreeSteps(dir)
            #expect(getBytes("r@latest", store: store) == Data(files[5]!))
        }
    }

    @Test func fullDigestRefGetsThatContent() throws {
        try withTemporaryDirectory("digest") { dir throws in
            let (store, files, digests) = storeThreeSteps(dir)
            let digest = try #require(digests[3])
            #expect(getBytes("sha256:\(digest)", store: store) == Data(files[3]!))
        }
    }

    @Test func eightCharacterPrefixRefGetsThatContent() throws {
        try withTemporaryDirectory("prefix") { dir throws in
            let (store, files, digests) = storeThreeSteps(dir)
            let digest = try #require(digests[1])
            #expect(getBytes(String(digest.prefix(8)), store: store) == Data(files[1]!))
            #expect(getBytes(String(digest.prefix(8)).uppercased(), store: store) == Data(files[1]!), "hex prefixes are case-insensitive")
        }
    }

    @Test func putPrintsExactlyOneDigestLineOnStdout() {
        withTemporaryDirectory("stdout") { dir in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 31)
            let path = dir.file("f.safetensors")
            writeFile(path, makeSafetensors(tensors: [TensorSpec("w", "F32", [8], rng: &rng)]))
            let r = runCLI(["put", "--run", "p", "--step", "0", path], store: store)
            #expect(r.status == 0)
            let digest = parseDigestLine(r.stdout)
            #expect(digest != nil, "stdout: \(text(r.stdout).debugDescription)")
            #expect(text(r.stdout) == "sha256:\(digest ?? "")\n")
            #expect(outputLines(r.stderr).count == 1, "one summary line on stderr")
            let listed = cliJSON(["ls", "--run", "p"], store: store)
            let snapshots = listed["snapshots"] as? [[String: Any]] ?? []
            #expect(snapshots.first?["digest"] as? String == "sha256:\(digest ?? "")", "ls shows the printed digest")
            let quiet = runCLI(["put", "--quiet", "--run", "p", "--step", "1", path], store: store)
            #expect(quiet.status == 0 && quiet.stderr.isEmpty && parseDigestLine(quiet.stdout) == digest, "--quiet: digest only")
        }
    }

    @Test func sameFileHasTheSameDigestInTwoStores() {
        withTemporaryDirectory("twostores") { dir in
            let one = makeStore(in: dir, name: "one")
            let two = makeStore(in: dir, name: "two")
            var rng = SplitMix64(seed: 37)
            let path = dir.file("f.safetensors")
            writeFile(path, makeSafetensors(tensors: [TensorSpec("w", "F32", [3000], rng: &rng)], metadata: ["x": "y"]))
            let a = putOK(path, run: "a", step: 1, store: one)
            let b = putOK(path, run: "b", step: 9, store: two)
            #expect(a != nil && a == b)
        }
    }

    @Test func getToAFileLeavesOnlyThatFileBehind() throws {
        try withTemporaryDirectory("atomic") { dir throws in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 41)
            let file = makeSafetensors(tensors: [TensorSpec("w", "F32", [3000], rng: &rng)])
            writeFile(dir.file("in.safetensors"), file)
            putOK(dir.file("in.safetensors"), run: "r", step: 1, store: store)
            let outDir = dir.file("out")
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: false)
            writeFile("\(outDir)/x.safetensors", [1, 2, 3])  // replaced
            let r = runCLI(["get", "r@1", "-o", "\(outDir)/x.safetensors"], store: store)
            #expect(r.status == 0)
            #expect(try FileManager.default.contentsOfDirectory(atPath: outDir) == ["x.safetensors"])
            #expect(readFile("\(outDir)/x.safetensors") == Data(file))
        }
    }
}
