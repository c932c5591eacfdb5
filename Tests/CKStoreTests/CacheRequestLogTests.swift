// The request log behind `cache_policy: second-hit` (`<store>/cache-requests`) under hostile
// conditions: a claim held by a concurrent request, a stale claim, a busy lock, many threads
// asking at once, a symbolic link, a directory or a truncated file in its place, and `gc`.

import Foundation
import Synchronization
import Testing

@testable import CKStore
@testable import CKStoreBackends

#if canImport(Glibc)
    import Glibc
#endif

/// A local store with the default configuration (second-hit), 4 KiB chunks, holding run "r"
/// with snapshots at steps 0, 10, 20 (tensor "w", F32, 3000 values).
private func makeStore(_ dir: TemporaryDirectory) throws -> Store {
    let path = dir.file("store")
    try Store.initialize(at: path)
    setChunkSize(store: path, 4096)
    let store = try Store(path: path)
    #expect(store.configuration.cachePolicy == .secondHit)
    for step in [0, 10, 20] {
        let values = (0..<3000).map { Float(step) + Float($0) / 1000 }
        let bytes = values.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        let file = dir.file("s\(step).safetensors")
        writeFile(file, makeSafetensors(tensors: [TensorSpec("w", "F32", [3000], bytes)]))
        _ = try store.put(from: .file(file), run: "r", step: step)
    }
    return store
}

/// The 32 bytes of `key`'s slot in the log at `path`.
private func slot(_ path: String, _ key: SHA256Digest) -> [UInt8] {
    let data = [UInt8](readFile(path))
    let offset = Int(FileQueryRequestLog.offset(of: key.bytes))
    return data.count >= offset + 32 ? Array(data[offset..<offset + 32]) : []
}

/// Writes `bytes` at `key`'s slot of the log at `path`.
private func writeSlot(_ path: String, _ key: SHA256Digest, _ bytes: [UInt8]) {
    let fd = open(path, O_RDWR | O_CREAT, 0o644)
    #expect(fd >= 0)
    _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, 32, FileQueryRequestLog.offset(of: key.bytes)) }
    close(fd)
}

@Suite("Cache request log") struct CacheRequestLogTests {
    @Test func aRepeatClaimsTheRecipeSoConcurrentRequestsDoNotStoreItAgain() {
        withTemporaryDirectory { dir in
            let path = dir.file("cache-requests")
            let log = FileQueryRequestLog(path: path)
            let k = SHA256Digest.hash(Array("k".utf8))
            #expect(!log.noteRequest(k))
            #expect(slot(path, k) == k.bytes, "a first request notes the key")
            #expect(log.noteRequest(k), "the second request is to store the result")
            #expect(FileQueryRequestLog.claimTime(slot(path, k), for: k.bytes) != nil)
            // While the claim holds, other requests compute without storing, and leave it.
            let claimed = slot(path, k)
            #expect(!log.noteRequest(k) && !log.noteRequest(k))
            #expect(slot(path, k) == claimed)
            log.release(k)
            #expect(slot(path, k) == k.bytes, "release leaves the key noted")
            #expect(log.noteRequest(k))
            // Releasing a key that is not claimed changes nothing.
            let other = SHA256Digest.hash(Array("other".utf8))
            log.release(k)
            let before = [UInt8](readFile(path))
            log.release(other)
            log.release(k)
            #expect([UInt8](readFile(path)) == before)
        }
    }

    @Test func aStaleOrFutureClaimIsTakenOver() {
        withTemporaryDirectory { dir in
            let path = dir.file("cache-requests")
            let log = FileQueryRequestLog(path: path)
            let k = SHA256Digest.hash(Array("k".utf8))
            let now = FileQueryRequestLog.now()
            // A claimer killed 16 minutes ago, and a claim dated in the future (clock set back).
            for time in [now &- FileQueryRequestLog.claimLifetime &- 60, now &+ 3600] {
                writeSlot(path, k, FileQueryRequestLog.claim(k.bytes, at: time))
                #expect(log.noteRequest(k), "claim at \(time), now \(now)")
                let taken = FileQueryRequestLog.claimTime(slot(path, k), for: k.bytes)
                #expect(taken != nil && taken! >= now && taken! <= now + 5)
            }
            // A fresh claim is respected.
            writeSlot(path, k, FileQueryRequestLog.claim(k.bytes, at: now &- 10))
            #expect(!log.noteRequest(k))
        }
    }

    @Test func aBusyLockNeverWaitsAndWritesNothing() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("cache-requests")
            let log = FileQueryRequestLog(path: path)
            let k = SHA256Digest.hash(Array("k".utf8))
            #expect(!log.noteRequest(k))
            let holder = open(path, O_RDWR)
            try #require(holder >= 0)
            defer { close(holder) }
            #expect(flock(holder, LOCK_EX) == 0)
            let start = Date()
            #expect(!log.noteRequest(k), "a busy log counts as a first request (nothing stored twice)")
            log.release(k)
            #expect(Date().timeIntervalSince(start) < 1)
            #expect(slot(path, k) == k.bytes, "nothing written while another process holds the log")
            #expect(flock(holder, LOCK_UN) == 0)
            #expect(log.noteRequest(k))
        }
    }

    @Test func manyThreadsRepeatingARecipeAtOnceGetOneClaim() {
        withTemporaryDirectory { dir in
            let path = dir.file("cache-requests")
            let k = SHA256Digest.hash(Array("k".utf8))
            #expect(!FileQueryRequestLog(path: path).noteRequest(k))
            let claims = Mutex(0)
            DispatchQueue.concurrentPerform(iterations: 16) { _ in
                if FileQueryRequestLog(path: path).noteRequest(k) { claims.withLock { $0 += 1 } }
            }
            // Each request either got the claim, saw the claim, or found the lock busy.
            #expect(claims.withLock { $0 } == 1)
            #expect(FileQueryRequestLog.claimTime(slot(path, k), for: k.bytes) != nil)
        }
    }

    @Test func aSymbolicLinkIsNeitherFollowedNorReplacedAndTheQueryIsAnsweredAndCached() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir)
            let outside = dir.file("outside")
            writeFile(outside, Array("keep me".utf8))
            let log = "\(store.path)/\(LocalStoreFactory.requestLogName)"
            #expect(symlink(outside, log) == 0)
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            let first = try store.materialize(plan, to: .file(dir.file("a")))
            // The log cannot be used: the request counts as a repeat (cached, as `always`).
            #expect(!first.fromCache && first.derivedDigest != nil)
            #expect(try store.materialize(plan, to: .file(dir.file("b"))).fromCache)
            #expect(readFile(outside) == Data("keep me".utf8), "nothing written through the link")
            var info = stat()
            #expect(lstat(log, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK, "the link is left in place")
            #expect(readFile(dir.file("a")) == readFile(dir.file("b")))
        }
    }

    @Test func aDirectoryInPlaceOfTheLogIsLeftAloneAndTheQueryIsCached() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir)
            let log = "\(store.path)/\(LocalStoreFactory.requestLogName)"
            #expect(mkdir(log, 0o755) == 0)
            writeFile("\(log)/inside", [1, 2, 3])
            let plan = try store.plan(.lawa(k: 3, stride: 10, at: 20), run: "r")
            let first = try store.materialize(plan, to: .file(dir.file("a")))
            #expect(!first.fromCache && first.derivedDigest != nil)
            #expect(readFile("\(log)/inside") == Data([1, 2, 3]))
        }
    }

    @Test func aTruncatedLogReadsAsNotRequested() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir)
            let log = "\(store.path)/\(LocalStoreFactory.requestLogName)"
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            #expect(try store.materialize(plan, to: .file(dir.file("a"))).derivedDigest == nil)
            #expect(truncate(log, 5) == 0)
            #expect(try store.materialize(plan, to: .file(dir.file("b"))).derivedDigest == nil, "the note was lost")
            let third = try store.materialize(plan, to: .file(dir.file("c")))
            #expect(!third.fromCache && third.derivedDigest != nil)
            #expect(readFile(dir.file("a")) == readFile(dir.file("c")))
        }
    }

    @Test func gcKeepsTheLogSoARecipeAskedForBeforeIsCachedOnItsNextRequest() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir)
            let log = "\(store.path)/\(LocalStoreFactory.requestLogName)"
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            _ = try store.materialize(plan, to: .file(dir.file("a")))
            let second = try store.materialize(plan, to: .file(dir.file("b")))
            let digest = try #require(second.derivedDigest)
            #expect(slot(log, plan.cacheKey) == plan.cacheKey.bytes, "the claim was released after caching")
            _ = try store.collectGarbage(run: nil, policy: RetentionPolicy())
            #expect(try store.derivedSnapshots(run: "r").isEmpty, "plain gc drops cached results")
            #expect(slot(log, plan.cacheKey) == plan.cacheKey.bytes, "gc leaves the request log")
            let again = try store.materialize(plan, to: .file(dir.file("c")))
            #expect(!again.fromCache && again.derivedDigest == digest)
            #expect(try store.materialize(plan, to: .file(dir.file("d"))).fromCache)
        }
    }

    @Test func aDerivedSnapshotWhoseBlobsWereDeletedIsRecomputedNotAnError() throws {
        try withTemporaryDirectory { dir in
            let store = try makeStore(dir)
            // The mean of steps 10 and 20 shares no chunk with an input.
            let plan = try store.plan(.lawa(k: 2, stride: 10, at: 20), run: "r")
            _ = try store.materialize(plan, to: .file(dir.file("a")))
            let digest = try #require(try store.materialize(plan, to: .file(dir.file("b"))).derivedDigest)
            // Every blob of the derived snapshot deleted behind the store's back.
            let manifest = try store.manifest(of: ResolvedRef(digest: digest, snapshot: nil))
            for chunk in manifest.tensors.flatMap(\.chunks) {
                let hex = chunk.hash.hex
                unlink("\(store.path)/objects/\(hex.prefix(2))/\(hex)")
            }
            let again = try store.materialize(plan, to: .file(dir.file("c")))
            #expect(!again.fromCache && again.derivedDigest == digest && again.cacheNotes.count == 1)
            #expect(readFile(dir.file("a")) == readFile(dir.file("c")))
            #expect(try store.materialize(plan, to: .file(dir.file("d"))).fromCache)
        }
    }
}
