#if canImport(Glibc)
    import Glibc
#endif

/// The request log of a local store: a file of `slots` fixed 32-byte slots, each holding the
/// last cache key that hashed to it (slot = the key's first two bytes modulo `slots`), so the
/// file never grows beyond `slots × 32` bytes (128 KiB) and needs no cleaning.
///
/// A slot is in one of three states for a key K: *noted* (the slot is K: K was requested once),
/// *claimed* (K's first 24 bytes, the bitwise complement of K's bytes 24..<28, then a UInt32
/// little-endian claim time in seconds: a process is storing K's result now), or anything
/// else (K not requested). A request for K:
/// - not requested: notes K, returns false (compute, do not cache);
/// - noted: claims K, returns true (compute and cache; `release` notes K again afterwards);
/// - claimed less than `claimLifetime` seconds ago: returns false and leaves the claim, so
///   that concurrent requests of a recipe store its result once;
/// - claimed longer ago (its claimer died): claims K again, returns true.
///
/// Each request takes a non-blocking flock(2) on the file for one `pread` and at most one
/// `pwrite` of 32 bytes, without fsync (losing a note only delays caching). When the lock stays
/// busy (a few hundred microseconds of retries), the request counts as not requested, so it
/// never waits. A damaged, truncated or foreign file only reads as "not requested before".
/// When the file cannot be opened or is not a regular file (a symbolic link, which is never
/// followed, a directory, a FIFO, no permission) the request counts as a repeat, so the result
/// is cached as with `always` and nothing fails: the log is only an optimisation.
package final class FileQueryRequestLog: QueryRequestLog {
    /// The log file (`<store>/cache-requests`).
    package let path: String
    /// The number of slots.
    package static let slots = 4096
    /// Seconds after which a claim whose result was never stored is ignored.
    package static let claimLifetime: UInt32 = 900

    /// A log kept in `path` (created on first use).
    package init(path: String) {
        self.path = path
    }

    package func noteRequest(_ key: SHA256Digest) -> Bool {
        guard let fd = openLog() else { return true }
        defer { close(fd) }
        guard lockLog(fd) else { return false }
        defer { _ = flock(fd, LOCK_UN) }
        let key = key.bytes
        let offset = Self.offset(of: key)
        let stored = readSlot(fd, at: offset)
        let now = Self.now()
        if stored == key {
            writeSlot(fd, Self.claim(key, at: now), at: offset)
            return true
        }
        if let time = Self.claimTime(stored, for: key) {
            if now >= time && now - time < Self.claimLifetime { return false }
            writeSlot(fd, Self.claim(key, at: now), at: offset)
            return true
        }
        writeSlot(fd, key, at: offset)
        return false
    }

    package func release(_ key: SHA256Digest) {
        guard let fd = openLog() else { return }
        defer { close(fd) }
        guard lockLog(fd) else { return }
        defer { _ = flock(fd, LOCK_UN) }
        let key = key.bytes
        let offset = Self.offset(of: key)
        if Self.claimTime(readSlot(fd, at: offset), for: key) != nil { writeSlot(fd, key, at: offset) }
    }

    /// The log opened for reading and writing (created when absent), or nil when it cannot be
    /// opened or is not a regular file. A symbolic link is not followed (`O_NOFOLLOW`); a FIFO
    /// does not block (`O_NONBLOCK`).
    private func openLog() -> Int32? {
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0o644)
        guard fd >= 0 else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            return nil
        }
        return fd
    }

    /// Takes the exclusive flock on `fd`, retrying a busy lock for about half a millisecond.
    private func lockLog(_ fd: Int32) -> Bool {
        for _ in 0..<50 {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
            if errno != EWOULDBLOCK && errno != EINTR { return false }
            usleep(10)
        }
        return false
    }

    private func readSlot(_ fd: Int32, at offset: off_t) -> [UInt8] {
        var stored = [UInt8](repeating: 0, count: 32)
        let got = stored.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, 32, offset) }
        return got == 32 ? stored : []
    }

    private func writeSlot(_ fd: Int32, _ bytes: [UInt8], at offset: off_t) {
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, 32, offset) }
    }

    /// The byte offset of `key`'s slot.
    static func offset(of key: [UInt8]) -> off_t {
        off_t((Int(key[0]) << 8 | Int(key[1])) % slots * 32)
    }

    /// The claimed-state slot for `key` at `time`.
    static func claim(_ key: [UInt8], at time: UInt32) -> [UInt8] {
        var slot = Array(key[0..<24])
        slot += key[24..<28].map { ~$0 }
        slot += [UInt8(time & 0xFF), UInt8(time >> 8 & 0xFF), UInt8(time >> 16 & 0xFF), UInt8(time >> 24)]
        return slot
    }

    /// The claim time in `slot` when it holds a claim of `key`, else nil.
    static func claimTime(_ slot: [UInt8], for key: [UInt8]) -> UInt32? {
        guard slot.count == 32, slot[0..<24] == key[0..<24], zip(slot[24..<28], key[24..<28]).allSatisfy({ $0 == ~$1 }) else {
            return nil
        }
        return UInt32(slot[28]) | UInt32(slot[29]) << 8 | UInt32(slot[30]) << 16 | UInt32(slot[31]) << 24
    }

    /// The wall-clock time in whole seconds (truncated to 32 bits).
    static func now() -> UInt32 {
        UInt32(truncatingIfNeeded: time(nil))
    }
}
