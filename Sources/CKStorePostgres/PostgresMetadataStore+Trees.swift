import CKStore

/// Trees and bytes files (`MetadataStore` content lookups beyond safetensors manifests).
extension PostgresMetadataStore {
    /// The kind of the stored content object with this digest, or nil.
    public func contentKind(_ digest: SHA256Digest) throws -> ContentKind? {
        let r = try conn.execute("SELECT kind FROM manifests WHERE digest = $1", [.bytes(digest.bytes)])
        guard r.rowCount > 0 else { return nil }
        let text = try r.string(0, 0)
        guard let kind = ContentKind(rawValue: text) else {
            throw CKStoreError(.integrity, "content sha256:\(digest.hex) has an unknown kind '\(text)'")
        }
        return kind
    }

    /// A stored tree manifest, or nil; damaged entry rows are `.integrity`.
    public func tree(_ digest: SHA256Digest) throws -> TreeManifest? {
        try readView { () throws -> TreeManifest? in
            let m = try conn.execute("SELECT id FROM manifests WHERE digest = $1 AND kind = 'tree'", [.bytes(digest.bytes)])
            guard m.rowCount > 0 else { return nil }
            let r = try conn.execute(
                """
                SELECT te.path, f.kind, CASE f.kind WHEN 'safetensors' THEN 8 + octet_length(f.header) + f.data_length ELSE f.data_length END,
                  f.digest
                FROM tree_entries te JOIN manifests f ON f.id = te.file_id WHERE te.tree_id = $1 ORDER BY te.position
                """, [.int64(try m.int64(0, 0))])
            let entries = try (0..<r.rowCount).map { i -> TreeEntry in
                let path = try r.string(i, 0)
                guard let kind = ContentKind(rawValue: try r.string(i, 1)), kind != .tree,
                    let fileDigest = SHA256Digest(bytes: try r.bytes(i, 3))
                else {
                    throw CKStoreError(.integrity, "tree sha256:\(digest.hex): entry '\(path)' names a damaged file row")
                }
                return TreeEntry(path: path, kind: kind, size: try r.int(i, 2), digest: fileDigest)
            }
            return try TreeManifest(entries: entries, recordedDigest: digest)
        }
    }

    /// A stored opaque file, or nil; damaged rows are `.integrity`.
    public func bytesFile(_ digest: SHA256Digest) throws -> BytesFile? {
        guard let rows = try manifestRows(digest, kind: .bytes) else { return nil }
        return try BytesFile(fromRows: rows)
    }
}
