// Issue 9, items 3 (put part), 7 and 9: blob identity on every read, puts that rewrite missing
// or damaged blobs, the version 2 blob header, and sizes from crafted headers and rows that
// must not overflow.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Runs one SQL statement on a store's database with the sqlite3 shell (or Python).
private func sqlite(_ path: String, _ sql: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    let process = Process()
    if let shell = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
        process.executableURL = URL(fileURLWithPath: shell)
        process.arguments = ["-batch", "-bail", path, sql]
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let script = """
            import sys, sqlite3
            con = sqlite3.connect(sys.argv[1])
            for row in con.execute(sys.argv[2]):
                print('|'.join('' if v is None else str(v) for v in row))
            con.commit()
            """
        process.arguments = ["python3", "-c", script, path, sql]
    }
    let out = Pipe()
    process.standardOutput = out
    do { try process.run() } catch {
        Issue.record("cannot run sqlite: \(error)", sourceLocation: sourceLocation)
        return ""
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "sqlite \(sql)", sourceLocation: sourceLocation)
    return text(data)
}

/// Replaces a (read-only) blob file's bytes.
private func overwriteBlob(_ path: String, _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    chmod(path, 0o644)
    writeFile(path, bytes, sourceLocation: sourceLocation)
    chmod(path, 0o444)
}

/// A store (chunk size 4096) with r@1..r@3: tensor `w` (F32, 3 chunks of random bytes, so
/// every blob is stored raw and all have the same size) and `b` (I32, compressible).
private struct BlobFixture {
    let store: String
    var files: [Int: [UInt8]] = [:]
    var specs: [Int: [TensorSpec]] = [:]

    init(_ dir: TemporaryDirectory, sourceLocation: SourceLocation = #_sourceLocation) {
        store = makeStore(in: dir, sourceLocation: sourceLocation)
        var rng = SplitMix64(seed: 0xB10B)
        for step in 1...3 {
            let tensors = [TensorSpec("w", "F32", [3072], rng: &rng), TensorSpec("b", "I32", [1024], rng: &rng, compressible: true)]
            let bytes = makeSafetensors(tensors: tensors)
            let path = dir.file("s\(step).safetensors")
            writeFile(path, bytes, sourceLocation: sourceLocation)
            putOK(path, run: "r", step: step, store: store, sourceLocation: sourceLocation)
            files[step] = bytes
            specs[step] = tensors
        }
    }

    /// Raw bytes of chunk `index` of `w` at `step`.
    func chunk(step: Int, index: Int) -> [UInt8] {
        chunks(of: specs[step]![0].bytes, dtype: "F32", chunkSize: 4096)[index]
    }

    func blob(step: Int, index: Int) -> String { blobPath(store: store, chunk: chunk(step: step, index: index)) }
    func hex(step: Int, index: Int) -> String { SHA256Digest.hash(chunk(step: step, index: index)).hex }
}

@Suite("Hardening: blob identity, put repair, size overflow")
struct HardeningBlobTests {
    // MARK: - Item 9: a blob file holding another valid blob

    @Test func aSwappedBlobIsCaughtByGetLAWAAndPlainFsck() throws {
        try withTemporaryDirectory("swap") { dir throws in
            let f = BlobFixture(dir)
            let a = f.blob(step: 2, index: 1)
            let b = f.blob(step: 1, index: 1)
            let bytesA = Array(readFile(a))
            let bytesB = Array(readFile(b))
            try #require(bytesA.count == bytesB.count, "raw blobs of equal size")
            overwriteBlob(a, bytesB)
            overwriteBlob(b, bytesA)

            let get = runCLI(["get", "r@2", "-o", dir.file("out")], store: f.store)
            #expect(get.status == 3, "get must not return another chunk's bytes: \(get.stderr)")
            #expect(get.stderr.contains(f.hex(step: 2, index: 1)) && get.stderr.contains("'w'"), "\(get.stderr)")
            #expect(!FileManager.default.fileExists(atPath: dir.file("out")))
            let other = runCLI(["get", "r@1", "-o", "-"], store: f.store)
            #expect(other.status == 3 && other.stderr.contains(f.hex(step: 1, index: 1)), "\(other.stderr)")

            let lawa = runCLI(["get", "--run", "r", "--lawa", "k=3,stride=1", "--at", "3", "--no-cache", "-o", "-"], store: f.store)
            #expect(lawa.status == 3, "LAWA must not average another chunk's bytes: \(lawa.stderr)")
            #expect(lawa.stderr.contains("blob ") && lawa.stderr.contains("'w'"), "\(lawa.stderr)")

            let fsck = runCLI(["fsck"], store: f.store)
            #expect(fsck.status == 3, "plain fsck must see the swap: \(text(fsck.stdout))")
            let problems = outputLines(text(fsck.stdout)).filter { $0.hasPrefix("problem: ") }
            #expect(problems.contains { $0.contains(f.hex(step: 2, index: 1)) && $0.contains("byte 32") }, "\(problems)")
            #expect(problems.contains { $0.contains(f.hex(step: 1, index: 1)) }, "\(problems)")
            // r@3 is untouched and still reads back.
            #expect(getBytes("r@3", store: f.store) == Data(f.files[3]!))
        }
    }

    // MARK: - Item 3: puts rewrite missing or damaged blobs

    private enum Damage: String, CaseIterable, CustomTestStringConvertible {
        case deleted, payloadFlip, headerFlip, emptied, swapped
        var testDescription: String { rawValue }

        func apply(_ f: BlobFixture, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let victim = f.blob(step: 2, index: 1)
            var bytes = Array(readFile(victim))
            switch self {
            case .deleted: try FileManager.default.removeItem(atPath: victim)
            case .payloadFlip:
                bytes[BlobHeader.size + 100] ^= 0x01
                overwriteBlob(victim, bytes, sourceLocation: sourceLocation)
            case .headerFlip:
                bytes[6] ^= 0x01
                overwriteBlob(victim, bytes, sourceLocation: sourceLocation)
            case .emptied: overwriteBlob(victim, [], sourceLocation: sourceLocation)
            case .swapped: overwriteBlob(victim, Array(readFile(f.blob(step: 1, index: 1))), sourceLocation: sourceLocation)
            }
        }
    }

    @Test(arguments: Damage.allCases)
    private func aPutOfTheSameContentRewritesAMissingOrDamagedBlob(_ damage: Damage) throws {
        try withTemporaryDirectory("repair") { dir throws in
            let f = BlobFixture(dir)
            try damage.apply(f)
            #expect(runCLI(["fsck"], store: f.store).status == 3 || damage == .payloadFlip)
            #expect(runCLI(["fsck", "--full"], store: f.store).status == 3)

            // A put of a file holding the chunk (under a new name) rewrites its blob: the new
            // snapshot, and the old one that shares the chunk, read back byte for byte.
            let put = runCLI(["put", "--run", "again", "--step", "7", dir.file("s2.safetensors")], store: f.store)
            #expect(put.status == 0, "\(put.stderr)")
            #expect(put.stderr.contains("1 missing or damaged blob(s) rewritten"), "the summary says so: \(put.stderr)")
            #expect(getBytes("again@7", store: f.store) == Data(f.files[2]!))
            #expect(getBytes("r@2", store: f.store) == Data(f.files[2]!))
            let fsck = runCLI(["fsck", "--full"], store: f.store)
            #expect(fsck.status == 0, "the store is whole again: \(text(fsck.stdout)) \(fsck.stderr)")
        }
    }

    @Test func putForceOfTheSameContentRewritesADeletedBlob() throws {
        try withTemporaryDirectory("repair-force") { dir throws in
            let f = BlobFixture(dir)
            try FileManager.default.removeItem(atPath: f.blob(step: 3, index: 0))
            #expect(runCLI(["get", "r@3", "-o", "-"], store: f.store).status == 3)
            for args in [["put", "--run", "r", "--step", "3"], ["put", "--force", "--run", "r", "--step", "3"]] {
                if args.contains("--force") { try FileManager.default.removeItem(atPath: f.blob(step: 3, index: 0)) }
                let put = runCLI(args + [dir.file("s3.safetensors")], store: f.store)
                #expect(put.status == 0 && put.stderr.contains("unchanged") && put.stderr.contains("rewritten"), "\(put.stderr)")
                #expect(getBytes("r@3", store: f.store) == Data(f.files[3]!), "\(args)")
            }
            #expect(runCLI(["fsck", "--full"], store: f.store).status == 0)
        }
    }

    /// A cached average whose blob went missing is computed and written again (the sibling of
    /// put's dedup check in the average engine), so a later cached read works.
    @Test func aCachedAverageRewritesAMissingBlobOfItsResult() throws {
        try withTemporaryDirectory("repair-derived") { dir throws in
            let f = BlobFixture(dir)
            cacheFirstRequests(store: f.store)
            let query = ["get", "--run", "r", "--lawa", "k=3,stride=1", "--at", "3"]
            let first = runCKStore(["--store", f.store] + query + ["-o", "-"])
            #expect(first.status == 0, "\(first.stderr)")
            let expected = first.stdout
            // Delete every blob of the cached result's `w` chunks that no input uses, drop the
            // cache entry's row, and compute again: the put of the result must rewrite them.
            _ = sqlite("\(f.store)/ckstore.db", "DELETE FROM derived")
            var inputs = Set((1...3).flatMap { s in (0..<3).map { f.blob(step: s, index: $0) } })
            for s in 1...3 { inputs.insert(blobPath(store: f.store, chunk: f.specs[s]![1].bytes)) }
            let all = objectFiles(f.store).keys.map { "\(f.store)/objects/\($0)" }
            var removed = 0
            for path in all where !inputs.contains(path) && !path.contains(".tmp-") {
                let name = URL(fileURLWithPath: path).lastPathComponent
                let hasRow = sqlite("\(f.store)/ckstore.db", "SELECT count(*) FROM chunks WHERE hex(hash) = upper('\(name)')")
                if hasRow.hasPrefix("1"), (try? FileManager.default.removeItem(atPath: path)) != nil { removed += 1 }
            }
            #expect(removed > 0)
            let second = runCKStore(["--store", f.store] + query + ["-o", "-"])
            #expect(second.status == 0 && second.stdout == expected, "\(second.stderr)")
            let cached = runCKStore(["--store", f.store] + query + ["-o", "-"])
            #expect(cached.status == 0 && cached.stdout == expected, "the cached result reads back: \(cached.stderr)")
            #expect(runCLI(["fsck", "--full"], store: f.store).status == 0)
        }
    }

    // MARK: - Version 1 blobs (stores of ckstore 0.1)

    /// Rewrites a version 2 blob as the version 1 blob ckstore 0.1 would have written (same
    /// codec and payload, 32-byte header) and fixes its chunk row's stored size.
    private func downgradeToV1(_ path: String, store: String) throws {
        let bytes = Array(readFile(path))
        let header = try bytes.withUnsafeBytes { try BlobHeader.decode($0, fileSize: bytes.count).get() }
        var v1 = header
        v1.address = nil
        var out = [UInt8](repeating: 0, count: BlobHeader.v1Size)
        out.withUnsafeMutableBytes { v1.encode(into: $0) }
        out += bytes[BlobHeader.size...]
        overwriteBlob(path, out)
        let name = URL(fileURLWithPath: path).lastPathComponent
        _ = sqlite("\(store)/ckstore.db", "UPDATE chunks SET stored_size = \(out.count) WHERE hex(hash) = upper('\(name)')")
    }

    @Test func version1BlobsStillReadAndADedupPutKeepsThem() throws {
        try withTemporaryDirectory("v1") { dir throws in
            let f = BlobFixture(dir)
            for step in 1...3 { for i in 0..<3 { try downgradeToV1(f.blob(step: step, index: i), store: f.store) } }
            for step in 1...3 { #expect(getBytes("r@\(step)", store: f.store) == Data(f.files[step]!)) }
            let fsck = runCLI(["fsck"], store: f.store)
            #expect(fsck.status == 0, "\(text(fsck.stdout)) \(fsck.stderr)")
            #expect(text(fsck.stdout).contains("9 blob(s) in format version 1"), "fsck notes them: \(text(fsck.stdout))")
            #expect(runCLI(["fsck", "--full"], store: f.store).status == 0)

            // A put of the same content dedups onto the intact version 1 blobs, unchanged.
            let before = Array(readFile(f.blob(step: 2, index: 1)))
            let put = runCLI(["put", "--run", "copy", "--step", "1", dir.file("s2.safetensors")], store: f.store)
            #expect(put.status == 0 && !put.stderr.contains("rewritten"), "\(put.stderr)")
            #expect(Array(readFile(f.blob(step: 2, index: 1))) == before, "the version 1 blob is kept")

            // Two swapped version 1 blobs: their headers record no address, so only a re-hash
            // (fsck --full, get --verify) sees it; a put of the content replaces the wrong one.
            let a = f.blob(step: 2, index: 1)
            let b = f.blob(step: 1, index: 1)
            let bytesA = Array(readFile(a))
            overwriteBlob(a, Array(readFile(b)))
            overwriteBlob(b, bytesA)
            #expect(runCLI(["fsck", "--full"], store: f.store).status == 3)
            #expect(runCLI(["get", "r@2", "--verify", "-o", "-"], store: f.store).status == 3)
            let repair = runCLI(["put", "--run", "copy", "--step", "2", dir.file("s2.safetensors")], store: f.store)
            #expect(repair.status == 0 && repair.stderr.contains("rewritten"), "\(repair.stderr)")
            #expect(getBytes("copy@2", store: f.store) == Data(f.files[2]!))
            #expect(runCLI(["get", "r@2", "--verify", "-o", "-"], store: f.store).status == 0)
        }
    }

    // MARK: - Version 2 header layout

    /// The exact bytes of a version 2 header (docs/FORMAT.md): an uncompressible 16-byte U8
    /// chunk is stored raw.
    @Test func theVersion2HeaderLayoutIsPinned() throws {
        let raw: [UInt8] = Array(0..<16)
        let name = SHA256Digest.hash(raw)
        let codec = BlobCodec(maxChunkSize: 64, settings: .init())
        let file = Array(try raw.withUnsafeBytes { try codec.encode($0, dtype: .u8, name: name) }.bytes)
        #expect(file.count == 64 + 16)
        let hex = file[0..<64].map { String(format: "%02x", $0) }.joined()
        #expect(
            hex
                == "434b423102000001" + "1000000000000000" + "1000000000000000" + "f76941b82fefb644"
                + "be45cb2605bf36bebde684841a28f0fd43c69850a3dce5fe" + "b6eef1c9822427f2",
            "got \(hex)")
        #expect(Array(file[64...]) == raw)
        // Field by field, independently of the pinned hex.
        #expect(Array(file[0..<4]) == [0x43, 0x4B, 0x42, 0x31] && file[4] == 2 && file[5] == 0 && file[6] == 0 && file[7] == 1)
        let le: (Int) -> UInt64 = { o in (0..<8).reduce(0) { $0 | UInt64(file[o + $1]) << (8 * UInt64($1)) } }
        #expect(le(8) == 16 && le(16) == 16)
        #expect(le(24) == XXH64.hash(raw))
        #expect(Array(file[32..<56]) == Array(name.bytes.prefix(24)))
        #expect(le(56) == XXH64.hash(Array(file[0..<56])))
    }

    // MARK: - Item 7: sizes from crafted headers and rows

    /// Four U8 tensors of 2^61 − 1 bytes each: every tensor is valid alone, but the file they
    /// describe is longer than 2^63 − 1 bytes.
    private static let overflowHeader: String = {
        let n = (1 << 61) - 1
        let entries = (0..<4).map { i in
            "\"t\(i)\":{\"dtype\":\"U8\",\"shape\":[\(n)],\"data_offsets\":[\(i * n),\((i + 1) * n)]}"
        }
        return "{" + entries.joined(separator: ",") + "}"
    }()

    @Test func aHeaderDescribingAFileBeyond2To63BytesIsRejectedNamingTheTensor() throws {
        #expect {
            _ = try SafetensorsHeader.parse(headerBytes: Array(Self.overflowHeader.utf8))
        } throws: { error in
            guard let e = error as? SafetensorsError else { return false }
            return e.kind == .fileTooLarge && e.message.contains("'t3'") && e.message.contains("largest possible file")
        }
        try withTemporaryDirectory("overflow") { dir throws in
            let store = makeStore(in: dir)
            let path = dir.file("huge.safetensors")
            writeFile(path, rawSafetensors(header: Self.overflowHeader, data: [1, 2, 3]))
            let before = storeSnapshot(store)
            let put = runCLI(["put", "--run", "x", "--step", "1", path], store: store)
            expectOneErrorLine(put, status: 1, mentions: ["'t3'", "largest possible file"])
            #expect(!put.stderr.contains("-9223"), "no wrapped-around offsets: \(put.stderr)")
            // The same through a pipe (no file size to compare with).
            let piped = runCLI(["put", "--run", "x", "--step", "1", "-"], store: store, stdin: readFile(path))
            #expect(piped.status == 1 && piped.stderr.contains("'t3'"), "\(piped.stderr)")
            expectStoreUnchanged(store, since: before)
        }
    }

    /// A manifest row whose data length (not part of the digest) is changed to near 2^63: reads
    /// report damage instead of overflowing the output offset.
    @Test func aCraftedDataLengthRowIsAnIntegrityErrorNotAnOverflow() throws {
        try withTemporaryDirectory("rows") { dir throws in
            let f = BlobFixture(dir)
            _ = sqlite("\(f.store)/ckstore.db", "UPDATE manifests SET data_length = 9223372036854775800")
            for args in [
                ["get", "r@1", "-o", "-"], ["get", "--run", "r", "--lawa", "k=2,stride=1", "--at", "2", "--no-cache", "-o", "-"],
            ] {
                expectOneErrorLine(runCLI(args, store: f.store), status: 3, mentions: ["data length 9223372036854775800"])
            }
            #expect(runCLI(["fsck"], store: f.store).status == 3)
        }
    }

    /// Rows that no validated header could produce are refused when a manifest is loaded,
    /// before any offset or buffer size is computed from them.
    @Test func manifestLayoutChecksCatchRowsNoHeaderCouldProduce() {
        let h = SHA256Digest.hash([1])
        func manifest(_ tensors: [(Int, Int, [Int])], dataLength: Int, header: Int = 10) -> Manifest {
            Manifest(
                headerBytes: Array(repeating: 0x20, count: header), dataLength: dataLength,
                tensors: tensors.enumerated().map { i, t in
                    TensorEntry(
                        info: TensorInfo(name: "t\(i)", dtype: .u8, shape: [t.1 - t.0], dataStart: t.0, dataEnd: t.1),
                        chunks: t.2.map { ChunkRef(hash: h, rawSize: $0, storedSize: 100) })
                })
        }
        #expect(manifest([(0, 8, [8]), (8, 12, [4])], dataLength: 12).layoutProblem() == nil)
        #expect(manifest([(0, 8, [8]), (9, 12, [3])], dataLength: 12).layoutProblem()?.contains("'t1'") == true)
        #expect(manifest([(0, 8, [8])], dataLength: 9).layoutProblem()?.contains("data length 9") == true)
        #expect(manifest([(0, 1 << 40, [1 << 40])], dataLength: 1 << 40).layoutProblem()?.contains("over the limit") == true)
        let end = Int.max - 8
        #expect(manifest([(0, end, [])], dataLength: end).layoutProblem()?.contains("longer than") == true)
    }

    /// A blob file larger than any blob can be (here a sparse file) is reported, never read
    /// into memory.
    @Test func anOversizedBlobFileIsReportedWithoutReadingIt() throws {
        try withTemporaryDirectory("huge-blob") { dir throws in
            let f = BlobFixture(dir)
            let victim = f.blob(step: 1, index: 0)
            chmod(victim, 0o644)
            #expect(truncate(victim, off_t(LocalBlobStore.maxBlobSize + 1)) == 0)
            let get = runCLI(["get", "r@1", "-o", "-"], store: f.store)
            #expect(get.status == 3 && get.stderr.contains(f.hex(step: 1, index: 0)), "\(get.stderr)")
            // A put of that content replaces it with a good blob.
            let put = runCLI(["put", "--run", "r", "--step", "1", dir.file("s1.safetensors")], store: f.store)
            #expect(put.status == 0 && put.stderr.contains("rewritten"), "\(put.stderr)")
            #expect(getBytes("r@1", store: f.store) == Data(f.files[1]!))
        }
    }
}
