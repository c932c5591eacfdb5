import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What `copy` did, for the summary line.
public struct CopyReport: Sendable {
    /// Snapshots recorded in the destination by this copy.
    public var snapshotsCopied = 0
    /// Snapshots the destination already held with identical content.
    public var snapshotsUnchanged = 0
    /// Blobs written to the destination.
    public var blobsCopied = 0
    /// Blobs the destination already held intact (dedup), not transferred.
    public var blobsSkipped = 0
    /// Blob bytes written to the destination.
    public var bytesCopied = 0
    /// Metric values recorded in the destination.
    public var metricsCopied = 0
    /// Wall time in seconds.
    public var seconds = 0.0
}

/// One distinct chunk of a snapshot being copied.
private struct CopyJob: Sendable {
    let chunk: ChunkRef
    let tensor: String
    /// The destination's chunk row (stored size), when it has one.
    let destinationRow: Int?
}

/// A copied (or found) chunk: its size in the destination.
private struct CopyResult: Sendable {
    let hash: SHA256Digest
    let storedSize: Int
    /// Whether this copy wrote the blob.
    let written: Bool
    /// A destination row existed but its blob was missing or damaged, and was written again.
    let repaired: Bool
}

/// A copy worker's buffers.
private final class CopyWorker {
    let codec: BlobCodec
    let decoded: ByteBuffer
    var sourceScratch: ByteBuffer
    var destinationScratch: ByteBuffer

    init(chunkSize: Int, settings: BlobCodec.Settings) {
        codec = BlobCodec(maxChunkSize: chunkSize, settings: settings)
        decoded = ByteBuffer(capacity: chunkSize)
        sourceScratch = ByteBuffer(capacity: BlobHeader.size + LZ4.bound(chunkSize))
        destinationScratch = ByteBuffer(capacity: BlobHeader.size + LZ4.bound(chunkSize))
    }
}

extension Store {
    /// Copies snapshots (manifests, chunk rows, blobs) and the metrics of their runs from this
    /// store into `destination`: every run, or only `run`.
    ///
    /// - Blobs the destination already holds intact (its chunk row exists and the blob passes the
    ///   checks of a read) are not transferred (dedup); one whose row exists but whose blob is
    ///   missing or damaged is written again, as a put would.
    /// - Every blob read from this store is verified before it is written: size against the
    ///   chunk row, header, identity, payload checksum, decoded length and the SHA-256 of the
    ///   decoded bytes. The blob is copied byte for byte (no re-encoding).
    /// - A snapshot's blobs are durable in the destination before its metadata commit, one
    ///   commit per snapshot, so an interrupted copy leaves only whole snapshots (and orphan
    ///   blobs that gc collects). Copying again skips what is already there.
    /// - Both stores are held under their shared lock, so gc cannot delete a blob in either
    ///   while it is being read or counted as present.
    ///
    /// - Throws: `.usage` when both stores are the same; `.notFound` for an unknown run;
    ///   `.conflict` (before anything is written) when the destination holds other content at a
    ///   RUN@STEP being copied; `.integrity` naming the snapshot, tensor and blob when a source
    ///   blob fails verification.
    public func copy(to destination: Store, run: String? = nil, workers: Int? = nil) throws(CKStoreError) -> CopyReport {
        let start = nowMilliseconds()
        if destination === self || Store.sameFolder(path, destination.path) {
            throw CKStoreError(.usage, "copy: the source and the destination are the same store (\(path))")
        }
        try destination.requireWritable()
        var report = try withLock(exclusive: false) { () throws(CKStoreError) -> CopyReport in
            try destination.withLock(exclusive: false) { () throws(CKStoreError) -> CopyReport in
                try copyLocked(to: destination, run: run, workers: workers ?? max(4, configuration.effectiveWorkers))
            }
        }
        report.seconds = Double(nowMilliseconds() - start) / 1000
        return report
    }

    /// The snapshots to copy and the metrics of their runs, read in one view of this store.
    private func copyPlan(run: String?) throws(CKStoreError) -> [(
        run: String, snapshots: [(SnapshotInfo, CopiedContent)], metrics: [MetricRecord]
    )] {
        try readView { () throws(CKStoreError) in
            let names: [String]
            if let run {
                names = [run]
            } else {
                names = try runs().map(\.name)
            }
            var plan: [(run: String, snapshots: [(SnapshotInfo, CopiedContent)], metrics: [MetricRecord])] = []
            for name in names {
                var entries: [(SnapshotInfo, CopiedContent)] = []
                for info in try snapshots(run: name) {
                    if info.kind == .tree {
                        entries.append((info, .tree(try storedTree(of: ResolvedRef(digest: info.digest, snapshot: info)))))
                        continue
                    }
                    guard let manifest = try wrapping("copy \(name)@\(info.step)", { try metadata.manifest(info.digest) }) else {
                        throw CKStoreError(.integrity, "copy \(name)@\(info.step): manifest sha256:\(info.digest.hex) is missing")
                    }
                    entries.append((info, .file(manifest)))
                }
                plan.append((name, entries, try metrics(run: name)))
            }
            return plan
        }
    }

    private func copyLocked(to destination: Store, run: String?, workers: Int) throws(CKStoreError) -> CopyReport {
        let plan = try copyPlan(run: run)
        // Refuse conflicts before writing anything.
        var existing: [String: SHA256Digest] = [:]
        for entry in plan {
            for (info, _) in entry.snapshots {
                let there = try wrapping("copy \(entry.run)@\(info.step)") {
                    try destination.metadata.snapshot(run: entry.run, step: info.step)
                }
                guard let there else { continue }
                guard there.digest == info.digest else {
                    throw CKStoreError(
                        .conflict,
                        "copy \(entry.run)@\(info.step): the destination holds sha256:\(there.digest.hex), not sha256:\(info.digest.hex)")
                }
                existing["\(entry.run)@\(info.step)"] = there.digest
            }
        }
        var report = CopyReport()
        var known: [SHA256Digest: Int] = [:]  // destination stored size of every chunk copied or found so far
        for entry in plan {
            for (info, manifest) in entry.snapshots {
                let label = "\(entry.run)@\(info.step)"
                if existing[label] != nil {
                    report.snapshotsUnchanged += 1
                    continue
                }
                try copySnapshot(
                    manifest, label: label, run: entry.run, step: info.step, to: destination, workers: workers,
                    known: &known, report: &report)
                report.snapshotsCopied += 1
            }
            // Metrics after the run's snapshots (the run exists in the destination by then),
            // grouped by step and variant; recording replaces equal names, so a repeated copy
            // changes nothing.
            var groups: [String: (step: Int, variant: String, values: [(String, Double)])] = [:]
            var order: [String] = []
            for record in entry.metrics {
                let key = "\(record.step)\u{0}\(record.variant)"
                if groups[key] == nil {
                    groups[key] = (record.step, record.variant, [])
                    order.append(key)
                }
                groups[key]!.values.append((record.name, record.value))
            }
            guard !order.isEmpty else { continue }
            let hasRun = try wrapping("copy metrics of \(entry.run)") { try destination.metadata.snapshots(run: entry.run) } != nil
            guard hasRun else { continue }  // a run without snapshots: nothing to attach them to
            for key in order {
                let group = groups[key]!
                try wrapping("copy metrics of \(entry.run)@\(group.step)") {
                    try destination.metadata.recordMetrics(run: entry.run, step: group.step, variant: group.variant, values: group.values)
                }
                report.metricsCopied += group.values.count
            }
        }
        return report
    }

    /// Copies one snapshot's missing blobs, makes them durable, then commits its content (a
    /// tree with all its files, in one transaction).
    private func copySnapshot(
        _ content: CopiedContent, label: String, run: String, step: Int, to destination: Store, workers: Int,
        known: inout [SHA256Digest: Int], report: inout CopyReport
    ) throws(CKStoreError) {
        let allTensors = content.tensors
        let chunkSize = max(configuration.chunkSize, allTensors.flatMap(\.chunks).map(\.rawSize).max() ?? 0)
        let source = self.blobs
        let target = destination.blobs
        let settings = configuration.codecSettings
        let written = Mutex<[SHA256Digest]>([])
        let pipeline = OrderedPipeline<CopyJob, CopyResult, CopyWorker>(
            workers: workers, capacity: workers * 2,
            makeState: { CopyWorker(chunkSize: chunkSize, settings: settings) },
            process: { worker, job in
                let result = try Store.copyChunk(job, label: label, from: source, to: target, worker: worker)
                if result.written { written.withLock { $0.append(result.hash) } }
                return result
            })
        var repaired: [(SHA256Digest, Int)] = []
        let deliver: (CopyResult) -> Void = { result in
            known[result.hash] = result.storedSize
            if result.written {
                report.blobsCopied += 1
                report.bytesCopied += result.storedSize
            } else {
                report.blobsSkipped += 1
            }
            if result.repaired { repaired.append((result.hash, result.storedSize)) }
        }
        do {
            var queued = Set<SHA256Digest>()
            for tensor in allTensors {
                for chunk in tensor.chunks where known[chunk.hash] == nil && queued.insert(chunk.hash).inserted {
                    let row = try wrapping("copy \(label)") { try destination.metadata.storedSize(ofChunk: chunk.hash) }
                    try pipeline.submit(CopyJob(chunk: chunk, tensor: tensor.info.name, destinationRow: row), deliver: deliver)
                }
            }
            try pipeline.drain(deliver)
            pipeline.shutdown()
            let sizes = known
            func resized(_ chunks: [ChunkRef]) -> [ChunkRef] {
                chunks.map { ChunkRef(hash: $0.hash, rawSize: $0.rawSize, storedSize: sizes[$0.hash]!) }
            }
            func copiedManifest(_ manifest: Manifest) throws(CKStoreError) -> Manifest {
                let tensors = manifest.tensors.map { TensorEntry(info: $0.info, chunks: resized($0.chunks)) }
                let copied = Manifest(headerBytes: manifest.headerBytes, dataLength: manifest.dataLength, tensors: tensors)
                guard copied.digest == manifest.digest else {
                    throw CKStoreError(
                        .integrity, "copy \(label): the manifest's recorded digest sha256:\(manifest.digest.hex) does not match its rows")
                }
                return copied
            }
            switch content {
            case .file(let manifest):
                let copied = try copiedManifest(manifest)
                try wrapping("copy \(label)") {
                    try target.syncNamespace()
                    try destination.metadata.updateStoredSizes(repaired)
                    _ = try destination.metadata.commit(manifest: copied, run: run, step: step, metrics: [], force: false)
                }
            case .tree(let snapshot):
                var files: [SHA256Digest: FileContent] = [:]
                for (digest, file) in snapshot.files {
                    switch file {
                    case .safetensors(let manifest): files[digest] = .safetensors(try copiedManifest(manifest))
                    case .bytes(let bytes):
                        let copied = BytesFile(size: bytes.size, chunks: resized(bytes.chunks))
                        guard copied.digest == digest else {
                            throw CKStoreError(.integrity, "copy \(label): file sha256:\(digest.hex) does not match its rows")
                        }
                        files[digest] = .bytes(copied)
                    }
                }
                let copied = TreeSnapshot(tree: snapshot.tree, files: files)
                try wrapping("copy \(label)") {
                    try target.syncNamespace()
                    try destination.metadata.updateStoredSizes(repaired)
                    _ = try destination.metadata.commit(tree: copied, run: run, step: step, metrics: [], force: false)
                }
            }
        } catch {
            pipeline.cancel()
            pipeline.shutdown()  // wait for jobs in flight: their blobs must be known before cleanup
            destination.removeUnreferencedBlobs(written.withLock { $0 })
            throw CKStoreError.wrap(error, context: "copy \(label)")
        }
    }

    /// Copies one chunk's blob unless the destination holds it intact: reads the source blob,
    /// verifies it completely (decoding it and re-hashing the result), and puts the same bytes.
    private static func copyChunk(
        _ job: CopyJob, label: String, from source: any BlobStore, to target: any BlobStore, worker: CopyWorker
    ) throws -> CopyResult {
        let chunk = job.chunk
        let codec = worker.codec
        if let row = job.destinationRow {
            let intact = try? target.withBytes(of: chunk.hash, scratch: &worker.destinationScratch) { file in
                file.count == row && Store.isIntact(file, chunk: chunk, codec: codec, scratch: worker.decoded)
            }
            if intact == true { return CopyResult(hash: chunk.hash, storedSize: row, written: false, repaired: false) }
        }
        let decoded = worker.decoded
        let blobName = "blob \(chunk.hash.hex)"
        let context = "copy \(label): tensor '\(job.tensor)': \(blobName)"
        do {
            return try source.withBytes(of: chunk.hash, scratch: &worker.sourceScratch) { file throws -> CopyResult in
                guard file.count == chunk.storedSize else {
                    throw CKStoreError(.integrity, "\(context) is \(file.count) bytes, expected \(chunk.storedSize)")
                }
                let n = try codec.decode(file, into: decoded, name: chunk.hash, rehash: true)
                guard n == chunk.rawSize else {
                    throw CKStoreError(.integrity, "\(context) decodes to \(n) bytes, expected \(chunk.rawSize)")
                }
                let raw = decoded.bytes
                let (isNew, size) = try target.put(chunk.hash, bytes: file) { existing in
                    codec.isIntact(existing, name: chunk.hash, raw: raw)
                }
                return CopyResult(hash: chunk.hash, storedSize: size, written: isNew, repaired: job.destinationRow != nil)
            }
        } catch let e as CKStoreError {
            throw e
        } catch BlobStoreError.notFound {
            throw CKStoreError(.integrity, "\(context) is missing in the source store")
        } catch let e as BlobDamage {
            throw CKStoreError(.integrity, "\(context) is damaged at \(e)", cause: e)
        } catch {
            throw CKStoreError.wrap(error, context: context)
        }
    }

    /// Whether `file` is an intact blob of `chunk` (the checks of a read; a version 1 blob, whose
    /// header names no chunk, is decoded and re-hashed).
    static func isIntact(_ file: UnsafeRawBufferPointer, chunk: ChunkRef, codec: BlobCodec, scratch: ByteBuffer) -> Bool {
        guard let (header, _) = try? codec.checkedPayload(file, name: chunk.hash), header.rawLength == chunk.rawSize else {
            return false
        }
        if header.address != nil { return true }
        return (try? codec.decode(file, into: scratch, name: chunk.hash, rehash: true)) == chunk.rawSize
    }

    /// Whether two paths name the same folder (same device and inode).
    static func sameFolder(_ a: String, _ b: String) -> Bool {
        var x = stat()
        var y = stat()
        guard stat(a, &x) == 0, stat(b, &y) == 0 else { return a == b }
        return x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    /// After a failed copy or put: deletes the given blobs that no chunk row refers to, but only
    /// when no other process holds the store lock (one might be about to refer to them);
    /// otherwise they stay as orphans for `gc`.
    func removeUnreferencedBlobs(_ hashes: [SHA256Digest]) {
        guard !hashes.isEmpty, tryUpgradeToExclusive() else { return }
        for hash in hashes where (try? metadata.hasChunk(hash)) == false {
            try? blobs.remove(hash)
        }
        try? blobs.syncNamespace()
    }
}

/// What `copy` carries for one snapshot: a single safetensors manifest or a tree with the
/// content of each file.
private enum CopiedContent {
    case file(Manifest)
    case tree(TreeSnapshot)

    /// Every tensor (a bytes file's pseudo tensor included) whose chunks must be copied.
    var tensors: [TensorEntry] {
        switch self {
        case .file(let manifest): manifest.tensors
        case .tree(let snapshot): snapshot.files.values.flatMap(\.tensorEntries)
        }
    }
}
