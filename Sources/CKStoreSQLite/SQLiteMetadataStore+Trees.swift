import CKStore

/// Trees and bytes files (`MetadataStore` content lookups beyond safetensors manifests).
extension SQLiteMetadataStore {
    package func contentKind(_ digest: SHA256Digest) throws -> ContentKind? {
        try db.statement("SELECT kind FROM manifests WHERE digest = ?").firstRow([.blob(digest.bytes)]) { row in
            guard let kind = ContentKind(rawValue: row.text(0)) else {
                throw CKStoreError(.integrity, "content sha256:\(digest.hex) has an unknown kind '\(row.text(0))'")
            }
            return kind
        }
    }

    package func tree(_ digest: SHA256Digest) throws -> TreeManifest? {
        try db.readTransaction { () throws -> TreeManifest? in
            guard
                let id = try db.statement("SELECT id FROM manifests WHERE digest = ? AND kind = 'tree'")
                    .firstRow([.blob(digest.bytes)], { $0.int(0) })
            else { return nil }
            let entries = try db.statement(
                """
                SELECT te.path, f.kind, \(Self.fileSizeSQL), f.digest FROM tree_entries te JOIN manifests f ON f.id = te.file_id
                WHERE te.tree_id = ? ORDER BY te.position
                """
            ).rows([.int(id)]) { row -> TreeEntry in
                guard let kind = ContentKind(rawValue: row.text(1)), kind != .tree, let fileDigest = SHA256Digest(bytes: row.blob(3)) else {
                    throw CKStoreError(.integrity, "tree sha256:\(digest.hex): entry '\(row.text(0))' names a damaged file row")
                }
                return TreeEntry(path: row.text(0), kind: kind, size: row.int(2), digest: fileDigest)
            }
            return try TreeManifest(entries: entries, recordedDigest: digest)
        }
    }

    /// The size of the file a file object `f` reproduces.
    private static let fileSizeSQL = "CASE f.kind WHEN 'safetensors' THEN 8 + length(f.header) + f.data_length ELSE f.data_length END"

    package func bytesFile(_ digest: SHA256Digest) throws -> BytesFile? {
        guard let rows = try manifestRows(digest, kind: .bytes) else { return nil }
        return try BytesFile(fromRows: rows)
    }
}
