// The tree model: canonical encodings (digests checked against an independent computation with
// Python's hashlib, see the comments), path validation, and tree construction rules.

import Testing

@testable import CKStore

@Suite("Tree model")
struct TreeModelTests {
    /// A bytes file of 100 bytes in two chunks: 64 bytes sha256("c1"), 36 bytes sha256("c2").
    let file = BytesFile(
        size: 100,
        chunks: [
            ChunkRef(hash: SHA256Digest.hash(Array("c1".utf8)), rawSize: 64, storedSize: 70),
            ChunkRef(hash: SHA256Digest.hash(Array("c2".utf8)), rawSize: 36, storedSize: 50),
        ])

    @Test func bytesDigestIsTheDocumentedEncoding() {
        // python3: sha256(b'ckstore-bytes-v1\n' + u64(100) + u64(2) + u64(64) + sha256(b'c1') + u64(36) + sha256(b'c2'))
        #expect(file.digest.hex == "58ad58e329e44ae59ecc7099f579b290f68a92fe69ee61a8f1a914d85cfa9213")
        // Stored sizes are not content: another encoding of the same chunks has the same digest.
        let recompressed = BytesFile(size: 100, chunks: file.chunks.map { ChunkRef(hash: $0.hash, rawSize: $0.rawSize, storedSize: 99) })
        #expect(recompressed.digest == file.digest)
        #expect(file.layoutProblem() == nil)
        #expect(BytesFile(size: 101, chunks: file.chunks).layoutProblem() != nil)
    }

    @Test func treeDigestIsTheDocumentedEncodingOverEntriesSortedByPathBytes() throws {
        let safetensors = SHA256Digest.hash(Array("st".utf8))
        let tree = try TreeManifest(entries: [
            TreeEntry(path: "model.safetensors", kind: .safetensors, size: 4096, digest: safetensors),
            TreeEntry(path: "config.json", kind: .bytes, size: 100, digest: file.digest),
            TreeEntry(path: "a/b.bin", kind: .bytes, size: 100, digest: file.digest),
        ])
        #expect(tree.entries.map(\.path) == ["a/b.bin", "config.json", "model.safetensors"])
        // python3: entries sorted by path bytes; sha256(b'ckstore-tree-v1\n' + u64(3) + per entry
        // u64(len(path)) path u64(len(kind)) kind u64(size) digest)
        #expect(tree.digest.hex == "568ca130c06ce878b9dbe6902c394a58e4073346fb4c7bdf39677ed892dd5239")
        #expect(tree.totalSize == 4296)
        // The order of the input does not matter.
        let reversed = try TreeManifest(entries: tree.entries.reversed())
        #expect(reversed.digest == tree.digest)
    }

    @Test func entriesSortByBytesNotByUnicodeCollation() throws {
        let d = file.digest
        let tree = try TreeManifest(
            entries: ["b", "B", "a-b", "a/b", "é", "z"].map { TreeEntry(path: $0, kind: .bytes, size: 100, digest: d) })
        #expect(tree.entries.map(\.path) == ["B", "a-b", "a/b", "b", "z", "é"])
    }

    @Test(arguments: [
        ("", "empty"), ("/etc/passwd", "absolute"), ("a//b", "empty component"), ("a/", "empty component"),
        ("../x", "'..'"), ("a/../../x", "'..'"), ("./a", "'.'"), ("a/./b", "'.'"), ("a\u{0}b", "NUL"),
        (String(repeating: "x", count: 4097), "longer"),
    ])
    func unclean(_ path: String, _ reason: String) {
        let problem = TreePath.problem(path)
        #expect(problem?.contains(reason) == true, "\(path.prefix(20)): \(problem ?? "nil")")
        let error = #expect(throws: CKStoreError.self) { try TreePath.validated(path, code: .usage) }
        #expect(error?.code == .usage)
    }

    @Test(arguments: ["a", "a/b/c.json", "..a", "a..", ".hidden", "dir/.git/x", "sp ace/ünï/日本.txt", "a\\b"])
    func clean(_ path: String) {
        #expect(TreePath.problem(path) == nil)
    }

    @Test func treesRefuseDuplicatesFileDirectoryClashesNestingAndEmptiness() {
        let d = file.digest
        func entry(_ path: String, _ kind: ContentKind = .bytes) -> TreeEntry { TreeEntry(path: path, kind: kind, size: 100, digest: d) }
        let cases: [([TreeEntry], String)] = [
            ([], "at least one file"),
            ([entry("a"), entry("a")], "twice"),
            ([entry("a"), entry("a/b")], "both a file and the directory"),
            // "a!" sorts between "a" and "a/b": the clash must still be found.
            ([entry("a"), entry("a!"), entry("a/b/c")], "both a file and the directory"),
            ([entry("t", .tree)], "do not nest"),
            ([entry("../x")], "not a clean relative path"),
        ]
        for (entries, reason) in cases {
            let error = #expect(throws: CKStoreError.self) { try TreeManifest(entries: entries) }
            #expect(error?.code == .badInput)
            #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
        }
    }

    @Test func aTreeSnapshotKeepsOneContentPerDigest() throws {
        let snapshot = try TreeSnapshot(files: [("a.json", .bytes(file)), ("b.json", .bytes(file))])
        #expect(snapshot.tree.entries.count == 2 && snapshot.files.count == 1)
        #expect(snapshot.tree.entry(path: "b.json")?.digest == file.digest)
    }
}
