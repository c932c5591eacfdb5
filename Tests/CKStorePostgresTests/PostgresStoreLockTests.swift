import CKStore
import Foundation
import Synchronization
import Testing

@testable import CKStorePostgres

@Suite("PostgresLocation")
struct PostgresLocationTests {
    @Test func parsesBlobsSchemaAndPassesLibpqParametersOn() throws {
        let l = try PostgresLocation("postgres://u@h:5432/db?sslmode=disable&blobs=file:///tmp/x&schema=s1")
        #expect(l.blobs == "file:///tmp/x" && l.localBlobsPath == "/tmp/x" && l.schema == "s1")
        #expect(l.conninfo == "postgresql://u@h:5432/db?sslmode=disable")
        #expect(try PostgresLocation("postgresql://u@h/db?blobs=s3://b/p").blobs == "s3://b/p")
    }

    @Test func refusesAPasswordWithoutRepeatingIt() {
        for url in ["postgres://u:hunter22secret@h/db?blobs=file:///x", "postgres://u@h/db?password=hunter22secret&blobs=file:///x"] {
            let e = caught(CKStoreError.self) { _ = try PostgresLocation(url) }
            #expect(e?.code == .usage)
            #expect(e?.message.contains("hunter22secret") == false)
            #expect(e?.message.contains("PGPASSWORD") == true)
        }
    }

    @Test func refusesALocationWithoutBlobs() {
        #expect(caught(CKStoreError.self) { _ = try PostgresLocation("postgres://u@h/db") }?.code == .usage)
    }
}

@Suite("PostgresStoreLock (live)", .serialized, requiresLiveServer)
struct PostgresStoreLockTests {
    @Test func sharedHoldersExcludeAnExclusiveOneWhichTimesOutNamingThem() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let store = try PostgresMetadataStore(location: location, create: true)
        let a = try PostgresStoreLock(location: location, schema: store.schema, fence: GCFence())
        let b = try PostgresStoreLock(location: location, schema: store.schema, fence: GCFence())
        let gc = try PostgresStoreLock(location: location, schema: store.schema, fence: GCFence())
        try a.acquire(exclusive: false, policy: LockWaitPolicy(timeout: 0))
        try b.acquire(exclusive: false, policy: LockWaitPolicy(timeout: 0))
        let reported = Mutex<[String]>([])
        let e = caught(CKStoreError.self) {
            try gc.acquire(
                exclusive: true, policy: LockWaitPolicy(timeout: 0.3, reportAfter: 0.1) { line in reported.withLock { $0.append(line) } })
        }
        #expect(e?.code == .environment)
        #expect(e?.message.contains("gave up after 0.3 s") == true)
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? ""
        #expect(e?.message.contains("(pid \(getpid()) on host ") == true, "\(e?.message ?? "")")
        #expect(reported.withLock { $0 }.count == 1)
        #expect(reported.withLock { $0 }.first?.hasPrefix("waiting for the store lock held by ") == true)
        _ = host
        a.release()
        b.release()
        try gc.acquire(exclusive: true, policy: LockWaitPolicy(timeout: 0))
        #expect(caught(CKStoreError.self) { try a.acquire(exclusive: false, policy: LockWaitPolicy(timeout: 0)) }?.code == .environment)
        gc.release()
    }

    @Test func aWaiterWithoutTimeoutGetsTheLockWhenItIsReleased() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let store = try PostgresMetadataStore(location: location, create: true)
        let holder = try PostgresStoreLock(location: location, schema: store.schema, fence: GCFence())
        let waiter = try PostgresStoreLock(location: location, schema: store.schema, fence: GCFence())
        try holder.acquire(exclusive: true, policy: LockWaitPolicy(timeout: 0))
        nonisolated(unsafe) let background = waiter
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<String>("")
        DispatchQueue.global().async {
            do {
                try background.acquire(exclusive: false, policy: LockWaitPolicy(timeout: nil, reportAfter: 0.05))
                result.withLock { $0 = "ok" }
            } catch {
                result.withLock { $0 = "\(error)" }
            }
            done.signal()
        }
        Thread.sleep(forTimeInterval: 0.3)
        #expect(result.withLock { $0 } == "")
        holder.release()
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(result.withLock { $0 } == "ok")
        waiter.release()
    }

    @Test func upgradeSucceedsOnlyWithoutOtherHolders() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let store = try PostgresMetadataStore(location: location, create: true)
        let a = try PostgresStoreLock(location: location, schema: store.schema, fence: GCFence())
        let b = try PostgresStoreLock(location: location, schema: store.schema, fence: GCFence())
        try a.acquire(exclusive: false, policy: LockWaitPolicy(timeout: 0))
        try b.acquire(exclusive: false, policy: LockWaitPolicy(timeout: 0))
        #expect(a.tryUpgradeToExclusive() == false)
        b.release()
        #expect(a.tryUpgradeToExclusive())
        #expect(caught(CKStoreError.self) { try b.acquire(exclusive: false, policy: LockWaitPolicy(timeout: 0)) } != nil)
        a.release()
        try b.acquire(exclusive: true, policy: LockWaitPolicy(timeout: 0))
        b.release()
    }

    /// The fencing token: a put whose lock connection died while a gc ran cannot commit.
    @Test func aPutThatLostItsLockWhileAGCRanFailsToCommit() throws {
        let location = try scratchLocation()
        defer { dropSchema(location) }
        let fence = GCFence()
        let put = try PostgresMetadataStore(location: location, create: true, fence: fence)
        let putLock = try PostgresStoreLock(location: location, schema: put.schema, fence: fence)
        try putLock.acquire(exclusive: false, policy: LockWaitPolicy(timeout: 0))
        // The lock connection dies (network partition, server restart of the backend).
        let admin = try connect()
        try putLock.verifyHeld()
        let backend = try putLock.conn.execute("SELECT pg_backend_pid()").int64(0, 0)
        try admin.execute("SELECT pg_terminate_backend($1::int)", [.int64(backend)])
        #expect(caught(CKStoreError.self) { try putLock.verifyHeld() }?.code == .environment)
        // A gc on another host now gets the exclusive lock and collects.
        let gcFence = GCFence()
        let gc = try PostgresMetadataStore(location: location, create: false, fence: gcFence)
        let gcLock = try PostgresStoreLock(location: location, schema: gc.schema, fence: gcFence)
        try gcLock.acquire(exclusive: true, policy: LockWaitPolicy(timeout: 5))
        _ = try gc.collect(removing: { [] }, dropsMetrics: false, dropDerived: true) { _ in true }
        gcLock.release()
        let e = caught(CKStoreError.self) {
            _ = try put.commit(manifest: sampleManifest(seed: 1), run: "r", step: 1, metrics: [], force: false)
        }
        #expect(e?.code == .environment)
        #expect(e?.message.contains("store lock was lost") == true)
        #expect(try put.snapshots(run: "r") == nil)
        // Without a gc in between, the same sequence commits.
        try gcLock.acquire(exclusive: false, policy: LockWaitPolicy(timeout: 0))
        let ok = try PostgresMetadataStore(location: location, create: false, fence: gcFence)
        #expect(try ok.commit(manifest: sampleManifest(seed: 1), run: "r", step: 1, metrics: [], force: false).outcome == .created)
        gcLock.release()
    }
}
