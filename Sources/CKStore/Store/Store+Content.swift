/// Loading what a snapshot names when it may be a tree: its kind, its tree manifest and the
/// content of each file, every digest checked.
extension Store {
    /// The kind of content a resolved ref names. When a RUN@STEP was replaced (`put --force`)
    /// after it was resolved, its old content may be gone: the step is resolved again in the
    /// same read view and the kind of what it names now is returned (the loaders re-resolve the
    /// same way), so a reader racing a replacement never sees a false "does not exist".
    /// - Throws: `.notFound` when nothing is stored under its digest (and the step, if any, no
    ///   longer exists).
    public func contentKind(of ref: ResolvedRef) throws(CKStoreError) -> ContentKind {
        try readView { () throws(CKStoreError) -> ContentKind in
            if let kind = try wrapping("read \(ref.label)", { try metadata.contentKind(ref.digest) }) { return kind }
            guard let snapshot = ref.snapshot else { throw CKStoreError(.notFound, "\(ref.label) does not exist") }
            let again = try resolve(.step(run: snapshot.run, step: snapshot.step))
            guard let kind = try wrapping("read \(again.label)", { try metadata.contentKind(again.digest) }) else {
                throw CKStoreError(.notFound, "\(ref.label) does not exist")
            }
            return kind
        }
    }

    /// Throws the error for a single-file operation on content that is not one safetensors
    /// file (called when `manifest(_:)` found no safetensors manifest); returns when nothing
    /// is stored under the digest.
    func refuseNonSafetensors(_ ref: ResolvedRef) throws(CKStoreError) {
        switch try wrapping("read \(ref.label)", { try metadata.contentKind(ref.digest) }) {
        case .tree:
            let files = ref.snapshot.map { " of \($0.fileCount) files" } ?? ""
            throw CKStoreError(
                .badInput, "\(ref.label) is a directory snapshot\(files), not one safetensors file (get it with -o DIR, or --file PATH)")
        case .bytes:
            throw CKStoreError(.badInput, "sha256:\(ref.digest.hex) is an opaque file of a directory snapshot, not a safetensors file")
        case .safetensors, nil:
            return
        }
    }

    /// The tree a resolved ref names and the content of each of its files, loaded in one read
    /// view and re-resolved like `currentManifest(of:)` when a RUN@STEP was replaced meanwhile.
    /// - Throws: `.badInput` when the ref names a single file; `.integrity` when the tree's or a
    ///   file's rows no longer match their digests.
    public func tree(of ref: ResolvedRef) throws(CKStoreError) -> (ResolvedRef, TreeSnapshot) {
        try readView { () throws(CKStoreError) -> (ResolvedRef, TreeSnapshot) in
            do throws(CKStoreError) {
                return (ref, try storedTree(of: ref))
            } catch  where error.code == .notFound {
                guard let snapshot = ref.snapshot else { throw error }
                let again = try resolve(.step(run: snapshot.run, step: snapshot.step))
                return (again, try storedTree(of: again))
            }
        }
    }

    /// The tree stored under the ref's digest and its files, each checked against its digest.
    func storedTree(of ref: ResolvedRef) throws(CKStoreError) -> TreeSnapshot {
        try wrapping("read \(ref.label)") { () throws -> TreeSnapshot in
            guard let tree = try metadata.tree(ref.digest) else {
                if try metadata.contentKind(ref.digest) != nil {
                    throw CKStoreError(.badInput, "\(ref.label) is a single-file snapshot, not a directory (--file applies to directories)")
                }
                throw CKStoreError(.notFound, "\(ref.label) does not exist")
            }
            if let recomputed = try? TreeManifest(entries: tree.entries), recomputed.digest != tree.digest {
                throw CKStoreError(.integrity, "\(ref.label): the stored tree entries no longer match digest sha256:\(tree.digest.hex)")
            }
            var files: [SHA256Digest: FileContent] = [:]
            for entry in tree.entries where files[entry.digest] == nil {
                files[entry.digest] = try storedFile(entry, label: ref.label)
            }
            return TreeSnapshot(tree: tree, files: files)
        }
    }

    /// The content of one file of a tree, checked against its digest, kind and size.
    func storedFile(_ entry: TreeEntry, label: String) throws -> FileContent {
        let subject = "\(label): file '\(entry.path)'"
        switch entry.kind {
        case .safetensors:
            guard let manifest = try metadata.manifest(entry.digest) else {
                throw CKStoreError(.integrity, "\(subject): its manifest sha256:\(entry.digest.hex) is missing")
            }
            let recomputed = Manifest(headerBytes: manifest.headerBytes, dataLength: manifest.dataLength, tensors: manifest.tensors)
            guard recomputed.digest == entry.digest, manifest.fileLength == entry.size else {
                throw CKStoreError(.integrity, "\(subject): the stored rows no longer match digest sha256:\(entry.digest.hex)")
            }
            return .safetensors(manifest)
        case .bytes:
            guard let file = try metadata.bytesFile(entry.digest) else {
                throw CKStoreError(.integrity, "\(subject): its rows sha256:\(entry.digest.hex) are missing")
            }
            guard BytesFile(size: file.size, chunks: file.chunks).digest == entry.digest, file.size == entry.size else {
                throw CKStoreError(.integrity, "\(subject): the stored rows no longer match digest sha256:\(entry.digest.hex)")
            }
            return .bytes(file)
        case .tree:
            throw CKStoreError(.integrity, "\(subject): a tree inside a tree")
        }
    }
}
