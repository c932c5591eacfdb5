#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Access credentials for S3. The secret and the session token never appear in a description.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The access key id (sent in every request's Authorization header; not a secret, but not logged either).
    public var accessKeyId: String
    /// The secret access key: used only to derive signing keys, never sent or printed.
    public var secretAccessKey: String
    /// A session token from temporary credentials, sent as `x-amz-security-token`.
    public var sessionToken: String?

    /// Credentials from their parts.
    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// A description with every part redacted.
    public var description: String { "S3Credentials(redacted)" }
    /// A description with every part redacted.
    public var debugDescription: String { description }
}

/// URI encoding as S3's Signature V4 wants it: every byte outside `A-Z a-z 0-9 - . _ ~` becomes `%XX`
/// (upper-case hex) of its UTF-8 encoding. Object key paths keep their `/` separators; query names
/// and values encode `/` too. Nothing is encoded twice.
public enum S3URIEncoding {
    /// `string` with every byte outside the unreserved set percent-encoded; `/` is kept when `keepSlash`.
    public static func encode(_ string: String, keepSlash: Bool = false) -> String {
        let hexDigits = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: "/") where keepSlash:
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0f)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// An absolute path (`/bucket/key` or `/key`), each segment encoded, separators kept.
    public static func encodePath(_ path: String) -> String {
        encode(path, keepSlash: true)
    }

    /// The canonical query string: names and values encoded, pairs sorted by name then value, a
    /// name without a value written as `name=`.
    public static func canonicalQuery(_ items: [(name: String, value: String)]) -> String {
        items.map { (encode($0.name), encode($0.value)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }
}

/// AWS Signature Version 4 for S3 with the `Authorization` header.
///
/// The caller names every header to sign (besides `host`, `x-amz-date` and `x-amz-content-sha256`,
/// which the signer always adds): send `x-amz-*`, `range` and `if-none-match` through it, and send
/// exactly the headers it returns. The payload hash is always sent: the hex SHA-256 of the body, or
/// ``unsignedPayload``.
public struct SigV4Signer: Sendable {
    /// The payload hash that tells S3 the body is not signed.
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// The hex SHA-256 of the empty body.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// The credentials requests are signed with.
    public let credentials: S3Credentials
    /// The region in the credential scope, e.g. `us-east-1`.
    public let region: String
    /// The service in the credential scope: `s3`.
    public let service: String

    /// A signer for `region` (service `s3`).
    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// What is signed: the method, the host header, the unencoded absolute path, the query items,
    /// the extra headers and the payload hash.
    public struct Request: Sendable {
        /// HTTP method, upper case.
        public var method: String
        /// The `Host` header value exactly as sent (with `:port` when not the scheme's default).
        public var host: String
        /// The absolute path, not yet encoded: `/bucket/key` (path style) or `/key` (virtual host).
        public var path: String
        /// Query items, not yet encoded, in any order.
        public var query: [(name: String, value: String)]
        /// Extra headers to sign and send (names in any case), e.g. `range`, `if-none-match`.
        public var headers: [(name: String, value: String)]
        /// The hex SHA-256 of the body, or ``SigV4Signer/unsignedPayload``.
        public var payloadHash: String

        /// A request to sign.
        public init(
            method: String, host: String, path: String, query: [(name: String, value: String)] = [],
            headers: [(name: String, value: String)] = [], payloadHash: String = SigV4Signer.emptyPayloadHash
        ) {
            self.method = method
            self.host = host
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    /// A signed request: the headers to send and the intermediate strings (for tests and debugging;
    /// none of them contains the secret).
    public struct Signed: Sendable {
        /// Every header to send, lower-case names, sorted, `authorization` last.
        public var headers: [(name: String, value: String)]
        /// The `Authorization` header value.
        public var authorization: String
        /// The canonical request that was hashed.
        public var canonicalRequest: String
        /// The string that was signed.
        public var stringToSign: String
        /// `host;range;x-amz-content-sha256;x-amz-date`-style list of the signed header names.
        public var signedHeaders: String
        /// The hex signature.
        public var signature: String
        /// The encoded path as it must appear in the request line.
        public var encodedPath: String
        /// The canonical (encoded, sorted) query string as it must appear in the URL.
        public var encodedQuery: String
    }

    /// Signs `request` at `amzDate` (`YYYYMMDDTHHMMSSZ`, UTC; see ``amzDate(epochSeconds:)``).
    public func sign(_ request: Request, amzDate: String) -> Signed {
        let dateStamp = String(amzDate.prefix(8))
        var headerMap: [String: String] = [:]
        for (name, value) in request.headers {
            headerMap[name.lowercased()] = Self.canonicalValue(value)
        }
        headerMap["host"] = Self.canonicalValue(request.host)
        headerMap["x-amz-date"] = amzDate
        headerMap["x-amz-content-sha256"] = request.payloadHash
        if let token = credentials.sessionToken {
            headerMap["x-amz-security-token"] = token
        }
        let sorted = headerMap.sorted { $0.key < $1.key }
        let signedHeaders = sorted.map(\.key).joined(separator: ";")
        let canonicalHeaders = sorted.map { "\($0.key):\($0.value)\n" }.joined()
        let encodedPath = S3URIEncoding.encodePath(request.path.isEmpty ? "/" : request.path)
        let encodedQuery = S3URIEncoding.canonicalQuery(request.query)
        let canonicalRequest = [
            request.method, encodedPath, encodedQuery, canonicalHeaders, signedHeaders, request.payloadHash,
        ].joined(separator: "\n")
        let scope = "\(dateStamp)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, scope, S3Crypto.sha256Hex(Array(canonicalRequest.utf8)),
        ].joined(separator: "\n")
        let signature = S3Crypto.hex(S3Crypto.hmacSHA256(key: signingKey(dateStamp: dateStamp), stringToSign))
        let authorization =
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(scope), "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)"
        var headers = sorted.map { (name: $0.key, value: $0.value) }
        headers.append((name: "authorization", value: authorization))
        return Signed(
            headers: headers, authorization: authorization, canonicalRequest: canonicalRequest,
            stringToSign: stringToSign, signedHeaders: signedHeaders, signature: signature,
            encodedPath: encodedPath, encodedQuery: encodedQuery)
    }

    /// The signing key for a day: HMAC chain over date, region, service and `aws4_request`.
    func signingKey(dateStamp: String) -> [UInt8] {
        let dateKey = S3Crypto.hmacSHA256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), dateStamp)
        let regionKey = S3Crypto.hmacSHA256(key: dateKey, region)
        let serviceKey = S3Crypto.hmacSHA256(key: regionKey, service)
        return S3Crypto.hmacSHA256(key: serviceKey, "aws4_request")
    }

    /// A header value as signed: leading and trailing spaces trimmed, inner runs of spaces collapsed.
    static func canonicalValue(_ value: String) -> String {
        var out = ""
        var pendingSpace = false
        for char in value {
            if char == " " || char == "\t" {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(char)
            }
        }
        return out
    }

    /// `YYYYMMDDTHHMMSSZ` for a UTC time in seconds since 1970.
    public static func amzDate(epochSeconds: Int) -> String {
        var time = time_t(epochSeconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return pad(parts.tm_year + 1900, 4) + pad(parts.tm_mon + 1, 2) + pad(parts.tm_mday, 2) + "T"
            + pad(parts.tm_hour, 2) + pad(parts.tm_min, 2) + pad(parts.tm_sec, 2) + "Z"
    }

    /// `YYYYMMDDTHHMMSSZ` for now.
    public static func amzDateNow() -> String {
        amzDate(epochSeconds: Int(time(nil)))
    }
}
