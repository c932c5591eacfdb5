#if canImport(Glibc)
    import Glibc
#endif

/// Removing a directory tree this process created (a temporary tree of `get -o DIR`), and
/// checking whether a directory is empty. Symbolic links are removed, never followed.
package enum DirectoryRemoval {
    /// Whether `path` is a directory without entries (false when it cannot be read).
    package static func isEmpty(_ path: String) -> Bool {
        guard case .success(let names) = Sys.listDirectory(path) else { return false }
        return names.isEmpty
    }

    /// Removes `path` and everything under it, best effort (errors are ignored: what is left is
    /// a hidden temporary name, never a final one).
    package static func remove(_ path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        if (st.st_mode & S_IFMT) == S_IFDIR, case .success(let names) = Sys.listDirectory(path) {
            for name in names { remove(path + "/" + name) }
            _ = Sys.rmdir(path)
        } else {
            _ = Sys.unlink(path)
        }
    }
}
