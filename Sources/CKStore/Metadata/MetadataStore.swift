/// The metadata half of a store: runs, snapshots, manifests, chunks and metrics.
///
/// SQLite is the first implementation (`SQLiteMetadataStore`); a PostgreSQL one can conform
/// later without changing callers. Contract, for every implementation:
/// - Lookups return nil (or an empty list) for "not found"; they throw only for failures of
///   the backend itself (I/O, corruption, busy beyond the timeout).
/// - `commit` is atomic: either every row of the snapshot is recorded or none is. It may be
///   called only after every chunk the manifest refers to is durable in the blob store.
/// - `commit` is idempotent for identical content at the same RUN@STEP (`.unchanged`).
/// - An instance belongs to one thread at a time.
protocol MetadataStore: AnyObject {
    /// True when a chunk row (and so, by the store's invariant, a durable blob) exists.
    func hasChunk(_ hash: SHA256Digest) throws -> Bool

    /// Records `manifest` under `run`@`step` in one transaction, dropping the metrics measured on
    /// content it replaces (returned: how many).
    /// - Throws: `CKStoreError.conflict` when the step names other content and `force` is false.
    func commit(manifest: Manifest, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    )

    /// All runs, by name.
    func runs() throws -> [RunSummary]

    /// The snapshots of a run, by step (nil when the run does not exist).
    func snapshots(run: String) throws -> [SnapshotInfo]?

    /// One snapshot, or nil.
    func snapshot(run: String, step: Int) throws -> SnapshotInfo?

    /// The newest (highest-step) snapshot of a run, or nil.
    func latestSnapshot(run: String) throws -> SnapshotInfo?

    /// The stored manifest digests that start with the given hex prefix (at most `limit`).
    func manifestDigests(prefix: String, limit: Int) throws -> [SHA256Digest]

    /// A stored manifest, or nil.
    func manifest(_ digest: SHA256Digest) throws -> Manifest?

    /// Metrics of a run (all variants).
    func metrics(run: String) throws -> [MetricRecord]

    /// Records metric values for RUN@STEP under `variant`, replacing earlier values of the same
    /// names. The run must exist.
    func recordMetrics(run: String, step: Int, variant: String, values: [(String, Double)]) throws

    /// Totals for `stats` (orphan figures are filled in by the store, which sees the blobs).
    func statistics() throws -> StoreStatistics

    /// For each step of a run, the stored bytes of the distinct chunks its snapshot uses.
    func storedBytesByStep(run: String) throws -> [Int: Int]

    /// The chunks some snapshot or derived snapshot refers to (everything else is garbage).
    func referencedChunkHashes() throws -> Set<SHA256Digest>

    /// The stored size of a chunk, or nil when no row exists (dedup lookups).
    func storedSize(ofChunk hash: SHA256Digest) throws -> Int?

    /// The digest of the derived snapshot cached under `key`, or nil.
    func derivedDigest(key: SHA256Digest) throws -> SHA256Digest?

    /// Records a derived snapshot (its manifest and recipe) in one transaction; idempotent.
    func commitDerived(manifest: Manifest, plan: QueryPlan) throws

    /// The derived snapshots (optionally of one run), newest first.
    func derivedSnapshots(run: String?) throws -> [DerivedInfo]

    /// Every chunk row: hash and stored size.
    func allChunks() throws -> [(SHA256Digest, Int)]
}
