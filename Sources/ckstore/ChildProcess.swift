#if canImport(Glibc)
import Glibc
#endif
import CKStore

/// Set by SIGINT/SIGTERM handlers; polled by long-running commands (`watch`).
nonisolated(unsafe) var stopSignal: sig_atomic_t = 0

/// Installs handlers that record SIGINT and SIGTERM in `stopSignal` instead of exiting.
func installStopHandlers() {
    signal(SIGINT) { stopSignal = $0 }
    signal(SIGTERM) { stopSignal = $0 }
}

/// Runs `command` with `/bin/sh -c`, waiting for it while watching for a stop signal (on which
/// the child is sent SIGTERM and reaped). Returns the exit status (128 + signal number when the
/// child was killed by a signal).
func runShell(_ command: String) throws(CKStoreError) -> Int32 {
    var pid: pid_t = 0
    let argv: [String] = ["/bin/sh", "-c", command]
    var cArgs = argv.map { strdup($0) }
    cArgs.append(nil)
    defer { cArgs.forEach { free($0) } }
    let rc = posix_spawn(&pid, "/bin/sh", nil, nil, cArgs, environ)
    guard rc == 0 else {
        throw CKStoreError(.environment, "cannot start /bin/sh: \(String(cString: strerror(rc)))")
    }
    var status: Int32 = 0
    var signalled = false
    while true {
        let r = waitpid(pid, &status, stopSignal != 0 ? 0 : WNOHANG)
        if r == pid { break }
        if r < 0 && errno != EINTR { break }
        if stopSignal != 0 && !signalled {
            kill(pid, SIGTERM)
            signalled = true
            continue
        }
        usleep(20_000)
    }
    let termSignal = status & 0x7f
    if termSignal != 0 { return 128 + termSignal }
    return (status >> 8) & 0xff
}

/// Quotes a string for /bin/sh.
func shellQuote(_ s: String) -> String {
    "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

extension String {
    /// Replaces every occurrence of `target` (a tiny helper to avoid Foundation).
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Substring {
    /// The first range of `target`, searched by characters.
    func range(of target: String) -> Range<Substring.Index>? {
        guard let first = target.first else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i] == first, self[i...].hasPrefix(target) {
                return i..<index(i, offsetBy: target.count)
            }
            i = index(after: i)
        }
        return nil
    }
}
