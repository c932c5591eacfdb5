/// One file received for a pending snapshot (`put --parts TOTAL --path REL`).
public struct PendingPart: Sendable, Equatable {
    /// The part's clean relative path inside the snapshot (`TreePath`).
    public let path: String
    /// `.safetensors` or `.bytes`.
    public let kind: ContentKind
    /// The file's size in bytes.
    public let size: Int
    /// The file object's digest (what that part's put printed).
    public let digest: SHA256Digest
    /// When the part was acknowledged (unix time, milliseconds).
    public let createdAtMilliseconds: Int64

    /// Creates a record.
    public init(path: String, kind: ContentKind, size: Int, digest: SHA256Digest, createdAtMilliseconds: Int64) {
        self.path = path
        self.kind = kind
        self.size = size
        self.digest = digest
        self.createdAtMilliseconds = createdAtMilliseconds
    }

    /// The tree entry this part becomes when the snapshot completes.
    public var entry: TreeEntry { TreeEntry(path: path, kind: kind, size: size, digest: digest) }
}

/// A snapshot whose parts are still arriving: RUN@STEP becomes visible when `total` distinct
/// paths have been put. Until then it is not a snapshot (get, ls, queries and watch do not see
/// it).
public struct PendingSnapshot: Sendable, Equatable {
    /// The run and step it will complete as.
    public let run: String
    public let step: Int
    /// The number of distinct paths that completes it (1...`PendingSnapshot.maxParts`).
    public let total: Int
    /// Whether a part was put with `--force`: the completed tree then replaces a complete
    /// snapshot already at RUN@STEP.
    public let replaces: Bool
    /// When its first part arrived (unix time, milliseconds); `pending_grace` counts from here.
    public let createdAtMilliseconds: Int64
    /// The parts received so far, sorted by path bytes.
    public let parts: [PendingPart]

    /// The largest TOTAL accepted.
    public static let maxParts = 100_000

    /// Creates a record (parts are sorted by path).
    public init(run: String, step: Int, total: Int, replaces: Bool, createdAtMilliseconds: Int64, parts: [PendingPart]) {
        self.run = run
        self.step = step
        self.total = total
        self.replaces = replaces
        self.createdAtMilliseconds = createdAtMilliseconds
        self.parts = parts.sorted { TreePath.precedes($0.path, $1.path) }
    }

    /// "RUN@STEP".
    public var ref: String { "\(run)@\(step)" }

    /// "step N is incomplete: 3 of 8 parts (present: a, b, c)".
    public var incompleteDescription: String {
        let shown = parts.prefix(8).map(\.path).joined(separator: ", ")
        let more = parts.count > 8 ? ", … \(parts.count - 8) more" : ""
        return "step \(step) is incomplete: \(parts.count) of \(total) parts (present: \(shown)\(more); "
            + "the missing \(total - parts.count) part(s) have not been put)"
    }
}

/// What adding one part did to the part itself.
public enum PartAddition: Sendable, Equatable {
    /// A new path.
    case added
    /// The same content was already at this path (a retried put): nothing changed.
    case unchanged
    /// `--force` replaced different content at this path.
    case replaced(previous: SHA256Digest)
}

/// The result of `MetadataStore.addPart`.
public struct PartOutcome: Sendable, Equatable {
    /// What happened to the part.
    public let part: PartAddition
    /// Distinct paths received after this put, and the snapshot's TOTAL.
    public let present: Int
    public let total: Int
    /// Set when this put completed the snapshot (or found it already complete with this very
    /// part in it): the snapshot's digest and how its commit went.
    public let completed: CompletedSnapshot?

    /// Creates a record.
    public init(part: PartAddition, present: Int, total: Int, completed: CompletedSnapshot?) {
        self.part = part
        self.present = present
        self.total = total
        self.completed = completed
    }
}

/// A snapshot completed by a part's put.
public struct CompletedSnapshot: Sendable, Equatable {
    /// The tree's digest (the snapshot digest).
    public let digest: SHA256Digest
    /// Created, unchanged (the parts were already complete) or replaced (with `--force`).
    public let outcome: CommitOutcome
    /// Metric values dropped because they were measured on replaced content.
    public let droppedMetrics: Int

    /// Creates a record.
    public init(digest: SHA256Digest, outcome: CommitOutcome, droppedMetrics: Int) {
        self.digest = digest
        self.outcome = outcome
        self.droppedMetrics = droppedMetrics
    }
}

/// The checks every backend's `MetadataStore.addPart` makes before it changes anything.
package enum PartRules {
    /// Throws `.badInput` for an unclean path or a TOTAL outside 1...`PendingSnapshot.maxParts`.
    package static func validate(path: String, total: Int, ref: String) throws(CKStoreError) {
        guard (1...PendingSnapshot.maxParts).contains(total) else {
            throw CKStoreError(.badInput, "\(ref): --parts must be from 1 to \(PendingSnapshot.maxParts), got \(total)")
        }
        if let problem = TreePath.problem(path) {
            throw CKStoreError(.badInput, "\(ref): part path '\(path)' is not a clean relative path: \(problem)")
        }
    }

    /// Why `path` cannot join parts at `others` (one would be the directory of the other), or nil.
    /// (The in-memory reference; the database backends ask the same with `ancestors(of:)` and
    /// `descendantRange(of:)`, index lookups instead of a scan.)
    package static func clash(_ path: String, with others: [String]) -> String? {
        let existing = Set(others)
        if let ancestor = ancestors(of: path).first(where: existing.contains) { return clash(ancestor: ancestor, path: path) }
        let (low, high) = descendantRange(of: path)
        let below = others.filter { TreePath.precedes(low, $0) && TreePath.precedes($0, high) }
        if let descendant = below.min(by: TreePath.precedes) { return clash(descendant: descendant, path: path) }
        return nil
    }

    /// The directories `path` lies in ("a", "a/b" for "a/b/c"), shortest first.
    package static func ancestors(of path: String) -> [String] {
        var result: [String] = []
        var prefix = ""
        for component in path.split(separator: "/", omittingEmptySubsequences: false).dropLast() {
            prefix += prefix.isEmpty ? String(component) : "/" + component
            result.append(prefix)
        }
        return result
    }

    /// The paths below `path` as a directory are exactly those strictly between these two in
    /// byte order (`path + "/"` and `path + "0"`, '0' being the byte after '/').
    package static func descendantRange(of path: String) -> (String, String) { (path + "/", path + "0") }

    /// A part at `ancestor` would be the directory of `path`.
    package static func clash(ancestor: String, path: String) -> String { "part '\(ancestor)' would be the directory of '\(path)'" }

    /// `path` would be the directory of the part at `descendant`.
    package static func clash(descendant: String, path: String) -> String { "'\(path)' would be the directory of part '\(descendant)'" }

    /// The refusal of a part whose TOTAL disagrees with the pending snapshot's.
    package static func totalMismatch(ref: String, pending: Int, given: Int, present: Int) -> CKStoreError {
        CKStoreError(
            .badInput,
            "\(ref) is pending with --parts \(pending) (\(present) received), not --parts \(given); every part of a snapshot must give the same TOTAL"
        )
    }

    /// The refusal of different content at a part's path.
    package static func partConflict(ref: String, path: String, existing: SHA256Digest, new: SHA256Digest) -> CKStoreError {
        CKStoreError(
            .conflict,
            "\(ref): part '\(path)' already holds sha256:\(existing.hex), not sha256:\(new.hex); use --force to replace it")
    }

    /// The refusal of a part for a step that is already complete.
    package static func completeConflict(ref: String, digest: SHA256Digest) -> CKStoreError {
        CKStoreError(
            .conflict,
            "\(ref) is already a complete snapshot (sha256:\(digest.hex)); use --force to replace it when the new parts complete")
    }
}
