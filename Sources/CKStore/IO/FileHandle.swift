import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An open file descriptor that closes itself when it goes out of scope.
///
/// `~Copyable`, so it cannot be closed twice or leaked by a copy. Call `close()` when the close
/// error matters (after writing); `deinit` closes and ignores errors.
package struct FileHandle: ~Copyable {
    /// The raw descriptor (-1 once closed).
    package private(set) var fd: Int32
    /// The path it was opened from (for error messages).
    package let path: String

    /// Wraps an already-open descriptor (e.g. standard input), taking ownership.
    package init(adopting fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Opens `path` with `flags` (`O_CLOEXEC` is always added).
    package init(path: String, flags: Int32, mode: mode_t = 0o644) throws(SystemError) {
        self.fd = try Sys.open(path, flags, mode).get()
        self.path = path
    }

    /// Opens `path` read-only.
    package static func openForReading(_ path: String) throws(SystemError) -> FileHandle {
        try FileHandle(path: path, flags: O_RDONLY)
    }

    deinit {
        if fd >= 0 { _ = Sys.close(fd) }
    }

    /// Closes the descriptor, reporting the error (which can reveal a failed delayed write).
    /// (`discard self` would be the natural way to skip `deinit`, but it needs trivially
    /// destroyed stored properties, and `path` is a String; so `deinit` sees fd == -1.)
    package consuming func close() throws(SystemError) {
        let result = Sys.close(fd)
        fd = -1
        _ = try result.get()
    }

    // MARK: - Reading

    /// Reads until `buffer` is full or the file ends; returns the number of bytes read.
    /// A count smaller than `buffer.count` means end of file.
    package func readFully(into buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try Sys.read(fd, buffer.baseAddress! + done, buffer.count - done, path: path).get()
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads exactly `buffer.count` bytes at `offset`; returns the count actually read, which is
    /// smaller only when the file is shorter (callers treat that as corruption).
    package func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(SystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try Sys.pread(fd, buffer.baseAddress! + done, buffer.count - done, offset + done, path: path).get()
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// The file's size in bytes.
    package func size() throws(SystemError) -> Int {
        try Sys.fstatSize(fd, path: path).get()
    }

    // MARK: - Writing

    /// Writes all of `bytes`, looping over short writes.
    package func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let n = try Sys.write(fd, bytes.baseAddress! + done, bytes.count - done, path: path).get()
            done += n
        }
    }

    /// Writes all of `bytes` at `offset`, looping over short writes.
    package func pwriteAll(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let n = try Sys.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, offset + done, path: path).get()
            done += n
        }
    }

    /// Flushes the file's data and metadata to stable storage.
    package func sync() throws(SystemError) {
        _ = try Sys.fsync(fd, path: path).get()
    }
}

/// File-system helpers built on `Sys`.
package enum FileSystem {
    /// Creates `path` as a directory if it does not exist.
    package static func makeDirectory(_ path: String) throws(SystemError) {
        switch Sys.mkdir(path) {
        case .success: return
        case .failure(let e) where e.isAlreadyExists: return
        case .failure(let e): throw e
        }
    }

    /// Creates `path` and any missing parent directories (`mkdir -p`).
    package static func makeDirectories(_ path: String) throws(SystemError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            try makeDirectory(prefix)
            prefix += "/"
        }
    }

    /// Fsyncs a directory so that entries created or removed in it are durable.
    package static func syncDirectory(_ path: String) throws(SystemError) {
        let dir = try FileHandle(path: path, flags: O_RDONLY | O_DIRECTORY)
        try dir.sync()
        try dir.close()
    }

    /// True when something exists at `path`. Only `ENOENT` counts as absent: any other
    /// failure (permissions, I/O) is reported as present so that callers never create (and
    /// overwrite) a file they merely could not see.
    package static func exists(_ path: String) -> Bool {
        if case .failure(let e) = Sys.fileStatus(path), e.isNotFound { return false }
        return true
    }

    /// A name for a temporary file that no other process picks: pid, time and a counter.
    /// When `prefix`'s last component is too long for the file name to fit in NAME_MAX (255
    /// bytes), it is cut and a hash of the whole component appended (see `fitting`).
    package static func temporaryName(prefix: String) -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let n = temporaryCounter.add(1, ordering: .relaxed).oldValue
        let suffix = ".tmp-\(getpid())-\(ts.tv_sec)\(ts.tv_nsec)-\(n)"
        return fitting(prefix, room: suffix.utf8.count) + suffix
    }

    /// The longest file name (one path component) Linux file systems accept, in bytes.
    static let maximumNameLength = 255

    /// `path` unchanged when its last component plus `room` bytes fits in
    /// `maximumNameLength`; otherwise the component is cut at a character boundary and
    /// `-` and 16 hex digits of its SHA-256 appended, so that distinct long names stay distinct.
    package static func fitting(_ path: String, room: Int) -> String {
        let slash = path.utf8.lastIndex(of: UInt8(ascii: "/"))
        let dir = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard name.utf8.count + room > maximumNameLength else { return path }
        let hash = "-" + SHA256Digest.hash(Array(name.utf8)).hex.prefix(16)
        let budget = max(0, maximumNameLength - room - hash.utf8.count)
        var kept = ""
        for c in name.unicodeScalars {
            if kept.utf8.count + String(c).utf8.count > budget { break }
            kept.unicodeScalars.append(c)
        }
        return dir + kept + hash
    }

    /// Removes a file, ignoring "not found".
    package static func removeIfPresent(_ path: String) {
        _ = Sys.unlink(path)
    }
}

private let temporaryCounter = Atomic<Int>(0)
