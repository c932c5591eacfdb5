/// The derived-snapshot cache, checked before use.
///
/// A cached result is served only when it provably answers the query: its derived row and its
/// own `__metadata__` (`ckstore.recipe`, `ckstore.inputs`) name the query's recipe and input
/// digests, and its header is exactly the header the query would write. A result that fails
/// this, or whose blobs turn out missing or damaged while it is read, is dropped from the cache
/// and recomputed (the caller reports why); it is never an error.
extension Store {
    /// A cache entry found for a plan, with its manifest.
    struct CachedEntry {
        let digest: SHA256Digest
        let manifest: Manifest
    }

    /// Why a cached entry was not served.
    struct CacheRejection: Error {
        let digest: SHA256Digest
        let reason: String
        /// True when blobs were missing or damaged (the recomputation rewrites them).
        let damaged: Bool
    }

    /// Looks up the cache entry for `plan` and checks it against the query (inside the caller's
    /// read view). Returns nil on a miss.
    /// - Throws: `CacheRejection` when an entry exists but does not answer the query.
    func cachedEntry(for plan: QueryPlan, layout: AverageLayout) throws(CKStoreError) -> Result<CachedEntry, CacheRejection>? {
        let key = plan.cacheKey
        guard let row = try wrapping("look up the derived-snapshot cache", { try metadata.derivedEntry(key: key) }),
            let digest = row.digest
        else {
            return nil
        }
        let manifest: Manifest
        do throws(CKStoreError) {
            manifest = try self.manifest(of: ResolvedRef(digest: digest, snapshot: nil))
        } catch  where error.code == .integrity {
            return .failure(CacheRejection(digest: digest, reason: error.message, damaged: false))
        }
        if let reason = Store.cacheMismatch(
            manifest: manifest, recordedRecipe: row.recipe, recordedInputs: row.inputs, expectedRecipe: plan.recipe,
            expectedInputs: plan.inputsMetadata, expectedHeader: layout.outputHeader(plan: plan),
            expectedDataLength: layout.manifests.last!.dataLength)
        {
            return .failure(CacheRejection(digest: digest, reason: reason, damaged: false))
        }
        return .success(CachedEntry(digest: digest, manifest: manifest))
    }

    /// Why a derived snapshot does not answer the query it is cached for, or nil when it does.
    /// Checks the derived row's recorded recipe and inputs, the same two values in the result's
    /// own `__metadata__`, and (when given) the exact header and data length the query writes.
    static func cacheMismatch(
        manifest: Manifest, recordedRecipe: String, recordedInputs: String, expectedRecipe: String, expectedInputs: String,
        expectedHeader: [UInt8]? = nil, expectedDataLength: Int? = nil
    ) -> String? {
        if recordedRecipe != expectedRecipe {
            return "its row records recipe '\(recordedRecipe)', not '\(expectedRecipe)'"
        }
        if recordedInputs != expectedInputs {
            return "its row records inputs \(recordedInputs), not \(expectedInputs)"
        }
        guard let header = try? SafetensorsHeader.parse(headerBytes: manifest.headerBytes) else {
            return "its stored header does not parse"
        }
        let metadata = header.metadata ?? []
        let recipe = metadata.last { $0.key == "ckstore.recipe" }?.value
        let inputs = metadata.last { $0.key == "ckstore.inputs" }?.value
        guard recipe == expectedRecipe else {
            return "its ckstore.recipe is " + (recipe.map { "'\($0)'" } ?? "missing") + ", not '\(expectedRecipe)'"
        }
        guard inputs == expectedInputs else {
            return "its ckstore.inputs is " + (inputs ?? "missing") + ", not \(expectedInputs)"
        }
        if let expectedHeader, manifest.headerBytes != expectedHeader {
            return "its header differs from the header the query writes"
        }
        if let expectedDataLength, manifest.dataLength != expectedDataLength {
            return "its data section is \(manifest.dataLength) bytes, the query writes \(expectedDataLength)"
        }
        return nil
    }

    /// Writes a cached result to `target` (nil: nothing to write). Missing or damaged blobs
    /// become a `CacheRejection` with nothing written: a file target is written to a temporary
    /// file renamed only when complete; other targets (standard output, a pipe or device) are
    /// checked by a decoding pass before anything is written to them.
    /// - Returns: the bytes written.
    func serveCached(_ entry: CachedEntry, label: String, to target: OutputTarget?) throws(CKStoreError) -> Result<Int, CacheRejection> {
        guard let target else { return .success(0) }
        var streaming = false
        do throws(CKStoreError) {
            let output = try OutputWriter(target)
            if output.positional == nil {
                try forEachChunk(of: entry.manifest, label: label) { _ throws(CKStoreError) in }
                streaming = true
            }
            try output.write(SafetensorsHeader.lengthPrefix(entry.manifest.headerBytes.count))
            try output.write(entry.manifest.headerBytes)
            if let sink = output.positional {
                try forEachChunk(of: entry.manifest, label: label, writingTo: (sink, output.bytesWritten)) { _ throws(CKStoreError) in }
                output.advance(by: entry.manifest.dataLength)
            } else {
                try forEachChunk(of: entry.manifest, label: label) { (bytes) throws(CKStoreError) in try output.write(bytes) }
            }
            try output.commit()
            return .success(output.bytesWritten)
        } catch  where error.code == .integrity && !streaming {
            return .failure(CacheRejection(digest: entry.digest, reason: error.message, damaged: true))
        }
    }

    /// Drops the derived row for `plan` if it still names `digest`.
    func dropCached(_ plan: QueryPlan, digest: SHA256Digest) throws(CKStoreError) {
        let key = plan.cacheKey
        _ = try wrapping("drop the cached result for \(plan.recipe)") { try metadata.dropDerived(key: key, digest: digest) }
    }
}
