/// The error every public ckstore operation throws: what went wrong, in one line that names the
/// run, step, tensor, blob or byte offset at fault, plus the underlying cause when there is one.
///
/// The code decides the process exit status (see `exitCode`): 1 for a user-level failure,
/// 2 for a usage error, 3 for an integrity failure.
public struct CKStoreError: Error, CustomStringConvertible, @unchecked Sendable {
    // @unchecked: `cause` is an immutable existential set once at creation and only read.

    /// The class of failure.
    public enum Code: String, Sendable {
        /// The command line or a query is malformed.
        case usage
        /// A run, step, snapshot or prefix does not exist (or a prefix is ambiguous).
        case notFound
        /// The input file or value is invalid (malformed safetensors, bad ref, bad number).
        case badInput
        /// The request contradicts what is stored (different content at an existing run/step).
        case conflict
        /// Stored data failed a check: a blob is missing, damaged, or does not match its name.
        case integrity
        /// The environment failed: I/O error, full disk, read-only store, busy database.
        case environment
    }

    /// The class of failure.
    public let code: Code
    /// One line for `ckstore: error: …`.
    public let message: String
    /// The lower-level error that caused this one, if any.
    public let cause: (any Error)?

    /// Creates an error.
    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The process exit status for this error: 2 usage, 3 integrity, 1 otherwise.
    public var exitCode: Int32 {
        switch code {
        case .usage: return 2
        case .integrity: return 3
        default: return 1
        }
    }

    public var description: String { message }

    /// A multi-line description including the chain of causes, for `--verbose`.
    public func detailedDescription() -> String {
        var lines = ["\(code.rawValue): \(message)"]
        var next = cause
        while let current = next {
            lines.append("  caused by: \(current)")
            next = (current as? CKStoreError)?.cause
        }
        return lines.joined(separator: "\n")
    }
}

extension CKStoreError {
    /// Wraps an arbitrary error from a lower layer, keeping `CKStoreError`s as they are. A
    /// backend's error is mapped by its own classification (`ClassifiedBackendError`), never by
    /// its text; anything else is `.environment`.
    static func wrap(_ error: any Error, context: String) -> CKStoreError {
        if let e = error as? CKStoreError { return e }
        if let e = error as? any ClassifiedBackendError {
            return CKStoreError(e.failureKind.code, "\(context): \(e.failureMessage)", cause: e)
        }
        return CKStoreError(.environment, "\(context): \(error)", cause: error)
    }
}
