// Parts and pending snapshots through the library API (`Store.put(part:…)`), on every library
// backend: completion into a tree, hostile parts refused with the store unchanged, a window over
// a pending step ("step N is incomplete"), fsck of pending parts, gc/rm of pending snapshots, and
// the pending_grace configuration key.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends

/// Rank `rank`'s shard at `step`: one F32 tensor of 1024 values.
private func rankShard(_ rank: Int, step: Int) -> [UInt8] {
    let values = (0..<1024).flatMap { i -> [UInt8] in
        let v = Float(((i * 31 + rank * 977 + step * 7919) % 2001) - 1000) / 1000
        return withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init)
    }
    return makeSafetensors(tensors: [TensorSpec("layer.\(rank).weight", "F32", [1024], values)])
}

private func rankPath(_ rank: Int, _ world: Int) -> String {
    "rank-" + String(repeating: "0", count: 5 - String(rank).count) + "\(rank)-of-0000\(world).safetensors"
}

@Suite("Pending snapshots (library)")
struct PendingSnapshotTests {
    @Test(arguments: LibraryBackend.all)
    func partsCompleteIntoATreeThatRestoresByteExact(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("parts-complete") { dir in
            let store = try backend.makeStore(dir, "store")
            var printed: [String: SHA256Digest] = [:]
            for rank in [2, 0, 3, 1] {
                writeFile(dir.file("r\(rank)"), rankShard(rank, step: 1))
                let report = try store.put(part: .file(dir.file("r\(rank)")), path: rankPath(rank, 4), run: "r", step: 1, total: 5)
                printed[rankPath(rank, 4)] = report.put.digest
                #expect(report.pending.completed == nil && report.put.outcome == .created)
                #expect(try store.runs().isEmpty, "pending: no run, no snapshot")
                #expect(throws: CKStoreError.self) { _ = try store.resolve(.step(run: "r", step: 1)) }
            }
            writeFile(dir.file("cfg"), Array(#"{"world":4}"#.utf8))
            let last = try store.put(part: .file(dir.file("cfg")), path: "config.json", run: "r", step: 1, total: 5)
            let completed = try #require(last.pending.completed)
            #expect(completed.outcome == .created && last.pending.present == 5)
            let resolved = try store.resolve(.step(run: "r", step: 1))
            #expect(resolved.digest == completed.digest)
            let (_, tree) = try store.tree(of: resolved)
            for (path, digest) in printed { #expect(tree.tree.entry(path: path)?.digest == digest) }
            _ = try store.restoreTree(resolved, toDirectory: dir.file("out"), force: false)
            for rank in 0..<4 { #expect(Array(readFile(dir.file("out/\(rankPath(rank, 4))"))) == rankShard(rank, step: 1)) }
            #expect(Array(readFile(dir.file("out/config.json"))) == Array(#"{"world":4}"#.utf8))
            #expect(try store.pendingSnapshots().isEmpty)
            #expect(try store.check(full: true).problems.isEmpty)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func refusedPartsLeaveTheStoreUnchanged(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("parts-refused") { dir in
            let store = try backend.makeStore(dir, "store")
            writeFile(dir.file("a"), rankShard(0, step: 1))
            writeFile(dir.file("b"), rankShard(1, step: 1))
            writeFile(dir.file("bad"), [1, 2, 3])
            _ = try store.put(part: .file(dir.file("a")), path: "x.safetensors", run: "r", step: 1, total: 2)
            let before = try store.statistics()
            func refused(_ path: String, _ file: String, total: Int = 2, step: Int = 1) -> CKStoreError.Code? {
                do {
                    _ = try store.put(part: .file(dir.file(file)), path: path, run: "r", step: step, total: total)
                    return nil
                } catch { return error.code }
            }
            #expect(refused("x.safetensors", "b") == .conflict)  // different content at the path
            #expect(refused("y.safetensors", "b", total: 3) == .badInput)  // TOTAL mismatch
            #expect(refused("y.safetensors", "bad") == .badInput)  // not a safetensors file
            #expect(refused("x.safetensors/y", "b") == .badInput)  // below a part
            #expect(refused("../y", "b") == .badInput)
            #expect(refused("y", "b", total: 0) == .badInput)
            #expect(refused("y", "b", total: PendingSnapshot.maxParts + 1) == .badInput)
            let pending = try store.pendingSnapshots()
            #expect(pending.count == 1 && pending[0].parts.map(\.path) == ["x.safetensors"])
            let after = try store.statistics()
            #expect(after.snapshots == before.snapshots)
            #expect(try store.check(full: false).problems.isEmpty)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func aWindowOverAPendingStepSaysItIsIncomplete(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("parts-lawa") { dir in
            let store = try backend.makeStore(dir, "store")
            for step in [10, 20] {
                writeFile(dir.file("s\(step)"), rankShard(0, step: step))
                _ = try store.put(from: .file(dir.file("s\(step)")), run: "r", step: step)
            }
            for rank in [0, 2, 5] {
                writeFile(dir.file("p\(rank)"), rankShard(rank, step: 30))
                _ = try store.put(part: .file(dir.file("p\(rank)")), path: rankPath(rank, 8), run: "r", step: 30, total: 8)
            }
            let failure = #expect(throws: CKStoreError.self) {
                _ = try store.plan(.lawa(k: 3, stride: 10, at: 30), run: "r")
            }
            let message = failure?.message ?? ""
            #expect(failure?.code == .notFound)
            #expect(message.contains("step 30 is incomplete: 3 of 8 parts"), "\(message)")
            #expect(message.contains(rankPath(2, 8)) && message.contains("missing: " + rankPath(1, 8)), "\(message)")
            // A window of complete steps is unaffected.
            #expect(try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r").inputs.count == 2)
        }
    }

    @Test func inferredMissingPathsFollowTheNumberingOrNothing() throws {
        func pending(_ paths: [String], total: Int) -> PendingSnapshot {
            PendingSnapshot(
                run: "r", step: 1, total: total, replaces: false, createdAtMilliseconds: 0,
                parts: paths.map { PendingPart(path: $0, kind: .bytes, size: 0, digest: testDigest($0), createdAtMilliseconds: 0) })
        }
        #expect(pending([rankPath(0, 4), rankPath(3, 4)], total: 4).inferredMissingPaths == [rankPath(1, 4), rankPath(2, 4)])
        let hf = ["model-00001-of-00003.safetensors", "model-00003-of-00003.safetensors"]
        #expect(pending(hf, total: 3).inferredMissingPaths == ["model-00002-of-00003.safetensors"])
        #expect(pending(["a.json", rankPath(0, 4)], total: 4).inferredMissingPaths.isEmpty)
        #expect(pending(["x-1-of-5"], total: 4).inferredMissingPaths.isEmpty, "a -of- count other than TOTAL")
        #expect(pending(["-of-"], total: 1).inferredMissingPaths.isEmpty)
    }

    @Test(arguments: LibraryBackend.all)
    func fsckNamesADamagedPendingPart(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("parts-fsck") { dir in
            let store = try backend.makeStore(dir, "store")
            writeFile(dir.file("a"), rankShard(0, step: 3))
            let report = try store.put(part: .file(dir.file("a")), path: "a.safetensors", run: "r", step: 3, total: 2)
            let part = try #require(try store.metadata.manifest(report.put.digest))
            backend.damageBlob(store, part.tensors[0].chunks[0].hash)
            let check = try store.check(full: true)
            #expect(check.problems.contains { $0.subject.contains("r@3 (pending) part 'a.safetensors'") }, "\(check.problems)")
        }
    }

    @Test(arguments: LibraryBackend.all)
    func gcKeepsYoungPendingRemovesItWhenAskedAndRmRemovesAPendingStep(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("parts-gc") { dir in
            let store = try backend.makeStore(dir, "store")
            writeFile(dir.file("a"), rankShard(0, step: 4))
            writeFile(dir.file("b"), rankShard(1, step: 4))
            _ = try store.put(part: .file(dir.file("a")), path: "a.safetensors", run: "r", step: 4, total: 2)
            _ = try store.put(part: .file(dir.file("b")), path: "b.safetensors", run: "q", step: 4, total: 2)
            let plain = try store.collectGarbage(run: nil, policy: RetentionPolicy())
            #expect(plain.removedPending.isEmpty && plain.removedBlobs == 0)
            let onlyQ = try store.collectGarbage(run: "q", policy: RetentionPolicy(), allPending: true)
            #expect(onlyQ.removedPending == ["q@4"] && onlyQ.removedBlobs == 1)
            let rm = try store.remove([.step(run: "r", step: 4)])
            #expect(rm.removedPending == ["r@4"])
            #expect(try store.pendingSnapshots().isEmpty)
            #expect(try store.check(full: true).problems.isEmpty)
        }
    }

    @Test func pendingGraceParsesSecondsAndUnitsAndRefusesTheRest() throws {
        func grace(_ json: String) throws(CKStoreError) -> Int {
            try StoreConfiguration.parse(Array(#"{"pending_grace": \#(json)}"#.utf8), source: "config.json").pendingGraceSeconds
        }
        #expect(StoreConfiguration.default.pendingGraceSeconds == 86_400)
        #expect(try grace("90") == 90 && grace(#""90s""#) == 90 && grace(#""30m""#) == 1800)
        #expect(try grace(#""24h""#) == 86_400 && grace(#""2d""#) == 172_800 && grace("0") == 0)
        for bad in ["-1", "1.5", #""24x""#, #""h""#, #""-1h""#, "true", #""99999999999999999999d""#, "1e300"] {
            #expect(throws: CKStoreError.self, "\(bad)") { _ = try grace(bad) }
        }
    }
}
