/// Plain records exchanged with a `MetadataStore` (no query-layer or backend types).

/// A derived snapshot to record: a query result and what it was computed from.
package struct DerivedRecord: Sendable {
    /// The cache key (`QueryPlan.cacheKey`: SHA-256 of the recipe and the input digests).
    package var key: SHA256Digest
    /// The canonical recipe text.
    package var recipe: String
    /// The input digests, oldest first.
    package var inputs: [SHA256Digest]
    /// The run, for run-scoped queries.
    package var run: String?
    /// The result: one safetensors file, or a tree (an average of directory snapshots).
    package var content: Content

    /// What a derived snapshot holds.
    package enum Content: Sendable {
        /// One safetensors file.
        case file(Manifest)
        /// A tree and the content of each of its files (those not stored yet are inserted).
        case tree(TreeSnapshot)
    }

    /// Creates a record of a single-file result.
    package init(key: SHA256Digest, recipe: String, inputs: [SHA256Digest], run: String?, manifest: Manifest) {
        self.init(key: key, recipe: recipe, inputs: inputs, run: run, content: .file(manifest))
    }

    /// Creates a record.
    package init(key: SHA256Digest, recipe: String, inputs: [SHA256Digest], run: String?, content: Content) {
        self.key = key
        self.recipe = recipe
        self.inputs = inputs
        self.run = run
        self.content = content
    }

    /// The digest of the result (what the derived row names).
    package var digest: SHA256Digest {
        switch content {
        case .file(let manifest): manifest.digest
        case .tree(let snapshot): snapshot.tree.digest
        }
    }

    /// Every chunk of the result (of all its files, for a tree), in order, with repeats.
    package var chunks: [ChunkRef] {
        switch content {
        case .file(let manifest): manifest.tensors.flatMap(\.chunks)
        case .tree(let snapshot): snapshot.files.values.flatMap { $0.tensorEntries.flatMap(\.chunks) }
        }
    }

    /// The inputs as recorded in a derived row and in `ckstore.inputs`: `sha256:<hex>`,
    /// comma-separated, oldest first.
    package var inputsText: String { inputs.map { "sha256:\($0.hex)" }.joined(separator: ",") }
}

/// A derived row as recorded (fields may be damaged: fsck checks them).
package struct DerivedRow: Sendable, Equatable {
    /// A backend-assigned number, increasing with insertion (for messages and order).
    package var id: Int
    /// The key, or nil when the stored value is not a digest.
    package var key: SHA256Digest?
    /// The recorded recipe.
    package var recipe: String
    /// The recorded inputs text (`sha256:<hex>,…`).
    package var inputs: String
    /// The result's manifest digest, or nil when its manifest row is missing.
    package var digest: SHA256Digest?

    /// Creates a row.
    package init(id: Int, key: SHA256Digest?, recipe: String, inputs: String, digest: SHA256Digest?) {
        self.id = id
        self.key = key
        self.recipe = recipe
        self.inputs = inputs
        self.digest = digest
    }
}

/// A chunk row.
package struct ChunkRow: Sendable, Equatable {
    /// The chunk's address.
    package var hash: SHA256Digest
    /// Its raw (decoded) size.
    package var rawSize: Int
    /// Its blob's size.
    package var storedSize: Int

    /// Creates a row.
    package init(hash: SHA256Digest, rawSize: Int, storedSize: Int) {
        self.hash = hash
        self.rawSize = rawSize
        self.storedSize = storedSize
    }
}

/// A tensor of a stored manifest using a chunk.
package struct ChunkUse: Sendable, Equatable {
    /// The chunk.
    package var chunk: SHA256Digest
    /// The manifest whose tensor uses it.
    package var manifest: SHA256Digest
    /// The tensor's name.
    package var tensor: String

    /// Creates a use.
    package init(chunk: SHA256Digest, manifest: SHA256Digest, tensor: String) {
        self.chunk = chunk
        self.manifest = manifest
        self.tensor = tensor
    }
}

/// A tensor row outside any valid range (see `MetadataStore.tensorRowsOutOfRange`).
package struct TensorRowRange: Sendable, Equatable {
    /// The manifest.
    package var manifest: SHA256Digest
    /// The tensor's name.
    package var tensor: String
    /// Its recorded data offset and byte length.
    package var dataStart: Int
    package var byteLength: Int

    /// Creates a record.
    package init(manifest: SHA256Digest, tensor: String, dataStart: Int, byteLength: Int) {
        self.manifest = manifest
        self.tensor = tensor
        self.dataStart = dataStart
        self.byteLength = byteLength
    }
}

/// RUN@STEP.
package struct SnapshotKey: Sendable, Hashable {
    /// The run's name.
    package var run: String
    /// The step.
    package var step: Int

    /// Creates a key.
    package init(run: String, step: Int) {
        self.run = run
        self.step = step
    }
}

/// What `MetadataStore.collect` removes besides the selected snapshots.
package struct CollectionOptions: Sendable, Equatable {
    /// Also delete the metrics measured on the removed content (rm).
    package var dropsMetrics: Bool
    /// Also delete every derived row (gc without --keep-derived).
    package var dropsDerived: Bool
    /// Roll back after `review`.
    package var dryRun: Bool
    /// Also delete the pending snapshots (and so their parts) created before this time (unix
    /// milliseconds; `Int64.max` for all: gc --pending), and those at the selected RUN@STEP
    /// when `dropsPendingOfSelected` (rm).
    package var pendingCreatedBefore: Int64? = nil
    /// Limits `pendingCreatedBefore` to one run (gc --run).
    package var pendingRun: String? = nil
    package var dropsPendingOfSelected = false

    /// Creates options.
    package init(dropsMetrics: Bool, dropsDerived: Bool, dryRun: Bool) {
        self.dropsMetrics = dropsMetrics
        self.dropsDerived = dropsDerived
        self.dryRun = dryRun
    }
}

/// What `MetadataStore.collect` changed (or, in a dry run, would change).
package struct CollectionChanges: Sendable, Equatable {
    /// The snapshots removed, in the order selected (pairs that did not exist are left out).
    package var removedSnapshots: [SnapshotKey] = []
    /// Metric values dropped with them.
    package var droppedMetrics = 0
    /// The recipes of the derived rows removed, in insertion order.
    package var removedDerivedRecipes: [String] = []
    /// Chunk rows deleted because no manifest uses them any more: their blobs may go.
    package var releasedChunks: Set<SHA256Digest> = []
    /// Chunk rows that remain: their blobs must stay.
    package var liveChunks: Set<SHA256Digest> = []
    /// Snapshots that remain.
    package var remainingSnapshots = 0
    /// Pending snapshots removed (with all their parts), ordered by run, then step.
    package var removedPending: [SnapshotKey] = []

    /// Creates an empty record.
    package init() {}
}
