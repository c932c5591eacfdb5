#if canImport(Glibc)
    import Glibc
#endif

extension Store {
    /// Recreates the tree a resolved ref names as the directory `directory`: every file
    /// byte-identical to what was put, the same set of paths (subdirectories created as needed).
    ///
    /// The tree is written into a new temporary sibling (`.NAME.tmp-…`) and renamed into place
    /// when complete, so a failed or killed get leaves nothing under the final name (a killed
    /// one may leave the hidden sibling, which a failed one removes). An existing empty
    /// directory is replaced; a non-empty one only with `force` (its old content is moved aside,
    /// then deleted once the new tree is in place). Reads happen under the shared store lock.
    /// - Throws: `.badInput` when the ref names a single file, `directory` exists and is not a
    ///   directory, or its parent does not exist; `.conflict` for a non-empty directory without
    ///   `force`; `.integrity` for missing or damaged blobs or rows (naming the file).
    public func restoreTree(_ resolved: ResolvedRef, toDirectory directory: String, force: Bool) throws(CKStoreError) -> GetReport {
        let start = nowMilliseconds()
        let destination = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        try Self.checkDestination(destination, force: force)
        return try withLock(exclusive: false) { () throws(CKStoreError) -> GetReport in
            let (ref, snapshot) = try tree(of: resolved)
            let slash = destination.lastIndex(of: "/")
            let parent = slash.map { String(destination[..<$0]) } ?? "."
            let base = slash.map { String(destination[destination.index(after: $0)...]) } ?? destination
            let temporary = FileSystem.temporaryName(prefix: "\(parent.isEmpty ? "" : parent)/.\(OutputWriter.shortened(base))")
            do {
                try FileSystem.makeDirectory(temporary)
            } catch {
                throw CKStoreError(.environment, "cannot create \(temporary) beside \(destination): \(error)", cause: error)
            }
            var placed = false
            defer { if !placed { DirectoryRemoval.remove(temporary) } }
            let meter = progressMeter(total: snapshot.tree.totalSize)
            var written = 0
            var made = Set<String>()
            for entry in snapshot.tree.entries {
                var components = entry.path.split(separator: "/").map(String.init)
                components.removeLast()
                var folder = temporary
                for component in components {
                    folder += "/" + component
                    guard made.insert(folder).inserted else { continue }
                    do {
                        try FileSystem.makeDirectory(folder)
                    } catch {
                        throw CKStoreError(.environment, "cannot create \(folder): \(error)", cause: error)
                    }
                }
                let output = try OutputWriter(.file(temporary + "/" + entry.path))
                output.progress = meter
                try write(snapshot.files[entry.digest]!, label: "\(ref.label): file '\(entry.path)'", to: output)
                try output.commit()
                written += output.bytesWritten
            }
            try Self.place(
                temporary, at: destination, aside: "\(parent.isEmpty ? "" : parent)/.\(OutputWriter.shortened(base)).old", force: force)
            placed = true
            return GetReport(bytesOut: written, seconds: Double(nowMilliseconds() - start) / 1000)
        }
    }

    /// Writes one file of the tree a resolved ref names to `target` (as `restore` does).
    /// - Throws: `.notFound` naming the path when the tree has no such file; `.badInput` when the
    ///   ref names a single file.
    public func restoreFile(_ resolved: ResolvedRef, path: String, to target: OutputTarget) throws(CKStoreError) -> GetReport {
        let start = nowMilliseconds()
        return try withLock(exclusive: false) { () throws(CKStoreError) -> GetReport in
            let (ref, snapshot) = try tree(of: resolved)
            guard let entry = snapshot.tree.entry(path: path) else {
                let names = snapshot.tree.entries.prefix(5).map(\.path).joined(separator: ", ")
                throw CKStoreError(
                    .notFound,
                    "\(ref.label) has no file '\(path)' (it has \(snapshot.tree.entries.count): \(names)\(snapshot.tree.entries.count > 5 ? ", …" : ""))"
                )
            }
            let output = try OutputWriter(target)
            output.progress = progressMeter(total: entry.size)
            try write(snapshot.files[entry.digest]!, label: "\(ref.label): file '\(entry.path)'", to: output)
            try output.commit()
            return GetReport(bytesOut: output.bytesWritten, seconds: Double(nowMilliseconds() - start) / 1000)
        }
    }

    /// Refuses a destination that cannot take a tree (before anything is read or written).
    private static func checkDestination(_ destination: String, force: Bool) throws(CKStoreError) {
        var st = stat()
        guard lstat(destination, &st) == 0 else {
            let e = errno
            guard e == ENOENT else {
                throw CKStoreError(.environment, "cannot use \(destination): \(SystemError(call: "lstat", path: destination, errno: e))")
            }
            let slash = destination.lastIndex(of: "/")
            let parent = slash.map { String(destination[..<$0]) } ?? "."
            if !parent.isEmpty, case .success(let p) = Sys.fileStatus(parent), p.isDirectory { return }
            if parent.isEmpty { return }
            throw CKStoreError(.badInput, "cannot write \(destination): its parent \(parent) is not an existing directory")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw CKStoreError(.badInput, "cannot write a directory snapshot to \(destination): it exists and is not a directory")
        }
        guard force || DirectoryRemoval.isEmpty(destination) else {
            throw CKStoreError(.conflict, "\(destination) exists and is not empty; use --force to replace its content")
        }
    }

    /// Renames the complete temporary tree into place; with `force`, a non-empty destination is
    /// moved aside first and deleted afterwards (put back if the rename fails).
    private static func place(_ temporary: String, at destination: String, aside prefix: String, force: Bool) throws(CKStoreError) {
        if case .success = Sys.rename(temporary, destination) { return }
        guard force, case .success(let st) = Sys.fileStatus(destination), st.isDirectory else {
            throw CKStoreError(.conflict, "\(destination) appeared or changed while the tree was written; nothing was replaced")
        }
        let aside = FileSystem.temporaryName(prefix: prefix)
        if case .failure(let e) = Sys.rename(destination, aside) {
            throw CKStoreError(.environment, "cannot move \(destination) aside: \(e)", cause: e)
        }
        if case .failure(let e) = Sys.rename(temporary, destination) {
            _ = Sys.rename(aside, destination)
            throw CKStoreError(.environment, "cannot rename the new tree to \(destination): \(e)", cause: e)
        }
        DirectoryRemoval.remove(aside)
    }
}
