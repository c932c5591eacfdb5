import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Removes the temporary files a process is writing (e.g. `get -o F`'s `.F.tmp-…`) when it is
/// interrupted by SIGINT, SIGTERM or SIGHUP, then lets the signal end the process as it would
/// have (so the exit status still reports the signal).
///
/// Writers register their temporary paths (`register`/`unregister`, cheap, always done). Only a
/// process that calls `install()` — the `ckstore` command line, not a library user — changes
/// its signal handling: `install()` blocks the three signals in the calling thread (and so in
/// every thread created afterwards, which inherit the mask) and starts one thread that waits
/// for them with `sigwait`. That thread runs ordinary code, not a signal handler, so it may take
/// the registry's lock and unlink freely; it then restores the default action, unblocks the
/// signal in itself and raises it again.
public enum InterruptCleanup {
    private static let registry = Mutex<(next: Int, paths: [Int: String])>((0, [:]))
    private static let installed = Atomic<Bool>(false)
    /// The signals being waited for (set once by `install()` before the thread starts).
    nonisolated(unsafe) private static var waitedFor = sigset_t()

    /// The signals that remove temporary files before ending the process.
    static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// Records a temporary file to remove if the process is interrupted; returns its token.
    static func register(_ path: String) -> Int {
        registry.withLock { state in
            let token = state.next
            state.next += 1
            state.paths[token] = path
            return token
        }
    }

    /// Forgets a temporary file (renamed into place or removed).
    static func unregister(_ token: Int) {
        _ = registry.withLock { $0.paths.removeValue(forKey: token) }
    }

    /// The temporary files registered now (for tests).
    static var registeredPaths: [String] { registry.withLock { Array($0.paths.values) } }

    /// Installs the cleanup: call once, early, before other threads are started (threads
    /// started earlier keep receiving the signals with their default action). Idempotent.
    public static func install() {
        guard !installed.exchange(true, ordering: .relaxed) else { return }
        var set = sigset_t()
        sigemptyset(&set)
        // A signal the parent ignores (nohup, a background job's SIGINT) stays ignored: a
        // blocked signal is queued even when ignored, and sigwait would then act on it.
        let active = signals.filter { !isIgnored($0) }
        guard !active.isEmpty else { return }
        for s in active { sigaddset(&set, s) }
        waitedFor = set
        pthread_sigmask(SIG_BLOCK, &set, nil)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { _ in
                InterruptCleanup.waitAndClean()
                return nil
            }, nil)
        if rc == 0 {
            pthread_detach(thread)
        } else {
            // No waiting thread: fall back to the default actions rather than ignore signals.
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
        }
    }

    private static func isIgnored(_ signal: Int32) -> Bool {
        var current = sigaction()
        guard sigaction(signal, nil, &current) == 0 else { return false }
        return unsafeBitCast(current.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }

    /// The waiting thread's body: on a signal, remove every registered file, then die of it.
    private static func waitAndClean() -> Never {
        var set = waitedFor
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 { usleep(1000) }
        // Hold the lock to the end: a writer cannot register or rename past this point.
        registry.withLock { state in
            for path in state.paths.values { unlink(path) }
            signal(received, SIG_DFL)
            var one = sigset_t()
            sigemptyset(&one)
            sigaddset(&one, received)
            pthread_sigmask(SIG_UNBLOCK, &one, nil)
            raise(received)
        }
        // Not reached for the three default-fatal signals; be certain anyway.
        _exit(128 + received)
    }
}
