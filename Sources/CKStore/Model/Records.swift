/// A run and a summary of its snapshots, as `ckstore ls` shows it.
public struct RunSummary: Sendable, Equatable {
    /// The run's name.
    public let name: String
    /// How many snapshots it has.
    public let snapshotCount: Int
    /// The lowest and highest stored step (nil when the run has no snapshots).
    public let firstStep: Int?
    public let lastStep: Int?

    /// Creates a summary.
    package init(name: String, snapshotCount: Int, firstStep: Int?, lastStep: Int?) {
        self.name = name
        self.snapshotCount = snapshotCount
        self.firstStep = firstStep
        self.lastStep = lastStep
    }
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
    /// The number of tensors (of all its safetensors files, for a tree).
    public let tensorCount: Int
    /// `.safetensors` for a single-file snapshot, `.tree` for a snapshot of several files.
    public let kind: ContentKind
    /// The number of files (1 for a single-file snapshot).
    public let fileCount: Int

    /// Creates a record.
    package init(
        run: String, step: Int, digest: SHA256Digest, createdAtMilliseconds: Int64, logicalBytes: Int, tensorCount: Int,
        kind: ContentKind = .safetensors, fileCount: Int = 1
    ) {
        self.run = run
        self.step = step
        self.digest = digest
        self.createdAtMilliseconds = createdAtMilliseconds
        self.logicalBytes = logicalBytes
        self.tensorCount = tensorCount
        self.kind = kind
        self.fileCount = fileCount
    }

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

    /// Creates a record.
    package init(run: String, step: Int, variant: String, name: String, value: Double) {
        self.run = run
        self.step = step
        self.variant = variant
        self.name = name
        self.value = value
    }
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
    /// Sum of the file sizes of all named snapshots (what `get` of each would produce; every
    /// file of a tree counts).
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
    /// Side files (the non-safetensors files of tree snapshots): how many entries all trees
    /// hold, their total size, and the size of the distinct files among them (an unchanged
    /// `config.json` at every step is stored once: logical grows, unique does not).
    public var sideFiles = 0
    public var sideFileBytes = 0
    public var sideFileUniqueBytes = 0
    /// Blob files (and temporary files) nothing refers to: what `gc` would free.
    public var orphanBytes = 0
    public var orphanBlobs = 0

    /// All zero.
    package init() {}

    /// logical / unique raw: how much chunk sharing saves (≥ 1).
    public var dedupRatio: Double { uniqueRawBytes == 0 ? 1 : Double(logicalBytes) / Double(uniqueRawBytes) }
    /// stored / unique raw: what filtering and compression achieve (≤ 1 is a saving).
    public var compressionRatio: Double { uniqueRawBytes == 0 ? 1 : Double(storedBytes) / Double(uniqueRawBytes) }
}

/// A cached query result.
public struct DerivedInfo: Sendable, Equatable {
    /// The canonical recipe.
    public let recipe: String
    /// The input digests, oldest first, comma-separated (`sha256:…`).
    public let inputs: String
    /// The run, for run-scoped queries.
    public let run: String?
    /// The result's digest.
    public let digest: SHA256Digest
    /// The result's file size.
    public let logicalBytes: Int
    /// When it was computed, in milliseconds since 1970.
    public let createdAtMilliseconds: Int64

    /// Creates a record.
    package init(recipe: String, inputs: String, run: String?, digest: SHA256Digest, logicalBytes: Int, createdAtMilliseconds: Int64) {
        self.recipe = recipe
        self.inputs = inputs
        self.run = run
        self.digest = digest
        self.logicalBytes = logicalBytes
        self.createdAtMilliseconds = createdAtMilliseconds
    }
}
