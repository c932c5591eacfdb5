/// How a plan combines its inputs.
public enum Combination: Sendable, Equatable {
    /// acc = x₀; acc += xᵢ …; acc / K.
    case uniform
    /// acc = w₀·x₀; acc += wᵢ·xᵢ … with weights already normalized to sum to 1.
    case weighted([Double])
    /// e = x₀; e = D·e + (1−D)·xᵢ ….
    case ema(decay: Double)
}

/// One input of a plan.
public struct PlanInput: Sendable, Equatable {
    /// RUN@STEP, or the ref the user gave for `mean`.
    public let label: String
    /// The step, when the input is a step of a run.
    public let step: Int?
    /// The content digest.
    public let digest: SHA256Digest
}

/// A resolved query: the exact inputs (oldest first; the last is the "newest" whose layout
/// and metadata the output takes), how to combine them, and the canonical recipe that,
/// with the input digests, keys the derived snapshot.
public struct QueryPlan: Sendable {
    /// The query as the user gave it.
    public let query: AverageQuery
    /// The run, for run-scoped queries.
    public let run: String?
    /// The inputs, oldest first.
    public let inputs: [PlanInput]
    /// How the inputs are combined.
    public let combination: Combination
    /// The canonical recipe text, e.g. `lawa run=r1 k=6 stride=1000 at=70000`.
    public let recipe: String

    /// The derived-snapshot key: SHA-256 of the recipe, a newline, and the input digests
    /// (`sha256:<hex>`, oldest first, one per line).
    public var cacheKey: SHA256Digest {
        SHA256Digest.hash(Array((recipe + "\n" + inputs.map { "sha256:\($0.digest.hex)" }.joined(separator: "\n")).utf8))
    }

    /// The input digests as the `ckstore.inputs` metadata value: comma-separated, oldest first.
    public var inputsMetadata: String { inputs.map { "sha256:\($0.digest.hex)" }.joined(separator: ",") }
}

extension Store {
    /// Resolves a query against the store.
    ///
    /// - Parameter run: the run for run-scoped queries; may be nil when the store holds exactly
    ///   one run.
    /// - Throws: `.usage` when the run is needed but ambiguous; `.notFound` when inputs are
    ///   missing (listing them and the nearest stored steps) or the selection is empty.
    public func plan(_ query: AverageQuery, run: String?) throws(CKStoreError) -> QueryPlan {
        try query.validate()
        // One read transaction: the runs, snapshots and digests come from one consistent view
        // (a concurrent `put --force` cannot give a mix of before and after).
        return try readView { () throws(CKStoreError) -> QueryPlan in try planInView(query, run: run) }
    }

    private func planInView(_ query: AverageQuery, run: String?) throws(CKStoreError) -> QueryPlan {
        switch query {
        case .mean(let refs, let weights):
            var inputs: [PlanInput] = []
            for text in refs {
                let resolved = try resolve(try SnapshotRef.parse(text))
                inputs.append(PlanInput(label: resolved.snapshot?.ref ?? text, step: resolved.snapshot?.step, digest: resolved.digest))
            }
            let combination: Combination
            var recipe = "mean inputs=" + refs.joined(separator: ",")
            if let weights {
                let total = weights.reduce(0, +)
                let normalized = weights.map { $0 / total }
                combination = .weighted(normalized)
                recipe += " weights=" + normalized.map { "\($0)" }.joined(separator: ",")
            } else {
                combination = .uniform
            }
            return QueryPlan(query: query, run: nil, inputs: inputs, combination: combination, recipe: recipe)
        case .lawa(let k, let stride, let at):
            try AverageQuery.validateLAWA(k: k, stride: stride, at: at)
            let run = try runForQuery(run)
            let snapshots = try snapshots(run: run)
            let byStep = Dictionary(snapshots.map { ($0.step, $0) }, uniquingKeysWith: { a, _ in a })
            let wanted = (0..<k).map { at - (k - 1 - $0) * stride }
            try refuseIncomplete(wanted.filter { byStep[$0] == nil }, run: run, query: "lawa k=\(k),stride=\(stride) at \(run)@\(at)")
            guard k <= snapshots.count else {
                throw CKStoreError(
                    .notFound,
                    "lawa k=\(k),stride=\(stride) at \(run)@\(at): needs \(k) inputs but the run has \(snapshots.count) snapshots")
            }
            let missing = wanted.filter { byStep[$0] == nil }
            if !missing.isEmpty {
                let stored = snapshots.map(\.step)
                let hints = missing.prefix(6).map { step -> String in
                    let nearest = stored.min { abs($0 - step) < abs($1 - step) }
                    return nearest.map { "\(step) (nearest stored: \($0))" } ?? "\(step)"
                }
                throw CKStoreError(
                    .notFound,
                    "lawa k=\(k),stride=\(stride) at \(run)@\(at): missing \(missing.count) of \(k) inputs: "
                        + hints.joined(separator: ", ") + (missing.count > 6 ? ", …" : ""))
            }
            let inputs = wanted.map { PlanInput(label: "\(run)@\($0)", step: $0, digest: byStep[$0]!.digest) }
            return QueryPlan(
                query: query, run: run, inputs: inputs, combination: .uniform, recipe: "lawa run=\(run) k=\(k) stride=\(stride) at=\(at)")
        case .swa(let start, let stride, let at), .ema(_, let start, let stride, let at):
            let run = try runForQuery(run)
            let selected = try snapshots(run: run).filter { s in
                s.step <= at && s.step >= (start ?? 0) && (stride.map { (at - s.step) % $0 == 0 } ?? true)
            }
            let name: String
            let combination: Combination
            if case .ema(let decay, _, _, _) = query {
                name = "ema decay=\(decay)"
                combination = .ema(decay: decay)
            } else {
                name = "swa"
                combination = .uniform
            }
            guard !selected.isEmpty else {
                throw CKStoreError(
                    .notFound,
                    "\(name.split(separator: " ")[0]) at \(run)@\(at): no stored snapshot matches (start=\(start ?? 0)"
                        + (stride.map { ", stride=\($0)" } ?? "") + ")")
            }
            let recipe = "\(name) run=\(run) start=\(start ?? 0)" + (stride.map { " stride=\($0)" } ?? "") + " at=\(at)"
            let inputs = selected.map { PlanInput(label: $0.ref, step: $0.step, digest: $0.digest) }
            return QueryPlan(query: query, run: run, inputs: inputs, combination: combination, recipe: recipe)
        }
    }

    /// The run a run-scoped query uses: the given one (which must exist), or the only run.
    public func runForQuery(_ run: String?) throws(CKStoreError) -> String {
        let runs = try runs()
        if let run {
            guard runs.contains(where: { $0.name == run }) else { throw CKStoreError(.notFound, "run '\(run)' does not exist") }
            return run
        }
        guard runs.count == 1 else {
            if runs.isEmpty { throw CKStoreError(.notFound, "the store has no runs") }
            throw CKStoreError(
                .usage, "--run is required: the store holds \(runs.count) runs (\(runs.prefix(10).map(\.name).joined(separator: ", ")))")
        }
        return runs[0].name
    }
}
