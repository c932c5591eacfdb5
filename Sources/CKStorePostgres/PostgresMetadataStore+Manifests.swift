import CKStore

/// Manifests, statistics and the chunk sets gc needs.
extension PostgresMetadataStore {
    /// The stored manifest digests that start with the given hex prefix (at most `limit`).
    public func manifestDigests(prefix: String, limit: Int) throws -> [SHA256Digest] {
        let lower = prefix.lowercased().padding(toLength: 64, withPad: "0", startingAt: 0)
        let upper = prefix.lowercased().padding(toLength: 64, withPad: "f", startingAt: 0)
        guard let lo = SHA256Digest(hex: lower), let hi = SHA256Digest(hex: upper) else { return [] }
        let r = try conn.execute(
            "SELECT digest FROM manifests WHERE digest BETWEEN $1 AND $2 ORDER BY digest LIMIT $3",
            [.bytes(lo.bytes), .bytes(hi.bytes), .int(limit)])
        return try (0..<r.rowCount).map { try digest(r, $0, 0) }
    }

    /// A stored manifest, or nil; rows that do not describe a valid manifest are `.integrity`.
    public func manifest(_ digest: SHA256Digest) throws -> Manifest? {
        try manifestRows(digest, kind: .safetensors)
    }

    /// The rows of a content object of `kind` as a `Manifest` (a bytes file's pseudo tensor is
    /// its one tensor), or nil when there is no object of that kind with this digest.
    func manifestRows(_ digest: SHA256Digest, kind: ContentKind) throws -> Manifest? {
        try readView { () throws -> Manifest? in
            let m = try conn.execute(
                "SELECT id, header, data_length FROM manifests WHERE digest = $1 AND kind = $2",
                [.bytes(digest.bytes), .text(kind.rawValue)])
            guard m.rowCount > 0 else { return nil }
            let (id, header, dataLength) = (try m.int64(0, 0), try m.bytes(0, 1), try m.int(0, 2))
            var chunksByTensor: [Int: [ChunkRef]] = [:]
            let c = try conn.execute(
                """
                SELECT tc.position, c.hash, c.raw_size, c.stored_size FROM tensor_chunks tc
                JOIN chunks c ON c.id = tc.chunk_id WHERE tc.manifest_id = $1 ORDER BY tc.position, tc.chunk_index
                """, [.int64(id)])
            for i in 0..<c.rowCount {
                chunksByTensor[try c.int(i, 0), default: []].append(
                    ChunkRef(hash: try CKStorePostgres.digest(c, i, 1), rawSize: try c.int(i, 2), storedSize: try c.int(i, 3)))
            }
            let t = try conn.execute(
                "SELECT position, name, dtype, shape, data_start, byte_length, chunk_count FROM tensors WHERE manifest_id = $1 ORDER BY position",
                [.int64(id)])
            var tensors: [TensorEntry] = []
            for i in 0..<t.rowCount {
                let name = try t.string(i, 1)
                guard let dtype = DType(rawValue: try t.string(i, 2)), let shape = parseShape(try t.string(i, 3)) else {
                    throw CKStoreError(.integrity, "snapshot sha256:\(digest.hex): tensor '\(name)' has a damaged dtype or shape row")
                }
                let chunks = chunksByTensor[try t.int(i, 0)] ?? []
                let start = try t.int(i, 4)
                let length = try t.int(i, 5)
                var total = 0
                var sane = chunks.count == (try t.int(i, 6)) && start >= 0 && length >= 0
                for chunk in chunks where sane {
                    let (sum, overflow) = total.addingReportingOverflow(chunk.rawSize)
                    sane = !overflow && chunk.rawSize >= 0
                    total = sum
                }
                let (end, overflow) = start.addingReportingOverflow(length)
                guard sane, !overflow, total == length else {
                    throw CKStoreError(.integrity, "snapshot sha256:\(digest.hex): tensor '\(name)' has damaged chunk rows")
                }
                tensors.append(
                    TensorEntry(
                        info: TensorInfo(name: name, dtype: dtype, shape: shape, dataStart: start, dataEnd: end), chunks: chunks))
            }
            let manifest = Manifest(headerBytes: header, dataLength: dataLength, tensors: tensors, recordedDigest: digest)
            if let problem = manifest.layoutProblem() { throw CKStoreError(.integrity, "snapshot sha256:\(digest.hex): \(problem)") }
            return manifest
        }
    }

    /// Totals for `stats` (orphan figures are filled in by the store, which sees the blobs).
    public func statistics() throws -> StoreStatistics {
        try readView {
            var stats = StoreStatistics()
            stats.runs = try conn.execute("SELECT count(*) FROM runs").int(0, 0)
            let s = try conn.execute(
                "SELECT count(*), coalesce(sum(\(Self.logicalBytesSQL)), 0)::bigint FROM snapshots s JOIN manifests m ON m.id = s.manifest_id"
            )
            stats.snapshots = try s.int(0, 0)
            stats.logicalBytes = try s.int(0, 1)
            let c = try conn.execute(
                """
                SELECT count(*), coalesce(sum(raw_size), 0)::bigint, coalesce(sum(stored_size), 0)::bigint FROM chunks WHERE id IN (
                  SELECT tc.chunk_id FROM tensor_chunks tc JOIN manifest_objects o ON o.object_id = tc.manifest_id
                  JOIN snapshots s ON s.manifest_id = o.root_id)
                """)
            stats.blobCount = try c.int(0, 0)
            stats.uniqueRawBytes = try c.int(0, 1)
            stats.storedBytes = try c.int(0, 2)
            let d = try conn.execute(
                """
                SELECT count(*), coalesce(sum(stored_size), 0)::bigint FROM chunks WHERE id IN (
                  SELECT tc.chunk_id FROM tensor_chunks tc JOIN manifest_objects o ON o.object_id = tc.manifest_id
                  JOIN derived d ON d.manifest_id = o.root_id)
                AND id NOT IN (SELECT tc.chunk_id FROM tensor_chunks tc JOIN manifest_objects o ON o.object_id = tc.manifest_id
                  JOIN snapshots s ON s.manifest_id = o.root_id)
                """)
            stats.derivedBlobs = try d.int(0, 0)
            stats.derivedBytes = try d.int(0, 1)
            let side = try conn.execute(
                """
                SELECT count(*), coalesce(sum(f.data_length), 0)::bigint FROM snapshots s JOIN tree_entries te ON te.tree_id = s.manifest_id
                JOIN manifests f ON f.id = te.file_id WHERE f.kind = 'bytes'
                """)
            stats.sideFiles = try side.int(0, 0)
            stats.sideFileBytes = try side.int(0, 1)
            stats.sideFileUniqueBytes = try conn.execute(
                """
                SELECT coalesce(sum(data_length), 0)::bigint FROM manifests WHERE kind = 'bytes' AND id IN (
                  SELECT te.file_id FROM snapshots s JOIN tree_entries te ON te.tree_id = s.manifest_id)
                """
            ).int(0, 0)
            return stats
        }
    }

    /// For each step of a run, the stored bytes of the distinct chunks its snapshot uses.
    public func storedBytesByStep(run: String) throws -> [Int: Int] {
        let r = try conn.execute(
            """
            SELECT s.step, (SELECT coalesce(sum(c.stored_size), 0)::bigint FROM chunks c WHERE c.id IN
              (SELECT tc.chunk_id FROM tensor_chunks tc JOIN manifest_objects o ON o.object_id = tc.manifest_id
               WHERE o.root_id = s.manifest_id))
            FROM snapshots s JOIN runs r ON r.id = s.run_id WHERE r.name = $1
            """, [.text(run)])
        var result: [Int: Int] = [:]
        for i in 0..<r.rowCount { result[try r.int(i, 0)] = try r.int(i, 1) }
        return result
    }

    /// The chunks some snapshot or derived snapshot refers to.
    public func referencedChunkHashes() throws -> Set<SHA256Digest> {
        let r = try conn.execute(
            """
            SELECT DISTINCT c.hash FROM chunks c JOIN tensor_chunks tc ON tc.chunk_id = c.id
            WHERE tc.manifest_id IN (SELECT o.object_id FROM manifest_objects o
              WHERE o.root_id IN (SELECT manifest_id FROM snapshots UNION SELECT manifest_id FROM derived
                UNION SELECT file_id FROM pending_parts))
            """)
        return Set(try (0..<r.rowCount).map { try digest(r, $0, 0) })
    }
}
