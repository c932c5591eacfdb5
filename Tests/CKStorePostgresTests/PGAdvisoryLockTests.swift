import CKStorePostgres
import Testing

/// Session-level advisory locks across separate connections (separate server sessions, as
/// separate processes or hosts would have).
@Suite("PostgreSQL advisory locks (live)", requiresLiveServer)
struct PGAdvisoryLockTests {
    @Test func exclusiveExcludesEveryoneUntilUnlocked() throws {
        let key = randomLockKey()
        let a = try connect()
        let b = try connect()
        try a.advisoryLock(key, .exclusive)
        #expect(try !b.tryAdvisoryLock(key, .exclusive))
        #expect(try !b.tryAdvisoryLock(key, .shared))
        #expect(try a.advisoryUnlock(key, .exclusive))
        #expect(try b.tryAdvisoryLock(key, .exclusive))
        #expect(try !a.tryAdvisoryLock(key, .shared))
        #expect(try b.advisoryUnlock(key, .exclusive))
        #expect(try !b.advisoryUnlock(key, .exclusive))  // not held any more
    }

    @Test func sharedHoldersCoexistAndExcludeAnExclusiveOne() throws {
        let key = randomLockKey()
        let a = try connect()
        let b = try connect()
        let c = try connect()
        try a.advisoryLock(key, .shared)
        #expect(try b.tryAdvisoryLock(key, .shared))
        #expect(try !c.tryAdvisoryLock(key, .exclusive))
        #expect(try a.advisoryUnlock(key, .shared))
        #expect(try !c.tryAdvisoryLock(key, .exclusive))  // b still holds it shared
        #expect(try b.advisoryUnlock(key, .shared))
        #expect(try c.tryAdvisoryLock(key, .exclusive))
        try c.advisoryUnlockAll()
        #expect(try a.tryAdvisoryLock(key, .exclusive))
    }

    @Test func aBlockingLockWaitsAndTimesOutWithLockNotAvailable() throws {
        let key = randomLockKey()
        let holder = try connect()
        let waiter = try connect()
        try holder.advisoryLock(key, .shared)
        let error = caught(PGError.self) { try waiter.advisoryLock(key, .exclusive, timeoutMilliseconds: 200) }
        #expect(error?.isLockNotAvailable == true)
        // The previous lock_timeout is restored, and a shared lock is granted alongside.
        #expect(try waiter.execute("SELECT current_setting('lock_timeout')").string(0, 0) == "0")
        try waiter.advisoryLock(key, .shared, timeoutMilliseconds: 200)
        try holder.advisoryUnlockAll()
        try waiter.advisoryUnlockAll()
        try waiter.advisoryLock(key, .exclusive, timeoutMilliseconds: 1000)
    }

    @Test func sessionLocksOutliveARolledBackTransactionAndAreReentrant() throws {
        let key = randomLockKey()
        let a = try connect()
        let b = try connect()
        struct Abort: Error {}
        _ = caught(Abort.self) {
            try a.inTransaction {
                try a.advisoryLock(key, .exclusive)
                throw Abort()
            }
        }
        #expect(try !b.tryAdvisoryLock(key, .shared))  // still held after the rollback
        try a.advisoryLock(key, .exclusive)  // reentrant: held twice now
        #expect(try a.advisoryUnlock(key, .exclusive))
        #expect(try !b.tryAdvisoryLock(key, .shared))  // once more to go
        #expect(try a.advisoryUnlock(key, .exclusive))
        #expect(try b.tryAdvisoryLock(key, .shared))
    }

    @Test func closingAConnectionReleasesItsLocks() throws {
        let key = randomLockKey()
        let b = try connect()
        do {
            let a = try connect()
            try a.advisoryLock(key, .exclusive)
            #expect(try !b.tryAdvisoryLock(key, .exclusive))
        }  // a is released here: deinit closes the connection
        // The server notices the closed session promptly, but not synchronously: poll briefly.
        var acquired = false
        for _ in 0..<50 where !acquired {
            acquired = try b.tryAdvisoryLock(key, .exclusive)
            if !acquired { try b.execute("SELECT pg_sleep(0.02)") }
        }
        #expect(acquired)
    }
}
