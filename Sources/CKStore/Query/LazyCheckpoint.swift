/// A query result that is computed only when read: a Swift evaluator can list the tensors and
/// read one tensor's averaged values without materializing the rest.
///
/// ```swift
/// let store = try Store(path: ".ckstore")
/// let plan = try store.plan(.lawa(k: 6, stride: 1000, at: 70_000), run: "gpt2")
/// let lazy = try store.lazyCheckpoint(plan)
/// for t in lazy.tensors { print(t.name, t.shape) }
/// let wte = try lazy.values(of: "wte.weight")   // [Double], rounded to the tensor's dtype
/// ```
/// Nothing is cached in the store; values are exact to the same bit as `ckstore get`.
///
/// Locking: the checkpoint holds no lock between calls (holding one for its lifetime would
/// block every gc and rm for as long as an evaluator keeps the object). Its inputs are
/// resolved and their manifests loaded in one consistent view when it is created, and each
/// `bytes(of:)` / `values(of:)` call takes the shared store lock for the whole read, so a
/// concurrent gc or rm (which take the lock exclusively) waits for the read to finish and can
/// never delete an input blob in the middle of it. If an input was removed or replaced (and
/// its blobs collected) between two calls, the next read fails with `.notFound` naming the
/// input (open the checkpoint again), never with a misleading integrity error.
public final class LazyCheckpoint {
    /// The query behind this checkpoint.
    public let plan: QueryPlan
    private let store: Store
    private let layout: AverageLayout

    init(store: Store, plan: QueryPlan) throws(CKStoreError) {
        self.store = store
        let view = try store.withLock(exclusive: false) { () throws(CKStoreError) -> Store.PlanView in
            try store.consistentLayout(plan, lookUpCache: false)
        }
        self.plan = view.plan
        self.layout = view.layout
    }

    /// The output tensors (name, dtype, shape, offsets) in data-section order.
    public var tensors: [TensorInfo] { layout.tensors.map(\.info) }

    /// The output's `__metadata__`, including `ckstore.recipe` and `ckstore.inputs`.
    public var metadata: [(key: String, value: String)] {
        (try? SafetensorsHeader.parse(headerBytes: layout.outputHeader(plan: plan)))?.metadata ?? []
    }

    /// Names of the tensors copied from the newest input rather than averaged.
    public var copiedTensors: [String] { layout.copiedTensors }

    /// One tensor's result bytes (little-endian, in its dtype), computed now.
    /// - Throws: `.notFound` for an unknown name; `.integrity` for damaged inputs.
    public func bytes(of name: String) throws(CKStoreError) -> [UInt8] {
        guard let index = layout.tensors.firstIndex(where: { $0.info.name == name }) else {
            throw CKStoreError(.notFound, "no tensor '\(name)' in \(plan.recipe)")
        }
        return try store.withLock(exclusive: false) { () throws(CKStoreError) -> [UInt8] in
            var result: [UInt8] = []
            result.reserveCapacity(layout.tensors[index].info.byteCount)
            do throws(CKStoreError) {
                try store.computeAverage(plan: plan, layout: layout, tensorIndices: [index], cache: nil) {
                    (r) throws(CKStoreError) in
                    result.append(contentsOf: r.output.bytes)
                }
            } catch  where error.code == .integrity {
                // A missing blob is damage only while its snapshot still exists.
                if let gone = try removedInput() {
                    throw CKStoreError(
                        .notFound,
                        "\(gone.label) (sha256:\(gone.digest.hex.prefix(12))…), an input of \(plan.recipe), was removed or replaced "
                            + "after this checkpoint was opened; open it again",
                        cause: error)
                }
                throw error
            }
            return result
        }
    }

    /// The first input whose content the store no longer holds (no manifest row), if any.
    private func removedInput() throws(CKStoreError) -> PlanInput? {
        for input in plan.inputs {
            let digest = input.digest
            if try wrapping("look up \(input.label)", { try store.metadata.hasManifest(digest) }) == false { return input }
        }
        return nil
    }

    /// One float tensor's result values, decoded to Double (exactly: every value of the
    /// tensor's dtype is a Double).
    /// - Throws: `.badInput` for non-float tensors.
    public func values(of name: String) throws(CKStoreError) -> [Double] {
        guard let info = layout.tensors.first(where: { $0.info.name == name })?.info else {
            throw CKStoreError(.notFound, "no tensor '\(name)' in \(plan.recipe)")
        }
        let raw = try bytes(of: name)
        guard ChunkAccumulator.supports(info.dtype) else {
            throw CKStoreError(.badInput, "tensor '\(name)' is \(info.dtype.rawValue), not a float tensor")
        }
        do {
            let lanes = try ChunkAccumulator.laneCount(byteCount: raw.count, dtype: info.dtype)
            var values = [Double](repeating: 0, count: lanes)
            try raw.withUnsafeBytes { src in
                try values.withUnsafeMutableBufferPointer { try ChunkAccumulator.start(from: src, dtype: info.dtype, into: $0) }
            }
            return values
        } catch {
            throw CKStoreError(.badInput, "tensor '\(name)': \(error)", cause: error)
        }
    }
}

extension Store {
    /// A lazily computed view of a query's result.
    public func lazyCheckpoint(_ plan: QueryPlan) throws(CKStoreError) -> LazyCheckpoint {
        try LazyCheckpoint(store: self, plan: plan)
    }
}
