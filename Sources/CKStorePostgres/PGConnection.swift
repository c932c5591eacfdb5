import CPostgres

#if canImport(Glibc)
    import Glibc
#endif

/// One connection to a PostgreSQL server, owning libpq's `PGconn` (closed on deinit).
///
/// A connection runs one statement at a time and is not thread-safe: give each thread (each
/// worker) its own. Statements take their parameters separately from the SQL text (`$1`, `$2`,
/// …), so values are never spliced into SQL.
///
/// Credentials: the connection string (a `postgres://` or `postgresql://` URL, or `key=value`
/// pairs) names the server; the password comes from libpq's usual sources, `PGPASSWORD` or the
/// password file (`~/.pgpass`, `PGPASSFILE`), and the other `PG*` variables fill in what the
/// string leaves out. A password written in the string works but is discouraged; it never appears
/// in an error or a log line: errors name the target as `user@host:port/database`, and any
/// password is scrubbed from libpq's messages.
public final class PGConnection {
    private let conn: OpaquePointer
    /// The connection target without credentials: `user@host:port/database`.
    public let target: String

    /// Connects (blocking) and sets `client_encoding` to UTF-8.
    /// - Parameters:
    ///   - conninfo: a URL (`postgresql://user@host:port/db?sslmode=…`) or `key=value` pairs;
    ///     empty means "all from the environment".
    ///   - applicationName: `application_name` shown in `pg_stat_activity` (the string may override it).
    ///   - connectTimeout: seconds to wait for the connection (the string may override it).
    /// - Throws: `PGError` with origin `.connection` (SQLSTATE 08001) when the server cannot be
    ///   reached or refuses the connection, origin `.client` for a malformed connection string.
    public init(_ conninfo: String, applicationName: String = "ckstore", connectTimeout: Int = 10) throws {
        let secrets = connectionSecrets(conninfo)
        if let problem = parseProblem(conninfo) {
            throw PGError.client("invalid connection string: \(scrub(problem, secrets))")
        }
        // Defaults first: with expand_dbname, values in the string override earlier keywords;
        // client_encoding comes after it so that it always holds.
        let keywords = ["connect_timeout", "application_name", "dbname", "client_encoding"]
        let values = [String(connectTimeout), applicationName, conninfo, "UTF8"]
        let made: OpaquePointer? = withCStrings(keywords) { kw in
            withCStrings(values) { vals in PQconnectdbParams(kw, vals, 1) }
        }
        guard let made else { throw PGError.client("libpq could not allocate a connection") }
        let target = describeTarget(made)
        guard PQstatus(made) == CONNECTION_OK else {
            let message = scrub(String(cString: PQerrorMessage(made)), secrets)
            PQfinish(made)
            throw PGError(
                origin: .connection, sqlState: PGError.SQLState.unableToConnect,
                message: "cannot connect to \(target): \(message)", statement: "connect to \(target)")
        }
        conn = made
        self.target = target
        PQsetNoticeProcessor(made, { _, _ in }, nil)  // notices (e.g. "already exists, skipping") are not errors
    }

    deinit { PQfinish(conn) }

    /// The server's version as an integer, e.g. 150018 for 15.18.
    public var serverVersion: Int { Int(PQserverVersion(conn)) }

    /// Whether the connection is inside a transaction block (open or failed).
    public var isInTransaction: Bool {
        let status = PQtransactionStatus(conn)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR
    }

    /// Whether the current transaction block failed and awaits ROLLBACK.
    var isInFailedTransaction: Bool { PQtransactionStatus(conn) == PQTRANS_INERROR }

    /// Whether the connection is still usable (false after the server went away).
    public var isConnected: Bool { PQstatus(conn) == CONNECTION_OK }

    /// Runs one statement with parameters `$1`, `$2`, … and returns its rows (binary format).
    /// - Throws: `PGError` with the server's SQLSTATE, or class 08 when the connection is lost.
    @discardableResult
    public func execute(_ sql: String, _ params: [PGValue] = []) throws -> PGResult {
        let encoded = try params.enumerated().map { try $1.encoded(index: $0, statement: sql) }
        let types = encoded.map(\.type)
        let formats = encoded.map(\.format)
        let lengths = encoded.map { Int32($0.bytes?.count ?? 0) }
        // Each value in its own allocation (NUL-terminated for text), freed after the call.
        let buffers: [UnsafeMutablePointer<CChar>?] = encoded.map { item in
            guard let bytes = item.bytes else { return nil }
            let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            bytes.withUnsafeBytes { source in UnsafeMutableRawBufferPointer(start: buffer, count: bytes.count).copyMemory(from: source) }
            buffer[bytes.count] = 0
            return buffer
        }
        defer { buffers.forEach { $0?.deallocate() } }
        let values = buffers.map { UnsafePointer($0) }
        let result = PQexecParams(conn, sql, Int32(params.count), types, values, lengths, formats, 1)
        return try check(result, sql)
    }

    /// Runs SQL text that may hold several statements separated by semicolons (a migration, a
    /// script of DDL), without parameters. Inside an explicit transaction it runs in that
    /// transaction; otherwise the whole text is one implicit transaction.
    public func executeScript(_ sql: String) throws {
        _ = try check(PQexec(conn, sql), sql)
    }

    /// Turns a `PGresult` into a `PGResult` or a `PGError` (clearing it).
    private func check(_ result: OpaquePointer?, _ sql: String) throws -> PGResult {
        guard let result else { throw connectionError(sql) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return PGResult(owning: result, statement: sql)
        case PGRES_FATAL_ERROR, PGRES_NONFATAL_ERROR, PGRES_BAD_RESPONSE:
            defer { PQclear(result) }
            let sqlState = field(result, "C")
            let message = field(result, "M") ?? String(cString: PQresultErrorMessage(result))
            if let sqlState {
                throw PGError(origin: .server, sqlState: sqlState, message: message, detail: field(result, "D"), statement: sql)
            }
            throw isConnected ? PGError.client(message, statement: sql) : connectionError(sql, message: message)
        default:
            let status = String(cString: PQresStatus(PQresultStatus(result)))
            PQclear(result)
            throw PGError.client("unsupported result status \(status) (COPY is not supported)", statement: sql)
        }
    }

    /// An error for a connection that broke during `sql`.
    private func connectionError(_ sql: String, message: String? = nil) -> PGError {
        let text = message ?? String(cString: PQerrorMessage(conn))
        if isConnected { return PGError.client(text.isEmpty ? "libpq returned no result" : text, statement: sql) }
        return PGError(
            origin: .connection, sqlState: PGError.SQLState.connectionFailure,
            message: "connection to \(target) lost: \(text)", statement: sql)
    }

    /// A diagnostic field of an error result (`C` SQLSTATE, `M` message, `D` detail).
    private func field(_ result: OpaquePointer, _ code: Character) -> String? {
        PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
    }
}

// MARK: - Connection strings

/// Passes `strings` to `body` as a NULL-terminated array of C strings.
private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
    defer { copies.forEach { free($0) } }
    return copies.map { UnsafePointer($0) }.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// `user@host:port/database` of a connection (made or failed), never the password.
private func describeTarget(_ conn: OpaquePointer) -> String {
    func get(_ f: (OpaquePointer?) -> UnsafeMutablePointer<CChar>?) -> String {
        f(conn).map { String(cString: $0) } ?? ""
    }
    let host = get(PQhost)
    let port = get(PQport)
    return "\(get(PQuser))@\(host.isEmpty ? "localhost" : host)\(port.isEmpty ? "" : ":" + port)/\(get(PQdb))"
}

/// libpq's complaint about a malformed connection string, or nil when it parses.
private func parseProblem(_ conninfo: String) -> String? {
    var error: UnsafeMutablePointer<CChar>?
    if let options = PQconninfoParse(conninfo, &error) {
        PQconninfoFree(options)
        return nil
    }
    defer { PQfreemem(error) }
    return error.map { String(cString: $0) } ?? "out of memory"
}

/// The secrets that must never appear in a message: the password in the connection string
/// (found by libpq's parser, and by hand in case the string does not parse, raw and
/// percent-decoded) and `PGPASSWORD`. Strings shorter than 4 characters are left alone:
/// scrubbing them would garble messages without protecting anything.
private func connectionSecrets(_ conninfo: String) -> [String] {
    var found: [String] = []
    var error: UnsafeMutablePointer<CChar>?
    if let options = PQconninfoParse(conninfo, &error) {
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "password", let value = option.pointee.val { found.append(String(cString: value)) }
            option += 1
        }
        PQconninfoFree(options)
    }
    PQfreemem(error)
    // URL form: scheme://user:password@host… ; key=value form: password=value or password='value'.
    if let scheme = conninfo.firstRange(of: "://") {
        let rest = conninfo[scheme.upperBound...]
        if let at = rest.lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") {
            let raw = String(rest[rest.index(after: colon)..<at])
            found.append(raw)
            found.append(raw.removingPercentEncodingLossy())
        }
    }
    for token in conninfo.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
        if let eq = token.firstIndex(of: "="), token[..<eq] == "password" {
            let value = token[token.index(after: eq)...]
            found.append(String(value))
            found.append(String(value.filter { $0 != "'" }))
        }
    }
    if let env = getenv("PGPASSWORD") { found.append(String(cString: env)) }
    return found.filter { $0.count >= 4 }.sorted { $0.count > $1.count }
}

/// `message` with every secret replaced by `***`.
private func scrub(_ message: String, _ secrets: [String]) -> String {
    secrets.reduce(message) { $0.replacingAll($1, with: "***") }
}

extension String {
    /// Every occurrence of `needle` replaced by `replacement` (Foundation-free).
    fileprivate func replacingAll(_ needle: String, with replacement: String) -> String {
        guard !needle.isEmpty else { return self }
        var out = ""
        var rest = self[...]
        while let range = rest.firstRange(of: needle) {
            out += rest[..<range.lowerBound]
            out += replacement
            rest = rest[range.upperBound...]
        }
        return out + rest
    }

    /// `%XX` sequences decoded as UTF-8 (invalid sequences kept as they are).
    fileprivate func removingPercentEncodingLossy() -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(self.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "%"), utf8.count >= 2,
                let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
