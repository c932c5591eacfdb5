// The building blocks under the store: the ordered worker pipeline, the blob format and codec,
// the local blob store's create-once rule, the SQLite connection and the schema migrations.

import Foundation
import Synchronization
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

@Suite("Ordered pipeline") struct OrderedPipelineTests {
    @Test func resultsArriveInSubmissionOrderWhateverTheFinishingOrder() throws {
        let pipeline = OrderedPipeline<Int, Int, Int>(
            workers: 3, capacity: 6, makeState: { 0 },
            process: { _, n in
                usleep(UInt32((n * 7919) % 5) * 1000)  // uneven job lengths
                return n * n
            })
        defer { pipeline.shutdown() }
        var got: [Int] = []
        for n in 0..<200 { try pipeline.submit(n) { got.append($0) } }
        try pipeline.drain { got.append($0) }
        #expect(got == (0..<200).map { $0 * $0 })
    }

    @Test func noMoreThanCapacityJobsAreInFlight() throws {
        let inFlight = Mutex<(now: Int, peak: Int)>((0, 0))
        let pipeline = OrderedPipeline<Int, Int, Int>(
            workers: 2, capacity: 4, makeState: { 0 },
            process: { _, n in
                inFlight.withLock {
                    $0.now += 1; $0.peak = max($0.peak, $0.now)
                }
                usleep(2000)
                return n
            })
        defer { pipeline.shutdown() }
        var outstanding = 0
        var maxOutstanding = 0
        let deliver: (Int) -> Void = { _ in
            outstanding -= 1
            inFlight.withLock { $0.now -= 1 }
        }
        for n in 0..<40 {
            try pipeline.submit(n, deliver: deliver)
            outstanding += 1
            maxOutstanding = max(maxOutstanding, outstanding)
        }
        try pipeline.drain(deliver)
        #expect(maxOutstanding <= 4)
        #expect(inFlight.withLock { $0.peak } <= 4)
    }

    @Test func theFirstErrorIsStickyAndLaterSubmitsFail() throws {
        struct Boom: Error {}
        let pipeline = OrderedPipeline<Int, Int, Int>(
            workers: 2, capacity: 2, makeState: { 0 },
            process: { _, n in
                if n == 5 { throw Boom() }
                return n
            })
        defer { pipeline.shutdown() }
        var delivered: [Int] = []
        var failedAt: Int?
        for n in 0..<50 {
            do {
                try pipeline.submit(n) { delivered.append($0) }
            } catch {
                failedAt = n
                break
            }
        }
        #expect(failedAt != nil)
        #expect(delivered == Array(0..<5))
        #expect(throws: Boom.self) { try pipeline.submit(99) { _ in } }
    }

    @Test func eachWorkerBuildsItsOwnStateOnce() throws {
        let built = Mutex(0)
        let pipeline = OrderedPipeline<Int, Int, Int>(
            workers: 3, capacity: 6,
            makeState: {
                built.withLock { $0 += 1 }
                return 0
            },
            process: { state, _ in
                state += 1
                return state
            })
        var total = 0
        for n in 0..<60 { try pipeline.submit(n) { total += $0 > 0 ? 1 : 0 } }
        try pipeline.drain { total += $0 > 0 ? 1 : 0 }
        pipeline.shutdown()
        #expect(total == 60)
        #expect(built.withLock { $0 } == 3)
    }
}

@Suite("Blob format") struct BlobFormatTests {
    private func floats(_ n: Int) -> [UInt8] {
        var rng = SplitMix64(seed: 7)
        var out: [UInt8] = []
        for _ in 0..<n {
            let v = Float(Double(rng.next() % 1000) / 50_000)
            withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 }
        }
        return out
    }

    @Test func float32ChunksAreHybridShuffledCompressedAndDecodeBack() throws {
        let raw = floats(4096)
        let codec = BlobCodec(maxChunkSize: raw.count, settings: .init())
        let (blob, header) = try raw.withUnsafeBytes { try codec.encode($0, dtype: .f32, name: SHA256Digest.hash(raw)) }
        let file = Array(blob)
        #expect(header.codec == .lz4 && header.filter == .hybridShuffle && header.laneWidth == 4)
        #expect(file.count < raw.count)
        #expect(Array(file[0..<4]) == Array("CKB1".utf8) && file[4] == 2)
        let out = ByteBuffer(capacity: raw.count)
        let n = try file.withUnsafeBytes { try codec.decode($0, into: out, name: SHA256Digest.hash(raw), rehash: true) }
        #expect(n == raw.count && Array(out.bytes) == raw)
    }

    @Test func twoByteFloatsGetAFullBitShuffleUnderTheHybridDefault() throws {
        var rng = SplitMix64(seed: 2)
        let raw = (0..<4096).flatMap { _ -> [UInt8] in [UInt8(truncatingIfNeeded: rng.next()), 0x3C] }
        let codec = BlobCodec(maxChunkSize: raw.count, settings: .init())
        let (_, header) = try raw.withUnsafeBytes { try codec.encode($0, dtype: .bf16, name: SHA256Digest.hash(raw)) }
        #expect(header.filter == .bitShuffle && header.laneWidth == 2)
    }

    @Test func incompressibleChunksAreStoredRawWithoutAFilter() throws {
        var rng = SplitMix64(seed: 1)
        let raw = rng.bytes(8192)
        let codec = BlobCodec(maxChunkSize: raw.count, settings: .init())
        let (blob, header) = try raw.withUnsafeBytes { try codec.encode($0, dtype: .u8, name: SHA256Digest.hash(raw)) }
        #expect(header.codec == .none && header.filter == .none)
        #expect(blob.count == BlobHeader.size + raw.count)
    }

    /// Each damage is reported with the byte offset of the field that failed.
    /// Flips of fields whose value stays in range (raw length byte 9, payload checksum byte 25,
    /// the address at 40) are caught by the header checksum at byte 56; payload damage (byte
    /// 80) by the payload checksum at byte 64.
    @Test(arguments: [(0, 0), (4, 4), (5, 5), (6, 6), (7, 7), (9, 56), (17, 16), (25, 56), (40, 56), (57, 56), (80, 64)])
    func damageIsReportedAtTheOffsetOfTheFailedField(flip: Int, reportedOffset: Int) throws {
        let raw = floats(2048)
        let codec = BlobCodec(maxChunkSize: raw.count, settings: .init())
        var file = Array(try raw.withUnsafeBytes { try codec.encode($0, dtype: .f32, name: SHA256Digest.hash(raw)) }.bytes)
        file[flip] ^= 0x40
        let out = ByteBuffer(capacity: raw.count)
        #expect {
            _ = try file.withUnsafeBytes { try codec.decode($0, into: out, name: SHA256Digest.hash(raw), rehash: true) }
        } throws: { error in
            (error as? CKStore.BlobDamage)?.offset == reportedOffset
        }
    }

    @Test func aTruncatedBlobIsDamageNotAShortRead() throws {
        let raw = floats(1024)
        let codec = BlobCodec(maxChunkSize: raw.count, settings: .init())
        let file = Array(try raw.withUnsafeBytes { try codec.encode($0, dtype: .f32, name: SHA256Digest.hash(raw)) }.bytes)
        let out = ByteBuffer(capacity: raw.count)
        for cut in [0, 10, 31, 32, 63, 64, file.count - 1] {
            #expect(throws: CKStore.BlobDamage.self) {
                _ = try Array(file[0..<cut]).withUnsafeBytes {
                    try codec.decode($0, into: out, name: SHA256Digest.hash(raw), rehash: false)
                }
            }
        }
    }

    @Test func theIdentityCheckCatchesAValidBlobUnderTheWrongNameWithoutRehashing() throws {
        let raw = floats(1024)
        let codec = BlobCodec(maxChunkSize: raw.count, settings: .init())
        let file = Array(try raw.withUnsafeBytes { try codec.encode($0, dtype: .f32, name: SHA256Digest.hash(raw)) }.bytes)
        let out = ByteBuffer(capacity: raw.count)
        let wrongName = SHA256Digest.hash([1, 2, 3])
        // The version 2 header records the chunk's address: a read under another name fails at
        // byte 32 even without the SHA-256 re-hash.
        for rehash in [false, true] {
            #expect {
                _ = try file.withUnsafeBytes { try codec.decode($0, into: out, name: wrongName, rehash: rehash) }
            } throws: { error in
                (error as? CKStore.BlobDamage)?.offset == 32
            }
        }
        #expect(try file.withUnsafeBytes { try codec.decode($0, into: out, name: SHA256Digest.hash(raw), rehash: false) } == raw.count)
    }
}

@Suite("Local blob store") struct LocalBlobStoreTests {
    @Test func putCreatesOnceAndNeverReplacesAValidBlob() throws {
        try withTemporaryDirectory { dir in
            let store = LocalBlobStore(root: dir.path)
            let id = SHA256Digest.hash([9])
            let first = try [UInt8]([1, 2, 3]).withUnsafeBytes { try store.put(id, bytes: $0) { _ in true } }
            let second = try [UInt8]([4, 5, 6, 7]).withUnsafeBytes { try store.put(id, bytes: $0) { _ in true } }
            #expect(first.isNew && !second.isNew && second.size == 3)
            var buffer = ByteBuffer(capacity: 1)
            #expect(try store.read(id, into: &buffer) == 3 && Array(buffer.bytes) == [1, 2, 3])
            try store.syncNamespace()
        }
    }

    @Test func aDamagedLeftoverIsReplaced() throws {
        try withTemporaryDirectory { dir in
            let store = LocalBlobStore(root: dir.path)
            let id = SHA256Digest.hash([9])
            _ = try [UInt8]([0, 0]).withUnsafeBytes { try store.put(id, bytes: $0) { _ in true } }
            let result = try [UInt8]([1, 2, 3]).withUnsafeBytes { try store.put(id, bytes: $0) { $0.count == 3 } }
            #expect(result.isNew && result.size == 3)
            var buffer = ByteBuffer(capacity: 1)
            #expect(try store.read(id, into: &buffer) == 3)
            #expect(store.temporaryFiles().isEmpty)
        }
    }

    @Test func missingBlobsAreNotFoundAndRemovingThemIsNotAnError() throws {
        try withTemporaryDirectory { dir in
            let store = LocalBlobStore(root: dir.path)
            let id = SHA256Digest.hash([42])
            var buffer = ByteBuffer(capacity: 1)
            #expect {
                _ = try store.read(id, into: &buffer)
            } throws: { error in
                if case .notFound = error as? BlobStoreError { return true }
                return false
            }
            #expect(try store.size(of: id) == nil)
            try store.remove(id)
        }
    }

    @Test func aFailedWriteLeavesNoTemporaryFile() throws {
        withTemporaryDirectory { dir in
            let store = LocalBlobStore(root: dir.path)
            // Only writes under this test's folder fail (tests run in parallel in one process).
            let fault = Sys.Fault(call: "write", errno: ENOSPC, skip: 0, remaining: 1, pathPrefix: dir.path)
            Sys.faults.withLock { $0.append(fault) }
            defer { Sys.faults.withLock { $0.removeAll { $0.pathPrefix == dir.path } } }
            #expect(throws: BlobStoreError.self) {
                _ = try [UInt8]([1, 2, 3]).withUnsafeBytes { try store.put(SHA256Digest.hash([1]), bytes: $0) { _ in true } }
            }
            #expect(store.temporaryFiles().isEmpty)
        }
    }
}

@Suite("SQLite and schema") struct SQLiteSchemaTests {
    @Test func aStoreWithANewerSchemaIsRefused() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            let db = try Connection(path: "\(path)/ckstore.db", mode: .readWrite)
            try db.execute("PRAGMA user_version = 999")
            try db.close()
            #expect {
                _ = try Store(path: path)
            } throws: { error in
                (error as? CKStoreError)?.message.contains("newer than this ckstore understands") == true
            }
        }
    }

    @Test func migrationsAreRecordedAndIdempotent() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            try Store.initialize(at: path)
            let db = try Connection(path: "\(path)/ckstore.db", mode: .readOnly)
            let applied = try db.statement("SELECT id, name FROM schema_migrations ORDER BY id").rows { ($0.int(0), $0.text(1)) }
            #expect(applied.map(\.0) == schemaMigrations.map(\.id))
            #expect(try db.statement("PRAGMA user_version").firstRow { $0.int(0) } == SQLiteMetadataStore.schemaVersion)
            #expect(try db.statement("PRAGMA journal_mode").firstRow { $0.text(0) } == "wal")
            try db.close()
        }
    }

    @Test func closingReportsNoLiveStatementsAfterNormalUse() throws {
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            let metadata = try SQLiteMetadataStore(path: "\(path)/ckstore.db", create: false)
            _ = try metadata.runs()
            _ = try metadata.statistics()
            _ = try metadata.hasChunk(SHA256Digest.hash([1]))
            try metadata.close()
        }
    }

    @Test func aFailedTransactionRollsBackAndRethrowsTheBodysError() throws {
        struct Body: Error {}
        try withTemporaryDirectory { dir in
            let db = try Connection(path: dir.file("t.db"), mode: .readWriteCreate)
            try db.execute("CREATE TABLE t (x INTEGER)")
            #expect(throws: Body.self) {
                try db.inTransaction { () throws -> (Connection.TransactionCompletion, Void) in
                    try db.execute("INSERT INTO t VALUES (1)")
                    throw Body()
                }
            }
            #expect(try db.statement("SELECT count(*) FROM t").firstRow { $0.int(0) } == 0)
            #expect(!db.isInTransaction)
            try db.close()
        }
    }
}
