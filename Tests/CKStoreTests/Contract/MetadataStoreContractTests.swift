// The MetadataStore contract (Sources/CKStore/Metadata/MetadataStore.swift), run identically on
// every backend in `MetadataBackendFactory.all`.

import Foundation
import Testing

@testable import CKStore

/// Runs `body` with a fresh store of `backend` and one open instance of it.
private func withMetadata(
    _ backend: MetadataBackendFactory, _ body: (MetadataStoreFixture, any MetadataStore) throws -> Void
) throws {
    try withTemporaryDirectory("contract-meta") { dir in
        let fixture = try backend.make(dir)
        let store = try fixture.open()
        defer { try? store.close() }
        try body(fixture, store)
    }
}

@Suite("Contract: MetadataStore")
struct MetadataStoreContractTests {
    let a = testManifest("a", tensors: [("w", ["a1", "shared"]), ("b", ["a2"])])
    let b = testManifest("b", tensors: [("w", ["b1", "shared"]), ("b", ["b2"])])

    @Test(arguments: MetadataBackendFactory.all)
    func anEmptyStoreAnswersNotFoundWithNilNotErrors(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            let d = testDigest("nothing")
            #expect(try m.runs().isEmpty)
            #expect(try m.snapshots(run: "r") == nil)
            #expect(try m.snapshot(run: "r", step: 1) == nil)
            #expect(try m.latestSnapshot(run: "r") == nil)
            #expect(try m.allSnapshots().isEmpty)
            #expect(try m.manifest(d) == nil)
            #expect(try !m.hasManifest(d))
            #expect(try !m.hasChunk(d))
            #expect(try m.storedSize(ofChunk: d) == nil)
            #expect(try m.chunkRowCount() == 0)
            #expect(try m.chunkRows().isEmpty && m.chunkUses().isEmpty && m.allManifestDigests().isEmpty)
            #expect(try m.derivedDigest(key: d) == nil && m.derivedEntry(key: d) == nil)
            #expect(try m.derivedSnapshots(run: nil).isEmpty && m.derivedRows().isEmpty)
            #expect(try m.metrics(run: "r").isEmpty)
            #expect(try m.manifestDigests(prefix: "ab", limit: 10).isEmpty)
            #expect(try m.statistics() == StoreStatistics())
            #expect(try m.referencedChunkHashes().isEmpty)
            #expect(try m.storedBytesByStep(run: "r").isEmpty)
            #expect(try m.storageProblems().isEmpty)
            #expect(try !m.dropDerived(key: d, digest: d))
            let error = #expect(throws: CKStoreError.self) { try m.recordMetrics(run: "r", step: 1, variant: "raw", values: [("x", 1)]) }
            #expect(error?.code == .notFound)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func aCommittedSnapshotReadsBackExactly(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { fixture, m throws in
            let result = try m.commit(manifest: a, run: "r", step: 10, metrics: [("loss", 0.5)], force: false)
            #expect(result.outcome == .created && result.droppedMetrics == 0)
            let info = try #require(try m.snapshot(run: "r", step: 10))
            #expect(info.digest == a.digest && info.run == "r" && info.step == 10)
            #expect(info.logicalBytes == a.fileLength && info.tensorCount == 2)
            let back = try #require(try m.manifest(a.digest))
            #expect(back.digest == a.digest && back.headerBytes == a.headerBytes && back.dataLength == a.dataLength)
            #expect(back.tensors == a.tensors)
            #expect(try m.hasManifest(a.digest))
            #expect(try m.snapshots(run: "r")?.map(\.step) == [10])
            #expect(try m.latestSnapshot(run: "r")?.step == 10)
            #expect(try m.runs() == [RunSummary(name: "r", snapshotCount: 1, firstStep: 10, lastStep: 10)])
            #expect(try m.allSnapshots().map(\.ref) == ["r@10"])
            #expect(try m.allManifestDigests() == [a.digest])
            #expect(try m.manifestDigests(prefix: String(a.digest.hex.prefix(6)), limit: 5) == [a.digest])
            #expect(try m.chunkRowCount() == 3)
            #expect(try m.chunkRows().map(\.hash) == a.distinctChunks.sorted())
            #expect(try m.hasChunk(testDigest("a1")) && m.storedSize(ofChunk: testDigest("a1")) == 72)
            #expect(
                Set(try m.chunkUses().map { "\($0.chunk.hex.prefix(8)) \($0.tensor)" })
                    == Set(
                        a.tensors.flatMap { t in t.chunks.map { "\($0.hash.hex.prefix(8)) \(t.info.name)" } }))
            #expect(try m.referencedChunkHashes() == a.distinctChunks)
            #expect(try m.storedBytesByStep(run: "r") == [10: 3 * 72])
            #expect(try m.metrics(run: "r") == [MetricRecord(run: "r", step: 10, variant: "raw", name: "loss", value: 0.5)])
            let stats = try m.statistics()
            #expect(stats.runs == 1 && stats.snapshots == 1 && stats.logicalBytes == a.fileLength)
            #expect(stats.blobCount == 3 && stats.uniqueRawBytes == 3 * 64 && stats.storedBytes == 3 * 72)
            // Visible to another instance, and to a worker's chunk index.
            let other = try fixture.open()
            defer { try? other.close() }
            #expect(try other.snapshot(run: "r", step: 10)?.digest == a.digest)
            let index = try m.chunkIndexFactory()()
            #expect(try index.storedSize(ofChunk: testDigest("shared")) == 72)
            #expect(try index.storedSize(ofChunk: testDigest("nope")) == nil)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func recommittingIdenticalContentIsUnchanged(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 1, metrics: [], force: false)
            let stats = try m.statistics()
            for force in [false, true] {
                let again = try m.commit(manifest: a, run: "r", step: 1, metrics: [], force: force)
                #expect(again.outcome == .unchanged && again.droppedMetrics == 0)
            }
            #expect(try m.statistics() == stats)
            #expect(try m.allManifestDigests() == [a.digest])
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func otherContentAtAnExistingStepIsAConflictAndChangesNothing(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 1, metrics: [("loss", 1)], force: false)
            let stats = try m.statistics()
            let error = #expect(throws: CKStoreError.self) {
                _ = try m.commit(manifest: b, run: "r", step: 1, metrics: [("loss", 2)], force: false)
            }
            #expect(error?.code == .conflict)
            #expect(error?.message.contains("r@1") == true)
            #expect(try m.snapshot(run: "r", step: 1)?.digest == a.digest)
            #expect(try !m.hasManifest(b.digest) && !m.hasChunk(testDigest("b1")))
            #expect(try m.statistics() == stats)
            #expect(try m.metrics(run: "r").map(\.value) == [1])
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func forceReplacesDropsTheOldManifestAndItsMetricsButKeepsChunkRows(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 1, metrics: [("loss", 1)], force: false)
            _ = try m.commit(manifest: a, run: "r", step: 2, metrics: [], force: false)
            try m.recordMetrics(run: "r", step: 2, variant: "lawa-k2-s1", values: [("loss", 0.9)])
            try m.recordMetrics(run: "r", step: 2, variant: "mine", values: [("loss", 0.8)])
            let replaced = try m.commit(manifest: b, run: "r", step: 1, metrics: [], force: true)
            #expect(replaced.outcome == .replaced(previous: a.digest))
            // raw at 1 and the LAWA at 2 whose window holds 1 are stale; "mine" cannot be traced.
            #expect(replaced.droppedMetrics == 2)
            #expect(try m.metrics(run: "r").map(\.variant) == ["mine"])
            #expect(try m.snapshot(run: "r", step: 1)?.digest == b.digest)
            #expect(try m.hasManifest(a.digest), "step 2 still names a")
            _ = try m.commit(manifest: b, run: "r", step: 2, metrics: [], force: true)
            #expect(try !m.hasManifest(a.digest), "no snapshot names a any more")
            #expect(try m.hasChunk(testDigest("a1")), "chunk rows stay until collect")
            #expect(try m.referencedChunkHashes() == b.distinctChunks)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func metricsReplaceByNameAndSortByStepVariantName(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 5, metrics: [], force: false)
            try m.recordMetrics(run: "r", step: 5, variant: "raw", values: [("b", 1), ("a", 2)])
            try m.recordMetrics(run: "r", step: 3, variant: "raw", values: [("a", 3)])
            try m.recordMetrics(run: "r", step: 5, variant: "raw", values: [("b", 4)])
            #expect(try m.metrics(run: "r").map { "\($0.step) \($0.name) \($0.value)" } == ["3 a 3.0", "5 a 2.0", "5 b 4.0"])
            #expect(try m.metrics(run: "other").isEmpty)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func derivedSnapshotsCommitOnceAndDropOnlyWhenStillNamed(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 1, metrics: [], force: false)
            let avg = testManifest("avg", tensors: [("w", ["avg1", "shared"])])
            let key = testDigest("key")
            let record = DerivedRecord(key: key, recipe: "lawa run=r k=1", inputs: [a.digest], run: "r", manifest: avg)
            try m.commitDerived(record)
            let other = testManifest("other", tensors: [("w", ["o1"])])
            try m.commitDerived(DerivedRecord(key: key, recipe: "lawa run=r k=1", inputs: [a.digest], run: "r", manifest: other))
            #expect(try m.derivedDigest(key: key) == avg.digest, "the first commit for a key is kept")
            let entry = try #require(try m.derivedEntry(key: key))
            #expect(entry.recipe == "lawa run=r k=1" && entry.inputs == "sha256:\(a.digest.hex)" && entry.digest == avg.digest)
            #expect(try m.derivedSnapshots(run: "r").map(\.digest) == [avg.digest])
            #expect(try m.derivedSnapshots(run: "nope").isEmpty)
            #expect(try m.derivedRows().map(\.key) == [key])
            let stats = try m.statistics()
            #expect(stats.derivedBlobs == 1 && stats.derivedBytes == 72, "only avg1 is derived-only")
            #expect(try m.referencedChunkHashes().contains(testDigest("avg1")))
            #expect(try !m.dropDerived(key: key, digest: other.digest), "a row naming other content stays")
            #expect(try m.dropDerived(key: key, digest: avg.digest))
            #expect(try m.derivedDigest(key: key) == nil && !m.hasManifest(avg.digest))
            #expect(try !m.dropDerived(key: key, digest: avg.digest), "idempotent")
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func storedSizesFollowRewrittenBlobs(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 1, metrics: [], force: false)
            try m.updateStoredSizes([(testDigest("a1"), 99), (testDigest("absent"), 5)])
            try m.updateStoredSizes([])
            #expect(try m.storedSize(ofChunk: testDigest("a1")) == 99)
            #expect(try !m.hasChunk(testDigest("absent")))
            #expect(try m.manifest(a.digest)?.tensors[0].chunks[0].storedSize == 99)
            // A derived record's chunk sizes win over existing rows.
            let avg = TensorEntry(
                info: TensorInfo(name: "w", dtype: .f32, shape: [16], dataStart: 0, dataEnd: 64),
                chunks: [ChunkRef(hash: testDigest("a2"), rawSize: 64, storedSize: 64 + 28)])
            let manifest = Manifest(headerBytes: Array("{}".utf8), dataLength: 64, tensors: [avg])
            try m.commitDerived(DerivedRecord(key: testDigest("k"), recipe: "x", inputs: [], run: nil, manifest: manifest))
            #expect(try m.storedSize(ofChunk: testDigest("a2")) == 92)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func aReadViewSeesOneStateWhileAnotherInstanceCommits(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { fixture, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 1, metrics: [], force: false)
            let writer = try fixture.open()
            defer { try? writer.close() }
            try m.withReadView { () throws in
                #expect(try m.snapshots(run: "r")?.count == 1)
                _ = try writer.commit(manifest: b, run: "r", step: 2, metrics: [], force: false)
                try m.withReadView { () throws in  // nested views join
                    #expect(try m.snapshots(run: "r")?.count == 1, "the view does not see a later commit")
                    #expect(try !m.hasManifest(b.digest))
                }
            }
            #expect(try m.snapshots(run: "r")?.count == 2, "after the view, the commit is visible")
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func collectRemovesSnapshotsAndReleasesExactlyTheChunksOnlyTheyUsed(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 1, metrics: [("loss", 1)], force: false)
            _ = try m.commit(manifest: b, run: "r", step: 2, metrics: [], force: false)
            let avg = testManifest("avg", tensors: [("w", ["avg1", "a1"])])
            try m.commitDerived(DerivedRecord(key: testDigest("k"), recipe: "mean", inputs: [a.digest], run: nil, manifest: avg))
            let before = try m.statistics()
            let select = { [SnapshotKey(run: "r", step: 1), SnapshotKey(run: "r", step: 99)] }
            // A dry run, and a review that throws, change nothing.
            let dry = try m.collect(options: CollectionOptions(dropsMetrics: true, dropsDerived: true, dryRun: true), select: select) { _ in
            }
            #expect(dry.removedSnapshots == [SnapshotKey(run: "r", step: 1)] && dry.droppedMetrics == 1)
            #expect(dry.removedDerivedRecipes == ["mean"])
            #expect(dry.releasedChunks == [testDigest("a1"), testDigest("a2"), testDigest("avg1")])
            #expect(dry.liveChunks == b.distinctChunks && dry.remainingSnapshots == 1)
            struct Refusal: Error {}
            #expect(throws: Refusal.self) {
                _ = try m.collect(options: CollectionOptions(dropsMetrics: true, dropsDerived: true, dryRun: false), select: select) { _ in
                    throw Refusal()
                }
            }
            #expect(try m.statistics() == before && m.metrics(run: "r").count == 1 && m.derivedRows().count == 1)
            // Keeping derived rows keeps what they use.
            let kept = try m.collect(options: CollectionOptions(dropsMetrics: false, dropsDerived: false, dryRun: false), select: select) {
                _ in
            }
            #expect(kept.releasedChunks == [testDigest("a2")] && kept.droppedMetrics == 0)
            #expect(try m.snapshot(run: "r", step: 1) == nil && m.hasManifest(avg.digest) && !m.hasManifest(a.digest))
            #expect(try !m.hasChunk(testDigest("a2")) && m.hasChunk(testDigest("a1")))
            #expect(try m.runs().map(\.name) == ["r"])
            #expect(try m.metrics(run: "r").count == 1, "retention keeps metrics as history")
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func repairDropsDerivedRowsAndOnlyUnusedChunkRows(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: a, run: "r", step: 1, metrics: [], force: false)
            let avg = testManifest("avg", tensors: [("w", ["avg1"])])
            try m.commitDerived(DerivedRecord(key: testDigest("k"), recipe: "mean", inputs: [], run: nil, manifest: avg))
            _ = try m.collect(options: CollectionOptions(dropsMetrics: false, dropsDerived: false, dryRun: false), select: { [] }) { _ in }
            let dropped = try m.repairRows(droppingDerivedOf: [avg.digest], unusedChunks: [testDigest("avg1"), testDigest("a1")])
            #expect(dropped == [testDigest("avg1")], "a1 is still used by r@1")
            #expect(try m.derivedRows().isEmpty && !m.hasManifest(avg.digest) && m.hasChunk(testDigest("a1")))
            #expect(try m.tensorRowsOutOfRange(maxOffset: 1 << 62, maxRawSize: 64).isEmpty)
            #expect(try m.tensorRowsOutOfRange(maxOffset: 1 << 62, maxRawSize: 63).map(\.tensor) == ["w"])
        }
    }
}
