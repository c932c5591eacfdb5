#if canImport(Glibc)
    import Glibc
#endif

// Helpers every metadata backend uses to store and read rows the same way.

/// Milliseconds since 1970.
package func nowMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Parses a shape stored as a JSON array of integers ("[768,2304]").
package func parseShape(_ text: String) -> [Int]? {
    let inner = text.dropFirst().dropLast()
    guard text.first == "[", text.last == "]" else { return nil }
    if inner.isEmpty { return [] }
    var dims: [Int] = []
    for part in inner.split(separator: ",", omittingEmptySubsequences: false) {
        guard let v = Int(part), v >= 0 else { return nil }
        dims.append(v)
    }
    return dims
}

/// Formats a shape as a JSON array of integers.
package func formatShape(_ shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ",") + "]"
}
