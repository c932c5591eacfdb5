import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// The store lock on PostgreSQL: a session-level advisory lock on a dedicated connection, shared
/// for put, get and averaging, exclusive for rm, gc and `fsck --repair` — the same roles as the
/// flock(2) lock of a local store, across hosts (docs/FORMAT.md, "Locking on PostgreSQL").
///
/// The connection's `application_name` is `ckstore COMMAND pid=N host=H`, so a waiter names the
/// holders from `pg_locks` and `pg_stat_activity`. When the lock connection breaks the server
/// releases the lock; the gc epoch (`GCFence`) makes a put that lost its lock this way fail at
/// commit when a gc ran meanwhile.
public final class PostgresStoreLock {
    let conn: PGConnection
    /// The advisory lock key: the store's schema, hashed.
    public let key: Int64
    let fence: GCFence
    let target: String
    /// The mode held now, if any.
    private(set) var held: PGAdvisoryLockMode?
    /// True while an upgrade from shared holds the exclusive lock too.
    private var upgraded = false

    /// Opens the lock's own connection to the store's database.
    public init(location: PostgresLocation, schema: String, fence: GCFence) throws(CKStoreError) {
        key = PGConnection.advisoryKey("ckstore:store-lock:\(schema)")
        self.fence = fence
        target = location.redacted
        let name = String("ckstore \(currentCommand()) pid=\(getpid()) host=\(hostName())".prefix(63))
        do {
            conn = try PGConnection(location.conninfo, applicationName: name)
            try conn.execute("SELECT set_config('search_path', $1, false)", [.text(quoteIdentifier(schema))])
        } catch {
            throw CKStoreError.wrapPostgres(error, context: "cannot open the store lock connection to \(location.redacted)")
        }
    }

    /// Takes the lock as `policy` says, with the store's shared waiting rule
    /// (`StoreLock.acquire(_:policy:)`: poll, report the holders once, then block in
    /// `pg_advisory_lock`, or keep polling until the `--wait` timeout).
    public func acquire(exclusive: Bool, policy: LockWaitPolicy) throws(CKStoreError) {
        try acquire(exclusive ? .exclusive : .shared, policy: policy)
    }

    /// Takes the lock if no other session prevents it now (recording the gc epoch).
    func tryTake(_ mode: PGAdvisoryLockMode) throws(CKStoreError) -> Bool {
        // One instance holds the lock once: asking again is a no-op or an upgrade.
        if let held { return held == .exclusive || mode == .shared || tryUpgradeToExclusive() }
        do {
            guard try conn.tryAdvisoryLock(key, mode) else { return false }
            held = mode
            fence.record(try conn.execute("SELECT gc_epoch FROM store_state WHERE id = 1").int64(0, 0))
            return true
        } catch {
            throw CKStoreError.wrapPostgres(error, context: "cannot lock the store at \(target)")
        }
    }

    /// Takes the lock, waiting as long as the holders hold it (recording the gc epoch).
    func take(_ mode: PGAdvisoryLockMode) throws(CKStoreError) {
        do {
            try conn.advisoryLock(key, mode)
            held = mode
            fence.record(try conn.execute("SELECT gc_epoch FROM store_state WHERE id = 1").int64(0, 0))
        } catch {
            throw CKStoreError.wrapPostgres(error, context: "cannot lock the store at \(target)")
        }
    }

    /// Releases the lock (and an upgrade).
    public func release() {
        if upgraded { _ = try? conn.advisoryUnlock(key, .exclusive) }
        if let held { _ = try? conn.advisoryUnlock(key, held) }
        held = nil
        upgraded = false
        fence.record(nil)
    }

    /// While holding the shared lock, takes the exclusive one too if no other session holds
    /// the lock; returns whether it did. Never waits.
    public func tryUpgradeToExclusive() -> Bool {
        guard !upgraded, held != .exclusive else { return true }
        guard (try? conn.tryAdvisoryLock(key, .exclusive)) == true else { return false }
        upgraded = held != nil
        if held == nil { held = .exclusive }
        return true
    }

    /// Throws unless this session still holds the lock in the mode taken (its connection may
    /// have broken, and the server then released it). gc calls it just before deleting blobs.
    package func verifyHeld() throws(CKStoreError) {
        guard let held else { throw CKStoreError(.environment, "the store lock of \(target) is not held") }
        let mode = held == .exclusive || upgraded ? "ExclusiveLock" : "ShareLock"
        let count: Int
        do {
            count = try conn.execute(
                """
                SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted AND mode = $1
                  AND classid::bigint = $2 AND objid::bigint = $3 AND objsubid = 1
                """, [.text(mode), .int64(Int64(UInt64(bitPattern: key) >> 32)), .int64(Int64(UInt64(bitPattern: key) & 0xffff_ffff))]
            ).int(0, 0)
        } catch {
            throw CKStoreError.wrapPostgres(error, context: "the store lock of \(target) was lost")
        }
        if count == 0 {
            throw CKStoreError(.environment, "the store lock of \(target) was lost (its connection was reset); nothing more was deleted")
        }
    }

    /// A session holding the lock: the ckstore command, pid and host from its application name.
    struct HolderRow {
        var pid: Int32
        var name: String
        var host: String?
        var isSelf: Bool
        var text: String
    }

    /// The sessions holding the lock (granted, not waiting), each as "put (pid N on host H)"
    /// when it is a ckstore connection, else its application name and address.
    func holderRows() throws -> [HolderRow] {
        let r = try conn.execute(
            """
            SELECT DISTINCT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local')
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1 AND l.pid <> pg_backend_pid()
            ORDER BY a.pid
            """, [.int64(Int64(UInt64(bitPattern: key) >> 32)), .int64(Int64(UInt64(bitPattern: key) & 0xffff_ffff))])
        return try (0..<r.rowCount).map { i in
            let app = try r.string(i, 1)
            let parts = app.split(separator: " ")
            if parts.count == 4, parts[0] == "ckstore", parts[2].hasPrefix("pid="), parts[3].hasPrefix("host="),
                let pid = Int32(parts[2].dropFirst(4))
            {
                let host = String(parts[3].dropFirst(5))
                let isSelf = pid == getpid() && host == hostName()
                return HolderRow(
                    pid: pid, name: String(parts[1]), host: host, isSelf: isSelf,
                    text: isSelf ? "this process (pid \(pid) on host \(host))" : "\(parts[1]) (pid \(pid) on host \(host))")
            }
            let server = Int32(truncatingIfNeeded: try r.int(i, 0))
            let name = app.isEmpty ? "a session" : app
            return HolderRow(
                pid: server, name: name, host: try r.string(i, 2), isSelf: false,
                text: "\(name) (server pid \(server) from \(try r.string(i, 2)))")
        }
    }
}

/// The ckstore command this process runs ("put"), from `/proc/self/cmdline`, else "ckstore".
private func currentCommand() -> String {
    let commands: Set<String> = ["init", "put", "get", "ls", "show", "stats", "metric", "watch", "plot", "rm", "gc", "fsck", "copy"]
    var args = CommandLine.arguments.dropFirst()
    while let a = args.first {
        args = args.dropFirst()
        if a == "--store" || a == "--wait" {
            args = args.dropFirst()
            continue
        }
        if !a.hasPrefix("-") { return commands.contains(a) ? a : "ckstore" }
    }
    return "ckstore"
}

/// This host's name (printable ASCII, no spaces).
func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "unknown" }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let clean = name.filter { $0.isASCII && $0 != " " && $0.asciiValue! > 32 && $0.asciiValue! < 127 }
    return clean.isEmpty ? "unknown" : clean
}

/// Seconds on the monotonic clock.
private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
