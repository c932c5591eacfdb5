// Averaging directory snapshots (trees) through the Swift API and the command line: per-rank
// shards averaged bit for bit like one file, refusals naming the path, tensor and steps, side
// files and integer tensors copied from the newest input, the derived-tree cache, one-file
// selection, the lazy checkpoint, watch, and hostile destinations.
// Trees are put through the library (`Store.put(directory:…)`).

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Little-endian bytes of float values in `dtype` (F32, F16 or BF16).
private func floatBytes(_ values: [Float], _ dtype: String) -> [UInt8] {
    values.flatMap { v -> [UInt8] in
        switch dtype {
        case "F32": return withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) }
        case "F16": return withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { Array($0) }
        default: return withUnsafeBytes(of: UInt16(truncatingIfNeeded: v.bitPattern >> 16).littleEndian) { Array($0) }
        }
    }
}

/// The bytes-per-element of a float dtype used here.
private func width(_ dtype: String) -> Int { dtype == "F32" ? 4 : 2 }

/// A model of four float tensors (rows × columns) and an integer counter, at one step.
private struct Model {
    static let tensors: [(name: String, dtype: String, rows: Int, columns: Int)] = [
        ("embed.weight", "F32", 16, 37), ("layer.0.w", "BF16", 8, 129), ("layer.0.b", "F16", 4, 3), ("head.weight", "F32", 12, 300),
    ]

    /// Tensor `t`'s values at `step` (irrational steps, so that every rounding matters).
    static func values(_ t: Int, step: Int) -> [Float] {
        let spec = tensors[t]
        let scale = 1.5 + Double(step % 7)
        let phase = Double(step) * 0.113 + Double(t)
        return (0..<(spec.rows * spec.columns)).map { (i: Int) -> Float in
            let x: Double = Double(i) * 0.731 + phase
            return Float(sin(x) * scale)
        }
    }

    /// One safetensors file holding rows `rows` (a fraction of every tensor's rows) of every
    /// tensor at `step`, and the step counter.
    static func file(step: Int, rank: Int, ranks: Int) -> [UInt8] {
        var specs: [TensorSpec] = []
        for (t, spec) in tensors.enumerated() {
            let per = spec.rows / ranks
            let all = values(t, step: step)
            let slice = Array(all[(rank * per * spec.columns)..<((rank + 1) * per * spec.columns)])
            specs.append(TensorSpec(spec.name, spec.dtype, [per, spec.columns], floatBytes(slice, spec.dtype)))
        }
        specs.append(TensorSpec("step", "I64", [1], withUnsafeBytes(of: Int64(step).littleEndian) { Array($0) }))
        return makeSafetensors(tensors: specs, metadata: ["format": "pt", "rank": "\(rank)"])
    }

    /// The rank file name of rank `r` of `n`.
    static func rankPath(_ r: Int, _ n: Int) -> String {
        "rank-\(String(format: "%05d", r))-of-\(String(format: "%05d", n)).safetensors"
    }
}

/// Writes `files` (path → bytes) under a new directory and puts it as the directory snapshot
/// `run`@`step`; returns its digest.
@discardableResult
private func putTree(
    _ store: Store, _ dir: TemporaryDirectory, run: String, step: Int, files: [(String, [UInt8])], force: Bool = false
) throws -> SHA256Digest {
    let root = dir.file("src-\(run)-\(step)-\(UInt32.random(in: 0...UInt32.max))")
    for (path, bytes) in files {
        let full = "\(root)/\(path)"
        try FileManager.default.createDirectory(
            atPath: String(full[..<full.lastIndex(of: "/")!]), withIntermediateDirectories: true)
        writeFile(full, bytes)
    }
    return try store.put(directory: root, run: run, step: step, force: force).digest
}

/// Run "ranks": a 4-rank tree (plus config.json, changing per step, and a nested opaque file)
/// at steps 0, 10, …, `last`; run "one": the same tensors as one file per step.
private func makeRuns(_ store: Store, _ dir: TemporaryDirectory, last: Int = 40) throws {
    for step in stride(from: 0, through: last, by: 10) {
        var files: [(String, [UInt8])] = (0..<4).map { r in (Model.rankPath(r, 4), Model.file(step: step, rank: r, ranks: 4)) }
        files.append(("config.json", Array("{\"step\": \(step)}".utf8)))
        files.append(("extra/optimizer.pt", (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ step) }))
        try putTree(store, dir, run: "ranks", step: step, files: files)
        let one = dir.file("one-\(step).safetensors")
        writeFile(one, Model.file(step: step, rank: 0, ranks: 1))
        _ = try store.put(from: .file(one), run: "one", step: step)
    }
}

/// A safetensors file's `__metadata__` and each tensor's (dtype, shape, bytes).
private func parseFile(_ path: String) throws -> (metadata: [String: String], tensors: [String: (String, [Int], [UInt8])]) {
    let bytes = Array(readFile(path))
    let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
    let header = try SafetensorsHeader.parse(headerBytes: Array(bytes[8..<(8 + n)]))
    var tensors: [String: (String, [Int], [UInt8])] = [:]
    for t in header.tensors {
        tensors[t.name] = (t.dtype.rawValue, t.shape, Array(bytes[(8 + n + t.dataStart)..<(8 + n + t.dataEnd)]))
    }
    return (Dictionary((header.metadata ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { _, b in b }), tensors)
}

/// The files under `path`, relative, sorted.
private func listTree(_ path: String) -> [String] {
    let base = URL(fileURLWithPath: path)
    guard let e = FileManager.default.enumerator(at: base, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
    var result: [String] = []
    for case let url as URL in e where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
        result.append(String(url.standardizedFileURL.path.dropFirst(base.standardizedFileURL.path.count + 1)))
    }
    return result.sorted()
}

/// The CKStoreError `body` throws, or nil.
private func errorOf(_ body: () throws -> Void) -> CKStoreError? {
    do { try body() } catch let e as CKStoreError { return e } catch { return CKStoreError(.environment, "\(error)") }
    return nil
}

@Suite("Tree averaging") struct TreeAverageTests {
    @Test(arguments: LibraryBackend.all)
    func rankShardsAverageBitForBitLikeOneFile(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try backend.makeStore(dir, "store").cachingFirstRequests()
            try makeRuns(store, dir)
            let queries: [AverageQuery] = [
                .lawa(k: 3, stride: 10, at: 40), .ema(decay: 0.9, start: nil, stride: nil, at: 30), .swa(start: 10, stride: nil, at: 40),
            ]
            for (q, query) in queries.enumerated() {
                let treePlan = try store.plan(query, run: "ranks")
                let filePlan = try store.plan(query, run: "one")
                let out = dir.file("tree-\(q)")
                let report = try store.materialize(treePlan, output: .directory(out, force: false))
                #expect(report.files == 6 && !report.fromCache && report.derivedDigest != nil)
                #expect(report.copiedFiles == ["config.json", "extra/optimizer.pt"])
                #expect(report.copiedTensors == (0..<4).map { "\(Model.rankPath($0, 4)): step" })
                let single = dir.file("one-\(q).safetensors")
                _ = try store.materialize(filePlan, to: .file(single))
                let whole = try parseFile(single)
                #expect(listTree(out) == ["config.json", "extra/optimizer.pt"] + (0..<4).map { Model.rankPath($0, 4) })
                var joined: [String: [UInt8]] = [:]
                for r in 0..<4 {
                    let part = try parseFile("\(out)/\(Model.rankPath(r, 4))")
                    #expect(part.metadata["ckstore.recipe"] == treePlan.recipe)
                    #expect(part.metadata["ckstore.inputs"] == treePlan.inputsMetadata)
                    #expect(part.metadata["rank"] == "\(r)", "the newest input's own metadata is kept")
                    for spec in Model.tensors { joined[spec.name, default: []] += part.tensors[spec.name]!.2 }
                    #expect(part.tensors["step"]!.2 == whole.tensors["step"]!.2, "integer tensors come from the newest input")
                }
                for spec in Model.tensors {
                    #expect(joined[spec.name] == whole.tensors[spec.name]!.2, "\(query.variantName): \(spec.name) differs")
                }
                let newest = treePlan.inputs.last!.step!
                #expect(Array(readFile("\(out)/config.json")) == Array("{\"step\": \(newest)}".utf8))
                #expect(Array(readFile("\(out)/extra/optimizer.pt")) == (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ newest) })
            }
        }
    }

    @Test(arguments: LibraryBackend.all)
    func mismatchedTreesAreRefusedNamingThePathTensorAndSteps(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try backend.makeStore(dir, "store")
            let good = { (step: Int) in (0..<2).map { r in (Model.rankPath(r, 2), Model.file(step: step, rank: r, ranks: 2)) } }
            let tensor = { (name: String, dtype: String, shape: [Int]) in
                makeSafetensors(tensors: [TensorSpec(name, dtype, shape, [UInt8](repeating: 0, count: shape.reduce(width(dtype), *)))])
            }
            // (step-20 files, expected fragments of the message)
            let cases: [(String, [(String, [UInt8])], [String])] = [
                ("missing file", [good(20)[0]], [Model.rankPath(1, 2), "m0@20", "m0@10"]),
                ("extra file", good(20) + [("rank-9.safetensors", tensor("x", "F32", [2]))], ["rank-9.safetensors", "@20", "@10"]),
                ("missing tensor", [good(20)[0], (Model.rankPath(1, 2), tensor("embed.weight", "F32", [8, 37]))], ["layer.0.w"]),
                (
                    "dtype", [good(20)[0], (Model.rankPath(1, 2), Model.file(step: 20, rank: 1, ranks: 2).replacingBF16())],
                    ["layer.0.w", "F16"]
                ),
                ("shape", [good(20)[0], (Model.rankPath(1, 2), Model.file(step: 20, rank: 0, ranks: 4))], ["embed.weight", "[4, 37]"]),
            ]
            for (i, (name, files, fragments)) in cases.enumerated() {
                let run = "m\(i)"
                try putTree(store, dir, run: run, step: 10, files: good(10))
                try putTree(store, dir, run: run, step: 20, files: files)
                let error = errorOf { _ = try store.materialize(try store.plan(.lawa(k: 2, stride: 10, at: 20), run: run), to: nil) }
                #expect(error?.code == .badInput, "\(name): \(String(describing: error))")
                let message = error?.message ?? ""
                for fragment in fragments + ["\(run)@10", "\(run)@20"] {
                    #expect(message.contains(fragment.replacingOccurrences(of: "m0@", with: "\(run)@")), "\(name): \(message)")
                }
                if name != "missing file" && name != "extra file" {
                    #expect(message.contains("file '\(Model.rankPath(1, 2))'"), "\(name): \(message)")
                }
            }
            // A side file that differs (or exists only in the newest input) is not a mismatch.
            try putTree(store, dir, run: "side", step: 10, files: good(10) + [("a.json", [1])])
            try putTree(store, dir, run: "side", step: 20, files: good(20) + [("b.json", [2])])
            let report = try store.materialize(try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "side"), to: nil)
            #expect(report.copiedFiles == ["b.json"])
        }
    }

    @Test(arguments: LibraryBackend.all)
    func mixingSingleFilesAndTreesIsRefused(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try backend.makeStore(dir, "store")
            try makeRuns(store, dir, last: 10)
            let mean = try store.plan(.mean(refs: ["ranks@10", "one@10"], weights: nil), run: nil)
            let error = errorOf { _ = try store.materialize(mean, to: nil) }
            #expect(error?.code == .badInput)
            #expect(error?.message.contains("ranks@10 is a directory snapshot") == true, "\(String(describing: error))")
            #expect(error?.message.contains("one@10 is one safetensors file") == true)
            // A run whose layout changed from one file to a tree mid-run is refused the same way.
            let f = dir.file("r20.safetensors")
            writeFile(f, Model.file(step: 20, rank: 0, ranks: 1))
            _ = try store.put(from: .file(f), run: "ranks", step: 20)
            #expect(
                errorOf { _ = try store.materialize(try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "ranks"), to: nil) }?.code
                    == .badInput)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func aTreeResultIsCachedAndRecomputedWhenItsBlobsAreDamaged(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try backend.makeStore(dir, "store").cachingFirstRequests()
            try makeRuns(store, dir, last: 20)
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "ranks")
            let first = try store.materialize(plan, output: .directory(dir.file("a"), force: false))
            #expect(!first.fromCache)
            let digest = try #require(first.derivedDigest)
            #expect(try store.cachedResult(for: plan) == digest)
            #expect(try store.derivedSnapshots(run: "ranks").map(\.digest) == [digest])
            let second = try store.materialize(plan, output: .directory(dir.file("b"), force: false))
            #expect(second.fromCache && second.derivedDigest == digest && second.cacheNotes.isEmpty)
            #expect(second.bytesOut == first.bytesOut)
            for path in listTree(dir.file("a")) { #expect(readFile(dir.file("a/\(path)")) == readFile(dir.file("b/\(path)")), "\(path)") }
            // Damage a blob only the result uses: the next get drops the entry and recomputes.
            let tree = try #require(try store.metadata.tree(digest))
            let averaged = try #require(tree.entries.first { $0.kind == .safetensors })
            let manifest = try #require(try store.metadata.manifest(averaged.digest))
            let inputChunks = Set(
                try plan.inputs.flatMap { input in
                    try store.metadata.tree(input.digest)!.entries.compactMap { try store.metadata.manifest($0.digest) }
                        .flatMap { $0.tensors.flatMap { $0.chunks.map(\.hash) } }
                })
            let own = try #require(manifest.tensors.flatMap(\.chunks).first { !inputChunks.contains($0.hash) })
            backend.damageBlob(store, own.hash)
            let third = try store.materialize(plan, output: .directory(dir.file("c"), force: false))
            #expect(!third.fromCache && third.cacheNotes.count == 1, "\(third.cacheNotes)")
            #expect(third.derivedDigest == digest)
            for path in listTree(dir.file("a")) { #expect(readFile(dir.file("a/\(path)")) == readFile(dir.file("c/\(path)")), "\(path)") }
            #expect(!FileManager.default.fileExists(atPath: dir.file("c.old")))
            let fourth = try store.materialize(plan, output: .directory(dir.file("d"), force: false))
            #expect(fourth.fromCache, "the repaired result is served again")
            // A derived row whose tree lost a file's rows is dropped too, never an error.
            #expect(try store.metadata.dropDerived(key: plan.cacheKey, digest: digest))
            let fifth = try store.materialize(plan, to: nil, useCache: false)
            #expect(!fifth.fromCache && fifth.derivedDigest == nil)
            #expect(try store.cachedResult(for: plan) == nil, "--no-cache stores nothing")
        }
    }

    @Test(arguments: LibraryBackend.all)
    func oneFileOfATreeResultAndTheLazyCheckpoint(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory { dir in
            let store = try backend.makeStore(dir, "store")
            try makeRuns(store, dir, last: 20)
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "ranks")
            let path = Model.rankPath(2, 4)
            // Not cached yet: only that file is computed, nothing is stored.
            let alone = try store.materialize(plan, output: .treeFile(path, .file(dir.file("alone"))))
            #expect(!alone.fromCache && alone.files == 1 && alone.derivedDigest == nil)
            #expect(try store.cachedResult(for: plan) == nil)
            _ = try store.materialize(plan, output: .directory(dir.file("all"), force: false))
            let served = try store.materialize(plan, output: .treeFile(path, .file(dir.file("served"))))
            #expect(served.fromCache)
            #expect(readFile(dir.file("alone")) == readFile(dir.file("all/\(path)")))
            #expect(readFile(dir.file("served")) == readFile(dir.file("all/\(path)")))
            let side = try store.materialize(plan, output: .treeFile("config.json", .file(dir.file("config"))))
            #expect(Array(readFile(dir.file("config"))) == Array("{\"step\": 20}".utf8) && side.fromCache)
            #expect(errorOf { _ = try store.materialize(plan, output: .treeFile("nope.json", .file(dir.file("x")))) }?.code == .notFound)
            #expect(errorOf { _ = try store.materialize(plan, to: .standardOutput) }?.code == .usage)
            #expect(errorOf { _ = try store.materialize(plan, to: .file(dir.file("f"))) }?.code == .usage)
            let filePlan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "one")
            #expect(errorOf { _ = try store.materialize(filePlan, output: .directory(dir.file("d"), force: false)) }?.code == .usage)

            let lazy = try store.lazyCheckpoint(plan)
            #expect(lazy.isTree && lazy.files == listTree(dir.file("all")))
            #expect(lazy.copiedFiles == ["config.json", "extra/optimizer.pt"])
            #expect(try lazy.tensors(file: path).map(\.name) == Model.tensors.map(\.name) + ["step"])
            #expect(try lazy.metadata(file: path).contains { $0.key == "ckstore.recipe" && $0.value == plan.recipe })
            let expected = try parseFile(dir.file("all/\(path)"))
            #expect(try lazy.bytes(of: "layer.0.w", file: path) == expected.tensors["layer.0.w"]!.2)
            #expect(errorOf { _ = try lazy.bytes(of: "layer.0.w") }?.code == .usage, "the name is in four files")
            #expect(errorOf { _ = try lazy.bytes(of: "layer.0.w", file: "config.json") }?.code == .notFound)
            #expect(try lazy.values(of: "embed.weight", file: path).count == 4 * 37)
        }
    }

    @Test func hostileDestinationsAndPathsAreHandled() throws {
        try withTemporaryDirectory { dir in
            let store = try LibraryBackend.sqliteLocal.makeStore(dir, "store")
            let odd = ["a b/ç-ü ☃.safetensors", "-n/--force.safetensors", "deep/er/still/x.safetensors"]
            for step in [10, 20] {
                var files = odd.map { ($0, Model.file(step: step, rank: 0, ranks: 2)) }
                files.append(("sub/.hidden", [UInt8](repeating: 1, count: 3)))
                try putTree(store, dir, run: "h", step: step, files: files)
            }
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "h")
            // An existing file, a symlink (even to a directory) and a missing parent are refused.
            writeFile(dir.file("file"), [1])
            #expect(errorOf { _ = try store.materialize(plan, output: .directory(dir.file("file"), force: true)) }?.code == .badInput)
            try FileManager.default.createDirectory(atPath: dir.file("target"), withIntermediateDirectories: true)
            symlink(dir.file("target"), dir.file("link"))
            #expect(errorOf { _ = try store.materialize(plan, output: .directory(dir.file("link"), force: true)) }?.code == .badInput)
            #expect(
                errorOf { _ = try store.materialize(plan, output: .directory(dir.file("no/such/dir"), force: false)) }?.code == .badInput)
            // A non-empty directory only with force; a symlink inside it is removed, not followed.
            try FileManager.default.createDirectory(atPath: dir.file("full"), withIntermediateDirectories: true)
            writeFile(dir.file("outside"), [7])
            symlink(dir.file("outside"), dir.file("full/link"))
            #expect(errorOf { _ = try store.materialize(plan, output: .directory(dir.file("full"), force: false)) }?.code == .conflict)
            _ = try store.materialize(plan, output: .directory(dir.file("full") + "/", force: true))
            #expect(listTree(dir.file("full")) == (odd + ["sub/.hidden"]).sorted())
            #expect(Array(readFile(dir.file("outside"))) == [7])
            #expect(Array(readFile(dir.file("target/../outside"))) == [7])
            // Nothing is left beside the destinations: no temporary or moved-aside directory.
            let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(names.filter { $0.contains(".tmp-") || $0.contains(".old") }.isEmpty, "\(names)")
        }
    }

    @Test func aFailedAverageLeavesNothingUnderTheFinalName() throws {
        try withTemporaryDirectory { dir in
            let backend = LibraryBackend.sqliteLocal
            let store = try backend.makeStore(dir, "store")
            try makeRuns(store, dir, last: 10)
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 10), run: "ranks")
            let tree = try #require(try store.metadata.tree(plan.inputs[0].digest))
            let last = try #require(tree.entries.last { $0.kind == .safetensors })
            let chunk = try #require(try store.metadata.manifest(last.digest)?.tensors.last { $0.info.dtype == .f32 }?.chunks.last)
            backend.damageBlob(store, chunk.hash)
            let error = errorOf { _ = try store.materialize(plan, output: .directory(dir.file("out"), force: false)) }
            #expect(error?.code == .integrity)
            #expect(error?.message.contains("ranks@0: file '\(last.path)'") == true, "\(String(describing: error))")
            let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            #expect(!names.contains("out") && names.filter { $0.contains(".tmp-") }.isEmpty, "\(names)")
            #expect(try store.cachedResult(for: plan) == nil)
        }
    }

    @Test func theCommandLineAveragesTrees() throws {
        try withTemporaryDirectory { dir in
            let store = try LibraryBackend.sqliteLocal.makeStore(dir, "store").cachingFirstRequests()
            try makeRuns(store, dir, last: 20)
            let path = dir.file("store")
            let lawa = ["--run", "ranks", "--lawa", "k=2,stride=10", "--at", "20"]
            let dash = runCLI(["get"] + lawa + ["-o", "-"], store: path)
            #expect(dash.status == 2 && dash.stderr.contains("--file PATH"), "\(dash.stderr)")
            let get = runCLI(["get"] + lawa + ["-o", dir.file("out")], store: path)
            #expect(get.status == 0, "\(get.stderr)")
            #expect(
                get.stderr.contains("6 files") && get.stderr.contains("side files copied from ranks@20: config.json, extra/optimizer.pt"))
            let again = runCLI(["get"] + lawa + ["-o", dir.file("out")], store: path)
            #expect(again.status == 1 && again.stderr.contains("--force"), "a non-empty directory needs --force: \(again.stderr)")
            let forced = runCLI(["get"] + lawa + ["-o", dir.file("out"), "--force"], store: path)
            #expect(forced.status == 0 && forced.stderr.contains("from the cache"), "\(forced.stderr)")
            let one = runCLI(["get"] + lawa + ["--file", Model.rankPath(1, 4), "-o", "-"], store: path)
            #expect(one.status == 0 && Array(one.stdout) == Array(readFile(dir.file("out/\(Model.rankPath(1, 4))"))))
            let show = runCLI(["show"] + lawa, store: path)
            #expect(text(show.stdout).contains("config.json") && text(show.stdout).contains("copied from ranks@20"), "\(text(show.stdout))")
            #expect(text(show.stdout).contains("averaged, 5 tensors") && text(show.stdout).contains("cached   yes"))
            let json = runCLI(["show", "--json"] + lawa, store: path)
            #expect(text(json.stdout).contains("\"copied_files\"") && text(json.stdout).contains("\"action\""), "\(text(json.stdout))")
            let derived = runCLI(["ls", "--derived", "--run", "ranks"], store: path)
            #expect(text(derived.stdout).contains("lawa run=ranks k=2 stride=10 at=20"), "\(text(derived.stdout))")
            let fsck = runCLI(["fsck"], store: path)
            #expect(fsck.status == 0, "\(text(fsck.stdout))\(fsck.stderr)")
            let mixed = runCLI(["get", "--mean", "ranks@10,one@10", "-o", dir.file("m")], store: path)
            #expect(mixed.status == 1 && mixed.stderr.contains("directory snapshot"), "\(mixed.stderr)")
        }
    }

    @Test func watchHandsTheCommandTheResultDirectory() throws {
        try withTemporaryDirectory { dir in
            let store = try LibraryBackend.sqliteLocal.makeStore(dir, "store")
            try makeRuns(store, dir, last: 20)
            let log = dir.file("log")
            let exec = "test -d {path} && ls {path} | tr '\\n' ' ' >> \(log) && cat {path}/config.json >> \(log) && echo >> \(log)"
            let watch = runCLI(
                ["watch", "--run", "ranks", "--lawa", "k=2,stride=10", "--exec", exec, "--until", "20", "--poll", "0.05", "--raw"],
                store: dir.file("store"))
            #expect(watch.status == 0, "\(watch.stderr)")
            let lines = String(decoding: readFile(log), as: UTF8.self).split(separator: "\n")
            // --raw: the snapshots at 0, 10 and 20 (recreated directories), and the averages at 10 and 20.
            #expect(lines.count == 5, "\(lines)")
            #expect(lines.allSatisfy { $0.contains("rank-00003-of-00004.safetensors") && $0.contains("extra") }, "\(lines)")
            #expect(lines.filter { $0.contains("{\"step\": 10}") }.count == 2 && lines.filter { $0.contains("{\"step\": 20}") }.count == 2)
            // Each window is asked for once: under second-hit, the default, nothing is cached.
            #expect(try store.derivedSnapshots(run: "ranks").isEmpty, "watch cached a one-off average")
        }
    }
}

extension [UInt8] {
    /// This safetensors file with its BF16 tensors declared F16 (same sizes).
    fileprivate func replacingBF16() -> [UInt8] {
        let n = Int(self[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        var header = String(decoding: self[8..<(8 + n)], as: UTF8.self).replacingOccurrences(of: "\"BF16\"", with: "\"F16\"")
        while header.utf8.count < n { header += " " }  // same length: the data offsets stay
        return Array(self[0..<8]) + Array(header.utf8) + Array(self[(8 + n)...])
    }
}
