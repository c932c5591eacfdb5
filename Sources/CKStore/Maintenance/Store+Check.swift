/// One problem `fsck` found.
public struct IntegrityProblem: Sendable, Equatable, CustomStringConvertible {
    /// What is affected: a blob, a manifest/snapshot, or the database.
    public let subject: String
    /// What is wrong.
    public let detail: String
    public var description: String { "\(subject): \(detail)" }
}

/// The result of `fsck`.
public struct IntegrityReport: Sendable {
    /// Problems that break a *must* invariant (exit 3).
    public var problems: [IntegrityProblem] = []
    /// Harmless findings (orphan blobs, temporary files) that `gc` cleans up.
    public var notes: [String] = []
    /// What was checked.
    public var chunksChecked = 0
    public var manifestsChecked = 0
    public var blobsDecoded = 0
}

extension Store {
    /// Checks the store's invariants (docs/FORMAT.md) and lists every violation.
    ///
    /// The structural check verifies the database (`PRAGMA integrity_check`, foreign keys),
    /// every manifest's rows against its stored header and digest, and every chunk row against
    /// its blob file's header and size. With `full`, every blob is also read, decoded and
    /// re-hashed. Nothing is repaired.
    public func check(full: Bool) throws(CKStoreError) -> IntegrityReport {
        try withLock(exclusive: false) { () throws(CKStoreError) -> IntegrityReport in
            try wrapping("fsck") { try runCheck(full: full) }
        }
    }

    private func runCheck(full: Bool) throws -> IntegrityReport {
        var report = IntegrityReport()
        let db = metadata.db
        try db.readTransaction {
            let integrity = try db.statement("PRAGMA integrity_check").rows { $0.text(0) }
            if integrity != ["ok"] {
                for line in integrity.prefix(20) { report.problems.append(IntegrityProblem(subject: "database", detail: line)) }
            }
            try db.statement("PRAGMA foreign_key_check").forEachRow { row in
                report.problems.append(
                    IntegrityProblem(
                        subject: "database", detail: "table \(row.text(0)) row \(row.int(1)) refers to a missing \(row.text(2)) row"))
            }
            try checkManifests(&report)
            try checkChunks(&report, full: full)
            try checkDerivedRows(&report)
        }
        return report
    }

    /// The largest data offset or tensor length a row may hold: far beyond any real file, and
    /// small enough that offset + length cannot overflow.
    static let maxRowOffset = 1 << 62

    /// Every manifest: its tensor and chunk rows agree with the stored header, are contiguous,
    /// and hash back to the stored digest.
    private func checkManifests(_ report: inout IntegrityReport) throws {
        let db = metadata.db
        let rows = try db.statement("SELECT digest FROM manifests ORDER BY id").rows { SHA256Digest(bytes: $0.blob(0))! }
        var names: [SHA256Digest: String] = [:]
        try db.statement(
            "SELECT m.digest, r.name, s.step FROM snapshots s JOIN runs r ON r.id = s.run_id JOIN manifests m ON m.id = s.manifest_id"
        ).forEachRow { names[SHA256Digest(bytes: $0.blob(0))!] = "\($0.text(1))@\($0.int(2))" }
        // Rows whose sizes or offsets are out of any valid range would overflow the arithmetic
        // that loads a manifest (a trap, not an error), so they are reported here and their
        // manifests are not loaded.
        var outOfRange: [SHA256Digest: String] = [:]
        try db.statement(
            """
            SELECT m.digest, t.name, t.data_start, t.byte_length FROM tensors t JOIN manifests m ON m.id = t.manifest_id
            WHERE t.data_start < 0 OR t.byte_length < 0 OR t.data_start > ?1 OR t.byte_length > ?1
               OR EXISTS (SELECT 1 FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id
                          WHERE tc.manifest_id = t.manifest_id AND tc.position = t.position AND c.raw_size > ?2)
            ORDER BY m.id, t.position
            """
        ).forEachRow([.int(Self.maxRowOffset), .int(BlobHeader.maxRawLength)]) { row in
            let digest = SHA256Digest(bytes: row.blob(0))!
            if outOfRange[digest] == nil {
                outOfRange[digest] =
                    "tensor '\(row.text(1))' has out-of-range rows (data_start \(row.int(2)), byte_length \(row.int(3)), "
                    + "or a chunk raw_size over \(BlobHeader.maxRawLength))"
            }
        }
        for digest in rows {
            report.manifestsChecked += 1
            let subject = (names[digest].map { "\($0) (sha256:\(digest.hex))" }) ?? "manifest sha256:\(digest.hex)"
            if let problem = outOfRange[digest] {
                report.problems.append(IntegrityProblem(subject: subject, detail: problem))
                continue
            }
            let manifest: Manifest
            do {
                guard let m = try metadata.manifest(digest) else { continue }
                manifest = m
            } catch let e as CKStoreError {
                report.problems.append(IntegrityProblem(subject: subject, detail: e.message))
                continue
            }
            guard let header = try? SafetensorsHeader.parse(headerBytes: manifest.headerBytes) else {
                report.problems.append(IntegrityProblem(subject: subject, detail: "stored header does not parse"))
                continue
            }
            if header.dataLength != manifest.dataLength {
                report.problems.append(
                    IntegrityProblem(
                        subject: subject, detail: "data length \(manifest.dataLength) disagrees with the header (\(header.dataLength))"))
            }
            if header.tensors != manifest.tensors.map(\.info) {
                let bad = zip(header.tensors, manifest.tensors).first { $0.0 != $0.1.info }
                report.problems.append(
                    IntegrityProblem(
                        subject: subject,
                        detail: "tensor rows disagree with the stored header" + (bad.map { " at tensor '\($0.1.info.name)'" } ?? "")))
            }
            let recomputed = Manifest(headerBytes: manifest.headerBytes, dataLength: manifest.dataLength, tensors: manifest.tensors)
            if recomputed.digest != digest {
                report.problems.append(
                    IntegrityProblem(subject: subject, detail: "rows hash to sha256:\(recomputed.digest.hex), not the stored digest"))
            }
        }
    }

    /// Every chunk row: its blob exists with a valid header, the recorded size and raw length;
    /// with `full`, it decodes and hashes to its name. Blob files without a row are noted.
    private func checkChunks(_ report: inout IntegrityReport, full: Bool) throws {
        let allChunks = try metadata.db.statement("SELECT hash, raw_size, stored_size FROM chunks ORDER BY hash").rows {
            (SHA256Digest(bytes: $0.blob(0))!, $0.int(1), $0.int(2))
        }
        var users: [SHA256Digest: String] = [:]
        try metadata.db.statement(
            """
            SELECT c.hash, coalesce(r.name || '@' || s.step, 'sha256:' || lower(hex(m.digest))), t.name
            FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id JOIN manifests m ON m.id = tc.manifest_id
            JOIN tensors t ON t.manifest_id = tc.manifest_id AND t.position = tc.position
            LEFT JOIN snapshots s ON s.manifest_id = m.id LEFT JOIN runs r ON r.id = s.run_id
            """
        ).forEachRow { row in
            let id = SHA256Digest(bytes: row.blob(0))!
            if users[id] == nil { users[id] = "\(row.text(1)) tensor '\(row.text(2))'" }
        }
        // A raw size beyond the blob format's limit is a damaged row; sizing read buffers by it
        // would trap, so it is reported and the blob is not read.
        var chunks: [(SHA256Digest, Int, Int)] = []
        for chunk in allChunks {
            if chunk.1 > BlobHeader.maxRawLength {
                report.chunksChecked += 1
                let subject = "blob \(chunk.0.hex)" + (users[chunk.0].map { " (used by \($0))" } ?? "")
                let detail = "row raw size \(chunk.1) exceeds the limit of \(BlobHeader.maxRawLength) bytes"
                report.problems.append(IntegrityProblem(subject: subject, detail: detail))
            } else {
                chunks.append(chunk)
            }
        }
        let reader = ChunkReaderWorker(
            chunkSize: max(configuration.chunkSize, chunks.map(\.1).max() ?? 0), blobs: blobs, settings: configuration.codecSettings,
            verify: true)
        let decoded = ByteBuffer(capacity: max(configuration.chunkSize, chunks.map(\.1).max() ?? 0))
        let known = Set(allChunks.map(\.0))
        var v1Blobs = 0
        for (hash, rawSize, storedSize) in chunks {
            report.chunksChecked += 1
            let subject = "blob \(hash.hex)" + (users[hash].map { " (used by \($0))" } ?? "")
            guard let size = try blobs.size(of: hash) else {
                report.problems.append(IntegrityProblem(subject: subject, detail: "missing"))
                continue
            }
            if size != storedSize {
                report.problems.append(IntegrityProblem(subject: subject, detail: "is \(size) bytes, expected \(storedSize)"))
                continue
            }
            if full {
                if let message = fetchProblem(reader, ChunkRef(hash: hash, rawSize: rawSize, storedSize: storedSize), decoded) {
                    report.problems.append(IntegrityProblem(subject: subject, detail: message))
                } else {
                    report.blobsDecoded += 1
                }
                continue
            }
            // The header, its identity (the chunk address it records) and the row's raw size.
            let prefix = try blobs.readPrefix(hash, count: BlobHeader.size)
            if let problem = prefix.bytes.withUnsafeBytes({
                BlobHeader.problem(prefix: $0, fileSize: prefix.size, id: hash, rawSize: rawSize)
            }) {
                report.problems.append(IntegrityProblem(subject: subject, detail: problem))
            } else if prefix.bytes[4] == 1 {
                v1Blobs += 1
            }
        }
        var orphans = 0
        var orphanBytes = 0
        try blobs.forEach { id, size in
            if !known.contains(id) {
                orphans += 1
                orphanBytes += size
            }
        }
        let temporary = blobs.temporaryFiles()
        if orphans > 0 { report.notes.append("\(orphans) orphan blob(s), \(orphanBytes) bytes, no chunk row refers to (gc removes them)") }
        if v1Blobs > 0 {
            report.notes.append(
                "\(v1Blobs) blob(s) in format version 1, whose header records no chunk address: fsck --full checks their identity")
        }
        if !temporary.isEmpty { report.notes.append("\(temporary.count) temporary file(s) from interrupted writes (gc removes them)") }
    }
}

/// Why a blob failed to decode and re-hash, or nil when it is good.
private func fetchProblem(_ reader: ChunkReaderWorker, _ chunk: ChunkRef, _ into: ByteBuffer) -> String? {
    do {
        try reader.fetch(chunk, tensor: "-", label: "fsck", into: into)
        return nil
    } catch {
        let message = error.message
        return message.components(separatedBy: "blob \(chunk.hash.hex) ").last ?? message
    }
}

extension String {
    /// Splits on a separator string (a small helper to avoid Foundation).
    func components(separatedBy separator: String) -> [String] {
        var parts: [String] = []
        var rest = Substring(self)
        while let r = rest.firstRange(of: separator) {
            parts.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }
}
