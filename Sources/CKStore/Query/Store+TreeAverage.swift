/// Averaging directory snapshots: the result is a tree with the newest input's layout, each
/// safetensors file averaged with the same path in every input, each side file copied.
extension Store {
    /// How many safetensors files are computed at once (each holds an open output file); a tree
    /// of more files is averaged in groups of this many, one after the other.
    static let treeAverageFilesAtOnce = 32

    /// `materialize` for directory snapshots, under the caller's lock.
    ///
    /// - `output` nil: compute and cache only.
    /// - `.directory` / `.automatic`: the whole tree, written to a temporary sibling of the
    ///   directory and renamed into place when complete (`AverageOutputDirectory`).
    /// - `.treeFile`: one file of the result. It is served from the cached tree when there is
    ///   one; otherwise only that file is computed and nothing is cached (a partial result is
    ///   not a derived snapshot).
    /// - `.file`: `.usage` (a directory result does not fit in one file).
    ///
    /// Caching works as for single files: the derived row names the result's tree manifest,
    /// whose side files are the newest input's own file objects (they cost nothing). A cached
    /// tree that does not answer the query, or whose blobs are missing or damaged, is dropped
    /// and recomputed.
    func materializeTree(_ view: PlanView, layout: TreeAverageLayout, output: AverageOutput?, useCache: Bool, start: Int64)
        throws(CKStoreError) -> AverageReport
    {
        let plan = view.plan
        var notes: [String] = []
        func report(fromCache: Bool, digest: SHA256Digest?, bytes: Int, files: Int) -> AverageReport {
            var r = AverageReport(
                plan: plan, fromCache: fromCache, derivedDigest: digest, copiedTensors: layout.copiedTensors, bytesOut: bytes,
                seconds: Double(nowMilliseconds() - start) / 1000, cacheNotes: notes)
            r.copiedFiles = layout.copiedFiles
            r.files = files
            return r
        }
        let destination = try TreeAverageDestination(output, layout: layout, recipe: plan.recipe)
        var rejection: CacheRejection?
        switch view.cachedTree {
        case .success(let entry):
            switch try serveCachedTree(entry, layout: layout, to: destination) {
            case .success(let bytes):
                let files: Int
                if case .single = destination { files = 1 } else { files = layout.files.count }
                return report(fromCache: true, digest: entry.digest, bytes: bytes, files: files)
            case .failure(let r): rejection = r
            }
        case .failure(let r): rejection = r
        case nil: break
        }
        var repair = false
        if let rejection {
            try dropCached(plan, digest: rejection.digest)
            repair = rejection.damaged
            notes.append(
                "dropped the cached result sha256:\(rejection.digest.hex.prefix(12))… for \(plan.recipe): \(rejection.reason); recomputing")
        }
        switch destination {
        case .single(let file, let target):
            let output = try OutputWriter(target)
            output.progress = progressMeter(total: file.entry.size)
            if file.layout != nil {
                _ = try averageFiles([file], plan: plan, writers: [output], cache: nil)
            } else {
                try copySideFile(file, to: output)
            }
            try output.commit()
            return report(fromCache: false, digest: nil, bytes: output.bytesWritten, files: 1)
        case .none, .directory:
            break
        }
        let directory: AverageOutputDirectory?
        if case .directory(let path, let force) = destination {
            directory = try AverageOutputDirectory(path, force: force)
        } else {
            directory = nil
        }
        let meter = directory == nil ? nil : progressMeter(total: layout.outputSize)
        let cache = useCache ? CacheTarget(blobs: blobs, makeChunkIndex: metadata.chunkIndexFactory(), rewritesExisting: repair) : nil
        var written = 0
        var contents: [String: FileContent] = [:]
        for file in layout.files where file.layout == nil {
            contents[file.entry.path] = .bytes(file.copied!)
            guard let directory else { continue }
            let output = try directory.file(file.entry.path)
            output.progress = meter
            try copySideFile(file, to: output)
            try output.commit()
            written += output.bytesWritten
        }
        let averaged = layout.averagedFiles
        var group = 0
        while group < averaged.count {
            let files = Array(averaged[group..<min(averaged.count, group + Self.treeAverageFilesAtOnce)])
            group += files.count
            var writers: [OutputWriter] = []
            if let directory {
                for file in files {
                    let output = try directory.file(file.entry.path)
                    output.progress = meter
                    writers.append(output)
                }
            }
            let manifests = try averageFiles(files, plan: plan, writers: writers, cache: cache)
            for (file, manifest) in zip(files, manifests) { contents[file.entry.path] = .safetensors(manifest) }
            for output in writers {
                try output.commit()
                written += output.bytesWritten
            }
        }
        var digest: SHA256Digest?
        if cache != nil {
            let snapshot = try TreeSnapshot(files: layout.files.map { ($0.entry.path, contents[$0.entry.path]!) })
            try wrapping("store the derived snapshot for \(plan.recipe)") {
                try blobs.syncNamespace()
                // Rows of blobs written again (theirs were missing or damaged) follow the new files.
                let chunks = snapshot.files.values.flatMap { $0.tensorEntries.flatMap(\.chunks) }
                let sizes = Dictionary(chunks.map { ($0.hash, $0.storedSize) }, uniquingKeysWith: { a, _ in a })
                try metadata.updateStoredSizes(sizes.map { ($0.key, $0.value) })
                try metadata.commitDerived(
                    DerivedRecord(
                        key: plan.cacheKey, recipe: plan.recipe, inputs: plan.inputs.map(\.digest), run: plan.run,
                        content: .tree(snapshot)))
            }
            digest = snapshot.tree.digest
        }
        try directory?.commit()
        return report(fromCache: false, digest: digest, bytes: written, files: layout.files.count)
    }

    /// Averages several safetensors files at once (`computeAverages`), writing file `i` to
    /// `writers[i]` when writers are given (each gets its header first), and returns each
    /// file's result manifest (its chunks recorded only when `cache` is set).
    private func averageFiles(_ files: [TreeAverageLayout.File], plan: QueryPlan, writers: [OutputWriter], cache: CacheTarget?)
        throws(CKStoreError) -> [Manifest]
    {
        var works: [AverageFileWork] = []
        var headers: [[UInt8]] = []
        for (i, file) in files.enumerated() {
            let layout = file.layout!
            let header = layout.outputHeader(plan: plan)
            headers.append(header)
            var positional: (PositionalOutput, Int)?
            if i < writers.count {
                try writers[i].write(SafetensorsHeader.lengthPrefix(header.count))
                try writers[i].write(header)
                positional = writers[i].positional.map { ($0, writers[i].bytesWritten) }
            }
            works.append(
                AverageFileWork(layout: layout, tensorIndices: Array(layout.tensors.indices), labels: file.labels, output: positional))
        }
        var chunkLists = files.map { [[ChunkRef]](repeating: [], count: $0.layout!.tensors.count) }
        try computeAverages(plan: plan, files: works, cache: cache) { (result) throws(CKStoreError) in
            if result.file < writers.count {
                if works[result.file].output == nil {
                    try writers[result.file].write(result.output.bytes)
                } else {
                    writers[result.file].advance(by: result.output.count)
                }
            }
            if let stored = result.stored { chunkLists[result.file][result.tensorIndex].append(stored) }
        }
        return files.enumerated().map { i, file in
            let layout = file.layout!
            let tensors = layout.tensors.enumerated().map { j, t in TensorEntry(info: t.info, chunks: chunkLists[i][j]) }
            return Manifest(headerBytes: headers[i], dataLength: layout.manifests.last!.dataLength, tensors: tensors)
        }
    }

    /// Writes a side file of the newest input to `output` (not committed).
    private func copySideFile(_ file: TreeAverageLayout.File, to output: OutputWriter) throws(CKStoreError) {
        try write(.bytes(file.copied!), label: file.labels[file.labels.count - 1], to: output)
    }
}

/// What `materializeTree` writes.
enum TreeAverageDestination {
    /// Nothing (compute and cache only).
    case none
    /// The whole tree, to this directory.
    case directory(String, force: Bool)
    /// One file of the result.
    case single(TreeAverageLayout.File, OutputTarget)

    /// Checks an `AverageOutput` against a directory result.
    /// - Throws: `.usage` for a single-file output; `.notFound` for a `--file` path the result
    ///   does not have.
    init(_ output: AverageOutput?, layout: TreeAverageLayout, recipe: String) throws(CKStoreError) {
        switch output {
        case nil: self = .none
        case .file:
            throw CKStoreError(
                .usage,
                "the inputs of \(recipe) are directory snapshots (\(layout.files.count) files): write the result to a directory "
                    + "(-o DIR), or one of its files with --file PATH")
        case .directory(let path, let force), .automatic(let path, let force): self = .directory(path, force: force)
        case .treeFile(let path, let target):
            guard let file = layout.files.first(where: { $0.entry.path == path }) else {
                let names = layout.files.prefix(5).map(\.entry.path).joined(separator: ", ")
                throw CKStoreError(
                    .notFound,
                    "the result of \(recipe) has no file '\(path)' (it has \(layout.files.count): \(names)"
                        + (layout.files.count > 5 ? ", …)" : ")"))
            }
            self = .single(file, target)
        }
    }
}
