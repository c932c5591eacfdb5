import CKStore

extension SQLiteMetadataStore {
    /// The digest of the derived snapshot stored under `key`, or nil.
    package func derivedDigest(key: SHA256Digest) throws -> SHA256Digest? {
        try db.statement("SELECT m.digest FROM derived d JOIN manifests m ON m.id = d.manifest_id WHERE d.key = ?")
            .firstRow([.blob(key.bytes)]) { SHA256Digest(bytes: $0.blob(0))! }
    }

    /// The derived row stored under `key` (its recorded recipe and inputs, and the result's
    /// digest), or nil.
    package func derivedEntry(key: SHA256Digest) throws -> DerivedRow? {
        try db.statement(
            "SELECT d.id, m.digest, d.recipe, d.inputs FROM derived d JOIN manifests m ON m.id = d.manifest_id WHERE d.key = ?"
        ).firstRow([.blob(key.bytes)]) {
            DerivedRow(id: $0.int(0), key: key, recipe: $0.text(2), inputs: $0.text(3), digest: SHA256Digest(bytes: $0.blob(1)))
        }
    }

    /// Deletes the derived row stored under `key` if it still names `digest` (another process
    /// may have replaced it meanwhile), and the manifest when nothing else names it. Its chunk
    /// rows and blobs stay until gc. Returns true when a row was deleted.
    @discardableResult
    package func dropDerived(key: SHA256Digest, digest: SHA256Digest) throws -> Bool {
        try db.inTransaction { () throws -> (Connection.TransactionCompletion, Bool) in
            guard let manifestID = try manifestID(digest) else { return (.commit, false) }
            try db.statement("DELETE FROM derived WHERE key = ? AND manifest_id = ?").run([.blob(key.bytes), .int(manifestID)])
            let deleted = db.changes > 0
            try deleteManifestIfUnreferenced(manifestID)
            return (.commit, deleted)
        }
    }

    /// Every derived row: id, key, recorded recipe and inputs, and the result's digest.
    package func derivedRows() throws -> [DerivedRow] {
        try db.statement(
            "SELECT d.id, d.key, d.recipe, d.inputs, m.digest FROM derived d LEFT JOIN manifests m ON m.id = d.manifest_id ORDER BY d.id"
        )
        .rows { row in
            DerivedRow(
                id: row.int(0), key: SHA256Digest(bytes: row.blob(1)), recipe: row.text(2), inputs: row.text(3),
                digest: SHA256Digest(bytes: row.blob(4)))
        }
    }

    /// Records a derived snapshot (its manifest and the derived row) in one transaction.
    /// Idempotent: a second commit for the same key keeps the first.
    package func commitDerived(_ record: DerivedRecord) throws {
        try db.inTransaction { () throws -> (Connection.TransactionCompletion, Void) in
            let manifestID: Int
            switch record.content {
            case .file(let manifest): manifestID = try insertManifestIfNew(manifest, now: nowMilliseconds())
            case .tree(let snapshot): manifestID = try insertTreeIfNew(snapshot, now: nowMilliseconds())
            }
            // A blob rewritten while repairing a damaged cached result may differ in size from
            // the chunk row that outlived it: the row must describe the file now in place.
            let fixSize = try db.statement("UPDATE chunks SET stored_size = ? WHERE hash = ? AND stored_size <> ?")
            for chunk in record.chunks {
                try fixSize.run([.int(chunk.storedSize), .blob(chunk.hash.bytes), .int(chunk.storedSize)])
            }
            var runValue = SQLValue.null
            if let run = record.run, let id = try runID(run) { runValue = .int(id) }
            try db.statement(
                "INSERT INTO derived (key, recipe, inputs, run_id, manifest_id, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING"
            ).run([
                .blob(record.key.bytes), .text(record.recipe), .text(record.inputsText), runValue,
                .int(manifestID), .integer(nowMilliseconds()),
            ])
            return (.commit, ())
        }
    }

    /// Every derived snapshot (optionally of one run), newest first.
    package func derivedSnapshots(run: String?) throws -> [DerivedInfo] {
        let sql = """
            SELECT d.recipe, d.inputs, r.name, m.digest, \(Self.logicalBytesSQL), d.created_at
            FROM derived d JOIN manifests m ON m.id = d.manifest_id LEFT JOIN runs r ON r.id = d.run_id
            """
        let map: (Row) throws -> DerivedInfo = { row in
            DerivedInfo(
                recipe: row.text(0), inputs: row.text(1), run: row.optionalText(2), digest: SHA256Digest(bytes: row.blob(3))!,
                logicalBytes: row.int(4), createdAtMilliseconds: Int64(row.int(5)))
        }
        if let run {
            return try db.statement(sql + " WHERE r.name = ? ORDER BY d.created_at DESC, d.id DESC").rows([.text(run)], map)
        }
        return try db.statement(sql + " ORDER BY d.created_at DESC, d.id DESC").rows([], map)
    }
}
