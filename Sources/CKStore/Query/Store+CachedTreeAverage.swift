/// The derived-snapshot cache for averages of directory snapshots, checked before use as for
/// single files (`Store+CachedAverage.swift`): the derived row names a tree, which is served only
/// when it has exactly the newest input's paths and kinds, its side files are the newest input's,
/// and each safetensors file passes the single-file check (recipe and inputs in the row and in
/// its `__metadata__`, the exact header the query writes). Anything else, or a missing or
/// damaged blob met while serving it, drops the entry and recomputes; it is never an error.
extension Store {
    /// A cached directory result, with its files' content.
    struct CachedTree {
        let digest: SHA256Digest
        let tree: TreeManifest
        /// The content of each file, by path.
        let files: [String: FileContent]
    }

    /// Looks up the cached tree for `plan` and checks it against the query (inside the caller's
    /// read view). Returns nil on a miss.
    func cachedTreeEntry(for plan: QueryPlan, layout: TreeAverageLayout) throws(CKStoreError) -> Result<CachedTree, CacheRejection>? {
        let key = plan.cacheKey
        guard let row = try wrapping("look up the derived-snapshot cache", { try metadata.derivedEntry(key: key) }),
            let digest = row.digest
        else {
            return nil
        }
        func reject(_ reason: String) -> Result<CachedTree, CacheRejection> {
            .failure(CacheRejection(digest: digest, reason: reason, damaged: false))
        }
        let loaded: TreeManifest?
        do {
            loaded = try metadata.tree(digest)
        } catch {
            return reject("its tree rows cannot be read: \(error)")
        }
        guard let tree = loaded else { return reject("it is not a directory result") }
        guard (try? TreeManifest(entries: tree.entries))?.digest == digest else {
            return reject("its tree entries no longer match its digest")
        }
        guard tree.entries.map(\.path) == layout.files.map(\.entry.path), tree.entries.map(\.kind) == layout.files.map(\.entry.kind)
        else {
            return reject("its files are not the newest input's files")
        }
        var files: [String: FileContent] = [:]
        for (entry, file) in zip(tree.entries, layout.files) {
            guard let fileLayout = file.layout else {
                guard entry.digest == file.entry.digest else { return reject("file '\(entry.path)' is not the newest input's") }
                files[entry.path] = .bytes(file.copied!)
                continue
            }
            let manifest: Manifest
            do throws(CKStoreError) {
                manifest = try averageInputManifest(entry, label: "cached result")
            } catch {
                return reject(error.message)
            }
            if let reason = Store.cacheMismatch(
                manifest: manifest, recordedRecipe: row.recipe, recordedInputs: row.inputs, expectedRecipe: plan.recipe,
                expectedInputs: plan.inputsMetadata, expectedHeader: fileLayout.outputHeader(plan: plan),
                expectedDataLength: fileLayout.manifests.last!.dataLength)
            {
                return reject("file '\(entry.path)': \(reason)")
            }
            files[entry.path] = .safetensors(manifest)
        }
        return .success(CachedTree(digest: digest, tree: tree, files: files))
    }

    /// Writes a cached tree (or one file of it) to `destination`. Missing or damaged blobs
    /// become a `CacheRejection` with nothing left under the final name: a directory is filled
    /// in a temporary sibling (removed on failure); a single file is written as
    /// `serveCached` writes one.
    /// - Returns: the bytes written.
    func serveCachedTree(_ entry: CachedTree, layout: TreeAverageLayout, to destination: TreeAverageDestination)
        throws(CKStoreError) -> Result<Int, CacheRejection>
    {
        let label = "cached result"
        switch destination {
        case .none:
            return .success(0)
        case .single(let file, let target):
            let content = entry.files[file.entry.path]!
            switch content {
            case .safetensors(let manifest):
                return try serveCached(CachedEntry(digest: entry.digest, manifest: manifest), label: label, to: target)
            case .bytes:
                // The newest input's own side file: damage there is damage of an input.
                let output = try OutputWriter(target)
                try write(content, label: file.labels[file.labels.count - 1], to: output)
                try output.commit()
                return .success(output.bytesWritten)
            }
        case .directory(let path, let force):
            let directory = try AverageOutputDirectory(path, force: force)
            let meter = progressMeter(total: entry.tree.totalSize)
            var written = 0
            for treeEntry in entry.tree.entries {
                let output = try directory.file(treeEntry.path)
                output.progress = meter
                do throws(CKStoreError) {
                    try write(entry.files[treeEntry.path]!, label: "\(label): file '\(treeEntry.path)'", to: output)
                } catch  where error.code == .integrity && treeEntry.kind == .safetensors {
                    return .failure(CacheRejection(digest: entry.digest, reason: error.message, damaged: true))
                }
                try output.commit()
                written += output.bytesWritten
            }
            try directory.commit()
            return .success(written)
        }
    }
}
