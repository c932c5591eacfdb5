/// What materializing a query did.
public struct AverageReport: Sendable {
    /// The plan that was run.
    public let plan: QueryPlan
    /// True when the result came from the derived-snapshot cache.
    public let fromCache: Bool
    /// The derived snapshot's digest (nil with `--no-cache` on a miss).
    public let derivedDigest: SHA256Digest?
    /// Tensors copied from the newest input rather than averaged (`PATH: NAME` for an average
    /// of directory snapshots).
    public let copiedTensors: [String]
    /// The side files (non-safetensors files) copied from the newest input, for an average of
    /// directory snapshots; [] otherwise.
    public var copiedFiles: [String] = []
    /// The number of files written (or that the result holds, when nothing is written): 1 for
    /// a single-file result.
    public var files = 1
    /// Bytes written to the output.
    public let bytesOut: Int
    /// Wall time in seconds.
    public let seconds: Double
    /// What happened to a cached result that could not be served (dropped and recomputed, and
    /// why), for a warning on stderr; empty normally.
    public var cacheNotes: [String] = []
}

extension Store {
    /// Computes a query's result and writes it to `target` (nil: compute and cache only).
    ///
    /// The result is computed chunk by chunk: for each output chunk, the matching chunk of every
    /// input is read, decoded and accumulated in Float64, then rounded once to the tensor's
    /// dtype. Workers compute chunks in parallel; chunks are written in order, so the output
    /// streams out before all inputs are read and memory stays bounded by the chunk size times
    /// the number of inputs in flight, whatever the model size.
    ///
    /// Everything runs under the shared store lock, and the inputs' manifests (and the cache
    /// lookup) are loaded in one read transaction: when an input step was replaced by a
    /// concurrent `put --force` after `plan` resolved it, the query is planned again in that
    /// view (the report carries the plan actually used), so a reader never sees a false "does
    /// not exist" nor a mix of old and new inputs.
    ///
    /// With `useCache`, a stored derived snapshot for the same recipe and input digests is
    /// returned without recomputing, once checked against the query (recipe and inputs in its
    /// row and its `__metadata__`, its exact header). An entry that fails the check, or whose
    /// blobs are missing or damaged, is dropped and the result recomputed (rewriting the
    /// damaged blobs); `AverageReport.cacheNotes` says why. On a miss the result is stored as a
    /// derived snapshot (its blobs durable before its rows are committed).
    ///
    /// When the inputs are directory snapshots, `target` must be nil (compute and cache only):
    /// use `materialize(_:output:useCache:)` to write the result.
    public func materialize(_ requestedPlan: QueryPlan, to target: OutputTarget?, useCache requested: Bool = true)
        throws(CKStoreError) -> AverageReport
    {
        try materialize(requestedPlan, output: target.map { .file($0) }, useCache: requested)
    }

    /// Computes a query's result and writes it to `output` (nil: compute and cache only), for
    /// single-file inputs as `materialize(_:to:useCache:)` describes and for directory snapshots
    /// as `materializeTree` does.
    /// - Throws: `.usage` when the output does not fit the result (a file or standard output for
    ///   a directory result, a directory for a single-file one); what computing throws.
    public func materialize(_ requestedPlan: QueryPlan, output: AverageOutput?, useCache requested: Bool = true)
        throws(CKStoreError) -> AverageReport
    {
        let start = nowMilliseconds()
        let lookUp = requested && !isReadOnly && configuration.cachePolicy != .never
        return try withLock(exclusive: false) { () throws(CKStoreError) -> AverageReport in
            var view = try consistentLayout(requestedPlan, lookUpCache: lookUp)
            let hadEntry = view.cachedFile != nil || view.cachedTree != nil
            let useCache = lookUp && cacheAdmits(view.plan, hadEntry: hadEntry)
            let claimed = useCache && !hadEntry
            let claimedPlan = view.plan
            defer { if claimed { releaseClaim(claimedPlan) } }
            if claimed && configuration.cachePolicy == .secondHit {
                // Another process may have stored the result between the lookup above and this
                // claim (a claimer releases only after its commit): look again, so the result is
                // served from the cache instead of being computed and stored a second time.
                let again = try consistentLayout(requestedPlan, lookUpCache: true)
                if again.cachedFile != nil || again.cachedTree != nil { view = again }
            }
            switch view.inputs {
            case .tree(let layout):
                return try materializeTree(view, layout: layout, output: output, useCache: useCache, start: start)
            case .file(let layout):
                let target: OutputTarget?
                switch output {
                case nil: target = nil
                case .file(let t): target = t
                case .automatic(let path, _): target = .file(path)
                case .directory, .treeFile:
                    throw CKStoreError(
                        .usage,
                        "the inputs of \(view.plan.recipe) are single safetensors files: write the result to a file, not a directory")
                }
                return try materializeFile(view, layout: layout, to: target, useCache: useCache, start: start)
            }
        }
    }

    /// Whether a result computed for `plan` is stored in the cache, by `cache_policy`: always
    /// with `always`, and with `second-hit` when a cached entry was found (`hadEntry`: served,
    /// or dropped and recomputed) or the request log says the recipe was asked for before (the
    /// request is noted there now; a true answer claims the recipe until `releaseClaim`). Only
    /// asked when the cache is looked up.
    func cacheAdmits(_ plan: QueryPlan, hadEntry: Bool) -> Bool {
        switch configuration.cachePolicy {
        case .always: return true
        case .never: return false
        case .secondHit:
            if hadEntry { return true }
            guard let requestLog else { return true }
            return requestLog.noteRequest(plan.cacheKey)
        }
    }

    /// Ends the request log's claim on `plan` taken by `cacheAdmits` (no-op unless `second-hit`).
    func releaseClaim(_ plan: QueryPlan) {
        if configuration.cachePolicy == .secondHit { requestLog?.release(plan.cacheKey) }
    }

    /// `materialize` for single-file inputs, under the caller's lock.
    private func materializeFile(_ view: PlanView, layout: AverageLayout, to target: OutputTarget?, useCache: Bool, start: Int64)
        throws(CKStoreError) -> AverageReport
    {
        var notes: [String] = []
        var repair = false
        let plan = view.plan
        func report(fromCache: Bool, digest: SHA256Digest?, bytes: Int) -> AverageReport {
            AverageReport(
                plan: plan, fromCache: fromCache, derivedDigest: digest, copiedTensors: layout.copiedTensors, bytesOut: bytes,
                seconds: Double(nowMilliseconds() - start) / 1000, cacheNotes: notes)
        }
        var rejection: CacheRejection?
        switch view.cachedFile {
        case .success(let entry):
            switch try serveCached(entry, label: "cached result", to: target) {
            case .success(let bytes): return report(fromCache: true, digest: entry.digest, bytes: bytes)
            case .failure(let r): rejection = r
            }
        case .failure(let r): rejection = r
        case nil: break
        }
        if let rejection {
            try dropCached(plan, digest: rejection.digest)
            repair = rejection.damaged
            notes.append(
                "dropped the cached result sha256:\(rejection.digest.hex.prefix(12))… for \(plan.recipe): \(rejection.reason); recomputing"
            )
        }
        let header = layout.outputHeader(plan: plan)
        let output = try target.map { (t) throws(CKStoreError) in try OutputWriter(t) }
        output?.progress = progressMeter(total: 8 + header.count + layout.manifests.last!.dataLength)
        try output?.write(SafetensorsHeader.lengthPrefix(header.count))
        try output?.write(header)
        let cache =
            useCache ? CacheTarget(blobs: blobs, makeChunkIndex: metadata.chunkIndexFactory(), rewritesExisting: repair) : nil
        var chunkLists: [[ChunkRef]] = Array(repeating: [], count: layout.tensors.count)
        let positional = output?.positional.map { ($0, output!.bytesWritten) }
        let work = AverageFileWork(
            layout: layout, tensorIndices: Array(layout.tensors.indices), labels: plan.inputs.map(\.label), output: positional)
        try computeAverages(plan: plan, files: [work], cache: cache) { (result) throws(CKStoreError) in
            if positional == nil { try output?.write(result.output.bytes) } else { output?.advance(by: result.output.count) }
            if let stored = result.stored { chunkLists[result.tensorIndex].append(stored) }
        }
        var digest: SHA256Digest?
        if cache != nil {
            let tensors = layout.tensors.enumerated().map { i, t in TensorEntry(info: t.info, chunks: chunkLists[i]) }
            let manifest = Manifest(headerBytes: header, dataLength: layout.manifests.last!.dataLength, tensors: tensors)
            try wrapping("store the derived snapshot for \(plan.recipe)") {
                try blobs.syncNamespace()
                // Rows of blobs written again (theirs were missing or damaged) follow the new files.
                let sizes = Dictionary(tensors.flatMap(\.chunks).map { ($0.hash, $0.storedSize) }, uniquingKeysWith: { a, _ in a })
                try metadata.updateStoredSizes(sizes.map { ($0.key, $0.value) })
                try metadata.commitDerived(
                    DerivedRecord(
                        key: plan.cacheKey, recipe: plan.recipe, inputs: plan.inputs.map(\.digest), run: plan.run, manifest: manifest))
            }
            digest = manifest.digest
        }
        try output?.commit()
        return report(fromCache: false, digest: digest, bytes: output?.bytesWritten ?? 0)
    }

    /// A plan with its inputs' manifests (and its cache entry) loaded from one consistent view.
    struct PlanView {
        let plan: QueryPlan
        let inputs: AverageInputs
        /// The checked cache entry of a single-file result (nil on a miss or when not looked up).
        var cachedFile: Result<CachedEntry, CacheRejection>?
        /// The checked cache entry of a directory result.
        var cachedTree: Result<CachedTree, CacheRejection>?
    }

    /// Loads the inputs of `plan` (and, with `lookUpCache`, its checked cache entry) in one read
    /// transaction. When an input's manifest no longer exists (its step was replaced or removed
    /// after the plan was made), the query is planned again inside the same transaction; a
    /// `.notFound` then means the inputs really are gone.
    func consistentLayout(_ plan: QueryPlan, lookUpCache: Bool) throws(CKStoreError) -> PlanView {
        try readView { () throws(CKStoreError) -> PlanView in
            var current = plan
            let inputs: AverageInputs
            do throws(CKStoreError) {
                inputs = try averageInputs(plan)
            } catch  where error.code == .notFound {
                current = try self.plan(plan.query, run: plan.run)
                inputs = try averageInputs(current)
            }
            var view = PlanView(plan: current, inputs: inputs)
            guard lookUpCache else { return view }
            switch inputs {
            case .file(let layout): view.cachedFile = try cachedEntry(for: current, layout: layout)
            case .tree(let layout): view.cachedTree = try cachedTreeEntry(for: current, layout: layout)
            }
            return view
        }
    }

    /// Runs the averaging pipeline over the given output tensors of one file, delivering
    /// computed segments in order. With `writingTo` (an output file and the offset of its data
    /// section), workers write each segment at its place themselves.
    func computeAverage(
        plan: QueryPlan, layout: AverageLayout, tensorIndices: [Int], cache: CacheTarget?,
        writingTo output: (PositionalOutput, Int)? = nil,
        deliver body: (AverageResult) throws(CKStoreError) -> Void
    ) throws(CKStoreError) {
        let work = AverageFileWork(layout: layout, tensorIndices: tensorIndices, labels: plan.inputs.map(\.label), output: output)
        try computeAverages(plan: plan, files: [work], cache: cache, deliver: body)
    }

    /// Runs the averaging pipeline over several files at once: one pool of workers
    /// (`effectiveWorkers`, at most `2 × workers` segments in flight whatever the number of
    /// files) computes the segments of every file, taken in turn from each file (one segment of
    /// the first, one of the second, …), so the files are averaged in parallel and memory stays
    /// bounded by the segments in flight. Segments are delivered in that order, so each file's
    /// segments arrive in its own data-section order.
    func computeAverages(
        plan: QueryPlan, files: [AverageFileWork], cache: CacheTarget?,
        deliver body: (AverageResult) throws(CKStoreError) -> Void
    ) throws(CKStoreError) {
        let chunkSize = configuration.chunkSize
        let maxInputChunk =
            files.flatMap { $0.layout.manifests.flatMap { $0.tensors.flatMap { $0.chunks.map(\.rawSize) } } }.max() ?? 0
        let bufferSize = max(chunkSize, maxInputChunk)
        let blobs = self.blobs
        let settings = configuration.derivedCodecSettings
        let verify = verifiesSHA256OnRead
        let workers = configuration.effectiveWorkers
        let combination = plan.combination
        let outputs = files.map(\.output)
        let pipeline = OrderedPipeline<AverageJob, AverageResult, AverageWorker>(
            workers: workers, capacity: workers * 2,
            makeState: { try AverageWorker(chunkSize: bufferSize, blobs: blobs, settings: settings, verify: verify, cache: cache) },
            process: { worker, job in
                try worker.compute(job, combination: combination)
                if let sink = outputs[job.file]?.0, let offset = job.outputOffset { try sink.write(job.output.bytes, at: offset) }
                guard let cache else {
                    return AverageResult(file: job.file, tensorIndex: job.tensorIndex, output: job.output, stored: nil, isNewBlob: false)
                }
                let (ref, isNew) = try worker.store(job, cache: cache)
                return AverageResult(file: job.file, tensorIndex: job.tensorIndex, output: job.output, stored: ref, isNewBlob: isNew)
            })
        defer { pipeline.shutdown() }
        var pool: [ByteBuffer] = []
        var failure: CKStoreError?
        let deliver: (AverageResult) throws -> Void = { result in
            do throws(CKStoreError) {
                try body(result)
            } catch {
                failure = error
                throw error
            }
            pool.append(result.output)
        }
        var cursors = files.map { _ in AverageFileCursor() }
        do {
            var active = Array(files.indices)
            while !active.isEmpty {
                var still: [Int] = []
                for f in active {
                    guard let segment = cursors[f].next(in: files[f], chunkSize: chunkSize) else { continue }
                    still.append(f)
                    let work = files[f]
                    let tensor = work.layout.tensors[segment.tensorIndex]
                    let inputs: [[ChunkPiece]] =
                        tensor.averaged
                        ? tensor.inputChunks.map { pieces(of: $0, start: segment.offset, length: segment.length) }
                        : [[ChunkPiece]](repeating: [], count: tensor.inputChunks.count - 1)
                            + [pieces(of: tensor.inputChunks[tensor.inputChunks.count - 1], start: segment.offset, length: segment.length)]
                    let buffer = pool.popLast() ?? ByteBuffer(capacity: bufferSize)
                    let job = AverageJob(
                        file: f, tensorIndex: segment.tensorIndex, tensor: tensor.info.name, dtype: tensor.info.dtype,
                        averaged: tensor.averaged, inputs: inputs, inputLabels: work.labels, length: segment.length, output: buffer,
                        outputOffset: work.output.map { $0.1 + tensor.info.dataStart + segment.offset })
                    try pipeline.submit(job, deliver: deliver)
                }
                active = still
            }
            try pipeline.drain(deliver)
        } catch {
            pipeline.cancel()
            throw failure ?? CKStoreError.wrap(error, context: plan.recipe)
        }
    }
}

/// One file's share of an averaging run.
struct AverageFileWork {
    /// The file's per-tensor work.
    let layout: AverageLayout
    /// The output tensors to compute, in order.
    let tensorIndices: [Int]
    /// Each input's label for messages (`RUN@STEP`, or `RUN@STEP: file 'PATH'` in a tree).
    let labels: [String]
    /// The output file and the offset of its data section, when workers write in place.
    let output: (PositionalOutput, Int)?
}

/// Where the next segment of a file's work starts.
struct AverageFileCursor {
    private var position = 0
    private var offset = 0

    /// The next output segment (a tensor and a byte range of at most one chunk), or nil when
    /// the file is done. Empty tensors have no segment.
    mutating func next(in work: AverageFileWork, chunkSize: Int) -> (tensorIndex: Int, offset: Int, length: Int)? {
        while position < work.tensorIndices.count {
            let index = work.tensorIndices[position]
            let info = work.layout.tensors[index].info
            guard offset < info.byteCount else {
                position += 1
                offset = 0
                continue
            }
            let granule = info.dtype.byteGranule
            let step = max(granule, chunkSize - chunkSize % granule)
            let length = min(step, info.byteCount - offset)
            defer { offset += length }
            return (index, offset, length)
        }
        return nil
    }
}

extension Store {
    /// The derived snapshot already cached for a plan, if any, and only if it passes the check
    /// against the query that `materialize` makes (recipe, inputs, header): an entry that
    /// `materialize` would drop is not reported as cached.
    public func cachedResult(for plan: QueryPlan) throws(CKStoreError) -> SHA256Digest? {
        guard try derivedSnapshot(key: plan.cacheKey) != nil else { return nil }
        do throws(CKStoreError) {
            let view = try consistentLayout(plan, lookUpCache: true)
            if case .success(let entry) = view.cachedFile { return entry.digest }
            if case .success(let entry) = view.cachedTree { return entry.digest }
            return nil
        } catch  where error.code == .badInput {
            return nil
        }
    }
}
