import CKStore

/// Derived snapshots (cached query results), as in `SQLiteMetadataStore+Derived.swift`.
extension PostgresMetadataStore {
    /// The digest of the derived snapshot stored under `key`, or nil.
    public func derivedDigest(key: SHA256Digest) throws -> SHA256Digest? {
        try derivedEntryTuple(key: key)?.digest
    }

    /// The derived row stored under `key` (recipe, inputs, result digest), or nil.
    func derivedEntryTuple(key: SHA256Digest) throws -> (digest: SHA256Digest, recipe: String, inputs: String)? {
        let r = try conn.execute(
            "SELECT m.digest, d.recipe, d.inputs FROM derived d JOIN manifests m ON m.id = d.manifest_id WHERE d.key = $1",
            [.bytes(key.bytes)])
        return r.rowCount == 0 ? nil : (try digest(r, 0, 0), try r.string(0, 1), try r.string(0, 2))
    }

    /// Deletes the derived row under `key` if it still names `digest`, and the manifest when
    /// nothing else names it. Returns true when a row was deleted.
    @discardableResult
    public func dropDerived(key: SHA256Digest, digest: SHA256Digest) throws -> Bool {
        try write { () throws -> Bool in
            guard let manifestID = try manifestID(digest) else { return false }
            let d = try conn.execute("DELETE FROM derived WHERE key = $1 AND manifest_id = $2", [.bytes(key.bytes), .int64(manifestID)])
            try deleteManifestIfUnreferenced(manifestID)
            return (d.affectedRows ?? 0) > 0
        }
    }

    /// Every derived row: id, key, recorded recipe and inputs, and the result's digest.
    public func derivedRowTuples() throws -> [(id: Int, key: SHA256Digest?, recipe: String, inputs: String, digest: SHA256Digest?)] {
        let r = try conn.execute(
            "SELECT d.id, d.key, d.recipe, d.inputs, m.digest FROM derived d LEFT JOIN manifests m ON m.id = d.manifest_id ORDER BY d.id")
        return try (0..<r.rowCount).map { i in
            (
                try r.int(i, 0), SHA256Digest(bytes: try r.bytes(i, 1)), try r.string(i, 2), try r.string(i, 3),
                try r.optional(i, 4, r.bytes).flatMap { SHA256Digest(bytes: $0) }
            )
        }
    }

    /// Records a single-file derived snapshot (its manifest and the derived row) in one
    /// transaction. Idempotent: a second commit for the same key keeps the first.
    public func commitDerived(manifest: Manifest, key: SHA256Digest, recipe: String, inputs: String, run: String?) throws {
        try commitDerived(content: .file(manifest), key: key, recipe: recipe, inputs: inputs, run: run)
    }

    /// Records a derived snapshot (its content, a file or a tree, and the derived row) in one
    /// transaction. Idempotent: a second commit for the same key keeps the first.
    package func commitDerived(content: DerivedRecord.Content, key: SHA256Digest, recipe: String, inputs: String, run: String?) throws {
        let record = DerivedRecord(key: key, recipe: recipe, inputs: [], run: run, content: content)
        try write { () throws -> Void in
            try checkFence(what: "cache the result of \(recipe)")
            let now = nowMilliseconds()
            let manifestID: Int64
            switch content {
            case .file(let manifest): manifestID = try insertManifestIfNew(manifest, now: now)
            case .tree(let snapshot): manifestID = try insertTreeIfNew(snapshot, now: now)
            }
            for chunk in record.chunks {
                try conn.execute(
                    "UPDATE chunks SET stored_size = $1 WHERE hash = $2 AND stored_size <> $1",
                    [.int(chunk.storedSize), .bytes(chunk.hash.bytes)])
            }
            var runValue = PGValue.null
            if let run, let id = try runID(run) { runValue = .int64(id) }
            try conn.execute(
                """
                INSERT INTO derived (key, recipe, inputs, run_id, manifest_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (key) DO NOTHING
                """,
                [.bytes(key.bytes), .text(recipe), .text(inputs), runValue, .int64(manifestID), .int64(now)])
        }
    }

    /// The derived snapshots (optionally of one run), newest first.
    public func derivedSnapshots(run: String?) throws -> [DerivedInfo] {
        let sql = """
            SELECT d.recipe, d.inputs, r.name, m.digest, \(Self.logicalBytesSQL), d.created_at
            FROM derived d JOIN manifests m ON m.id = d.manifest_id LEFT JOIN runs r ON r.id = d.run_id
            """
        let r =
            try run.map { try conn.execute(sql + " WHERE r.name = $1 ORDER BY d.created_at DESC, d.id DESC", [.text($0)]) }
            ?? conn.execute(sql + " ORDER BY d.created_at DESC, d.id DESC")
        return try (0..<r.rowCount).map { i in
            DerivedInfo(
                recipe: try r.string(i, 0), inputs: try r.string(i, 1), run: try r.optional(i, 2, r.string), digest: try digest(r, i, 3),
                logicalBytes: try r.int(i, 4), createdAtMilliseconds: try r.int64(i, 5))
        }
    }
}
