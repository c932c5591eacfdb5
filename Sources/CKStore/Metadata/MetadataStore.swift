/// The metadata half of a store: runs, snapshots, manifests, chunks, derived snapshots and
/// metrics.
///
/// `SQLiteMetadataStore` is the local implementation; other backends (PostgreSQL) conform in
/// their own targets, and the test target has an in-memory one. The store's facade, its
/// workers and its maintenance code use only this protocol: every query language statement
/// lives in an implementation.
///
/// Contract, for every implementation and every method unless its documentation says more:
/// - **Not found.** Lookups return nil (or an empty list, or false) for "not found"; they throw
///   only for failures of the backend itself. Methods that need something to exist say which
///   `CKStoreError` they throw when it does not (`.notFound`).
/// - **Errors.** A thrown error is either a `CKStoreError` (a decision of the contract:
///   `.conflict`, `.notFound`, `.integrity` for rows that cannot describe valid content) or
///   an error conforming to `ClassifiedBackendError`, whose `failureKind` says whether it is
///   transient (`.busy`, `.unavailable`: retrying may succeed) or permanent (`.integrity`,
///   `.readOnly`, `.environment`). `CKStoreError.wrap` maps both without looking at messages.
/// - **Atomicity.** Every method that writes is atomic: all of its changes become visible
///   together, or none do (a failure leaves the metadata as it was).
/// - **Visibility.** A committed write is visible to every later read of every instance and
///   process (read-your-writes across connections).
/// - **Ordering with blobs.** Rows may refer to a chunk only after its blob is durable in the
///   blob store (`BlobStore.put` and `syncNamespace` returned); the callers guarantee it.
/// - **Threads.** An instance belongs to one thread at a time. Per-worker lookups go through
///   `chunkIndexFactory()`, whose factory may be called from any thread.
package protocol MetadataStore: AnyObject {
    // MARK: Chunks

    /// True when a chunk row (and so, by the store's invariant, a durable blob) exists.
    /// Read-only; never throws for a missing chunk.
    func hasChunk(_ hash: SHA256Digest) throws -> Bool

    /// The stored size of a chunk, or nil when no row exists (dedup lookups). Read-only.
    func storedSize(ofChunk hash: SHA256Digest) throws -> Int?

    /// A factory of per-worker `ChunkIndex` values: each worker thread of `put` and of a cached
    /// average calls it once, on its own thread, and uses the index for its dedup lookups.
    /// The factory is `Sendable`; the indexes it makes belong to the thread that made them.
    func chunkIndexFactory() -> @Sendable () throws -> any ChunkIndex

    /// The number of chunk rows (0 for an empty store). Read-only.
    func chunkRowCount() throws -> Int

    /// Every chunk row, ordered by hash. Read-only.
    func chunkRows() throws -> [ChunkRow]

    /// Every use of a chunk by a tensor of a stored manifest (snapshot, derived, or a file of a
    /// tree; a bytes file's use is its pseudo tensor `bytes`), one entry per (chunk, manifest, tensor), in no particular order. Read-only (fsck).
    func chunkUses() throws -> [ChunkUse]

    /// The chunks some snapshot or derived snapshot refers to, directly or through the files of
    /// a tree (everything else is garbage).
    func referencedChunkHashes() throws -> Set<SHA256Digest>

    /// Sets the recorded stored size of chunks whose blob was just written again (its old blob
    /// was missing or damaged; the new one may be encoded differently). Rows that already hold
    /// the size, and hashes without a row, are left alone; an empty list writes nothing.
    /// Atomic and idempotent.
    func updateStoredSizes(_ sizes: [(SHA256Digest, Int)]) throws

    // MARK: Snapshots

    /// Records `manifest` under `run`@`step` in one transaction: the run (if new), the manifest
    /// and its chunk rows (if new), the snapshot, and `metrics` (variant "raw"). Metrics
    /// measured on content it replaces (and on averages that used it, see `MetricVariants`)
    /// are dropped; the count is returned.
    ///
    /// Atomic. Idempotent for identical content at the same RUN@STEP (`.unchanged`, metrics
    /// recorded again). A manifest no snapshot or derived row names any more after `force` is
    /// deleted; its chunk rows stay until `collect`.
    /// - Throws: `CKStoreError.conflict` when the step names other content and `force` is
    ///   false (nothing changes).
    func commit(manifest: Manifest, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    )

    /// Records a tree snapshot under `run`@`step` in one transaction: the run (if new), every
    /// file object of the tree that is not stored yet (with its chunk rows), the tree manifest
    /// and its entries, the snapshot, and `metrics`. The same decisions as
    /// `commit(manifest:…)`: identical content is `.unchanged`, other content is a `.conflict`
    /// without `force` and replaced with it (what the replaced content alone used is deleted),
    /// and the metrics measured on replaced content are dropped (their count is returned).
    /// `snapshot.files` must hold the content of every entry (`.integrity` otherwise).
    func commit(tree snapshot: TreeSnapshot, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    )

    /// All runs, by name. Read-only.
    func runs() throws -> [RunSummary]

    /// The snapshots of a run, by step (nil when the run does not exist, [] when it has none).
    func snapshots(run: String) throws -> [SnapshotInfo]?

    /// Every snapshot of every run, ordered by run name, then step. Read-only (fsck).
    func allSnapshots() throws -> [SnapshotInfo]

    /// One snapshot, or nil.
    func snapshot(run: String, step: Int) throws -> SnapshotInfo?

    /// The newest (highest-step) snapshot of a run, or nil (no run, or no snapshot).
    func latestSnapshot(run: String) throws -> SnapshotInfo?

    /// For each step of a run, the stored bytes of the distinct chunks its snapshot uses
    /// ([:] for an unknown run).
    func storedBytesByStep(run: String) throws -> [Int: Int]

    // MARK: Pending snapshots

    /// Adds one file to the pending snapshot RUN@STEP (`put --parts TOTAL --path PATH`), in one
    /// transaction: the pending row (if new), the part's file object and its chunk rows (if
    /// new), and the part row; the caller has made the part's blobs durable. The part row's
    /// commit is the part's acknowledgement.
    ///
    /// When this brings the number of distinct paths to `total`, the same transaction builds
    /// the tree from the parts (`TreeManifest`, sorted by path), records it as RUN@STEP with
    /// the decisions of `commit(tree:…)` (`force` = the pending row's `replaces`) and deletes
    /// the pending rows, so concurrent puts of the last parts complete it exactly once.
    ///
    /// Decisions: the same content at the same path is `.unchanged` (nothing changes); other
    /// content there is a `.conflict` unless `force` (which replaces the part). A `total` that
    /// disagrees with the pending row's is `.badInput`, as is a path that is a directory of
    /// another part's path or the reverse (`a` and `a/b`). When RUN@STEP is already a complete
    /// snapshot and nothing is pending: a tree of `total` files holding this very part is
    /// `.unchanged` (a retried put of a completing part, `completed` set); otherwise a
    /// `.conflict` unless `force`, which starts a pending snapshot that replaces it on
    /// completion. `force` on any part marks the pending snapshot `replaces`.
    /// - Throws: `.badInput` for an unclean path or a `total` outside 1...`PendingSnapshot.maxParts`.
    func addPart(_ content: FileContent, path: String, run: String, step: Int, total: Int, force: Bool) throws -> PartOutcome

    /// Every pending snapshot with its parts, ordered by run name, then step. Read-only.
    func pendingSnapshots() throws -> [PendingSnapshot]

    /// The pending snapshot RUN@STEP with its parts, or nil. Read-only.
    func pendingSnapshot(run: String, step: Int) throws -> PendingSnapshot?

    // MARK: Manifests

    /// The stored manifest digests that start with the given lowercase hex prefix, ascending
    /// (at most `limit`).
    func manifestDigests(prefix: String, limit: Int) throws -> [SHA256Digest]

    /// Every stored manifest digest (of snapshots and derived snapshots), in insertion order.
    func allManifestDigests() throws -> [SHA256Digest]

    /// True when a manifest with this digest is stored (named by a snapshot or a derived row).
    func hasManifest(_ digest: SHA256Digest) throws -> Bool

    /// A stored safetensors manifest, or nil (also when the digest names a tree or a bytes file:
    /// see `contentKind(_:)`).
    /// - Throws: `CKStoreError.integrity` (naming the digest and tensor) when its rows cannot
    ///   describe a valid file (damaged dtype, shape, offsets or chunk rows).
    func manifest(_ digest: SHA256Digest) throws -> Manifest?

    /// The kind of the stored content object with this digest, or nil when none is stored.
    func contentKind(_ digest: SHA256Digest) throws -> ContentKind?

    /// A stored tree manifest, or nil (also when the digest names another kind of object).
    /// - Throws: `CKStoreError.integrity` when its entry rows cannot describe a valid tree.
    func tree(_ digest: SHA256Digest) throws -> TreeManifest?

    /// A stored opaque file, or nil (also when the digest names another kind of object).
    /// - Throws: `CKStoreError.integrity` when its rows cannot describe a valid file.
    func bytesFile(_ digest: SHA256Digest) throws -> BytesFile?

    /// Tensor rows whose offsets or lengths are outside any valid range (negative, beyond
    /// `maxOffset`), or that use a chunk whose raw size exceeds `maxRawSize`: the first such
    /// tensor of each manifest, in manifest then tensor order. Loading such a manifest could
    /// overflow, so fsck reports them instead. Read-only.
    func tensorRowsOutOfRange(maxOffset: Int, maxRawSize: Int) throws -> [TensorRowRange]

    // MARK: Metrics

    /// Metrics of a run (all variants), by step, variant and name ([] for an unknown run).
    func metrics(run: String) throws -> [MetricRecord]

    /// Records metric values for RUN@STEP under `variant`, replacing earlier values of the same
    /// names. Atomic; idempotent.
    /// - Throws: `CKStoreError.notFound` when the run does not exist.
    func recordMetrics(run: String, step: Int, variant: String, values: [(String, Double)]) throws

    // MARK: Statistics

    /// Totals for `stats`, from one consistent view (orphan figures are filled in by the
    /// store, which sees the blobs).
    func statistics() throws -> StoreStatistics

    // MARK: Derived snapshots (cached query results)

    /// The digest of the derived snapshot cached under `key`, or nil.
    func derivedDigest(key: SHA256Digest) throws -> SHA256Digest?

    /// The derived row stored under `key` (its recorded recipe and inputs, and the result's
    /// digest), or nil.
    func derivedEntry(key: SHA256Digest) throws -> DerivedRow?

    /// Records a derived snapshot (its manifest and its row) in one transaction, and makes the
    /// stored size of its existing chunk rows agree with the record's chunks. Atomic;
    /// idempotent: a second commit for the same key keeps the first row. A run named by the
    /// record that does not exist is recorded as no run.
    func commitDerived(_ record: DerivedRecord) throws

    /// Deletes the derived row stored under `key` if it still names `digest` (another process
    /// may have replaced it meanwhile), and its manifest when nothing else names it; chunk rows
    /// stay until `collect`. Atomic; returns true when a row was deleted (false, not an error,
    /// when there was none).
    @discardableResult
    func dropDerived(key: SHA256Digest, digest: SHA256Digest) throws -> Bool

    /// The derived snapshots (optionally of one run), newest first.
    func derivedSnapshots(run: String?) throws -> [DerivedInfo]

    /// Every derived row as recorded (fsck), in insertion order; `key` and `digest` are nil
    /// when the row is damaged.
    func derivedRows() throws -> [DerivedRow]

    // MARK: Consistency

    /// Runs `body` inside one read view: every lookup it makes (through this instance) sees
    /// the same committed state, even while other processes commit. Nested calls join the
    /// open view. Writes inside `body` are not allowed. Errors of `body` are rethrown as they
    /// are.
    func withReadView<T>(_ body: () throws -> T) throws -> T

    // MARK: Maintenance

    /// Removes snapshots and what only they used, in one transaction (rm and gc, under the
    /// exclusive store lock):
    /// 1. `select()` is called inside the transaction and returns the RUN@STEP to remove (it
    ///    may read through this instance; what it reads is what the deletion acts on). Pairs
    ///    that do not exist are ignored.
    /// 2. Those snapshot rows are deleted (with `options.dropsMetrics`, also the metrics
    ///    measured on their content, see `MetricVariants`); with `options.dropsDerived`, every
    ///    derived row; then every manifest nothing names, and every chunk row no manifest uses
    ///    (their hashes are `released`).
    /// 3. `review` is called with the changes; throwing from it rolls everything back and the
    ///    error is rethrown. With `options.dryRun` the transaction is rolled back after
    ///    `review` (the changes are what would happen).
    /// Atomic. Returns the changes.
    func collect(
        options: CollectionOptions, select: () throws -> [SnapshotKey], review: (CollectionChanges) throws -> Void
    ) throws -> CollectionChanges

    /// Problems the metadata engine finds in its own storage (SQLite: `integrity_check` and
    /// `foreign_key_check`), one line each, at most 20 from the engine check; [] when sound.
    func storageProblems() throws -> [String]

    /// `fsck --repair`'s row changes, in one transaction: drops every derived row naming one of
    /// `derivedManifests` (and those manifests when nothing else names them), then every chunk
    /// row among `unusedChunks` that no tensor uses. Atomic. Returns the chunk rows dropped.
    func repairRows(droppingDerivedOf derivedManifests: [SHA256Digest], unusedChunks: [SHA256Digest]) throws -> [SHA256Digest]

    /// Releases the backend's resources; the instance is not used afterwards.
    func close() throws
}

/// A per-worker handle for chunk lookups (put's dedup check, a cached average's dedup check).
/// It sees committed rows only; it belongs to the thread that made it.
package protocol ChunkIndex: AnyObject {
    /// The stored size of a chunk, or nil when no row exists. Read-only; not-found is nil.
    func storedSize(ofChunk hash: SHA256Digest) throws -> Int?
}
