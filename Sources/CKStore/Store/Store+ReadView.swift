/// Consistent reads: resolution and manifest loading inside one read transaction.
///
/// Readers take the shared store lock (so gc and rm, which take it exclusively, cannot delete
/// a blob under them) and resolve refs and load manifests inside one metadata read view
/// (so a concurrent `put --force`, which shares the lock, cannot delete the manifest between
/// the two). Blob reads then need only the lock: puts never delete blobs.
extension Store {
    /// Runs `body` inside one read view of the metadata (`MetadataStore.withReadView`): every
    /// lookup it makes sees the same committed state. Nested calls join the open view.
    func readView<T>(_ body: () throws(CKStoreError) -> T) throws(CKStoreError) -> T {
        var failure: CKStoreError?
        let result: T? = try wrapping("read the metadata") { () throws -> T? in
            try metadata.withReadView { () -> T? in
                do throws(CKStoreError) {
                    return try body()
                } catch {
                    failure = error
                    return nil
                }
            }
        }
        if let failure { throw failure }
        return result!
    }

    /// The manifest a resolved ref names, loaded in one read view. When the content a
    /// RUN@STEP ref resolved to has been replaced since (a concurrent `put --force` deletes
    /// the old manifest), the step is resolved again in the same view: the reader gets the
    /// content the step holds now, never a false "does not exist".
    /// - Throws: `.notFound` only when the step (or the digest) really no longer exists.
    func currentManifest(of ref: ResolvedRef) throws(CKStoreError) -> (ResolvedRef, Manifest) {
        try readView { () throws(CKStoreError) -> (ResolvedRef, Manifest) in
            do throws(CKStoreError) {
                return (ref, try storedManifest(of: ref))
            } catch  where error.code == .notFound {
                guard let snapshot = ref.snapshot else { throw error }
                let again = try resolve(.step(run: snapshot.run, step: snapshot.step))
                return (again, try storedManifest(of: again))
            }
        }
    }

    /// Resolves a ref and loads its manifest in one read view.
    public func resolveManifest(_ ref: SnapshotRef) throws(CKStoreError) -> (ResolvedRef, Manifest) {
        try readView { () throws(CKStoreError) -> (ResolvedRef, Manifest) in
            let resolved = try resolve(ref)
            return (resolved, try storedManifest(of: resolved))
        }
    }
}
