// The StoreLock contract (Sources/CKStore/Store/StoreLock.swift), run identically on every
// backend in `LockBackendFactory.all`.

import Dispatch
import Foundation
import Synchronization
import Testing

@testable import CKStore

private func withLocks(_ backend: LockBackendFactory, _ body: (StoreLockFixture) throws -> Void) throws {
    try withTemporaryDirectory("contract-lock") { dir throws in try body(try backend.make(dir)) }
}

@Suite("Contract: StoreLock")
struct StoreLockContractTests {
    @Test(arguments: LockBackendFactory.all)
    func sharedHoldersCoexistAndExcludeAnExclusiveOne(_ backend: LockBackendFactory) throws {
        try withLocks(backend) { fixture throws in
            let a = try fixture.open()
            let b = try fixture.open()
            let gc = try fixture.open()
            #expect(try a.tryAcquire(.shared))
            #expect(try b.tryAcquire(.shared))
            #expect(try !gc.tryAcquire(.exclusive))
            a.release()
            #expect(try !gc.tryAcquire(.exclusive), "b still holds it")
            b.release()
            b.release()  // not held: a no-op
            #expect(try gc.tryAcquire(.exclusive))
            #expect(try !a.tryAcquire(.shared), "an exclusive holder excludes readers")
            #expect(try !b.tryAcquire(.exclusive))
            gc.release()
            #expect(try a.tryAcquire(.shared))
            a.release()
        }
    }

    @Test(arguments: LockBackendFactory.all)
    func upgradingSucceedsOnlyForTheSoleHolder(_ backend: LockBackendFactory) throws {
        try withLocks(backend) { fixture throws in
            let put = try fixture.open()
            let reader = try fixture.open()
            #expect(try put.tryAcquire(.shared))
            #expect(try reader.tryAcquire(.shared))
            #expect(!put.tryUpgradeToExclusive(), "reader holds it too")
            #expect(try !put.tryAcquire(.exclusive))
            // After a failed upgrade the holder may have lost the lock (flock converts by
            // releasing first): callers release and stop, as a failed put's cleanup does.
            put.release()
            reader.release()
            #expect(try put.tryAcquire(.shared))
            #expect(put.tryUpgradeToExclusive())
            #expect(try !reader.tryAcquire(.shared))
            put.release()
            #expect(try reader.tryAcquire(.shared))
            reader.release()
        }
    }

    @Test(arguments: LockBackendFactory.all)
    func aTimedWaitGivesUpWithEnvironmentAndReportsOnce(_ backend: LockBackendFactory) throws {
        try withLocks(backend) { fixture throws in
            let gc = try fixture.open()
            let put = try fixture.open()
            #expect(try gc.tryAcquire(.exclusive))
            let reports = Mutex<[String]>([])
            let policy = LockWaitPolicy(timeout: 0.3, reportAfter: 0.05) { line in reports.withLock { $0.append(line) } }
            let start = Date()
            let error = #expect(throws: CKStoreError.self) { try put.acquire(.shared, policy: policy) }
            #expect(error?.code == .environment)
            #expect(error?.message.contains("gave up after") == true && error?.message.contains(put.lockDescription) == true)
            #expect(Date().timeIntervalSince(start) >= 0.29)
            #expect(reports.withLock { $0.count } == 1)
            gc.release()
            try put.acquire(.shared, policy: policy)
            put.release()
        }
    }

    @Test(arguments: LockBackendFactory.all)
    func aBlockingWaitEndsWhenTheHolderReleases(_ backend: LockBackendFactory) throws {
        try withLocks(backend) { fixture throws in
            let gc = try fixture.open()
            #expect(try gc.tryAcquire(.exclusive))
            let acquired = Mutex(false)
            let done = DispatchSemaphore(value: 0)
            let waiter = try fixture.open()
            let box = UncheckedBox(waiter)
            Thread {
                do {
                    try box.value.acquire(.shared, policy: LockWaitPolicy(timeout: nil, reportAfter: 0.01))
                    acquired.withLock { $0 = true }
                } catch {}
                done.signal()
            }.start()
            usleep(100_000)
            #expect(!acquired.withLock { $0 }, "waits while gc holds the lock")
            gc.release()
            #expect(done.wait(timeout: .now() + 10) == .success)
            #expect(acquired.withLock { $0 })
            waiter.release()
        }
    }
}

/// Hands a non-Sendable value to one other thread (used by one thread at a time).
private final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
