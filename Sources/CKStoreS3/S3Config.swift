#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How the bucket appears in a request URL.
public enum S3Addressing: String, Sendable, Equatable {
    /// `http://endpoint/bucket/key` (what Ceph RGW, MinIO and SeaweedFS serve without DNS setup).
    case path
    /// `http://bucket.endpoint/key` (AWS's default).
    case virtualHost = "virtual"
}

/// Everything an ``S3Client`` needs besides the bucket: endpoint, region, credentials, addressing,
/// retry and timeout policy. Its description never contains the credentials.
public struct S3Config: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// Where requests go.
    public var endpoint: S3Endpoint
    /// The region in the signature's credential scope (and the bucket's location constraint).
    public var region: String
    /// The credentials requests are signed with.
    public var credentials: S3Credentials
    /// Path-style or virtual-host addressing.
    public var addressing: S3Addressing
    /// Attempts per request, the first included, for retryable failures (5xx, 429/SlowDown,
    /// timeouts, connection errors).
    public var maxAttempts: Int = 5
    /// The first backoff delay in seconds; it doubles on every retry (with jitter), up to ``maxBackoff``.
    public var baseBackoff: Double = 0.1
    /// The largest backoff delay in seconds.
    public var maxBackoff: Double = 5
    /// Seconds to wait for a TCP (and TLS) connection.
    public var connectTimeout: Int = 10
    /// A transfer slower than 1 KiB/s for this many seconds is abandoned as a timeout (and retried).
    public var stallTimeout: Int = 30
    /// Sign the body's SHA-256 (true) or send `UNSIGNED-PAYLOAD` (false) on uploads.
    public var signPayload: Bool = true

    /// A configuration from its parts.
    public init(endpoint: S3Endpoint, region: String, credentials: S3Credentials, addressing: S3Addressing = .path) {
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.addressing = addressing
    }

    /// Reads the configuration the way the AWS tools do:
    /// - endpoint: `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else `https://s3.<region>.amazonaws.com`;
    /// - region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`;
    /// - credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), else the
    ///   profile `AWS_PROFILE` (default `default`) of `AWS_SHARED_CREDENTIALS_FILE` (default
    ///   `~/.aws/credentials`);
    /// - addressing: `CKSTORE_S3_ADDRESSING` = `path` | `virtual` | `auto` (default): path style for a
    ///   custom endpoint, virtual host for AWS.
    public static func fromEnvironment(_ environment: [String: String]) throws(S3ConfigError) -> S3Config {
        func value(_ name: String) -> String? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            return text
        }
        let region = value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? "us-east-1"
        let custom = value("AWS_ENDPOINT_URL_S3") ?? value("AWS_ENDPOINT_URL")
        let endpoint = try custom.map { text throws(S3ConfigError) in try S3Endpoint(parsing: text) } ?? .aws(region: region)
        let addressing: S3Addressing
        switch value("CKSTORE_S3_ADDRESSING") ?? "auto" {
        case "path": addressing = .path
        case "virtual": addressing = .virtualHost
        case "auto": addressing = custom == nil ? .virtualHost : .path
        case let other: throw .invalidAddressing(other)
        }
        let credentials: S3Credentials
        if let id = value("AWS_ACCESS_KEY_ID"), let secret = value("AWS_SECRET_ACCESS_KEY") {
            credentials = S3Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN"))
        } else {
            let path =
                value("AWS_SHARED_CREDENTIALS_FILE")
                ?? value("HOME").map { "\($0)/.aws/credentials" } ?? "~/.aws/credentials"
            let profile = value("AWS_PROFILE") ?? "default"
            guard let text = readTextFile(path) else {
                throw .missingCredentials(searched: "the environment and \(path)")
            }
            guard let found = try parseCredentialsFile(text, profile: profile, path: path) else {
                throw .missingCredentials(searched: "the environment and profile [\(profile)] of \(path)")
            }
            credentials = found
        }
        return S3Config(endpoint: endpoint, region: region, credentials: credentials, addressing: addressing)
    }

    /// The credentials of `profile` in an AWS shared credentials file (INI: `[profile]` sections of
    /// `name = value` lines, `#`/`;` comments), or nil when the profile or its keys are absent.
    public static func parseCredentialsFile(_ text: String, profile: String, path: String = "credentials file")
        throws(S3ConfigError) -> S3Credentials?
    {
        var section: String?
        var values: [String: String] = [:]
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") {
                guard line.hasSuffix("]") else {
                    throw .credentialsFile(path: path, reason: "line \(index + 1): unterminated section header")
                }
                section = String(line.dropFirst().dropLast()).trimmingSpaces()
                continue
            }
            guard section == profile else { continue }
            guard let equals = line.firstIndex(of: "=") else {
                // Never echo the line: it may hold a secret.
                throw .credentialsFile(path: path, reason: "line \(index + 1): expected name = value")
            }
            values[String(line[..<equals]).trimmingSpaces().lowercased()] = String(line[line.index(after: equals)...])
                .trimmingSpaces()
        }
        guard let id = values["aws_access_key_id"], !id.isEmpty, let secret = values["aws_secret_access_key"], !secret.isEmpty
        else { return nil }
        let token = values["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
        return S3Credentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token)
    }

    /// The whole file as UTF-8, or nil when it cannot be read.
    static func readTextFile(_ path: String) -> String? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if count == 0 { break }
            bytes.append(contentsOf: buffer[0..<count])
            if bytes.count > 1 << 20 { return nil }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The host header and the unencoded path of `key` in `bucket` (nil key: the bucket itself).
    public func address(bucket: String, key: String?) -> (host: String, path: String) {
        switch addressing {
        case .path:
            return (endpoint.authority(), "/\(bucket)" + (key.map { "/\($0)" } ?? ""))
        case .virtualHost:
            return (endpoint.authority(host: "\(bucket).\(endpoint.host)"), "/" + (key ?? ""))
        }
    }

    /// Endpoint, region and addressing; never the credentials.
    public var description: String {
        "S3Config(endpoint: \(endpoint), region: \(region), addressing: \(addressing.rawValue), credentials: redacted)"
    }

    /// The same as ``description``.
    public var debugDescription: String { description }
}

extension StringProtocol {
    /// The string without leading and trailing white space and line breaks (`\r\n` included).
    func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0.isWhitespace }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
