import CKStore

/// The SQL behind gc, rm, fsck and `fsck --repair` (`MetadataStore` maintenance methods).
extension SQLiteMetadataStore {
    package func chunkIndexFactory() -> @Sendable () throws -> any ChunkIndex {
        let path = self.path
        return { try SQLiteMetadataStore(path: path, create: false, readOnly: true) }
    }

    package func chunkRowCount() throws -> Int {
        try db.statement("SELECT count(*) FROM chunks").firstRow { $0.int(0) } ?? 0
    }

    package func chunkRows() throws -> [ChunkRow] {
        try db.statement("SELECT hash, raw_size, stored_size FROM chunks ORDER BY hash").rows {
            ChunkRow(hash: SHA256Digest(bytes: $0.blob(0))!, rawSize: $0.int(1), storedSize: $0.int(2))
        }
    }

    package func chunkUses() throws -> [ChunkUse] {
        try db.statement(
            """
            SELECT c.hash, m.digest, t.name
            FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id JOIN manifests m ON m.id = tc.manifest_id
            JOIN tensors t ON t.manifest_id = tc.manifest_id AND t.position = tc.position
            """
        ).rows { row in
            ChunkUse(chunk: SHA256Digest(bytes: row.blob(0))!, manifest: SHA256Digest(bytes: row.blob(1))!, tensor: row.text(2))
        }
    }

    package func hasManifest(_ digest: SHA256Digest) throws -> Bool {
        try manifestID(digest) != nil
    }

    package func allManifestDigests() throws -> [SHA256Digest] {
        try db.statement("SELECT digest FROM manifests ORDER BY id").rows { SHA256Digest(bytes: $0.blob(0))! }
    }

    package func tensorRowsOutOfRange(maxOffset: Int, maxRawSize: Int) throws -> [TensorRowRange] {
        var result: [TensorRowRange] = []
        var seen = Set<SHA256Digest>()
        try db.statement(
            """
            SELECT m.digest, t.name, t.data_start, t.byte_length FROM tensors t JOIN manifests m ON m.id = t.manifest_id
            WHERE t.data_start < 0 OR t.byte_length < 0 OR t.data_start > ?1 OR t.byte_length > ?1
               OR EXISTS (SELECT 1 FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id
                          WHERE tc.manifest_id = t.manifest_id AND tc.position = t.position AND c.raw_size > ?2)
            ORDER BY m.id, t.position
            """
        ).forEachRow([.int(maxOffset), .int(maxRawSize)]) { row in
            let digest = SHA256Digest(bytes: row.blob(0))!
            if seen.insert(digest).inserted {
                result.append(TensorRowRange(manifest: digest, tensor: row.text(1), dataStart: row.int(2), byteLength: row.int(3)))
            }
        }
        return result
    }

    package func withReadView<T>(_ body: () throws -> T) throws -> T {
        try db.readTransaction(body)
    }

    package func storageProblems() throws -> [String] {
        var problems: [String] = []
        try db.readTransaction {
            let integrity = try db.statement("PRAGMA integrity_check").rows { $0.text(0) }
            if integrity != ["ok"] { problems += integrity.prefix(20) }
            try db.statement("PRAGMA foreign_key_check").forEachRow { row in
                problems.append("table \(row.text(0)) row \(row.int(1)) refers to a missing \(row.text(2)) row")
            }
        }
        return problems
    }

    /// The condition on a manifests row that nothing names it: no snapshot, no derived row, and
    /// no tree that a snapshot or derived row names (a tree's files live while the tree does), no
    /// part of a pending snapshot.
    static let unnamedManifest = """
        id NOT IN (SELECT manifest_id FROM snapshots) AND id NOT IN (SELECT manifest_id FROM derived)
          AND id NOT IN (SELECT te.file_id FROM tree_entries te
            WHERE te.tree_id IN (SELECT manifest_id FROM snapshots UNION SELECT manifest_id FROM derived))
          AND id NOT IN (SELECT file_id FROM pending_parts)
        """

    package func collect(
        options: CollectionOptions, select: () throws -> [SnapshotKey], review: (CollectionChanges) throws -> Void
    ) throws -> CollectionChanges {
        try db.inTransaction { () throws -> (Connection.TransactionCompletion, CollectionChanges) in
            var changes = CollectionChanges()
            let selected = try select()
            changes.removedPending = try collectPending(options, selected: selected)
            for key in selected {
                guard let runID = try runID(key.run) else { continue }
                if options.dropsMetrics {
                    changes.droppedMetrics += try dropMetrics(measuredOn: runID, step: key.step, includingStep: true)
                }
                try db.statement("DELETE FROM snapshots WHERE step = ? AND run_id = ?").run([.int(key.step), .int(runID)])
                if db.changes > 0 { changes.removedSnapshots.append(key) }
            }
            if options.dropsDerived {
                changes.removedDerivedRecipes = try db.statement("SELECT recipe FROM derived ORDER BY id").rows { $0.text(0) }
                try db.execute("DELETE FROM derived")
            }
            // Trees first, then the files nothing names any more (as in PostgreSQL).
            try db.execute("DELETE FROM manifests WHERE kind = 'tree' AND \(Self.unnamedManifest)")
            try db.execute("DELETE FROM manifests WHERE \(Self.unnamedManifest)")
            let unused = "FROM chunks WHERE id NOT IN (SELECT chunk_id FROM tensor_chunks)"
            changes.releasedChunks = Set(try db.statement("SELECT hash \(unused)").rows { SHA256Digest(bytes: $0.blob(0))! })
            try db.execute("DELETE \(unused)")
            changes.liveChunks = Set(try db.statement("SELECT hash FROM chunks").rows { SHA256Digest(bytes: $0.blob(0))! })
            changes.remainingSnapshots = try db.statement("SELECT count(*) FROM snapshots").firstRow { $0.int(0) } ?? 0
            try review(changes)
            return (options.dryRun ? .rollback : .commit, changes)
        }
    }

    package func repairRows(droppingDerivedOf derivedManifests: [SHA256Digest], unusedChunks: [SHA256Digest]) throws -> [SHA256Digest] {
        try db.inTransaction { () throws -> (Connection.TransactionCompletion, [SHA256Digest]) in
            for digest in derivedManifests {
                try db.statement("DELETE FROM derived WHERE manifest_id = (SELECT id FROM manifests WHERE digest = ?)").run([
                    .blob(digest.bytes)
                ])
                try db.statement("DELETE FROM manifests WHERE digest = ? AND \(Self.unnamedManifest)").run([.blob(digest.bytes)])
            }
            var dropped: [SHA256Digest] = []
            for hash in unusedChunks {
                try db.statement("DELETE FROM chunks WHERE hash = ? AND id NOT IN (SELECT chunk_id FROM tensor_chunks)").run([
                    .blob(hash.bytes)
                ])
                if db.changes > 0 { dropped.append(hash) }
            }
            return (.commit, dropped)
        }
    }
}
