import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// A progress line on standard error for a long put or get: bytes done and total, MB/s and the
/// time left, redrawn in place with a carriage return. Shown only when standard error is a
/// terminal, never with --quiet, and only once the transfer has run for a second (a quick one
/// prints nothing); `clear()` erases it before the summary or an error is printed.
final class ProgressDisplay {
    private let verb: String
    private let start = ProgressDisplay.now()
    private var drawn = false

    /// How long a transfer runs before its progress is shown, in seconds.
    static let delay = 1.0

    private init(verb: String) {
        self.verb = verb
    }

    /// A display for a transfer, or nil when none should be shown (not a terminal, --quiet).
    static func make(quiet: Bool, verb: String) -> ProgressDisplay? {
        guard !quiet, isatty(2) == 1 else { return nil }
        return ProgressDisplay(verb: verb)
    }

    /// Redraws the line for `progress` (after the first second).
    func update(_ progress: TransferProgress) {
        let elapsed = ProgressDisplay.now() - start
        guard elapsed >= ProgressDisplay.delay else { return }
        let rate = Double(progress.bytesDone) / elapsed
        var line = "\(verb): \(Console.bytes(progress.bytesDone))"
        if let total = progress.bytesTotal, total > 0 {
            let percent = min(100, progress.bytesDone * 100 / total)
            line += " of \(Console.bytes(total)) (\(percent)%)"
        }
        line += ", \(Console.format1(rate / 1e6)) MB/s"
        if let total = progress.bytesTotal, rate > 0, total >= progress.bytesDone {
            line += ", \(ProgressDisplay.duration(Double(total - progress.bytesDone) / rate)) left"
        }
        write("\r" + line + "\u{1B}[K")
        drawn = true
    }

    /// Erases the line, if one was drawn.
    func clear() {
        if drawn { write("\r\u{1B}[K") }
        drawn = false
    }

    /// "7 s", "3 min 05 s", "2 h 10 min".
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds < 1e7 else { return "?" }
        let s = Int(seconds.rounded(.up))
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60 < 10 ? "0" : "")\(s % 60) s" }
        return "\(s / 3600) h \(s % 3600 / 60) min"
    }

    private func write(_ text: String) {
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(2, raw.baseAddress! + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                done += n
            }
        }
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
