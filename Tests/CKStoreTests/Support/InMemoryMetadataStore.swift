// An in-memory `MetadataStore` for the test target: the reference the contract suite holds
// every backend to, and a backend the library suite runs on to prove that the store needs
// nothing but the protocol.

import Synchronization

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// The tables of an in-memory metadata database.
struct InMemoryTables: Sendable {
    struct StoredManifest: Sendable {
        let id: Int
        let headerBytes: [UInt8]
        let dataLength: Int
        /// Tensor infos and their chunk hashes (sizes come from the chunk rows).
        let tensors: [(info: TensorInfo, chunks: [SHA256Digest])]
        let createdAt: Int64
        /// The object's kind; a tree's files, by position.
        var kind: ContentKind = .safetensors
        var entries: [(path: String, digest: SHA256Digest)] = []
        /// Total tensors (a tree's, of its safetensors files).
        var tensorCount: Int? = nil

        /// The size of the file(s) it reproduces.
        var logicalBytes: Int { kind == .safetensors ? 8 + headerBytes.count + dataLength : dataLength }
    }

    struct StoredSnapshot: Sendable {
        var digest: SHA256Digest
        var createdAt: Int64
    }

    struct StoredDerived: Sendable {
        let id: Int
        let key: SHA256Digest
        let recipe: String
        let inputs: String
        let run: String?
        let digest: SHA256Digest
        let createdAt: Int64
    }

    struct MetricKey: Hashable, Sendable {
        let run: String
        let step: Int
        let variant: String
        let name: String
    }

    var runs: [String] = []
    var snapshots: [SnapshotKey: StoredSnapshot] = [:]
    var manifests: [SHA256Digest: StoredManifest] = [:]
    var chunks: [SHA256Digest: ChunkRow] = [:]
    var derived: [SHA256Digest: StoredDerived] = [:]
    var metrics: [MetricKey: Double] = [:]
    /// Pending snapshots (InMemoryMetadataStore+Pending.swift).
    var pending: [SnapshotKey: StoredPending] = [:]
    var nextID = 1
    /// Incremented by every committed write (optimistic concurrency).
    var generation = 0

    mutating func newID() -> Int {
        defer { nextID += 1 }
        return nextID
    }

    func isNamed(_ digest: SHA256Digest) -> Bool {
        snapshots.values.contains { $0.digest == digest } || derived.values.contains { $0.digest == digest }
    }

    /// True when some stored tree lists `digest` among its files.
    func isTreeFile(_ digest: SHA256Digest) -> Bool {
        manifests.values.contains { $0.kind == .tree && $0.entries.contains { $0.digest == digest } }
    }

    /// The objects a named digest stands for: itself and, for a tree, its files.
    func objects(_ digest: SHA256Digest) -> [SHA256Digest] {
        [digest] + (manifests[digest]?.entries.map(\.digest) ?? [])
    }

    func manifestValue(_ digest: SHA256Digest) -> Manifest? {
        guard let stored = manifests[digest] else { return nil }
        let tensors = stored.tensors.map { tensor in
            TensorEntry(
                info: tensor.info,
                chunks: tensor.chunks.map { hash in
                    let row = chunks[hash]!
                    return ChunkRef(hash: hash, rawSize: row.rawSize, storedSize: row.storedSize)
                })
        }
        return Manifest(headerBytes: stored.headerBytes, dataLength: stored.dataLength, tensors: tensors, recordedDigest: digest)
    }

    func snapshotInfo(_ key: SnapshotKey, _ snapshot: StoredSnapshot) -> SnapshotInfo {
        let manifest = manifests[snapshot.digest]!
        return SnapshotInfo(
            run: key.run, step: key.step, digest: snapshot.digest, createdAtMilliseconds: snapshot.createdAt,
            logicalBytes: manifest.logicalBytes, tensorCount: manifest.tensorCount ?? manifest.tensors.count, kind: manifest.kind,
            fileCount: manifest.kind == .tree ? manifest.entries.count : 1)
    }

    /// Chunks used by the manifests named by snapshots (and, with `derived`, by derived rows).
    func chunksUsed(bySnapshots: Bool, byDerived: Bool) -> Set<SHA256Digest> {
        var digests = Set<SHA256Digest>()
        if bySnapshots { digests.formUnion(snapshots.values.map(\.digest)) }
        if byDerived { digests.formUnion(derived.values.map(\.digest)) }
        if bySnapshots { digests.formUnion(pendingFiles) }
        var used = Set<SHA256Digest>()
        for digest in digests.flatMap(objects) { for tensor in manifests[digest]?.tensors ?? [] { used.formUnion(tensor.chunks) } }
        return used
    }

    mutating func insertManifestIfNew(_ manifest: Manifest, now: Int64) {
        insertObjectIfNew(
            manifest.digest, kind: .safetensors, header: manifest.headerBytes, dataLength: manifest.dataLength,
            tensors: manifest.tensors, now: now)
    }

    mutating func insertObjectIfNew(
        _ digest: SHA256Digest, kind: ContentKind, header: [UInt8], dataLength: Int, tensors: [TensorEntry],
        entries: [(path: String, digest: SHA256Digest)] = [], tensorCount: Int? = nil, now: Int64
    ) {
        guard manifests[digest] == nil else { return }
        for chunk in tensors.flatMap(\.chunks) where chunks[chunk.hash] == nil {
            chunks[chunk.hash] = ChunkRow(hash: chunk.hash, rawSize: chunk.rawSize, storedSize: chunk.storedSize)
        }
        manifests[digest] = StoredManifest(
            id: newID(), headerBytes: header, dataLength: dataLength,
            tensors: tensors.map { ($0.info, $0.chunks.map(\.hash)) }, createdAt: now, kind: kind, entries: entries,
            tensorCount: tensorCount)
    }

    mutating func insertTreeIfNew(_ snapshot: TreeSnapshot, now: Int64) throws {
        let tree = snapshot.tree
        guard manifests[tree.digest] == nil else { return }
        var tensorCount = 0
        for entry in tree.entries {
            guard let content = snapshot.files[entry.digest] else {
                throw CKStoreError(.integrity, "tree sha256:\(tree.digest.hex): no content for '\(entry.path)'")
            }
            switch content {
            case .safetensors(let manifest):
                tensorCount += manifest.tensors.count
                insertManifestIfNew(manifest, now: now)
            case .bytes(let file):
                insertObjectIfNew(file.digest, kind: .bytes, header: [], dataLength: file.size, tensors: [file.pseudoTensor], now: now)
            }
        }
        insertObjectIfNew(
            tree.digest, kind: .tree, header: [], dataLength: tree.totalSize, tensors: [],
            entries: tree.entries.map { ($0.path, $0.digest) }, tensorCount: tensorCount, now: now)
    }

    mutating func deleteManifestIfUnreferenced(_ digest: SHA256Digest) {
        guard let stored = manifests[digest], !isNamed(digest), !isTreeFile(digest), !pendingFiles.contains(digest) else { return }
        manifests[digest] = nil
        for file in Set(stored.entries.map(\.digest)) { deleteManifestIfUnreferenced(file) }
    }

    mutating func dropMetrics(run: String, step: Int, includingStep: Bool) -> Int {
        let rows = Set(metrics.keys.filter { $0.run == run && $0.step >= step }.map { StepVariant(step: $0.step, variant: $0.variant) })
        let stale = MetricVariants.stale(rows.map { (step: $0.step, variant: $0.variant) }, step: step, includingStep: includingStep)
        let doomed = Set(stale.map { StepVariant(step: $0.step, variant: $0.variant) })
        let keys = metrics.keys.filter { $0.run == run && doomed.contains(StepVariant(step: $0.step, variant: $0.variant)) }
        for key in keys { metrics[key] = nil }
        return keys.count
    }

    struct StepVariant: Hashable {
        let step: Int
        let variant: String
    }
}

/// The shared state of one in-memory metadata database; several `InMemoryMetadataStore`
/// instances over one database behave like several connections to one server.
final class InMemoryDatabase: Sendable {
    let tables = Mutex(InMemoryTables())

    /// The committed tables.
    func snapshot() -> InMemoryTables { tables.withLock { $0 } }

    /// Runs `body` on a copy of the committed tables and publishes the copy atomically when
    /// `body` returns true; a concurrent commit in between makes it start again.
    func write<T>(_ body: (inout InMemoryTables) throws -> (commit: Bool, value: T)) throws -> T {
        while true {
            var copy = snapshot()
            let base = copy.generation
            let (commit, value) = try body(&copy)
            guard commit else { return value }
            let published = tables.withLock { tables -> Bool in
                guard tables.generation == base else { return false }
                copy.generation = base + 1
                tables = copy
                return true
            }
            if published { return value }
        }
    }
}

/// A `MetadataStore` over an `InMemoryDatabase`.
final class InMemoryMetadataStore: MetadataStore {
    let database: InMemoryDatabase
    /// The tables of the open read view, if any.
    private var view: InMemoryTables?

    init(database: InMemoryDatabase = InMemoryDatabase()) {
        self.database = database
    }

    private func read<T>(_ body: (InMemoryTables) throws -> T) rethrows -> T {
        try body(view ?? database.snapshot())
    }

    // MARK: Chunks

    func hasChunk(_ hash: SHA256Digest) throws -> Bool { read { $0.chunks[hash] != nil } }

    func storedSize(ofChunk hash: SHA256Digest) throws -> Int? { read { $0.chunks[hash]?.storedSize } }

    func chunkIndexFactory() -> @Sendable () throws -> any ChunkIndex {
        let database = self.database
        return { InMemoryChunkIndex(database: database) }
    }

    func chunkRowCount() throws -> Int { read { $0.chunks.count } }

    func chunkRows() throws -> [ChunkRow] { read { $0.chunks.values.sorted { $0.hash < $1.hash } } }

    func chunkUses() throws -> [ChunkUse] {
        read { tables in
            tables.manifests.sorted { $0.value.id < $1.value.id }.flatMap { digest, manifest in
                manifest.tensors.flatMap { tensor in
                    tensor.chunks.map { ChunkUse(chunk: $0, manifest: digest, tensor: tensor.info.name) }
                }
            }
        }
    }

    func referencedChunkHashes() throws -> Set<SHA256Digest> { read { $0.chunksUsed(bySnapshots: true, byDerived: true) } }

    func updateStoredSizes(_ sizes: [(SHA256Digest, Int)]) throws {
        guard !sizes.isEmpty else { return }
        try database.write { tables in
            for (hash, size) in sizes where tables.chunks[hash] != nil { tables.chunks[hash]!.storedSize = size }
            return (true, ())
        }
    }

    // MARK: Snapshots

    func commit(manifest: Manifest, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    ) {
        try commitNamed(manifest.digest, run: run, step: step, metrics: metrics, force: force) { tables, now in
            tables.insertManifestIfNew(manifest, now: now)
        }
    }

    func commit(tree snapshot: TreeSnapshot, run: String, step: Int, metrics: [(String, Double)], force: Bool) throws -> (
        outcome: CommitOutcome, droppedMetrics: Int
    ) {
        try commitNamed(snapshot.tree.digest, run: run, step: step, metrics: metrics, force: force) { tables, now in
            try tables.insertTreeIfNew(snapshot, now: now)
        }
    }

    private func commitNamed(
        _ digest: SHA256Digest, run: String, step: Int, metrics: [(String, Double)], force: Bool,
        insert: (inout InMemoryTables, Int64) throws -> Void
    ) throws -> (outcome: CommitOutcome, droppedMetrics: Int) {
        try database.write { tables in
            let now = nowMilliseconds()
            if !tables.runs.contains(run) { tables.runs.append(run) }
            let key = SnapshotKey(run: run, step: step)
            let existing = tables.snapshots[key]
            func recordMetrics() {
                for (name, value) in metrics {
                    tables.metrics[InMemoryTables.MetricKey(run: run, step: step, variant: "raw", name: name)] = value
                }
            }
            if let existing, existing.digest == digest {
                recordMetrics()
                return (true, (CommitOutcome.unchanged, 0))
            }
            if let existing, !force {
                throw CKStoreError(
                    .conflict,
                    "\(run)@\(step) already holds sha256:\(existing.digest.hex), not sha256:\(digest.hex); use --force to replace it"
                )
            }
            try insert(&tables, now)
            let dropped = tables.dropMetrics(run: run, step: step, includingStep: existing != nil)
            tables.snapshots[key] = InMemoryTables.StoredSnapshot(digest: digest, createdAt: now)
            let outcome: CommitOutcome
            if let existing {
                tables.deleteManifestIfUnreferenced(existing.digest)
                outcome = .replaced(previous: existing.digest)
            } else {
                outcome = .created
            }
            recordMetrics()
            return (true, (outcome, dropped))
        }
    }

    func runs() throws -> [RunSummary] {
        read { tables in
            tables.runs.sorted().map { run in
                let steps = tables.snapshots.keys.filter { $0.run == run }.map(\.step)
                return RunSummary(name: run, snapshotCount: steps.count, firstStep: steps.min(), lastStep: steps.max())
            }
        }
    }

    func snapshots(run: String) throws -> [SnapshotInfo]? {
        read { tables in
            guard tables.runs.contains(run) else { return nil }
            return tables.snapshots.filter { $0.key.run == run }.sorted { $0.key.step < $1.key.step }.map {
                tables.snapshotInfo($0.key, $0.value)
            }
        }
    }

    func allSnapshots() throws -> [SnapshotInfo] {
        read { tables in
            tables.snapshots.sorted { ($0.key.run, $0.key.step) < ($1.key.run, $1.key.step) }.map { tables.snapshotInfo($0.key, $0.value) }
        }
    }

    func snapshot(run: String, step: Int) throws -> SnapshotInfo? {
        read { tables in
            let key = SnapshotKey(run: run, step: step)
            return tables.snapshots[key].map { tables.snapshotInfo(key, $0) }
        }
    }

    func latestSnapshot(run: String) throws -> SnapshotInfo? {
        try snapshots(run: run)?.last
    }

    func storedBytesByStep(run: String) throws -> [Int: Int] {
        read { tables in
            var result: [Int: Int] = [:]
            for (key, snapshot) in tables.snapshots where key.run == run {
                let hashes = Set(tables.objects(snapshot.digest).flatMap { tables.manifests[$0]!.tensors.flatMap(\.chunks) })
                result[key.step] = hashes.reduce(0) { $0 + tables.chunks[$1]!.storedSize }
            }
            return result
        }
    }

    // MARK: Manifests

    func manifestDigests(prefix: String, limit: Int) throws -> [SHA256Digest] {
        let lower = prefix.lowercased()
        return read { tables in Array(tables.manifests.keys.filter { $0.hex.hasPrefix(lower) }.sorted().prefix(limit)) }
    }

    func allManifestDigests() throws -> [SHA256Digest] {
        read { tables in tables.manifests.sorted { $0.value.id < $1.value.id }.map(\.key) }
    }

    func hasManifest(_ digest: SHA256Digest) throws -> Bool { read { $0.manifests[digest] != nil } }

    func manifest(_ digest: SHA256Digest) throws -> Manifest? {
        guard read({ $0.manifests[digest]?.kind }) == .safetensors, let manifest = read({ $0.manifestValue(digest) }) else { return nil }
        if let problem = manifest.layoutProblem() { throw CKStoreError(.integrity, "snapshot sha256:\(digest.hex): \(problem)") }
        return manifest
    }

    func contentKind(_ digest: SHA256Digest) throws -> ContentKind? { read { $0.manifests[digest]?.kind } }

    func tree(_ digest: SHA256Digest) throws -> TreeManifest? {
        try read { tables -> TreeManifest? in
            guard let stored = tables.manifests[digest], stored.kind == .tree else { return nil }
            let entries = try stored.entries.map { path, file -> TreeEntry in
                guard let object = tables.manifests[file], object.kind != .tree else {
                    throw CKStoreError(.integrity, "tree sha256:\(digest.hex): entry '\(path)' names a damaged file row")
                }
                return TreeEntry(path: path, kind: object.kind, size: object.logicalBytes, digest: file)
            }
            return try TreeManifest(entries: entries, recordedDigest: digest)
        }
    }

    func bytesFile(_ digest: SHA256Digest) throws -> BytesFile? {
        guard read({ $0.manifests[digest]?.kind }) == .bytes, let rows = read({ $0.manifestValue(digest) }) else { return nil }
        if let problem = rows.layoutProblem() { throw CKStoreError(.integrity, "file sha256:\(digest.hex): \(problem)") }
        return try BytesFile(fromRows: rows)
    }

    func tensorRowsOutOfRange(maxOffset: Int, maxRawSize: Int) throws -> [TensorRowRange] {
        read { tables in
            tables.manifests.sorted { $0.value.id < $1.value.id }.compactMap { digest, manifest in
                manifest.tensors.first { tensor in
                    let info = tensor.info
                    return info.dataStart < 0 || info.byteCount < 0 || info.dataStart > maxOffset || info.byteCount > maxOffset
                        || tensor.chunks.contains { tables.chunks[$0]!.rawSize > maxRawSize }
                }.map {
                    TensorRowRange(manifest: digest, tensor: $0.info.name, dataStart: $0.info.dataStart, byteLength: $0.info.byteCount)
                }
            }
        }
    }

    // MARK: Metrics

    func metrics(run: String) throws -> [MetricRecord] {
        read { tables in
            tables.metrics.filter { $0.key.run == run }
                .sorted { ($0.key.step, $0.key.variant, $0.key.name) < ($1.key.step, $1.key.variant, $1.key.name) }
                .map { MetricRecord(run: run, step: $0.key.step, variant: $0.key.variant, name: $0.key.name, value: $0.value) }
        }
    }

    func recordMetrics(run: String, step: Int, variant: String, values: [(String, Double)]) throws {
        try database.write { tables in
            guard tables.runs.contains(run) else { throw CKStoreError(.notFound, "run '\(run)' does not exist") }
            for (name, value) in values {
                tables.metrics[InMemoryTables.MetricKey(run: run, step: step, variant: variant, name: name)] = value
            }
            return (true, ())
        }
    }

    // MARK: Statistics

    func statistics() throws -> StoreStatistics {
        read { tables in
            var stats = StoreStatistics()
            stats.runs = tables.runs.count
            stats.snapshots = tables.snapshots.count
            stats.logicalBytes = tables.snapshots.values.reduce(0) { $0 + tables.manifests[$1.digest]!.logicalBytes }
            var sideUnique = Set<SHA256Digest>()
            for snapshot in tables.snapshots.values {
                for file in tables.manifests[snapshot.digest]!.entries.map(\.digest) where tables.manifests[file]!.kind == .bytes {
                    stats.sideFiles += 1
                    stats.sideFileBytes += tables.manifests[file]!.dataLength
                    sideUnique.insert(file)
                }
            }
            stats.sideFileUniqueBytes = sideUnique.reduce(0) { $0 + tables.manifests[$1]!.dataLength }
            let used = tables.chunksUsed(bySnapshots: true, byDerived: false)
            stats.blobCount = used.count
            stats.uniqueRawBytes = used.reduce(0) { $0 + tables.chunks[$1]!.rawSize }
            stats.storedBytes = used.reduce(0) { $0 + tables.chunks[$1]!.storedSize }
            let derivedOnly = tables.chunksUsed(bySnapshots: false, byDerived: true).subtracting(used)
            stats.derivedBlobs = derivedOnly.count
            stats.derivedBytes = derivedOnly.reduce(0) { $0 + tables.chunks[$1]!.storedSize }
            return stats
        }
    }

    // MARK: Derived snapshots

    func derivedDigest(key: SHA256Digest) throws -> SHA256Digest? {
        read { tables in tables.derived[key].flatMap { tables.manifests[$0.digest] == nil ? nil : $0.digest } }
    }

    func derivedEntry(key: SHA256Digest) throws -> DerivedRow? {
        read { tables in
            guard let row = tables.derived[key], tables.manifests[row.digest] != nil else { return nil }
            return DerivedRow(id: row.id, key: key, recipe: row.recipe, inputs: row.inputs, digest: row.digest)
        }
    }

    func commitDerived(_ record: DerivedRecord) throws {
        try database.write { tables in
            let now = nowMilliseconds()
            switch record.content {
            case .file(let manifest): tables.insertManifestIfNew(manifest, now: now)
            case .tree(let snapshot): try tables.insertTreeIfNew(snapshot, now: now)
            }
            for chunk in record.chunks where tables.chunks[chunk.hash] != nil {
                tables.chunks[chunk.hash]!.storedSize = chunk.storedSize
            }
            if tables.derived[record.key] == nil {
                let run = record.run.flatMap { tables.runs.contains($0) ? $0 : nil }
                tables.derived[record.key] = InMemoryTables.StoredDerived(
                    id: tables.newID(), key: record.key, recipe: record.recipe, inputs: record.inputsText, run: run,
                    digest: record.digest, createdAt: now)
            }
            return (true, ())
        }
    }

    func dropDerived(key: SHA256Digest, digest: SHA256Digest) throws -> Bool {
        try database.write { tables in
            guard tables.manifests[digest] != nil, let row = tables.derived[key], row.digest == digest else { return (false, false) }
            tables.derived[key] = nil
            tables.deleteManifestIfUnreferenced(digest)
            return (true, true)
        }
    }

    func derivedSnapshots(run: String?) throws -> [DerivedInfo] {
        read { tables in
            tables.derived.values.filter { row in run == nil || row.run == run }
                .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
                .compactMap { row in
                    guard let manifest = tables.manifests[row.digest] else { return nil }
                    return DerivedInfo(
                        recipe: row.recipe, inputs: row.inputs, run: row.run, digest: row.digest,
                        logicalBytes: manifest.logicalBytes, createdAtMilliseconds: row.createdAt)
                }
        }
    }

    func derivedRows() throws -> [DerivedRow] {
        read { tables in
            tables.derived.values.sorted { $0.id < $1.id }.map { row in
                DerivedRow(
                    id: row.id, key: row.key, recipe: row.recipe, inputs: row.inputs,
                    digest: tables.manifests[row.digest] == nil ? nil : row.digest)
            }
        }
    }

    // MARK: Consistency

    func withReadView<T>(_ body: () throws -> T) throws -> T {
        if view != nil { return try body() }
        view = database.snapshot()
        defer { view = nil }
        return try body()
    }

    // MARK: Maintenance

    func collect(
        options: CollectionOptions, select: () throws -> [SnapshotKey], review: (CollectionChanges) throws -> Void
    ) throws -> CollectionChanges {
        try database.write { tables in
            // `select` reads through this instance: show it the tables being changed.
            let saved = view
            view = tables
            defer { view = saved }
            var changes = CollectionChanges()
            let selected = try select()
            changes.removedPending = tables.collectPending(options, selected: selected)
            for key in selected where tables.snapshots[key] != nil {
                if options.dropsMetrics {
                    changes.droppedMetrics += tables.dropMetrics(run: key.run, step: key.step, includingStep: true)
                }
                tables.snapshots[key] = nil
                changes.removedSnapshots.append(key)
            }
            if options.dropsDerived {
                changes.removedDerivedRecipes = tables.derived.values.sorted { $0.id < $1.id }.map(\.recipe)
                tables.derived = [:]
            }
            for digest in Array(tables.manifests.keys) { tables.deleteManifestIfUnreferenced(digest) }
            let used = Set(tables.manifests.values.flatMap { $0.tensors.flatMap(\.chunks) })
            changes.releasedChunks = Set(tables.chunks.keys).subtracting(used)
            for hash in changes.releasedChunks { tables.chunks[hash] = nil }
            changes.liveChunks = Set(tables.chunks.keys)
            changes.remainingSnapshots = tables.snapshots.count
            try review(changes)
            return (!options.dryRun, changes)
        }
    }

    func storageProblems() throws -> [String] { [] }

    func repairRows(droppingDerivedOf derivedManifests: [SHA256Digest], unusedChunks: [SHA256Digest]) throws -> [SHA256Digest] {
        try database.write { tables in
            for digest in derivedManifests {
                for (key, row) in tables.derived where row.digest == digest { tables.derived[key] = nil }
                tables.deleteManifestIfUnreferenced(digest)
            }
            let used = Set(tables.manifests.values.flatMap { $0.tensors.flatMap(\.chunks) })
            var dropped: [SHA256Digest] = []
            for hash in unusedChunks where tables.chunks[hash] != nil && !used.contains(hash) {
                tables.chunks[hash] = nil
                dropped.append(hash)
            }
            return (true, dropped)
        }
    }

    func close() throws {}
}

/// A per-worker chunk index over an in-memory database (committed rows only).
final class InMemoryChunkIndex: ChunkIndex {
    let database: InMemoryDatabase

    init(database: InMemoryDatabase) { self.database = database }

    func storedSize(ofChunk hash: SHA256Digest) throws -> Int? { database.snapshot().chunks[hash]?.storedSize }
}
