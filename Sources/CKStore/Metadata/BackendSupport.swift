/// What other metadata backends (CKStorePostgres) need from the core and SQLite shares with
/// them, so that every implementation follows the same rules.

/// The stale-metrics rule (SQLiteMetadataStore+StaleMetrics.swift): every implementation drops
/// the same metric rows when content changes.
package enum StaleMetricsRule {
    /// Whether the average named `variant` at step `t` has step `s` (< t) among its inputs.
    package static func variant(_ variant: String, at t: Int, includes s: Int) -> Bool {
        SQLiteMetadataStore.variant(variant, at: t, includes: s)
    }
}

extension DerivedInfo {
    /// A derived-snapshot description, as a backend reads it from its rows.
    package static func make(
        recipe: String, inputs: String, run: String?, digest: SHA256Digest, logicalBytes: Int, createdAtMilliseconds: Int64
    ) -> Self {
        Self(
            recipe: recipe, inputs: inputs, run: run, digest: digest, logicalBytes: logicalBytes,
            createdAtMilliseconds: createdAtMilliseconds)
    }
}

extension RunSummary {
    /// A run summary, as a backend reads it from its rows.
    package static func make(name: String, snapshotCount: Int, firstStep: Int?, lastStep: Int?) -> Self {
        Self(name: name, snapshotCount: snapshotCount, firstStep: firstStep, lastStep: lastStep)
    }
}

extension SnapshotInfo {
    /// A snapshot description, as a backend reads it from its rows.
    package static func make(
        run: String, step: Int, digest: SHA256Digest, createdAtMilliseconds: Int64, logicalBytes: Int, tensorCount: Int
    ) -> Self {
        Self(
            run: run, step: step, digest: digest, createdAtMilliseconds: createdAtMilliseconds, logicalBytes: logicalBytes,
            tensorCount: tensorCount)
    }
}

extension MetricRecord {
    /// A metric value, as a backend reads it from its rows.
    package static func make(run: String, step: Int, variant: String, name: String, value: Double) -> Self {
        Self(run: run, step: step, variant: variant, name: name, value: value)
    }
}

extension TensorEntry {
    /// A manifest entry, as a backend reads it from its rows.
    package static func make(info: TensorInfo, chunks: [ChunkRef]) -> Self {
        Self(info: info, chunks: chunks)
    }
}

extension ChunkRef {
    /// A chunk reference, as a backend reads it from its rows.
    package static func make(hash: SHA256Digest, rawSize: Int, storedSize: Int) -> Self {
        Self(hash: hash, rawSize: rawSize, storedSize: storedSize)
    }
}

extension StoreStatistics {
    /// Zero totals, for a backend to fill in.
    package static func make() -> Self { Self() }
}
