import CKStore

extension Connection {
    /// Runs a write `body` in its own transaction (`inTransaction`), or, inside an open one,
    /// as part of it (the outer transaction decides; a body that asks to roll back then throws).
    func joiningTransaction<T>(_ body: () throws -> (TransactionCompletion, T)) throws -> T {
        guard isInTransaction else { return try inTransaction(body) }
        let (completion, value) = try body()
        guard case .commit = completion else {
            throw CKStoreError(.environment, "a nested write asked to roll back its enclosing transaction")
        }
        return value
    }
}

/// Pending snapshots (`MetadataStore` "Pending snapshots"): parts put one by one, completed in
/// the transaction of the part that brings their count to TOTAL. SQLite has one writer at a
/// time (`BEGIN IMMEDIATE`), so two completing parts are serialized and exactly one of them
/// sees the count reach TOTAL.
extension SQLiteMetadataStore {
    package func addPart(_ content: FileContent, path: String, run: String, step: Int, total: Int, force: Bool) throws -> PartOutcome {
        let ref = "\(run)@\(step)"
        try PartRules.validate(path: path, total: total, ref: ref)
        return try db.inTransaction { () throws -> (Connection.TransactionCompletion, PartOutcome) in
            let now = nowMilliseconds()
            var pending = try pendingRow(run: run, step: step)
            if pending == nil {
                if let complete = try snapshot(run: run, step: step) {
                    if !force {
                        if complete.kind == .tree, let tree = try tree(complete.digest), tree.entries.count == total,
                            tree.entry(path: path)?.digest == content.digest
                        {
                            let done = CompletedSnapshot(digest: complete.digest, outcome: .unchanged, droppedMetrics: 0)
                            return (.commit, PartOutcome(part: .unchanged, present: total, total: total, completed: done))
                        }
                        throw PartRules.completeConflict(ref: ref, digest: complete.digest)
                    }
                }
                try db.statement("INSERT INTO pending (run, step, parts_total, replaces, created_at) VALUES (?, ?, ?, ?, ?)")
                    .run([.text(run), .int(step), .int(total), .int(force ? 1 : 0), .integer(now)])
                pending = (db.lastInsertRowID, total, force)
            }
            let (pendingID, pendingTotal, replaces) = pending!
            let count = try partCount(pendingID)
            guard pendingTotal == total else {
                throw PartRules.totalMismatch(ref: ref, pending: pendingTotal, given: total, present: count)
            }
            if force && !replaces { try db.statement("UPDATE pending SET replaces = 1 WHERE id = ?").run([.int(pendingID)]) }
            let addition: PartAddition
            let existing = try db.statement(
                "SELECT m.digest FROM pending_parts p JOIN manifests m ON m.id = p.file_id WHERE p.pending_id = ? AND p.path = ?"
            ).firstRow([.int(pendingID), .text(path)]) { SHA256Digest(bytes: $0.blob(0)) }
            if let existing {
                guard let existing else { throw CKStoreError(.integrity, "\(ref): part '\(path)' names a damaged file row") }
                if existing == content.digest {
                    return (.commit, PartOutcome(part: .unchanged, present: count, total: total, completed: nil))
                }
                guard force else { throw PartRules.partConflict(ref: ref, path: path, existing: existing, new: content.digest) }
                let fileID = try insertFileIfNew(content, now: now)
                try db.statement("UPDATE pending_parts SET file_id = ?, created_at = ? WHERE pending_id = ? AND path = ?")
                    .run([.int(fileID), .integer(now), .int(pendingID), .text(path)])
                if let oldID = try manifestID(existing) { try deleteManifestIfUnreferenced(oldID) }
                addition = .replaced(previous: existing)
            } else {
                if let clash = try clash(pendingID, path: path) { throw CKStoreError(.badInput, "\(ref): \(clash)") }
                let fileID = try insertFileIfNew(content, now: now)
                try db.statement("INSERT INTO pending_parts (pending_id, path, file_id, created_at) VALUES (?, ?, ?, ?)")
                    .run([.int(pendingID), .text(path), .int(fileID), .integer(now)])
                addition = .added
            }
            let present = count + (addition == .added ? 1 : 0)
            guard present == total else {
                return (.commit, PartOutcome(part: addition, present: present, total: total, completed: nil))
            }
            let completed = try complete(pendingID: pendingID, run: run, step: step, force: force || replaces)
            return (.commit, PartOutcome(part: addition, present: present, total: total, completed: completed))
        }
    }

    /// Builds the tree from the parts of a pending snapshot that has all of them, records it as
    /// RUN@STEP (`commitNamed`, joining the open transaction) and deletes the pending rows.
    private func complete(pendingID: Int, run: String, step: Int, force: Bool) throws -> CompletedSnapshot {
        var files: [(path: String, content: FileContent)] = []
        for part in try partRows(pendingID) {
            files.append((part.path, try storedFile(of: part)))
        }
        let snapshot = try TreeSnapshot(files: files)
        try db.statement("DELETE FROM pending WHERE id = ?").run([.int(pendingID)])
        let committed = try commitNamed(digest: snapshot.tree.digest, run: run, step: step, metrics: [], force: force) { now in
            try insertTreeIfNew(snapshot, now: now)
        }
        return CompletedSnapshot(digest: snapshot.tree.digest, outcome: committed.outcome, droppedMetrics: committed.droppedMetrics)
    }

    /// The stored content of a part's file object.

    /// Inserts a part's file object unless stored; returns its id.
    private func insertFileIfNew(_ content: FileContent, now: Int64) throws -> Int {
        switch content {
        case .safetensors(let manifest): return try insertManifestIfNew(manifest, now: now)
        case .bytes(let file):
            return try insertObjectIfNew(
                digest: file.digest, kind: .bytes, header: [], dataLength: file.size, tensors: [file.pseudoTensor], now: now)
        }
    }

    /// The number of parts of a pending row.
    private func partCount(_ pendingID: Int) throws -> Int {
        try db.statement("SELECT count(*) FROM pending_parts WHERE pending_id = ?").firstRow([.int(pendingID)]) { $0.int(0) } ?? 0
    }

    /// Why `path` cannot join the parts of a pending row (`PartRules.clash`), by index lookups:
    /// a part at one of its directories, or a part below it (a range of the primary key, since
    /// TEXT compares by bytes).
    private func clash(_ pendingID: Int, path: String) throws -> String? {
        let lookup = try db.statement("SELECT 1 FROM pending_parts WHERE pending_id = ? AND path = ?")
        for ancestor in PartRules.ancestors(of: path) where try lookup.firstRow([.int(pendingID), .text(ancestor)], { $0.int(0) }) != nil {
            return PartRules.clash(ancestor: ancestor, path: path)
        }
        let (low, high) = PartRules.descendantRange(of: path)
        let below = try db.statement(
            "SELECT path FROM pending_parts WHERE pending_id = ? AND path > ? AND path < ? ORDER BY path LIMIT 1"
        ).firstRow([.int(pendingID), .text(low), .text(high)]) { $0.text(0) }
        return below.map { PartRules.clash(descendant: $0, path: path) }
    }

    /// (id, parts_total, replaces) of the pending row RUN@STEP.
    private func pendingRow(run: String, step: Int) throws -> (Int, Int, Bool)? {
        try db.statement("SELECT id, parts_total, replaces FROM pending WHERE run = ? AND step = ?")
            .firstRow([.text(run), .int(step)]) { ($0.int(0), $0.int(1), $0.int(2) != 0) }
    }

    /// The parts of a pending row, by path.
    private func partRows(_ pendingID: Int) throws -> [PendingPart] {
        try db.statement(
            """
            SELECT p.path, f.kind, CASE f.kind WHEN 'safetensors' THEN 8 + length(f.header) + f.data_length ELSE f.data_length END,
              f.digest, p.created_at
            FROM pending_parts p JOIN manifests f ON f.id = p.file_id WHERE p.pending_id = ? ORDER BY p.path
            """
        ).rows([.int(pendingID)]) { row in
            guard let kind = ContentKind(rawValue: row.text(1)), kind != .tree, let digest = SHA256Digest(bytes: row.blob(3)) else {
                throw CKStoreError(.integrity, "pending part '\(row.text(0))' names a damaged file row")
            }
            return PendingPart(path: row.text(0), kind: kind, size: row.int(2), digest: digest, createdAtMilliseconds: Int64(row.int(4)))
        }
    }

    package func pendingSnapshots() throws -> [PendingSnapshot] {
        try db.readTransaction {
            try db.statement("SELECT id, run, step, parts_total, replaces, created_at FROM pending ORDER BY run, step").rows { row in
                (row.int(0), row.text(1), row.int(2), row.int(3), row.int(4) != 0, Int64(row.int(5)))
            }.map { row in
                PendingSnapshot(
                    run: row.1, step: row.2, total: row.3, replaces: row.4, createdAtMilliseconds: row.5, parts: try partRows(row.0))
            }
        }
    }

    package func pendingSnapshot(run: String, step: Int) throws -> PendingSnapshot? {
        try db.readTransaction {
            try db.statement("SELECT id, parts_total, replaces, created_at FROM pending WHERE run = ? AND step = ?")
                .firstRow([.text(run), .int(step)]) { ($0.int(0), $0.int(1), $0.int(2) != 0, Int64($0.int(3))) }
                .map { row in
                    PendingSnapshot(
                        run: run, step: step, total: row.1, replaces: row.2, createdAtMilliseconds: row.3, parts: try partRows(row.0))
                }
        }
    }

    /// Inside `collect`: deletes the pending snapshots the options name (created before the
    /// cutoff, or at one of `selected`); their parts' file objects then go with the other
    /// manifests nothing names.
    func collectPending(_ options: CollectionOptions, selected: [SnapshotKey]) throws -> [SnapshotKey] {
        var doomed: [SnapshotKey] = []
        if let cutoff = options.pendingCreatedBefore {
            doomed += try db.statement(
                "SELECT run, step FROM pending WHERE created_at < ?1 AND (?2 IS NULL OR run = ?2) ORDER BY run, step"
            )
            .rows([.integer(cutoff), options.pendingRun.map { .text($0) } ?? .null]) { SnapshotKey(run: $0.text(0), step: $0.int(1)) }
        }
        if options.dropsPendingOfSelected {
            for key in selected where try pendingRow(run: key.run, step: key.step) != nil && !doomed.contains(key) {
                doomed.append(key)
            }
        }
        for key in doomed { try db.statement("DELETE FROM pending WHERE run = ? AND step = ?").run([.text(key.run), .int(key.step)]) }
        return doomed
    }
}
