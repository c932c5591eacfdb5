/// One problem `fsck` found.
public struct IntegrityProblem: Sendable, Equatable, CustomStringConvertible {
    /// What is affected: a blob, a manifest/snapshot, or the database.
    public let subject: String
    /// What is wrong.
    public let detail: String
    /// The blob at fault, when the problem is a blob's.
    public var blob: SHA256Digest? = nil
    public var description: String { "\(subject): \(detail)" }
}

/// What is wrong with a blob that a chunk row refers to.
public enum BlobFault: Sendable, Equatable {
    /// No file has its name.
    case missing
    /// A file has its name but fails a check (size, header, or with --full, decoding).
    case damaged(String)
    /// Its name (or its fan-out folder) is not a regular file/folder: a symbolic link, say. Not
    /// followed, not read.
    case foreign(String)
}

/// A snapshot or cached average that cannot be read back because of damaged rows or blobs.
public struct DamagedSnapshot: Sendable, Equatable {
    /// RUN@STEP names (empty for a derived snapshot only).
    public var names: [(run: String, step: Int)]
    /// The recipes of the derived rows naming it (cached averages).
    public var recipes: [String]
    /// The manifest's digest.
    public let digest: SHA256Digest
    /// Blobs it uses that are missing, damaged or foreign.
    public var missingBlobs = 0
    public var damagedBlobs = 0
    public var foreignBlobs = 0
    /// True when its own rows are inconsistent (not only its blobs).
    public var rowsDamaged = false

    public static func == (a: DamagedSnapshot, b: DamagedSnapshot) -> Bool {
        a.digest == b.digest && a.recipes == b.recipes && a.names.map { "\($0.run)@\($0.step)" } == b.names.map { "\($0.run)@\($0.step)" }
            && a.missingBlobs == b.missingBlobs && a.damagedBlobs == b.damagedBlobs && a.foreignBlobs == b.foreignBlobs
            && a.rowsDamaged == b.rowsDamaged
    }
}

/// One change `fsck --repair` made.
public struct Repair: Sendable, Equatable, CustomStringConvertible {
    /// `drop-derived`, `quarantine-blob`, `drop-chunk-row` or `remove-temporary-file`.
    public let action: String
    /// What it acted on (a recipe, a blob, a path).
    public let target: String
    /// Why.
    public let reason: String
    public var description: String { "\(action) \(target): \(reason)" }
}

/// The result of `fsck`.
public struct IntegrityReport: Sendable {
    /// Problems that break a *must* invariant (exit 3).
    public var problems: [IntegrityProblem] = []
    /// Harmless findings (orphan blobs, temporary files, foreign entries).
    public var notes: [String] = []
    /// What was checked.
    public var chunksChecked = 0
    public var manifestsChecked = 0
    public var blobsDecoded = 0
    /// Blob files no chunk row refers to, and their bytes.
    public var orphanBlobs = 0
    public var orphanBytes = 0
    /// Temporary files of interrupted writes.
    public var temporaryFiles = 0
    /// Entries of `objects/` that are not ckstore's (never followed or touched).
    public var foreignEntries: [String] = []
    /// Blobs referred to by chunk rows that are missing, damaged or foreign.
    public var blobFaults: [SHA256Digest: BlobFault] = [:]
    /// Manifests whose own rows are inconsistent.
    public var damagedManifests: Set<SHA256Digest> = []
    /// Snapshots (and cached averages) that cannot be read back, newest problems first by name.
    public var damagedSnapshots: [DamagedSnapshot] = []
    /// What `--repair` changed (empty without it).
    public var repairs: [Repair] = []
    /// Files in `<store>/quarantine/` (moved aside by earlier repairs).
    public var quarantinedFiles = 0
}

extension Store {
    /// Checks the store's invariants (docs/FORMAT.md) and lists every violation, and which
    /// snapshots they damage.
    ///
    /// The structural check verifies the database (`PRAGMA integrity_check`, foreign keys),
    /// every manifest's rows against its stored header and digest, and every chunk row against
    /// its blob file's header and size. With `full`, every blob is also read, decoded and
    /// re-hashed. Nothing inside `objects/` is followed through a symbolic link. Nothing is
    /// repaired (see `repair(full:)`).
    public func check(full: Bool) throws(CKStoreError) -> IntegrityReport {
        try withLock(exclusive: false) { () throws(CKStoreError) -> IntegrityReport in
            try wrapping("fsck") { try runCheck(full: full) }
        }
    }

    func runCheck(full: Bool) throws -> IntegrityReport {
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
            try findDamagedSnapshots(&report)
        }
        if case .success(let names) = Sys.listDirectory("\(path)/quarantine") { report.quarantinedFiles = names.count }
        if report.quarantinedFiles > 0 {
            report.notes.append(
                "\(report.quarantinedFiles) file(s) in \(path)/quarantine, moved aside by fsck --repair (delete them when no longer needed)"
            )
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
            let before = report.problems.count
            defer { if report.problems.count > before { report.damagedManifests.insert(digest) } }
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

    /// Every chunk row: its blob exists as a regular file (no symlink followed) with a valid
    /// header, the recorded size and raw length; with `full`, it decodes and hashes to its name.
    /// Blob files without a row, temporary files and foreign entries are noted.
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
        func fault(_ hash: SHA256Digest, _ kind: BlobFault, _ detail: String) {
            let subject = "blob \(hash.hex)" + (users[hash].map { " (used by \($0))" } ?? "")
            report.problems.append(IntegrityProblem(subject: subject, detail: detail, blob: hash))
            report.blobFaults[hash] = kind
        }
        // A raw size beyond the blob format's limit is a damaged row; sizing read buffers by it
        // would trap, so it is reported and the blob is not read.
        var chunks: [(SHA256Digest, Int, Int)] = []
        for chunk in allChunks {
            if chunk.1 > BlobHeader.maxRawLength {
                report.chunksChecked += 1
                let detail = "row raw size \(chunk.1) exceeds the limit of \(BlobHeader.maxRawLength) bytes"
                fault(chunk.0, .damaged(detail), detail)
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
        // Without objects/ every blob is missing: one problem for the folder, one per chunk row.
        if case .failure(let e) = Sys.fileStatus(blobs.root), e.isNotFound {
            report.problems.append(IntegrityProblem(subject: "objects/", detail: "\(blobs.root) is missing"))
            for (hash, _, _) in chunks {
                report.chunksChecked += 1
                fault(hash, .missing, "missing")
            }
            return
        }
        for (hash, rawSize, storedSize) in chunks {
            report.chunksChecked += 1
            let size: Int
            switch try blobs.entryState(of: hash) {
            case .missing:
                fault(hash, .missing, "missing")
                continue
            case .foreign(let what):
                fault(hash, .foreign(what), "not a blob file: \(what)")
                continue
            case .regular(let s):
                size = s
            }
            if size != storedSize {
                let detail = "is \(size) bytes, expected \(storedSize)"
                fault(hash, .damaged(detail), detail)
                continue
            }
            if full {
                if let message = fetchProblem(reader, ChunkRef(hash: hash, rawSize: rawSize, storedSize: storedSize), decoded) {
                    fault(hash, .damaged(message), message)
                } else {
                    report.blobsDecoded += 1
                }
                continue
            }
            let prefix = try blobs.readPrefixNoFollow(hash, count: BlobHeader.size)
            if let problem = prefix.bytes.withUnsafeBytes({
                BlobHeader.problem(prefix: $0, fileSize: prefix.size, id: hash, rawSize: rawSize)
            }) {
                fault(hash, .damaged(problem), problem)
            } else if prefix.bytes[4] == 1 {
                v1Blobs += 1
            }
        }
        let listing = try blobs.listObjects()
        for blob in listing.blobs where !known.contains(blob.id) {
            report.orphanBlobs += 1
            report.orphanBytes += blob.size
        }
        report.temporaryFiles = listing.temporary.count
        report.foreignEntries = listing.foreign.map(\.description)
        if report.orphanBlobs > 0 {
            report.notes.append(
                "\(report.orphanBlobs) orphan blob(s), \(report.orphanBytes) bytes, no chunk row refers to (gc removes them)")
        }
        if report.temporaryFiles > 0 {
            report.notes.append("\(report.temporaryFiles) temporary file(s) from interrupted writes (gc and fsck --repair remove them)")
        }
        for f in listing.foreign { report.notes.append("not ckstore's, left alone: \(f)") }
        if v1Blobs > 0 {
            report.notes.append(
                "\(v1Blobs) blob(s) in format version 1, whose header records no chunk address: fsck --full checks their identity")
        }
    }

    /// Which snapshots and cached averages use a faulty blob or have damaged rows.
    private func findDamagedSnapshots(_ report: inout IntegrityReport) throws {
        guard !report.blobFaults.isEmpty || !report.damagedManifests.isEmpty else { return }
        let db = metadata.db
        var digests: [Int: SHA256Digest] = [:]
        try db.statement("SELECT id, digest FROM manifests").forEachRow { digests[$0.int(0)] = SHA256Digest(bytes: $0.blob(1)) }
        var damaged: [Int: DamagedSnapshot] = [:]
        func entry(_ id: Int) -> DamagedSnapshot? {
            if let d = damaged[id] { return d }
            guard let digest = digests[id] else { return nil }
            return DamagedSnapshot(names: [], recipes: [], digest: digest)
        }
        for (id, digest) in digests where report.damagedManifests.contains(digest) {
            damaged[id] = entry(id)
            damaged[id]?.rowsDamaged = true
        }
        if !report.blobFaults.isEmpty {
            try db.statement(
                "SELECT DISTINCT tc.manifest_id, c.hash FROM tensor_chunks tc JOIN chunks c ON c.id = tc.chunk_id"
            ).forEachRow { row in
                let hash = SHA256Digest(bytes: row.blob(1))!
                guard let fault = report.blobFaults[hash], var d = entry(row.int(0)) else { return }
                switch fault {
                case .missing: d.missingBlobs += 1
                case .damaged: d.damagedBlobs += 1
                case .foreign: d.foreignBlobs += 1
                }
                damaged[row.int(0)] = d
            }
        }
        guard !damaged.isEmpty else { return }
        try db.statement("SELECT s.manifest_id, r.name, s.step FROM snapshots s JOIN runs r ON r.id = s.run_id ORDER BY r.name, s.step")
            .forEachRow { row in damaged[row.int(0)]?.names.append((row.text(1), row.int(2))) }
        try db.statement("SELECT manifest_id, recipe FROM derived ORDER BY id").forEachRow { row in
            damaged[row.int(0)]?.recipes.append(row.text(1))
        }
        report.damagedSnapshots = damaged.values.sorted { a, b in
            let ka =
                a.names.first.map { "0\($0.run)@\(String(repeating: "0", count: 20 - String($0.step).count))\($0.step)" }
                ?? "1\(a.recipes.first ?? a.digest.hex)"
            let kb =
                b.names.first.map { "0\($0.run)@\(String(repeating: "0", count: 20 - String($0.step).count))\($0.step)" }
                ?? "1\(b.recipes.first ?? b.digest.hex)"
            return ka < kb
        }
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
