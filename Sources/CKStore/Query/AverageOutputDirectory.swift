#if canImport(Glibc)
    import Glibc
#endif

/// The directory an average of directory snapshots is written to: a new temporary sibling
/// (`.NAME.tmp-…`) filled file by file and renamed into place by `commit()`, so a failed
/// average leaves nothing under the final name (and removes the sibling; a killed one may leave
/// the hidden sibling behind). An existing empty directory is replaced; a non-empty one only
/// with `force` (moved aside, then deleted once the new tree is in place). Owns the temporary
/// directory: it is removed in `deinit` unless committed.
final class AverageOutputDirectory {
    /// The final path.
    let destination: String
    /// The temporary sibling being filled.
    let temporary: String
    private let force: Bool
    /// The prefix of the hidden name a replaced directory is moved to.
    private let aside: String
    private var committed = false
    private var made = Set<String>()

    /// Checks the destination and creates the temporary sibling.
    /// - Throws: `.badInput` when `destination` exists and is not a directory, or its parent
    ///   is not a directory; `.conflict` for a non-empty directory without `force`;
    ///   `.environment` when the sibling cannot be created.
    init(_ directory: String, force: Bool) throws(CKStoreError) {
        var path = directory
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        destination = path
        self.force = force
        try Self.check(path, force: force)
        // Hidden siblings in the destination's directory: `.NAME.tmp-…` while it is written,
        // `.NAME.old.tmp-…` for a replaced directory while it is deleted.
        let slash = path.lastIndex(of: "/")
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let hidden = (slash.map { String(path[..<$0]) + "/" } ?? "") + "." + OutputWriter.shortened(base)
        temporary = FileSystem.temporaryName(prefix: hidden)
        aside = hidden + ".old"
        do {
            _ = try Sys.mkdir(temporary, 0o755).get()
        } catch {
            throw CKStoreError(.environment, "cannot create \(temporary) beside \(path): \(error)", cause: error)
        }
    }

    deinit {
        if !committed { DirectoryRemoval.remove(temporary) }
    }

    /// An output file at the clean relative `path` inside the temporary directory (its parent
    /// directories created as needed).
    func file(_ path: String) throws(CKStoreError) -> OutputWriter {
        try TreePath.validated(path, code: .integrity)
        var folder = temporary
        for component in path.split(separator: "/").dropLast() {
            folder += "/" + component
            guard made.insert(folder).inserted else { continue }
            switch Sys.mkdir(folder, 0o755) {
            case .success: break
            case .failure(let e): throw CKStoreError(.environment, "cannot create \(folder): \(e)", cause: e)
            }
        }
        return try OutputWriter(.file(temporary + "/" + path))
    }

    /// Renames the complete temporary directory into place.
    /// - Throws: `.conflict` when something appeared at the destination meanwhile (nothing is
    ///   replaced); `.environment` when a rename fails.
    func commit() throws(CKStoreError) {
        defer { committed = true }
        if case .success = Sys.rename(temporary, destination) { return }
        guard force, case .success(let st) = Sys.fileStatus(destination), st.isDirectory else {
            committed = false
            throw CKStoreError(.conflict, "\(destination) appeared or changed while the result was written; nothing was replaced")
        }
        let aside = FileSystem.temporaryName(prefix: self.aside)
        if case .failure(let e) = Sys.rename(destination, aside) {
            committed = false
            throw CKStoreError(.environment, "cannot move \(destination) aside: \(e)", cause: e)
        }
        if case .failure(let e) = Sys.rename(temporary, destination) {
            _ = Sys.rename(aside, destination)
            committed = false
            throw CKStoreError(.environment, "cannot rename the result to \(destination): \(e)", cause: e)
        }
        DirectoryRemoval.remove(aside)
    }

    /// Refuses a destination that cannot take a tree (before anything is computed).
    private static func check(_ destination: String, force: Bool) throws(CKStoreError) {
        let last = destination.split(separator: "/").last.map(String.init) ?? ""
        guard last != "." && last != ".." && last != "" else {
            throw CKStoreError(.badInput, "cannot write the result to '\(destination)': name a new or an empty directory")
        }
        var st = stat()
        guard lstat(destination, &st) == 0 else {
            let e = errno
            guard e == ENOENT else {
                throw CKStoreError(.environment, "cannot use \(destination): \(SystemError(call: "lstat", path: destination, errno: e))")
            }
            guard let slash = destination.lastIndex(of: "/") else { return }
            let parent = slash == destination.startIndex ? "/" : String(destination[..<slash])
            if case .success(let p) = Sys.fileStatus(parent), p.isDirectory { return }
            throw CKStoreError(.badInput, "cannot write \(destination): its parent \(parent) is not an existing directory")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw CKStoreError(
                .badInput,
                "cannot write the result to \(destination): it exists and is not a directory (the inputs are directory snapshots)")
        }
        guard force || DirectoryRemoval.isEmpty(destination) else {
            throw CKStoreError(.conflict, "\(destination) exists and is not empty; use --force to replace its content")
        }
    }
}
