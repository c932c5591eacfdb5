#if canImport(Glibc)
    import Glibc
#endif

/// The request log of a local store: a file of `slots` fixed 32-byte slots, each holding the
/// last cache key that hashed to it (slot = the key's first two bytes modulo `slots`), so the
/// file never grows beyond `slots × 32` bytes (128 KiB) and needs no cleaning.
///
/// Each request reads one slot and, when it holds another key, writes its own: one `pread`
/// and at most one `pwrite` of 32 bytes, without fsync (losing a note only delays caching).
/// Concurrent requests need no lock: two processes asking for a new recipe at once may both
/// see it as new (neither caches; the next request does). A damaged, truncated or foreign file
/// only reads as "not requested before". When the file cannot be opened (a symbolic link, a
/// directory, no permission) the request counts as a repeat, so the result is cached as with
/// `always` and nothing fails.
package final class FileQueryRequestLog: QueryRequestLog {
    /// The log file (`<store>/cache-requests`).
    package let path: String
    /// The number of slots.
    package static let slots = 4096

    /// A log kept in `path` (created on first use).
    package init(path: String) {
        self.path = path
    }

    package func noteRequest(_ key: SHA256Digest) -> Bool {
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return true }
        let bytes = key.bytes
        let slot = (Int(bytes[0]) << 8 | Int(bytes[1])) % Self.slots
        let offset = off_t(slot * 32)
        var stored = [UInt8](repeating: 0, count: 32)
        let got = stored.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, 32, offset) }
        if got == 32, stored == bytes { return true }
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, 32, offset) }
        return false
    }
}
