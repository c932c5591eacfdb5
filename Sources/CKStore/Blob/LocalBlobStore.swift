import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Blobs as files under `objects/<first 2 hex>/<64 hex>`.
///
/// Writes go to a temporary file in the destination folder (large blobs with `O_DIRECT`, see
/// `BlobWriteMode`), are fsynced, then linked into
/// place with `link(2)`, which fails instead of replacing an existing name; the temporary
/// name is then unlinked. Folders that received new names are remembered and fsynced by
/// `syncNamespace()`, once per folder per put, rather than after every blob.
package final class LocalBlobStore: BlobStore {
    /// The `objects/` folder.
    let root: String
    /// Whether blob writes are fsynced (always, except for benchmarks that say otherwise).
    let durable: Bool
    private let dirtyFolders = Mutex<Set<String>>([])
    /// Blob files written (or found) since the last `syncNamespace()`, whose data must be
    /// fsynced before metadata may refer to them.
    private let unsynced = Mutex<[String]>([])
    /// How blob data is made durable (see `SyncMode`).
    let syncMode: SyncMode
    /// How blob data is written (see `BlobWriteMode`; `CKSTORE_BLOB_WRITES` overrides).
    let writeMode: BlobWriteMode
    /// Set once the file system refused `O_DIRECT`: later blobs go straight to buffered writes.
    let directRefused = Atomic<Bool>(false)

    /// How a batch of new blobs is made durable before the metadata commit.
    package enum SyncMode: String, Sendable {
        /// fsync each blob right after writing it, in the worker that wrote it.
        case eachBlob
        /// Start writeback right after writing (`sync_file_range`), fsync every blob of the batch
        /// in `syncNamespace()` (by then most data is on disk), then the folders.
        case batch
        /// `syncfs(2)` on the objects folder once in `syncNamespace()`: one journal commit for
        /// the whole batch, but it also flushes other processes' dirty data on that file system.
        case fileSystem
    }

    package var properties: BlobStoreProperties { BlobStoreProperties(hasAtomicCreate: true) }

    /// Where `quarantine(_:)` moves damaged blobs (`<store>/quarantine`).
    let quarantineFolder: String

    /// Opens the blob folder at `root` (created by the store at `init`); damaged blobs are
    /// moved to `quarantine` (default: a `quarantine` folder beside `root`).
    package init(
        root: String, durable: Bool = true, syncMode: SyncMode = .batch, writeMode: BlobWriteMode = .fromEnvironment,
        quarantine: String? = nil
    ) {
        self.root = root
        self.writeMode = writeMode
        self.durable = durable
        self.syncMode = syncMode
        var parent = root
        while parent.hasSuffix("/") && parent.count > 1 { parent.removeLast() }
        if let slash = parent.lastIndex(of: "/") { parent = String(parent[..<slash]) } else { parent = "." }
        self.quarantineFolder = quarantine ?? "\(parent)/quarantine"
    }

    package var location: String { root }

    /// The folder holding blobs whose name starts with the 2 hex digits of `id`.
    func folder(for id: SHA256Digest) -> String {
        "\(root)/\(id.hex.prefix(2))"
    }

    /// The path of the blob file for `id`.
    func path(for id: SHA256Digest) -> String {
        let hex = id.hex
        return "\(root)/\(hex.prefix(2))/\(hex)"
    }

    package func put(_ id: SHA256Digest, bytes: UnsafeRawBufferPointer, isValid: (UnsafeRawBufferPointer) -> Bool) throws -> (
        isNew: Bool, size: Int
    ) {
        let dir = folder(for: id)
        let final = path(for: id)
        let existing = try? readExisting(final)
        if let existing, existing.withUnsafeBytes({ isValid($0) }) {
            // A reused file may be a crashed put's leftover whose name was never made durable:
            // sync its folder as well as its data before anything refers to it.
            if durable { unsynced.withLock { $0.append(final) } }
            _ = dirtyFolders.withLock { $0.insert(dir) }
            return (false, existing.count)
        }
        do {
            try FileSystem.makeDirectory(dir)
        } catch {
            throw BlobStoreError.io(error)
        }
        let temp = FileSystem.temporaryName(prefix: "\(dir)/\(id.hex)")
        do {
            try writeBlobFile(temp, bytes: bytes)
            switch Sys.link(temp, final) {
            case .success:
                FileSystem.removeIfPresent(temp)
            case .failure(let e) where e.isAlreadyExists:
                // Someone else created the name meanwhile, or a damaged leftover is there.
                if let other = try? readExisting(final), other.withUnsafeBytes({ isValid($0) }) {
                    FileSystem.removeIfPresent(temp)
                    if durable { unsynced.withLock { $0.append(final) } }
                    _ = dirtyFolders.withLock { $0.insert(dir) }
                    return (false, other.count)
                }
                _ = try Sys.rename(temp, final).get()
            case .failure(let e):
                throw e
            }
        } catch let error as SystemError {
            FileSystem.removeIfPresent(temp)
            throw BlobStoreError.io(error)
        }
        _ = dirtyFolders.withLock { $0.insert(dir) }
        if durable && syncMode != .eachBlob { unsynced.withLock { $0.append(final) } }
        return (true, bytes.count)
    }

    private func readExisting(_ path: String) throws -> [UInt8] {
        let file = try FileHandle.openForReading(path)
        let size = try file.size()
        guard size <= Self.maxBlobSize else { throw SystemError(call: "read", path: path, errno: EFBIG) }
        var bytes = [UInt8](repeating: 0, count: size)
        let n = try bytes.withUnsafeMutableBytes { try file.pread(into: $0, at: 0) }
        return Array(bytes[0..<n])
    }

    /// Fsyncs one file or folder; a blob removed since it was written (a failed put's
    /// cleanup) needs no sync and is skipped.
    private static func syncFile(_ path: String) throws(SystemError) {
        let file: FileHandle
        do {
            file = try FileHandle.openForReading(path)
        } catch  where error.isNotFound {
            return
        }
        try file.sync()
        try file.close()
    }

    /// Fsyncs files and folders from several threads at once: ext4 and XFS merge concurrent
    /// fsyncs into one journal commit (group commit), so a batch of blobs costs a few commits
    /// instead of one per blob.
    private func syncInParallel(_ paths: [String]) throws(SystemError) {
        guard paths.count > 1 else {
            for p in paths { try Self.syncFile(p) }
            return
        }
        let threads = min(16, paths.count)
        let firstError = Mutex<SystemError?>(nil)
        let done = DispatchGroup()
        for t in 0..<threads {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                var i = t
                while i < paths.count {
                    do throws(SystemError) {
                        try LocalBlobStore.syncFile(paths[i])
                    } catch {
                        firstError.withLock { if $0 == nil { $0 = error } }
                        return
                    }
                    i += threads
                }
            }
            thread.stackSize = 256 << 10
            thread.start()
        }
        done.wait()
        if let error = firstError.withLock({ $0 }) { throw error }
    }

    /// Asks the kernel to start writing the file's dirty pages now, without waiting
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so the final fsync finds little left to do.
    private func startWriteback(_ fd: Int32) {
        _ = Sys.startWriteback(fd)
    }

    /// Opens a blob file for reading: a missing file is `.notFound`, other failures `.io`.
    private func openBlob(_ id: SHA256Digest) throws(BlobStoreError) -> FileHandle {
        do {
            return try FileHandle.openForReading(path(for: id))
        } catch let e where e.isNotFound {
            throw BlobStoreError.notFound(id)
        } catch {
            throw BlobStoreError.io(error)
        }
    }

    /// The largest blob file of a valid chunk: a version 2 header and the LZ4 bound of the
    /// largest raw length. Larger files are damage and are never read into memory.
    package static let maxBlobSize = BlobHeader.size + LZ4.bound(BlobHeader.maxRawLength)

    package func read(_ id: SHA256Digest, into buffer: inout ByteBuffer) throws -> Int {
        let file = try openBlob(id)
        let size: Int
        do {
            size = try file.size()
        } catch {
            throw BlobStoreError.io(error)
        }
        guard size <= Self.maxBlobSize else { throw BlobStoreError.tooLarge(id, size) }
        if buffer.capacity < size { buffer = ByteBuffer(capacity: size) }
        do {
            let n = try file.pread(into: buffer.prefix(size), at: 0)
            buffer.count = n
            return n
        } catch {
            throw BlobStoreError.io(error)
        }
    }

    /// Reads the first `count` bytes without following a symlink (fsck reads through this).
    package func readPrefix(_ id: SHA256Digest, count: Int) throws -> (bytes: [UInt8], size: Int) {
        do {
            return try readPrefixNoFollow(id, count: count)
        } catch let e where e.isNotFound {
            throw BlobStoreError.notFound(id)
        } catch {
            throw BlobStoreError.io(error)
        }
    }

    /// Maps the blob file read-only (`mmap` with `MAP_POPULATE`, so a file in the page cache is
    /// mapped without copying it) and calls `body` with its bytes; unmaps afterwards.
    package func withBytes<T>(of id: SHA256Digest, scratch: inout ByteBuffer, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let file = try openBlob(id)
        let size: Int
        do {
            size = try file.size()
        } catch {
            throw BlobStoreError.io(error)
        }
        guard size <= Self.maxBlobSize else { throw BlobStoreError.tooLarge(id, size) }
        guard size > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        // Cold blobs: ask for the whole file in one readahead rather than the page faults'
        // small windows (no effect on a file already in the page cache).
        _ = posix_fadvise(file.fd, 0, off_t(size), POSIX_FADV_WILLNEED)
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, file.fd, 0), mapping != MAP_FAILED else {
            // Fall back to reading when the file system cannot map.
            let n = try read(id, into: &scratch)
            return try body(UnsafeRawBufferPointer(rebasing: scratch.storage[0..<n]))
        }
        defer { munmap(mapping, size) }
        return try body(UnsafeRawBufferPointer(start: mapping, count: size))
    }

    /// Starts reading blob `id` into the page cache (`POSIX_FADV_WILLNEED`), so that a `get`
    /// of blobs that are not cached keeps several reads in flight. Errors are ignored.
    package func prefetch(_ id: SHA256Digest) {
        guard let file = try? FileHandle.openForReading(path(for: id)) else { return }
        _ = posix_fadvise(file.fd, 0, 0, POSIX_FADV_WILLNEED)
    }

    package func size(of id: SHA256Digest) throws -> Int? {
        switch Sys.fileStatus(path(for: id)) {
        case .success(let st): return st.size
        case .failure(let e) where e.isNotFound: return nil
        case .failure(let e): throw BlobStoreError.io(e)
        }
    }

    /// Deletes blob `id` if its name is a regular file in a real fan-out folder (a symlink
    /// there, or a symlinked folder, is left alone: see `ObjectsListing`).
    package func remove(_ id: SHA256Digest) throws {
        let hex = id.hex
        do {
            try removeOwnFile(folder: String(hex.prefix(2)), name: hex)
        } catch {
            throw BlobStoreError.io(error)
        }
    }

    /// Records that a fan-out folder's entries changed, so `syncNamespace()` fsyncs it.
    func markDirty(folder: String) {
        _ = dirtyFolders.withLock { $0.insert(folder) }
    }

    /// Every blob file (a regular file with a blob name in its real fan-out folder), without
    /// following symlinks.
    package func forEach(_ body: (SHA256Digest, Int) throws -> Void) throws {
        let listing: ObjectsListing
        do {
            listing = try listObjects()
        } catch {
            throw BlobStoreError.io(error)
        }
        for blob in listing.blobs { try body(blob.id, blob.size) }
    }

    /// Temporary files left in the blob folders by interrupted writes (only names ckstore makes,
    /// regular files in real fan-out folders).
    func temporaryFiles() -> [String] {
        guard let listing = try? listObjects() else { return [] }
        return listing.temporary.map { "\(root)/\($0.folder)/\($0.name)" }
    }

    package func syncNamespace() throws {
        guard durable else { return }
        let folders = dirtyFolders.withLock { set -> Set<String> in
            let copy = set
            set.removeAll()
            return copy
        }
        let files = unsynced.withLock { list -> [String] in
            let copy = list
            list.removeAll()
            return copy
        }
        do throws(SystemError) {
            if syncMode == .fileSystem && !(files.isEmpty && folders.isEmpty) {
                let dir = try FileHandle(path: root, flags: O_RDONLY | O_DIRECTORY)
                _ = try Sys.syncFileSystem(dir.fd, path: root).get()
                try dir.close()
                return
            }
            try syncInParallel(files + folders.sorted())
            if !folders.isEmpty { try FileSystem.syncDirectory(root) }
        } catch {
            throw BlobStoreError.io(error)
        }
    }

    // MARK: - Maintenance (BlobStore)

    package func state(of id: SHA256Digest) throws -> BlobEntryState {
        do {
            return try entryState(of: id)
        } catch {
            throw BlobStoreError.io(error)
        }
    }

    package func listing() throws -> BlobListing {
        let objects: ObjectsListing
        do {
            objects = try listObjects()
        } catch {
            throw BlobStoreError.io(error)
        }
        return BlobListing(
            blobs: objects.blobs.map { BlobListing.Blob(id: $0.id, size: $0.size) },
            temporary: objects.temporary.map { BlobListing.Temporary(name: "\($0.folder)/\($0.name)", size: $0.size) },
            foreign: objects.foreign.map(\.description))
    }

    package func removeTemporary(_ leftover: BlobListing.Temporary) throws -> Bool {
        let parts = leftover.name.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        do {
            return try removeOwnFile(folder: String(parts[0]), name: String(parts[1]))
        } catch {
            throw BlobStoreError.io(error)
        }
    }

    package func quarantine(_ id: SHA256Digest) throws -> String? {
        let name = "\(id.hex).fsck-\(time(nil))-\(getpid())"
        do {
            guard try moveAside(id, to: quarantineFolder, as: name) else { return nil }
        } catch {
            throw BlobStoreError.io(error)
        }
        let folderName = quarantineFolder.split(separator: "/").last.map(String.init) ?? "quarantine"
        return "\(folderName)/\(name)"
    }

    package func quarantined() throws -> (count: Int, location: String) {
        if case .success(let names) = Sys.listDirectory(quarantineFolder) { return (names.count, quarantineFolder) }
        return (0, quarantineFolder)
    }

    package func namespaceProblem() throws -> String? {
        if case .failure(let e) = Sys.fileStatus(root), e.isNotFound { return "\(root) is missing" }
        return nil
    }
}
