import Foundation
import Testing

@testable import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// Large blobs are written with `O_DIRECT` (page-aligned prefix) and a buffered tail; these
/// tests check that every size around the alignment comes back byte for byte, and that the
/// fallbacks (an unaligned buffer, a file system that refuses `O_DIRECT` at open or at the
/// first write, tmpfs) store the same bytes.
@Suite("Direct blob writes") struct DirectBlobWriteTests {
    /// Deterministic bytes of `count` in a page-aligned buffer, shifted by `offset` bytes.
    private static func bytes(_ count: Int, seed: UInt64, offset: Int = 0) -> ByteBuffer {
        let buffer = ByteBuffer(capacity: count + offset + LocalBlobStore.directMinimum)
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<(count + offset) {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            buffer.storage[i] = UInt8(truncatingIfNeeded: state)
        }
        buffer.count = count + offset
        return buffer
    }

    /// Puts `count` bytes (starting `offset` bytes into a page-aligned buffer) and reads the
    /// blob file back.
    private static func roundTrip(_ store: LocalBlobStore, count: Int, seed: UInt64, offset: Int = 0) throws -> Bool {
        let buffer = bytes(count, seed: seed, offset: offset)
        let data = UnsafeRawBufferPointer(rebasing: buffer.bytes[offset...])
        let id = SHA256Digest.hash(data)
        let (isNew, size) = try store.put(id, bytes: data) { _ in false }
        #expect(isNew && size == count)
        try store.syncNamespace()
        var back = ByteBuffer(capacity: 1)
        let n = try store.read(id, into: &back)
        return n == count && memcmp(back.storage.baseAddress!, data.baseAddress!, count) == 0
    }

    static let sizes: [Int] = {
        let a = LocalBlobStore.directAlignment
        let m = LocalBlobStore.directMinimum
        return [m - 1, m, m + 1, m + a - 1, m + a, 4 << 20, (4 << 20) + 37, 3 * m + 2 * a + 1]
    }()

    @Test(arguments: sizes)
    func everySizeAroundTheAlignmentRoundTrips(count: Int) throws {
        try withTemporaryDirectory("direct") { dir in
            let store = LocalBlobStore(root: dir.path, writeMode: .direct)
            let same = try Self.roundTrip(store, count: count, seed: UInt64(count))
            #expect(same, "the blob reads back byte for byte")
            #expect(store.temporaryFiles().isEmpty)
        }
    }

    @Test func anUnalignedBufferIsWrittenThroughThePageCache() throws {
        try withTemporaryDirectory("direct-unaligned") { dir in
            let store = LocalBlobStore(root: dir.path, writeMode: .direct)
            let same = try Self.roundTrip(store, count: (1 << 20) + 5, seed: 3, offset: 1)
            #expect(same, "the blob reads back byte for byte")
        }
    }

    @Test func aStoreOnTmpfsWorks() throws {
        guard FileSystem.exists("/dev/shm") else { return }
        var template = Array("/dev/shm/ckstore-direct-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { return }
        let path = String(cString: made)
        defer { removeTree(path) }
        let store = LocalBlobStore(root: path, writeMode: .direct)
        for count in [LocalBlobStore.directMinimum, (2 << 20) + 4095] {
            let same = try Self.roundTrip(store, count: count, seed: 9)
            #expect(same, "the blob reads back byte for byte")
        }
    }

    /// A file system that refuses `O_DIRECT` at open (`EINVAL`, after Linux may already have
    /// created the file): the blob is written buffered, no temporary file is left, and later
    /// blobs skip the attempt.
    @Test func aRefusedDirectOpenFallsBackToBufferedWrites() throws {
        try withTemporaryDirectory("direct-open") { dir in
            let store = LocalBlobStore(root: dir.path, writeMode: .direct)
            let fault = Sys.Fault(call: "open_direct", errno: EINVAL, skip: 0, remaining: 1, pathPrefix: dir.path)
            Sys.faults.withLock { $0.append(fault) }
            defer { Sys.faults.withLock { $0.removeAll { $0.pathPrefix == dir.path } } }
            let same = try Self.roundTrip(store, count: (1 << 20) + 100, seed: 4)
            #expect(same, "the blob reads back byte for byte")
            let refused = store.directRefused.load(ordering: .relaxed)
            #expect(refused)
            let sameAfter = try Self.roundTrip(store, count: (1 << 20) + 200, seed: 5)
            #expect(sameAfter, "the blob reads back byte for byte")
            #expect(store.temporaryFiles().isEmpty)
        }
    }

    /// Opened with `O_DIRECT`, but the first write is refused (`EINVAL`): written again
    /// through the page cache from the start.
    @Test func aRefusedDirectWriteFallsBackToBufferedWrites() throws {
        try withTemporaryDirectory("direct-write") { dir in
            let store = LocalBlobStore(root: dir.path, writeMode: .direct)
            let fault = Sys.Fault(call: "write", errno: EINVAL, skip: 0, remaining: 1, pathPrefix: dir.path)
            Sys.faults.withLock { $0.append(fault) }
            defer { Sys.faults.withLock { $0.removeAll { $0.pathPrefix == dir.path } } }
            let same = try Self.roundTrip(store, count: (1 << 20) + 300, seed: 6)
            #expect(same, "the blob reads back byte for byte")
            let refused = store.directRefused.load(ordering: .relaxed)
            #expect(refused)
            #expect(store.temporaryFiles().isEmpty)
        }
    }

    /// Another error than EINVAL (a full disk) is an error, and leaves no temporary file.
    @Test func aFullDiskDuringADirectWriteIsAnError() throws {
        try withTemporaryDirectory("direct-enospc") { dir in
            let store = LocalBlobStore(root: dir.path, writeMode: .direct)
            let fault = Sys.Fault(call: "write", errno: ENOSPC, skip: 0, remaining: 1, pathPrefix: dir.path)
            Sys.faults.withLock { $0.append(fault) }
            defer { Sys.faults.withLock { $0.removeAll { $0.pathPrefix == dir.path } } }
            #expect(throws: BlobStoreError.self) { _ = try Self.roundTrip(store, count: 1 << 20, seed: 7) }
            #expect(store.temporaryFiles().isEmpty)
            let refused = store.directRefused.load(ordering: .relaxed)
            #expect(!refused)
        }
    }
}
