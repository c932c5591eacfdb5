/// What a removal or garbage collection did (or, in a dry run, would do).
public struct CollectionReport: Sendable {
    /// Snapshots removed (RUN@STEP).
    public var removedSnapshots: [String] = []
    /// Derived snapshots (cached query results) removed, by recipe.
    public var removedDerived: [String] = []
    /// Files removed: blobs and temporary files (the sum of the three counts below).
    public var removedBlobs = 0
    /// Of those, blobs whose chunk rows this collection removed (justified by the database).
    public var removedReferencedBlobs = 0
    /// Of those, orphan blobs: blob files no chunk row named (left by interrupted puts).
    public var removedOrphans = 0
    /// Of those, temporary files of interrupted writes.
    public var removedTemporaryFiles = 0
    /// Bytes those files held.
    public var freedBytes = 0
    /// True when nothing was changed.
    public var dryRun = false
    /// Metric values dropped with the removed snapshots (`rm` only: they were measured on the
    /// removed content, or on averages that used it).
    public var droppedMetrics = 0
    /// For `--keep-lawa`: the windows kept in each run, by run name.
    public var lawaWindows: [(run: String, windows: LAWAWindows)] = []
    /// Things the user should know (a run without a complete LAWA window kept whole).
    public var warnings: [String] = []
    /// Entries of `objects/` that are not ckstore's (symlinks, other names): left alone.
    public var foreignEntries: [String] = []
    /// Pending snapshots removed with all their parts (RUN@STEP): `gc --pending`, those older
    /// than `pending_grace` on a plain gc, and `rm` of a pending RUN@STEP.
    public var removedPending: [String] = []
}

extension Store {
    /// Removes the named snapshots, then deletes the blob files of the chunk rows that only
    /// they used. Orphan blobs and temporary files are left to `gc`.
    /// - Throws: `.notFound` (and removes nothing) when a ref does not name a snapshot.
    public func remove(_ refs: [SnapshotRef], dryRun: Bool = false) throws(CKStoreError) -> CollectionReport {
        var targets: [(String, Int)] = []
        for ref in refs {
            if let key = try pendingTarget(ref) {
                targets.append(key)
                continue
            }
            let resolved = try resolve(ref)
            guard let snap = resolved.snapshot else {
                throw CKStoreError(.badInput, "rm needs RUN@STEP or RUN@latest, got \(ref)")
            }
            targets.append((snap.run, snap.step))
        }
        var report = CollectionReport()
        try collect(dryRun: dryRun, keepDerived: true, orphans: .keep, dropsMetrics: true, pending: .ofSelected, report: &report) {
            (_: inout CollectionReport) in
            targets
        }
        return report
    }

    /// Applies a retention policy (to one run or all), drops derived snapshots unless kept, and
    /// deletes every blob file nothing refers to — including orphans of interrupted puts, unless
    /// no blob file in `objects/` has a chunk row at all (see `OrphanPolicy`).
    ///
    /// Pending snapshots (of `run`, or all) go too: every one with `allPending` (gc --pending),
    /// else those whose first part arrived more than `pending_grace` ago.
    public func collectGarbage(
        run: String?, policy: RetentionPolicy, dryRun: Bool = false, allOrphans: Bool = false, allPending: Bool = false
    ) throws(CKStoreError) -> CollectionReport {
        var report = CollectionReport()
        let cutoff = allPending ? Int64.max : nowMilliseconds() - Int64(configuration.pendingGraceSeconds) * 1000
        try collect(
            dryRun: dryRun, keepDerived: policy.keepDerived, orphans: allOrphans ? .deleteAll : .deleteJustified,
            pending: .createdBefore(cutoff, run: run), report: &report
        ) {
            (report: inout CollectionReport) throws -> [(String, Int)] in
            guard policy.selectsSnapshots else { return [] }
            let runs = try run.map { [$0] } ?? metadata.runs().map(\.name)
            var doomed: [(String, Int)] = []
            for r in runs {
                guard let snaps = try metadata.snapshots(run: r) else { throw CKStoreError(.notFound, "run '\(r)' does not exist") }
                let steps = snaps.map(\.step)
                if let windows = policy.lawaWindows(steps), let (k, stride) = policy.keepLAWA {
                    report.lawaWindows.append((r, windows))
                    if windows.complete == nil {
                        report.warnings.append(
                            "run '\(r)' has no complete LAWA window for k=\(k),stride=\(stride) (steps \(stepList(steps))): "
                                + "--keep-lawa keeps all of its \(steps.count) snapshot(s)")
                    }
                }
                let keep = policy.stepsToKeep(steps)
                doomed += snaps.filter { !keep.contains($0.step) }.map { (r, $0.step) }
            }
            return doomed
        }
        return report
    }

    /// What a collection may do with orphan blobs (blob files no chunk row names).
    enum OrphanPolicy {
        /// Leave them (rm: it deletes only what its own row deletions justify).
        case keep
        /// Delete them, unless no blob file in `objects/` has a chunk row: then the database
        /// justifies none of the deletions, and gc refuses (`.conflict`, exit 1) (gc).
        case deleteJustified
        /// Delete them all (gc --all-orphans).
        case deleteAll
    }

    /// The shared removal machinery. Under the exclusive store lock (no put or read is in
    /// progress): one transaction deletes the chosen snapshot rows, derived rows, manifests no
    /// longer named, and chunk rows no longer used; `objects/` is listed (without following
    /// symlinks) before the commit, so a refusal rolls everything back; after the commit, the
    /// files chosen are unlinked relative to their folder. A crash in between leaves only
    /// orphan files (collected next time).
    private func collect(
        dryRun: Bool, keepDerived: Bool, orphans: OrphanPolicy, dropsMetrics: Bool = false, pending: PendingRemoval,
        report: inout CollectionReport,
        choose: (inout CollectionReport) throws -> [(String, Int)]
    ) throws(CKStoreError) {
        try requireWritable()
        try withLock(exclusive: true) { () throws(CKStoreError) in
            report.dryRun = dryRun
            var doomed: [BlobListing.Blob] = []
            var temporary: [BlobListing.Temporary] = []
            var options = CollectionOptions(dropsMetrics: dropsMetrics, dropsDerived: !keepDerived, dryRun: dryRun)
            pending.apply(to: &options)
            let changes = try wrapping("collect garbage") {
                try metadata.collect(options: options) {
                    try choose(&report).map { SnapshotKey(run: $0.0, step: $0.1) }
                } review: { changes in
                    // objects/ is listed before the commit, so a refusal rolls everything back.
                    let listing = try blobs.listing()
                    report.foreignEntries = listing.foreign
                    var released: [BlobListing.Blob] = []
                    var orphanFiles: [BlobListing.Blob] = []
                    var survivors = 0
                    for blob in listing.blobs {
                        if changes.liveChunks.contains(blob.id) {
                            survivors += 1
                        } else if changes.releasedChunks.contains(blob.id) {
                            released.append(blob)
                        } else {
                            orphanFiles.append(blob)
                        }
                    }
                    report.removedReferencedBlobs = released.count
                    doomed = released
                    if orphans == .keep { return }
                    // Refuse when the metadata names none of the blob files here: an emptied,
                    // deleted or replaced database looks exactly like that.
                    if orphans == .deleteJustified && survivors == 0 && released.isEmpty && !orphanFiles.isEmpty {
                        let bytes = orphanFiles.reduce(0) { $0 + $1.size }
                        let why =
                            changes.remainingSnapshots == 0
                            ? "the database has no snapshots"
                            : "none of the database's \(changes.liveChunks.count) chunk row(s) names a blob file that exists"
                        throw CKStoreError(
                            .conflict,
                            "gc: refusing to delete all \(orphanFiles.count) blob file(s) in \(blobs.location) (\(bytes) bytes): no chunk row refers "
                                + "to any of them (\(why)); if the metadata database was emptied, deleted or replaced, restore it; "
                                + "to delete them anyway run 'ckstore gc --all-orphans'")
                    }
                    report.removedOrphans = orphanFiles.count
                    report.removedTemporaryFiles = listing.temporary.count
                    doomed += orphanFiles
                    temporary = listing.temporary
                }
            }
            report.removedSnapshots = changes.removedSnapshots.map { "\($0.run)@\($0.step)" }
            report.droppedMetrics = changes.droppedMetrics
            report.removedPending = changes.removedPending.map { "\($0.run)@\($0.step)" }
            if !keepDerived { report.removedDerived = changes.removedDerivedRecipes }
            report.removedBlobs = doomed.count + temporary.count
            report.freedBytes = doomed.reduce(0) { $0 + $1.size } + temporary.reduce(0) { $0 + $1.size }
            if !dryRun {
                try lock.verifyHeld()  // a lost lock (its connection broke) deletes nothing more
                try wrapping("remove unreferenced blobs") {
                    for blob in doomed { try blobs.remove(blob.id) }
                    for t in temporary { try blobs.removeTemporary(t) }
                    try blobs.syncNamespace()
                }
            }
        }
    }
}

/// "0, 100, …, 1000" (at most 8 steps shown).
func stepList(_ steps: [Int]) -> String {
    steps.count <= 8
        ? steps.map(String.init).joined(separator: ", ")
        : steps.prefix(4).map(String.init).joined(separator: ", ") + ", …, " + steps.suffix(3).map(String.init).joined(separator: ", ")
}
