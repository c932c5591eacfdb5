/// A (k, ν) sweep of LAWA averages: which combinations exist at which steps, which of them can
/// be computed, and why the others cannot.
///
/// Every cell is the LAWA query `lawa k=K stride=NU at=S`, planned exactly as `get --lawa`
/// plans it (same recipe, same inputs, same cache key), so a result computed by a sweep is a
/// cache hit for the single query and vice versa.

/// One (k, ν) pair of a sweep.
public struct SweepCombination: Sendable, Hashable {
    /// The window length.
    public let k: Int
    /// The distance between the window's steps.
    public let stride: Int

    /// Creates a pair.
    public init(k: Int, stride: Int) {
        self.k = k
        self.stride = stride
    }

    /// The metric variant name `watch` and `get` use: `lawa-k{K}-s{NU}`.
    public var variantName: String { AverageQuery.lawa(k: k, stride: stride, at: 0).variantName }
}

/// One combination at one step.
public struct SweepCell: Sendable {
    /// The (k, ν) pair.
    public let combination: SweepCombination
    /// The output step (the newest input).
    public let at: Int
    /// The plan, when every input is stored; nil otherwise.
    public let plan: QueryPlan?
    /// Why the cell cannot be computed (missing or off-grid steps, a window below step 0);
    /// nil when `plan` is set.
    public let missingReason: String?
}

/// The cells of a sweep, by step (in the order given), then k, then ν (both ascending).
public struct SweepPlan: Sendable {
    /// The run.
    public let run: String
    /// Every (k, ν) pair at every step.
    public let cells: [SweepCell]

    /// The distinct input steps the computable cells at `at` read (ascending).
    public func inputSteps(at: Int) -> [Int] {
        Array(Set(cells.filter { $0.at == at }.compactMap(\.plan).flatMap { $0.inputs.compactMap(\.step) })).sorted()
    }
}

extension SweepPlan {
    /// The largest number of (k, ν) pairs a sweep accepts: every pair needs its own output
    /// buffer for each chunk in flight, so the count bounds the sweep's memory.
    public static let maximumCombinations = 256

    /// The largest number of steps one sweep accepts.
    public static let maximumSteps = 10_000

    /// Checks a sweep's numbers: every k from 1 to `AverageQuery.maximumLAWAWindow`, every
    /// stride ≥ 1, every step ≥ 0, no value given twice, at most `maximumCombinations` pairs.
    /// - Throws: `.usage` naming the offending value.
    public static func validate(ks: [Int], strides: [Int], steps: [Int]) throws(CKStoreError) {
        guard !ks.isEmpty else { throw CKStoreError(.usage, "--lawa needs at least one k") }
        guard !strides.isEmpty else { throw CKStoreError(.usage, "--stride needs at least one value") }
        guard !steps.isEmpty else { throw CKStoreError(.usage, "--at needs at least one step") }
        for k in ks where k < 1 || k > AverageQuery.maximumLAWAWindow {
            throw CKStoreError(.usage, "--lawa: k must be an integer from 1 to \(AverageQuery.maximumLAWAWindow), got \(k)")
        }
        for s in strides where s < 1 {
            throw CKStoreError(.usage, "--stride: every stride must be an integer ≥ 1, got \(s)")
        }
        for s in steps where s < 0 {
            throw CKStoreError(.usage, "--at: every step must be ≥ 0, got \(s)")
        }
        for (name, values) in [("--lawa k", ks), ("--stride", strides), ("--at", steps)] {
            var seen = Set<Int>()
            for v in values where !seen.insert(v).inserted {
                throw CKStoreError(.usage, "\(name): \(v) is given twice")
            }
        }
        guard ks.count * strides.count <= maximumCombinations else {
            throw CKStoreError(
                .usage, "a sweep has at most \(maximumCombinations) (k, stride) pairs, got \(ks.count)×\(strides.count)")
        }
        guard steps.count <= maximumSteps else {
            throw CKStoreError(.usage, "--at: at most \(maximumSteps) steps, got \(steps.count)")
        }
    }
}

extension Store {
    /// Plans a sweep over every (k, ν) pair at each step, in one consistent view of the run.
    ///
    /// A pair whose window lacks inputs is not an error: its cell says why (steps below 0, steps
    /// off the run's grid of stored steps, stored-grid steps that are missing).
    /// - Throws: `.usage` for bad numbers (see `SweepPlan.validate`) and for a step in `steps`
    ///   that is not a stored step of the run (naming the nearest stored steps); `.notFound`
    ///   for an unknown run; `.badInput` when an input is not a single safetensors file.
    public func planSweep(run: String?, ks: [Int], strides: [Int], at steps: [Int]) throws(CKStoreError) -> SweepPlan {
        try SweepPlan.validate(ks: ks, strides: strides, steps: steps)
        return try readView { () throws(CKStoreError) -> SweepPlan in
            let run = try runForQuery(run)
            let snapshots = try self.snapshots(run: run)
            let byStep = Dictionary(snapshots.map { ($0.step, $0) }, uniquingKeysWith: { a, _ in a })
            let stored = snapshots.map(\.step).sorted()
            let grid = StepGrid(stored)
            for s in steps where byStep[s] == nil {
                throw CKStoreError(.usage, "--at \(s): \(run)@\(s) is not a stored step (\(grid.describe(s, stored: stored)))")
            }
            var cells: [SweepCell] = []
            var checked = Set<SHA256Digest>()
            for at in steps {
                for k in ks.sorted() {
                    for stride in strides.sorted() {
                        let combination = SweepCombination(k: k, stride: stride)
                        if let reason = missingReason(k: k, stride: stride, at: at, byStep: byStep, grid: grid) {
                            cells.append(SweepCell(combination: combination, at: at, plan: nil, missingReason: reason))
                            continue
                        }
                        let plan = try self.plan(.lawa(k: k, stride: stride, at: at), run: run)
                        for input in plan.inputs where checked.insert(input.digest).inserted {
                            try requireSingleFile(input)
                        }
                        cells.append(SweepCell(combination: combination, at: at, plan: plan, missingReason: nil))
                    }
                }
            }
            return SweepPlan(run: run, cells: cells)
        }
    }

    /// Why the window k × ν ending at `at` cannot be computed, or nil when every input is stored.
    private func missingReason(k: Int, stride: Int, at: Int, byStep: [Int: SnapshotInfo], grid: StepGrid) -> String? {
        let (span, overflow) = (k - 1).multipliedReportingOverflow(by: stride)
        if overflow || span > at {
            return "the window reaches below step 0 (its oldest input would be \(at) − \(k - 1)×\(stride))"
        }
        var offGrid: [Int] = []
        var missing: [Int] = []
        for i in 0..<k {
            let step = at - i * stride
            guard byStep[step] == nil else { continue }
            if grid.contains(step) { missing.append(step) } else { offGrid.append(step) }
        }
        var parts: [String] = []
        func list(_ steps: [Int]) -> String {
            steps.sorted().prefix(6).map(String.init).joined(separator: ", ") + (steps.count > 6 ? ", …" : "")
        }
        if !offGrid.isEmpty {
            parts.append("step\(offGrid.count == 1 ? "" : "s") \(list(offGrid)) off the run's grid (\(grid.summary))")
        }
        if !missing.isEmpty {
            parts.append("step\(missing.count == 1 ? "" : "s") \(list(missing)) not stored")
        }
        return parts.isEmpty ? nil : "missing \(offGrid.count + missing.count) of \(k) inputs: " + parts.joined(separator: "; ")
    }

    /// Checks that an input is a single safetensors file, the only kind of snapshot a sweep
    /// averages.
    /// - Throws: `.badInput` naming the input when its digest names no single-file manifest.
    private func requireSingleFile(_ input: PlanInput) throws(CKStoreError) {
        let digest = input.digest
        let kind = try wrapping("look up \(input.label)") { try metadata.contentKind(digest) }
        guard kind == .safetensors else {
            throw CKStoreError(
                .badInput,
                "\(input.label) (sha256:\(digest.hex.prefix(12))…) is not a single safetensors file; sweep averages single-file snapshots only"
            )
        }
    }
}

/// The grid a run's snapshots lie on: the first stored step and the greatest common divisor
/// of the distances from it (a run saving every 500 steps from 0 has origin 0, spacing 500).
struct StepGrid {
    let origin: Int?
    let spacing: Int

    init(_ steps: [Int]) {
        origin = steps.min()
        var g = 0
        if let o = origin {
            for s in steps { g = StepGrid.gcd(g, s - o) }
        }
        spacing = g
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int {
        var (x, y) = (a, b)
        while y != 0 { (x, y) = (y, x % y) }
        return x
    }

    /// Whether `step` is a grid step (a step the run would have saved, stored or not).
    func contains(_ step: Int) -> Bool {
        guard let origin, step >= 0 else { return false }
        guard spacing > 0 else { return step == origin }
        let (d, overflow) = step.subtractingReportingOverflow(origin)
        return !overflow && d % spacing == 0
    }

    /// "snapshots every 500 steps from 0".
    var summary: String {
        guard let origin else { return "no snapshots" }
        return spacing > 0 ? "snapshots every \(spacing) steps from \(origin)" : "one snapshot, at \(origin)"
    }

    /// Why `step` is not stored, with the nearest stored steps.
    func describe(_ step: Int, stored: [Int]) -> String {
        guard !stored.isEmpty else { return "the run has no snapshots" }
        let below = stored.last { $0 < step }
        let above = stored.first { $0 > step }
        let nearest = [below, above].compactMap { $0 }.map(String.init).joined(separator: " and ")
        return (contains(step) ? "missing" : "off the run's grid, \(summary)") + "; nearest stored: \(nearest)"
    }
}
