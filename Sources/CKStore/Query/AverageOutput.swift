/// Where `Store.materialize(_:output:useCache:)` writes a query's result.
///
/// The result has the kind of its inputs: one safetensors file when they are single-file
/// snapshots, a directory (the newest input's layout) when they are directory snapshots.
public enum AverageOutput: Sendable {
    /// A single-file result, written to a file or standard output (`.usage` for directory
    /// inputs).
    case file(OutputTarget)
    /// A directory result, written to this directory through a temporary sibling renamed into
    /// place; an existing non-empty directory is replaced only with `force` (`.usage` for
    /// single-file inputs).
    case directory(String, force: Bool)
    /// One file (by its path inside the result) of a directory result (`.usage` for
    /// single-file inputs).
    case treeFile(String, OutputTarget)
    /// A path that becomes whatever the result is: a file for single-file inputs, a directory
    /// (as `.directory`) for directory snapshots.
    case automatic(String, force: Bool)
}
