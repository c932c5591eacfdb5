// End-to-end: dedup, conflicts, exit codes, integrity failures, listings and the store location,
// as the `ckstore` help texts describe them.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Three random tensors of 12 kB, 12 kB and 100 bytes (3, 3 and 1 chunks at chunk_size 4096).
private func threeTensors(seed: UInt64) -> [TensorSpec] {
    var rng = SplitMix64(seed: seed)
    return [
        TensorSpec("layer.a", "F32", [3000], rng: &rng), TensorSpec("layer.b", "F32", [3000], rng: &rng),
        TensorSpec("layer.c", "U8", [100], rng: &rng),
    ]
}

/// A usage-error invocation; "$FILE" stands for a valid input file.
struct UsageCase: Sendable, CustomTestStringConvertible {
    let args: [String]
    let mention: String
    var testDescription: String { args.joined(separator: " ") }
}

/// An invocation that must fail with exit 1; "$OUT" stands for an output path in the test's
/// folder (which must not be created).
struct FailureCase: Sendable, CustomTestStringConvertible {
    let args: [String]
    let mentions: [String]
    var testDescription: String { args.joined(separator: " ") }
}

/// Ways to damage a stored blob.
enum BlobDamage: String, Sendable, CaseIterable {
    case flipPayloadByte, flipHeaderMagic, truncate, delete, empty
}

@Suite("CLI behaviour")
struct CLIBehaviourTests {
    // MARK: Dedup

    @Test func sameFileAtTwoStepsAddsNoBlobFilesAndKeepsStoredBytes() {
        withTemporaryDirectory("dedup") { dir in
            let store = makeStore(in: dir)
            let file = makeSafetensors(tensors: threeTensors(seed: 1), metadata: ["epoch": "1"])
            let path = dir.file("f.safetensors")
            writeFile(path, file)
            putOK(path, run: "r", step: 1, store: store)
            let blobsBefore = objectFiles(store)
            let statsBefore = cliJSON(["stats"], store: store)
            putOK(path, run: "r", step: 2, store: store)
            #expect(objectFiles(store) == blobsBefore, "no blob files added or changed")
            let statsAfter = cliJSON(["stats"], store: store)
            #expect(statsAfter["stored_bytes"] as? Int == statsBefore["stored_bytes"] as? Int)
            #expect(statsAfter["blobs"] as? Int == statsBefore["blobs"] as? Int)
            #expect(statsAfter["unique_raw_bytes"] as? Int == statsBefore["unique_raw_bytes"] as? Int)
            #expect(statsAfter["snapshots"] as? Int == 2)
            #expect(statsAfter["logical_bytes"] as? Int == 2 * file.count)
        }
    }

    @Test func snapshotDifferingInOneTensorAddsOnlyThatTensorsChunks() {
        withTemporaryDirectory("delta") { dir in
            let store = makeStore(in: dir)
            var tensors = threeTensors(seed: 2)
            writeFile(dir.file("1.safetensors"), makeSafetensors(tensors: tensors))
            putOK(dir.file("1.safetensors"), run: "r", step: 1, store: store)
            let before = objectFiles(store)
            var rng = SplitMix64(seed: 99)
            tensors[1] = TensorSpec("layer.b", "F32", [3000], rng: &rng)
            writeFile(dir.file("2.safetensors"), makeSafetensors(tensors: tensors))
            putOK(dir.file("2.safetensors"), run: "r", step: 2, store: store)
            let after = objectFiles(store)
            let added = Set(after.keys).subtracting(before.keys)
            let expected = Set(
                chunks(of: tensors[1].bytes, dtype: "F32", chunkSize: 4096).map {
                    String(blobPath(store: store, chunk: $0).dropFirst(store.count + "/objects/".count))
                })
            #expect(expected.count == 3)
            #expect(added == expected, "exactly the changed tensor's chunks are new")
            #expect(before.allSatisfy { after[$0.key] == $0.value }, "existing blobs untouched")
        }
    }

    // MARK: Re-put, conflict, force

    @Test func identicalReputPrintsTheSameDigestExitsZeroAndChangesNothing() {
        withTemporaryDirectory("reput") { dir in
            let store = makeStore(in: dir)
            let path = dir.file("f.safetensors")
            writeFile(path, makeSafetensors(tensors: threeTensors(seed: 3)))
            let first = putOK(path, run: "r", step: 7, store: store)
            let before = storeSnapshot(store)
            let r = runCLI(["put", "--run", "r", "--step", "7", path], store: store)
            #expect(r.status == 0)
            #expect(parseDigestLine(r.stdout) == first)
            #expect(r.stderr.contains("unchanged"))
            expectStoreUnchanged(store, since: before)
        }
    }

    @Test func differentContentAtAnExistingStepExitsOneNamingItAndChangesNothing() {
        withTemporaryDirectory("conflict") { dir in
            let store = makeStore(in: dir)
            writeFile(dir.file("a.safetensors"), makeSafetensors(tensors: threeTensors(seed: 4)))
            writeFile(dir.file("b.safetensors"), makeSafetensors(tensors: threeTensors(seed: 5)))
            putOK(dir.file("a.safetensors"), run: "run-x", step: 12, store: store)
            let before = storeSnapshot(store)
            let r = runCLI(["put", "--run", "run-x", "--step", "12", dir.file("b.safetensors")], store: store)
            expectOneErrorLine(r, status: 1, mentions: ["run-x@12"])
            expectStoreUnchanged(store, since: before)
        }
    }

    @Test func forceReplacesDifferentContentAndGetReturnsTheNewBytes() {
        withTemporaryDirectory("force") { dir in
            let store = makeStore(in: dir)
            let a = makeSafetensors(tensors: threeTensors(seed: 6))
            let b = makeSafetensors(tensors: threeTensors(seed: 7), metadata: ["v": "2"])
            writeFile(dir.file("a.safetensors"), a)
            writeFile(dir.file("b.safetensors"), b)
            let digestA = putOK(dir.file("a.safetensors"), run: "r", step: 1, store: store)
            let r = runCLI(["put", "--run", "r", "--step", "1", "--force", dir.file("b.safetensors")], store: store)
            #expect(r.status == 0, "\(r.stderr)")
            let digestB = parseDigestLine(r.stdout)
            #expect(digestB != nil && digestB != digestA)
            #expect(r.stderr.contains("replaced sha256:\(digestA?.prefix(12) ?? "?")"))
            #expect(getBytes("r@1", store: store) == Data(b))
            let snapshots = cliJSON(["ls", "--run", "r"], store: store)["snapshots"] as? [[String: Any]] ?? []
            #expect(snapshots.count == 1)
            #expect(snapshots.first?["digest"] as? String == "sha256:\(digestB ?? "")")
        }
    }

    // MARK: Exit codes

    static let usageCases: [UsageCase] = [
        UsageCase(args: ["bogus"], mention: "unknown command 'bogus'"),
        UsageCase(args: ["--bogus", "ls"], mention: "unknown option --bogus"),
        UsageCase(args: ["ls", "--bogus"], mention: "unknown option --bogus"),
        UsageCase(args: ["put", "--run", "r", "--step", "1", "--bogus", "$FILE"], mention: "unknown option --bogus"),
        UsageCase(args: ["put", "--step", "1", "$FILE"], mention: "--run is required"),
        UsageCase(args: ["put", "--run", "r", "$FILE"], mention: "--step is required"),
        UsageCase(args: ["put", "--run", "r", "--step", "abc", "$FILE"], mention: "--step must be a non-negative integer"),
        UsageCase(args: ["put", "--run", "r", "--step", "-1", "$FILE"], mention: "--step must be a non-negative integer"),
        UsageCase(args: ["put", "--run", "r", "--step", "1.5", "$FILE"], mention: "--step must be a non-negative integer"),
        UsageCase(args: ["put", "--run", "r", "--step", "1"], mention: "missing FILE"),
        UsageCase(args: ["put", "--run", "r", "--step", "1", "$FILE", "$FILE"], mention: "unexpected argument"),
        UsageCase(args: ["put", "--run", "r", "--run", "s", "--step", "1", "$FILE"], mention: "--run given more than once"),
        UsageCase(args: ["put", "--run", "r", "--step", "1", "--metric", "loss", "$FILE"], mention: "must be NAME=VALUE"),
        UsageCase(args: ["put", "--run"], mention: "--run needs a value"),
        UsageCase(args: ["get", "r@1"], mention: "-o FILE|- is required"),
        UsageCase(args: ["get", "-o", "-"], mention: "missing REF"),
        UsageCase(args: ["get", "r@1", "r@2", "-o", "-"], mention: "unexpected argument"),
        UsageCase(args: ["show"], mention: "missing REF"),
        UsageCase(args: ["ls", "extra"], mention: "unexpected argument 'extra'"),
        UsageCase(args: ["stats", "--run", "r"], mention: "unknown option --run"),
        UsageCase(args: ["init", "now"], mention: "unexpected argument"),
    ]

    @Test(arguments: usageCases)
    func usageErrorsExitTwoWithOneErrorLine(_ usage: UsageCase) {
        withTemporaryDirectory("usage") { dir in
            let store = makeStore(in: dir)
            let path = dir.file("f.safetensors")
            writeFile(path, makeSafetensors(tensors: threeTensors(seed: 8)))
            putOK(path, run: "r", step: 1, store: store)
            let before = storeSnapshot(store)
            let r = runCLI(usage.args.map { $0 == "$FILE" ? path : $0 }, store: store)
            expectOneErrorLine(r, status: 2, mentions: [usage.mention])
            expectStoreUnchanged(store, since: before)
        }
    }

    @Test func storeOptionWithoutAPathIsAUsageError() {
        let r = runCKStore(["--store"])
        expectOneErrorLine(r, status: 2, mentions: ["--store needs a path"])
    }

    @Test func noCommandPrintsTheUsageOnStderrAndExitsTwo() {
        let r = runCKStore([])
        #expect(r.status == 2)
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.hasPrefix("usage: ckstore"))
    }

    static let notFoundCases: [FailureCase] = [
        FailureCase(args: ["get", "r@99", "-o", "$OUT"], mentions: ["r@99 does not exist"]),
        FailureCase(args: ["get", "nosuch@1", "-o", "$OUT"], mentions: ["run 'nosuch' does not exist"]),
        FailureCase(args: ["get", "nosuch@latest", "-o", "-"], mentions: ["nosuch"]),
        FailureCase(args: ["get", "sha256:" + String(repeating: "0", count: 64), "-o", "$OUT"], mentions: ["no snapshot has digest"]),
        FailureCase(args: ["show", "r@99"], mentions: ["r@99 does not exist"]),
        FailureCase(args: ["ls", "--run", "nosuch"], mentions: ["run 'nosuch' does not exist"]),
    ]

    @Test(arguments: notFoundCases)
    func unknownRefsAndRunsExitOneNamingWhatIsMissing(_ failure: FailureCase) {
        withTemporaryDirectory("notfound") { dir in
            let store = makeStore(in: dir)
            let path = dir.file("f.safetensors")
            writeFile(path, makeSafetensors(tensors: threeTensors(seed: 9)))
            putOK(path, run: "r", step: 1, store: store)
            let before = storeSnapshot(store)
            let out = dir.file("out.safetensors")
            let r = runCLI(failure.args.map { $0 == "$OUT" ? out : $0 }, store: store)
            expectOneErrorLine(r, status: 1, mentions: failure.mentions)
            #expect(!FileManager.default.fileExists(atPath: out), "no output file on failure")
            expectStoreUnchanged(store, since: before)
        }
    }

    @Test func unknownPrefixExitsOneNamingThePrefix() throws {
        try withTemporaryDirectory("prefix") { dir throws in
            let store = makeStore(in: dir)
            let path = dir.file("f.safetensors")
            writeFile(path, makeSafetensors(tensors: threeTensors(seed: 10)))
            let digest = try #require(putOK(path, run: "r", step: 1, store: store))
            // A prefix that differs from the stored digest in its first digit.
            let prefix = (digest.first == "0" ? "1" : "0") + String(digest.dropFirst().prefix(7))
            let r = runCLI(["get", prefix, "-o", "-"], store: store)
            expectOneErrorLine(r, status: 1, mentions: [prefix])
        }
    }

    @Test(arguments: ["r@x", "r@-1", "@1", "abc", "sha256:1234", "0123456"])
    func malformedRefsExitOne(ref: String) {
        withTemporaryDirectory("badref") { dir in
            let store = makeStore(in: dir)
            let r = runCLI(["get", ref, "-o", "-"], store: store)
            expectOneErrorLine(r, status: 1, mentions: ["invalid ref '\(ref)'"])
        }
    }

    @Test func missingStoreExitsOneForReadCommands() {
        withTemporaryDirectory("nostore") { dir in
            for args in [["ls"], ["stats"], ["show", "r@1"], ["get", "r@1", "-o", "-"]] {
                let r = runCLI(args, store: dir.file("absent"))
                expectOneErrorLine(r, status: 1, mentions: ["no store at"])
            }
            #expect(!FileManager.default.fileExists(atPath: dir.file("absent")), "read commands do not create a store")
        }
    }

    @Test func nonFiniteMetricValueExitsOne() {
        withTemporaryDirectory("metric") { dir in
            let store = makeStore(in: dir)
            let path = dir.file("f.safetensors")
            writeFile(path, makeSafetensors(tensors: threeTensors(seed: 11)))
            let before = storeSnapshot(store)
            let r = runCLI(["put", "--run", "r", "--step", "1", "--metric", "loss=nan", path], store: store)
            expectOneErrorLine(r, status: 1, mentions: ["metric 'loss'"])
            expectStoreUnchanged(store, since: before)
        }
    }

    // MARK: Integrity

    /// Damages one blob of tensor `beta` (the second of its three chunks) in a store holding
    /// `r@1`; returns the store and the bytes that were put.
    private func damagedStore(_ dir: TemporaryDirectory, _ damage: BlobDamage) throws -> String {
        let store = makeStore(in: dir)
        var rng = SplitMix64(seed: 12)
        let alpha = TensorSpec("alpha", "F32", [2048], rng: &rng)
        let beta = TensorSpec("beta", "F32", [3072], rng: &rng, compressible: damage == .flipHeaderMagic)
        writeFile(dir.file("f.safetensors"), makeSafetensors(tensors: [alpha, beta]))
        putOK(dir.file("f.safetensors"), run: "r", step: 1, store: store)
        let victim = blobPath(store: store, chunk: chunks(of: beta.bytes, dtype: "F32", chunkSize: 4096)[1])
        #expect(FileManager.default.fileExists(atPath: victim))
        chmod(victim, 0o644)  // blobs are 0444
        var bytes = Array(readFile(victim))
        try #require(bytes.count > 40)
        switch damage {
        case .flipPayloadByte: bytes[32 + (bytes.count - 32) / 2] ^= 0x01
        case .flipHeaderMagic: bytes[0] ^= 0xFF
        case .truncate: bytes.removeLast(bytes.count / 2)
        case .empty: bytes = []
        case .delete: break
        }
        if damage == .delete {
            try FileManager.default.removeItem(atPath: victim)
        } else {
            writeFile(victim, bytes)
        }
        return store
    }

    @Test(arguments: BlobDamage.allCases)
    func damagedBlobMakesGetExitThreeNamingTheSnapshotAndTensor(damage: BlobDamage) throws {
        try withTemporaryDirectory("damage") { dir throws in
            let store = try damagedStore(dir, damage)
            let out = dir.file("out.safetensors")
            let r = runCLI(["get", "r@1", "-o", out], store: store)
            expectOneErrorLine(r, status: 3, mentions: ["r@1", "'beta'"] + (damage == .delete ? ["missing"] : []))
            #expect(!FileManager.default.fileExists(atPath: out), "no output file after a failed get")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("out.safetensors") }
            #expect(leftovers.isEmpty, "no temporary output left: \(leftovers)")
        }
    }

    @Test(arguments: BlobDamage.allCases)
    func damagedBlobMakesGetToStdoutExitThree(damage: BlobDamage) throws {
        try withTemporaryDirectory("damage-stdout") { dir throws in
            let store = try damagedStore(dir, damage)
            let r = runCLI(["get", "r@1", "-o", "-"], store: store)
            #expect(r.status == 3)
            #expect(
                outputLines(r.stderr).count == 1 && r.stderr.hasPrefix("ckstore: error: ") && r.stderr.contains("'beta'"), "\(r.stderr)")
        }
    }

    // MARK: ls, show, stats

    @Test func lsOnAnEmptyStoreSaysNoRuns() {
        withTemporaryDirectory("ls-empty") { dir in
            let store = makeStore(in: dir)
            let r = runCLI(["ls"], store: store)
            #expect(r.status == 0)
            #expect(text(r.stdout) == "no runs\n")
            let json = cliJSON(["ls"], store: store)
            #expect((json["runs"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func lsListsEachRunWithItsSnapshotCountAndStepRange() {
        withTemporaryDirectory("ls") { dir in
            let store = makeStore(in: dir)
            for (run, step) in [("r1", 3), ("r1", 10), ("r1", 7), ("r2", 0)] {
                let path = dir.file("\(run)-\(step).safetensors")
                writeFile(path, makeSafetensors(tensors: threeTensors(seed: UInt64(step)), metadata: ["run": run]))
                putOK(path, run: run, step: step, store: store)
            }
            let r = runCLI(["ls"], store: store)
            #expect(r.status == 0)
            let rows = outputLines(text(r.stdout)).map { $0.split(separator: " ").map(String.init) }
            #expect(rows == [["RUN", "SNAPSHOTS", "FIRST", "LAST"], ["r1", "3", "3", "10"], ["r2", "1", "0", "0"]])
            let runs = cliJSON(["ls"], store: store)["runs"] as? [[String: Any]] ?? []
            #expect(runs.count == 2)
            #expect(runs.first?["name"] as? String == "r1")
            #expect(runs.first?["snapshots"] as? Int == 3)
            #expect(runs.first?["first_step"] as? Int == 3)
            #expect(runs.first?["last_step"] as? Int == 10)
            #expect(runs.last?["name"] as? String == "r2")
            #expect(runs.last?["first_step"] as? Int == 0)
        }
    }

    @Test func lsRunListsSnapshotsWithDigestSizesTimesAndMetrics() throws {
        try withTemporaryDirectory("ls-run") { dir throws in
            let store = makeStore(in: dir)
            let tensors = threeTensors(seed: 13)
            let file = makeSafetensors(tensors: tensors)
            writeFile(dir.file("f.safetensors"), file)
            let digest = try #require(
                putOK(dir.file("f.safetensors"), run: "r", step: 5, store: store, extra: ["--metric", "loss=0.5", "--metric", "acc=0.25"]))
            let r = runCLI(["ls", "--run", "r"], store: store)
            #expect(r.status == 0)
            let lines = outputLines(text(r.stdout))
            let columns = ["STEP", "DIGEST", "FILES", "SIZE", "STORED", "CREATED", "METRICS"]
            #expect(lines.first?.split(separator: " ").map(String.init) == columns)
            #expect(lines.count == 2)
            let row = lines.last ?? ""
            #expect(row.hasPrefix("5 "))
            #expect(row.contains("sha256:\(digest.prefix(12))"))
            #expect(row.contains("loss=0.5") && row.contains("acc=0.25"))

            let json = cliJSON(["ls", "--run", "r"], store: store)
            #expect(json["run"] as? String == "r")
            let snapshot = try #require((json["snapshots"] as? [[String: Any]])?.first)
            #expect(snapshot["step"] as? Int == 5)
            #expect(snapshot["digest"] as? String == "sha256:\(digest)")
            #expect(snapshot["logical_bytes"] as? Int == file.count)
            #expect(snapshot["tensors"] as? Int == 3)
            #expect(
                snapshot["stored_bytes"] as? Int == objectFiles(store).values.reduce(0, +),
                "stored bytes of the only snapshot = all blob bytes")
            let created = snapshot["created_at"] as? String ?? ""
            #expect(created.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z/) != nil, "created_at: \(created)")
            let metrics = (snapshot["metrics"] as? [[String: Any]] ?? []).map {
                "\($0["variant"] as? String ?? "?"):\($0["name"] as? String ?? "?")=\($0["value"] as? Double ?? .nan)"
            }
            #expect(Set(metrics) == ["raw:loss=0.5", "raw:acc=0.25"])
        }
    }

    @Test func showListsTensorsInDataOrderWithDTypeShapeBytesChunksAndMetadata() throws {
        try withTemporaryDirectory("show") { dir throws in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 14)
            let tensors = [
                TensorSpec("emb", "BF16", [100, 30], rng: &rng), TensorSpec("bias", "F32", [7], rng: &rng),
                TensorSpec("mask", "BOOL", [2, 2], [1, 0, 0, 1]),
            ]
            let file = makeSafetensors(tensors: tensors, metadata: ["format": "pt", "step": "42"], order: .permutation([1, 2, 0]))
            writeFile(dir.file("f.safetensors"), file)
            let digest = try #require(putOK(dir.file("f.safetensors"), run: "r", step: 42, store: store))

            let r = runCLI(["show", "r@42"], store: store)
            #expect(r.status == 0)
            let lines = outputLines(text(r.stdout))
            #expect(lines.first?.hasPrefix("r@42  sha256:\(digest)") == true)
            #expect(lines.contains("metadata format = pt") && lines.contains("metadata step = 42"))
            let table = lines.drop { !$0.hasPrefix("TENSOR") }.map { $0.split(separator: " ").map(String.init) }
            #expect(table.first == ["TENSOR", "DTYPE", "SHAPE", "BYTES", "CHUNKS"])
            #expect(table.dropFirst().map { $0.first ?? "" } == ["bias", "mask", "emb"], "data-section order")
            #expect(table.last == ["emb", "BF16", "[100,", "30]", "6000", "2"])

            let json = cliJSON(["show", "r@42"], store: store)
            #expect(json["ref"] as? String == "r@42")
            #expect(json["digest"] as? String == "sha256:\(digest)")
            #expect(json["logical_bytes"] as? Int == file.count)
            #expect(json["metadata"] as? [String: String] == ["format": "pt", "step": "42"])
            let shown = json["tensors"] as? [[String: Any]] ?? []
            #expect(shown.map { $0["name"] as? String ?? "" } == ["bias", "mask", "emb"])
            #expect(shown.map { $0["dtype"] as? String ?? "" } == ["F32", "BOOL", "BF16"])
            #expect(shown.map { $0["shape"] as? [Int] ?? [] } == [[7], [2, 2], [100, 30]])
            #expect(shown.map { $0["bytes"] as? Int ?? -1 } == [28, 4, 6000])
            #expect(shown.map { $0["chunks"] as? Int ?? -1 } == [1, 1, 2])
            // The digest ref shows the same content, labelled by digest.
            let byDigest = cliJSON(["show", "sha256:\(digest)"], store: store)
            #expect(byDigest["ref"] as? String == "sha256:\(digest)")
        }
    }

    @Test func statsReportsRunsSnapshotsBytesBlobsAndRatios() throws {
        try withTemporaryDirectory("stats") { dir throws in
            let store = makeStore(in: dir)
            let a = threeTensors(seed: 15)
            var rng = SplitMix64(seed: 16)
            let b = [a[0], TensorSpec("layer.b", "F32", [3000], rng: &rng, compressible: true), a[2]]
            let fileA = makeSafetensors(tensors: a)
            let fileB = makeSafetensors(tensors: b)
            writeFile(dir.file("a.safetensors"), fileA)
            writeFile(dir.file("b.safetensors"), fileB)
            putOK(dir.file("a.safetensors"), run: "r1", step: 1, store: store)
            putOK(dir.file("a.safetensors"), run: "r1", step: 2, store: store)
            putOK(dir.file("b.safetensors"), run: "r2", step: 1, store: store)

            var distinct: [String: Int] = [:]
            for t in a + b {
                for c in chunks(of: t.bytes, dtype: t.dtype, chunkSize: 4096) { distinct[sha256Hex(c)] = c.count }
            }
            let uniqueRaw = distinct.values.reduce(0, +)
            let blobs = objectFiles(store)
            let stored = blobs.values.reduce(0, +)
            let logical = 2 * fileA.count + fileB.count

            let json = cliJSON(["stats"], store: store)
            #expect(json["runs"] as? Int == 2)
            #expect(json["snapshots"] as? Int == 3)
            #expect(json["logical_bytes"] as? Int == logical)
            #expect(json["unique_raw_bytes"] as? Int == uniqueRaw)
            #expect(json["stored_bytes"] as? Int == stored)
            #expect(json["blobs"] as? Int == distinct.count)
            #expect(blobs.count == distinct.count)
            #expect(json["orphan_bytes"] as? Int == 0)
            #expect(json["orphan_blobs"] as? Int == 0)
            let dedup = try #require(json["dedup_ratio"] as? Double)
            let compression = try #require(json["compression_ratio"] as? Double)
            #expect(abs(dedup - Double(logical) / Double(uniqueRaw)) < 1e-9)
            #expect(abs(compression - Double(stored) / Double(uniqueRaw)) < 1e-9)
            #expect(compression < 1, "the compressible tensor is stored smaller than raw")

            let human = runCLI(["stats"], store: store)
            #expect(human.status == 0)
            let lines = outputLines(text(human.stdout))
            func row(_ label: String) -> String {
                let found = lines.first { $0.hasPrefix(label + " ") }
                #expect(found != nil, "stats has no '\(label)' line: \(lines)")
                return found ?? ""
            }
            #expect(row("runs").hasSuffix(" 2"))
            #expect(row("snapshots").hasSuffix(" 3"))
            #expect(row("logical bytes").contains("(\(logical))"))
            #expect(row("unique raw bytes").contains("(\(uniqueRaw))"))
            #expect(row("stored bytes").contains("(\(stored)) in \(distinct.count) blobs"))
            #expect(row("orphan bytes").contains("(0) in 0 files"))
            #expect(row("dedup ratio").hasSuffix(String(format: "%.2fx", Double(logical) / Double(uniqueRaw))))
            #expect(row("compression").contains(String(format: "%.3f of raw", Double(stored) / Double(uniqueRaw))))
        }
    }

    @Test func statsCountsBlobsNoSnapshotRefersToAsOrphans() throws {
        try withTemporaryDirectory("orphans") { dir throws in
            let store = makeStore(in: dir)
            writeFile(dir.file("a.safetensors"), makeSafetensors(tensors: threeTensors(seed: 17)))
            writeFile(dir.file("b.safetensors"), makeSafetensors(tensors: threeTensors(seed: 18)))
            putOK(dir.file("a.safetensors"), run: "r", step: 1, store: store)
            let aBlobs = objectFiles(store)
            putOK(dir.file("b.safetensors"), run: "r", step: 1, store: store, extra: ["--force"])
            let json = cliJSON(["stats"], store: store)
            #expect(json["orphan_blobs"] as? Int == aBlobs.count, "the replaced content's blobs are orphans")
            #expect(json["orphan_bytes"] as? Int == aBlobs.values.reduce(0, +))
            #expect(json["snapshots"] as? Int == 1)
        }
    }

    // MARK: Help, version, init, store location

    /// The command names `ckstore --help` lists.
    private static func listedCommands() -> [String] {
        let help = text(runCKStore(["--help"]).stdout)
        let lines = outputLines(help).drop { $0 != "commands:" }.dropFirst().prefix { !$0.isEmpty }
        return lines.compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    @Test func helpOnEveryCommandExitsZeroAndPrintsItsUsage() {
        let commands = Self.listedCommands()
        #expect(Set(["init", "put", "get", "ls", "show", "stats"]).isSubset(of: commands), "listed: \(commands)")
        withTemporaryDirectory("help") { dir in
            for command in commands {
                for flag in ["--help", "-h"] {
                    let r = runCKStore([command, flag], directory: dir.path)
                    #expect(r.status == 0, "\(command) \(flag)")
                    #expect(text(r.stdout).hasPrefix("usage: ckstore"), "\(command) \(flag): \(text(r.stdout))")
                    #expect(
                        text(r.stdout).contains("ckstore \(command)") || text(r.stdout).contains("ckstore [--store PATH] \(command)"),
                        "\(command) \(flag)")
                    #expect(r.stderr.isEmpty, "\(command) \(flag)")
                }
            }
            #expect(!FileManager.default.fileExists(atPath: dir.file(".ckstore")), "--help creates no store")
        }
    }

    @Test func mainHelpListsEveryCommandAndTheExitStatuses() {
        for flag in ["--help", "-h"] {
            let r = runCKStore([flag])
            #expect(r.status == 0)
            let out = text(r.stdout)
            #expect(out.hasPrefix("usage: ckstore"))
            for command in ["init", "put", "get", "ls", "show", "stats"] { #expect(out.contains("  \(command) ")) }
            #expect(out.contains("3 integrity failure"))
        }
    }

    @Test func versionPrintsTheVersionAndExitsZero() {
        let r = runCKStore(["--version"])
        #expect(r.status == 0)
        #expect(text(r.stdout).wholeMatch(of: /ckstore \d+\.\d+\.\d+\n/) != nil, "\(text(r.stdout).debugDescription)")
        #expect(r.stderr.isEmpty)
    }

    @Test func initIsIdempotent() {
        withTemporaryDirectory("init") { dir in
            let store = dir.file("s")
            let first = runCLI(["init"], store: store)
            #expect(first.status == 0)
            #expect(text(first.stdout) == "initialized an empty store at \(store)\n")
            let config = readFile("\(store)/config.json")
            #expect(config == Data(Store.defaultConfigurationText.utf8))
            setChunkSize(store: store, 4096)
            writeFile(dir.file("f.safetensors"), makeSafetensors(tensors: threeTensors(seed: 19)))
            putOK(dir.file("f.safetensors"), run: "r", step: 1, store: store)
            let before = storeSnapshot(store)
            let second = runCLI(["init"], store: store)
            #expect(second.status == 0)
            #expect(text(second.stdout) == "store already exists at \(store)\n")
            expectStoreUnchanged(store, since: before)
        }
    }

    @Test func putCreatesTheStoreWhenMissing() {
        withTemporaryDirectory("autocreate") { dir in
            let store = dir.file("newstore")
            let file = makeSafetensors(tensors: threeTensors(seed: 20))
            writeFile(dir.file("f.safetensors"), file)
            let r = runCLI(["put", "--run", "r", "--step", "1", dir.file("f.safetensors")], store: store)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(FileManager.default.fileExists(atPath: "\(store)/config.json"))
            #expect(getBytes("r@1", store: store) == Data(file))
        }
    }

    /// Where `init` creates the store, given --store / $CKSTORE_DIR / the working directory.
    enum LocationCase: String, Sendable, CaseIterable {
        case storeOptionBeatsEnvironment, storeOptionWithEqualsBeatsEnvironment, environmentBeatsWorkingDirectory,
            workingDirectoryWhenNeitherIsSet, workingDirectoryWhenEnvironmentIsEmpty
    }

    @Test(arguments: LocationCase.allCases)
    func storeLocationPrecedenceIsOptionThenEnvironmentThenWorkingDirectory(_ location: LocationCase) throws {
        try withTemporaryDirectory("where") { dir throws in
            let explicit = dir.file("explicit")
            let fromEnv = dir.file("fromenv")
            let cwd = dir.file("cwd")
            try FileManager.default.createDirectory(atPath: cwd, withIntermediateDirectories: false)
            let local = "\(cwd)/.ckstore"
            let args: [String]
            let env: [String: String]
            let expected: String
            switch location {
            case .storeOptionBeatsEnvironment:
                (args, env, expected) = (["--store", explicit, "init"], ["CKSTORE_DIR": fromEnv], explicit)
            case .storeOptionWithEqualsBeatsEnvironment:
                (args, env, expected) = (["--store=\(explicit)", "init"], ["CKSTORE_DIR": fromEnv], explicit)
            case .environmentBeatsWorkingDirectory:
                (args, env, expected) = (["init"], ["CKSTORE_DIR": fromEnv], fromEnv)
            case .workingDirectoryWhenNeitherIsSet:
                (args, env, expected) = (["init"], [:], local)
            case .workingDirectoryWhenEnvironmentIsEmpty:
                (args, env, expected) = (["init"], ["CKSTORE_DIR": ""], local)
            }
            let r = runCKStore(args, environment: childEnvironment(env), directory: cwd)
            #expect(r.status == 0, "\(r.stderr)")
            for candidate in [explicit, fromEnv, local] {
                let exists = FileManager.default.fileExists(atPath: "\(candidate)/ckstore.db")
                #expect(exists == (candidate == expected), "\(candidate): store \(exists ? "created" : "absent")")
            }
            // Later commands find the same store the same way.
            let ls = runCKStore(Array(args.dropLast()) + ["ls", "--json"], environment: childEnvironment(env), directory: cwd)
            #expect(ls.status == 0 && text(ls.stdout) == "{\"runs\":[]}\n", "\(ls.stderr)")
        }
    }
}
