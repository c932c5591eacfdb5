import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How `LocalBlobStore` writes the data of a new blob file.
package enum BlobWriteMode: String, Sendable {
    /// Large blobs bypass the page cache (`O_DIRECT`): the page-aligned prefix is written
    /// straight from the (page-aligned) encode buffer, the tail through the page cache. Blobs
    /// under `LocalBlobStore.directMinimum`, unaligned buffers, and file systems that refuse
    /// `O_DIRECT` (at open or at the first write, `EINVAL`) use buffered writes.
    case direct
    /// Every blob through the page cache (`write(2)`), started towards the disk with
    /// `sync_file_range` and fsynced before the metadata commit.
    case buffered

    /// The mode `CKSTORE_BLOB_WRITES` (`direct` or `buffered`) names, else `buffered`: direct
    /// writes save CPU time but were no faster here, and leave the new blobs out of the page
    /// cache, so that a `get` or LAWA right after a put reads them from the disk
    /// (docs/BENCHMARKS.md, "put and get against the device").
    static let fromEnvironment: BlobWriteMode = {
        guard let raw = getenv("CKSTORE_BLOB_WRITES") else { return .buffered }
        return BlobWriteMode(rawValue: String(cString: raw)) ?? .buffered
    }()
}

extension LocalBlobStore {
    /// Linux's `O_DIRECT` (the Glibc module only exports it with `_GNU_SOURCE`).
    #if arch(arm64) || arch(arm)
        static let directFlag: Int32 = 0o200000
    #else
        static let directFlag: Int32 = 0o40000
    #endif

    /// The alignment of `O_DIRECT` buffers, lengths and offsets: the page size, a multiple of
    /// every logical block size Linux block devices use.
    static let directAlignment = 4096

    /// Blobs smaller than this are written through the page cache: for them the copy costs
    /// little and the synchronous device write would cost a round trip each.
    static let directMinimum = 256 << 10

    /// Creates `temp` (mode 0444, `O_EXCL`), writes `bytes` into it, starts or completes its
    /// durability as `syncMode` says, and closes it. The caller removes `temp` on failure.
    func writeBlobFile(_ temp: String, bytes: UnsafeRawBufferPointer) throws(SystemError) {
        let flags = O_WRONLY | O_CREAT | O_EXCL
        let aligned = bytes.count & ~(Self.directAlignment - 1)
        let alignedBuffer = bytes.baseAddress.map { Int(bitPattern: $0) % Self.directAlignment == 0 } ?? false
        if writeMode == .direct, aligned >= Self.directMinimum, alignedBuffer, !directRefused.load(ordering: .relaxed) {
            switch Sys.openDirect(temp, flags, 0o444) {
            case .success(let fd):
                let file = FileHandle(adopting: fd, path: temp)
                do {
                    try file.writeAll(UnsafeRawBufferPointer(rebasing: bytes[0..<aligned]))
                } catch  where error.errno == EINVAL {
                    // Opened, but the file system refuses direct I/O of this buffer: start
                    // again through the page cache.
                    directRefused.store(true, ordering: .relaxed)
                    _ = try? file.close()
                    FileSystem.removeIfPresent(temp)
                    return try writeBuffered(temp, bytes: bytes, flags: flags)
                }
                // The tail (shorter than a page) goes through the page cache.
                if aligned < bytes.count {
                    _ = fcntl(file.fd, F_SETFL, fcntl(file.fd, F_GETFL) & ~Self.directFlag)
                    try file.writeAll(UnsafeRawBufferPointer(rebasing: bytes[aligned...]))
                }
                try finish(file)
                return
            case .failure(let e) where e.errno == EINVAL:
                // The file system does not support O_DIRECT; Linux may have created the file
                // before refusing the flag.
                directRefused.store(true, ordering: .relaxed)
                FileSystem.removeIfPresent(temp)
            case .failure(let e):
                throw e
            }
        }
        try writeBuffered(temp, bytes: bytes, flags: flags)
    }

    private func writeBuffered(_ temp: String, bytes: UnsafeRawBufferPointer, flags: Int32) throws(SystemError) {
        let file = try FileHandle(path: temp, flags: flags, mode: 0o444)
        try file.writeAll(bytes)
        try finish(file)
    }

    /// The durability step of a freshly written blob file, then close.
    private func finish(_ file: consuming FileHandle) throws(SystemError) {
        if durable {
            switch syncMode {
            case .eachBlob: try file.sync()
            case .batch, .fileSystem: _ = Sys.startWriteback(file.fd)
            }
        }
        try file.close()
    }
}
