// End-to-end: retention policies (`gc --keep-last/--keep-every/--keep-lawa`, their union, --run
// scoping, derived snapshots, --dry-run), `rm`, and garbage collection of what crashed puts
// leave behind. Every test checks both what is listed and what is on disk: removed snapshots'
// blobs are gone, shared blobs survive, and what is kept reads back byte-exact.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Run `a` holds steps 0, 100, …, 1000; run `b` steps 0…4. Every snapshot has `embed` (the same
/// 4096 bytes everywhere: one blob shared by all) and `w` (4096 bytes of its own: one blob).
private struct RetentionFixture {
    let dir: TemporaryDirectory
    let store: String
    /// run → step → file bytes.
    private(set) var files: [String: [Int: [UInt8]]] = [:]
    /// run → step → the bytes of `w`.
    private(set) var weights: [String: [Int: [UInt8]]] = [:]
    let embed: [UInt8]

    static let stepsA = Array(stride(from: 0, through: 1000, by: 100))
    static let stepsB = [0, 1, 2, 3, 4]

    init(_ dir: TemporaryDirectory, sourceLocation: SourceLocation = #_sourceLocation) {
        self.dir = dir
        store = makeStore(in: dir, sourceLocation: sourceLocation)
        // Finite float values, so that an average of copies of `embed` is `embed` exactly.
        embed = (0..<1024).flatMap { i -> [UInt8] in
            let value = Float(i % 97 - 48) * 0.375
            return withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
        }
        for step in Self.stepsA { put(run: "a", step: step, sourceLocation: sourceLocation) }
        for step in Self.stepsB { put(run: "b", step: step, sourceLocation: sourceLocation) }
    }

    /// Puts a new snapshot RUN@STEP (fresh `w`, shared `embed`).
    mutating func put(run: String, step: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        var rng = SplitMix64(seed: UInt64(step) &* 7919 &+ (run == "a" ? 1 : 2))
        let w = rng.bytes(4096)
        let bytes = makeSafetensors(tensors: [TensorSpec("embed", "F32", [1024], embed), TensorSpec("w", "F32", [1024], w)])
        let path = dir.file("\(run)-\(step).safetensors")
        writeFile(path, bytes, sourceLocation: sourceLocation)
        putOK(path, run: run, step: step, store: store, sourceLocation: sourceLocation)
        files[run, default: [:]][step] = bytes
        weights[run, default: [:]][step] = w
    }

    /// The blob file of RUN@STEP's own tensor `w`.
    func weightBlob(_ run: String, _ step: Int) -> String { blobPath(store: store, chunk: weights[run]![step]!) }

    var embedBlob: String { blobPath(store: store, chunk: embed) }
}

/// The steps `ls --run RUN --json` lists.
private func listedSteps(_ run: String, store: String, sourceLocation: SourceLocation = #_sourceLocation) -> [Int] {
    let object = cliJSON(["ls", "--run", run], store: store, sourceLocation: sourceLocation)
    return ((object["snapshots"] as? [[String: Any]]) ?? []).compactMap { $0["step"] as? Int }
}

/// What rm/gc printed: the snapshots and derived recipes named, the blob count and freed bytes
/// of the summary line.
private struct CollectionOutput {
    var snapshots: [String] = []
    var derived: [String] = []
    var blobs = -1
    var freed = -1
}

private func parseCollection(_ result: CLIResult, dryRun: Bool, sourceLocation: SourceLocation = #_sourceLocation) -> CollectionOutput {
    #expect(result.status == 0, "rm/gc failed: \(result.stderr)", sourceLocation: sourceLocation)
    let verb = dryRun ? "would remove " : "removed "
    var out = CollectionOutput()
    let lines = outputLines(text(result.stdout))
    for line in lines.dropLast() {
        if line.hasPrefix("keep ") { continue }  // what --keep-lawa keeps
        guard line.hasPrefix(verb) else {
            Issue.record("unexpected line \(line.debugDescription)", sourceLocation: sourceLocation)
            continue
        }
        let rest = String(line.dropFirst(verb.count))
        if rest.hasPrefix("derived: ") { out.derived.append(String(rest.dropFirst(9))) } else { out.snapshots.append(rest) }
    }
    // "removed 3 snapshot(s), 0 derived, 3 blob file(s); freed 12.4 kB (12384 bytes)"
    if let summary = lines.last, summary.hasPrefix(verb) {
        let words = summary.split(separator: " ")
        if let i = words.firstIndex(where: { $0.hasPrefix("file(s)") }), i >= 2 { out.blobs = Int(words[i - 2]) ?? -1 }
        if let open = summary.lastIndex(of: "("), summary.hasSuffix(" bytes)") {
            out.freed = Int(summary[summary.index(after: open)...].dropLast(" bytes)".count)) ?? -1
        }
        #expect(summary.contains(dryRun ? "would free" : "freed"), "\(summary)", sourceLocation: sourceLocation)
    } else {
        Issue.record("no summary line: \(text(result.stdout).debugDescription)", sourceLocation: sourceLocation)
    }
    return out
}

/// The total size of the files under objects/ (blobs and temporary files).
private func objectBytes(_ store: String) -> Int { objectFiles(store).values.reduce(0, +) }

@Suite("Retention and garbage collection")
struct RetentionTests {
    /// Applies `gc ARGS` to the fixture and checks that exactly `kept` steps of run `a` remain,
    /// run `b` is untouched when `scoped`, removed snapshots' own blobs are gone, the shared blob
    /// survives, and the kept snapshots read back byte-exact.
    private func expectGC(
        _ args: [String], keepsOfA kept: [Int], scoped: Bool = true, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        withTemporaryDirectory("gc") { dir in
            let f = RetentionFixture(dir, sourceLocation: sourceLocation)
            let bBefore = runCLI(["ls", "--run", "b", "--json"], store: f.store).stdout
            let r = runCLI(["gc"] + (scoped ? ["--run", "a"] : []) + args, store: f.store, sourceLocation: sourceLocation)
            let out = parseCollection(r, dryRun: false, sourceLocation: sourceLocation)
            let removed = RetentionFixture.stepsA.filter { !kept.contains($0) }
            #expect(out.snapshots == removed.map { "a@\($0)" }, "gc \(args) removed", sourceLocation: sourceLocation)
            #expect(out.blobs == removed.count, "one own blob per removed snapshot", sourceLocation: sourceLocation)
            #expect(listedSteps("a", store: f.store) == kept, "gc \(args) keeps", sourceLocation: sourceLocation)
            if scoped {
                #expect(
                    runCLI(["ls", "--run", "b", "--json"], store: f.store).stdout == bBefore, "run b untouched",
                    sourceLocation: sourceLocation)
            }
            for step in removed {
                #expect(
                    !FileManager.default.fileExists(atPath: f.weightBlob("a", step)), "a@\(step)'s blob removed",
                    sourceLocation: sourceLocation)
            }
            #expect(FileManager.default.fileExists(atPath: f.embedBlob), "the shared blob survives", sourceLocation: sourceLocation)
            for step in kept {
                #expect(
                    getBytes("a@\(step)", store: f.store) == Data(f.files["a"]![step]!), "a@\(step) byte-exact",
                    sourceLocation: sourceLocation)
            }
            let fsck = runCLI(["fsck"], store: f.store)
            #expect(
                fsck.status == 0 && !text(fsck.stdout).contains("note:"), "clean after gc: \(text(fsck.stdout))",
                sourceLocation: sourceLocation)
        }
    }

    @Test func keepLastKeepsTheLastNSteps() {
        expectGC(["--keep-last", "3"], keepsOfA: [800, 900, 1000])
    }

    @Test func keepEveryKeepsTheMultiplesOfN() {
        expectGC(["--keep-every", "300"], keepsOfA: [0, 300, 600, 900])
    }

    @Test func keepLAWAKeepsExactlyTheLatestWindow() {
        expectGC(["--keep-lawa", "k=3,stride=200"], keepsOfA: [600, 800, 1000])
    }

    /// Of the window latest, latest − NU, …, only the steps that are stored are kept (750 is
    /// not); the newest complete window is kept too (k=2,stride=300: 1000's window is 1000 and
    /// 700, complete). With k=3,stride=250 no window is complete (every other member is off the
    /// 100-grid): gc cannot tell what LAWA needs and keeps the whole run (issue 9, item 2).
    @Test func keepLAWAKeepsOnlyWhatIsStoredOfTheWindow() {
        expectGC(["--keep-lawa", "k=2,stride=300"], keepsOfA: [700, 1000])
        expectGC(["--keep-lawa", "k=3,stride=250"], keepsOfA: RetentionFixture.stepsA)
    }

    @Test func severalPoliciesKeepTheirUnion() {
        // last 2: 900, 1000; every 500: 0, 500, 1000; lawa k=2,stride=300: 700, 1000.
        expectGC(["--keep-last", "2", "--keep-every", "500", "--keep-lawa", "k=2,stride=300"], keepsOfA: [0, 500, 700, 900, 1000])
    }

    /// Without --run, the policy applies to every run.
    @Test func withoutRunThePolicyAppliesToEveryRun() {
        withTemporaryDirectory("gc-all") { dir in
            let f = RetentionFixture(dir)
            let out = parseCollection(runCLI(["gc", "--keep-last", "2"], store: f.store), dryRun: false)
            #expect(out.snapshots == (0...8).map { "a@\($0 * 100)" } + ["b@0", "b@1", "b@2"])
            #expect(listedSteps("a", store: f.store) == [900, 1000])
            #expect(listedSteps("b", store: f.store) == [3, 4])
        }
    }

    /// After gc --keep-lawa k=3,stride=200, the LAWA at the latest step still works, and so does
    /// the LAWA at the next step on the grid once it is put (it needs 1200, 1000, 800).
    @Test func keepLAWALeavesTheNextLAWAOnTheGridComputable() {
        withTemporaryDirectory("gc-lawa") { dir in
            var f = RetentionFixture(dir)
            _ = parseCollection(runCLI(["gc", "--run", "a", "--keep-lawa", "k=3,stride=200"], store: f.store), dryRun: false)
            let now = runCLI(
                ["get", "--run", "a", "--lawa", "k=3,stride=200", "--at", "1000", "-o", dir.file("now.safetensors")], store: f.store)
            #expect(now.status == 0, "LAWA at 1000 after gc: \(now.stderr)")
            f.put(run: "a", step: 1200)
            let next = runCLI(
                ["get", "--run", "a", "--lawa", "k=3,stride=200", "--at", "1200", "-o", dir.file("next.safetensors")], store: f.store)
            #expect(next.status == 0, "LAWA at 1200 after putting 1200: \(next.stderr)")
            // The average of `embed` (identical in all inputs) is `embed` itself.
            let output = Array(readFile(dir.file("next.safetensors")))
            #expect(output.count > 8 + 4096 * 2)
            #expect(
                output.suffix(8192).prefix(4096).elementsEqual(f.embed) || output.suffix(4096).elementsEqual(f.embed),
                "embed averages to itself")
            // A LAWA needing a removed step fails cleanly, naming it.
            let gone = runCLI(
                ["get", "--run", "a", "--lawa", "k=3,stride=200", "--at", "900", "-o", dir.file("gone.safetensors")], store: f.store)
            expectOneErrorLine(gone, status: 1, mentions: ["700", "500"])
        }
    }

    /// gc drops derived snapshots (cached averages) by default, and keeps them with --keep-derived;
    /// a dropped average is recomputed on the next query.
    @Test func derivedSnapshotsAreDroppedUnlessKept() throws {
        try withTemporaryDirectory("gc-derived") { dir throws in
            let f = RetentionFixture(dir)
            cacheFirstRequests(store: f.store)
            let query = ["get", "--run", "a", "--lawa", "k=2,stride=100", "--at", "1000"]
            let first = runCLI(query + ["-o", dir.file("first.safetensors")], store: f.store)
            #expect(first.status == 0 && first.stderr.contains("computed"), "\(first.stderr)")
            let derived = cliJSON(["ls", "--derived"], store: f.store)["derived"] as? [[String: Any]] ?? []
            try #require(derived.count == 1)
            let recipe = try #require(derived[0]["recipe"] as? String)

            let kept = parseCollection(runCLI(["gc", "--keep-derived"], store: f.store), dryRun: false)
            #expect(kept.derived.isEmpty && kept.snapshots.isEmpty && kept.blobs == 0)
            #expect((cliJSON(["ls", "--derived"], store: f.store)["derived"] as? [[String: Any]])?.count == 1)
            let cached = runCLI(query + ["-o", dir.file("cached.safetensors")], store: f.store)
            #expect(cached.stderr.contains("from the cache"), "\(cached.stderr)")

            let blobsBefore = objectFiles(f.store)
            let dropped = parseCollection(runCLI(["gc"], store: f.store), dryRun: false)
            #expect(dropped.derived == [recipe])
            #expect(dropped.snapshots.isEmpty, "no policy: no snapshot removed")
            #expect(dropped.blobs > 0, "the average's own blobs are freed")
            #expect((cliJSON(["ls", "--derived"], store: f.store)["derived"] as? [[String: Any]])?.isEmpty == true)
            #expect(objectFiles(f.store).count == blobsBefore.count - dropped.blobs)
            #expect(FileManager.default.fileExists(atPath: f.embedBlob), "embed is an input's blob too")
            let again = runCLI(query + ["-o", dir.file("again.safetensors")], store: f.store)
            #expect(again.stderr.contains("computed"), "recomputed after gc: \(again.stderr)")
            #expect(readFile(dir.file("again.safetensors")) == readFile(dir.file("first.safetensors")), "same bytes")
        }
    }

    /// --dry-run lists what would go and the bytes it would free, and changes nothing; the real
    /// run then removes the same things, and the bytes it reports equal the drop in blob bytes.
    @Test func dryRunChangesNothingAndPredictsTheRealRun() {
        withTemporaryDirectory("gc-dry") { dir in
            let f = RetentionFixture(dir)
            cacheFirstRequests(store: f.store)
            _ = runCLI(["get", "--run", "a", "--lawa", "k=2,stride=100", "--at", "1000", "-o", dir.file("x.safetensors")], store: f.store)
            let args = ["gc", "--keep-last", "3", "--keep-every", "500"]
            let before = storeSnapshot(f.store)
            let bytesBefore = objectBytes(f.store)
            let dry = parseCollection(runCLI(args + ["--dry-run"], store: f.store), dryRun: true)
            expectStoreUnchanged(f.store, since: before)
            // a: last 3 (800, 900, 1000) ∪ multiples of 500 (0, 500, 1000); b: 2, 3, 4 ∪ 0.
            #expect(dry.snapshots == ["a@100", "a@200", "a@300", "a@400", "a@600", "a@700", "b@1"])
            #expect(dry.derived.count == 1)
            #expect(dry.freed > 0)

            let real = parseCollection(runCLI(args, store: f.store), dryRun: false)
            #expect(real.snapshots == dry.snapshots && real.derived == dry.derived && real.blobs == dry.blobs)
            #expect(real.freed == dry.freed, "dry run predicted \(dry.freed) bytes, the real run freed \(real.freed)")
            #expect(bytesBefore - objectBytes(f.store) == real.freed, "freed bytes equal the drop in on-disk blob bytes")
            // Nothing left to do.
            let idle = parseCollection(runCLI(["gc", "--dry-run"], store: f.store), dryRun: true)
            #expect(idle.snapshots.isEmpty && idle.derived.isEmpty && idle.blobs == 0 && idle.freed == 0)
        }
    }

    /// rm removes one snapshot and only the blobs no other snapshot uses.
    @Test func rmRemovesOnlyBlobsNoOtherSnapshotUses() {
        withTemporaryDirectory("rm") { dir in
            var f = RetentionFixture(dir)
            // a@1100 is the same file as a@500: after rm a@500 all of its blobs are still in use.
            writeFile(dir.file("copy.safetensors"), f.files["a"]![500]!)
            putOK(dir.file("copy.safetensors"), run: "a", step: 1100, store: f.store)
            let sharedW = f.weightBlob("a", 500)
            let bytesBefore = objectBytes(f.store)
            let first = parseCollection(runCLI(["rm", "a@500"], store: f.store), dryRun: false)
            #expect(first.snapshots == ["a@500"] && first.blobs == 0 && first.freed == 0, "\(first)")
            #expect(FileManager.default.fileExists(atPath: sharedW))
            #expect(
                getBytes("a@1100", store: f.store) == Data(f.files["a"]![500]!), "the snapshot sharing the chunks reads back byte-exact")
            #expect(objectBytes(f.store) == bytesBefore)

            // a@600's `w` is its own; `embed` is shared with every other snapshot.
            let size = objectFiles(f.store)["\(sha256Hex(f.weights["a"]![600]!).prefix(2))/\(sha256Hex(f.weights["a"]![600]!))"] ?? -1
            let second = parseCollection(runCLI(["rm", "a@600"], store: f.store), dryRun: false)
            #expect(second.snapshots == ["a@600"] && second.blobs == 1 && second.freed == size, "\(second)")
            #expect(!FileManager.default.fileExists(atPath: f.weightBlob("a", 600)))
            #expect(FileManager.default.fileExists(atPath: f.embedBlob))
            #expect(!listedSteps("a", store: f.store).contains(600))
            for step in [0, 700, 1000] { #expect(getBytes("a@\(step)", store: f.store) == Data(f.files["a"]![step]!)) }
            #expect(getBytes("b@3", store: f.store) == Data(f.files["b"]![3]!))
            let get = runCLI(["get", "a@600", "-o", "-"], store: f.store)
            expectOneErrorLine(get, status: 1, mentions: ["a@600"])
            f.put(run: "a", step: 600)  // the step can be put again
            #expect(getBytes("a@600", store: f.store) == Data(f.files["a"]![600]!))
        }
    }

    /// rm of a missing ref exits 1 and removes nothing — not even the refs that do exist.
    @Test(arguments: [(["a@550"], "a@550"), (["zzz@1"], "run 'zzz'"), (["a@500", "a@550"], "a@550"), (["a@latest", "b@9"], "b@9")])
    func rmOfAMissingRefExitsOneAndRemovesNothing(_ refs: [String], mention: String) {
        withTemporaryDirectory("rm-missing") { dir in
            let f = RetentionFixture(dir)
            let before = storeSnapshot(f.store)
            let r = runCLI(["rm"] + refs, store: f.store)
            expectOneErrorLine(r, status: 1, mentions: [mention])
            expectStoreUnchanged(f.store, since: before)
        }
    }

    /// rm --dry-run changes nothing.
    @Test func rmDryRunChangesNothing() {
        withTemporaryDirectory("rm-dry") { dir in
            let f = RetentionFixture(dir)
            let before = storeSnapshot(f.store)
            let out = parseCollection(runCLI(["rm", "a@300", "b@latest", "--dry-run"], store: f.store), dryRun: true)
            #expect(out.snapshots == ["a@300", "b@4"] && out.blobs == 2)
            expectStoreUnchanged(f.store, since: before)
        }
    }

    /// A crash during put leaves blob files no row refers to and `.tmp-` files; fsck notes them,
    /// stats counts them as orphans (not as stored), and gc removes exactly them.
    @Test func gcRemovesOrphanBlobsAndTemporaryFilesLeftByACrash() throws {
        try withTemporaryDirectory("gc-orphans") { dir throws in
            let f = RetentionFixture(dir)
            let statsBefore = cliJSON(["stats"], store: f.store)
            let referenced = objectFiles(f.store)
            // Simulate a put that crashed after writing blobs: copy blobs of content this store
            // does not hold from another store, and leave temporary files beside them.
            let other = makeStore(in: dir, name: "other")
            var rng = SplitMix64(seed: 0xC4A5)
            let lost = TensorSpec("lost", "F32", [3000], rng: &rng)  // 3 chunks
            writeFile(dir.file("lost.safetensors"), makeSafetensors(tensors: [lost]))
            putOK(dir.file("lost.safetensors"), run: "x", step: 1, store: other)
            var planted: [String] = []
            for chunk in chunks(of: lost.bytes, dtype: "F32", chunkSize: 4096) {
                let target = blobPath(store: f.store, chunk: chunk)
                try FileManager.default.createDirectory(
                    atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: blobPath(store: other, chunk: chunk), toPath: target)
                planted.append(target)
            }
            let temp1 = planted[0] + ".tmp-12345-1700000000000000000-0"
            writeFile(temp1, Array(readFile(planted[1]).prefix(100)))  // a half-written blob
            let temp2 = f.weightBlob("a", 0) + ".tmp-12345-1700000000000000001-1"
            writeFile(temp2, [])
            let plantedBytes = objectBytes(f.store) - referenced.values.reduce(0, +)

            let fsck = runCLI(["fsck"], store: f.store)
            #expect(fsck.status == 0)
            #expect(
                text(fsck.stdout).contains("note: 3 orphan blob(s)") && text(fsck.stdout).contains("note: 2 temporary file(s)"),
                "\(text(fsck.stdout))")
            let stats = cliJSON(["stats"], store: f.store)
            // stats counts the temporary files with the orphans.
            #expect(stats["orphan_blobs"] as? Int == 5 && stats["orphan_bytes"] as? Int == plantedBytes, "\(stats)")
            #expect(stats["stored_bytes"] as? Int == statsBefore["stored_bytes"] as? Int, "orphans are not counted as stored")
            #expect(stats["blobs"] as? Int == statsBefore["blobs"] as? Int)

            let dry = parseCollection(runCLI(["gc", "--dry-run"], store: f.store), dryRun: true)
            #expect(dry.blobs == 5 && dry.freed == plantedBytes, "\(dry), planted \(plantedBytes) bytes")
            let out = parseCollection(runCLI(["gc"], store: f.store), dryRun: false)
            #expect(out.snapshots.isEmpty && out.derived.isEmpty)
            #expect(out.blobs == 5 && out.freed == plantedBytes, "\(out)")
            #expect(objectFiles(f.store) == referenced, "exactly the planted files are gone")
            let after = runCLI(["fsck", "--full"], store: f.store)
            #expect(after.status == 0 && !text(after.stdout).contains("note:"), "\(text(after.stdout))")
            for (run, steps) in f.files {
                for (step, bytes) in steps { #expect(getBytes("\(run)@\(step)", store: f.store) == Data(bytes)) }
            }
        }
    }

    /// gc --run of a run that does not exist exits 1 and removes nothing (not even garbage).
    @Test func gcOfAMissingRunExitsOneAndChangesNothing() {
        withTemporaryDirectory("gc-norun") { dir in
            let f = RetentionFixture(dir)
            let before = storeSnapshot(f.store)
            let r = runCLI(["gc", "--run", "nope", "--keep-last", "1"], store: f.store)
            expectOneErrorLine(r, status: 1, mentions: ["'nope'"])
            expectStoreUnchanged(f.store, since: before)
        }
    }

    /// Invalid policies are usage errors (exit 2) and change nothing.
    @Test(arguments: [
        ["--keep-every", "0"], ["--keep-last", "0"], ["--keep-last", "-1"], ["--keep-lawa", "k=0,stride=10"], ["--keep-lawa", "k=2"],
        ["--keep-lawa", "stride=5"],
        ["--keep-last", "x"],
    ])
    func invalidPoliciesAreUsageErrors(_ args: [String]) {
        withTemporaryDirectory("gc-usage") { dir in
            let store = makeStore(in: dir)
            var rng = SplitMix64(seed: 3)
            writeFile(dir.file("f.safetensors"), makeSafetensors(tensors: [TensorSpec("w", "F32", [16], rng: &rng)]))
            putOK(dir.file("f.safetensors"), run: "r", step: 1, store: store)
            let before = storeSnapshot(store)
            let r = runCLI(["gc"] + args, store: store)
            #expect(r.status == 2, "gc \(args): \(r.stderr)")
            #expect(outputLines(r.stderr).first?.hasPrefix("ckstore: error: ") == true, "\(r.stderr)")
            expectStoreUnchanged(store, since: before)
        }
    }
}
