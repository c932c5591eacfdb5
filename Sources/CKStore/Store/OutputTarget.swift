#if canImport(Glibc)
    import Glibc
#endif

/// Where `get` writes a safetensors file.
public enum OutputTarget: Sendable {
    /// A file, written atomically: a temporary file beside it, renamed into place when complete.
    case file(String)
    /// Standard output (streamed; a failure part-way leaves partial output and a non-zero exit).
    case standardOutput
}

/// A regular output file that worker threads may write at known offsets (`pwrite`), so that
/// copying decoded chunks into the page cache is spread over all cores instead of one.
/// `@unchecked Sendable`: it holds only the descriptor number and path; `pwrite` at disjoint
/// offsets is safe from several threads, and the owning `OutputWriter` outlives every use.
struct PositionalOutput: @unchecked Sendable {
    let fd: Int32
    let path: String

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(CKStoreError) {
        var done = 0
        while done < bytes.count {
            switch Sys.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, offset + done, path: path) {
            case .success(let n): done += n
            case .failure(let e):
                throw CKStoreError(.environment, "cannot write \(path) at byte \(offset + done): \(e)", cause: e)
            }
        }
    }
}

/// An output being written: owns the descriptor and, for files, the temporary name, which is
/// removed unless `commit()` renames it into place (or, when the process is interrupted by
/// SIGINT/SIGTERM/SIGHUP, by `InterruptCleanup`).
///
/// Where a file target is written:
/// - `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`: descriptor N itself (as
///   `-o -` does), at its current offset, so `get -o /dev/stdout > out` fills `out`;
/// - a device, FIFO or socket, or a symlink to one: written through, in place;
/// - a symlink to a regular file, or a dangling one: the link is followed to its final target
///   and the temporary file is created beside that target and renamed over it, so the link
///   stays and now points to the new content;
/// - anything else: a temporary file beside the path, renamed into place.
public final class OutputWriter {
    private var handle: FileHandle?
    private var temporaryPath: String?
    private let finalPath: String?
    private var committed = false
    private var cleanupToken: Int?
    /// Bytes written so far.
    public private(set) var bytesWritten = 0
    /// Progress reporting, when the caller asked for it.
    var progress: ProgressMeter?

    /// Opens the target for writing.
    public init(_ target: OutputTarget) throws(CKStoreError) {
        switch target {
        case .standardOutput:
            handle = FileHandle(adopting: dup(1), path: "<stdout>")
            OutputWriter.widenPipe(1)
            temporaryPath = nil
            finalPath = nil
        case .file(let path):
            if let fd = OutputWriter.descriptorAlias(path) {
                let copy = dup(fd)
                guard copy >= 0 else {
                    throw CKStoreError(.environment, "cannot write \(path): descriptor \(fd) is not open")
                }
                handle = FileHandle(adopting: copy, path: path)
                OutputWriter.widenPipe(copy)
                temporaryPath = nil
                finalPath = path
                return
            }
            if case .success(let st) = Sys.fileStatus(path), !st.isRegular {
                guard !st.isDirectory else { throw CKStoreError(.badInput, "cannot write \(path): it is a directory") }
                // A device, FIFO or socket (/dev/null, a named pipe), or a link to one: write
                // to it directly; renaming a temporary file over it would replace it.
                do {
                    handle = try FileHandle(path: path, flags: O_WRONLY)
                } catch {
                    throw CKStoreError(.environment, "cannot write \(path): \(error)", cause: error)
                }
                temporaryPath = nil
                finalPath = path
                return
            }
            // A symlink (to a regular file, or dangling): replace its target, keep the link.
            let target = try OutputWriter.followLinks(path)
            let slash = target.lastIndex(of: "/")
            let dir = slash.map { String(target[..<$0]) } ?? "."
            let base = slash.map { String(target[target.index(after: $0)...]) } ?? target
            let temp = FileSystem.temporaryName(prefix: "\(dir.isEmpty ? "" : dir)/.\(OutputWriter.shortened(base))")
            // Registered before it exists: an interrupt between open and register leaves nothing.
            cleanupToken = InterruptCleanup.register(temp)
            do {
                handle = try FileHandle(path: temp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
            } catch {
                InterruptCleanup.unregister(cleanupToken!)
                cleanupToken = nil
                throw CKStoreError(.environment, "cannot write \(path): \(error)", cause: error)
            }
            temporaryPath = temp
            finalPath = target
        }
    }

    /// When `fd` is a pipe, asks for a 1 MiB pipe buffer (`F_SETPIPE_SZ`, the unprivileged
    /// limit by default) instead of 64 KiB, so a reader such as `| cat` is woken 16 times less
    /// often. Not a pipe, or refused: nothing changes.
    static func widenPipe(_ fd: Int32) {
        let getPipeSize: Int32 = 1032, setPipeSize: Int32 = 1031
        guard fcntl(fd, getPipeSize) > 0 else { return }
        _ = fcntl(fd, setPipeSize, Int32(1 << 20))
    }

    /// The descriptor a path names when it is one of the descriptor aliases (`/dev/stdout`,
    /// `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`, `/proc/<own pid>/fd/N`), else nil.
    static func descriptorAlias(_ path: String) -> Int32? {
        switch path {
        case "/dev/stdout": return 1
        case "/dev/stderr": return 2
        default: break
        }
        for prefix in ["/dev/fd/", "/proc/self/fd/", "/proc/\(getpid())/fd/"] where path.hasPrefix(prefix) {
            let rest = path.dropFirst(prefix.count)
            guard !rest.isEmpty, rest.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int32(rest) else { return nil }
            return n
        }
        return nil
    }

    /// Follows `path` through symlinks (at most 40) to the path of the final target, which
    /// need not exist. Relative link targets are taken relative to the link's folder.
    static func followLinks(_ path: String) throws(CKStoreError) -> String {
        var current = path
        for _ in 0..<40 {
            var st = stat()
            guard lstat(current, &st) == 0, st.st_mode & S_IFMT == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current, &buffer, buffer.count - 1)
            guard n > 0 else { return current }
            let target = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasPrefix("/") {
                current = target
            } else {
                let slash = current.lastIndex(of: "/")
                current = slash.map { String(current[...$0]) + target } ?? target
            }
        }
        throw CKStoreError(.badInput, "cannot write \(path): too many levels of symbolic links")
    }

    /// A file name cut to at most 100 bytes (on a character boundary), so that the temporary
    /// name built from it (".NAME.tmp-PID-…") stays within NAME_MAX.
    static func shortened(_ name: String) -> String {
        guard name.utf8.count > 100 else { return name }
        var result = ""
        var bytes = 0
        for character in name {
            let n = character.utf8.count
            guard bytes + n <= 100 else { break }
            result.append(character)
            bytes += n
        }
        return result
    }

    deinit {
        if !committed, let temporaryPath { FileSystem.removeIfPresent(temporaryPath) }
        if let cleanupToken { InterruptCleanup.unregister(cleanupToken) }
    }

    /// A handle for writing at offsets from worker threads, when the output is a regular file
    /// being created (not standard output, a pipe or a device).
    var positional: PositionalOutput? {
        guard temporaryPath != nil, let fd = handle?.fd else { return nil }
        return PositionalOutput(fd: fd, path: finalPath ?? "")
    }

    /// Records `count` bytes written through `positional` after the current end.
    func advance(by count: Int) {
        bytesWritten += count
        progress?.add(count)
    }

    /// Appends bytes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(CKStoreError) {
        do {
            try handle!.writeAll(bytes)
            bytesWritten += bytes.count
            progress?.add(bytes.count)
        } catch {
            throw CKStoreError(.environment, "cannot write \(finalPath ?? "<stdout>") at byte \(bytesWritten): \(error)", cause: error)
        }
    }

    /// Appends bytes.
    public func write(_ bytes: [UInt8]) throws(CKStoreError) {
        var failure: CKStoreError?
        bytes.withUnsafeBytes { p in
            do throws(CKStoreError) { try write(p) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Closes the output; for a file, renames the temporary file into place.
    /// - Parameter sync: fsync the file first (off by default: the store still holds the data).
    public func commit(sync: Bool = false) throws(CKStoreError) {
        guard let h = handle.take() else { return }
        do {
            if sync { try h.sync() }
            try h.close()
            if let temporaryPath, let finalPath {
                _ = try Sys.rename(temporaryPath, finalPath).get()
            }
            committed = true
            if let cleanupToken { InterruptCleanup.unregister(cleanupToken) }
            cleanupToken = nil
        } catch {
            throw CKStoreError(.environment, "cannot write \(finalPath ?? "<stdout>"): \(error)", cause: error)
        }
    }
}
