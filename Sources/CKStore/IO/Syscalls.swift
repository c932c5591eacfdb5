import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Every system call ckstore makes goes through this one file, so tracing and error injection
/// have one place to hook. Each wrapper retries on `EINTR` and returns `Result` carrying a
/// `SystemError` that names the call and the path.
package enum Sys {
    // MARK: - Fault injection

    /// A planned failure: the `call` fails with `errno` once `skip` matching calls have passed.
    struct Fault: Sendable {
        var call: String
        var errno: Int32
        var skip: Int
        var remaining: Int
        /// Only calls on paths starting with this prefix fail (nil: any path, or none).
        var pathPrefix: String? = nil
    }

    /// Faults to inject, for tests. Also set from `CKSTORE_FAULT=call:ERRNO[:skip[:count]]` so
    /// the CLI tests can simulate a full disk or a failing device: `call` is the name a wrapper
    /// below reports (`open`, `read`, `pread`, `write`, `fsync`, `fstat`, `stat`, `link`,
    /// `rename`, `unlink`, `open_direct`, `mkdir`, `rmdir`, `syncfs`, `sync_file_range`, `flock`, `close`), ERRNO
    /// a name (ENOSPC, EIO, EROFS, EACCES, EDQUOT, EINVAL) or a number, `skip` how many matching calls
    /// succeed first (counted across threads), `count` how many then fail (default: all).
    /// Blob data is written with `write` (so `write:ENOSPC:3` fails the fourth blob write);
    /// `pwrite` is not used by the store. SQLite's own I/O does not go through here.
    static let faults = Mutex<[Fault]>(Sys.faultsFromEnvironment())

    private static func faultsFromEnvironment() -> [Fault] {
        guard let raw = getenv("CKSTORE_FAULT") else { return [] }
        let parts = String(cString: raw).split(separator: ":").map(String.init)
        guard parts.count >= 2 else { return [] }
        let names: [String: Int32] = ["ENOSPC": ENOSPC, "EIO": EIO, "EROFS": EROFS, "EACCES": EACCES, "EDQUOT": EDQUOT, "EINVAL": EINVAL]
        guard let code = names[parts[1]] ?? Int32(parts[1]) else { return [] }
        let skip = parts.count > 2 ? Int(parts[2]) ?? 0 : 0
        let count = parts.count > 3 ? Int(parts[3]) ?? Int.max : Int.max
        return [Fault(call: parts[0], errno: code, skip: skip, remaining: count)]
    }

    /// Returns the errno to fail `call` with, if a fault is planned for it.
    @inline(__always)
    private static func injected(_ call: String, path: String? = nil) -> Int32? {
        faults.withLock { list -> Int32? in
            guard !list.isEmpty else { return nil }
            for i in list.indices where list[i].call == call {
                if let prefix = list[i].pathPrefix, !(path?.hasPrefix(prefix) ?? false) { continue }
                if list[i].skip > 0 {
                    list[i].skip -= 1
                    return nil
                }
                guard list[i].remaining > 0 else { return nil }
                list[i].remaining -= 1
                return list[i].errno
            }
            return nil
        }
    }

    @inline(__always)
    private static func retrying<T: BinaryInteger>(
        _ call: String, _ path: String?, _ body: () -> T
    ) -> Result<T, SystemError> {
        if let code = injected(call, path: path) { return .failure(SystemError(call: call, path: path, errno: code)) }
        while true {
            let result = body()
            if result >= 0 { return .success(result) }
            let code = errno
            if code == EINTR { continue }
            return .failure(SystemError(call: call, path: path, errno: code))
        }
    }

    // MARK: - Calls

    package static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Result<Int32, SystemError> {
        retrying("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// `open` with `O_DIRECT` added (see `BlobWriteMode.direct`); reported (and injected, for
    /// tests) as the call `open_direct`, so a test can make only direct opens fail.
    package static func openDirect(_ path: String, _ flags: Int32, _ mode: mode_t) -> Result<Int32, SystemError> {
        retrying("open_direct", path) { Glibc.open(path, flags | LocalBlobStore.directFlag | O_CLOEXEC, mode) }
    }

    package static func close(_ fd: Int32) -> Result<Int32, SystemError> {
        if let code = injected("close") { return .failure(SystemError(call: "close", path: nil, errno: code)) }
        // close is not retried on EINTR: on Linux the descriptor is released either way.
        return Glibc.close(fd) == 0 ? .success(0) : .failure(SystemError(call: "close", path: nil, errno: errno))
    }

    package static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, path: String?) -> Result<Int, SystemError> {
        retrying("read", path) { Glibc.read(fd, buffer, count) }
    }

    package static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int, _ offset: Int, path: String?)
        -> Result<Int, SystemError>
    {
        retrying("pread", path) { Glibc.pread(fd, buffer, count, off_t(offset)) }
    }

    package static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, path: String?) -> Result<Int, SystemError> {
        retrying("write", path) { Glibc.write(fd, buffer, count) }
    }

    package static func pwrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int, _ offset: Int, path: String?)
        -> Result<Int, SystemError>
    {
        retrying("pwrite", path) { Glibc.pwrite(fd, buffer, count, off_t(offset)) }
    }

    package static func fsync(_ fd: Int32, path: String?) -> Result<Int32, SystemError> {
        retrying("fsync", path) { Glibc.fsync(fd) }
    }

    package static func fstatSize(_ fd: Int32, path: String?) -> Result<Int, SystemError> {
        var st = stat()
        return retrying("fstat", path) { Glibc.fstat(fd, &st) }.map { _ in Int(st.st_size) }
    }

    /// `stat` returning the size and whether the path is a regular file, or ENOENT.
    package static func fileStatus(_ path: String) -> Result<(size: Int, isRegular: Bool, isDirectory: Bool), SystemError> {
        var st = stat()
        return retrying("stat", path) { stat(path, &st) }.map { _ in
            (Int(st.st_size), (st.st_mode & S_IFMT) == S_IFREG, (st.st_mode & S_IFMT) == S_IFDIR)
        }
    }

    package static func link(_ from: String, _ to: String) -> Result<Int32, SystemError> {
        retrying("link", to) { Glibc.link(from, to) }
    }

    package static func rename(_ from: String, _ to: String) -> Result<Int32, SystemError> {
        retrying("rename", to) { Glibc.rename(from, to) }
    }

    package static func unlink(_ path: String) -> Result<Int32, SystemError> {
        retrying("unlink", path) { Glibc.unlink(path) }
    }

    package static func mkdir(_ path: String, _ mode: mode_t = 0o755) -> Result<Int32, SystemError> {
        retrying("mkdir", path) { Glibc.mkdir(path, mode) }
    }

    package static func rmdir(_ path: String) -> Result<Int32, SystemError> {
        retrying("rmdir", path) { Glibc.rmdir(path) }
    }

    /// `syncfs(2)`: flushes the whole file system holding `fd`.
    package static func syncFileSystem(_ fd: Int32, path: String?) -> Result<Int32, SystemError> {
        retrying("syncfs", path) { c_syncfs(fd) }
    }

    /// `sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`: starts writeback of the file's dirty
    /// pages without waiting. Advisory: failures are ignored by callers (fsync follows).
    package static func startWriteback(_ fd: Int32) -> Result<Int32, SystemError> {
        retrying("sync_file_range", nil) { c_sync_file_range(fd, 0, 0, 2 /* SYNC_FILE_RANGE_WRITE */) }
    }

    package static func lock(_ fd: Int32, _ operation: Int32, path: String?) -> Result<Int32, SystemError> {
        retrying("flock", path) { flock(fd, operation) }
    }

    /// The names in a directory (without "." and ".."), or ENOENT.
    package static func listDirectory(_ path: String) -> Result<[String], SystemError> {
        guard let dir = opendir(path) else { return .failure(SystemError(call: "opendir", path: path, errno: errno)) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return .success(names)
    }
}

// Linux calls that the Glibc module does not export (they need _GNU_SOURCE); both take plain
// integer arguments, so binding them by symbol name is safe.
@_silgen_name("syncfs")
private func c_syncfs(_ fd: Int32) -> Int32

@_silgen_name("sync_file_range")
private func c_sync_file_range(_ fd: Int32, _ offset: Int64, _ count: Int64, _ flags: UInt32) -> Int32
