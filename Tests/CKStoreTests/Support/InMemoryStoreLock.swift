// An in-memory `StoreLock` for the test target: holders are instances sharing one table.

import Glibc
import Synchronization

@testable import CKStore

/// Who holds one in-memory lock.
final class InMemoryLockTable: Sendable {
    struct Holders {
        var exclusive: ObjectIdentifier?
        var shared: Set<ObjectIdentifier> = []
    }

    let holders = Mutex(Holders())
}

/// One holder of an in-memory lock (like one open lock file).
final class InMemoryStoreLock: StoreLock {
    let table: InMemoryLockTable
    private var me: ObjectIdentifier { ObjectIdentifier(self) }

    init(table: InMemoryLockTable = InMemoryLockTable()) { self.table = table }

    var lockDescription: String { "the in-memory store lock" }

    func tryAcquire(_ mode: StoreLockMode) throws(CKStoreError) -> Bool {
        let me = self.me
        return table.holders.withLock { h in
            switch mode {
            case .shared:
                if let owner = h.exclusive, owner != me { return false }
                if h.exclusive == me { h.exclusive = nil }
                h.shared.insert(me)
                return true
            case .exclusive:
                if let owner = h.exclusive, owner != me { return false }
                if !h.shared.subtracting([me]).isEmpty { return false }
                h.shared.remove(me)
                h.exclusive = me
                return true
            }
        }
    }

    func acquireBlocking(_ mode: StoreLockMode) throws(CKStoreError) {
        while try !tryAcquire(mode) { usleep(1000) }
    }

    func release() {
        let me = self.me
        table.holders.withLock { h in
            if h.exclusive == me { h.exclusive = nil }
            h.shared.remove(me)
        }
    }

    func tryUpgradeToExclusive() -> Bool { (try? tryAcquire(.exclusive)) ?? false }

    func holders() -> [LockHolder] { [] }
}
