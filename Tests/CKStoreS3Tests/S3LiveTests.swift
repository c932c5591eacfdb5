import Foundation
import Testing

@testable import CKStoreS3

/// Live-service helpers: the configuration comes from the environment (AWS_ENDPOINT_URL,
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION) and the suites run only when
/// CKSTORE_TEST_S3 is set.
enum S3Live {
    static let environment = ProcessInfo.processInfo.environment
    static let enabled = environment["CKSTORE_TEST_S3"].map { !$0.isEmpty && $0 != "0" } ?? false
    static let skipReason: Comment =
        "live S3 tests need CKSTORE_TEST_S3=1 and AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (e.g. a local Ceph RGW)"

    /// One bucket per test process, created on first use.
    static let bucket = "ckstore-s3test-\(UInt32.random(in: 0...UInt32.max))"

    static func config() throws -> S3Config {
        var config = try S3Config.fromEnvironment(environment)
        config.maxAttempts = 4
        return config
    }

    /// A client for the shared test bucket (created if needed).
    static func client() throws -> S3Client {
        let client = try S3Client(config: config(), bucket: bucket)
        try client.createBucket()
        return client
    }

    /// A key prefix unique to one test.
    static func prefix(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(8))/" }

    /// Deterministic pseudo-random bytes (every byte value occurs).
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            var index = 0
            while index < count {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                var word = state
                for _ in 0..<8 where index < count {
                    raw[index] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    index += 1
                }
            }
        }
        return out
    }

    /// Runs `body(i)` for i in 0..<count on `count` OS threads at once; returns the results in order.
    static func onThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) -> T) -> [T] {
        let box = ResultBox<T>(count)
        let group = DispatchGroup()
        for index in 0..<count {
            group.enter()
            let thread = Thread {
                box.set(index, body(index))
                group.leave()
            }
            thread.start()
        }
        group.wait()
        return box.values()
    }
}

/// Results gathered from threads under a lock.
final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [T?]
    init(_ count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: T) { lock.withLock { slots[index] = value } }
    func values() -> [T] { lock.withLock { slots.map { $0! } } }
}

@Suite(.enabled(if: S3Live.enabled, S3Live.skipReason))
struct S3LiveTests {
    @Test func createBucketIsIdempotent() throws {
        let name = "ckstore-s3test-create-\(UInt32.random(in: 0...UInt32.max))"
        let client = try S3Client(config: S3Live.config(), bucket: name)
        #expect(try !client.bucketExists())
        #expect(try client.createBucket())
        #expect(try client.bucketExists())
        #expect(try !client.createBucket())  // exists and is ours: fine
        try client.deleteBucket()
        #expect(try !client.bucketExists())
    }

    @Test func roundTripBinaryBytes() throws {
        let client = try S3Live.client()
        let prefix = S3Live.prefix("roundtrip")
        var bytes = (0..<4096).map { UInt8(truncatingIfNeeded: $0) }
        bytes += S3Live.bytes(1 << 20, seed: 7)
        for (name, payload) in [("bin", bytes), ("empty", []), ("odd key a b+c&d=é~!'()*", Array("x".utf8))] {
            let key = prefix + name
            #expect(try client.putObject(key, bytes: payload) == .created)
            #expect(try client.headObject(key) == payload.count)
            #expect(try client.getObject(key) == payload)
            try client.deleteObject(key)
            #expect(try client.headObject(key) == nil)
        }
        // Overwrite without a condition replaces.
        try client.putObject(prefix + "w", bytes: [1])
        try client.putObject(prefix + "w", bytes: [2, 3])
        #expect(try client.getObject(prefix + "w") == [2, 3])
        try client.deleteObject(prefix + "w")
    }

    @Test func ifNoneMatchGivesAlreadyExists() throws {
        let client = try S3Live.client()
        let key = S3Live.prefix("inm") + "blob"
        #expect(try client.putObject(key, bytes: [1, 2, 3], ifNoneMatch: true) == .created)
        #expect(try client.putObject(key, bytes: [9, 9], ifNoneMatch: true) == .alreadyExists)
        #expect(try client.getObject(key) == [1, 2, 3])  // the loser wrote nothing
        try client.deleteObject(key)
    }

    @Test func concurrentConditionalPutsHaveOneWinner() throws {
        _ = try S3Live.client()
        let config = try S3Live.config()
        for round in 0..<3 {
            let key = S3Live.prefix("race\(round)") + "blob"
            let payloads = (0..<8).map { S3Live.bytes(256 << 10, seed: UInt64(100 + $0)) }
            let outcomes = S3Live.onThreads(8) { index -> String in
                do {
                    let client = try S3Client(config: config, bucket: S3Live.bucket)
                    return try client.putObject(key, bytes: payloads[index], ifNoneMatch: true) == .created ? "created" : "exists"
                } catch { return "error: \(error)" }
            }
            #expect(outcomes.filter { $0 == "created" }.count == 1, "\(outcomes)")
            #expect(outcomes.filter { $0 == "exists" }.count == 7, "\(outcomes)")
            let client = try S3Live.client()
            let stored = try client.getObject(key)
            let winner = outcomes.firstIndex(of: "created")!
            #expect(stored == payloads[winner])
            try client.deleteObject(key)
        }
    }

    @Test func rangeGet() throws {
        let client = try S3Live.client()
        let key = S3Live.prefix("range") + "blob"
        let bytes = S3Live.bytes(100_000, seed: 3)
        try client.putObject(key, bytes: bytes)
        #expect(try client.getObject(key, range: 0..<10) == Array(bytes[0..<10]))
        #expect(try client.getObject(key, range: 65_536..<70_000) == Array(bytes[65_536..<70_000]))
        #expect(try client.getObject(key, range: 99_990..<200_000) == Array(bytes[99_990...]))
        #expect(try client.getObject(key, range: 5..<5) == [])
        #expect(throws: S3Error.self) { try client.getObject(key, range: 200_000..<200_010) }
        try client.deleteObject(key)
    }

    @Test func listPagination() throws {
        let client = try S3Live.client()
        let prefix = S3Live.prefix("list")
        let names = (0..<23).map { String(format: "%03d", $0) } + ["a&b<c>", "sp ace", "ü"]
        for name in names { try client.putObject(prefix + name, bytes: Array(name.utf8)) }
        var pages = 0
        var seen: [S3ObjectInfo] = []
        var token: String?
        repeat {
            let page = try client.listObjects(prefix: prefix, continuationToken: token, maxKeys: 7)
            #expect(page.objects.count <= 7)
            seen += page.objects
            pages += 1
            token = page.isTruncated ? page.nextContinuationToken : nil
        } while token != nil
        #expect(pages == 4)
        let expected = names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            .map { S3ObjectInfo(key: prefix + $0, size: $0.utf8.count) }
        #expect(seen == expected)
        #expect(try client.listAllObjects(prefix: prefix, pageSize: 5) == expected)
        #expect(try client.listAllObjects(prefix: prefix) == expected)
        #expect(try client.listObjects(prefix: prefix + "none/").objects.isEmpty)
        for name in names { try client.deleteObject(prefix + name) }
        #expect(try client.listAllObjects(prefix: prefix).isEmpty)
    }

    @Test(.enabled(if: S3Live.environment["CKSTORE_TEST_S3_LARGE_LIST"] != nil, "set CKSTORE_TEST_S3_LARGE_LIST=1 to list 1001 keys"))
    func listMoreThanOneThousandKeys() throws {
        let prefix = S3Live.prefix("big")
        let config = try S3Live.config()
        _ = try S3Live.client()
        _ = S3Live.onThreads(4) { part in
            let client = try! S3Client(config: config, bucket: S3Live.bucket)
            for index in stride(from: part, to: 1001, by: 4) { try! client.putObject(prefix + String(format: "%05d", index), bytes: [1]) }
            return 0
        }
        let client = try S3Live.client()
        let all = try client.listAllObjects(prefix: prefix)
        #expect(all.count == 1001)
        #expect(all.map(\.key) == (0..<1001).map { prefix + String(format: "%05d", $0) })
        _ = S3Live.onThreads(4) { part in
            let client = try! S3Client(config: config, bucket: S3Live.bucket)
            for index in stride(from: part, to: 1001, by: 4) { try! client.deleteObject(prefix + String(format: "%05d", index)) }
            return 0
        }
    }

    @Test func missingKeyIsNotFound() throws {
        let client = try S3Live.client()
        let key = S3Live.prefix("missing") + "nothing"
        do {
            _ = try client.getObject(key)
            Issue.record("expected notFound")
        } catch {
            guard case .notFound(let context) = error else {
                Issue.record("expected notFound, got \(error)")
                return
            }
            #expect(context.status == 404)
            #expect(context.code == "NoSuchKey")
            #expect(context.key == key)
            #expect(context.requestId != nil)
        }
        #expect(try client.headObject(key) == nil)
        try client.deleteObject(key)  // deleting a missing key is fine
        let noBucket = try S3Client(config: S3Live.config(), bucket: "ckstore-s3test-absent-\(UInt32.random(in: 0...UInt32.max))")
        #expect {
            try noBucket.getObject("k")
        } throws: { error in
            guard case .notFound(let context) = error as? S3Error else { return false }
            return context.code == "NoSuchBucket"
        }
    }

    @Test func wrongSecretIsAuthErrorWithoutTheSecret() throws {
        _ = try S3Live.client()
        var config = try S3Live.config()
        let wrong = "wrong-secret-\(UUID().uuidString)"
        config.credentials.secretAccessKey = wrong
        let client = try S3Client(config: config, bucket: S3Live.bucket)
        for operation in ["put", "get", "list"] {
            do {
                switch operation {
                case "put": try client.putObject("auth/k", bytes: [1])
                case "get": _ = try client.getObject("auth/k")
                default: _ = try client.listObjects()
                }
                Issue.record("\(operation) with a wrong secret succeeded")
            } catch {
                guard case .auth(let context) = error else {
                    Issue.record("expected auth, got \(error)")
                    continue
                }
                #expect(context.status == 403)
                #expect(context.code == "SignatureDoesNotMatch")
                #expect(context.attempts == 1)  // never retried
                let text = "\(error) \(String(reflecting: error))"
                #expect(!text.contains(wrong))
                #expect(!text.contains(S3Live.environment["AWS_SECRET_ACCESS_KEY"] ?? "\u{0}"))
            }
        }
    }

    @Test func unreachableEndpointIsUnavailableAfterRetries() throws {
        var config = try S3Live.config()
        config.endpoint = S3Endpoint(scheme: "http", host: "127.0.0.1", port: 9)  // discard port: refused
        config.maxAttempts = 3
        config.baseBackoff = 0.01
        let client = try S3Client(config: config, bucket: "ckstore-nowhere")
        do {
            _ = try client.headObject("k")
            Issue.record("expected unavailable")
        } catch {
            guard case .unavailable(let context) = error else {
                Issue.record("expected unavailable, got \(error)")
                return
            }
            #expect(context.attempts == 3)
            #expect(context.status == nil)
            #expect(context.transport != nil)
        }
    }
}

/// Throughput of 4 MiB PUTs and GETs (`CKSTORE_TEST_S3_BENCH=1`): prints MiB/s, the median of
/// five runs of 32 objects, at 1 and 4 threads (one client per thread).
@Suite(.enabled(if: S3Live.enabled && S3Live.environment["CKSTORE_TEST_S3_BENCH"] != nil, "set CKSTORE_TEST_S3_BENCH=1 too"))
struct S3ThroughputBenchmark {
    @Test func putGet4MiB() throws {
        let config = try S3Live.config()
        _ = try S3Live.client()
        let objectSize = 4 << 20
        let objects = 32
        let payloads = (0..<objects).map { S3Live.bytes(objectSize, seed: UInt64(1000 + $0)) }
        func now() -> Double {
            var spec = timespec()
            clock_gettime(CLOCK_MONOTONIC, &spec)
            return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
        }
        for threads in [1, 4] {
            var putRates: [Double] = []
            var getRates: [Double] = []
            for run in 0..<5 {
                let prefix = S3Live.prefix("bench\(threads)-\(run)")
                let start = now()
                _ = S3Live.onThreads(threads) { part in
                    let client = try! S3Client(config: config, bucket: S3Live.bucket)
                    for index in stride(from: part, to: objects, by: threads) {
                        try! client.putObject(prefix + String(index), bytes: payloads[index], ifNoneMatch: true)
                    }
                    return 0
                }
                let putSeconds = now() - start
                let middle = now()
                let fetched = S3Live.onThreads(threads) { part in
                    let client = try! S3Client(config: config, bucket: S3Live.bucket)
                    return stride(from: part, to: objects, by: threads).map { index in
                        (index, try! client.getObject(prefix + String(index)))
                    }
                }
                let getSeconds = now() - middle
                for (index, bytes) in fetched.joined() { #expect(S3Crypto.sha256(bytes) == S3Crypto.sha256(payloads[index])) }
                let mib = Double(objects * objectSize) / Double(1 << 20)
                putRates.append(mib / putSeconds)
                getRates.append(mib / getSeconds)
                let client = try S3Live.client()
                for index in 0..<objects { try client.deleteObject(prefix + String(index)) }
            }
            let median = { (values: [Double]) in values.sorted()[values.count / 2] }
            print(
                "S3 4 MiB objects, \(threads) thread(s): PUT \(Int(median(putRates))) MiB/s, GET \(Int(median(getRates))) MiB/s "
                    + "(median of 5 runs of \(objects); runs PUT \(putRates.map { Int($0) }), GET \(getRates.map { Int($0) }))")
        }
    }
}
