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
extension SQLiteMetadataStore {
    /// Deletes the metrics measured on the content at `runID`@`step` (see above); with
    /// `includingStep` false, only those of later averages. Call inside the transaction that
    /// changes the content. Returns the number of rows deleted.
    func dropMetrics(measuredOn runID: Int, step: Int, includingStep: Bool) throws -> Int {
        var doomed: [(Int, String)] = []
        try db.statement("SELECT DISTINCT step, variant FROM metrics WHERE run_id = ? AND step >= ?").forEachRow([.int(runID), .int(step)])
        {
            row in
            let t = row.int(0)
            let variant = row.text(1)
            if t == step ? includingStep : Self.variant(variant, at: t, includes: step) { doomed.append((t, variant)) }
        }
        var dropped = 0
        let delete = try db.statement("DELETE FROM metrics WHERE run_id = ? AND step = ? AND variant = ?")
        for (t, variant) in doomed {
            try delete.run([.int(runID), .int(t), .text(variant)])
            dropped += db.changes
        }
        return dropped
    }

    /// Whether the average named `variant` at step `t` has step `s` (< t) among its inputs.
    static func variant(_ variant: String, at t: Int, includes s: Int) -> Bool {
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
}
