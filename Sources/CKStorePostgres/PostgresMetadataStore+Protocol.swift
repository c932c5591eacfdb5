import CKStore

/// `PostgresMetadataStore` as the core's `MetadataStore` (the contract in MetadataStore.swift).
extension PostgresMetadataStore: MetadataStore {
    package func chunkIndexFactory() -> @Sendable () throws -> any ChunkIndex {
        let conninfo = self.conninfo
        let schema = self.schema
        return { () throws -> any ChunkIndex in
            do {
                let conn = try PGConnection(conninfo, applicationName: "ckstore-worker")
                try conn.execute("SELECT set_config('search_path', $1, false)", [.text(quoteIdentifier(schema))])
                return PostgresChunkIndex(conn: conn)
            } catch {
                throw CKStoreError.wrapPostgres(error, context: "open a worker connection")
            }
        }
    }

    package func chunkRowCount() throws -> Int { try chunkCount() }

    package func chunkRows() throws -> [ChunkRow] {
        try allChunksWithRawSize().map { ChunkRow(hash: $0.0, rawSize: $0.1, storedSize: $0.2) }
    }

    package func chunkUses() throws -> [ChunkUse] {
        let r = try conn.execute(
            """
            SELECT c.hash, m.digest, t.name FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id
            JOIN manifests m ON m.id = tc.manifest_id JOIN tensors t ON t.manifest_id = tc.manifest_id AND t.position = tc.position
            """)
        return try (0..<r.rowCount).map {
            ChunkUse(chunk: try digest(r, $0, 0), manifest: try digest(r, $0, 1), tensor: try r.string($0, 2))
        }
    }

    package func allSnapshots() throws -> [SnapshotInfo] {
        try readView {
            try runs().flatMap { try snapshots(run: $0.name) ?? [] }
        }
    }

    package func allManifestDigests() throws -> [SHA256Digest] { try manifestDigestsInOrder() }

    package func hasManifest(_ digest: SHA256Digest) throws -> Bool { try manifestID(digest) != nil }

    package func tensorRowsOutOfRange(maxOffset: Int, maxRawSize: Int) throws -> [TensorRowRange] {
        var seen = Set<SHA256Digest>()
        return try outOfRangeTensors(maxOffset: maxOffset, maxRawSize: maxRawSize).compactMap { row in
            guard seen.insert(row.0).inserted else { return nil }
            return TensorRowRange(manifest: row.0, tensor: row.1, dataStart: row.2, byteLength: row.3)
        }
    }

    package func derivedEntry(key: SHA256Digest) throws -> DerivedRow? {
        let r = try conn.execute(
            "SELECT d.id, d.key, d.recipe, d.inputs, m.digest FROM derived d JOIN manifests m ON m.id = d.manifest_id WHERE d.key = $1",
            [.bytes(key.bytes)])
        guard r.rowCount > 0 else { return nil }
        return DerivedRow(
            id: try r.int(0, 0), key: SHA256Digest(bytes: try r.bytes(0, 1)), recipe: try r.string(0, 2), inputs: try r.string(0, 3),
            digest: SHA256Digest(bytes: try r.bytes(0, 4)))
    }

    package func commitDerived(_ record: DerivedRecord) throws {
        try commitDerived(content: record.content, key: record.key, recipe: record.recipe, inputs: record.inputsText, run: record.run)
    }

    package func derivedRows() throws -> [DerivedRow] {
        try derivedRowTuples().map { DerivedRow(id: $0.id, key: $0.key, recipe: $0.recipe, inputs: $0.inputs, digest: $0.digest) }
    }

    package func withReadView<T>(_ body: () throws -> T) throws -> T { try readView(body) }

    package func collect(
        options: CollectionOptions, select: () throws -> [SnapshotKey], review: (CollectionChanges) throws -> Void
    ) throws -> CollectionChanges {
        var changes = CollectionChanges()
        _ = try collect(
            removing: {
                let selected = try select()
                changes.removedPending = try collectPending(options, selected: selected)
                return selected.map { ($0.run, $0.step) }
            }, dropsMetrics: options.dropsMetrics, dropDerived: options.dropsDerived
        ) { rows in
            changes.removedSnapshots = rows.removedSnapshots
            changes.droppedMetrics = rows.droppedMetrics
            changes.removedDerivedRecipes = rows.removedDerived
            changes.releasedChunks = rows.released
            changes.liveChunks = rows.live
            changes.remainingSnapshots = rows.snapshotCount
            try review(changes)
            return !options.dryRun
        }
        return changes
    }

    package func storageProblems() throws -> [String] { try databaseProblems() }

    package func repairRows(droppingDerivedOf derivedManifests: [SHA256Digest], unusedChunks: [SHA256Digest]) throws -> [SHA256Digest] {
        try repairRows(derivedDigests: derivedManifests, chunkHashes: unusedChunks)
    }
}

extension PostgresChunkIndex: ChunkIndex {}

extension PGError: ClassifiedBackendError {
    package var failureKind: BackendFailureKind {
        if isConnectionFailure { return .unavailable }
        if isRetryableTransactionFailure || isLockNotAvailable || isQueryCanceled || isInsufficientResources { return .busy }
        if isAuthenticationFailure || isInsufficientPrivilege { return .readOnly }
        if isUniqueViolation { return .conflict }
        if isIntegrityConstraintViolation || sqlStateClass == "XX" || isUndefinedTable { return .integrity }
        return .environment
    }

    package var failureMessage: String { message + (sqlState.map { " [SQLSTATE \($0)]" } ?? "") }
}
