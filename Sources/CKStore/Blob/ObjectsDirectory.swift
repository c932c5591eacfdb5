#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A safe walk of `objects/` for the commands that list and delete there (`gc`, `rm`, `fsck`,
/// `stats`).
///
/// Nothing inside `objects/` is ever followed through a symbolic link: the fan-out folders are
/// opened with `openat(objects, "ab", O_DIRECTORY | O_NOFOLLOW)` relative to a descriptor of
/// `objects/`, entries are examined with `fstatat(…, AT_SYMLINK_NOFOLLOW)`, and files are
/// unlinked or renamed with `unlinkat`/`renameat` relative to the folder descriptor they were
/// found in. Only two kinds of names are ckstore's own:
///
/// - a blob: a regular file named by 64 lowercase hex digits, in the folder named by its first
///   two digits;
/// - a temporary file of an interrupted blob write: a regular file in the same place named
///   `<64 hex>.tmp-<pid>-<digits>-<digits>` (what `FileSystem.temporaryName` makes for a
///   blob's final path).
///
/// Everything else — symbolic links (to folders or files), other names, folders inside a
/// fan-out folder, devices — is *foreign*: reported, never traversed, never deleted.
struct ObjectsListing {
    /// A regular file with a blob name.
    struct Blob {
        /// The chunk address its name gives.
        let id: SHA256Digest
        /// Its size in bytes.
        let size: Int
    }

    /// A regular file with one of ckstore's temporary names.
    struct Temporary {
        /// The fan-out folder's name (2 hex digits).
        let folder: String
        /// The file's name.
        let name: String
        /// Its size in bytes.
        let size: Int
    }

    /// Something that is not ckstore's: left alone.
    struct Foreign: CustomStringConvertible {
        /// Its path relative to `objects/` ("ab" or "ab/name").
        let path: String
        /// What it is ("symbolic link", "regular file with a foreign name", …).
        let kind: String
        var description: String { "objects/\(path) (\(kind))" }
    }

    /// Blob files, sorted by name.
    var blobs: [Blob] = []
    /// Temporary files of interrupted writes.
    var temporary: [Temporary] = []
    /// Foreign entries.
    var foreign: [Foreign] = []
}

/// The state of one blob's name, without following links.
package enum BlobEntryState: Equatable, Sendable {
    /// No such name (or its fan-out folder does not exist).
    case missing
    /// A regular file of this size.
    case regular(size: Int)
    /// Something ckstore will not read through or delete: the blob name or its fan-out folder
    /// is a symbolic link, a folder, a device…
    case foreign(String)
}

/// Name rules for `objects/`.
enum ObjectNames {
    /// True for 2·n lowercase hex digits (only `0-9a-f`).
    static func isLowercaseHex(_ s: Substring.UTF8View, count: Int) -> Bool {
        s.count == count && s.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }
    }

    /// True when `name` is a fan-out folder name: 2 lowercase hex digits.
    static func isFolderName(_ name: String) -> Bool {
        isLowercaseHex(Substring(name).utf8, count: 2)
    }

    /// The blob address when `name` is a blob name that belongs in `folder`.
    static func blobID(_ name: String, folder: String) -> SHA256Digest? {
        guard isLowercaseHex(Substring(name).utf8, count: 64), name.hasPrefix(folder) else { return nil }
        return SHA256Digest(hex: name)
    }

    /// True when `name` is what `FileSystem.temporaryName(prefix: "<folder>/<64 hex>")` makes:
    /// `<64 hex>.tmp-<pid>-<seconds><nanoseconds>-<counter>`, the hex starting with `folder`.
    static func isTemporaryBlobName(_ name: String, folder: String) -> Bool {
        let parts = name.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, isLowercaseHex(parts[0].utf8, count: 64), parts[0].hasPrefix(folder),
            parts[1].hasPrefix("tmp-")
        else { return false }
        let numbers = parts[1].dropFirst(4).split(separator: "-", omittingEmptySubsequences: false)
        return numbers.count == 3
            && numbers.allSatisfy { !$0.isEmpty && $0.utf8.count <= 40 && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }
    }
}

/// `stat` fields the walk needs.
private struct EntryStat {
    let mode: mode_t
    let size: Int
    var isRegular: Bool { mode & S_IFMT == S_IFREG }
    var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
    var isSymbolicLink: Bool { mode & S_IFMT == S_IFLNK }

    /// What a foreign entry of this type is called in reports.
    var kindName: String {
        switch mode & S_IFMT {
        case S_IFLNK: return "symbolic link, not followed"
        case S_IFDIR: return "folder"
        case S_IFREG: return "regular file"
        default: return "special file"
        }
    }
}

/// `*at` system calls relative to a directory descriptor, never following a final symlink
/// (`Sys` holds the path-based ones). Each retries on `EINTR`.
enum SysAt {
    private static func retrying(_ call: String, _ path: String, _ body: () -> Int32) -> Result<Int32, SystemError> {
        while true {
            let r = body()
            if r >= 0 { return .success(r) }
            if errno == EINTR { continue }
            return .failure(SystemError(call: call, path: path, errno: errno))
        }
    }

    /// Opens `name` inside `dir` as a folder, failing (ELOOP/ENOTDIR) on a symlink or non-folder.
    static func openDirectory(_ dir: Int32, _ name: String, path: String) -> Result<Int32, SystemError> {
        retrying("openat", path) { openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
    }

    /// Opens `name` inside `dir` for reading, failing (ELOOP) on a symlink.
    static func openFile(_ dir: Int32, _ name: String, path: String) -> Result<Int32, SystemError> {
        retrying("openat", path) { openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
    }

    /// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
    fileprivate static func status(_ dir: Int32, _ name: String, path: String) -> Result<EntryStat, SystemError> {
        var st = stat()
        return retrying("fstatat", path) { fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) }.map { _ in
            EntryStat(mode: st.st_mode, size: Int(st.st_size))
        }
    }

    /// `unlinkat(dir, name, 0)`: removes the name itself (a symlink's target is never touched).
    static func unlink(_ dir: Int32, _ name: String, path: String) -> Result<Int32, SystemError> {
        retrying("unlinkat", path) { unlinkat(dir, name, 0) }
    }

    /// `renameat(from, name, to, newName)`.
    static func rename(_ from: Int32, _ name: String, _ to: Int32, _ newName: String, path: String) -> Result<Int32, SystemError> {
        retrying("renameat", path) { renameat(from, name, to, newName) }
    }

    /// The names in an open folder (without "." and ".."); the descriptor stays open.
    static func names(_ dir: Int32, path: String) -> Result<[String], SystemError> {
        let copy = dup(dir)
        guard copy >= 0 else { return .failure(SystemError(call: "dup", path: path, errno: errno)) }
        guard let stream = fdopendir(copy) else {
            let code = errno
            close(copy)
            return .failure(SystemError(call: "fdopendir", path: path, errno: code))
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return .success(names)
    }
}

/// The value, nil for ENOENT, or the error.
private func present<T>(_ result: Result<T, SystemError>) throws(SystemError) -> T? {
    switch result {
    case .success(let value): return value
    case .failure(let e) where e.isNotFound: return nil
    case .failure(let e): throw e
    }
}

/// An open descriptor of a folder, closed on deinit.
struct DirectoryHandle: ~Copyable {
    /// The descriptor.
    let fd: Int32
    /// Its path, for messages.
    let path: String

    /// Opens `path` (which may itself be a symlink: the store may keep `objects/` elsewhere).
    init(path: String) throws(SystemError) {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError(call: "open", path: path, errno: errno) }
        self.fd = fd
        self.path = path
    }

    /// Opens the fan-out folder `name` inside this one, refusing a symlink.
    init(in parent: borrowing DirectoryHandle, _ name: String) throws(SystemError) {
        self.path = "\(parent.path)/\(name)"
        self.fd = try SysAt.openDirectory(parent.fd, name, path: "\(parent.path)/\(name)").get()
    }

    deinit { Glibc.close(fd) }
}

extension LocalBlobStore {
    /// Lists `objects/` without following any symlink inside it (see `ObjectsListing`).
    func listObjects() throws(SystemError) -> ObjectsListing {
        var listing = ObjectsListing()
        let root = try DirectoryHandle(path: self.root)
        for name in try SysAt.names(root.fd, path: self.root).get().sorted() {
            // An entry that vanished since readdir (a concurrent put's temporary file, while
            // fsck shares the lock) is skipped.
            guard let st = try present(SysAt.status(root.fd, name, path: "\(self.root)/\(name)")) else { continue }
            guard ObjectNames.isFolderName(name), st.isDirectory else {
                let kind = st.isDirectory ? "folder with a foreign name" : st.kindName
                listing.foreign.append(ObjectsListing.Foreign(path: name, kind: kind))
                continue
            }
            let folder: DirectoryHandle
            do {
                folder = try DirectoryHandle(in: root, name)
            } catch {
                // Replaced by a symlink since the fstatat (ELOOP/ENOTDIR), or unreadable.
                listing.foreign.append(ObjectsListing.Foreign(path: name, kind: "not opened: \(error)"))
                continue
            }
            for entry in try SysAt.names(folder.fd, path: folder.path).get().sorted() {
                guard let est = try present(SysAt.status(folder.fd, entry, path: "\(folder.path)/\(entry)")) else { continue }
                if est.isRegular, let id = ObjectNames.blobID(entry, folder: name) {
                    listing.blobs.append(ObjectsListing.Blob(id: id, size: est.size))
                } else if est.isRegular, ObjectNames.isTemporaryBlobName(entry, folder: name) {
                    listing.temporary.append(ObjectsListing.Temporary(folder: name, name: entry, size: est.size))
                } else {
                    let kind = est.isRegular ? "regular file with a foreign name" : est.kindName
                    listing.foreign.append(ObjectsListing.Foreign(path: "\(name)/\(entry)", kind: kind))
                }
            }
        }
        return listing
    }

    /// The state of blob `id`'s name, found without following a symlink (neither the fan-out
    /// folder nor the file).
    func entryState(of id: SHA256Digest) throws(SystemError) -> BlobEntryState {
        let hex = id.hex
        let folderName = String(hex.prefix(2))
        let root = try DirectoryHandle(path: self.root)
        switch SysAt.status(root.fd, folderName, path: "\(self.root)/\(folderName)") {
        case .failure(let e) where e.isNotFound: return .missing
        case .failure(let e): throw e
        case .success(let st) where !st.isDirectory: return .foreign("its folder objects/\(folderName) is a \(st.kindName)")
        case .success: break
        }
        let folder: DirectoryHandle
        do {
            folder = try DirectoryHandle(in: root, folderName)
        } catch {
            if error.errno == ELOOP || error.errno == ENOTDIR { return .foreign("its folder objects/\(folderName) is not a plain folder") }
            throw error
        }
        switch SysAt.status(folder.fd, hex, path: "\(folder.path)/\(hex)") {
        case .failure(let e) where e.isNotFound: return .missing
        case .failure(let e): throw e
        case .success(let st) where st.isRegular: return .regular(size: st.size)
        case .success(let st): return .foreign("objects/\(folderName)/\(hex) is a \(st.kindName)")
        }
    }

    /// Reads the first `count` bytes of blob `id` and its size, refusing symlinks.
    func readPrefixNoFollow(_ id: SHA256Digest, count: Int) throws(SystemError) -> (bytes: [UInt8], size: Int) {
        let hex = id.hex
        let root = try DirectoryHandle(path: self.root)
        let folder = try DirectoryHandle(in: root, String(hex.prefix(2)))
        let file = FileHandle(
            adopting: try SysAt.openFile(folder.fd, hex, path: "\(folder.path)/\(hex)").get(), path: "\(folder.path)/\(hex)")
        let size = try file.size()
        let wanted = min(count, max(size, 0))
        let scratch = ByteBuffer(capacity: max(wanted, 1))
        let n = try file.pread(into: scratch.prefix(wanted), at: 0)
        return (Array(UnsafeRawBufferPointer(rebasing: scratch.storage[0..<n])), size)
    }

    /// Unlinks the regular file `name` in fan-out folder `folderName`; anything that is not a
    /// regular file with a blob or temporary name (a symlink, say) is left alone. Returns true
    /// when a file was removed.
    @discardableResult
    func removeOwnFile(folder folderName: String, name: String) throws(SystemError) -> Bool {
        guard ObjectNames.isFolderName(folderName),
            ObjectNames.blobID(name, folder: folderName) != nil || ObjectNames.isTemporaryBlobName(name, folder: folderName)
        else { return false }
        let root = try DirectoryHandle(path: self.root)
        let folder: DirectoryHandle
        do {
            folder = try DirectoryHandle(in: root, folderName)
        } catch {
            if error.isNotFound || error.errno == ELOOP || error.errno == ENOTDIR { return false }
            throw error
        }
        switch SysAt.status(folder.fd, name, path: "\(folder.path)/\(name)") {
        case .failure(let e) where e.isNotFound: return false
        case .failure(let e): throw e
        case .success(let st) where !st.isRegular: return false
        case .success: break
        }
        switch SysAt.unlink(folder.fd, name, path: "\(folder.path)/\(name)") {
        case .success:
            markDirty(folder: folder.path)
            return true
        case .failure(let e) where e.isNotFound: return false
        case .failure(let e): throw e
        }
    }

    /// Moves the regular blob file of `id` into `destination` (a folder outside `objects/`)
    /// as `newName`, refusing symlinks. Returns false when there is no regular file to move.
    func moveAside(_ id: SHA256Digest, to destination: String, as newName: String) throws(SystemError) -> Bool {
        let hex = id.hex
        let root = try DirectoryHandle(path: self.root)
        let folder: DirectoryHandle
        do {
            folder = try DirectoryHandle(in: root, String(hex.prefix(2)))
        } catch {
            if error.isNotFound || error.errno == ELOOP || error.errno == ENOTDIR { return false }
            throw error
        }
        guard case .success(let st) = SysAt.status(folder.fd, hex, path: "\(folder.path)/\(hex)"), st.isRegular else { return false }
        try FileSystem.makeDirectory(destination)
        let target = try DirectoryHandle(path: destination)
        _ = try SysAt.rename(folder.fd, hex, target.fd, newName, path: "\(destination)/\(newName)").get()
        markDirty(folder: folder.path)
        try FileSystem.syncDirectory(destination)
        return true
    }
}
