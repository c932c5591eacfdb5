/// The inputs of an average, by kind: single safetensors files, or directory snapshots
/// matched file by file.
enum AverageInputs {
    /// Every input is one safetensors file.
    case file(AverageLayout)
    /// Every input is a directory snapshot (a tree).
    case tree(TreeAverageLayout)

    /// Names of the tensors copied rather than averaged (`PATH: NAME` for trees).
    var copiedTensors: [String] {
        switch self {
        case .file(let layout): layout.copiedTensors
        case .tree(let layout): layout.copiedTensors
        }
    }

    /// The paths of the side files copied from the newest input ([] for single files).
    var copiedFiles: [String] {
        switch self {
        case .file: []
        case .tree(let layout): layout.copiedFiles
        }
    }
}

/// The per-file work of an average over directory snapshots, checked against every input.
///
/// The output has the newest input's layout: every path it holds, in its order. Each
/// `.safetensors` file is averaged tensor by tensor with the file at the same path in every
/// other input (all inputs must hold the same set of safetensors paths, with the same tensors);
/// every other file (a side file: JSON, tokenizer, `.pt`) is copied from the newest input, as
/// integer tensors are. Averaging is elementwise, so per-rank shards average exactly: rank 3's
/// slice at step s meets rank 3's slice at s − ν.
struct TreeAverageLayout {
    /// One output file.
    struct File {
        /// The newest input's entry (path, kind, size, digest).
        let entry: TreeEntry
        /// The averaging work of a safetensors file; nil for a side file.
        let layout: AverageLayout?
        /// A side file's content in the newest input; nil for a safetensors file.
        let copied: BytesFile?
        /// Each input's label for messages about this file: `RUN@STEP: file 'PATH'`.
        let labels: [String]
    }

    /// The inputs' trees, oldest first.
    let trees: [TreeManifest]
    /// The output files, in the newest input's (path) order.
    let files: [File]

    /// The safetensors files, in path order.
    var averagedFiles: [File] { files.filter { $0.layout != nil } }

    /// Paths of the side files, copied from the newest input.
    var copiedFiles: [String] { files.filter { $0.layout == nil }.map(\.entry.path) }

    /// Tensors copied from the newest input rather than averaged, as `PATH: NAME`.
    var copiedTensors: [String] {
        files.flatMap { file in (file.layout?.copiedTensors ?? []).map { "\(file.entry.path): \($0)" } }
    }

    /// The total size of the output files.
    var outputSize: Int { files.reduce(0) { $0 + $1.entry.size } }

    /// Loads each input's safetensors files (and the newest input's side files) and checks that
    /// they can be averaged: the same set of `.safetensors` paths in every input, and within
    /// each file the same tensors (name, dtype, shape).
    /// - Throws: `.badInput` naming the path (and the tensor) and the two inputs that differ;
    ///   `.integrity` when stored rows no longer match their digests.
    init(plan: QueryPlan, trees: [TreeManifest], store: Store) throws(CKStoreError) {
        let labels = plan.inputs.map(\.label)
        let newest = trees[trees.count - 1]
        let newestLabel = labels[labels.count - 1]
        let newestPaths = Set(newest.entries.filter { $0.kind == .safetensors }.map(\.path))
        for (i, tree) in trees.enumerated() {
            let paths = Set(tree.entries.filter { $0.kind == .safetensors }.map(\.path))
            if let extra = paths.subtracting(newestPaths).min(by: TreePath.precedes) {
                throw CKStoreError(
                    .badInput,
                    "file '\(extra)' is a safetensors file in \(labels[i]) but not in \(newestLabel): "
                        + "every input must hold the same safetensors files")
            }
            if let missing = newestPaths.subtracting(paths).min(by: TreePath.precedes) {
                throw CKStoreError(
                    .badInput,
                    "file '\(missing)' is a safetensors file in \(newestLabel) but not in \(labels[i]): "
                        + "every input must hold the same safetensors files")
            }
        }
        var files: [File] = []
        for entry in newest.entries {
            let fileLabels = labels.map { "\($0): file '\(entry.path)'" }
            switch entry.kind {
            case .safetensors:
                var manifests: [Manifest] = []
                for (i, tree) in trees.enumerated() {
                    let own = tree.entry(path: entry.path)!
                    manifests.append(try store.averageInputManifest(own, label: labels[i]))
                }
                let layout = try AverageLayout(manifests: manifests, labels: labels, file: entry.path)
                files.append(File(entry: entry, layout: layout, copied: nil, labels: fileLabels))
            case .bytes, .tree:
                let file = try store.averageInputBytes(entry, label: newestLabel)
                files.append(File(entry: entry, layout: nil, copied: file, labels: fileLabels))
            }
        }
        self.trees = trees
        self.files = files
    }
}

extension Store {
    /// Loads the inputs of a plan by kind, inside the caller's read view: all single files,
    /// or all directory snapshots.
    /// - Throws: `.notFound` when an input no longer exists; `.badInput` when single files and
    ///   directory snapshots are mixed, or an input names one file of a tree; what the layouts
    ///   throw.
    func averageInputs(_ plan: QueryPlan) throws(CKStoreError) -> AverageInputs {
        var kinds: [ContentKind] = []
        for input in plan.inputs {
            let digest = input.digest
            guard let kind = try wrapping("read \(input.label)", { try metadata.contentKind(digest) }) else {
                throw CKStoreError(.notFound, "\(input.label) does not exist")
            }
            if kind == .bytes {
                throw CKStoreError(
                    .badInput, "\(input.label) is an opaque file of a directory snapshot, not a snapshot: it cannot be averaged")
            }
            kinds.append(kind)
        }
        if let tree = kinds.firstIndex(of: .tree), let file = kinds.firstIndex(of: .safetensors) {
            throw CKStoreError(
                .badInput,
                "cannot average directory snapshots with single-file snapshots: \(plan.inputs[tree].label) is a directory snapshot, "
                    + "\(plan.inputs[file].label) is one safetensors file")
        }
        guard kinds.first == .tree else { return .file(try AverageLayout(plan: plan, store: self)) }
        var trees: [TreeManifest] = []
        for input in plan.inputs { trees.append(try averageInputTree(input)) }
        return .tree(try TreeAverageLayout(plan: plan, trees: trees, store: self))
    }

    /// A directory snapshot's tree, checked against its digest.
    private func averageInputTree(_ input: PlanInput) throws(CKStoreError) -> TreeManifest {
        let digest = input.digest
        guard let tree = try wrapping("read \(input.label)", { try metadata.tree(digest) }) else {
            throw CKStoreError(.notFound, "\(input.label) does not exist")
        }
        guard let recomputed = try? TreeManifest(entries: tree.entries), recomputed.digest == digest else {
            throw CKStoreError(.integrity, "\(input.label): the stored tree entries no longer match digest sha256:\(digest.hex)")
        }
        return tree
    }

    /// The manifest of a safetensors file of an input tree, checked against its digest and size.
    func averageInputManifest(_ entry: TreeEntry, label: String) throws(CKStoreError) -> Manifest {
        guard case .safetensors(let manifest) = try wrapping("read \(label): file '\(entry.path)'", { try storedFile(entry, label: label) })
        else {
            throw CKStoreError(.integrity, "\(label): file '\(entry.path)' is not a safetensors file")
        }
        return manifest
    }

    /// The content of a side file of an input tree, checked against its digest and size.
    func averageInputBytes(_ entry: TreeEntry, label: String) throws(CKStoreError) -> BytesFile {
        guard case .bytes(let file) = try wrapping("read \(label): file '\(entry.path)'", { try storedFile(entry, label: label) }) else {
            throw CKStoreError(.integrity, "\(label): file '\(entry.path)' is not an opaque file")
        }
        return file
    }
}
