import CKStore

/// Pending snapshots (`MetadataStore` "Pending snapshots") on PostgreSQL: the same decisions as
/// SQLite. Every write transaction of the store holds its write lock (`write`: an advisory
/// transaction lock), so two parts completing at the same moment are serialized and exactly one
/// sees the count reach TOTAL; a unique violation (two first parts inserting the pending row)
/// is retried from the start by `write`.
extension PostgresMetadataStore {
    package func addPart(_ content: FileContent, path: String, run: String, step: Int, total: Int, force: Bool) throws -> PartOutcome {
        let ref = "\(run)@\(step)"
        try PartRules.validate(path: path, total: total, ref: ref)
        return try write { () throws -> PartOutcome in
            try checkFence(what: "put \(ref) --path \(path)")
            let now = nowMilliseconds()
            var pending = try pendingRow(run: run, step: step)
            if pending == nil {
                if let complete = try snapshot(run: run, step: step) {
                    if !force {
                        if complete.kind == .tree, let tree = try tree(complete.digest), tree.entries.count == total,
                            tree.entry(path: path)?.digest == content.digest
                        {
                            let done = CompletedSnapshot(digest: complete.digest, outcome: .unchanged, droppedMetrics: 0)
                            return PartOutcome(part: .unchanged, present: total, total: total, completed: done)
                        }
                        throw PartRules.completeConflict(ref: ref, digest: complete.digest)
                    }
                }
                let r = try conn.execute(
                    "INSERT INTO pending (run, step, parts_total, replaces, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    [.text(run), .int(step), .int(total), .bool(force), .int64(now)])
                pending = (try r.int64(0, 0), total, force)
            }
            let (pendingID, pendingTotal, replaces) = pending!
            let count = try conn.execute("SELECT count(*) FROM pending_parts WHERE pending_id = $1", [.int64(pendingID)]).int(0, 0)
            guard pendingTotal == total else {
                throw PartRules.totalMismatch(ref: ref, pending: pendingTotal, given: total, present: count)
            }
            if force && !replaces { try conn.execute("UPDATE pending SET replaces = TRUE WHERE id = $1", [.int64(pendingID)]) }
            let addition: PartAddition
            let e = try conn.execute(
                "SELECT m.digest FROM pending_parts p JOIN manifests m ON m.id = p.file_id WHERE p.pending_id = $1 AND p.path = $2",
                [.int64(pendingID), .text(path)])
            if e.rowCount > 0 {
                let existing = try digest(e, 0, 0)
                if existing == content.digest {
                    return PartOutcome(part: .unchanged, present: count, total: total, completed: nil)
                }
                guard force else { throw PartRules.partConflict(ref: ref, path: path, existing: existing, new: content.digest) }
                let fileID = try insertFileIfNew(content, now: now)
                try conn.execute(
                    "UPDATE pending_parts SET file_id = $1, created_at = $2 WHERE pending_id = $3 AND path = $4",
                    [.int64(fileID), .int64(now), .int64(pendingID), .text(path)])
                if let oldID = try manifestID(existing) { try deleteManifestIfUnreferenced(oldID) }
                addition = .replaced(previous: existing)
            } else {
                if let clash = try clash(pendingID, path: path) { throw CKStoreError(.badInput, "\(ref): \(clash)") }
                let fileID = try insertFileIfNew(content, now: now)
                try conn.execute(
                    "INSERT INTO pending_parts (pending_id, path, file_id, created_at) VALUES ($1, $2, $3, $4)",
                    [.int64(pendingID), .text(path), .int64(fileID), .int64(now)])
                addition = .added
            }
            let present = count + (addition == .added ? 1 : 0)
            guard present == total else { return PartOutcome(part: addition, present: present, total: total, completed: nil) }
            var files: [(path: String, content: FileContent)] = []
            for part in try partRows(pendingID) { files.append((part.path, try storedFile(of: part))) }
            let snapshot = try TreeSnapshot(files: files)
            try conn.execute("DELETE FROM pending WHERE id = $1", [.int64(pendingID)])
            let committed = try commitNamed(
                digest: snapshot.tree.digest, run: run, step: step, metrics: [], force: force || replaces
            ) { now in try insertTreeIfNew(snapshot, now: now) }
            let completed = CompletedSnapshot(
                digest: snapshot.tree.digest, outcome: committed.outcome, droppedMetrics: committed.droppedMetrics)
            return PartOutcome(part: addition, present: present, total: total, completed: completed)
        }
    }

    /// The stored content of a part's file object.

    /// Inserts a part's file object unless stored; returns its id.
    private func insertFileIfNew(_ content: FileContent, now: Int64) throws -> Int64 {
        switch content {
        case .safetensors(let manifest): return try insertManifestIfNew(manifest, now: now)
        case .bytes(let file):
            return try insertObjectIfNew(
                digest: file.digest, kind: .bytes, header: [], dataLength: file.size, tensors: [file.pseudoTensor], now: now)
        }
    }

    /// Why `path` cannot join the parts of a pending row (`PartRules.clash`): a part at one of
    /// its directories, or a part below it (paths compared by bytes, `COLLATE "C"`).
    private func clash(_ pendingID: Int64, path: String) throws -> String? {
        for ancestor in PartRules.ancestors(of: path) {
            let r = try conn.execute(
                "SELECT 1 FROM pending_parts WHERE pending_id = $1 AND path = $2", [.int64(pendingID), .text(ancestor)])
            if r.rowCount > 0 { return PartRules.clash(ancestor: ancestor, path: path) }
        }
        let (low, high) = PartRules.descendantRange(of: path)
        let r = try conn.execute(
            """
            SELECT path FROM pending_parts WHERE pending_id = $1 AND path COLLATE "C" > $2 AND path COLLATE "C" < $3
            ORDER BY path COLLATE "C" LIMIT 1
            """, [.int64(pendingID), .text(low), .text(high)])
        return r.rowCount > 0 ? PartRules.clash(descendant: try r.string(0, 0), path: path) : nil
    }

    /// (id, parts_total, replaces) of the pending row RUN@STEP.
    private func pendingRow(run: String, step: Int) throws -> (Int64, Int, Bool)? {
        let r = try conn.execute("SELECT id, parts_total, replaces FROM pending WHERE run = $1 AND step = $2", [.text(run), .int(step)])
        guard r.rowCount > 0 else { return nil }
        return (try r.int64(0, 0), try r.int(0, 1), try r.bool(0, 2))
    }

    /// The parts of a pending row, by path bytes.
    private func partRows(_ pendingID: Int64) throws -> [PendingPart] {
        let r = try conn.execute(
            """
            SELECT p.path, f.kind, CASE f.kind WHEN 'safetensors' THEN 8 + octet_length(f.header) + f.data_length ELSE f.data_length END,
              f.digest, p.created_at
            FROM pending_parts p JOIN manifests f ON f.id = p.file_id WHERE p.pending_id = $1 ORDER BY p.path COLLATE "C"
            """, [.int64(pendingID)])
        return try (0..<r.rowCount).map { i in
            let path = try r.string(i, 0)
            guard let kind = ContentKind(rawValue: try r.string(i, 1)), kind != .tree, let digest = SHA256Digest(bytes: try r.bytes(i, 3))
            else {
                throw CKStoreError(.integrity, "pending part '\(path)' names a damaged file row")
            }
            return PendingPart(path: path, kind: kind, size: try r.int(i, 2), digest: digest, createdAtMilliseconds: try r.int64(i, 4))
        }
    }

    package func pendingSnapshots() throws -> [PendingSnapshot] {
        try readView {
            let r = try conn.execute(
                "SELECT id, run, step, parts_total, replaces, created_at FROM pending ORDER BY run COLLATE \"C\", step")
            return try (0..<r.rowCount).map { i in
                PendingSnapshot(
                    run: try r.string(i, 1), step: try r.int(i, 2), total: try r.int(i, 3), replaces: try r.bool(i, 4),
                    createdAtMilliseconds: try r.int64(i, 5), parts: try partRows(try r.int64(i, 0)))
            }
        }
    }

    package func pendingSnapshot(run: String, step: Int) throws -> PendingSnapshot? {
        try readView {
            let r = try conn.execute(
                "SELECT id, parts_total, replaces, created_at FROM pending WHERE run = $1 AND step = $2", [.text(run), .int(step)])
            guard r.rowCount > 0 else { return nil }
            return PendingSnapshot(
                run: run, step: step, total: try r.int(0, 1), replaces: try r.bool(0, 2), createdAtMilliseconds: try r.int64(0, 3),
                parts: try partRows(try r.int64(0, 0)))
        }
    }

    /// Inside `collect`: deletes the pending snapshots the options name (created before the
    /// cutoff, or at one of `selected`); their parts' file objects then go with the other
    /// manifests nothing names.
    func collectPending(_ options: CollectionOptions, selected: [SnapshotKey]) throws -> [SnapshotKey] {
        var doomed: [SnapshotKey] = []
        if let cutoff = options.pendingCreatedBefore {
            let r = try conn.execute(
                "SELECT run, step FROM pending WHERE created_at < $1 AND ($2::text IS NULL OR run = $2) ORDER BY run COLLATE \"C\", step",
                [.int64(cutoff), options.pendingRun.map { .text($0) } ?? .null])
            doomed += try (0..<r.rowCount).map { SnapshotKey(run: try r.string($0, 0), step: try r.int($0, 1)) }
        }
        if options.dropsPendingOfSelected {
            for key in selected where try pendingRow(run: key.run, step: key.step) != nil && !doomed.contains(key) {
                doomed.append(key)
            }
        }
        for key in doomed {
            try conn.execute("DELETE FROM pending WHERE run = $1 AND step = $2", [.text(key.run), .int(key.step)])
        }
        return doomed
    }
}
