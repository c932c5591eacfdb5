/// The content of one file of a tree: a safetensors manifest or opaque bytes.
public enum FileContent: Sendable {
    /// A safetensors file.
    case safetensors(Manifest)
    /// An opaque file.
    case bytes(BytesFile)

    /// The file's digest.
    public var digest: SHA256Digest {
        switch self {
        case .safetensors(let manifest): manifest.digest
        case .bytes(let file): file.digest
        }
    }

    /// `.safetensors` or `.bytes`.
    public var kind: ContentKind {
        switch self {
        case .safetensors: .safetensors
        case .bytes: .bytes
        }
    }

    /// The size of the file it reproduces.
    public var size: Int {
        switch self {
        case .safetensors(let manifest): manifest.fileLength
        case .bytes(let file): file.size
        }
    }

    /// The tensors under which the metadata tables record its chunks (a bytes file's pseudo
    /// tensor).
    package var tensorEntries: [TensorEntry] {
        switch self {
        case .safetensors(let manifest): manifest.tensors
        case .bytes(let file): [file.pseudoTensor]
        }
    }

    /// Its tree entry at `path`.
    public func entry(path: String) -> TreeEntry {
        TreeEntry(path: path, kind: kind, size: size, digest: digest)
    }
}

/// A tree and the content of each of its files, as `put` of a directory commits it.
public struct TreeSnapshot: Sendable {
    /// The tree.
    public let tree: TreeManifest
    /// The content of each entry, by digest (files with identical content share one).
    public let files: [SHA256Digest: FileContent]

    /// Pairs a tree read from the store with its files' content (checked by the caller).
    package init(tree: TreeManifest, files: [SHA256Digest: FileContent]) {
        self.tree = tree
        self.files = files
    }

    /// The content of the file at `path`, or nil.
    public func content(path: String) -> FileContent? {
        tree.entry(path: path).flatMap { files[$0.digest] }
    }

    /// Builds a tree of `(path, content)` pairs.
    /// - Throws: `.badInput` as `TreeManifest.init(entries:)` does.
    public init(files: [(path: String, content: FileContent)]) throws(CKStoreError) {
        tree = try TreeManifest(entries: files.map { $0.content.entry(path: $0.path) })
        var byDigest: [SHA256Digest: FileContent] = [:]
        for file in files { byDigest[file.content.digest] = file.content }
        self.files = byDigest
    }
}

/// What a snapshot names: one safetensors file (the format of every snapshot before trees, and
/// still of a single-file put) or a tree of files.
public enum SnapshotContent: Sendable {
    /// One safetensors file.
    case file(Manifest)
    /// A tree of files.
    case tree(TreeManifest)

    /// The content's digest (the snapshot digest).
    public var digest: SHA256Digest {
        switch self {
        case .file(let manifest): manifest.digest
        case .tree(let tree): tree.digest
        }
    }
}
