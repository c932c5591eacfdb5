#if canImport(Glibc)
    import Glibc
#endif

/// What a part's put did (`Store.put(part:…)`).
public struct PartReport: Sendable {
    /// The chunking and storing figures; `digest` is the part's own file digest, `outcome` what
    /// happened to the part (`.created` for a new path, `.unchanged` for an identical re-put,
    /// `.replaced` with `force`).
    public let put: PutReport
    /// The pending snapshot after this put, and the snapshot when this put completed it.
    public let pending: PartOutcome
}

extension Store {
    /// Reads one file from `source` and adds it, at `path` inside the snapshot, to the pending
    /// snapshot RUN@STEP, which becomes visible when `total` distinct paths have been put
    /// (`MetadataStore.addPart`: the put that brings the count to `total` commits the snapshot
    /// in the same transaction).
    ///
    /// A path ending in `.safetensors` is parsed, validated and chunked by tensor as `put(from:…)`
    /// does; any other file is stored as opaque bytes (an opaque part from a pipe is first
    /// copied to an unlinked temporary file, since its size must be known). The part's blobs
    /// are durable before the transaction that records the part row: that commit is the part's
    /// acknowledgement, so a crash at any moment loses no acknowledged part.
    ///
    /// - Throws: `.badInput` for an unclean `path`, a `total` outside
    ///   1...`PendingSnapshot.maxParts` or disagreeing with the pending snapshot's, malformed
    ///   input; `.conflict` for different content at `path`, or parts of a complete RUN@STEP,
    ///   without `force`. On any error no metadata changes; blobs written by this put are
    ///   removed when no other process is using the store, else left for `gc`.
    public func put(
        part source: InputSource, path: String, run: String, step: Int, total: Int, force: Bool = false
    ) throws(CKStoreError) -> PartReport {
        try Store.validateRunName(run)
        guard step >= 0 else { throw CKStoreError(.badInput, "step must be a non-negative integer, got \(step)") }
        try PartRules.validate(path: path, total: total, ref: "\(run)@\(step)")
        try requireWritable()
        let start = nowMilliseconds()
        let context = "put \(run)@\(step) --path \(path)"
        var reader = try Self.partReader(source)
        reader.progress = progressMeter(total: nil)
        let isSafetensors = Store.isSafetensors(path)
        let header = isSafetensors ? try reader.readHeader() : nil
        let size = isSafetensors ? 0 : try Self.regularSize(reader.file, name: source.displayName)
        return try withLock(exclusive: false) { () throws(CKStoreError) -> PartReport in
            let session = IngestSession(store: self)
            do throws(CKStoreError) {
                let content: FileContent
                if let header {
                    content = .safetensors(try session.ingest(header: header, reader: &reader, context: context))
                } else {
                    reader.expect(length: size)
                    content = .bytes(try session.ingestBytes(size: size, reader: &reader, name: path, context: context))
                }
                let outcome = try wrapping(context) {
                    try session.makeDurable()
                    return try metadata.addPart(content, path: path, run: run, step: step, total: total, force: force)
                }
                let partOutcome: CommitOutcome
                switch outcome.part {
                case .added: partOutcome = .created
                case .unchanged: partOutcome = .unchanged
                case .replaced(let previous): partOutcome = .replaced(previous: previous)
                }
                let report = session.report(
                    digest: content.digest, outcome: partOutcome, bytesIn: content.size, start: start,
                    droppedMetrics: outcome.completed?.droppedMetrics ?? 0)
                return PartReport(put: report, pending: outcome)
            } catch {
                removeUncommittedBlobs(session.written)
                throw error
            }
        }
    }

    /// The pending snapshots with their parts (`ls --pending`).
    public func pendingSnapshots() throws(CKStoreError) -> [PendingSnapshot] {
        try withLock(exclusive: false) { () throws(CKStoreError) in
            try wrapping("list pending snapshots") { try metadata.pendingSnapshots() }
        }
    }

    /// A reader over a part's input.
    private static func partReader(_ source: InputSource) throws(CKStoreError) -> StreamReader {
        do {
            switch source {
            case .file(let p): return StreamReader(file: try FileHandle.openForReading(p), name: p)
            case .standardInput: return StreamReader(file: FileHandle(adopting: dup(0), path: "<stdin>"), name: "<stdin>")
            }
        } catch {
            throw CKStoreError(.badInput, "cannot read \(source.displayName): \(error)", cause: error)
        }
    }

    /// The size of an opaque part's input: a regular file's size, or, for a pipe, what it held
    /// (copied to an unlinked temporary file, whose descriptor then replaces the input's, so the
    /// reader reads the copy from its start).
    private static func regularSize(_ file: borrowing FileHandle, name: String) throws(CKStoreError) -> Int {
        if case .success(let st) = Sys.fileStatus("/proc/self/fd/\(file.fd)"), st.isRegular {
            return st.size - Int(lseek(file.fd, 0, SEEK_CUR))
        }
        let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        let spool: FileHandle
        do {
            let path = FileSystem.temporaryName(prefix: directory + "/ckstore-part")
            spool = try FileHandle(path: path, flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
            unlink(path)
        } catch {
            throw CKStoreError(.environment, "cannot create a temporary file in \(directory) for \(name): \(error)", cause: error)
        }
        let buffer = ByteBuffer(capacity: 1 << 20)
        var total = 0
        do {
            while true {
                let n = try file.readFully(into: buffer.storage)
                if n == 0 { break }
                try spool.writeAll(UnsafeRawBufferPointer(rebasing: buffer.storage[0..<n]))
                total += n
                if n < buffer.capacity { break }
            }
        } catch {
            throw CKStoreError(.badInput, "\(name): read failed at byte \(total): \(error)", cause: error)
        }
        guard lseek(spool.fd, 0, SEEK_SET) == 0, dup2(spool.fd, file.fd) >= 0 else {
            throw CKStoreError(.environment, "cannot rewind the temporary copy of \(name): errno \(errno)")
        }
        return total
    }
}
