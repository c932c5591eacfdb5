/// What an S3 request was and how the service answered: enough to find it in the server's log.
/// It never holds credentials or request headers.
public struct S3ErrorContext: Sendable, Equatable {
    /// The operation: `PutObject`, `GetObject`, `HeadObject`, `DeleteObject`, `ListObjectsV2`, `CreateBucket`.
    public var operation: String
    /// The bucket.
    public var bucket: String
    /// The object key (nil for bucket operations).
    public var key: String?
    /// The HTTP status (nil when no response arrived).
    public var status: Int?
    /// S3's error code from the XML body, e.g. `NoSuchKey`, `SignatureDoesNotMatch` (nil when absent).
    public var code: String?
    /// The request id (`x-amz-request-id` header or `<RequestId>`), when the service sent one.
    public var requestId: String?
    /// The transport failure when no usable response arrived (libcurl's message).
    public var transport: String?
    /// How many attempts were made.
    public var attempts: Int

    /// A context from its parts.
    public init(
        operation: String, bucket: String, key: String?, status: Int? = nil, code: String? = nil,
        requestId: String? = nil, transport: String? = nil, attempts: Int = 1
    ) {
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.status = status
        self.code = code
        self.requestId = requestId
        self.transport = transport
        self.attempts = attempts
    }

    /// `PutObject s3://bucket/key: HTTP 412 PreconditionFailed (request id …, 1 attempt)`.
    public var summary: String {
        var text = "\(operation) s3://\(bucket)/\(key ?? "")"
        var details: [String] = []
        if let status { details.append("HTTP \(status)" + (code.map { " \($0)" } ?? "")) } else if let code { details.append(code) }
        if let transport { details.append(transport) }
        if let requestId { details.append("request id \(requestId)") }
        details.append(attempts == 1 ? "1 attempt" : "\(attempts) attempts")
        text += ": " + details.joined(separator: ", ")
        return text
    }
}

/// A failed S3 request, classified by what the caller should do about it. Classification uses the
/// HTTP status and S3's machine-readable error code, never the message text.
public enum S3Error: Error, Sendable, Equatable, CustomStringConvertible {
    /// The object or bucket does not exist (404, `NoSuchKey`, `NoSuchBucket`).
    case notFound(S3ErrorContext)
    /// A precondition or ownership conflict: 412 `PreconditionFailed`, 409 (e.g. `BucketAlreadyExists`
    /// owned by someone else, `OperationAborted`).
    case conflict(S3ErrorContext)
    /// A retryable failure (5xx, 429/`SlowDown`, timeout, connection error) that persisted through
    /// every attempt.
    case unavailable(S3ErrorContext)
    /// Credentials refused: 401/403 (`AccessDenied`, `SignatureDoesNotMatch`, `InvalidAccessKeyId`, …).
    case auth(S3ErrorContext)
    /// Anything else: a request the service will never accept as sent, or an answer that cannot be
    /// understood (then `code` is `MalformedResponse`).
    case permanent(S3ErrorContext)

    /// The context of any case.
    public var context: S3ErrorContext {
        switch self {
        case .notFound(let c), .conflict(let c), .unavailable(let c), .auth(let c), .permanent(let c): return c
        }
    }

    /// One line: the class, the operation, the object, status, code and request id.
    public var description: String {
        let kind: String
        switch self {
        case .notFound: kind = "not found"
        case .conflict: kind = "conflict"
        case .unavailable: kind = "service unavailable"
        case .auth: kind = "access denied (check the S3 credentials and region)"
        case .permanent: kind = "request failed"
        }
        return "S3 \(kind): \(context.summary)"
    }

    /// Whether a response with `status` and error `code` is worth retrying.
    static func isRetryable(status: Int, code: String?) -> Bool {
        if status >= 500 || status == 429 { return true }
        switch code {
        case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable": return true
        default: return false
        }
    }

    /// Classifies a final (non-retried or retries exhausted) HTTP error response.
    static func classify(_ context: S3ErrorContext) -> S3Error {
        guard let status = context.status else { return .unavailable(context) }
        if isRetryable(status: status, code: context.code) { return .unavailable(context) }
        switch (status, context.code) {
        case (404, _), (_, "NoSuchKey"), (_, "NoSuchBucket"): return .notFound(context)
        case (401, _), (403, _), (_, "AccessDenied"), (_, "SignatureDoesNotMatch"), (_, "InvalidAccessKeyId"),
            (_, "InvalidToken"), (_, "ExpiredToken"):
            return .auth(context)
        case (409, _), (412, _), (_, "PreconditionFailed"): return .conflict(context)
        default: return .permanent(context)
        }
    }
}
