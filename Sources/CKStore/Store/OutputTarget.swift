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
/// removed unless `commit()` renames it into place.
public final class OutputWriter {
    private var handle: FileHandle?
    private let temporaryPath: String?
    private let finalPath: String?
    private var committed = false
    /// Bytes written so far.
    public private(set) var bytesWritten = 0

    /// Opens the target for writing.
    public init(_ target: OutputTarget) throws(CKStoreError) {
        switch target {
        case .standardOutput:
            handle = FileHandle(adopting: dup(1), path: "<stdout>")
            temporaryPath = nil
            finalPath = nil
        case .file(let path):
            if case .success(let st) = Sys.fileStatus(path), !st.isRegular {
                // A device or FIFO (/dev/null, a named pipe): write to it directly; renaming a
                // temporary file over it would replace the device.
                do {
                    handle = try FileHandle(path: path, flags: O_WRONLY)
                } catch {
                    throw CKStoreError(.environment, "cannot write \(path): \(error)", cause: error)
                }
                temporaryPath = nil
                finalPath = path
                return
            }
            let slash = path.lastIndex(of: "/")
            let dir = slash.map { String(path[..<$0]) } ?? "."
            let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
            let temp = FileSystem.temporaryName(prefix: "\(dir.isEmpty ? "/" : dir)/.\(base)")
            do {
                handle = try FileHandle(path: temp, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
            } catch {
                throw CKStoreError(.environment, "cannot write \(path): \(error)", cause: error)
            }
            temporaryPath = temp
            finalPath = path
        }
    }

    deinit {
        if !committed, let temporaryPath { FileSystem.removeIfPresent(temporaryPath) }
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
    }

    /// Appends bytes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(CKStoreError) {
        do {
            try handle!.writeAll(bytes)
            bytesWritten += bytes.count
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
        } catch {
            throw CKStoreError(.environment, "cannot write \(finalPath ?? "<stdout>"): \(error)", cause: error)
        }
    }
}
