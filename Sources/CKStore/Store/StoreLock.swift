import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How a command waits for the store lock (`StoreLock`): shared for put, get and averaging,
/// exclusive for rm, gc and `fsck --repair`.
public struct LockWaitPolicy: Sendable {
    /// Give up after this many seconds (nil: wait as long as the holder runs; 0: do not wait).
    public var timeout: Double?
    /// Report the wait (once) after this many seconds.
    public var reportAfter: Double
    /// Called once, from the waiting thread, when the wait has lasted `reportAfter` seconds,
    /// with one line such as "waiting for the store lock held by put (pid 123)…".
    public var onWait: (@Sendable (String) -> Void)?

    /// Creates a policy.
    public init(timeout: Double? = nil, reportAfter: Double = 1, onWait: (@Sendable (String) -> Void)? = nil) {
        self.timeout = timeout
        self.reportAfter = reportAfter
        self.onWait = onWait
    }
}

/// A process holding the store lock, as far as it can be known for sure.
package struct LockHolder: Equatable, CustomStringConvertible {
    /// Its process id.
    package let pid: Int32
    /// The ckstore command it runs ("put", "gc", …) or its executable's name.
    package let name: String
    /// True when it is this process (another `Store` of the same program).
    package let isSelf: Bool
    /// The host it runs on, for locks shared between hosts (nil: this host).
    package var host: String? = nil

    /// Creates a holder.
    package init(pid: Int32, name: String, isSelf: Bool, host: String? = nil) {
        self.pid = pid
        self.name = name
        self.isSelf = isSelf
        self.host = host
    }

    package var description: String {
        let place = host.map { " on host \($0)" } ?? ""
        return isSelf ? "this process (pid \(pid)\(place))" : "\(name) (pid \(pid)\(place))"
    }
}

/// Shared or exclusive.
package enum StoreLockMode: Sendable, Equatable {
    /// Put, get, averaging, fsck: many at once.
    case shared
    /// rm, gc, `fsck --repair`: alone.
    case exclusive
}

/// The store lock: shared for put, get and averaging, exclusive for rm, gc and `fsck --repair`,
/// so that gc never deletes a blob that a concurrent put has matched as a duplicate and not yet
/// committed. Local stores use flock(2) on `<store>/lock` (`FlockStoreLock`); a store shared
/// between hosts needs a lock every host sees (PostgreSQL advisory locks).
///
/// Contract, for every implementation:
/// - Exclusion: while one holder has it exclusively, nobody else holds it in any mode; shared
///   holders exclude only exclusive ones. Two instances (even in one process) are two holders.
/// - One instance holds the lock at most once; `release` of a lock not held is a no-op.
/// - A holder that dies (process killed, connection lost) releases it.
/// - `tryAcquire` and `tryUpgradeToExclusive` never wait; `acquireBlocking` waits as long as
///   the holders hold it. Failures of the mechanism itself (not contention) throw
///   `CKStoreError(.environment, …)`.
/// - An instance belongs to one thread at a time.
package protocol StoreLock: AnyObject {
    /// How messages name the lock ("the store lock at /data/s/lock").
    var lockDescription: String { get }

    /// Takes the lock in `mode` if nobody prevents it now; returns false when another holder
    /// does (nothing taken).
    func tryAcquire(_ mode: StoreLockMode) throws(CKStoreError) -> Bool

    /// Takes the lock in `mode`, waiting as long as needed.
    func acquireBlocking(_ mode: StoreLockMode) throws(CKStoreError)

    /// Releases the lock (any mode). Never fails; a lock not held is left alone.
    func release()

    /// While holding the shared lock: takes it exclusively if no other holder has it (without
    /// waiting) and returns true. Returns false otherwise; the shared lock may then have been
    /// lost (flock(2) converts by releasing first), so the caller must `release` and stop
    /// relying on the lock (a failed put's cleanup does exactly that).
    func tryUpgradeToExclusive() -> Bool

    /// The holders that can be named for sure (for "held by put (pid 12)"), or [] when none
    /// can be verified.
    func holders() -> [LockHolder]

    /// Throws `.environment` unless this instance still holds the lock: a lock held through a
    /// network connection (PostgreSQL) is lost when the connection breaks. gc and rm call it
    /// just before deleting blobs. A local lock cannot be lost (the default does nothing).
    func verifyHeld() throws(CKStoreError)
}

extension StoreLock {
    /// A lock that cannot be lost while its holder runs.
    package func verifyHeld() throws(CKStoreError) {}

    /// "put (pid 12), get (pid 13)", or "another process" when no holder can be verified.
    package func describeHolders() -> String {
        let holders = holders()
        return holders.isEmpty ? "another process" : holders.map(\.description).joined(separator: ", ")
    }

    /// Takes the lock as `policy` says: polls (1 ms, doubling to 10 ms) until the wait is
    /// reported (`reportAfter`, once, naming the holders), then blocks when there is no time
    /// limit, or keeps polling until `timeout`.
    /// - Throws: `.environment` when the wait gives up ("… held by …; gave up after N s"),
    ///   with nothing taken.
    package func acquire(_ mode: StoreLockMode, policy: LockWaitPolicy) throws(CKStoreError) {
        let start = monotonicSeconds()
        var pause = 0.001
        var reported = false
        while true {
            if try tryAcquire(mode) { return }
            let waited = monotonicSeconds() - start
            if let timeout = policy.timeout, waited >= timeout {
                let seconds = timeout == timeout.rounded() && abs(timeout) < 1e15 ? "\(Int(timeout))" : "\(timeout)"
                throw CKStoreError(
                    .environment,
                    "\(lockDescription) is held by \(describeHolders()); gave up after \(seconds) s (--wait \(seconds)), "
                        + "nothing was changed")
            }
            if !reported && waited >= policy.reportAfter {
                reported = true
                policy.onWait?("waiting for the store lock held by \(describeHolders())…")
            }
            if reported && policy.timeout == nil {
                // Reported, and no limit: block, woken the moment the lock is free.
                try acquireBlocking(mode)
                return
            }
            var remaining = pause
            if let timeout = policy.timeout { remaining = min(remaining, max(0.001, timeout - waited)) }
            var ts = timespec(tv_sec: Int(remaining), tv_nsec: Int((remaining - Double(Int(remaining))) * 1e9))
            var left = timespec()
            while nanosleep(&ts, &left) != 0 && errno == EINTR { ts = left }
            pause = min(pause * 2, 0.01)
        }
    }
}

extension Store {
    /// The policy new `Store` values start with (the CLI sets `onWait` to print on stderr).
    public static let defaultLockWait = Mutex(LockWaitPolicy())
}

/// Seconds on the monotonic clock.
private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
