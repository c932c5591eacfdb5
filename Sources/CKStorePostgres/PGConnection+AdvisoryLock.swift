/// The two modes of a PostgreSQL advisory lock.
public enum PGAdvisoryLockMode: Sendable {
    /// Held by any number of sessions at once; excludes `.exclusive`.
    case shared
    /// Held by one session; excludes both modes.
    case exclusive
}

extension PGConnection {
    /// Takes the session-level advisory lock `key`, waiting while another session holds a
    /// conflicting one (`pg_advisory_lock` / `pg_advisory_lock_shared`).
    ///
    /// Session-level locks outlive transactions (a rollback does not release them) and are
    /// released by `advisoryUnlock` or when the connection closes, including when the client dies.
    /// They are reentrant: each successful lock needs its own unlock.
    /// - Parameter timeoutMilliseconds: give up after this long with a `PGError` for which
    ///   `isLockNotAvailable` is true (55P03); nil waits indefinitely.
    public func advisoryLock(_ key: Int64, _ mode: PGAdvisoryLockMode, timeoutMilliseconds: Int? = nil) throws {
        let function = mode == .shared ? "pg_advisory_lock_shared" : "pg_advisory_lock"
        guard let timeoutMilliseconds else {
            try execute("SELECT \(function)($1)", [.int64(key)])
            return
        }
        // lock_timeout for this one statement, then the previous setting again.
        let previous = try execute("SELECT current_setting('lock_timeout')").string(0, 0)
        try execute("SELECT set_config('lock_timeout', $1, false)", [.text("\(max(1, timeoutMilliseconds))ms")])
        defer { _ = try? execute("SELECT set_config('lock_timeout', $1, false)", [.text(previous)]) }
        try execute("SELECT \(function)($1)", [.int64(key)])
    }

    /// Takes the session-level advisory lock `key` if no other session holds a conflicting one;
    /// returns whether it did (`pg_try_advisory_lock` / `pg_try_advisory_lock_shared`). Never waits.
    public func tryAdvisoryLock(_ key: Int64, _ mode: PGAdvisoryLockMode) throws -> Bool {
        let function = mode == .shared ? "pg_try_advisory_lock_shared" : "pg_try_advisory_lock"
        return try execute("SELECT \(function)($1)", [.int64(key)]).bool(0, 0)
    }

    /// Releases one hold of the session-level advisory lock `key` in `mode`; returns false when
    /// this session did not hold it.
    @discardableResult
    public func advisoryUnlock(_ key: Int64, _ mode: PGAdvisoryLockMode) throws -> Bool {
        let function = mode == .shared ? "pg_advisory_unlock_shared" : "pg_advisory_unlock"
        return try execute("SELECT \(function)($1)", [.int64(key)]).bool(0, 0)
    }

    /// Releases every session-level advisory lock this session holds.
    public func advisoryUnlockAll() throws {
        try execute("SELECT pg_advisory_unlock_all()")
    }

    /// A stable 64-bit lock key for a name (FNV-1a of its UTF-8 bytes), the same in every
    /// process and on every host, e.g. `advisoryKey("ckstore:store-lock")`.
    public static func advisoryKey(_ name: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }
}
