/// An averaging query: which snapshots to combine, and how.
///
/// - LAWA (Sanyal et al.): the uniform mean of the snapshots at STEP, STEP−ν, …, STEP−(k−1)ν.
/// - SWA: the uniform mean of every stored snapshot with start ≤ step ≤ STEP (or only those
///   with (STEP − step) divisible by ν).
/// - EMA: an exponential moving average over the same selection as SWA, oldest first:
///   e₀ = w₀, e ← D·e + (1−D)·w. It runs over *stored snapshots*, not over every optimizer step.
/// - mean: a (weighted) mean of arbitrary snapshots, e.g. across runs (a model soup).
public enum AverageQuery: Sendable, Equatable {
    case lawa(k: Int, stride: Int, at: Int)
    case swa(start: Int?, stride: Int?, at: Int)
    case ema(decay: Double, start: Int?, stride: Int?, at: Int)
    case mean(refs: [String], weights: [Double]?)

    /// True when the query's inputs are steps of one run (everything but `mean`).
    public var needsRun: Bool {
        if case .mean = self { return false }
        return true
    }

    /// A short name for metric variants and messages: `lawa-k6-s1000`, `swa`, `ema-d0.99`, `mean`.
    public var variantName: String {
        switch self {
        case .lawa(let k, let stride, _): return "lawa-k\(k)-s\(stride)"
        case .swa(let start, let stride, _):
            return "swa" + (start.map { "-from\($0)" } ?? "") + (stride.map { "-s\($0)" } ?? "")
        case .ema(let decay, let start, let stride, _):
            return "ema-d\(decay)" + (start.map { "-from\($0)" } ?? "") + (stride.map { "-s\($0)" } ?? "")
        case .mean: return "mean"
        }
    }

    // MARK: - Parsing

    /// Parses `k=K,stride=NU` style parameter lists into a dictionary, rejecting unknown or
    /// repeated keys.
    static func parameters(_ text: String, allowed: Set<String>, flag: String) throws(CKStoreError) -> [String: String] {
        var result: [String: String] = [:]
        guard !text.isEmpty else { return result }
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let eq = part.firstIndex(of: "="), eq != part.startIndex else {
                throw CKStoreError(.usage, "\(flag): '\(part)' must be KEY=VALUE (keys: \(allowed.sorted().joined(separator: ", ")))")
            }
            let key = String(part[..<eq])
            guard allowed.contains(key) else {
                throw CKStoreError(.usage, "\(flag): unknown key '\(key)' (keys: \(allowed.sorted().joined(separator: ", ")))")
            }
            guard result[key] == nil else { throw CKStoreError(.usage, "\(flag): '\(key)' given twice") }
            result[key] = String(part[part.index(after: eq)...])
        }
        return result
    }

    static func integer(_ params: [String: String], _ key: String, flag: String, minimum: Int) throws(CKStoreError) -> Int? {
        guard let text = params[key] else { return nil }
        guard let n = Int(text), n >= minimum else {
            throw CKStoreError(.usage, "\(flag): \(key) must be an integer ≥ \(minimum), got '\(text)'")
        }
        return n
    }

    /// The largest LAWA window `k` accepted: every input is a stored snapshot read in full, so
    /// a larger window is never a real query, and bounding it keeps the planning work (and
    /// memory) small whatever numbers are typed.
    public static let maximumLAWAWindow = 10_000

    /// Checks LAWA parameters: 1 ≤ k ≤ `maximumLAWAWindow`, stride ≥ 1, and the oldest input
    /// `at − (k−1)·stride` computed without overflow and not below step 0.
    /// - Throws: `.usage` naming the parameter and the value.
    public static func validateLAWA(k: Int, stride: Int, at: Int, flag: String = "--lawa") throws(CKStoreError) {
        guard k >= 1, k <= maximumLAWAWindow else {
            throw CKStoreError(.usage, "\(flag): k must be an integer from 1 to \(maximumLAWAWindow), got \(k)")
        }
        guard stride >= 1 else { throw CKStoreError(.usage, "\(flag): stride must be an integer ≥ 1, got \(stride)") }
        guard at >= 0 else { throw CKStoreError(.usage, "\(flag): the step must be ≥ 0, got \(at)") }
        let (span, overflow) = (k - 1).multipliedReportingOverflow(by: stride)
        guard !overflow, span <= at else {
            throw CKStoreError(
                .usage,
                "\(flag) k=\(k),stride=\(stride) at step \(at) reaches below step 0 (the oldest input would be \(at) − \(k - 1)×\(stride))")
        }
    }

    /// Builds a LAWA query from `k=K,stride=NU` and the target step.
    public static func parseLAWA(_ text: String, at: Int) throws(CKStoreError) -> AverageQuery {
        let p = try parameters(text, allowed: ["k", "stride"], flag: "--lawa")
        guard let k = try integer(p, "k", flag: "--lawa", minimum: 1) else { throw CKStoreError(.usage, "--lawa needs k=K") }
        guard let stride = try integer(p, "stride", flag: "--lawa", minimum: 1) else {
            throw CKStoreError(.usage, "--lawa needs stride=NU")
        }
        try validateLAWA(k: k, stride: stride, at: at)
        return .lawa(k: k, stride: stride, at: at)
    }

    /// Builds an SWA query from `[start=S][,stride=NU]` and the target step.
    public static func parseSWA(_ text: String, at: Int) throws(CKStoreError) -> AverageQuery {
        let p = try parameters(text, allowed: ["start", "stride"], flag: "--swa")
        let start = try integer(p, "start", flag: "--swa", minimum: 0)
        if let start, start > at { throw CKStoreError(.usage, "--swa start=\(start) is after --at \(at)") }
        return .swa(start: start, stride: try integer(p, "stride", flag: "--swa", minimum: 1), at: at)
    }

    /// Builds an EMA query from `decay=D[,start=S][,stride=NU]` and the target step.
    public static func parseEMA(_ text: String, at: Int) throws(CKStoreError) -> AverageQuery {
        let p = try parameters(text, allowed: ["decay", "start", "stride"], flag: "--ema")
        guard let decayText = p["decay"] else { throw CKStoreError(.usage, "--ema needs decay=D") }
        guard let parsed = Double(decayText), parsed >= 0, parsed < 1 else {
            throw CKStoreError(.usage, "--ema decay must be a number in [0, 1), got '\(decayText)'")
        }
        let decay = parsed + 0  // -0 → 0, so that the recipe and variant name say "0.0"
        let start = try integer(p, "start", flag: "--ema", minimum: 0)
        if let start, start > at { throw CKStoreError(.usage, "--ema start=\(start) is after --at \(at)") }
        return .ema(decay: decay, start: start, stride: try integer(p, "stride", flag: "--ema", minimum: 1), at: at)
    }

    /// Builds a mean query from `REF,REF,…` and optional `W,W,…` weights.
    public static func parseMean(_ text: String, weights: String?) throws(CKStoreError) -> AverageQuery {
        let refs = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !refs.isEmpty, !refs.contains(where: \.isEmpty) else {
            throw CKStoreError(.usage, "--mean needs a comma-separated list of refs")
        }
        guard let weights else { return .mean(refs: refs, weights: nil) }
        let values = weights.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) }
        guard values.count == refs.count else {
            throw CKStoreError(.usage, "--weights has \(values.count) values for \(refs.count) refs")
        }
        var result: [Double] = []
        for (i, v) in values.enumerated() {
            guard let v else { throw CKStoreError(.usage, "--weights: value \(i + 1) is not a number") }
            result.append(v)
        }
        try validateWeights(result, refCount: refs.count)
        return .mean(refs: refs, weights: result)
    }
}
