/// Metrics belong to the content they were measured on.
///
/// A metric row is keyed by run, step and variant, not by content, so when the content at
/// RUN@STEP changes the rows that describe the old content must go:
/// - replacing RUN@STEP (`put --force` with other content) or removing it (`rm`) drops every
///   metric recorded at RUN@STEP (all variants: the raw snapshot was measured, and an average
///   at STEP has it as its newest input);
/// - replacing, removing or adding RUN@STEP also drops the metrics of averages at later steps
///   whose inputs include STEP, for the variant names ckstore writes (`lawa-kK-sNU`:
///   STEP is in the window; `swa…`/`ema-d…`: STEP is in the selection given by `-fromS`
///   and `-sNU`). Other variant names (`mean`, user-chosen names) cannot be traced to their
///   inputs and are kept.
/// Snapshots that gc's retention policy removes keep their metrics: the content was not
/// changed, and the metrics stay as the run's history ("metrics at steps without a snapshot").
package enum MetricVariants {
    /// Whether the average named `variant` at step `t` has step `s` (< t) among its inputs.
    package static func variant(_ variant: String, at t: Int, includes s: Int) -> Bool {
        let parts = variant.split(separator: "-", omittingEmptySubsequences: false)
        guard let kind = parts.first, t > s else { return false }
        func value(_ prefix: String, in part: Substring) -> Int? {
            part.hasPrefix(prefix) ? Int(part.dropFirst(prefix.count)) : nil
        }
        let distance = t - s
        switch kind {
        case "lawa":
            guard parts.count == 3, let k = value("k", in: parts[1]), let stride = value("s", in: parts[2]), stride > 0 else {
                return false
            }
            return distance % stride == 0 && distance / stride < k
        case "swa", "ema":
            var rest = parts.dropFirst()
            if kind == "ema" {
                guard let decay = rest.first, decay.hasPrefix("d") else { return false }
                rest = rest.dropFirst()
            }
            var start = 0
            var stride: Int?
            for part in rest {
                if let v = value("from", in: part) {
                    start = v
                } else if let v = value("s", in: part), v > 0 {
                    stride = v
                } else {
                    return false
                }
            }
            return s >= start && (stride.map { distance % $0 == 0 } ?? true)
        default:
            return false
        }
    }

    /// Of the metric rows of a run at steps ≥ `step` (given as step and variant), those
    /// measured on the content at `step` (see above); with `includingStep` false, only those
    /// of later averages. Every metadata backend deletes exactly these.
    package static func stale(_ rows: [(step: Int, variant: String)], step: Int, includingStep: Bool) -> [(step: Int, variant: String)] {
        rows.filter { $0.step == step ? includingStep : variant($0.variant, at: $0.step, includes: step) }
    }
}
