// The MetadataStore contract for trees (commit(tree:), tree, bytesFile, contentKind, and
// reachability through trees), run identically on every backend in `MetadataBackendFactory.all`.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// A bytes file whose chunks are the given labels (64 raw bytes each, stored as 72).
func testBytesFile(_ chunks: [String]) -> BytesFile {
    BytesFile(size: 64 * chunks.count, chunks: chunks.map { ChunkRef(hash: testDigest($0), rawSize: 64, storedSize: 72) })
}

@Suite("Contract: MetadataStore trees")
struct TreeMetadataContractTests {
    let shard1 = testManifest("s1", tensors: [("w1", ["s1a", "shared"])])
    let shard2 = testManifest("s2", tensors: [("w2", ["s2a"]), ("b2", ["s2b"])])
    let config = testBytesFile(["config"])
    let tokenizer = testBytesFile(["tok1", "tok2"])
    let empty = testBytesFile([])

    func tree(_ shard2: Manifest? = nil, config: BytesFile? = nil) throws -> TreeSnapshot {
        try TreeSnapshot(files: [
            ("model-00001-of-00002.safetensors", .safetensors(shard1)),
            ("model-00002-of-00002.safetensors", .safetensors(shard2 ?? self.shard2)),
            ("config.json", .bytes(config ?? self.config)),
            ("tokenizer/tokenizer.json", .bytes(tokenizer)),
            ("empty.txt", .bytes(empty)),
        ])
    }

    func withMetadata(_ backend: MetadataBackendFactory, _ body: (MetadataStoreFixture, any MetadataStore) throws -> Void) throws {
        try withTemporaryDirectory("contract-tree") { dir in
            let fixture = try backend.make(dir)
            let store = try fixture.open()
            defer { try? store.close() }
            try body(fixture, store)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func aCommittedTreeReadsBackExactly(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { fixture, m throws in
            let t = try tree()
            let result = try m.commit(tree: t, run: "r", step: 5, metrics: [("loss", 1)], force: false)
            #expect(result.outcome == .created)
            let info = try #require(try m.snapshot(run: "r", step: 5))
            #expect(info.digest == t.tree.digest && info.kind == .tree && info.fileCount == 5)
            #expect(info.logicalBytes == shard1.fileLength + shard2.fileLength + 64 + 128 + 0)
            #expect(info.tensorCount == 3)
            #expect(try m.contentKind(t.tree.digest) == .tree)
            #expect(try m.contentKind(config.digest) == .bytes && m.contentKind(shard1.digest) == .safetensors)
            #expect(try m.contentKind(testDigest("none")) == nil)
            #expect(try m.tree(t.tree.digest) == t.tree)
            #expect(try m.tree(shard1.digest) == nil && m.tree(config.digest) == nil)
            #expect(try m.manifest(t.tree.digest) == nil && m.manifest(config.digest) == nil)
            #expect(try m.manifest(shard2.digest)?.tensors == shard2.tensors)
            #expect(try m.bytesFile(tokenizer.digest) == tokenizer)
            #expect(try m.bytesFile(empty.digest) == empty)
            #expect(try m.bytesFile(shard1.digest) == nil && m.bytesFile(t.tree.digest) == nil)
            let chunks = shard1.distinctChunks.union(shard2.distinctChunks).union(config.distinctChunks).union(tokenizer.distinctChunks)
            #expect(try m.referencedChunkHashes() == chunks)
            #expect(try m.storedBytesByStep(run: "r") == [5: chunks.count * 72])
            #expect(Set(try m.chunkUses().map(\.chunk)) == chunks)
            #expect(try m.chunkUses().contains { $0.manifest == config.digest && $0.tensor == "bytes" })
            let stats = try m.statistics()
            #expect(stats.snapshots == 1 && stats.logicalBytes == info.logicalBytes && stats.blobCount == chunks.count)
            #expect(stats.sideFiles == 3 && stats.sideFileBytes == 192 && stats.sideFileUniqueBytes == 192)
            let other = try fixture.open()
            defer { try? other.close() }
            #expect(try other.tree(t.tree.digest) == t.tree)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func unchangedSideFilesAreStoredOnceAcrossSteps(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(tree: try tree(), run: "r", step: 1, metrics: [], force: false)
            let step2 = try tree(testManifest("s2'", tensors: [("w2", ["s2a"]), ("b2", ["s2c"])]))
            _ = try m.commit(tree: step2, run: "r", step: 2, metrics: [], force: false)
            let stats = try m.statistics()
            #expect(stats.sideFiles == 6 && stats.sideFileBytes == 384 && stats.sideFileUniqueBytes == 192)
            // config, tok1, tok2 once; s1a, shared, s2a, s2b, s2c.
            #expect(stats.blobCount == 8)
            #expect(stats.uniqueRawBytes == 8 * 64)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func identicalTreeIsUnchangedOtherContentConflictsAndForceReplaces(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            let t = try tree()
            _ = try m.commit(tree: t, run: "r", step: 1, metrics: [("loss", 1)], force: false)
            #expect(try m.commit(tree: t, run: "r", step: 1, metrics: [], force: false).outcome == .unchanged)
            let stats = try m.statistics()
            let other = try tree(config: testBytesFile(["config2"]))
            let error = #expect(throws: CKStoreError.self) { _ = try m.commit(tree: other, run: "r", step: 1, metrics: [], force: false) }
            #expect(error?.code == .conflict && error?.message.contains("r@1") == true)
            #expect(try m.statistics() == stats && !m.hasManifest(other.tree.digest))
            #expect(try !m.hasChunk(testDigest("config2")))
            // A single file over a tree: also a conflict.
            let single = #expect(throws: CKStoreError.self) {
                _ = try m.commit(manifest: shard1, run: "r", step: 1, metrics: [], force: false)
            }
            #expect(single?.code == .conflict)
            // Force: the tree and its files nothing else names go (shard1 stays, the snapshot names it).
            let replaced = try m.commit(manifest: shard1, run: "r", step: 1, metrics: [], force: true)
            #expect(replaced.outcome == .replaced(previous: t.tree.digest) && replaced.droppedMetrics == 1)
            #expect(try !m.hasManifest(t.tree.digest) && !m.hasManifest(config.digest) && !m.hasManifest(shard2.digest))
            #expect(try m.hasManifest(shard1.digest))
            #expect(try m.referencedChunkHashes() == shard1.distinctChunks)
            // And back to a tree.
            #expect(try m.commit(tree: t, run: "r", step: 1, metrics: [], force: true).outcome == .replaced(previous: shard1.digest))
            #expect(try m.tree(t.tree.digest) == t.tree && m.hasManifest(shard1.digest))
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func removingATreeReleasesOnlyWhatNoOtherSnapshotUses(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            let t1 = try tree()
            let t2 = try tree(testManifest("s2'", tensors: [("w2", ["s2a"]), ("b2", ["s2c"])]))
            _ = try m.commit(tree: t1, run: "r", step: 1, metrics: [], force: false)
            _ = try m.commit(tree: t2, run: "r", step: 2, metrics: [], force: false)
            _ = try m.commit(manifest: shard2, run: "single", step: 1, metrics: [], force: false)
            let options = CollectionOptions(dropsMetrics: true, dropsDerived: false, dryRun: false)
            let changes = try m.collect(options: options, select: { [SnapshotKey(run: "r", step: 1)] }, review: { _ in })
            #expect(changes.removedSnapshots == [SnapshotKey(run: "r", step: 1)])
            #expect(changes.releasedChunks.isEmpty)  // s2b is still used by single@1
            #expect(try !m.hasManifest(t1.tree.digest) && m.hasManifest(shard2.digest) && m.hasManifest(config.digest))
            let second = try m.collect(
                options: options, select: { [SnapshotKey(run: "r", step: 2), SnapshotKey(run: "single", step: 1)] }, review: { _ in })
            #expect(second.remainingSnapshots == 0)
            #expect(second.releasedChunks == Set(["s1a", "shared", "s2a", "s2b", "s2c", "config", "tok1", "tok2"].map(testDigest)))
            #expect(try m.allManifestDigests().isEmpty && m.chunkRowCount() == 0)
        }
    }

    @Test(arguments: MetadataBackendFactory.all)
    func aSingleFileSnapshotKeepsItsManifestDigest(_ backend: MetadataBackendFactory) throws {
        try withMetadata(backend) { _, m throws in
            _ = try m.commit(manifest: shard1, run: "r", step: 1, metrics: [], force: false)
            let info = try #require(try m.snapshot(run: "r", step: 1))
            #expect(info.digest == shard1.digest && info.kind == .safetensors && info.fileCount == 1)
            #expect(info.logicalBytes == shard1.fileLength)
            #expect(try m.contentKind(shard1.digest) == .safetensors)
            let oneFileTree = try TreeSnapshot(files: [("model.safetensors", .safetensors(shard1))])
            #expect(oneFileTree.tree.digest != shard1.digest)
        }
    }
}
