// The MetadataStore contract for pending snapshots (addPart, pendingSnapshots, pendingSnapshot,
// and collect's removal of pending rows), run identically on every backend in
// `MetadataBackendFactory.all` (SQLite, in-memory, and PostgreSQL when CKSTORE_TEST_PG_URL is set).

import Foundation
import Synchronization
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

@Suite("Contract: MetadataStore pending snapshots")
struct PendingMetadataContractTests {
    let rank0 = testManifest("rank0", tensors: [("w0", ["r0a", "shared"])])
    let rank1 = testManifest("rank1", tensors: [("w1", ["r1a"])])
    let rank2 = testManifest("rank2", tensors: [("w2", ["r2a"])])
    let config = testBytesFile(["cfg"])

    func withMetadata(_ backend: MetadataBackendFactory, _ body: (MetadataStoreFixture, any MetadataStore) throws -> Void) throws {
        try withTemporaryDirectory("contract-pending") { dir in
            let fixture = try backend.make(dir)
            let store = try fixture.open()
            defer { try? store.close() }
            try body(fixture, store)
        }
    }

    func code(_ body: () throws -> Void) -> CKStoreError.Code? {
        do {
            try body()
            return nil
        } catch let error as CKStoreError {
            return error.code
        } catch {
            return .environment
        }
    }

    func collect(_ m: any MetadataStore, before cutoff: Int64? = nil, run: String? = nil, selected: [SnapshotKey] = [])
        throws -> CollectionChanges
    {
        var options = CollectionOptions(dropsMetrics: true, dropsDerived: false, dryRun: false)
        options.pendingCreatedBefore = cutoff
        options.pendingRun = run
        options.dropsPendingOfSelected = !selected.isEmpty
        return try m.collect(options: options, select: { selected }, review: { _ in })
    }

    @Test(arguments: MetadataBackendFactory.all)
    func partsStayInvisibleUntilTheLastCompletesTheTree(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { fixture, m throws in
            let a = try m.addPart(.safetensors(rank0), path: "rank-0.safetensors", run: "r", step: 10, total: 3, force: false)
            #expect(a == PartOutcome(part: .added, present: 1, total: 3, completed: nil))
            let b = try m.addPart(.bytes(config), path: "config.json", run: "r", step: 10, total: 3, force: false)
            #expect(b.present == 2 && b.completed == nil)
            #expect(try m.snapshot(run: "r", step: 10) == nil)
            #expect(try m.snapshots(run: "r") == nil, "a pending snapshot creates no run")
            #expect(try m.runs().isEmpty)
            let pending = try #require(try m.pendingSnapshot(run: "r", step: 10))
            #expect(pending.total == 3 && !pending.replaces)
            #expect(pending.parts.map(\.path) == ["config.json", "rank-0.safetensors"])
            #expect(pending.parts.map(\.digest) == [config.digest, rank0.digest])
            #expect(pending.parts[1].size == rank0.fileLength && pending.parts[1].kind == .safetensors)
            #expect(try m.pendingSnapshots() == [pending])
            // The parts' chunks are reachable (gc keeps them) and a plain collect removes nothing.
            #expect(try m.referencedChunkHashes() == rank0.distinctChunks.union(config.distinctChunks))
            let kept = try collect(m)
            #expect(kept.removedPending.isEmpty && kept.releasedChunks.isEmpty)
            #expect(try m.hasManifest(rank0.digest) && m.hasManifest(config.digest))

            let c = try m.addPart(.safetensors(rank1), path: "rank-1.safetensors", run: "r", step: 10, total: 3, force: false)
            let expected = try TreeSnapshot(files: [
                ("rank-0.safetensors", .safetensors(rank0)), ("rank-1.safetensors", .safetensors(rank1)), ("config.json", .bytes(config)),
            ])
            #expect(c.completed == CompletedSnapshot(digest: expected.tree.digest, outcome: .created, droppedMetrics: 0))
            #expect(c.present == 3)
            let info = try #require(try m.snapshot(run: "r", step: 10))
            #expect(info.digest == expected.tree.digest && info.kind == .tree && info.fileCount == 3)
            #expect(try m.tree(info.digest) == expected.tree)
            #expect(try m.pendingSnapshots().isEmpty && m.pendingSnapshot(run: "r", step: 10) == nil)
            let other = try fixture.open()
            defer { try? other.close() }
            #expect(try other.snapshot(run: "r", step: 10)?.digest == expected.tree.digest)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func identicalRePutIsANoOpAndConflictsNeedForce(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.addPart(.safetensors(rank0), path: "a.safetensors", run: "r", step: 1, total: 2, force: false)
            let again = try m.addPart(.safetensors(rank0), path: "a.safetensors", run: "r", step: 1, total: 2, force: false)
            #expect(again == PartOutcome(part: .unchanged, present: 1, total: 2, completed: nil))
            #expect(
                code { _ = try m.addPart(.safetensors(rank1), path: "a.safetensors", run: "r", step: 1, total: 2, force: false) }
                    == .conflict)
            #expect(try m.pendingSnapshot(run: "r", step: 1)?.parts.map(\.digest) == [rank0.digest], "a refused part changes nothing")
            #expect(!(try m.hasManifest(rank1.digest)))
            let forced = try m.addPart(.safetensors(rank1), path: "a.safetensors", run: "r", step: 1, total: 2, force: true)
            #expect(forced.part == .replaced(previous: rank0.digest) && forced.present == 1)
            #expect(try m.pendingSnapshot(run: "r", step: 1)?.parts.map(\.digest) == [rank1.digest])
            #expect(!(try m.hasManifest(rank0.digest)), "the replaced part's object, named by nothing, is deleted")
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func hostileTotalsAndPathsAreRefusedWithoutChanges(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            for total in [0, -1, PendingSnapshot.maxParts + 1, Int.max, Int.min] {
                #expect(code { _ = try m.addPart(.bytes(config), path: "c", run: "r", step: 1, total: total, force: false) } == .badInput)
            }
            for path in ["", "/abs", "../up", "a/../b", "a//b", "a/", "./a", "a\u{0}b", String(repeating: "x", count: 5000)] {
                #expect(code { _ = try m.addPart(.bytes(config), path: path, run: "r", step: 1, total: 2, force: false) } == .badInput)
            }
            #expect(try m.pendingSnapshots().isEmpty)
            _ = try m.addPart(.bytes(config), path: "dir/c.json", run: "r", step: 1, total: 5, force: false)
            // A TOTAL that disagrees, a path that is the directory of a part, or below a part.
            #expect(code { _ = try m.addPart(.safetensors(rank0), path: "x", run: "r", step: 1, total: 4, force: false) } == .badInput)
            #expect(code { _ = try m.addPart(.safetensors(rank0), path: "x", run: "r", step: 1, total: 4, force: true) } == .badInput)
            #expect(code { _ = try m.addPart(.safetensors(rank0), path: "dir", run: "r", step: 1, total: 5, force: false) } == .badInput)
            #expect(
                code { _ = try m.addPart(.safetensors(rank0), path: "dir/c.json/x", run: "r", step: 1, total: 5, force: false) }
                    == .badInput)
            // Names next to "dir" in byte order ("dir!", "dir0", "dir-x/y") are no clash.
            for (path, label) in [("dir!", "x1"), ("dir0", "x2"), ("dir-x/y", "x3")] {
                let part = testBytesFile([label])
                #expect(try m.addPart(.bytes(part), path: path, run: "r", step: 1, total: 5, force: false).part == .added)
            }
            #expect(
                code { _ = try m.addPart(.bytes(testBytesFile(["x4"])), path: "dir-x", run: "r", step: 1, total: 5, force: false) }
                    == .badInput)
            #expect(
                code { _ = try m.addPart(.bytes(testBytesFile(["x4"])), path: "dir0/a", run: "r", step: 1, total: 5, force: false) }
                    == .badInput)
            let pending = try #require(try m.pendingSnapshot(run: "r", step: 1))
            #expect(pending.parts.map(\.path) == ["dir!", "dir-x/y", "dir/c.json", "dir0"] && pending.total == 5)
            #expect(!(try m.hasManifest(rank0.digest)))
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func partsOfACompleteStepConflictUnlessForcedWhichReplacesOnCompletion(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.addPart(.safetensors(rank0), path: "a.safetensors", run: "r", step: 5, total: 2, force: false)
            let first = try m.addPart(.safetensors(rank1), path: "b.safetensors", run: "r", step: 5, total: 2, force: false)
            let digest = try #require(first.completed?.digest)
            try m.recordMetrics(run: "r", step: 5, variant: "raw", values: [("loss", 1.5)])
            // A retried put of a part the complete snapshot holds: unchanged, names the snapshot.
            let retried = try m.addPart(.safetensors(rank1), path: "b.safetensors", run: "r", step: 5, total: 2, force: false)
            #expect(
                retried.part == .unchanged && retried.completed == CompletedSnapshot(digest: digest, outcome: .unchanged, droppedMetrics: 0)
            )
            #expect(try m.pendingSnapshots().isEmpty)
            // Other content, another TOTAL, or a path it lacks: conflicts, nothing pending.
            #expect(
                code { _ = try m.addPart(.safetensors(rank2), path: "b.safetensors", run: "r", step: 5, total: 2, force: false) }
                    == .conflict)
            #expect(
                code { _ = try m.addPart(.safetensors(rank1), path: "b.safetensors", run: "r", step: 5, total: 3, force: false) }
                    == .conflict)
            #expect(
                code { _ = try m.addPart(.safetensors(rank2), path: "c.safetensors", run: "r", step: 5, total: 2, force: false) }
                    == .conflict)
            #expect(try m.pendingSnapshots().isEmpty && m.snapshot(run: "r", step: 5)?.digest == digest)
            // --force: a pending replacement; the old snapshot stays visible until it completes.
            let p = try m.addPart(.safetensors(rank2), path: "a.safetensors", run: "r", step: 5, total: 2, force: true)
            #expect(p.completed == nil && p.present == 1)
            #expect(try m.pendingSnapshot(run: "r", step: 5)?.replaces == true)
            #expect(try m.snapshot(run: "r", step: 5)?.digest == digest)
            let done = try m.addPart(.safetensors(rank1), path: "b.safetensors", run: "r", step: 5, total: 2, force: false)
            let completed = try #require(done.completed)
            #expect(completed.outcome == .replaced(previous: digest) && completed.droppedMetrics == 1)
            #expect(try m.snapshot(run: "r", step: 5)?.digest == completed.digest)
            #expect(try m.metrics(run: "r").isEmpty)
            #expect(try !m.hasManifest(digest) && !m.hasManifest(rank0.digest))
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func collectRemovesPendingByAgeRunOrSelection(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.addPart(.safetensors(rank0), path: "a.safetensors", run: "r", step: 1, total: 2, force: false)
            _ = try m.addPart(.safetensors(rank1), path: "a.safetensors", run: "q", step: 1, total: 2, force: false)
            _ = try m.addPart(.bytes(config), path: "c.json", run: "r", step: 2, total: 2, force: false)
            let created = try m.pendingSnapshots().map(\.createdAtMilliseconds).max()!
            #expect(try collect(m, before: created - 60_000).removedPending.isEmpty, "younger than the cutoff: kept")
            let one = try collect(m, selected: [SnapshotKey(run: "r", step: 2)])
            #expect(one.removedPending == [SnapshotKey(run: "r", step: 2)])
            #expect(one.releasedChunks == config.distinctChunks)
            #expect(!(try m.hasManifest(config.digest)))
            let ofRun = try collect(m, before: Int64.max, run: "q")
            #expect(ofRun.removedPending == [SnapshotKey(run: "q", step: 1)])
            let all = try collect(m, before: Int64.max)
            #expect(all.removedPending == [SnapshotKey(run: "r", step: 1)])
            #expect(all.releasedChunks == rank0.distinctChunks)
            #expect(try m.pendingSnapshots().isEmpty && m.chunkRowCount() == 0)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func concurrentLastPartsCompleteExactlyOnce(_ backend: MetadataBackendFactory) throws {
        try withTemporaryDirectory("contract-pending-race") { dir in
            nonisolated(unsafe) let fixture = try backend.make(dir)
            let parts = (0..<6).map { i in testManifest("part\(i)", tensors: [("w\(i)", ["p\(i)"])]) }
            for round in 0..<3 {
                let completions = Mutex<[SHA256Digest]>([])
                let failures = Mutex<[String]>([])
                DispatchQueue.concurrentPerform(iterations: parts.count) { i in
                    do {
                        let m = try fixture.open()
                        defer { try? m.close() }
                        let outcome = try m.addPart(
                            .safetensors(parts[i]), path: "rank-\(i).safetensors", run: "race", step: round, total: parts.count,
                            force: false)
                        if let done = outcome.completed { completions.withLock { $0.append(done.digest) } }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
                #expect(failures.withLock { $0 }.isEmpty)
                let done = completions.withLock { $0 }
                #expect(done.count == 1, "round \(round): exactly one put completes the snapshot")
                let m = try fixture.open()
                defer { try? m.close() }
                #expect(try m.snapshot(run: "race", step: round)?.digest == done.first)
                #expect(try m.tree(done.first!)?.entries.count == parts.count)
                #expect(try m.pendingSnapshots().isEmpty)
            }
        }
    }
}
