/// An error in an S3 location, endpoint or credential setting. Descriptions never contain a secret.
public enum S3ConfigError: Error, Equatable, CustomStringConvertible {
    /// A location that is not `s3://bucket[/prefix]`; the reason names what is wrong.
    case invalidLocation(String, reason: String)
    /// An endpoint URL that is not `http(s)://host[:port][/]`; the reason names what is wrong.
    case invalidEndpoint(reason: String)
    /// No credentials in the environment nor in the shared credentials file.
    case missingCredentials(searched: String)
    /// A credentials file that could not be used (the path and what is wrong, never its values).
    case credentialsFile(path: String, reason: String)
    /// An addressing style other than `path`, `virtual` or `auto`.
    case invalidAddressing(String)

    /// One line naming the problem.
    public var description: String {
        switch self {
        case .invalidLocation(let location, let reason):
            return "invalid S3 location '\(location)': \(reason) (expected s3://bucket[/prefix])"
        case .invalidEndpoint(let reason):
            return "invalid S3 endpoint URL: \(reason) (expected http(s)://host[:port])"
        case .missingCredentials(let searched):
            return "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (searched \(searched))"
        case .credentialsFile(let path, let reason):
            return "S3 credentials file \(path): \(reason)"
        case .invalidAddressing(let value):
            return "invalid S3 addressing style '\(value)' (expected path, virtual or auto)"
        }
    }
}

/// A bucket and a key prefix, parsed from `s3://bucket[/prefix]`.
public struct S3Location: Sendable, Equatable, CustomStringConvertible {
    /// The bucket name.
    public var bucket: String
    /// The key prefix: empty, or ending in `/` (`s3://b/ckpt` and `s3://b/ckpt/` both give `ckpt/`).
    public var prefix: String

    /// A location from its parts; a non-empty prefix gets a trailing `/`.
    public init(bucket: String, prefix: String = "") {
        self.bucket = bucket
        var trimmed = Substring(prefix)
        while trimmed.first == "/" { trimmed = trimmed.dropFirst() }
        self.prefix = trimmed.isEmpty || trimmed.hasSuffix("/") ? String(trimmed) : String(trimmed) + "/"
    }

    /// Parses `s3://bucket[/prefix]`.
    public init(parsing string: String) throws(S3ConfigError) {
        guard string.hasPrefix("s3://") else {
            throw .invalidLocation(string, reason: "the scheme must be s3://")
        }
        let rest = string.dropFirst("s3://".count)
        let bucket = rest.prefix { $0 != "/" }
        let prefix = rest.dropFirst(bucket.count)
        if let reason = Self.bucketProblem(String(bucket)) {
            throw .invalidLocation(string, reason: reason)
        }
        if prefix.contains(where: { $0 == "?" || $0 == "#" || $0.isNewline }) {
            throw .invalidLocation(string, reason: "the prefix must not contain '?', '#' or a line break")
        }
        self.init(bucket: String(bucket), prefix: String(prefix))
    }

    /// The full key for `name` under the prefix.
    public func key(_ name: String) -> String { prefix + name }

    /// `s3://bucket/prefix`.
    public var description: String { "s3://\(bucket)/\(prefix)" }

    /// Why `name` is not a usable bucket name (S3's rules: 3–63 of `a-z 0-9 . -`, starting and
    /// ending with a letter or digit), or nil when it is.
    static func bucketProblem(_ name: String) -> String? {
        if name.isEmpty { return "the bucket name is empty" }
        if name.utf8.count < 3 || name.utf8.count > 63 { return "a bucket name has 3 to 63 characters" }
        let allowed = name.utf8.allSatisfy {
            ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9"))
                || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-")
        }
        if !allowed { return "a bucket name has only lower-case letters, digits, '.' and '-'" }
        let edges = [name.utf8.first!, name.utf8.last!]
        if edges.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }) {
            return "a bucket name starts and ends with a letter or digit"
        }
        return nil
    }
}

/// Where S3 requests go: scheme, host and port of the service (without a bucket).
public struct S3Endpoint: Sendable, Equatable, CustomStringConvertible {
    /// `http` or `https`.
    public var scheme: String
    /// Host name or IP address (IPv6 without brackets).
    public var host: String
    /// The port, or nil for the scheme's default.
    public var port: Int?

    /// An endpoint from its parts.
    public init(scheme: String, host: String, port: Int? = nil) {
        self.scheme = scheme
        self.host = host
        self.port = port
    }

    /// Parses `http(s)://host[:port][/]` (user info, paths, queries are refused).
    public init(parsing string: String) throws(S3ConfigError) {
        let scheme: String
        if string.hasPrefix("http://") {
            scheme = "http"
        } else if string.hasPrefix("https://") {
            scheme = "https"
        } else {
            throw .invalidEndpoint(reason: "the scheme must be http:// or https://")
        }
        var authority = Substring(string.dropFirst(scheme.count + 3))
        if authority.hasSuffix("/") { authority = authority.dropLast() }
        if authority.contains("@") { throw .invalidEndpoint(reason: "user info is not allowed; use the credential variables") }
        if authority.contains(where: { $0 == "/" || $0 == "?" || $0 == "#" }) {
            throw .invalidEndpoint(reason: "a path, query or fragment is not allowed")
        }
        var host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidEndpoint(reason: "unterminated IPv6 address") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidEndpoint(reason: "junk after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        if host.isEmpty || host.contains(where: { $0.isWhitespace }) { throw .invalidEndpoint(reason: "the host is empty or has spaces") }
        var port: Int?
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw .invalidEndpoint(reason: "the port must be a number from 1 to 65535")
            }
            port = value
        }
        self.init(scheme: scheme, host: String(host), port: port)
    }

    /// The AWS endpoint of a region: `https://s3.<region>.amazonaws.com`.
    public static func aws(region: String) -> S3Endpoint {
        S3Endpoint(scheme: "https", host: "s3.\(region).amazonaws.com")
    }

    /// `host[:port]` as the `Host` header carries it (the port only when not the scheme's default).
    public func authority(host: String? = nil) -> String {
        let name = host ?? self.host
        let bracketed = name.contains(":") ? "[\(name)]" : name
        guard let port, port != (scheme == "https" ? 443 : 80) else { return bracketed }
        return "\(bracketed):\(port)"
    }

    /// `scheme://host[:port]`.
    public var description: String { "\(scheme)://\(authority())" }
}
