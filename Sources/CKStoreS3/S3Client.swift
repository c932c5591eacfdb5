#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The outcome of a put.
public enum S3PutResult: Sendable, Equatable {
    /// The object was written by this request.
    case created
    /// `If-None-Match: *` was sent and the key already existed (HTTP 412): another writer got there
    /// first. Nothing was written. The caller validates the existing object and reuses it.
    case alreadyExists
}

/// A client for one bucket of an S3-compatible service (AWS S3, Ceph RGW, MinIO, SeaweedFS).
///
/// Each instance owns one libcurl easy handle, which keeps its connection open between requests
/// and is released in `deinit`. An instance performs one request at a time and is not thread-safe:
/// use one client per thread (it is cheap to create; the connection is made on the first request).
///
/// Retryable failures (HTTP 5xx, 429 and `SlowDown`, timeouts, connection errors) are retried up to
/// ``S3Config/maxAttempts`` times with exponential backoff and jitter; each retry is signed anew.
/// A conditional put that is retried after an ambiguous failure may find its own first attempt's
/// object and report ``S3PutResult/alreadyExists``: callers treat that exactly like a lost race
/// (validate, reuse). Errors are ``S3Error`` values; none of them contains the credentials.
public final class S3Client {
    /// The service configuration.
    public let config: S3Config
    /// The bucket every request addresses.
    public let bucket: String
    private let signer: SigV4Signer
    private let curl: CurlHandle
    /// Attempts the last request took (reported in errors about its final response).
    private var lastAttempts = 1

    /// A client for `bucket`. Fails only when libcurl cannot create a handle.
    public init(config: S3Config, bucket: String) throws(S3Error) {
        self.config = config
        self.bucket = bucket
        signer = SigV4Signer(credentials: config.credentials, region: config.region)
        guard let curl = CurlHandle() else {
            throw .permanent(S3ErrorContext(operation: "Init", bucket: bucket, key: nil, transport: "curl_easy_init failed"))
        }
        self.curl = curl
    }

    // MARK: Operations

    /// Creates the bucket (with the region's location constraint outside `us-east-1`). Returns true
    /// when created, false when it already exists and is ours (or at least accessible to us).
    /// A bucket owned by someone else is a ``S3Error/conflict(_:)``. (A HEAD comes first: some
    /// services, Ceph RGW among them, answer 200 to re-creating a bucket one owns.)
    @discardableResult
    public func createBucket() throws(S3Error) -> Bool {
        do {
            if try bucketExists() { return false }
        } catch {
            // 403 on HEAD: someone else's bucket, or bad credentials; the PUT tells which.
            guard case .auth = error else { throw error }
        }
        var body: [UInt8] = []
        if config.region != "us-east-1" {
            body = Array(
                ("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    + "<LocationConstraint>\(config.region)</LocationConstraint></CreateBucketConfiguration>").utf8)
        }
        let response = try send(operation: "CreateBucket", method: "PUT", key: nil, body: body)
        switch response.status {
        case 200..<300: return true
        case 409:
            let error = S3ErrorBody(xml: response.body)
            if error.code == "BucketAlreadyOwnedByYou" { return false }
            if error.code == "BucketAlreadyExists", (try? bucketExists()) == true { return false }
            throw failure("CreateBucket", key: nil, response)
        default:
            throw failure("CreateBucket", key: nil, response)
        }
    }

    /// Deletes the bucket, which must be empty. A missing bucket is not an error.
    public func deleteBucket() throws(S3Error) {
        let response = try send(operation: "DeleteBucket", method: "DELETE", key: nil)
        switch response.status {
        case 200..<300, 404: return
        default: throw failure("DeleteBucket", key: nil, response)
        }
    }

    /// Whether the bucket exists and is accessible (HEAD bucket: 200 true, 404 false).
    public func bucketExists() throws(S3Error) -> Bool {
        let response = try send(operation: "HeadBucket", method: "HEAD", key: nil)
        switch response.status {
        case 200..<300: return true
        case 404: return false
        default: throw failure("HeadBucket", key: nil, response)
        }
    }

    /// Writes `bytes` under `key`. With `ifNoneMatch`, sends `If-None-Match: *` so that an existing
    /// object is never replaced: HTTP 412 gives ``S3PutResult/alreadyExists``. The body's SHA-256 is
    /// signed (unless ``S3Config/signPayload`` is off), so a corrupted upload is refused by the service.
    @discardableResult
    public func putObject(_ key: String, bytes: UnsafeRawBufferPointer, ifNoneMatch: Bool = false) throws(S3Error) -> S3PutResult {
        let hash = config.signPayload ? S3Crypto.hex(S3Crypto.sha256(bytes)) : SigV4Signer.unsignedPayload
        var headers: [(name: String, value: String)] = []
        if ifNoneMatch { headers.append((name: "if-none-match", value: "*")) }
        let response = try send(operation: "PutObject", method: "PUT", key: key, headers: headers, body: bytes, payloadHash: hash)
        switch response.status {
        case 200..<300: return .created
        case 412 where ifNoneMatch: return .alreadyExists
        default: throw failure("PutObject", key: key, response)
        }
    }

    /// Writes `bytes` under `key`; as the raw-buffer overload does.
    @discardableResult
    public func putObject(_ key: String, bytes: [UInt8], ifNoneMatch: Bool = false) throws(S3Error) -> S3PutResult {
        let result: Result<S3PutResult, S3Error> = bytes.withUnsafeBytes { raw in
            do throws(S3Error) { return .success(try putObject(key, bytes: raw, ifNoneMatch: ifNoneMatch)) } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The object's bytes, or the bytes in `range` (offsets into the object, end exclusive, clamped
    /// by the service to the object's end). A missing object is ``S3Error/notFound(_:)``.
    public func getObject(_ key: String, range: Range<Int>? = nil) throws(S3Error) -> [UInt8] {
        var headers: [(name: String, value: String)] = []
        if let range {
            if range.isEmpty { return [] }
            headers.append((name: "range", value: "bytes=\(range.lowerBound)-\(range.upperBound - 1)"))
        }
        let response = try send(operation: "GetObject", method: "GET", key: key, headers: headers)
        switch response.status {
        case 200 where range == nil, 206 where range != nil:
            if let length = response.headers["content-length"].flatMap(Int.init), length != response.body.count {
                throw .unavailable(
                    context("GetObject", key: key, response, transport: "body has \(response.body.count) of \(length) bytes"))
            }
            return response.body
        case 200:
            // A service that ignores Range sends the whole object: cut the range out of it.
            let lower = min(range!.lowerBound, response.body.count)
            let upper = min(range!.upperBound, response.body.count)
            return Array(response.body[lower..<upper])
        default:
            throw failure("GetObject", key: key, response)
        }
    }

    /// The object's size in bytes, or nil when it does not exist.
    public func headObject(_ key: String) throws(S3Error) -> Int? {
        let response = try send(operation: "HeadObject", method: "HEAD", key: key)
        switch response.status {
        case 200..<300:
            guard let size = response.headers["content-length"].flatMap(Int.init) else {
                throw .permanent(context("HeadObject", key: key, response, code: "MalformedResponse"))
            }
            return size
        case 404: return nil
        default: throw failure("HeadObject", key: key, response)
        }
    }

    /// Deletes the object. Deleting a missing object is not an error (S3 answers 204 either way;
    /// a 404 is accepted too).
    public func deleteObject(_ key: String) throws(S3Error) {
        let response = try send(operation: "DeleteObject", method: "DELETE", key: key)
        switch response.status {
        case 200..<300, 404: return
        default: throw failure("DeleteObject", key: key, response)
        }
    }

    /// One page of keys under `prefix` (ListObjectsV2), starting after `continuationToken`, at most
    /// `maxKeys` entries (the service caps it at 1000).
    public func listObjects(prefix: String = "", continuationToken: String? = nil, maxKeys: Int? = nil) throws(S3Error)
        -> S3ListPage
    {
        var query: [(name: String, value: String)] = [(name: "list-type", value: "2")]
        if !prefix.isEmpty { query.append((name: "prefix", value: prefix)) }
        if let continuationToken { query.append((name: "continuation-token", value: continuationToken)) }
        if let maxKeys { query.append((name: "max-keys", value: String(maxKeys))) }
        let response = try send(operation: "ListObjectsV2", method: "GET", key: nil, query: query)
        guard (200..<300).contains(response.status) else { throw failure("ListObjectsV2", key: prefix, response) }
        guard let page = S3ListPage(xml: response.body), !page.isTruncated || page.nextContinuationToken != nil else {
            throw .permanent(context("ListObjectsV2", key: prefix, response, code: "MalformedResponse"))
        }
        return page
    }

    /// Every object under `prefix`, following continuation tokens page by page.
    public func listAllObjects(prefix: String = "", pageSize: Int? = nil) throws(S3Error) -> [S3ObjectInfo] {
        var objects: [S3ObjectInfo] = []
        var token: String?
        repeat {
            let page = try listObjects(prefix: prefix, continuationToken: token, maxKeys: pageSize)
            objects.append(contentsOf: page.objects)
            if page.isTruncated, page.nextContinuationToken == token {
                throw .permanent(
                    S3ErrorContext(operation: "ListObjectsV2", bucket: bucket, key: prefix, code: "MalformedResponse"))
            }
            token = page.isTruncated ? page.nextContinuationToken : nil
        } while token != nil
        return objects
    }

    // MARK: Requests

    /// Signs and sends a request, retrying retryable failures; returns the first non-retryable
    /// response (any status) or throws ``S3Error/unavailable(_:)`` when attempts run out.
    private func send(
        operation: String, method: String, key: String?, query: [(name: String, value: String)] = [],
        headers extra: [(name: String, value: String)] = [], body: [UInt8], payloadHash: String? = nil
    ) throws(S3Error) -> HTTPResponse {
        let hash = payloadHash ?? S3Crypto.hex(S3Crypto.sha256(body))
        let result: Result<HTTPResponse, S3Error> = body.withUnsafeBytes { raw in
            do throws(S3Error) {
                return .success(
                    try send(
                        operation: operation, method: method, key: key, query: query, headers: extra, body: raw, payloadHash: hash))
            } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Signs and sends a request (see the other overload); `body` nil sends none.
    private func send(
        operation: String, method: String, key: String?, query: [(name: String, value: String)] = [],
        headers extra: [(name: String, value: String)] = [], body: UnsafeRawBufferPointer? = nil,
        payloadHash: String = SigV4Signer.emptyPayloadHash
    ) throws(S3Error) -> HTTPResponse {
        let address = config.address(bucket: bucket, key: key)
        var attempt = 0
        while true {
            attempt += 1
            lastAttempts = attempt
            let signed = signer.sign(
                SigV4Signer.Request(
                    method: method, host: address.host, path: address.path, query: query, headers: extra, payloadHash: payloadHash),
                amzDate: SigV4Signer.amzDateNow())
            var url = "\(config.endpoint.scheme)://\(address.host)\(signed.encodedPath)"
            if !signed.encodedQuery.isEmpty { url += "?\(signed.encodedQuery)" }
            let lines = signed.headers.map { "\($0.name): \($0.value)" }
            let outcome = curl.perform(
                method: method, url: url, headers: lines, body: body, connectTimeout: config.connectTimeout,
                stallTimeout: config.stallTimeout)
            let retry: Bool
            let lastContext: S3ErrorContext
            switch outcome {
            case .response(let response):
                let code = response.status >= 300 ? S3ErrorBody(xml: response.body).code : nil
                guard response.status >= 300, S3Error.isRetryable(status: response.status, code: code) else { return response }
                retry = true
                lastContext = context(operation, key: key, response, attempts: attempt)
            case .failure(let code, let message):
                retry = CurlHandle.isRetryable(code)
                lastContext = S3ErrorContext(
                    operation: operation, bucket: bucket, key: key, transport: message, attempts: attempt)
            }
            guard retry else { throw .permanent(lastContext) }
            guard attempt < max(1, config.maxAttempts) else { throw .unavailable(lastContext) }
            backoff(attempt: attempt)
        }
    }

    /// Sleeps before retry number `attempt`: base × 2^(attempt-1), capped, times a jitter in [0.5, 1].
    private func backoff(attempt: Int) {
        let delay = min(config.maxBackoff, config.baseBackoff * Double(1 << min(attempt - 1, 20)))
        let jittered = delay * Double.random(in: 0.5...1.0)
        usleep(useconds_t(max(0, jittered) * 1_000_000))
    }

    /// The classified error for an unexpected response.
    private func failure(_ operation: String, key: String?, _ response: HTTPResponse) -> S3Error {
        S3Error.classify(context(operation, key: key, response))
    }

    /// The error context of a response: status, S3 code and request id (no message text, which
    /// some services fill with the string to sign).
    private func context(
        _ operation: String, key: String?, _ response: HTTPResponse, code: String? = nil, transport: String? = nil,
        attempts: Int? = nil
    ) -> S3ErrorContext {
        let body = S3ErrorBody(xml: response.body)
        return S3ErrorContext(
            operation: operation, bucket: bucket, key: key, status: response.status, code: code ?? body.code,
            requestId: response.headers["x-amz-request-id"] ?? body.requestId, transport: transport,
            attempts: attempts ?? lastAttempts)
    }
}
