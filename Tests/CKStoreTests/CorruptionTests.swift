// End-to-end: corruption is detected, never returned. Each fixture store holds r@1, r@2 and
// r@3 and gets exactly one defect in r@2's tensor 'beta' — a damaged, truncated, deleted or
// swapped blob, or a damaged manifest row. For each, `get r@2` and `get --lawa` over r@2 exit 3
// with one error line naming the snapshot and the tensor, `fsck` lists the problem (structural
// defects) or `fsck --full` does (payload defects), the undamaged snapshots still read back
// byte-exact, and fsck repairs nothing.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Helpers

/// Runs `sql` on the SQLite database at `path` with the `sqlite3` command-line shell when it is
/// installed, else with Python's sqlite3 module; returns standard output. Records an issue when
/// the statement fails.
private func runSQLite(_ path: String, _ sql: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    let shell = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3", "/bin/sqlite3"].first { FileManager.default.isExecutableFile(atPath: $0) }
    let process = Process()
    if let shell {
        process.executableURL = URL(fileURLWithPath: shell)
        process.arguments = ["-batch", "-bail", path, sql]
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let script = """
            import sys, sqlite3
            con = sqlite3.connect(sys.argv[1])
            if sys.argv[2] == '.dump':
                print('\\n'.join(con.iterdump()))
            else:
                for row in con.execute(sys.argv[2]):
                    print('|'.join('' if v is None else str(v) for v in row))
                con.commit()
            con.close()
            """
        process.arguments = ["python3", "-c", script, path, sql]
    }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    do {
        try process.run()
    } catch {
        Issue.record("cannot run sqlite: \(error)", sourceLocation: sourceLocation)
        return ""
    }
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "sqlite \(sql): \(text(errors))", sourceLocation: sourceLocation)
    return text(output)
}

/// Everything observable about a store, the database included (as an SQL dump): for "fsck
/// repaired nothing" checks.
private func storeAndDatabaseSnapshot(_ store: String, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Data] {
    var snapshot = storeSnapshot(store, sourceLocation: sourceLocation)
    snapshot["database dump"] = Data(runSQLite("\(store)/ckstore.db", ".dump", sourceLocation: sourceLocation).utf8)
    return snapshot
}

/// Flips the bits of `mask` in the byte at `offset` of a (read-only) blob file.
private func flipBlobByte(_ path: String, at offset: Int, mask: UInt8 = 0x01, sourceLocation: SourceLocation = #_sourceLocation) {
    chmod(path, 0o644)
    var bytes = Array(readFile(path))
    guard offset < bytes.count else {
        Issue.record("\(path) has only \(bytes.count) bytes", sourceLocation: sourceLocation)
        return
    }
    bytes[offset] ^= mask
    writeFile(path, bytes, sourceLocation: sourceLocation)
    chmod(path, 0o444)
}

/// The store every case starts from: r@1, r@2, r@3 with a chunk size of 4096, each holding
/// `alpha` (F32, 2 chunks of random bytes), `beta` (F32, 3 chunks of random bytes: stored
/// uncompressed, so every beta blob is 64 + 4096 bytes) and `gamma` (I32, 1 compressible chunk).
private struct CorruptionFixture {
    let store: String
    let files: [Int: [UInt8]]
    let tensors: [Int: [TensorSpec]]
    let digests: [Int: String]

    init(_ dir: TemporaryDirectory, sourceLocation: SourceLocation = #_sourceLocation) {
        store = makeStore(in: dir, sourceLocation: sourceLocation)
        var files: [Int: [UInt8]] = [:]
        var tensors: [Int: [TensorSpec]] = [:]
        var digests: [Int: String] = [:]
        for step in 1...3 {
            var rng = SplitMix64(seed: 0xC0_0000 + UInt64(step))
            let specs = [
                TensorSpec("alpha", "F32", [2048], rng: &rng), TensorSpec("beta", "F32", [3072], rng: &rng),
                TensorSpec("gamma", "I32", [1024], rng: &rng, compressible: true),
            ]
            let bytes = makeSafetensors(tensors: specs, metadata: ["step": "\(step)"])
            let path = dir.file("r\(step).safetensors")
            writeFile(path, bytes, sourceLocation: sourceLocation)
            digests[step] = putOK(path, run: "r", step: step, store: store, sourceLocation: sourceLocation)
            files[step] = bytes
            tensors[step] = specs
        }
        self.files = files
        self.tensors = tensors
        self.digests = digests
    }

    /// The raw bytes of chunk `index` of `tensor` at `step`.
    func chunk(step: Int, tensor: String, index: Int) -> [UInt8] {
        let spec = tensors[step]!.first { $0.name == tensor }!
        return chunks(of: spec.bytes, dtype: spec.dtype, chunkSize: 4096)[index]
    }

    /// The blob file holding that chunk.
    func blob(step: Int, tensor: String, index: Int) -> String {
        blobPath(store: store, chunk: chunk(step: step, tensor: tensor, index: index))
    }

    /// The 64-hex name of that blob.
    func blobHex(step: Int, tensor: String, index: Int) -> String {
        sha256Hex(chunk(step: step, tensor: tensor, index: index))
    }

    var database: String { "\(store)/ckstore.db" }

    /// SQL naming the manifest of r@STEP.
    func manifestID(step: Int) -> String {
        "(SELECT s.manifest_id FROM snapshots s JOIN runs r ON r.id = s.run_id WHERE r.name = 'r' AND s.step = \(step))"
    }

    /// SQL naming the position of `tensor` in the manifest of r@STEP.
    func position(step: Int, tensor: String) -> String {
        "(SELECT position FROM tensors WHERE manifest_id = \(manifestID(step: step)) AND name = '\(tensor)')"
    }

    /// SQL naming the chunk row of chunk `index` of `tensor` at r@STEP.
    func chunkID(step: Int, tensor: String, index: Int) -> String {
        "(SELECT chunk_id FROM tensor_chunks WHERE manifest_id = \(manifestID(step: step)) AND position = \(position(step: step, tensor: tensor)) AND chunk_index = \(index))"
    }
}

/// Checks that `result` is exit 3 with one error line naming r@STEP (by name or by digest) and
/// the tensor.
private func expectIntegrityFailure(
    _ result: CLIResult, step: Int, tensor: String, fixture: CorruptionFixture, allowStdout: Bool = false,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(result.status == 3, "exit status; stderr: \(result.stderr)", sourceLocation: sourceLocation)
    let lines = outputLines(result.stderr)
    #expect(lines.count == 1, "expected one stderr line: \(result.stderr.debugDescription)", sourceLocation: sourceLocation)
    #expect(lines.first?.hasPrefix("ckstore: error: ") == true, "\(result.stderr.debugDescription)", sourceLocation: sourceLocation)
    let namesSnapshot = result.stderr.contains("r@\(step)") || result.stderr.contains(fixture.digests[step] ?? "-")
    #expect(namesSnapshot, "error should name r@\(step) or its digest: \(result.stderr)", sourceLocation: sourceLocation)
    #expect(result.stderr.contains("'\(tensor)'"), "error should name tensor '\(tensor)': \(result.stderr)", sourceLocation: sourceLocation)
}

// MARK: - Defects

/// One defect applied to r@2's tensor `beta` (chunk 1 for blob defects).
enum CorruptionDefect: String, CaseIterable, Sendable, CustomTestStringConvertible {
    /// A flipped bit in the middle of the blob's payload: the XXH64 checksum catches it on read.
    case payloadBitFlip
    /// A damaged magic number (header byte 0).
    case headerMagic
    /// A damaged codec id (header byte 5): 0 (none) becomes 0x80, an unknown codec.
    case headerCodec
    /// A damaged raw length (header byte 8): disagrees with the payload length and the row.
    case headerRawLength
    /// A damaged payload checksum (header byte 24): the header checksum (byte 56) catches it.
    case headerChecksum
    /// The blob cut to half its length.
    case truncated
    /// The blob file deleted.
    case deleted
    /// The blob replaced by the bytes of another valid blob of the same size (r@1's beta chunk 1).
    case swappedWithAnotherValidBlob
    /// The tensor's `shape` text changed in the `tensors` table.
    case shapeRow
    /// One of the tensor's `tensor_chunks` rows deleted.
    case deletedChunkRow
    /// A chunk's `raw_size` one byte smaller in the `chunks` table.
    case rawSizeRow
    /// Two chunks' `raw_size` set to 2^63 − 1: their sum overflows 64 bits.
    case hugeRawSizeRows

    var testDescription: String { rawValue }

    /// Whether the structural `fsck` (no payload read) sees it. A swapped blob is seen there
    /// too: the version 2 header records the chunk address, which fsck compares with the name.
    var structural: Bool { self != .payloadBitFlip }

    /// Applies the defect to `fixture`.
    fileprivate func apply(to f: CorruptionFixture, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let victim = f.blob(step: 2, tensor: "beta", index: 1)
        #expect(FileManager.default.fileExists(atPath: victim), sourceLocation: sourceLocation)
        switch self {
        case .payloadBitFlip: flipBlobByte(victim, at: 64 + 2048, sourceLocation: sourceLocation)
        case .headerMagic: flipBlobByte(victim, at: 0, mask: 0xFF, sourceLocation: sourceLocation)
        case .headerCodec: flipBlobByte(victim, at: 5, mask: 0x80, sourceLocation: sourceLocation)
        case .headerRawLength: flipBlobByte(victim, at: 8, mask: 0x01, sourceLocation: sourceLocation)
        case .headerChecksum: flipBlobByte(victim, at: 24, mask: 0x10, sourceLocation: sourceLocation)
        case .truncated:
            let bytes = Array(readFile(victim))
            chmod(victim, 0o644)
            writeFile(victim, Array(bytes.prefix(bytes.count / 2)), sourceLocation: sourceLocation)
        case .deleted:
            try FileManager.default.removeItem(atPath: victim)
        case .swappedWithAnotherValidBlob:
            let other = Array(readFile(f.blob(step: 1, tensor: "beta", index: 1)))
            #expect(
                other.count == Array(readFile(victim)).count, "the swapped-in blob must have the same size", sourceLocation: sourceLocation)
            chmod(victim, 0o644)
            writeFile(victim, other, sourceLocation: sourceLocation)
            chmod(victim, 0o444)
        case .shapeRow:
            _ = runSQLite(
                f.database, "UPDATE tensors SET shape = '[3072,1]' WHERE manifest_id = \(f.manifestID(step: 2)) AND name = 'beta'",
                sourceLocation: sourceLocation)
        case .deletedChunkRow:
            _ = runSQLite(
                f.database,
                "DELETE FROM tensor_chunks WHERE manifest_id = \(f.manifestID(step: 2)) AND position = \(f.position(step: 2, tensor: "beta")) AND chunk_index = 1",
                sourceLocation: sourceLocation)
        case .rawSizeRow:
            _ = runSQLite(
                f.database, "UPDATE chunks SET raw_size = raw_size - 1 WHERE id = \(f.chunkID(step: 2, tensor: "beta", index: 1))",
                sourceLocation: sourceLocation)
        case .hugeRawSizeRows:
            _ = runSQLite(
                f.database,
                "UPDATE chunks SET raw_size = 9223372036854775807 WHERE id IN (\(f.chunkID(step: 2, tensor: "beta", index: 0)), \(f.chunkID(step: 2, tensor: "beta", index: 1)))",
                sourceLocation: sourceLocation)
        }
    }
}

@Suite("Corruption is detected, never returned")
struct CorruptionTests {
    @Test(arguments: CorruptionDefect.allCases)
    func oneDefectIsDetectedByEveryReaderAndNothingIsRepaired(_ defect: CorruptionDefect) throws {
        try withTemporaryDirectory("corrupt") { dir throws in
            let f = CorruptionFixture(dir)
            #expect(runCLI(["fsck", "--full"], store: f.store).status == 0, "the fixture starts clean")
            try defect.apply(to: f)
            let damaged = storeAndDatabaseSnapshot(f.store)

            // A raw get of the damaged snapshot.
            let out = dir.file("out.safetensors")
            let get = runCLI(["get", "r@2", "-o", out], store: f.store)
            let getVerified = runCLI(["get", "r@2", "--verify", "-o", "-"], store: f.store)
            // LAWA over r@1..r@3 reads every chunk of r@2 (no cache: a wrong result must not be kept).
            let lawaOut = dir.file("lawa.safetensors")
            let lawa = runCLI(["get", "--run", "r", "--lawa", "k=3,stride=1", "--at", "3", "--no-cache", "-o", lawaOut], store: f.store)
            let lawaVerified = runCLI(
                ["get", "--run", "r", "--lawa", "k=3,stride=1", "--at", "3", "--no-cache", "--verify", "-o", "-"], store: f.store)
            let checks: () -> Void = {
                // Every defect is seen by a default read (no SHA-256): a blob swapped for another
                // valid blob is caught by the chunk address its version 2 header records.
                expectIntegrityFailure(get, step: 2, tensor: "beta", fixture: f)
                #expect(!FileManager.default.fileExists(atPath: out), "no output file after a failed get")
                expectIntegrityFailure(lawa, step: 2, tensor: "beta", fixture: f)
                #expect(!FileManager.default.fileExists(atPath: lawaOut), "no output file after a failed LAWA")
                expectIntegrityFailure(getVerified, step: 2, tensor: "beta", fixture: f)
                expectIntegrityFailure(lawaVerified, step: 2, tensor: "beta", fixture: f)
            }
            checks()

            // fsck: structural defects are found without decoding; the others need --full.
            let fsck = runCLI(["fsck"], store: f.store)
            if defect.structural {
                #expect(fsck.status == 3, "fsck should find a \(defect) defect: \(text(fsck.stdout)) \(fsck.stderr)")
                #expect(text(fsck.stdout).contains("problem: "), "fsck lists the problem: \(text(fsck.stdout))")
                #expect(outputLines(fsck.stderr).count == 1 && fsck.stderr.hasPrefix("ckstore: error: fsck found"), "\(fsck.stderr)")
            } else {
                #expect(fsck.status == 0, "the structural fsck reads no payload: \(text(fsck.stdout)) \(fsck.stderr)")
            }
            let full = runCLI(["fsck", "--full"], store: f.store)
            #expect(full.status == 3, "fsck --full must find a \(defect) defect: \(text(full.stdout)) \(full.stderr)")
            let problems = outputLines(text(full.stdout)).filter { $0.hasPrefix("problem: ") }
            #expect(!problems.isEmpty, "fsck --full lists the problem: \(text(full.stdout))")
            let rowDefect = ([.shapeRow, .deletedChunkRow, .rawSizeRow, .hugeRawSizeRows] as [CorruptionDefect]).contains(defect)
            let named = problems.contains { line in
                (line.contains(f.blobHex(step: 2, tensor: "beta", index: 1)) || (rowDefect && line.contains("r@2")))
                    && line.contains("'beta'")
            }
            #expect(named, "fsck --full should name the damaged blob or r@2, and tensor 'beta': \(problems)")

            // Nothing was repaired or otherwise changed by any of the above (no derived snapshot
            // was cached either).
            let diffs = snapshotDifferences(damaged, storeAndDatabaseSnapshot(f.store))
            #expect(diffs.isEmpty, "reads and fsck changed the store: \(diffs)")

            // The damage is contained: the other snapshots still read back byte-exact.
            for step in [1, 3] {
                #expect(getBytes("r@\(step)", store: f.store) == Data(f.files[step]!), "r@\(step) after damage to r@2")
            }
        }
    }

    /// A blob file no row refers to (left by an interrupted put) is harmless: fsck exits 0 with
    /// a note, reads work, and fsck does not remove it.
    @Test func orphanBlobIsANoteNotAProblem() throws {
        try withTemporaryDirectory("orphan") { dir throws in
            let f = CorruptionFixture(dir)
            // A valid blob from another store, whose chunk this store does not hold.
            let other = makeStore(in: dir, name: "other")
            var rng = SplitMix64(seed: 0x0DD)
            let lone = TensorSpec("lone", "F32", [1000], rng: &rng)
            writeFile(dir.file("lone.safetensors"), makeSafetensors(tensors: [lone]))
            putOK(dir.file("lone.safetensors"), run: "x", step: 1, store: other)
            let source = blobPath(store: other, chunk: lone.bytes)
            let target = blobPath(store: f.store, chunk: lone.bytes)
            try FileManager.default.createDirectory(
                atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: source, toPath: target)
            let before = storeAndDatabaseSnapshot(f.store)
            for args in [["fsck"], ["fsck", "--full"]] {
                let r = runCLI(args, store: f.store)
                #expect(r.status == 0, "\(args): an orphan is not a problem: \(text(r.stdout)) \(r.stderr)")
                #expect(r.stderr.isEmpty)
                #expect(text(r.stdout).contains("note: 1 orphan blob(s)"), "\(args) notes the orphan: \(text(r.stdout))")
                #expect(!text(r.stdout).contains("problem:"))
            }
            for step in 1...3 { #expect(getBytes("r@\(step)", store: f.store) == Data(f.files[step]!)) }
            let stats = cliJSON(["stats"], store: f.store)
            #expect(stats["orphan_blobs"] as? Int == 1, "stats counts the orphan: \(stats)")
            #expect(snapshotDifferences(before, storeAndDatabaseSnapshot(f.store)).isEmpty, "fsck must not remove the orphan")
            #expect(FileManager.default.fileExists(atPath: target))
        }
    }

    /// Three defects at once — a payload bit flip (r@1 'alpha'), a deleted blob (r@2 'beta') and
    /// a damaged shape row (r@3 'gamma') — are all listed by `fsck --full`; the structural fsck
    /// lists the two it can see; nothing is repaired.
    @Test func fsckListsEveryProblemWhenThereAreSeveral() throws {
        try withTemporaryDirectory("corrupt3") { dir throws in
            let f = CorruptionFixture(dir)
            let flipped = f.blobHex(step: 1, tensor: "alpha", index: 0)
            let deleted = f.blobHex(step: 2, tensor: "beta", index: 2)
            flipBlobByte(f.blob(step: 1, tensor: "alpha", index: 0), at: 64 + 100)
            try FileManager.default.removeItem(atPath: f.blob(step: 2, tensor: "beta", index: 2))
            _ = runSQLite(f.database, "UPDATE tensors SET shape = '[2048]' WHERE manifest_id = \(f.manifestID(step: 3)) AND name = 'gamma'")
            let before = storeAndDatabaseSnapshot(f.store)

            let full = runCLI(["fsck", "--full"], store: f.store)
            #expect(full.status == 3)
            let problems = outputLines(text(full.stdout)).filter { $0.hasPrefix("problem: ") }
            #expect(problems.contains { $0.contains(flipped) && $0.contains("r@1 tensor 'alpha'") }, "payload flip listed: \(problems)")
            #expect(
                problems.contains { $0.contains(deleted) && $0.contains("r@2 tensor 'beta'") && $0.contains("missing") },
                "deleted blob listed: \(problems)")
            #expect(problems.contains { $0.contains("r@3") && $0.contains("'gamma'") }, "damaged row listed: \(problems)")
            #expect(
                problems.allSatisfy { $0.contains(flipped) || $0.contains(deleted) || $0.contains("r@3") },
                "no spurious problem: \(problems)")
            let count = problems.count
            #expect(
                full.stderr == "ckstore: error: fsck found \(count) problem(s); checked 3 manifest(s), 18 chunk(s), decoded 16 blob(s)\n")

            let structural = runCLI(["fsck"], store: f.store)
            #expect(structural.status == 3)
            let found = outputLines(text(structural.stdout)).filter { $0.hasPrefix("problem: ") }
            #expect(found.contains { $0.contains(deleted) && $0.contains("missing") }, "\(found)")
            #expect(found.contains { $0.contains("r@3") && $0.contains("'gamma'") }, "\(found)")
            #expect(!found.contains { $0.contains(flipped) }, "the structural check reads no payload: \(found)")

            #expect(snapshotDifferences(before, storeAndDatabaseSnapshot(f.store)).isEmpty, "fsck repaired or changed something")
        }
    }

    /// A damaged database file (not just rows) is an integrity failure too: fsck reports it via
    /// SQLite's integrity check or fails to open it, and never exits 0.
    @Test func damagedDatabasePagesAreNotReportedClean() throws {
        try withTemporaryDirectory("corrupt-db") { dir throws in
            let f = CorruptionFixture(dir)
            // Checkpoint the WAL so that every page lives in ckstore.db, then scribble over the
            // cell pointers of the tensor_chunks b-tree's root page (keeping its type byte, so
            // that SQLite still opens the file).
            _ = runSQLite(f.database, "PRAGMA wal_checkpoint(TRUNCATE)")
            let pageSize = try #require(Int(runSQLite(f.database, "PRAGMA page_size").trimmingCharacters(in: .whitespacesAndNewlines)))
            let root = try #require(
                Int(
                    runSQLite(f.database, "SELECT rootpage FROM sqlite_master WHERE name = 'tensor_chunks'").trimmingCharacters(
                        in: .whitespacesAndNewlines)))
            let path = f.database
            var bytes = Array(readFile(path))
            let page = (root - 1) * pageSize
            try #require(bytes.count >= page + pageSize)
            for i in (page + 8)..<(page + 200) { bytes[i] = 0xA5 }
            writeFile(path, bytes)
            let r = runCLI(["fsck"], store: f.store)
            #expect(r.status != 0, "fsck of a scribbled database must not pass: \(text(r.stdout)) \(r.stderr)")
            #expect(r.status == 3 || r.status == 1, "exit 3 (integrity) or 1 (cannot open): \(r.status) \(r.stderr)")
            #expect(r.status < 128, "no crash: \(r.stderr)")
        }
    }
}
