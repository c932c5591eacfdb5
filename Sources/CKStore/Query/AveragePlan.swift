/// The per-tensor work of an average, checked against every input: for each tensor of the
/// newest input, whether it is averaged or copied, and each input's chunks for it.
struct AverageLayout {
    /// One output tensor.
    struct Tensor {
        /// The newest input's entry (name, dtype, shape, offsets): the output keeps them.
        let info: TensorInfo
        /// Averaged (float types) or copied from the newest input (integers, bool).
        let averaged: Bool
        /// Each input's chunks for this tensor, oldest input first.
        let inputChunks: [[ChunkRef]]
    }

    /// The inputs' manifests, oldest first.
    let manifests: [Manifest]
    /// The output tensors in the newest input's data-section order.
    let tensors: [Tensor]
    /// The newest input's parsed header (the output's header is derived from it).
    let newestHeader: SafetensorsHeader

    /// Names of the tensors copied rather than averaged.
    var copiedTensors: [String] { tensors.filter { !$0.averaged }.map(\.info.name) }

    /// Loads the inputs' manifests and checks that they agree on tensor names, dtypes and
    /// shapes.
    /// - Throws: `.badInput` naming the first differing tensor and the two inputs; also for a
    ///   float tensor whose dtype cannot be averaged (packed F4/F6).
    init(plan: QueryPlan, store: Store) throws(CKStoreError) {
        var manifests: [Manifest] = []
        for input in plan.inputs {
            // Until averaging matches trees file by file, a tree input is refused outright.
            if try store.contentKind(of: ResolvedRef(digest: input.digest, snapshot: nil)) == .tree {
                throw CKStoreError(.badInput, "averaging directory snapshots: not yet supported (\(input.label) is a directory snapshot)")
            }
            manifests.append(try store.manifest(of: ResolvedRef(digest: input.digest, snapshot: nil)))
        }
        let newest = manifests[manifests.count - 1]
        let newestLabel = plan.inputs[plan.inputs.count - 1].label
        do {
            newestHeader = try SafetensorsHeader.parse(headerBytes: newest.headerBytes)
        } catch {
            throw CKStoreError(.integrity, "\(newestLabel): the stored header no longer parses: \(error)", cause: error)
        }
        var byName: [[String: TensorEntry]] = []
        for (i, m) in manifests.enumerated() {
            byName.append(Dictionary(m.tensors.map { ($0.info.name, $0) }, uniquingKeysWith: { a, _ in a }))
            for t in m.tensors where !newest.tensors.contains(where: { $0.info.name == t.info.name }) {
                throw CKStoreError(
                    .badInput, "tensor '\(t.info.name)' is in \(plan.inputs[i].label) but not in \(newestLabel): the inputs differ")
            }
        }
        var tensors: [Tensor] = []
        for entry in newest.tensors {
            let info = entry.info
            var chunks: [[ChunkRef]] = []
            for (i, table) in byName.enumerated() {
                guard let other = table[info.name] else {
                    throw CKStoreError(
                        .badInput, "tensor '\(info.name)' is in \(newestLabel) but not in \(plan.inputs[i].label): the inputs differ")
                }
                guard other.info.dtype == info.dtype, other.info.shape == info.shape else {
                    throw CKStoreError(
                        .badInput,
                        "tensor '\(info.name)' differs: \(other.info.dtype.rawValue) \(other.info.shape) in \(plan.inputs[i].label), "
                            + "\(info.dtype.rawValue) \(info.shape) in \(newestLabel)")
                }
                chunks.append(other.chunks)
            }
            let averaged = info.dtype.isFloatingPoint
            if averaged && !ChunkAccumulator.supports(info.dtype) {
                throw CKStoreError(
                    .badInput,
                    "tensor '\(info.name)' has dtype \(info.dtype.rawValue), which ckstore cannot average (packed sub-byte floats)")
            }
            tensors.append(Tensor(info: info, averaged: averaged, inputChunks: chunks))
        }
        self.manifests = manifests
        self.tensors = tensors
    }

    /// The output's header bytes: the newest input's header with `ckstore.recipe` and
    /// `ckstore.inputs` set in `__metadata__` (other entries, key order and offsets kept).
    func outputHeader(plan: QueryPlan) -> [UInt8] {
        var metadata = (newestHeader.metadata ?? []).filter { $0.key != "ckstore.recipe" && $0.key != "ckstore.inputs" }
        metadata.append((key: "ckstore.recipe", value: plan.recipe))
        metadata.append((key: "ckstore.inputs", value: plan.inputsMetadata))
        return newestHeader.replacingMetadata(metadata)
    }
}

/// A byte range of one stored chunk.
struct ChunkPiece: Sendable {
    let chunk: ChunkRef
    /// Offset of the range within the chunk's raw bytes.
    let offset: Int
    let length: Int
}

/// The pieces of `chunks` (a tensor's chunk list) that cover bytes [start, start + length) of
/// the tensor. When the chunking matches the output's (the normal case) this is one whole
/// chunk.
func pieces(of chunks: [ChunkRef], start: Int, length: Int) -> [ChunkPiece] {
    var result: [ChunkPiece] = []
    var chunkStart = 0
    let end = start + length
    for chunk in chunks {
        let chunkEnd = chunkStart + chunk.rawSize
        if chunkEnd > start && chunkStart < end {
            let from = max(start, chunkStart)
            let to = min(end, chunkEnd)
            result.append(ChunkPiece(chunk: chunk, offset: from - chunkStart, length: to - from))
        }
        if chunkEnd >= end { break }
        chunkStart = chunkEnd
    }
    return result
}
