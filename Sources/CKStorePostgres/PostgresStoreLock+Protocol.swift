import CKStore

/// `PostgresStoreLock` as the core's `StoreLock`: the store waits with its usual policy
/// (`StoreLock.acquire(_:policy:)`) on top of these.
extension PostgresStoreLock: StoreLock {
    package var lockDescription: String { "the store lock of \(target)" }

    package func tryAcquire(_ mode: StoreLockMode) throws(CKStoreError) -> Bool {
        try tryTake(mode == .exclusive ? .exclusive : .shared)
    }

    package func acquireBlocking(_ mode: StoreLockMode) throws(CKStoreError) {
        try take(mode == .exclusive ? .exclusive : .shared)
    }

    package func holders() -> [LockHolder] {
        ((try? holderRows()) ?? []).map { row in
            LockHolder(pid: row.pid, name: row.name, isSelf: row.isSelf, host: row.host)
        }
    }
}
