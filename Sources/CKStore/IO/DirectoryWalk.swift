#if canImport(Glibc)
    import Glibc
#endif

/// A regular file found under a directory being put as a tree.
package struct WalkedFile: Sendable, Equatable {
    /// Its clean path relative to the directory, `/`-separated.
    package let path: String
    /// The path to open it by (the directory joined with `path`; symbolic links on the way are
    /// resolved by the kernel when it is opened).
    package let location: String
    /// Its size when it was found.
    package let size: Int
}

/// Lists the regular files under a directory for `put DIR`: recursively, sorted by the bytes of
/// their relative paths. Symbolic links to regular files are followed (the Hugging Face cache
/// lays a snapshot out as links into a blob folder); every other kind of entry is refused, so
/// that what `get` recreates is exactly what was put:
/// - a symbolic link loop, a dangling link, a link to a directory;
/// - a FIFO, socket or device;
/// - an empty directory (the top one included), which a tree of files cannot represent;
/// - a name that is not valid UTF-8, or a path that is not clean (`TreePath`).
package enum DirectoryWalk {
    /// The most files a directory may hold (far beyond any checkpoint; keeps hostile input bounded).
    package static let maxFiles = 1_000_000

    /// The regular files under `root`.
    /// - Throws: `.badInput` naming the offending path (relative to `root`), or `root` itself
    ///   when it is not a directory or is empty; nothing is read from the files.
    package static func files(under root: String) throws(CKStoreError) -> [WalkedFile] {
        var st = stat()
        guard stat(root, &st) == 0 else {
            let e = errno
            throw CKStoreError(.badInput, "cannot read \(root): \(SystemError(call: "stat", path: root, errno: e))")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw CKStoreError(.badInput, "\(root) is not a directory") }
        var files: [WalkedFile] = []
        try walk(directory: root, relative: "", root: root, into: &files)
        if files.isEmpty { throw CKStoreError(.badInput, "\(root) is an empty directory: a snapshot needs at least one file") }
        return files.sorted { TreePath.precedes($0.path, $1.path) }
    }

    private static func walk(directory: String, relative: String, root: String, into files: inout [WalkedFile]) throws(CKStoreError) {
        let names = try entries(of: directory, shown: relative.isEmpty ? root : relative)
        let found = files.count
        for raw in names {
            guard let name = String(validating: raw, as: UTF8.self) else {
                let shown = String(decoding: raw, as: UTF8.self)
                throw CKStoreError(.badInput, "\(joined(relative, shown)) under \(root): the name is not valid UTF-8")
            }
            let path = joined(relative, name)
            let location = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            if let problem = TreePath.problem(path) { throw CKStoreError(.badInput, "\(path) under \(root): \(problem)") }
            var st = stat()
            guard lstat(location, &st) == 0 else {
                let e = errno
                throw CKStoreError(.badInput, "\(path) under \(root): \(SystemError(call: "lstat", path: location, errno: e))")
            }
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                try walk(directory: location, relative: path, root: root, into: &files)
            case S_IFREG:
                files.append(WalkedFile(path: path, location: location, size: Int(st.st_size)))
            case S_IFLNK:
                var target = stat()
                guard stat(location, &target) == 0 else {
                    let e = errno
                    let what =
                        e == ELOOP ? "a symbolic link loop" : e == ENOENT ? "a dangling symbolic link" : "an unreadable symbolic link"
                    throw CKStoreError(.badInput, "\(path) under \(root) is \(what)")
                }
                switch target.st_mode & S_IFMT {
                case S_IFREG: files.append(WalkedFile(path: path, location: location, size: Int(target.st_size)))
                case S_IFDIR:
                    throw CKStoreError(
                        .badInput, "\(path) under \(root) is a symbolic link to a directory (only links to files are followed)")
                default:
                    throw CKStoreError(
                        .badInput, "\(path) under \(root) is a symbolic link to a \(kind(target.st_mode)), not a regular file")
                }
            default:
                throw CKStoreError(.badInput, "\(path) under \(root) is a \(kind(st.st_mode)), not a regular file")
            }
            if files.count > maxFiles { throw CKStoreError(.badInput, "\(root) holds more than \(maxFiles) files") }
        }
        if files.count == found && !relative.isEmpty {
            throw CKStoreError(.badInput, "\(relative)/ under \(root) is an empty directory, which a snapshot cannot hold")
        }
    }

    private static func joined(_ relative: String, _ name: String) -> String {
        relative.isEmpty ? name : relative + "/" + name
    }

    private static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "FIFO"
        case S_IFSOCK: "socket"
        case S_IFCHR: "character device"
        case S_IFBLK: "block device"
        case S_IFDIR: "directory"
        default: "special file"
        }
    }

    /// The raw names in a directory (without "." and ".."), as bytes.
    private static func entries(of directory: String, shown: String) throws(CKStoreError) -> [[UInt8]] {
        guard let dir = opendir(directory) else {
            let e = errno
            throw CKStoreError(.badInput, "cannot list \(shown): \(SystemError(call: "opendir", path: directory, errno: e))")
        }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: UInt8.self, capacity: 256) { pointer in
                    Array(UnsafeBufferPointer(start: pointer, count: strlen(UnsafeRawPointer(pointer).assumingMemoryBound(to: CChar.self))))
                }
            }
            if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
        }
        return names
    }
}
