/// A run and a summary of its snapshots, as `ckstore ls` shows it.
public struct RunSummary: Sendable, Equatable {
    /// The run's name.
    public let name: String
    /// How many snapshots it has.
    public let snapshotCount: Int
    /// The lowest and highest stored step (nil when the run has no snapshots).
    public let firstStep: Int?
    public let lastStep: Int?
}

/// A named snapshot: RUN@STEP and the manifest it names.
public struct SnapshotInfo: Sendable, Equatable {
    /// The run's name.
    public let run: String
    /// The training step.
    public let step: Int
    /// The manifest digest (the snapshot digest printed by `put`).
    public let digest: SHA256Digest
    /// When the snapshot was recorded, in milliseconds since 1970.
    public let createdAtMilliseconds: Int64
    /// The size of the safetensors file it reproduces.
    public let logicalBytes: Int
    /// The number of tensors.
    public let tensorCount: Int

    /// `sha256:<hex>`.
    public var digestString: String { "sha256:\(digest.hex)" }
    /// `RUN@STEP`.
    public var ref: String { "\(run)@\(step)" }
}

/// A recorded metric value.
public struct MetricRecord: Sendable, Equatable {
    /// The run's name.
    public let run: String
    /// The step the value belongs to.
    public let step: Int
    /// "raw" for the snapshot itself, or the name of an averaging variant.
    public let variant: String
    /// The metric's name (e.g. `val_loss`).
    public let name: String
    /// The value.
    public let value: Double
}

/// What committing a snapshot did.
public enum CommitOutcome: Sendable, Equatable {
    /// A new RUN@STEP was recorded.
    case created
    /// RUN@STEP already named identical content; nothing changed.
    case unchanged
    /// RUN@STEP named other content and `force` replaced it.
    case replaced(previous: SHA256Digest)
}

/// Totals reported by `ckstore stats`.
public struct StoreStatistics: Sendable, Equatable {
    /// Number of runs and named snapshots.
    public var runs = 0
    public var snapshots = 0
    /// Sum of the file sizes of all named snapshots (what `get` of each would produce).
    public var logicalBytes = 0
    /// Sum of the raw sizes of the distinct chunks those snapshots use.
    public var uniqueRawBytes = 0
    /// Sum of the blob file sizes of the chunks snapshots refer to.
    public var storedBytes = 0
    /// Number of blobs snapshots refer to.
    public var blobCount = 0
    /// Blobs only derived snapshots (cached query results) refer to; gc may drop them.
    public var derivedBytes = 0
    public var derivedBlobs = 0
    /// Blob files (and temporary files) nothing refers to: what `gc` would free.
    public var orphanBytes = 0
    public var orphanBlobs = 0

    /// logical / unique raw: how much chunk sharing saves (≥ 1).
    public var dedupRatio: Double { uniqueRawBytes == 0 ? 1 : Double(logicalBytes) / Double(uniqueRawBytes) }
    /// stored / unique raw: what filtering and compression achieve (≤ 1 is a saving).
    public var compressionRatio: Double { uniqueRawBytes == 0 ? 1 : Double(storedBytes) / Double(uniqueRawBytes) }
}
