import CKStore

extension SQLiteMetadataStore {
    /// Sets the recorded blob size of chunks whose blob a put or a cached query has just
    /// written again (its old blob was missing or damaged): the new blob may be encoded
    /// differently. Called after the blobs are durable, before the commit that refers to them.
    /// Rows that already hold the size are left alone; nothing is written for an empty list.
    package func updateStoredSizes(_ sizes: [(SHA256Digest, Int)]) throws {
        guard !sizes.isEmpty else { return }
        try db.inTransaction { () throws -> (Connection.TransactionCompletion, Void) in
            let update = try db.statement("UPDATE chunks SET stored_size = ?1 WHERE hash = ?2 AND stored_size <> ?1")
            for (hash, size) in sizes { try update.run([.int(size), .blob(hash.bytes)]) }
            return (.commit, ())
        }
    }
}
