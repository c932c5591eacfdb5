import Foundation
import Testing

@testable import CKStore

/// `ckstore copy` between two local stores: dedup, verification, metrics, conflicts, repair.
@Suite struct StoreCopyTests {
    /// Two snapshots sharing a tensor, and a third file that shares one chunk with them.
    static func fixtures(_ dir: TemporaryDirectory) -> (a: String, b: String, c: String, shared: [UInt8]) {
        var rng = SplitMix64(seed: 7)
        let shared = TensorSpec("w", "F32", [4096], rng: &rng, compressible: true)
        let a = makeSafetensors(tensors: [shared, TensorSpec("b", "F32", [1024], rng: &rng)])
        let b = makeSafetensors(tensors: [shared, TensorSpec("b", "F32", [1024], rng: &rng)])
        let c = makeSafetensors(tensors: [shared, TensorSpec("x", "F32", [256], rng: &rng)])
        writeFile(dir.file("a.st"), a)
        writeFile(dir.file("b.st"), b)
        writeFile(dir.file("c.st"), c)
        return (dir.file("a.st"), dir.file("b.st"), dir.file("c.st"), shared.bytes)
    }

    @Test func copiesSnapshotsMetricsAndSkipsBlobsTheDestinationHolds() throws {
        try withTemporaryDirectory("copy") { dir in
            let files = Self.fixtures(dir)
            let source = makeStore(in: dir, name: "src")
            let destination = makeStore(in: dir, name: "dst")
            putOK(files.a, run: "r", step: 1, store: source, extra: ["--metric", "loss=2.5"])
            putOK(files.b, run: "r", step: 2, store: source)
            putOK(files.c, run: "other", step: 1, store: source)
            #expect(runCLI(["metric", "r@2", "acc=0.75", "--variant", "lawa-k2-s1"], store: source).status == 0)
            // The destination already holds the shared tensor's chunks (another run put them).
            putOK(files.c, run: "mine", step: 5, store: destination)
            let sharedChunks = Set(chunks(of: files.shared, dtype: "F32", chunkSize: 4096).map { SHA256Digest.hash($0) })

            let report = cliJSON(["copy", "--from", source, "--to", destination, "--run", "r"], store: source)
            #expect(report["snapshots_copied"] as? Int == 2)
            #expect(report["blobs_skipped"] as? Int == sharedChunks.count)
            let srcStore = try Store(path: source)
            let expectedCopied = try srcStore.resolveManifest(.step(run: "r", step: 1)).1.distinctChunks
                .union(try srcStore.resolveManifest(.step(run: "r", step: 2)).1.distinctChunks)
                .subtracting(sharedChunks)
            #expect(report["blobs_copied"] as? Int == expectedCopied.count)
            #expect(report["metrics_copied"] as? Int == 2)
            // Byte-exact, same digests, metrics of every variant, and only the run asked for.
            #expect(getBytes("r@1", store: destination) == readFile(files.a))
            #expect(getBytes("r@2", store: destination) == readFile(files.b))
            let dst = try Store(path: destination)
            #expect(try dst.snapshots(run: "r").map(\.digest) == srcStore.snapshots(run: "r").map(\.digest))
            #expect(
                try dst.metrics(run: "r").map { "\($0.step)/\($0.variant)/\($0.name)=\($0.value)" } == [
                    "1/raw/loss=2.5", "2/lawa-k2-s1/acc=0.75",
                ])
            #expect(throws: CKStoreError.self) { try dst.snapshots(run: "other") }
            #expect(runCLI(["fsck"], store: destination).status == 0)
            // Copying again transfers nothing.
            let again = cliJSON(["copy", "--from", source, "--to", destination, "--run", "r"], store: source)
            #expect(again["snapshots_unchanged"] as? Int == 2 && again["blobs_copied"] as? Int == 0)
            // Everything else follows without --run.
            let rest = cliJSON(["copy", "--from", source, "--to", destination], store: source)
            // other@1 is the content the destination already holds as mine@5: no blob moves.
            #expect(rest["snapshots_copied"] as? Int == 1 && rest["blobs_copied"] as? Int == 0)
            #expect(getBytes("other@1", store: destination) == readFile(files.c))
        }
    }

    @Test func aDamagedSourceBlobStopsTheCopyAndLeavesTheDestinationUnchanged() throws {
        try withTemporaryDirectory("copy-damaged") { dir in
            let files = Self.fixtures(dir)
            let source = makeStore(in: dir, name: "src")
            let destination = makeStore(in: dir, name: "dst")
            putOK(files.a, run: "r", step: 1, store: source)
            // Flip one payload byte of a blob: its size and header stay plausible.
            let victim = blobPath(store: source, chunk: Array(files.shared.prefix(4096)))
            var bytes = [UInt8](readFile(victim))
            bytes[BlobHeader.size + 5] ^= 0x10
            chmod(victim, 0o644)
            writeFile(victim, bytes)
            let before = storeSnapshot(destination)
            let r = runCLI(["copy", "--from", source, "--to", destination], store: source)
            expectOneErrorLine(r, status: 3, mentions: ["r@1", SHA256Digest.hash(Array(files.shared.prefix(4096))).hex])
            expectStoreUnchanged(destination, since: before)
        }
    }

    @Test func otherContentAtAStepIsRefusedBeforeAnythingIsWritten() throws {
        try withTemporaryDirectory("copy-conflict") { dir in
            let files = Self.fixtures(dir)
            let source = makeStore(in: dir, name: "src")
            let destination = makeStore(in: dir, name: "dst")
            putOK(files.a, run: "r", step: 1, store: source)
            putOK(files.b, run: "r", step: 2, store: source)
            putOK(files.c, run: "r", step: 2, store: destination)
            let before = storeSnapshot(destination)
            let r = runCLI(["copy", "--from", source, "--to", destination], store: source)
            expectOneErrorLine(r, status: 1, mentions: ["r@2"])
            expectStoreUnchanged(destination, since: before)
        }
    }

    /// A destination chunk row whose blob is damaged is no dedup hit: the copy writes it again.
    @Test func aDamagedDestinationBlobIsRewritten() throws {
        try withTemporaryDirectory("copy-repair") { dir in
            let files = Self.fixtures(dir)
            let source = makeStore(in: dir, name: "src")
            let destination = makeStore(in: dir, name: "dst")
            putOK(files.a, run: "r", step: 1, store: source)
            putOK(files.c, run: "mine", step: 1, store: destination)
            let victim = blobPath(store: destination, chunk: Array(files.shared.prefix(4096)))
            var bytes = [UInt8](readFile(victim))
            bytes[BlobHeader.size + 5] ^= 0x10
            chmod(victim, 0o644)
            writeFile(victim, bytes)
            let r = cliJSON(["copy", "--from", source, "--to", destination], store: source)
            #expect(r["snapshots_copied"] as? Int == 1)
            #expect(getBytes("r@1", store: destination) == readFile(files.a))
            #expect(getBytes("mine@1", store: destination) == readFile(files.c))
            #expect(runCLI(["fsck"], store: destination).status == 0)
        }
    }

    @Test func usageErrors() throws {
        try withTemporaryDirectory("copy-usage") { dir in
            let source = makeStore(in: dir, name: "src")
            #expect(runCLI(["copy", "--to", dir.file("x")], store: source).status == 2)
            #expect(runCLI(["copy", "--from", source, "--to", source], store: source).status == 2)
            #expect(runCLI(["copy", "--from", source, "--to", dir.file("x"), "--run", "nope"], store: source).status == 1)
            #expect(!FileManager.default.fileExists(atPath: dir.file("x")))
            #expect(runCLI(["copy", "--from", dir.file("missing"), "--to", dir.file("x")], store: source).status == 1)
        }
    }
}
