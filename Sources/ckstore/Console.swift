import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// Writing to the terminal, and formatting numbers for people.
///
/// Every line goes through `TerminalText.escape`: names from the store (tensors, metadata,
/// runs, metrics, variants) and from the command line never reach the terminal with raw
/// control characters, whichever command or error message quotes them.
enum Console {
    /// Writes a line to standard output (control characters, newlines included, escaped).
    static func out(_ line: String) {
        writeAll(1, TerminalText.escape(line) + "\n")
    }

    /// Writes a line to standard error (control characters, newlines included, escaped).
    static func err(_ line: String) {
        writeAll(2, TerminalText.escape(line) + "\n")
    }

    /// Writes multi-line text (help, a chain of causes) to `fd` 1 or 2: its line breaks are
    /// kept, every other control character is escaped.
    static func text(_ text: String, toStandardError: Bool = false) {
        writeAll(toStandardError ? 2 : 1, TerminalText.escapeLines(text) + "\n")
    }

    private static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                done += n
            }
        }
    }

    /// "1.5 GB", "12.0 MB", "512 B" (decimal units, like the throughput figures).
    static func bytes(_ n: Int) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while abs(value) >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format1(value)) + " " + units[unit]
    }

    /// One decimal place (non-finite or huge values in Swift's own notation: never a trap).
    static func format1(_ x: Double) -> String {
        guard x.isFinite, abs(x) < 1e15 else { return "\(x)" }
        let scaled = (x * 10).rounded()
        let whole = Int(scaled) / 10
        let frac = abs(Int(scaled)) % 10
        return (scaled < 0 && whole == 0 ? "-" : "") + "\(whole).\(frac)"
    }

    /// Two or three significant decimals for ratios and seconds (non-finite or huge values in
    /// Swift's own notation: never a trap).
    static func format(_ x: Double, decimals: Int) -> String {
        guard x.isFinite, abs(x) < 1e12 else { return "\(x)" }
        var p = 1.0
        for _ in 0..<decimals { p *= 10 }
        let scaled = (abs(x) * p).rounded()
        let whole = Int(scaled / p)
        var frac = String(Int(scaled.truncatingRemainder(dividingBy: p)))
        while frac.count < decimals { frac = "0" + frac }
        return (x < 0 ? "-" : "") + "\(whole)" + (decimals > 0 ? ".\(frac)" : "")
    }

    /// ISO 8601 UTC time from milliseconds since 1970.
    static func timestamp(_ ms: Int64) -> String {
        var t = time_t(ms / 1000)
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))Z"
    }

    /// Left-aligned columns separated by two spaces.
    /// Cells are escaped (`TerminalText.escape`) before the widths are measured.
    static func table(_ rawRows: [[String]]) -> [String] {
        let rows = rawRows.map { $0.map(TerminalText.escape) }
        guard let width = rows.map(\.count).max() else { return [] }
        var widths = [Int](repeating: 0, count: width)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }.joined(separator: "  ")
        }
    }

    /// Prints a JSON value on one line.
    static func json(_ value: JSONValue) {
        out(String(decoding: JSON.serialize(value), as: UTF8.self))
    }
}

extension JSONValue {
    /// A JSON number from an integer.
    static func int(_ n: Int) -> JSONValue { .number(String(n)) }
    /// A JSON number from a double (finite), or null.
    static func double(_ x: Double) -> JSONValue { x.isFinite ? .number("\(x)") : .null }
}
