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
        try metadata.withReadView {
            for line in try metadata.storageProblems() {
                report.problems.append(IntegrityProblem(subject: "database", detail: line))
            }
            try checkManifests(&report)
            try checkChunks(&report, full: full)
            try checkDerivedRows(&report)
            try findDamagedSnapshots(&report)
        }
        let quarantined = try blobs.quarantined()
        report.quarantinedFiles = quarantined.count
        if report.quarantinedFiles > 0 {
            report.notes.append(
                "\(report.quarantinedFiles) file(s) in \(quarantined.location), moved aside by fsck --repair (delete them when no longer needed)"
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
        let rows = try metadata.allManifestDigests()
        var names = try treeFileNames()
        for snapshot in try metadata.allSnapshots() { names[snapshot.digest] = snapshot.ref }
        // Rows whose sizes or offsets are out of any valid range would overflow the arithmetic
        // that loads a manifest (a trap, not an error), so they are reported here and their
        // manifests are not loaded.
        var outOfRange: [SHA256Digest: String] = [:]
        for row in try metadata.tensorRowsOutOfRange(maxOffset: Self.maxRowOffset, maxRawSize: BlobHeader.maxRawLength) {
            outOfRange[row.manifest] =
                "tensor '\(row.tensor)' has out-of-range rows (data_start \(row.dataStart), byte_length \(row.byteLength), "
                + "or a chunk raw_size over \(BlobHeader.maxRawLength))"
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
                switch try metadata.contentKind(digest) {
                case .tree?:
                    checkTree(digest, subject: subject, &report)
                    continue
                case .bytes?:
                    let file = try metadata.bytesFile(digest)
                    if let file, BytesFile(size: file.size, chunks: file.chunks).digest != digest {
                        let recomputed = BytesFile(size: file.size, chunks: file.chunks).digest
                        report.problems.append(
                            IntegrityProblem(subject: subject, detail: "rows hash to sha256:\(recomputed.hex), not the stored digest"))
                    }
                    continue
                case .safetensors?, nil:
                    break
                }
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

    /// A tree manifest: its entry rows form a valid tree (clean, distinct paths naming stored
    /// files) whose canonical encoding hashes back to the stored digest. The files themselves
    /// are checked as manifests of their own.
    private func checkTree(_ digest: SHA256Digest, subject: String, _ report: inout IntegrityReport) {
        do {
            guard let tree = try metadata.tree(digest) else { return }
            let recomputed = try TreeManifest(entries: tree.entries)
            if recomputed.digest != digest {
                report.problems.append(
                    IntegrityProblem(
                        subject: subject, detail: "tree entries hash to sha256:\(recomputed.digest.hex), not the stored digest"))
            }
        } catch let e as CKStoreError {
            report.problems.append(IntegrityProblem(subject: subject, detail: e.message))
        } catch {
            report.problems.append(IntegrityProblem(subject: subject, detail: "\(error)"))
        }
    }

    /// For each file of a tree some snapshot names: "RUN@STEP file 'PATH'" (the first such).
    private func treeFileNames() throws -> [SHA256Digest: String] {
        var names = try pendingPartNames()
        for snapshot in try metadata.allSnapshots().reversed() where snapshot.kind == .tree {
            for entry in (try? metadata.tree(snapshot.digest))?.entries ?? [] {
                names[entry.digest] = "\(snapshot.ref) file '\(entry.path)'"
            }
        }
        return names
    }

    /// Every chunk row: its blob exists as a regular file (no symlink followed) with a valid
    /// header, the recorded size and raw length; with `full`, it decodes and hashes to its name.
    /// Blob files without a row, temporary files and foreign entries are noted.
    private func checkChunks(_ report: inout IntegrityReport, full: Bool) throws {
        let allChunks = try metadata.chunkRows().map { ($0.hash, $0.rawSize, $0.storedSize) }
        var users: [SHA256Digest: String] = [:]
        var snapshotNames = try treeFileNames()
        for snapshot in try metadata.allSnapshots().reversed() { snapshotNames[snapshot.digest] = snapshot.ref }
        for use in try metadata.chunkUses() where users[use.chunk] == nil {
            users[use.chunk] = "\(snapshotNames[use.manifest] ?? "sha256:\(use.manifest.hex)") tensor '\(use.tensor)'"
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
        if let missing = try blobs.namespaceProblem() {
            report.problems.append(IntegrityProblem(subject: "objects/", detail: missing))
            for (hash, _, _) in chunks {
                report.chunksChecked += 1
                fault(hash, .missing, "missing")
            }
            return
        }
        for (hash, rawSize, storedSize) in chunks {
            report.chunksChecked += 1
            let size: Int
            switch try blobs.state(of: hash) {
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
            let prefix = try blobs.readPrefix(hash, count: BlobHeader.size)
            if let problem = prefix.bytes.withUnsafeBytes({
                BlobHeader.problem(prefix: $0, fileSize: prefix.size, id: hash, rawSize: rawSize)
            }) {
                fault(hash, .damaged(problem), problem)
            } else if prefix.bytes[4] == 1 {
                v1Blobs += 1
            }
        }
        let listing = try blobs.listing()
        for blob in listing.blobs where !known.contains(blob.id) {
            report.orphanBlobs += 1
            report.orphanBytes += blob.size
        }
        report.temporaryFiles = listing.temporary.count
        report.foreignEntries = listing.foreign
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
        var damaged: [SHA256Digest: DamagedSnapshot] = [:]
        func entry(_ digest: SHA256Digest) -> DamagedSnapshot {
            damaged[digest] ?? DamagedSnapshot(names: [], recipes: [], digest: digest)
        }
        for digest in try metadata.allManifestDigests() where report.damagedManifests.contains(digest) {
            damaged[digest] = entry(digest)
            damaged[digest]?.rowsDamaged = true
        }
        if !report.blobFaults.isEmpty {
            var counted = Set<[SHA256Digest]>()
            for use in try metadata.chunkUses() {
                guard let fault = report.blobFaults[use.chunk], counted.insert([use.manifest, use.chunk]).inserted else { continue }
                var d = entry(use.manifest)
                switch fault {
                case .missing: d.missingBlobs += 1
                case .damaged: d.damagedBlobs += 1
                case .foreign: d.foreignBlobs += 1
                }
                damaged[use.manifest] = d
            }
        }
        guard !damaged.isEmpty else { return }
        // A damaged file damages every tree that holds it; the tree is what snapshots name.
        var fileDigests = Set<SHA256Digest>()
        for digest in try metadata.allManifestDigests() where try metadata.contentKind(digest) == .tree {
            guard let tree = try? metadata.tree(digest) else { continue }
            for file in Set(tree.entries.map(\.digest)) {
                fileDigests.insert(file)
                guard let d = damaged[file] else { continue }
                var t = entry(digest)
                t.missingBlobs += d.missingBlobs
                t.damagedBlobs += d.damagedBlobs
                t.foreignBlobs += d.foreignBlobs
                t.rowsDamaged = t.rowsDamaged || d.rowsDamaged
                damaged[digest] = t
            }
        }
        for snapshot in try metadata.allSnapshots() { damaged[snapshot.digest]?.names.append((snapshot.run, snapshot.step)) }
        for row in try metadata.derivedRows() {
            if let digest = row.digest { damaged[digest]?.recipes.append(row.recipe) }
        }
        // A file is reported through its trees, unless something names it directly.
        for file in fileDigests where damaged[file]?.names.isEmpty == true && damaged[file]?.recipes.isEmpty == true {
            damaged[file] = nil
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
