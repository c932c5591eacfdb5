import CKStore

/// A store location on PostgreSQL: `postgres://user@host:port/db?blobs=LOCATION` (or
/// `postgresql://…`), with the optional parameters
/// - `blobs=` (required): where the blobs live, `s3://bucket/prefix` or `file:///absolute/path`;
/// - `schema=`: the PostgreSQL schema holding ckstore's tables (default: the first schema on the
///   role's `search_path`, normally `public`), so that one database can hold several stores;
/// - any libpq parameter (`sslmode=`, `connect_timeout=`, …), passed on unchanged.
///
/// Credentials never come from the location: a password in the URL (`user:secret@host` or
/// `password=`) is refused with an error that does not repeat it. libpq reads it from
/// `PGPASSWORD` or the password file (`~/.pgpass`, `PGPASSFILE`).
public struct PostgresLocation: Sendable, Equatable {
    /// The libpq connection string: the URL without ckstore's own parameters.
    public let conninfo: String
    /// The `blobs=` value, percent-decoded.
    public let blobs: String
    /// The `schema=` value, if any.
    public let schema: String?
    /// The location for messages: `postgres://user@host:port/db` plus the schema and blobs.
    public let redacted: String

    /// True when `text` names a PostgreSQL location (`postgres://` or `postgresql://`).
    public static func isPostgres(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    /// Parses a location.
    /// - Throws: `.usage` for a malformed URL, a missing `blobs=`, or a password in the URL.
    public init(_ text: String) throws(CKStoreError) {
        guard let schemeEnd = text.firstRange(of: "://"), Self.isPostgres(text) else {
            throw CKStoreError(.usage, "not a PostgreSQL store location (expected postgres://user@host:port/db?blobs=…)")
        }
        let rest = text[schemeEnd.upperBound...]
        let (main, query) =
            rest.firstIndex(of: "?").map { (rest[..<$0], rest[rest.index(after: $0)...]) } ?? (rest, Substring(""))
        let slash = main.firstIndex(of: "/") ?? main.endIndex
        let authority = main[..<slash]
        let path = main[slash...]
        let userinfo = authority.lastIndex(of: "@").map { authority[..<$0] }
        let hostport = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
        let database = path.dropFirst()
        let shown = "postgres://\(userinfo.map { "\($0)@" } ?? "")\(hostport)/\(database)"
        if let userinfo, userinfo.contains(":") {
            throw CKStoreError(
                .usage,
                "the store location \(shown.replacingUserinfo(with: userinfo.prefix { $0 != ":" })) has a password in it: "
                    + "ckstore takes PostgreSQL passwords only from PGPASSWORD or the password file (~/.pgpass, PGPASSFILE), never "
                    + "from the command line, where other users can read it; remove it from the URL")
        }
        var blobs: String?
        var schema: String?
        var passthrough: [Substring] = []
        for pair in query.split(separator: "&") {
            let key = pair.prefix { $0 != "=" }
            let value = pair.dropFirst(key.count + 1)
            switch key {
            case "blobs": blobs = percentDecoded(value)
            case "schema": schema = percentDecoded(value)
            case "password":
                throw CKStoreError(
                    .usage,
                    "the store location \(shown) has a password= parameter: ckstore takes PostgreSQL passwords only from "
                        + "PGPASSWORD or the password file (~/.pgpass, PGPASSFILE), never from the command line; remove it")
            default: passthrough.append(pair)
            }
        }
        guard let blobs, !blobs.isEmpty else {
            throw CKStoreError(
                .usage,
                "the store location \(shown) names no blob store: add ?blobs=s3://bucket/prefix (or ?blobs=file:///absolute/path)")
        }
        if let schema, schema.isEmpty || schema.utf8.count > 63 || schema.contains("\0") {
            throw CKStoreError(.usage, "the store location \(shown) has an invalid schema= (1 to 63 bytes)")
        }
        self.blobs = blobs
        self.schema = schema
        conninfo = "postgresql://\(main)" + (passthrough.isEmpty ? "" : "?" + passthrough.joined(separator: "&"))
        redacted = shown + "?" + (schema.map { "schema=\($0)&" } ?? "") + "blobs=\(blobs)"
    }

    /// The local folder of a `blobs=file:///path` location, or nil for another kind.
    public var localBlobsPath: String? {
        guard blobs.hasPrefix("file://") else { return nil }
        let path = String(blobs.dropFirst("file://".count))
        return path.hasPrefix("/") ? path : nil
    }
}

extension String {
    /// `postgres://USERINFO@…` with the user info replaced.
    fileprivate func replacingUserinfo(with user: Substring) -> String {
        guard let start = firstRange(of: "://"), let at = self[start.upperBound...].firstIndex(of: "@") else { return self }
        return String(self[..<start.upperBound]) + user + String(self[at...])
    }
}

/// `%XX` sequences decoded as UTF-8 (invalid sequences kept as they are).
func percentDecoded(_ text: Substring) -> String {
    var bytes: [UInt8] = []
    var utf8 = Array(text.utf8)[...]
    while let byte = utf8.popFirst() {
        if byte == UInt8(ascii: "%"), utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
            bytes.append(value)
            utf8 = utf8.dropFirst(2)
        } else {
            bytes.append(byte)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
