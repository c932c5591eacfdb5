import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// Set by SIGINT/SIGTERM handlers; polled by long-running commands (`watch`).
nonisolated(unsafe) var stopSignal: sig_atomic_t = 0

/// Installs handlers that record SIGINT and SIGTERM in `stopSignal` instead of exiting.
func installStopHandlers() {
    signal(SIGINT) { stopSignal = $0 }
    signal(SIGTERM) { stopSignal = $0 }
}

/// Runs `command` with `/bin/sh -c` in its own process group, waiting for it while watching
/// for a stop signal: on one, the whole group (the shell and whatever it started) is sent
/// SIGTERM, then SIGKILL if it is still there 3 s later, and reaped. Returns the exit status
/// (128 + signal number when the child was killed by a signal). `environment` is added to
/// (and overrides entries of) this process's environment for the child.
func runShell(_ command: String, environment: [(String, String)] = []) throws(CKStoreError) -> Int32 {
    var pid: pid_t = 0
    let argv: [String] = ["/bin/sh", "-c", command]
    var cArgs = argv.map { strdup($0) }
    cArgs.append(nil)
    defer { cArgs.forEach { free($0) } }
    var cEnv = childEnvironment(adding: environment).map { strdup($0) }
    cEnv.append(nil)
    defer { cEnv.forEach { free($0) } }
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
    posix_spawnattr_setpgroup(&attr, 0)  // a new group led by the child: signals reach all of it
    let rc = posix_spawn(&pid, "/bin/sh", nil, &attr, cArgs, cEnv)
    guard rc == 0 else {
        throw CKStoreError(.environment, "cannot start /bin/sh: \(String(cString: strerror(rc)))")
    }
    var status: Int32 = 0
    var signalledAt: timespec? = nil
    while true {
        // Check for a stop before waiting: the wait never blocks, so a stop is acted on at once.
        if stopSignal != 0 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            if let t = signalledAt {
                if now.tv_sec - t.tv_sec >= 3 { kill(-pid, SIGKILL) }
            } else {
                kill(-pid, SIGTERM)
                signalledAt = now
            }
        }
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { break }
        if r < 0 && errno != EINTR { break }
        usleep(20_000)
    }
    let termSignal = status & 0x7f
    if termSignal != 0 { return 128 + termSignal }
    return (status >> 8) & 0xff
}

/// This process's environment (`NAME=value` entries) without the names in `added`, followed
/// by the `added` entries.
private func childEnvironment(adding added: [(String, String)]) -> [String] {
    let names = Set(added.map(\.0))
    var result: [String] = []
    var p = environ
    while let entry = p.pointee {
        let text = String(cString: entry)
        let name = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? text
        if !names.contains(name) { result.append(text) }
        p += 1
    }
    return result + added.map { "\($0.0)=\($0.1)" }
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
