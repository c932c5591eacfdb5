/// The numeric checks every query passes before it is planned, whether it came from the
/// command line (`AverageQuery.parse…`) or was built directly by a library caller.
extension AverageQuery {
    /// Checks the query's numbers: `--mean` weights (see `validateWeights`), an EMA decay in
    /// [0, 1), LAWA k ≥ 1 and stride ≥ 1 with a window that stays at or above step 0, and
    /// non-negative steps.
    /// - Throws: `.badInput` naming the offending value.
    public func validate() throws(CKStoreError) {
        switch self {
        case .mean(let refs, let weights):
            guard !refs.isEmpty else { throw CKStoreError(.badInput, "--mean needs at least one ref") }
            if let weights { try Self.validateWeights(weights, refCount: refs.count) }
        case .lawa(let k, let stride, let at):
            guard k >= 1, stride >= 1, at >= 0 else {
                throw CKStoreError(.badInput, "--lawa k=\(k),stride=\(stride) at \(at): k and stride must be ≥ 1 and the step ≥ 0")
            }
            let (span, overflow) = (k - 1).multipliedReportingOverflow(by: stride)
            guard !overflow, span <= at else {
                throw CKStoreError(.badInput, "--lawa k=\(k),stride=\(stride) at step \(at) reaches below step 0")
            }
        case .swa(let start, let stride, let at):
            try Self.validateSelection("--swa", start: start, stride: stride, at: at)
        case .ema(let decay, let start, let stride, let at):
            guard decay.isFinite, decay >= 0, decay < 1 else {
                throw CKStoreError(.badInput, "--ema decay must be a number in [0, 1), got \(decay)")
            }
            try Self.validateSelection("--ema", start: start, stride: stride, at: at)
        }
    }

    private static func validateSelection(_ flag: String, start: Int?, stride: Int?, at: Int) throws(CKStoreError) {
        guard at >= 0, (start ?? 0) >= 0, (stride ?? 1) >= 1 else {
            throw CKStoreError(.badInput, "\(flag): start and the step must be ≥ 0 and stride ≥ 1")
        }
    }

    /// Checks `--mean` weights: one per ref, each finite and ≥ 0, not all zero, and a finite
    /// sum (weights of 1e308 would otherwise normalize to 0 and give an all-zero model).
    /// - Throws: `.badInput` naming the offending weight (1-based) and its value.
    public static func validateWeights(_ weights: [Double], refCount: Int) throws(CKStoreError) {
        guard weights.count == refCount else {
            throw CKStoreError(.badInput, "--weights has \(weights.count) values for \(refCount) refs")
        }
        var sum = 0.0
        for (i, w) in weights.enumerated() {
            guard w.isFinite else { throw CKStoreError(.badInput, "--weights: weight \(i + 1) is \(w), not a finite number") }
            guard w >= 0 else { throw CKStoreError(.badInput, "--weights: weight \(i + 1) is \(w), below 0") }
            sum += w
            guard sum.isFinite else {
                throw CKStoreError(
                    .badInput, "--weights: the sum overflows at weight \(i + 1) (\(w)); scale the weights down (only their ratios matter)")
            }
        }
        guard sum > 0 else { throw CKStoreError(.badInput, "--weights must not all be zero") }
        // Each normalized weight must be representable: a positive weight that rounds to 0
        // after dividing by the sum would silently drop its input.
        for (i, w) in weights.enumerated() where w > 0 && w / sum == 0 {
            throw CKStoreError(
                .badInput, "--weights: weight \(i + 1) (\(w)) is too small next to the others to have any effect; scale the weights")
        }
    }
}
