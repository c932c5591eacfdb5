/// The sweep engine: many LAWA averages at one step computed in one pass over their inputs.
///
/// For each output segment (the same segments, and so the same stored chunks, as a single
/// `get --lawa`), a worker reads and decodes every distinct input's chunk once, keeping them
/// decoded side by side, then computes each combination block by block (8192 lanes at a time,
/// so the accumulator and the input blocks stay in cache): `start` from its oldest input,
/// `add` the others in ascending step order, `finishMean(K)`, `encode`. Those are the same
/// kernels, in the same order, as `AverageWorker.compute`, and every lane is independent, so
/// each output is bit-identical to the same recipe computed alone. Integer and bool tensors are
/// copied from the newest input (the same step for every combination) once per segment.
///
/// Memory per worker: one decoded chunk per distinct input plus one output buffer per
/// combination for each segment in flight; it depends on the (k, ν) grid and the chunk size,
/// not on the model's size.

/// One output segment of every combination being computed.
struct SweepJob: Sendable {
    let tensorIndex: Int
    let tensor: String
    let dtype: DType
    let averaged: Bool
    /// Each distinct input's pieces for the segment (ascending steps; copied tensors: only the
    /// newest input's, the others empty).
    let inputs: [[ChunkPiece]]
    let inputLabels: [String]
    /// For each combination, the indices into `inputs` it averages, oldest first.
    let uses: [[Int]]
    let length: Int
    /// One buffer per combination.
    let outputs: [ByteBuffer]
    /// Where the worker writes each combination's segment itself, when its output allows it.
    let outputOffsets: [Int?]
}

/// The computed segment of every combination, and their stored chunks when caching.
struct SweepResult: Sendable {
    let tensorIndex: Int
    let outputs: [ByteBuffer]
    let stored: [ChunkRef?]
}

/// A sweep worker: the averaging worker's reader, scratch and chunk index, plus one decode
/// buffer per distinct input and one block accumulator.
final class SweepWorker {
    let base: AverageWorker
    var decoded: [ByteBuffer]
    let accumulator: UnsafeMutableBufferPointer<Double>
    let bufferSize: Int

    /// Lanes per block: 64 KiB of Float64 accumulator.
    static let blockLanes = 8192

    init(inputCount: Int, bufferSize: Int, base: AverageWorker) {
        self.base = base
        self.bufferSize = bufferSize
        decoded = (0..<inputCount).map { _ in ByteBuffer(capacity: bufferSize) }
        accumulator = .allocate(capacity: SweepWorker.blockLanes)
    }

    deinit { accumulator.deallocate() }

    /// Reads input `i`'s pieces of the segment into `decoded[i]`, contiguous (a single whole
    /// chunk is decoded in place; pieces are decoded into scratch and copied).
    private func load(_ job: SweepJob, input i: Int) throws(CKStoreError) {
        let pieces = job.inputs[i]
        let target = decoded[i]
        if pieces.count == 1, pieces[0].offset == 0, pieces[0].length == pieces[0].chunk.rawSize {
            try base.reader.fetch(pieces[0].chunk, tensor: job.tensor, label: job.inputLabels[i], into: target)
            return
        }
        var at = 0
        for piece in pieces {
            try base.reader.fetch(piece.chunk, tensor: job.tensor, label: job.inputLabels[i], into: base.scratch)
            (target.storage.baseAddress! + at).copyMemory(from: base.scratch.storage.baseAddress! + piece.offset, byteCount: piece.length)
            at += piece.length
        }
        target.count = at
    }

    /// Computes the segment of every combination into `job.outputs`.
    func compute(_ job: SweepJob) throws(CKStoreError) {
        for output in job.outputs { output.count = job.length }
        guard job.length > 0 else { return }
        if !job.averaged {
            let newest = job.inputs.count - 1
            try load(job, input: newest)
            for output in job.outputs {
                output.storage.baseAddress!.copyMemory(from: decoded[newest].storage.baseAddress!, byteCount: job.length)
            }
            return
        }
        for i in job.inputs.indices where !job.inputs[i].isEmpty { try load(job, input: i) }
        do {
            let lanes = try ChunkAccumulator.laneCount(byteCount: job.length, dtype: job.dtype)
            let width = job.length / max(lanes, 1)
            var first = 0
            while first < lanes {
                let count = min(SweepWorker.blockLanes, lanes - first)
                let acc = UnsafeMutableBufferPointer(rebasing: accumulator[0..<count])
                let from = first * width
                let to = from + count * width
                for (c, use) in job.uses.enumerated() {
                    for (n, i) in use.enumerated() {
                        let bytes = UnsafeRawBufferPointer(rebasing: decoded[i].storage[from..<to])
                        if n == 0 {
                            try ChunkAccumulator.start(from: bytes, dtype: job.dtype, into: acc)
                        } else {
                            try ChunkAccumulator.add(bytes, dtype: job.dtype, into: acc)
                        }
                    }
                    ChunkAccumulator.finishMean(acc, divisor: Double(use.count))
                    try ChunkAccumulator.encode(
                        UnsafeBufferPointer(acc), dtype: job.dtype,
                        into: UnsafeMutableRawBufferPointer(rebasing: job.outputs[c].storage[from..<to]))
                }
                first += count
            }
        } catch let e as CKStoreError {
            throw e
        } catch {
            throw CKStoreError(.badInput, "tensor '\(job.tensor)': cannot average \(job.dtype.rawValue) values: \(error)", cause: error)
        }
    }

    /// Stores combination `c`'s segment as a chunk (see `AverageWorker.store`).
    func store(_ job: SweepJob, combination c: Int, cache: CacheTarget) throws -> ChunkRef {
        let single = AverageJob(
            file: 0, tensorIndex: job.tensorIndex, tensor: job.tensor, dtype: job.dtype, averaged: job.averaged, inputs: [],
            inputLabels: [],
            length: job.length, output: job.outputs[c], outputOffset: nil)
        return try base.store(single, cache: cache).0
    }
}

extension Store {
    /// Materializes several LAWA plans that end at the same step of the same run in one pass
    /// over their inputs, each to its own target (nil: compute and cache only).
    ///
    /// Each plan is looked up in the derived-snapshot cache first and served from it when the
    /// entry passes the same checks `materialize` makes; a rejected entry is dropped and
    /// recomputed (the report's `cacheNotes` say why). The others are computed together (see
    /// the engine's description above) and, with `useCache`, stored as derived snapshots under
    /// the same keys `materialize` uses, as `cache_policy` says: each plan (one (k, ν, step)
    /// recipe) is one request, the same request as `get --lawa k=K,stride=NU --at S`, so under
    /// `second-hit` a plan is stored when it (or that `get`) was asked for before. A sweep that
    /// writes no output (every target nil) is a request to fill the cache: it stores every
    /// result under `always` and `second-hit`. Under `never` nothing is looked up or stored
    /// (`ckstore sweep` refuses to run without `--exec` then).
    /// Runs under the shared store lock, with every plan's inputs loaded in one read view.
    /// - Returns: one report per plan, in order.
    /// - Throws: `.usage` when the plans do not share their newest input; `.integrity` for
    ///   damaged inputs; `.badInput` for inputs that do not agree; the output's errors.
    public func materializeSweep(_ plans: [QueryPlan], to targets: [OutputTarget?], useCache requested: Bool = true)
        throws(CKStoreError) -> [AverageReport]
    {
        guard plans.count == targets.count else {
            throw CKStoreError(.usage, "a sweep needs one target per plan: \(plans.count) plans, \(targets.count) targets")
        }
        guard let newest = plans.first?.inputs.last else { return [] }
        for plan in plans {
            guard case .lawa = plan.query, plan.inputs.allSatisfy({ $0.step != nil }) else {
                throw CKStoreError(.usage, "a sweep computes LAWA plans only; \(plan.recipe) is not one")
            }
            guard plan.inputs.last?.step == newest.step, plan.run == plans[0].run else {
                throw CKStoreError(.usage, "a sweep's plans must all end at \(newest.label); \(plan.recipe) does not")
            }
        }
        let start = nowMilliseconds()
        let useCache = requested && !isReadOnly && configuration.cachePolicy != .never
        let cacheOnly = targets.allSatisfy { $0 == nil }
        return try withLock(exclusive: false) { () throws(CKStoreError) -> [AverageReport] in
            let views = try readView { () throws(CKStoreError) -> [SweepView] in
                var views: [SweepView] = []
                for plan in plans { views.append(try SweepView(consistentLayout(plan, lookUpCache: useCache))) }
                return views
            }
            var digests: [Int: SHA256Digest] = [:]
            for view in views {
                for input in view.plan.inputs {
                    guard let step = input.step else { continue }
                    if let seen = digests[step], seen != input.digest {
                        throw CKStoreError(.badInput, "\(input.label) changed while the sweep was planned; run the sweep again")
                    }
                    digests[step] = input.digest
                }
            }
            var reports = [AverageReport?](repeating: nil, count: plans.count)
            var notes = [[String]](repeating: [], count: plans.count)
            var pending: [Int] = []
            var repair = false
            for (i, view) in views.enumerated() {
                var rejection: CacheRejection?
                switch view.cached {
                case .success(let entry):
                    switch try serveCached(entry, label: "cached result", to: targets[i]) {
                    case .success(let bytes):
                        reports[i] = AverageReport(
                            plan: view.plan, fromCache: true, derivedDigest: entry.digest, copiedTensors: view.layout.copiedTensors,
                            bytesOut: bytes, seconds: Double(nowMilliseconds() - start) / 1000)
                        continue
                    case .failure(let r): rejection = r
                    }
                case .failure(let r): rejection = r
                case nil: break
                }
                if let rejection {
                    try dropCached(view.plan, digest: rejection.digest)
                    repair = repair || rejection.damaged
                    notes[i].append(
                        "dropped the cached result sha256:\(rejection.digest.hex.prefix(12))… for \(view.plan.recipe): \(rejection.reason); recomputing"
                    )
                }
                pending.append(i)
            }
            if !pending.isEmpty {
                // Each pending plan is one request (noted in the request log under second-hit).
                let caching = pending.map { i in
                    useCache && (cacheOnly || cacheAdmits(views[i].plan, hadEntry: views[i].cached != nil))
                }
                defer {
                    for (n, i) in pending.enumerated() where caching[n] && !cacheOnly && views[i].cached == nil {
                        releaseClaim(views[i].plan)
                    }
                }
                let computed = try computeSweep(
                    pending.map { views[$0] }, targets: pending.map { targets[$0] }, caching: caching, repair: repair)
                for (n, i) in pending.enumerated() {
                    reports[i] = AverageReport(
                        plan: views[i].plan, fromCache: false, derivedDigest: computed[n].digest,
                        copiedTensors: views[i].layout.copiedTensors, bytesOut: computed[n].bytes,
                        seconds: Double(nowMilliseconds() - start) / 1000, cacheNotes: notes[i])
                }
            }
            return reports.map { $0! }
        }
    }

    /// Computes `views` in one pass, storing those whose `caching` flag is set as derived
    /// snapshots; returns each one's derived digest (when cached) and bytes written.
    private func computeSweep(_ views: [SweepView], targets: [OutputTarget?], caching: [Bool], repair: Bool)
        throws(CKStoreError) -> [(digest: SHA256Digest?, bytes: Int)]
    {
        // The distinct inputs, ascending, and which of them each combination uses.
        let steps = Array(Set(views.flatMap { $0.plan.inputs.compactMap(\.step) })).sorted()
        let position = Dictionary(uniqueKeysWithValues: steps.enumerated().map { ($1, $0) })
        let layout0 = views[0].layout
        var stepChunks = [[[ChunkRef]]](repeating: [], count: steps.count)
        var labels = [String](repeating: "", count: steps.count)
        var uses: [[Int]] = []
        for view in views {
            guard view.layout.tensors.map(\.info) == layout0.tensors.map(\.info) else {
                throw CKStoreError(.badInput, "\(view.plan.recipe): its output tensors differ from \(views[0].plan.recipe)'s")
            }
            var use: [Int] = []
            for (j, input) in view.plan.inputs.enumerated() {
                let u = position[input.step!]!
                use.append(u)
                labels[u] = input.label
                if stepChunks[u].isEmpty { stepChunks[u] = view.layout.tensors.map { $0.inputChunks[j] } }
            }
            uses.append(use)
        }
        let headers = views.map { $0.layout.outputHeader(plan: $0.plan) }
        var outputs: [OutputWriter?] = []
        for (c, target) in targets.enumerated() {
            let output = try target.map { (t) throws(CKStoreError) in try OutputWriter(t) }
            try output?.write(SafetensorsHeader.lengthPrefix(headers[c].count))
            try output?.write(headers[c])
            outputs.append(output)
        }
        let positional: [(PositionalOutput, Int)?] = outputs.map { o in o?.positional.map { ($0, o!.bytesWritten) } }
        let cache =
            caching.contains(true) ? CacheTarget(blobs: blobs, makeChunkIndex: metadata.chunkIndexFactory(), rewritesExisting: repair) : nil
        var chunkLists = [[[ChunkRef]]](repeating: Array(repeating: [], count: layout0.tensors.count), count: views.count)

        let chunkSize = configuration.chunkSize
        let maxInputChunk = stepChunks.flatMap { $0.flatMap { $0.map(\.rawSize) } }.max() ?? 0
        let bufferSize = max(chunkSize, maxInputChunk)
        let blobs = self.blobs
        let settings = configuration.derivedCodecSettings
        let verify = verifiesSHA256OnRead
        let workers = configuration.effectiveWorkers
        let inputCount = steps.count
        let pipeline = OrderedPipeline<SweepJob, SweepResult, SweepWorker>(
            workers: workers, capacity: workers,
            makeState: {
                SweepWorker(
                    inputCount: inputCount, bufferSize: bufferSize,
                    base: try AverageWorker(chunkSize: bufferSize, blobs: blobs, settings: settings, verify: verify, cache: cache))
            },
            process: { worker, job in
                try worker.compute(job)
                for (c, out) in positional.enumerated() {
                    if let (sink, _) = out, let offset = job.outputOffsets[c] { try sink.write(job.outputs[c].bytes, at: offset) }
                }
                guard let cache else { return SweepResult(tensorIndex: job.tensorIndex, outputs: job.outputs, stored: []) }
                var stored: [ChunkRef?] = []
                var copied: ChunkRef?
                for c in job.outputs.indices {
                    if !caching[c] {
                        stored.append(nil)
                    } else if !job.averaged, let copied {
                        // A copied segment is the same bytes for every combination: stored once.
                        stored.append(copied)
                    } else {
                        let ref = try worker.store(job, combination: c, cache: cache)
                        if !job.averaged { copied = ref }
                        stored.append(ref)
                    }
                }
                return SweepResult(tensorIndex: job.tensorIndex, outputs: job.outputs, stored: stored)
            })
        defer { pipeline.shutdown() }
        var pool: [[ByteBuffer]] = []
        var failure: CKStoreError?
        let deliver: (SweepResult) throws -> Void = { result in
            do throws(CKStoreError) {
                for (c, output) in outputs.enumerated() {
                    if positional[c] == nil {
                        try output?.write(result.outputs[c].bytes)
                    } else {
                        output?.advance(by: result.outputs[c].count)
                    }
                    if c < result.stored.count, let ref = result.stored[c] { chunkLists[c][result.tensorIndex].append(ref) }
                }
            } catch {
                failure = error
                throw error
            }
            pool.append(result.outputs)
        }
        do {
            for (index, tensor) in layout0.tensors.enumerated() {
                let granule = tensor.info.dtype.byteGranule
                let step = max(granule, chunkSize - chunkSize % granule)
                var offset = 0
                while offset < tensor.info.byteCount {
                    let length = min(step, tensor.info.byteCount - offset)
                    let inputs: [[ChunkPiece]] = stepChunks.enumerated().map { u, chunks in
                        tensor.averaged || u == steps.count - 1 ? pieces(of: chunks[index], start: offset, length: length) : []
                    }
                    let buffers = pool.popLast() ?? views.map { _ in ByteBuffer(capacity: bufferSize) }
                    let job = SweepJob(
                        tensorIndex: index, tensor: tensor.info.name, dtype: tensor.info.dtype, averaged: tensor.averaged,
                        inputs: inputs, inputLabels: labels, uses: uses, length: length, outputs: buffers,
                        outputOffsets: positional.map { $0.map { $0.1 + tensor.info.dataStart + offset } })
                    try pipeline.submit(job, deliver: deliver)
                    offset += length
                }
            }
            try pipeline.drain(deliver)
        } catch {
            pipeline.cancel()
            throw failure ?? CKStoreError.wrap(error, context: "sweep at \(views[0].plan.inputs.last!.label)")
        }
        var digests = [SHA256Digest?](repeating: nil, count: views.count)
        if cache != nil {
            var records: [DerivedRecord] = []
            for (c, view) in views.enumerated() where caching[c] {
                let tensors = view.layout.tensors.enumerated().map { i, t in TensorEntry(info: t.info, chunks: chunkLists[c][i]) }
                let manifest = Manifest(headerBytes: headers[c], dataLength: view.layout.manifests.last!.dataLength, tensors: tensors)
                records.append(
                    DerivedRecord(
                        key: view.plan.cacheKey, recipe: view.plan.recipe, inputs: view.plan.inputs.map(\.digest), run: view.plan.run,
                        manifest: manifest))
                digests[c] = manifest.digest
            }
            try wrapping("store the derived snapshots of the sweep at \(views[0].plan.inputs.last!.label)") {
                try blobs.syncNamespace()
                let refs = records.flatMap { record -> [ChunkRef] in
                    guard case .file(let manifest) = record.content else { return [] }
                    return manifest.tensors.flatMap(\.chunks)
                }
                let sizes = Dictionary(refs.map { ($0.hash, $0.storedSize) }, uniquingKeysWith: { a, _ in a })
                try metadata.updateStoredSizes(sizes.map { ($0.key, $0.value) })
                for record in records { try metadata.commitDerived(record) }
            }
        }
        var result: [(digest: SHA256Digest?, bytes: Int)] = []
        for (c, output) in outputs.enumerated() {
            try output?.commit()
            result.append((digests[c], output?.bytesWritten ?? 0))
        }
        return result
    }
}

/// One sweep combination's inputs: a LAWA plan over single-file snapshots, its averaging layout
/// and its checked cache entry.
struct SweepView {
    let plan: QueryPlan
    let layout: AverageLayout
    let cached: Result<Store.CachedEntry, Store.CacheRejection>?

    /// The single-file view of `view`.
    /// - Throws: `.badInput` when the plan's inputs are directory snapshots (a step replaced by
    ///   a tree after the sweep was planned): a sweep averages single-file snapshots only.
    init(_ view: Store.PlanView) throws(CKStoreError) {
        guard case .file(let layout) = view.inputs else {
            throw CKStoreError(
                .badInput, "\(view.plan.recipe): its inputs are directory snapshots; sweep averages single-file snapshots only")
        }
        self.plan = view.plan
        self.layout = layout
        self.cached = view.cachedFile
    }
}
