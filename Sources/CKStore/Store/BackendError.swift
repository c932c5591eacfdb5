/// How backends classify their failures, so that the store maps any backend's error to a
/// `CKStoreError` code without matching message text.

/// The class of a backend failure.
package enum BackendFailureKind: String, Sendable, Equatable {
    /// The object asked for does not exist (a missing blob, row or store).
    case notFound
    /// Contention beyond the backend's wait (SQLite busy, a lock timeout, HTTP 503 slow-down):
    /// transient, retrying may succeed.
    case busy
    /// The backend cannot be reached (connection refused, timeout, DNS): transient.
    case unavailable
    /// Stored data is damaged (a corrupt database file, a response that breaks the protocol).
    case integrity
    /// A write lost a race or broke a constraint (a unique row written concurrently).
    case conflict
    /// The backend refuses writes (read-only file system, permissions, credentials).
    case readOnly
    /// Any other permanent failure of the environment (I/O error, disk full).
    case environment

    /// True for failures that retrying may cure.
    package var isTransient: Bool { self == .busy || self == .unavailable }

    /// The `CKStoreError` code this failure maps to.
    package var code: CKStoreError.Code {
        switch self {
        case .notFound: return .notFound
        case .integrity: return .integrity
        case .conflict: return .conflict
        case .busy, .unavailable, .readOnly, .environment: return .environment
        }
    }
}

/// An error a backend throws, with its classification and a one-line message (no secrets:
/// never a password, key or signed URL).
package protocol ClassifiedBackendError: Error {
    /// The class of failure.
    var failureKind: BackendFailureKind { get }
    /// One line describing it (e.g. "database is corrupt: file is not a database").
    var failureMessage: String { get }
}

extension BlobStoreError: ClassifiedBackendError {
    package var failureKind: BackendFailureKind {
        switch self {
        case .notFound: return .notFound
        case .tooLarge: return .integrity
        case .io(let e): return e.failureKind
        case .backend(let kind, _): return kind
        }
    }

    package var failureMessage: String { description }
}

extension SystemError: ClassifiedBackendError {
    package var failureKind: BackendFailureKind {
        if isReadOnly { return .readOnly }
        return .environment
    }

    package var failureMessage: String { description }
}
