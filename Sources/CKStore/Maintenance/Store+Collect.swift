/// What a removal or garbage collection did (or, in a dry run, would do).
public struct CollectionReport: Sendable {
    /// Snapshots removed (RUN@STEP).
    public var removedSnapshots: [String] = []
    /// Derived snapshots (cached query results) removed, by recipe.
    public var removedDerived: [String] = []
    /// Blob files removed (unreferenced chunks, orphans of failed puts, temporary files).
    public var removedBlobs = 0
    /// Bytes those files held.
    public var freedBytes = 0
    /// True when nothing was changed.
    public var dryRun = false
}

/// Which snapshots `gc` keeps. When no policy is set, gc removes no snapshot (only garbage).
public struct RetentionPolicy: Sendable, Equatable {
    /// Keep the last N steps of each run.
    public var keepLast: Int?
    /// Keep every step that is a multiple of N.
    public var keepEvery: Int?
    /// Keep the steps LAWA k=K,stride=NU needs at the latest step (and so at every later step
    /// on the same grid): latest, latest−NU, …, latest−(K−1)·NU.
    public var keepLAWA: (k: Int, stride: Int)?
    /// Keep the derived snapshots (by default gc drops them: they can be recomputed).
    public var keepDerived = false

    /// Creates a policy.
    public init(keepLast: Int? = nil, keepEvery: Int? = nil, keepLAWA: (k: Int, stride: Int)? = nil, keepDerived: Bool = false) {
        self.keepLast = keepLast
        self.keepEvery = keepEvery
        self.keepLAWA = keepLAWA
        self.keepDerived = keepDerived
    }

    /// True when some policy selects snapshots to keep (and so the others to remove).
    public var selectsSnapshots: Bool { keepLast != nil || keepEvery != nil || keepLAWA != nil }

    public static func == (a: RetentionPolicy, b: RetentionPolicy) -> Bool {
        a.keepLast == b.keepLast && a.keepEvery == b.keepEvery && a.keepLAWA?.k == b.keepLAWA?.k
            && a.keepLAWA?.stride == b.keepLAWA?.stride && a.keepDerived == b.keepDerived
    }

    /// The steps of one run (ascending) that the policy keeps: the union of what each names.
    public func stepsToKeep(_ steps: [Int]) -> Set<Int> {
        var keep = Set<Int>()
        if let n = keepLast { keep.formUnion(steps.suffix(n)) }
        if let n = keepEvery, n > 0 { keep.formUnion(steps.filter { $0 % n == 0 }) }
        if let lawa = keepLAWA, let latest = steps.last {
            let window = Set((0..<lawa.k).map { latest - $0 * lawa.stride })
            keep.formUnion(steps.filter(window.contains))
        }
        return keep
    }
}

extension Store {
    /// Removes the named snapshots, then collects what nothing refers to any more.
    /// - Throws: `.notFound` (and removes nothing) when a ref does not name a snapshot.
    public func remove(_ refs: [SnapshotRef], dryRun: Bool = false) throws(CKStoreError) -> CollectionReport {
        var targets: [(String, Int)] = []
        for ref in refs {
            let resolved = try resolve(ref)
            guard let snap = resolved.snapshot else {
                throw CKStoreError(.badInput, "rm needs RUN@STEP or RUN@latest, got \(ref)")
            }
            targets.append((snap.run, snap.step))
        }
        return try collect(dryRun: dryRun, keepDerived: true) { () throws -> [(String, Int)] in targets }
    }

    /// Applies a retention policy (to one run or all), drops derived snapshots unless kept, and
    /// deletes every blob file nothing refers to — including orphans of interrupted puts.
    public func collectGarbage(run: String?, policy: RetentionPolicy, dryRun: Bool = false) throws(CKStoreError) -> CollectionReport {
        try collect(dryRun: dryRun, keepDerived: policy.keepDerived) { () throws -> [(String, Int)] in
            guard policy.selectsSnapshots else { return [] }
            let runs = try run.map { [$0] } ?? metadata.runs().map(\.name)
            var doomed: [(String, Int)] = []
            for r in runs {
                guard let snaps = try metadata.snapshots(run: r) else { throw CKStoreError(.notFound, "run '\(r)' does not exist") }
                let keep = policy.stepsToKeep(snaps.map(\.step))
                doomed += snaps.filter { !keep.contains($0.step) }.map { (r, $0.step) }
            }
            return doomed
        }
    }

    /// The shared removal machinery. Under the exclusive store lock (no put or read is in
    /// progress): one transaction deletes the chosen snapshot rows, derived rows, manifests no
    /// longer named, and chunk rows no longer used; after the commit, blob files without a
    /// chunk row are unlinked. A crash in between leaves only orphan files (collected next time).
    private func collect(
        dryRun: Bool, keepDerived: Bool, choose: () throws -> [(String, Int)]
    ) throws(CKStoreError) -> CollectionReport {
        try requireWritable()
        return try withLock(exclusive: true) { () throws(CKStoreError) -> CollectionReport in
            var report = CollectionReport()
            report.dryRun = dryRun
            let db = metadata.db
            let live: Set<SHA256Digest> = try wrapping("collect garbage") {
                try db.inTransaction { () throws -> (Connection.TransactionCompletion, Set<SHA256Digest>) in
                    for (run, step) in try choose() {
                        try db.statement("DELETE FROM snapshots WHERE step = ? AND run_id = (SELECT id FROM runs WHERE name = ?)")
                            .run([.int(step), .text(run)])
                        report.removedSnapshots.append("\(run)@\(step)")
                    }
                    if !keepDerived {
                        report.removedDerived = try db.statement("SELECT recipe FROM derived ORDER BY id").rows { $0.text(0) }
                        try db.execute("DELETE FROM derived")
                    }
                    try db.execute(
                        """
                        DELETE FROM manifests WHERE id NOT IN (SELECT manifest_id FROM snapshots)
                          AND id NOT IN (SELECT manifest_id FROM derived)
                        """)
                    try db.execute("DELETE FROM chunks WHERE id NOT IN (SELECT chunk_id FROM tensor_chunks)")
                    let live = Set(try db.statement("SELECT hash FROM chunks").rows { SHA256Digest(bytes: $0.blob(0))! })
                    return (dryRun ? .rollback : .commit, live)
                }
            }
            var doomed: [SHA256Digest] = []
            try wrapping("list blobs") {
                try blobs.forEach { id, size in
                    if !live.contains(id) {
                        doomed.append(id)
                        report.freedBytes += size
                    }
                }
            }
            let temporary = blobs.temporaryFiles()
            for t in temporary {
                if case .success(let st) = Sys.fileStatus(t) { report.freedBytes += st.size }
            }
            report.removedBlobs = doomed.count + temporary.count
            if !dryRun {
                try wrapping("remove unreferenced blobs") {
                    for id in doomed { try blobs.remove(id) }
                    for t in temporary { FileSystem.removeIfPresent(t) }
                    try blobs.syncNamespace()
                }
            }
            return report
        }
    }
}
