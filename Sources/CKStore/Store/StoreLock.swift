import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How a command waits for the store lock (`<store>/lock`, flock(2)): shared for put, get and
/// averaging, exclusive for rm, gc and `fsck --repair`.
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
struct LockHolder: Equatable, CustomStringConvertible {
    /// Its process id.
    let pid: Int32
    /// The ckstore command it runs ("put", "gc", …) or its executable's name.
    let name: String
    /// True when it is this process (another `Store` of the same program).
    let isSelf: Bool
    var description: String { isSelf ? "this process (pid \(pid))" : "\(name) (pid \(pid))" }
}

extension Store {
    /// The policy new `Store` values start with (the CLI sets `onWait` to print on stderr).
    public static let defaultLockWait = Mutex(LockWaitPolicy())

    /// Takes the lock: polls with `LOCK_NB` (1 ms, doubling to 10 ms) until the wait is
    /// reported (`reportAfter`), then blocks in flock(2) when there is no time limit, or keeps
    /// polling until `timeout`.
    func acquireLock(exclusive: Bool) throws(CKStoreError) {
        let lockPath = "\(path)/lock"
        let operation = exclusive ? LOCK_EX : LOCK_SH
        let policy = lockWait
        let start = monotonicSeconds()
        var pause = 0.001
        var reported = false
        while true {
            switch Sys.lock(lockFile.fd, operation | LOCK_NB, path: lockPath) {
            case .success:
                return
            case .failure(let e) where e.errno == EWOULDBLOCK || e.errno == EAGAIN:
                break
            case .failure(let e):
                throw CKStoreError(.environment, "cannot lock the store at \(path): \(e)", cause: e)
            }
            let waited = monotonicSeconds() - start
            if let timeout = policy.timeout, waited >= timeout {
                let seconds = timeout == timeout.rounded() && abs(timeout) < 1e15 ? "\(Int(timeout))" : "\(timeout)"
                throw CKStoreError(
                    .environment,
                    "the store lock at \(lockPath) is held by \(describeLockHolders()); gave up after \(seconds) s (--wait \(seconds)), "
                        + "nothing was changed")
            }
            if !reported && waited >= policy.reportAfter {
                reported = true
                policy.onWait?("waiting for the store lock held by \(describeLockHolders())…")
            }
            if reported && policy.timeout == nil {
                // Reported, and no limit: block in flock(2), woken the moment the lock is free.
                do {
                    _ = try Sys.lock(lockFile.fd, operation, path: lockPath).get()
                    return
                } catch {
                    throw CKStoreError(.environment, "cannot lock the store at \(path): \(error)", cause: error)
                }
            }
            var remaining = pause
            if let timeout = policy.timeout { remaining = min(remaining, max(0.001, timeout - waited)) }
            var ts = timespec(tv_sec: Int(remaining), tv_nsec: Int((remaining - Double(Int(remaining))) * 1e9))
            var left = timespec()
            while nanosleep(&ts, &left) != 0 && errno == EINTR { ts = left }
            pause = min(pause * 2, 0.01)
        }
    }

    /// "put (pid 12), get (pid 13)", or "another process" when no holder can be verified.
    func describeLockHolders() -> String {
        let holders = lockHolders()
        return holders.isEmpty ? "another process" : holders.map(\.description).joined(separator: ", ")
    }

    /// The processes holding the store lock, from `/proc/locks` (FLOCK entries on the lock
    /// file's device and inode, not the blocked waiters). A pid is named only when
    /// `/proc/PID/fd` shows that process has the lock file open now: `/proc/locks` records the
    /// process that took the lock, which may have exited and left it to a child (its pid could
    /// then belong to an unrelated process). Unverifiable holders are left out.
    func lockHolders() -> [LockHolder] {
        var st = stat()
        guard fstat(lockFile.fd, &st) == 0 else { return [] }
        let dev = UInt64(st.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        let wanted = (major, minor, UInt64(st.st_ino))
        guard let text = readProcFile("/proc/locks") else { return [] }
        var pids: [Int32] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            // "1: FLOCK  ADVISORY  WRITE 26281 fe:00:16222354 0 EOF"; waiters have "->" after "1:".
            guard f.count >= 6, f[1] == "FLOCK", let pid = Int32(f[4]) else { continue }
            let id = f[5].split(separator: ":")
            guard id.count == 3, let ma = UInt64(id[0], radix: 16), let mi = UInt64(id[1], radix: 16), let ino = UInt64(id[2]),
                (ma, mi, ino) == wanted, !pids.contains(pid)
            else { continue }
            pids.append(pid)
        }
        let me = getpid()
        return pids.compactMap { pid in
            guard processHasOpen(pid: pid, device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) else { return nil }
            return LockHolder(pid: pid, name: processName(pid), isSelf: pid == me)
        }
    }
}

/// True when `/proc/PID/fd` lists a descriptor of the file with this device and inode.
private func processHasOpen(pid: Int32, device: UInt64, inode: UInt64) -> Bool {
    guard case .success(let fds) = Sys.listDirectory("/proc/\(pid)/fd") else { return false }
    for fd in fds {
        var st = stat()
        if stat("/proc/\(pid)/fd/\(fd)", &st) == 0, UInt64(st.st_dev) == device, UInt64(st.st_ino) == inode { return true }
    }
    return false
}

/// The ckstore command a process runs ("put"), else its executable's name (`/proc/PID/comm`).
private func processName(_ pid: Int32) -> String {
    let commands: Set<String> = ["init", "put", "get", "ls", "show", "stats", "metric", "watch", "plot", "rm", "gc", "fsck"]
    if let raw = readProcFile("/proc/\(pid)/cmdline") {
        let argv = raw.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        if let exe = argv.first, exe.split(separator: "/").last == "ckstore" {
            var i = 1
            while i < argv.count {
                let a = argv[i]
                if a == "--store" {
                    i += 2
                    continue
                }
                if !a.hasPrefix("-") { return commands.contains(a) ? a : "ckstore" }
                i += 1
            }
            return "ckstore"
        }
    }
    let comm = readProcFile("/proc/\(pid)/comm")?.split(separator: "\n").first.map(String.init) ?? ""
    return comm.isEmpty ? "process" : comm.filter { !$0.isASCII || ($0.asciiValue! >= 32 && $0.asciiValue! < 127) }
}

/// The whole text of a small `/proc` file (their sizes read as 0, so read to the end).
private func readProcFile(_ path: String) -> String? {
    guard let file = try? FileHandle.openForReading(path) else { return nil }
    var bytes: [UInt8] = []
    let chunk = ByteBuffer(capacity: 65536)
    while bytes.count < 1 << 22 {
        let n: Int
        do {
            n = try file.readFully(into: chunk.prefix(65536))
        } catch {
            return nil
        }
        bytes += UnsafeRawBufferPointer(rebasing: chunk.storage[0..<n])
        if n < 65536 { break }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Seconds on the monotonic clock.
private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
