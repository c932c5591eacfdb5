#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A failed system call: the call, the path it acted on, and `errno`.
public struct SystemError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The name of the failing call (`open`, `pwrite`, `fsync`, …).
    public let call: String
    /// The path involved, when there is one.
    public let path: String?
    /// The `errno` value.
    public let errno: Int32

    /// Creates an error for `call` on `path` with `errno`.
    public init(call: String, path: String?, errno: Int32) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    /// True when the path does not exist (`ENOENT`).
    public var isNotFound: Bool { errno == ENOENT }
    /// True when the target already exists (`EEXIST`).
    public var isAlreadyExists: Bool { errno == EEXIST }
    /// True when the disk or quota is full (`ENOSPC`, `EDQUOT`).
    public var isNoSpace: Bool { errno == ENOSPC || errno == EDQUOT }
    /// True when the file system is read-only or access is denied.
    public var isReadOnly: Bool { errno == EROFS || errno == EACCES || errno == EPERM }

    public var description: String {
        let reason = String(cString: strerror(errno))
        if let path { return "\(call) \(path): \(reason)" }
        return "\(call): \(reason)"
    }
}
