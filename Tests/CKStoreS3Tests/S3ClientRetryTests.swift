import Foundation
import Testing

@testable import CKStoreS3

#if canImport(Glibc)
    import Glibc
#endif

/// A scripted HTTP server on 127.0.0.1: each request gets the next scripted answer (one request per
/// connection, then the connection is closed). Requests are recorded for inspection.
final class ScriptedHTTPServer: @unchecked Sendable {
    /// One scripted answer; `truncateBodyTo` sends fewer body bytes than Content-Length claims.
    struct Answer {
        var status: Int
        var headers: [String: String] = [:]
        var body: String = ""
        var truncateBodyTo: Int?
    }
    /// What the client sent.
    struct Seen {
        var requestLine: String
        var headers: [String: String]
        var body: [UInt8]
    }

    let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var script: [Answer]
    private var seen: [Seen] = []

    init(_ script: [Answer]) throws {
        self.script = script
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    /// Requests received so far.
    var requests: [Seen] { lock.withLock { seen } }

    /// Stops accepting: the serving thread's accept fails and that thread closes the socket (closing
    /// it here could hand its descriptor number to another test's server while accept still uses it).
    func stop() { shutdown(listener, Int32(SHUT_RDWR)) }

    private func serve() {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 {
                close(listener)
                return
            }
            handle(connection)
            close(connection)
        }
    }

    private func handle(_ connection: Int32) {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int?
        while headerEnd == nil {
            let n = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            data += buffer[0..<n]
            if let range = findCRLFCRLF(data) { headerEnd = range }
        }
        let head = String(decoding: data[0..<headerEnd!], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst()
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let wanted = Int(headers["content-length"] ?? "0") ?? 0
        var body = Array(data[(headerEnd! + 4)...])
        while body.count < wanted {
            let n = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            body += buffer[0..<n]
        }
        let answer: Answer = lock.withLock {
            seen.append(Seen(requestLine: requestLine, headers: headers, body: body))
            return script.isEmpty ? Answer(status: 500, body: "<Error><Code>ScriptExhausted</Code></Error>") : script.removeFirst()
        }
        let payload = Array(answer.body.utf8)
        var text = "HTTP/1.1 \(answer.status) X\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n"
        for (name, value) in answer.headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        let out = Array(text.utf8) + payload.prefix(answer.truncateBodyTo ?? payload.count)
        _ = out.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    private func findCRLFCRLF(_ data: [UInt8]) -> Int? {
        guard data.count >= 4 else { return nil }
        for index in 0...(data.count - 4) where data[index] == 13 && data[index + 1] == 10 && data[index + 2] == 13 && data[index + 3] == 10
        {
            return index
        }
        return nil
    }
}

/// Retry, classification and request shape against a scripted server (always runs, no S3 needed).
@Suite struct S3ClientRetryTests {
    static func client(_ server: ScriptedHTTPServer, attempts: Int = 4) throws -> S3Client {
        var config = S3Config(
            endpoint: S3Endpoint(scheme: "http", host: "127.0.0.1", port: server.port), region: "us-east-1",
            credentials: S3Credentials(accessKeyId: "AKIDFAKE", secretAccessKey: "fake-secret-123"))
        config.maxAttempts = attempts
        config.baseBackoff = 0.001
        return try S3Client(config: config, bucket: "bkt")
    }

    static func errorXML(_ code: String) -> String { "<Error><Code>\(code)</Code><RequestId>rid-\(code)</RequestId></Error>" }

    @Test func retriesSlowDownAnd5xxThenSucceeds() throws {
        let server = try ScriptedHTTPServer([
            .init(status: 503, body: Self.errorXML("SlowDown")), .init(status: 429),
            .init(status: 500, body: Self.errorXML("InternalError")),
            .init(status: 200, headers: ["x-amz-request-id": "ok"], body: "hello"),
        ])
        defer { server.stop() }
        #expect(try Self.client(server).getObject("a b/c") == Array("hello".utf8))
        let requests = server.requests
        #expect(requests.count == 4)
        for request in requests {
            #expect(request.requestLine == "GET /bkt/a%20b/c HTTP/1.1")
            #expect(request.headers["host"] == "127.0.0.1:\(server.port)")
            #expect(request.headers["x-amz-content-sha256"] == SigV4Signer.emptyPayloadHash)
            #expect(request.headers["authorization"]?.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDFAKE/") == true)
            #expect(request.headers["authorization"]?.contains("fake-secret") == false)
        }
    }

    @Test func exhaustedRetriesAreUnavailable() throws {
        let server = try ScriptedHTTPServer(
            Array(repeating: .init(status: 503, headers: ["x-amz-request-id": "rid-503"], body: Self.errorXML("SlowDown")), count: 3))
        defer { server.stop() }
        #expect {
            try Self.client(server, attempts: 3).putObject("k", bytes: [1, 2, 3])
        } throws: { error in
            guard case .unavailable(let context) = error as? S3Error else { return false }
            return context.status == 503 && context.code == "SlowDown" && context.attempts == 3 && context.requestId == "rid-503"
                && context.key == "k" && context.operation == "PutObject"
        }
        #expect(server.requests.count == 3)
    }

    @Test func truncatedBodyIsRetried() throws {
        let server = try ScriptedHTTPServer([
            .init(status: 200, body: "0123456789", truncateBodyTo: 4), .init(status: 200, body: "0123456789"),
        ])
        defer { server.stop() }
        #expect(try Self.client(server).getObject("k") == Array("0123456789".utf8))
        #expect(server.requests.count == 2)
    }

    @Test func clientErrorsAreNotRetried() throws {
        let server = try ScriptedHTTPServer([
            .init(status: 400, body: Self.errorXML("InvalidArgument")), .init(status: 403, body: Self.errorXML("SignatureDoesNotMatch")),
            .init(status: 404, body: Self.errorXML("NoSuchKey")), .init(status: 503), .init(status: 404, body: Self.errorXML("NoSuchKey")),
        ])
        defer { server.stop() }
        let client = try Self.client(server)
        #expect {
            try client.getObject("k")
        } throws: { error in
            guard case .permanent(let context) = error as? S3Error else { return false }
            return context.code == "InvalidArgument" && context.attempts == 1
        }
        #expect {
            try client.listObjects()
        } throws: { error in
            guard case .auth(let context) = error as? S3Error else { return false }
            return context.code == "SignatureDoesNotMatch" && !"\(error)".contains("fake-secret")
        }
        #expect {
            try client.getObject("k")
        } throws: { error in
            guard case .notFound(let context) = error as? S3Error else { return false }
            return context.requestId == "rid-NoSuchKey" && context.attempts == 1
        }
        #expect {
            try client.getObject("k")  // 503, then 404: the error counts both attempts
        } throws: { error in
            guard case .notFound(let context) = error as? S3Error else { return false }
            return context.attempts == 2
        }
        #expect(server.requests.count == 5)
    }

    @Test func conditionalPutSignsIfNoneMatchAndMaps412() throws {
        let server = try ScriptedHTTPServer([
            .init(status: 200), .init(status: 412, body: Self.errorXML("PreconditionFailed")),
            .init(status: 412, body: Self.errorXML("PreconditionFailed")),
        ])
        defer { server.stop() }
        let client = try Self.client(server)
        #expect(try client.putObject("obj", bytes: Array("data".utf8), ifNoneMatch: true) == .created)
        #expect(try client.putObject("obj", bytes: Array("data".utf8), ifNoneMatch: true) == .alreadyExists)
        #expect {
            try client.putObject("obj", bytes: Array("data".utf8))  // 412 without asking for it
        } throws: { error in
            guard case .conflict = error as? S3Error else { return false }
            return true
        }
        let first = server.requests[0]
        #expect(first.requestLine == "PUT /bkt/obj HTTP/1.1")
        #expect(first.body == Array("data".utf8))
        #expect(first.headers["if-none-match"] == "*")
        #expect(first.headers["x-amz-content-sha256"] == S3Crypto.sha256Hex(Array("data".utf8)))
        #expect(first.headers["authorization"]?.contains("SignedHeaders=host;if-none-match;x-amz-content-sha256;x-amz-date") == true)
        #expect(server.requests[2].headers["if-none-match"] == nil)
    }

    @Test func rangeAndListQueryAreSigned() throws {
        let list = """
            <ListBucketResult><Contents><Key>p/x</Key><Size>3</Size></Contents><IsTruncated>true</IsTruncated>\
            <NextContinuationToken>t/1+=</NextContinuationToken></ListBucketResult>
            """
        let server = try ScriptedHTTPServer([
            .init(status: 206, body: "bcd"), .init(status: 200, body: list),
            .init(status: 200, body: "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>"),
        ])
        defer { server.stop() }
        let client = try Self.client(server)
        #expect(try client.getObject("k", range: 1..<4) == Array("bcd".utf8))
        #expect(server.requests[0].headers["range"] == "bytes=1-3")
        #expect(server.requests[0].headers["authorization"]?.contains("SignedHeaders=host;range;") == true)
        let page = try client.listObjects(prefix: "p/", continuationToken: "t/0+=", maxKeys: 1)
        #expect(page.objects == [S3ObjectInfo(key: "p/x", size: 3)])
        #expect(page.nextContinuationToken == "t/1+=")
        #expect(server.requests[1].requestLine == "GET /bkt?continuation-token=t%2F0%2B%3D&list-type=2&max-keys=1&prefix=p%2F HTTP/1.1")
        #expect {
            try client.listObjects()  // truncated without a token: refused, not looped on
        } throws: { error in
            guard case .permanent(let context) = error as? S3Error else { return false }
            return context.code == "MalformedResponse"
        }
    }

    @Test func virtualHostAddressing() throws {
        let server = try ScriptedHTTPServer([.init(status: 200, body: "v")])
        defer { server.stop() }
        // libcurl resolves every *.localhost name to the loopback address itself.
        let config = S3Config(
            endpoint: S3Endpoint(scheme: "http", host: "localhost", port: server.port), region: "us-east-1",
            credentials: S3Credentials(accessKeyId: "AKIDFAKE", secretAccessKey: "fake-secret-123"), addressing: .virtualHost)
        #expect(try S3Client(config: config, bucket: "bkt").getObject("dir/k~1") == Array("v".utf8))
        #expect(server.requests.first?.requestLine == "GET /dir/k~1 HTTP/1.1")
        #expect(server.requests.first?.headers["host"] == "bkt.localhost:\(server.port)")
    }
}
