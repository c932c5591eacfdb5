// Pending snapshots of the in-memory `MetadataStore`: the reference behaviour the contract
// suite (PendingMetadataContractTests) holds SQLite and PostgreSQL to.

@testable import CKStore

extension InMemoryTables {
    /// A pending snapshot: its TOTAL, its force flag, and its parts by path.
    struct StoredPending: Sendable {
        var total: Int
        var replaces: Bool
        var createdAt: Int64
        var parts: [String: (digest: SHA256Digest, createdAt: Int64)]
    }

    /// The file objects pending parts name (reachable).
    var pendingFiles: Set<SHA256Digest> { Set(pending.values.flatMap { $0.parts.values.map(\.digest) }) }

    /// The record of a pending snapshot.
    func pendingRecord(_ key: SnapshotKey) -> PendingSnapshot? {
        guard let stored = pending[key] else { return nil }
        let parts = stored.parts.map { path, part -> PendingPart in
            let file = manifests[part.digest]!
            return PendingPart(
                path: path, kind: file.kind, size: file.logicalBytes, digest: part.digest, createdAtMilliseconds: part.createdAt)
        }
        return PendingSnapshot(
            run: key.run, step: key.step, total: stored.total, replaces: stored.replaces, createdAtMilliseconds: stored.createdAt,
            parts: parts)
    }

    /// Stores a file object unless present.
    mutating func insertFileIfNew(_ content: FileContent, now: Int64) {
        switch content {
        case .safetensors(let manifest): insertManifestIfNew(manifest, now: now)
        case .bytes(let file):
            insertObjectIfNew(file.digest, kind: .bytes, header: [], dataLength: file.size, tensors: [file.pseudoTensor], now: now)
        }
    }

    /// The content of a stored file object.
    func fileContent(_ digest: SHA256Digest) throws -> FileContent {
        guard let stored = manifests[digest] else { throw CKStoreError(.integrity, "no file sha256:\(digest.hex)") }
        switch stored.kind {
        case .safetensors: return .safetensors(manifestValue(digest)!)
        case .bytes:
            let rows = manifestValue(digest)!
            return .bytes(try BytesFile(fromRows: rows))
        case .tree: throw CKStoreError(.integrity, "sha256:\(digest.hex) is a tree")
        }
    }

    /// Deletes the pending snapshots `options` names; returns their keys by run, then step.
    mutating func collectPending(_ options: CollectionOptions, selected: [SnapshotKey]) -> [SnapshotKey] {
        var doomed = Set<SnapshotKey>()
        if let cutoff = options.pendingCreatedBefore {
            for (key, stored) in pending where stored.createdAt < cutoff && (options.pendingRun ?? key.run) == key.run {
                doomed.insert(key)
            }
        }
        if options.dropsPendingOfSelected {
            for key in selected where pending[key] != nil { doomed.insert(key) }
        }
        for key in doomed { pending[key] = nil }
        return doomed.sorted { ($0.run, $0.step) < ($1.run, $1.step) }
    }
}

extension InMemoryMetadataStore {
    func addPart(_ content: FileContent, path: String, run: String, step: Int, total: Int, force: Bool) throws -> PartOutcome {
        let ref = "\(run)@\(step)"
        try PartRules.validate(path: path, total: total, ref: ref)
        let key = SnapshotKey(run: run, step: step)
        return try database.write { tables in
            let now = nowMilliseconds()
            if tables.pending[key] == nil {
                if let complete = tables.snapshots[key] {
                    if !force {
                        let stored = tables.manifests[complete.digest]!
                        if stored.kind == .tree, stored.entries.count == total,
                            stored.entries.first(where: { $0.path == path })?.digest == content.digest
                        {
                            let done = CompletedSnapshot(digest: complete.digest, outcome: .unchanged, droppedMetrics: 0)
                            return (false, PartOutcome(part: .unchanged, present: total, total: total, completed: done))
                        }
                        throw PartRules.completeConflict(ref: ref, digest: complete.digest)
                    }
                }
                tables.pending[key] = InMemoryTables.StoredPending(total: total, replaces: force, createdAt: now, parts: [:])
            }
            var pending = tables.pending[key]!
            guard pending.total == total else {
                throw PartRules.totalMismatch(ref: ref, pending: pending.total, given: total, present: pending.parts.count)
            }
            pending.replaces = pending.replaces || force
            let addition: PartAddition
            if let existing = pending.parts[path] {
                if existing.digest == content.digest {
                    return (false, PartOutcome(part: .unchanged, present: pending.parts.count, total: total, completed: nil))
                }
                guard force else { throw PartRules.partConflict(ref: ref, path: path, existing: existing.digest, new: content.digest) }
                addition = .replaced(previous: existing.digest)
            } else {
                if let clash = PartRules.clash(path, with: Array(pending.parts.keys)) {
                    throw CKStoreError(.badInput, "\(ref): \(clash)")
                }
                addition = .added
            }
            tables.insertFileIfNew(content, now: now)
            pending.parts[path] = (content.digest, now)
            tables.pending[key] = pending
            if case .replaced(let previous) = addition { tables.deleteManifestIfUnreferenced(previous) }
            guard pending.parts.count == total else {
                return (true, PartOutcome(part: addition, present: pending.parts.count, total: total, completed: nil))
            }
            let snapshot = try TreeSnapshot(files: try pending.parts.map { ($0.key, try tables.fileContent($0.value.digest)) })
            tables.pending[key] = nil
            let digest = snapshot.tree.digest
            if !tables.runs.contains(run) { tables.runs.append(run) }
            let existing = tables.snapshots[key]
            let outcome: CommitOutcome
            var dropped = 0
            if let existing, existing.digest == digest {
                outcome = .unchanged
            } else {
                if let existing, !pending.replaces {
                    throw CKStoreError(
                        .conflict,
                        "\(run)@\(step) already holds sha256:\(existing.digest.hex), not sha256:\(digest.hex); use --force to replace it")
                }
                try tables.insertTreeIfNew(snapshot, now: now)
                dropped = tables.dropMetrics(run: run, step: step, includingStep: existing != nil)
                tables.snapshots[key] = InMemoryTables.StoredSnapshot(digest: digest, createdAt: now)
                if let existing {
                    tables.deleteManifestIfUnreferenced(existing.digest)
                    outcome = .replaced(previous: existing.digest)
                } else {
                    outcome = .created
                }
            }
            let done = CompletedSnapshot(digest: digest, outcome: outcome, droppedMetrics: dropped)
            return (true, PartOutcome(part: addition, present: total, total: total, completed: done))
        }
    }

    func pendingSnapshots() throws -> [PendingSnapshot] {
        let tables = database.snapshot()
        return tables.pending.keys.sorted { ($0.run, $0.step) < ($1.run, $1.step) }.compactMap { tables.pendingRecord($0) }
    }

    func pendingSnapshot(run: String, step: Int) throws -> PendingSnapshot? {
        database.snapshot().pendingRecord(SnapshotKey(run: run, step: step))
    }
}
