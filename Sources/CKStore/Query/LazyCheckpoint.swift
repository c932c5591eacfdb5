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
///
/// Directory snapshots: when the inputs are trees, the result is a tree with the newest
/// input's layout. `files` lists its paths, `tensors(file:)` and `metadata(file:)` describe one
/// safetensors file, and `bytes(of:file:)` / `values(of:file:)` compute one tensor of one file
/// (the file may be left out when the tensor name occurs in exactly one file).
public final class LazyCheckpoint {
    /// The query behind this checkpoint.
    public let plan: QueryPlan
    private let store: Store
    private let inputs: AverageInputs

    init(store: Store, plan: QueryPlan) throws(CKStoreError) {
        self.store = store
        let view = try store.withLock(exclusive: false) { () throws(CKStoreError) -> Store.PlanView in
            try store.consistentLayout(plan, lookUpCache: false)
        }
        self.plan = view.plan
        self.inputs = view.inputs
    }

    /// True when the inputs (and so the result) are directory snapshots.
    public var isTree: Bool {
        if case .tree = inputs { return true }
        return false
    }

    /// The paths of the result's files in order, for a directory result; [] for a single file.
    public var files: [String] {
        guard case .tree(let layout) = inputs else { return [] }
        return layout.files.map(\.entry.path)
    }

    /// The output tensors (name, dtype, shape, offsets) in data-section order; for a directory
    /// result, those of every safetensors file in path order (see `tensors(file:)`).
    public var tensors: [TensorInfo] {
        switch inputs {
        case .file(let layout): layout.tensors.map(\.info)
        case .tree(let layout): layout.averagedFiles.flatMap { $0.layout!.tensors.map(\.info) }
        }
    }

    /// The output tensors of one safetensors file of a directory result.
    /// - Throws: `.notFound` for a path the result has no safetensors file at; `.usage` for a
    ///   single-file result.
    public func tensors(file: String) throws(CKStoreError) -> [TensorInfo] {
        try layout(file: file).tensors.map(\.info)
    }

    /// The output's `__metadata__`, including `ckstore.recipe` and `ckstore.inputs` (for a
    /// directory result, the first safetensors file's; every file carries the same two keys).
    public var metadata: [(key: String, value: String)] {
        switch inputs {
        case .file(let layout): return Self.metadata(layout, plan: plan)
        case .tree(let layout): return layout.averagedFiles.first.map { Self.metadata($0.layout!, plan: plan) } ?? []
        }
    }

    /// The `__metadata__` of one safetensors file of a directory result.
    public func metadata(file: String) throws(CKStoreError) -> [(key: String, value: String)] {
        Self.metadata(try layout(file: file), plan: plan)
    }

    private static func metadata(_ layout: AverageLayout, plan: QueryPlan) -> [(key: String, value: String)] {
        (try? SafetensorsHeader.parse(headerBytes: layout.outputHeader(plan: plan)))?.metadata ?? []
    }

    /// Names of the tensors copied from the newest input rather than averaged (`PATH: NAME`
    /// for a directory result).
    public var copiedTensors: [String] { inputs.copiedTensors }

    /// The side files (non-safetensors files) of a directory result, copied from the newest input.
    public var copiedFiles: [String] { inputs.copiedFiles }

    /// The layout of one safetensors file of a directory result.
    private func layout(file: String) throws(CKStoreError) -> AverageLayout {
        guard case .tree(let tree) = inputs else {
            throw CKStoreError(.usage, "the result of \(plan.recipe) is one safetensors file, not a directory: it has no file '\(file)'")
        }
        guard let layout = tree.files.first(where: { $0.entry.path == file })?.layout else {
            throw CKStoreError(.notFound, "the result of \(plan.recipe) has no safetensors file '\(file)'")
        }
        return layout
    }

    /// The file layout, its input labels and the tensor index of a tensor name.
    private func locate(_ name: String, file: String?) throws(CKStoreError) -> (AverageLayout, [String], Int) {
        let candidates: [(AverageLayout, [String])]
        switch inputs {
        case .file(let layout):
            if let file {
                throw CKStoreError(
                    .usage, "the result of \(plan.recipe) is one safetensors file, not a directory: it has no file '\(file)'")
            }
            candidates = [(layout, plan.inputs.map(\.label))]
        case .tree(let tree):
            let files = tree.averagedFiles.filter { file == nil || $0.entry.path == file }
            if let file, files.isEmpty {
                throw CKStoreError(.notFound, "the result of \(plan.recipe) has no safetensors file '\(file)'")
            }
            candidates = files.map { ($0.layout!, $0.labels) }
        }
        var found: [(AverageLayout, [String], Int)] = []
        for (layout, labels) in candidates {
            if let index = layout.tensors.firstIndex(where: { $0.info.name == name }) { found.append((layout, labels, index)) }
        }
        guard let first = found.first else {
            throw CKStoreError(.notFound, "no tensor '\(name)' in \(plan.recipe)" + (file.map { " file '\($0)'" } ?? ""))
        }
        guard found.count == 1 else {
            throw CKStoreError(
                .usage, "tensor '\(name)' is in \(found.count) files of the result of \(plan.recipe): name the file (bytes(of:file:))")
        }
        return first
    }

    /// One tensor's result bytes (little-endian, in its dtype), computed now. `file` names the
    /// safetensors file of a directory result (needed when the name occurs in several files).
    /// - Throws: `.notFound` for an unknown name or file; `.usage` for an ambiguous name;
    ///   `.integrity` for damaged inputs.
    public func bytes(of name: String, file: String? = nil) throws(CKStoreError) -> [UInt8] {
        let (layout, labels, index) = try locate(name, file: file)
        return try store.withLock(exclusive: false) { () throws(CKStoreError) -> [UInt8] in
            var result: [UInt8] = []
            result.reserveCapacity(layout.tensors[index].info.byteCount)
            do throws(CKStoreError) {
                let work = AverageFileWork(layout: layout, tensorIndices: [index], labels: labels, output: nil)
                try store.computeAverages(plan: plan, files: [work], cache: nil) { (r) throws(CKStoreError) in
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
    /// tensor's dtype is a Double). `file` as for `bytes(of:file:)`.
    /// - Throws: `.badInput` for non-float tensors.
    public func values(of name: String, file: String? = nil) throws(CKStoreError) -> [Double] {
        let (layout, _, index) = try locate(name, file: file)
        let info = layout.tensors[index].info
        let raw = try bytes(of: name, file: file)
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
