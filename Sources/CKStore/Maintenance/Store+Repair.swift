extension Store {
    /// `fsck --repair`: checks the store, makes the few changes that need no guess, and checks
    /// again (docs/FORMAT.md, "What fsck --repair does").
    ///
    /// Under the exclusive store lock (no put, read or gc runs):
    /// - derived rows (cached averages) whose manifest uses a missing, damaged or foreign blob
    ///   or has damaged rows are dropped — they are recomputed on the next query — and their
    ///   manifests when nothing else names them;
    /// - chunk rows that no tensor uses any more and whose blob is missing or damaged are
    ///   dropped;
    /// - a blob file proven damaged — it does not decode, or decodes to bytes whose SHA-256 is
    ///   not its name — is moved to `<store>/quarantine/`, never deleted; a file that decodes
    ///   correctly is left where it is even when a row disagrees with it (the row may be the
    ///   damaged side), and so is one whose header only names a format version, codec or
    ///   filter this ckstore does not know;
    /// - ckstore's own temporary files in `objects/` are removed.
    ///
    /// It never rewrites a snapshot row, a manifest a snapshot names, or a blob; symlinks and
    /// foreign files in `objects/` are left alone. The returned report is the check after the
    /// repairs, with `repairs` listing what changed; its `damagedSnapshots` are those a `put` of
    /// the original file must repair.
    public func repair(full: Bool) throws(CKStoreError) -> IntegrityReport {
        try withLock(exclusive: true) { () throws(CKStoreError) -> IntegrityReport in
            try wrapping("fsck --repair") { try runRepair(full: full) }
        }
    }

    private func runRepair(full: Bool) throws -> IntegrityReport {
        let before = try runCheck(full: full)
        var repairs: [Repair] = []
        let droppedDerived = before.damagedSnapshots.filter { !$0.recipes.isEmpty }
        var quarantine: [(SHA256Digest, String)] = []
        for (hash, fault) in before.blobFaults.sorted(by: { $0.key.hex < $1.key.hex }) {
            guard case .damaged = fault, let proof = try damageProof(hash) else { continue }
            quarantine.append((hash, proof))
        }
        let faulty = before.blobFaults.keys.sorted { $0.hex < $1.hex }
        let droppedChunks = try metadata.repairRows(droppingDerivedOf: droppedDerived.map(\.digest), unusedChunks: faulty)
        for d in droppedDerived {
            let why =
                d.rowsDamaged
                ? "its rows are damaged"
                : "it uses \(d.missingBlobs + d.damagedBlobs + d.foreignBlobs) missing or damaged blob(s); recomputed on the next query"
            for recipe in d.recipes { repairs.append(Repair(action: "drop-derived", target: recipe, reason: why)) }
        }
        for hash in droppedChunks {
            repairs.append(Repair(action: "drop-chunk-row", target: hash.hex, reason: "no tensor uses it and its blob is not readable"))
        }
        var failures: [String] = []
        for (hash, proof) in quarantine {
            let movedTo: String?
            do {
                movedTo = try blobs.quarantine(hash)
            } catch {
                // E.g. EXDEV when objects/ is a link to another file system: left in place.
                failures.append("could not move damaged blob \(hash.hex) to quarantine/: \(error); left in place")
                continue
            }
            if let movedTo {
                repairs.append(Repair(action: "quarantine-blob", target: hash.hex, reason: "\(proof); moved to \(movedTo)"))
            }
        }
        for t in try blobs.listing().temporary where try blobs.removeTemporary(t) {
            repairs.append(Repair(action: "remove-temporary-file", target: "objects/\(t.name)", reason: "left by an interrupted write"))
        }
        try blobs.syncNamespace()
        var after = try runCheck(full: full)
        after.repairs = repairs
        after.notes += failures
        return after
    }

    /// Why blob `hash`'s file is certainly not that blob, or nil when that is not proven: it
    /// decodes and hashes to its name (a row disagreeing with it may be what is damaged), or
    /// its header names a format version, codec or filter this build does not know (a newer
    /// ckstore may have written it), or it is not a regular file.
    private func damageProof(_ hash: SHA256Digest) throws -> String? {
        guard case .regular(let size) = try blobs.state(of: hash) else { return nil }
        let largest = BlobHeader.size + LZ4.bound(BlobHeader.maxRawLength)
        if size > largest { return "it is \(size) bytes, more than any blob can be (\(largest))" }
        let file = try blobs.readPrefix(hash, count: size)
        let header = file.bytes.withUnsafeBytes { BlobHeader.decode($0, fileSize: file.size) }
        let rawLength: Int
        switch header {
        case .failure(let p) where (4...6).contains(p.offset):
            return nil
        case .failure(let p):
            return "bad header \(p)"
        case .success(let h):
            rawLength = h.rawLength
        }
        let codec = BlobCodec(maxChunkSize: max(rawLength, 1), settings: configuration.codecSettings)
        let out = ByteBuffer(capacity: max(rawLength, 1))
        do {
            _ = try file.bytes.withUnsafeBytes { bytes throws(BlobDamage) in try codec.decode(bytes, into: out, name: hash, rehash: true) }
            return nil
        } catch {
            return "damaged at \(error)"
        }
    }
}
