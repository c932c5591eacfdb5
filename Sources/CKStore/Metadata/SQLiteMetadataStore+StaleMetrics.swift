/// The SQLite side of stale-metric removal (see `MetricVariants`).
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
            if t == step ? includingStep : MetricVariants.variant(variant, at: t, includes: step) { doomed.append((t, variant)) }
        }
        var dropped = 0
        let delete = try db.statement("DELETE FROM metrics WHERE run_id = ? AND step = ? AND variant = ?")
        for (t, variant) in doomed {
            try delete.run([.int(runID), .int(t), .text(variant)])
            dropped += db.changes
        }
        return dropped
    }

    /// Whether the average named `variant` at step `t` has step `s` (< t) among its inputs
    /// (`MetricVariants.variant(_:at:includes:)`).
    static func variant(_ variant: String, at t: Int, includes s: Int) -> Bool {
        MetricVariants.variant(variant, at: t, includes: s)
    }
}
