// Directory snapshots through the library API, on every library backend: put(directory:),
// restoreTree, restoreFile, statistics, remove/gc, check and copy of trees, and the walk's
// refusals.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends

/// A Hugging Face style checkpoint: two shards, their index, config, a tokenizer in a
/// subfolder, and an opaque binary file; `step` changes shard 2 only.
private func hfFiles(step: Int) -> [String: [UInt8]] {
    func floats(_ n: Int, _ seed: Int) -> [UInt8] {
        (0..<n).flatMap { i -> [UInt8] in
            let v = Float(((i * 7919 + seed * 104_729) % 2001) - 1000) / 1000
            return withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init)
        }
    }
    return [
        "model-00001-of-00002.safetensors": makeSafetensors(tensors: [TensorSpec("embed", "F32", [64, 32], floats(2048, 1))]),
        "model-00002-of-00002.safetensors": makeSafetensors(tensors: [
            TensorSpec("head", "F32", [32, 16], floats(512, 100 + step)),
            TensorSpec("bias", "BF16", [16], [UInt8](repeating: 0, count: 32)),
        ]),
        "model.safetensors.index.json": Array(#"{"weight_map":{"embed":"model-00001-of-00002.safetensors"}}"#.utf8),
        "config.json": Array(#"{"hidden_size":32}"#.utf8),
        "tokenizer/tokenizer.json": Array(String(repeating: #"{"t":1},"#, count: 2000).utf8),
        "optimizer.pt": (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) },
    ]
}

private func writeTree(_ root: String, _ files: [String: [UInt8]]) {
    for (path, bytes) in files {
        let full = "\(root)/\(path)"
        try? FileManager.default.createDirectory(
            atPath: String(full[..<full.lastIndex(of: "/")!]), withIntermediateDirectories: true)
        writeFile(full, bytes)
    }
}

private func readTree(_ root: String) -> [String: [UInt8]] {
    var result: [String: [UInt8]] = [:]
    let enumerator = FileManager.default.enumerator(atPath: root)
    while let path = enumerator?.nextObject() as? String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: "\(root)/\(path)", isDirectory: &isDirectory), !isDirectory.boolValue {
            result[path] = Array(readFile("\(root)/\(path)"))
        }
    }
    return result
}

@Suite("Tree snapshots (library)")
struct TreeSnapshotTests {
    @Test(arguments: LibraryBackend.all)
    func aDirectoryRoundTripsByteExactAndItsShardsKeepTheirSingleFileDigests(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("tree-roundtrip") { dir in
            let store = try backend.makeStore(dir, "store")
            let files = hfFiles(step: 1)
            writeTree(dir.file("src"), files)
            let report = try store.put(directory: dir.file("src"), run: "r", step: 1)
            #expect(report.fileCount == 6 && report.outcome == .created)
            #expect(report.bytesIn == files.values.reduce(0) { $0 + $1.count })
            let info = try #require(try store.snapshots(run: "r").first)
            #expect(info.digest == report.digest && info.kind == .tree && info.fileCount == 6 && info.tensorCount == 3)
            let resolved = try store.resolve(.step(run: "r", step: 1))
            #expect(try store.contentKind(of: resolved) == .tree)
            _ = try store.restoreTree(resolved, toDirectory: dir.file("out"), force: false)
            #expect(readTree(dir.file("out")) == files)
            for (path, bytes) in files {
                _ = try store.restoreFile(resolved, path: path, to: .file(dir.file("one")))
                #expect(Array(readFile(dir.file("one"))) == bytes, "\(path)")
            }
            // Files of a tree go through the single-file pipeline: a shard put alone has the digest
            // its tree entry records.
            let (_, tree) = try store.tree(of: resolved)
            writeFile(dir.file("shard.safetensors"), files["model-00002-of-00002.safetensors"]!)
            let single = try store.put(from: .file(dir.file("shard.safetensors")), run: "single", step: 1)
            #expect(tree.tree.entry(path: "model-00002-of-00002.safetensors")?.digest == single.digest)
            #expect(tree.tree.entry(path: "optimizer.pt")?.kind == .bytes)
            // The same tree again is unchanged; another one at the step is a conflict.
            #expect(try store.put(directory: dir.file("src"), run: "r", step: 1).outcome == .unchanged)
            writeTree(dir.file("src2"), hfFiles(step: 2))
            let conflict = #expect(throws: CKStoreError.self) { _ = try store.put(directory: dir.file("src2"), run: "r", step: 1) }
            #expect(conflict?.code == .conflict)
            #expect(
                try store.put(directory: dir.file("src2"), run: "r", step: 1, force: true).outcome == .replaced(previous: report.digest))
        }
    }

    @Test(arguments: LibraryBackend.all)
    func sideFilesAreStoredOnceAndRemovalKeepsWhatOtherStepsShare(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("tree-dedup") { dir in
            let store = try backend.makeStore(dir, "store")
            for step in 1...3 {
                writeTree(dir.file("s\(step)"), hfFiles(step: step))
                let report = try store.put(directory: dir.file("s\(step)"), run: "r", step: step)
                if step > 1 { #expect(report.newChunks == 1, "only shard 2's head changes") }
            }
            let stats = try store.statistics()
            let side = hfFiles(step: 1).filter { !$0.key.hasSuffix(".safetensors") }.values.reduce(0) { $0 + $1.count }
            #expect(stats.sideFiles == 12 && stats.sideFileBytes == 3 * side && stats.sideFileUniqueBytes == side)
            let blobs = storedBlobs(store).count
            _ = try store.remove([.step(run: "r", step: 1)])
            #expect(storedBlobs(store).count == blobs - 1)
            _ = try store.collectGarbage(run: "r", policy: RetentionPolicy(keepLast: 1))
            #expect(try store.snapshots(run: "r").map(\.step) == [3])
            _ = try store.restoreTree(try store.resolve(.step(run: "r", step: 3)), toDirectory: dir.file("out"), force: false)
            #expect(readTree(dir.file("out")) == hfFiles(step: 3))
            #expect(try store.check(full: true).problems.isEmpty)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func checkNamesTheSnapshotAndTheFileOfADamagedSideFileBlob(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("tree-fsck") { dir in
            let store = try backend.makeStore(dir, "store")
            writeTree(dir.file("src"), hfFiles(step: 1))
            _ = try store.put(directory: dir.file("src"), run: "r", step: 7)
            let resolved = try store.resolve(.step(run: "r", step: 7))
            let (_, tree) = try store.tree(of: resolved)
            guard case .bytes(let config) = try #require(tree.content(path: "config.json")) else {
                Issue.record("config.json is not a bytes file")
                return
            }
            backend.damageBlob(store, config.chunks[0].hash)
            let report = try store.check(full: true)
            #expect(report.problems.contains { $0.subject.contains("r@7 file 'config.json'") }, "\(report.problems)")
            #expect(report.damagedSnapshots.map(\.digest) == [resolved.digest])
            #expect(report.damagedSnapshots.first?.names.map { "\($0.run)@\($0.step)" } == ["r@7"])
            let failure = #expect(throws: CKStoreError.self) {
                _ = try store.restoreTree(resolved, toDirectory: dir.file("out"), force: false)
            }
            #expect(failure?.code == .integrity && failure?.message.contains("config.json") == true)
            #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
        }
    }

    @Test func copyCarriesTreesBetweenBackends() throws {
        try withTemporaryDirectory("tree-copy") { dir in
            let source = try LibraryBackend.sqliteLocal.makeStore(dir, "a")
            let destination = try LibraryBackend.inMemory.makeStore(dir, "b")
            writeTree(dir.file("src"), hfFiles(step: 1))
            let put = try source.put(directory: dir.file("src"), run: "r", step: 1)
            let report = try source.copy(to: destination)
            #expect(report.snapshotsCopied == 1)
            let resolved = try destination.resolve(.step(run: "r", step: 1))
            #expect(resolved.digest == put.digest)
            _ = try destination.restoreTree(resolved, toDirectory: dir.file("out"), force: false)
            #expect(readTree(dir.file("out")) == hfFiles(step: 1))
            #expect(try source.copy(to: destination).snapshotsUnchanged == 1)
        }
    }

    @Test func singleFileOperationsOnATreeSayItIsADirectory() throws {
        try withTemporaryDirectory("tree-kinds") { dir in
            let store = try LibraryBackend.inMemory.makeStore(dir, "s")
            writeTree(dir.file("src"), hfFiles(step: 1))
            _ = try store.put(directory: dir.file("src"), run: "r", step: 1)
            let resolved = try store.resolve(.step(run: "r", step: 1))
            let error = #expect(throws: CKStoreError.self) { _ = try store.restore(resolved, to: .file(dir.file("x"))) }
            #expect(error?.code == .badInput && error?.message.contains("directory snapshot of 6 files") == true)
            let average = #expect(throws: CKStoreError.self) {
                _ = try store.lazyCheckpoint(try store.plan(.mean(refs: ["r@1"], weights: nil), run: nil))
            }
            #expect(average?.message.contains("averaging directory snapshots: not yet supported") == true)
        }
    }

    @Test func theWalkRefusesWhatATreeCannotHoldBeforeWritingAnything() throws {
        try withTemporaryDirectory("tree-walk") { dir in
            let store = try LibraryBackend.sqliteLocal.makeStore(dir, "s")
            let root = dir.file("bad")
            writeTree(root, ["a.json": [1]])
            symlink("a.json", "\(root)/ok-link")
            #expect(try DirectoryWalk.files(under: root).map(\.path) == ["a.json", "ok-link"])
            symlink("nowhere", "\(root)/zz-dangling")
            let error = #expect(throws: CKStoreError.self) { _ = try store.put(directory: root, run: "r", step: 1) }
            #expect(error?.code == .badInput && error?.message.contains("zz-dangling") == true)
            #expect(error?.message.contains("dangling") == true)
            #expect(try storedBlobs(store).isEmpty && store.runs().isEmpty)
        }
    }

    @Test func aFileReplacedByAFIFOAfterTheWalkIsRefusedWithoutBlocking() throws {
        try withTemporaryDirectory("tree-fifo") { dir in
            let fifo = dir.file("pipe")
            #expect(mkfifo(fifo, 0o644) == 0)
            // No writer ever opens the FIFO: a blocking open would hang here.
            let error = #expect(throws: CKStoreError.self) {
                _ = try Store.reader(WalkedFile(path: "model.safetensors", location: fifo, size: 0))
            }
            #expect(error?.code == .badInput && error?.message.contains("no longer a regular file") == true)
        }
    }
}
