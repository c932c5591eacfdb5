/// Paths of files inside a tree snapshot: relative, `/`-separated, clean.
///
/// A clean path is non-empty valid UTF-8, not absolute, has no empty component (no leading,
/// trailing or doubled `/`), no `.` or `..` component, no NUL byte, and is at most
/// `maxLength` bytes. Clean paths can be joined to a destination directory without ever leaving
/// it. Every path a tree holds has passed this check.
public enum TreePath {
    /// The longest path accepted, in UTF-8 bytes (Linux's PATH_MAX).
    public static let maxLength = 4096

    /// Why `path` is not a clean relative path, or nil when it is.
    public static func problem(_ path: String) -> String? {
        let bytes = Array(path.utf8)
        if bytes.isEmpty { return "the path is empty" }
        if bytes.count > maxLength { return "the path is longer than \(maxLength) bytes" }
        if bytes.contains(0) { return "the path contains a NUL byte" }
        if bytes.first == UInt8(ascii: "/") { return "the path is absolute" }
        for component in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if component.isEmpty { return "the path has an empty component" }
            if component.elementsEqual([UInt8(ascii: ".")]) { return "the path has a '.' component" }
            if component.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) { return "the path has a '..' component" }
        }
        return nil
    }

    /// Returns `path` when it is clean.
    /// - Throws: `CKStoreError` with `code` (e.g. `.usage` for a command-line argument,
    ///   `.badInput` for a file name found in a directory, `.integrity` for a stored row),
    ///   naming the path and the problem.
    @discardableResult
    public static func validated(_ path: String, code: CKStoreError.Code = .badInput) throws(CKStoreError) -> String {
        if let problem = problem(path) {
            throw CKStoreError(code, "'\(path)' is not a clean relative path: \(problem)")
        }
        return path
    }

    /// True when `a` sorts before `b` by their UTF-8 bytes (the order of tree entries).
    public static func precedes(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }
}
