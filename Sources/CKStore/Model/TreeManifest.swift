/// One file of a tree: where it goes, what kind of content it is, its size and its digest.
public struct TreeEntry: Sendable, Equatable {
    /// The clean relative path (`TreePath`), `/`-separated.
    public let path: String
    /// `.safetensors` or `.bytes` (trees do not nest).
    public let kind: ContentKind
    /// The file's size in bytes (what `get` writes).
    public let size: Int
    /// The file's own digest (a `Manifest`'s or a `BytesFile`'s).
    public let digest: SHA256Digest

    /// Creates an entry.
    public init(path: String, kind: ContentKind, size: Int, digest: SHA256Digest) {
        self.path = path
        self.kind = kind
        self.size = size
        self.digest = digest
    }
}

/// The content of a snapshot made of several files: its entries, sorted by path bytes, each
/// naming a file object by digest. Identified by `digest` (the snapshot digest shown to users
/// is `sha256:` + it).
public struct TreeManifest: Sendable, Equatable {
    /// The files, sorted by the UTF-8 bytes of their paths; paths are distinct and clean.
    public let entries: [TreeEntry]
    /// `sha256(canonicalEncoding)`.
    public let digest: SHA256Digest

    /// Builds a tree from entries in any order, sorting them and computing the digest.
    /// - Throws: `.badInput` for no entries, a path that is not clean, two entries with the same
    ///   path, a path that is also a directory of another (`a` and `a/b`), an entry whose kind
    ///   is `.tree`, or a negative size.
    public init(entries: [TreeEntry]) throws(CKStoreError) {
        let sorted = entries.sorted { TreePath.precedes($0.path, $1.path) }
        if let problem = Self.problem(sorted) { throw CKStoreError(.badInput, problem) }
        self.entries = sorted
        self.digest = SHA256Digest.hash(Self.canonicalEncoding(entries: sorted))
    }

    /// Reassembles a tree read from the metadata store, keeping its recorded digest.
    /// - Throws: `.integrity` when the stored entries break a rule of `init(entries:)`.
    package init(entries: [TreeEntry], recordedDigest: SHA256Digest) throws(CKStoreError) {
        let sorted = entries.sorted { TreePath.precedes($0.path, $1.path) }
        if let problem = Self.problem(sorted) {
            throw CKStoreError(.integrity, "tree sha256:\(recordedDigest.hex): \(problem)")
        }
        self.entries = sorted
        self.digest = recordedDigest
    }

    /// Why sorted entries cannot form a tree, or nil.
    private static func problem(_ sorted: [TreeEntry]) -> String? {
        if sorted.isEmpty { return "a tree needs at least one file" }
        for (index, entry) in sorted.enumerated() {
            if let problem = TreePath.problem(entry.path) { return "'\(entry.path)' is not a clean relative path: \(problem)" }
            if entry.kind == .tree { return "'\(entry.path)' is a tree; trees do not nest" }
            if entry.size < 0 { return "'\(entry.path)' has a negative size" }
            guard index > 0 else { continue }
            let previous = sorted[index - 1].path
            if previous == entry.path { return "'\(entry.path)' occurs twice" }
            // In byte order, "a" < "a/…" < "a0": a directory prefix sorts right before its contents
            // unless another name starting with "a" and a byte below "/" sits between; check all.
            if entry.path.utf8.starts(with: Array(previous.utf8) + [UInt8(ascii: "/")]) {
                return "'\(previous)' is both a file and the directory of '\(entry.path)'"
            }
        }
        // Names with a byte below '/' ("a!", "a-") can separate "a" from "a/b" in byte order.
        let paths = Set(sorted.map(\.path))
        for entry in sorted {
            var prefix = Substring(entry.path)
            while let slash = prefix.lastIndex(of: "/") {
                prefix = prefix[..<slash]
                if paths.contains(String(prefix)) { return "'\(prefix)' is both a file and the directory of '\(entry.path)'" }
            }
        }
        return nil
    }

    /// The total size of the files.
    public var totalSize: Int { entries.reduce(0) { $0 + $1.size } }

    /// The entry at `path`, or nil.
    public func entry(path: String) -> TreeEntry? { entries.first { $0.path == path } }

    /// The canonical encoding whose SHA-256 is the tree's digest (docs/FORMAT.md):
    ///
    /// ```
    /// "ckstore-tree-v1\n"                          16 ASCII bytes
    /// u64 entry count
    /// per entry, sorted by the path's UTF-8 bytes:
    ///   u64 path length, path (UTF-8)
    ///   u64 kind length, kind ("safetensors" or "bytes")
    ///   u64 size
    ///   32-byte file digest
    /// ```
    /// All integers are unsigned 64-bit little-endian.
    public static func canonicalEncoding(entries: [TreeEntry]) -> [UInt8] {
        var out = CanonicalWriter(magic: "ckstore-tree-v1\n", capacity: 8 + entries.count * 96)
        out.u64(entries.count)
        for entry in entries {
            out.string(entry.path)
            out.string(entry.kind.rawValue)
            out.u64(entry.size)
            out.digest(entry.digest)
        }
        return out.bytes
    }
}
