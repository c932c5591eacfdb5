#if canImport(Glibc)
    import Glibc
#endif

extension Store {
    /// Reads every regular file under `directory` (`DirectoryWalk`: recursive, symbolic links
    /// to files followed, anything else refused) and records them as one tree snapshot RUN@STEP.
    ///
    /// Files whose name ends in `.safetensors` are parsed, validated and chunked by tensor
    /// exactly as `put(from:…)` does; every other file is stored as opaque bytes (chunked, plain
    /// LZ4, raw when that does not shrink). The listing and every safetensors header are
    /// checked before any blob is written. Files go through one ingest session one after
    /// another; all blobs are durable before the single metadata transaction that records the
    /// file objects, the tree and the snapshot (`MetadataStore.commit(tree:…)`).
    ///
    /// - Throws: `.badInput` naming the path for a bad directory entry, a malformed safetensors
    ///   file or a file that changed while it was read; `.conflict` for different content at an
    ///   existing RUN@STEP without `force`. On any error no metadata changes; blobs written by
    ///   this put are removed when no other process is using the store, else left for `gc`.
    public func put(
        directory: String, run: String, step: Int, metrics: [(String, Double)] = [], force: Bool = false
    ) throws(CKStoreError) -> PutReport {
        try Store.validateRunName(run)
        for (name, _) in metrics { try Store.validateName(name, kind: "metric name") }
        guard step >= 0 else { throw CKStoreError(.badInput, "step must be a non-negative integer, got \(step)") }
        try requireWritable()
        let start = nowMilliseconds()
        let files = try DirectoryWalk.files(under: directory)
        let meter = progressMeter(total: files.reduce(0) { $0 + $1.size })
        // Every header first: a malformed shard is refused before anything is written.
        var headers: [String: SafetensorsHeader] = [:]
        for file in files where Self.isSafetensors(file.path) {
            var reader = try Self.reader(file)
            headers[file.path] = try reader.readHeader()
        }
        return try withLock(exclusive: false) { () throws(CKStoreError) -> PutReport in
            let session = IngestSession(store: self)
            do throws(CKStoreError) {
                var contents: [(path: String, content: FileContent)] = []
                for file in files {
                    var reader = try Self.reader(file)
                    reader.progress = meter
                    let context = "put \(run)@\(step): \(file.path)"
                    if let header = headers[file.path] {
                        let again = try reader.readHeader()
                        guard again.headerBytes == header.headerBytes else {
                            throw CKStoreError(.badInput, "\(file.location): the file changed while it was being put")
                        }
                        contents.append((file.path, .safetensors(try session.ingest(header: again, reader: &reader, context: context))))
                    } else {
                        reader.expect(length: file.size)
                        let bytes = try session.ingestBytes(size: file.size, reader: &reader, name: file.path, context: context)
                        contents.append((file.path, .bytes(bytes)))
                    }
                }
                let snapshot = try TreeSnapshot(files: contents)
                let committed = try wrapping("put \(run)@\(step)") {
                    try session.makeDurable()
                    return try metadata.commit(tree: snapshot, run: run, step: step, metrics: metrics, force: force)
                }
                var report = session.report(
                    digest: snapshot.tree.digest, outcome: committed.outcome, bytesIn: snapshot.tree.totalSize, start: start,
                    droppedMetrics: committed.droppedMetrics)
                report.fileCount = files.count
                return report
            } catch {
                removeUncommittedBlobs(session.written)
                throw error
            }
        }
    }

    /// Whether a tree path names a safetensors file (parsed and chunked by tensor).
    public static func isSafetensors(_ path: String) -> Bool { path.hasSuffix(".safetensors") }

    /// A reader over one file of a directory, named by its location for messages. The file is
    /// opened without blocking and must still be a regular file: one replaced by a FIFO after
    /// the walk would otherwise block the put forever.
    static func reader(_ file: WalkedFile) throws(CKStoreError) -> StreamReader {
        let handle: FileHandle
        do {
            handle = try FileHandle(path: file.location, flags: O_RDONLY | O_NONBLOCK)
        } catch {
            throw CKStoreError(.badInput, "cannot read \(file.location): \(error)", cause: error)
        }
        var st = stat()
        guard fstat(handle.fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw CKStoreError(.badInput, "\(file.location) is no longer a regular file")
        }
        _ = fcntl(handle.fd, F_SETFL, fcntl(handle.fd, F_GETFL) & ~O_NONBLOCK)
        return StreamReader(file: handle, name: file.location)
    }
}
