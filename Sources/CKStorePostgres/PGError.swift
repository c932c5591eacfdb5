/// An error from PostgreSQL or from libpq, classified by SQLSTATE (never by message text).
///
/// Server errors carry the server's five-character SQLSTATE. libpq reports connection failures
/// without one; this wrapper assigns the standard class-08 codes to them (`08001` when a
/// connection cannot be established, `08006` when an open connection is lost), as JDBC drivers
/// do, so every connection problem answers `isConnectionFailure`. Misuse detected before anything
/// is sent (a NUL byte in a text parameter, a column read as the wrong type) has no SQLSTATE and
/// the origin `.client`.
///
/// The description never contains a password or a parameter value: `statement` is the SQL text
/// (parameters are sent separately) or, for a connection, `user@host:port/database`.
public struct PGError: Error, Sendable, CustomStringConvertible {
    /// Where the error was detected.
    public enum Origin: String, Sendable {
        /// Reported by the server (SQLSTATE from the server).
        case server
        /// The connection could not be made or was lost (SQLSTATE class 08).
        case connection
        /// Detected by this wrapper or by libpq before reaching the server (no SQLSTATE).
        case client
    }

    /// Where the error was detected.
    public let origin: Origin
    /// The five-character SQLSTATE, e.g. `23505`; nil for `.client` errors.
    public let sqlState: String?
    /// The primary message (the server's, libpq's, or this wrapper's), one line.
    public let message: String
    /// The server's DETAIL field, when any (it may quote values of the offending row).
    public let detail: String?
    /// The SQL text that failed (never its parameters), or the redacted connection target.
    public let statement: String?

    /// Makes an error; `message` is trimmed to its first line's content.
    public init(origin: Origin, sqlState: String?, message: String, detail: String? = nil, statement: String? = nil) {
        self.origin = origin
        self.sqlState = sqlState
        self.message = Self.oneLine(message)
        self.detail = detail.map(Self.oneLine)
        self.statement = statement
    }

    /// A client-side error (no SQLSTATE).
    static func client(_ message: String, statement: String? = nil) -> PGError {
        PGError(origin: .client, sqlState: nil, message: message, statement: statement)
    }

    /// `postgres: <message> [SQLSTATE 23505] (detail) in: <statement>`, the statement shortened.
    public var description: String {
        var text = "postgres: \(message)"
        if let sqlState { text += " [SQLSTATE \(sqlState)]" }
        if let detail, !detail.isEmpty { text += " (\(detail))" }
        if let statement { text += " in: \(Self.abbreviated(statement))" }
        return text
    }

    /// The SQLSTATE class: its first two characters (`23` for integrity constraint violations).
    public var sqlStateClass: Substring? { sqlState.map { $0.prefix(2) } }

    // MARK: Classification

    /// 23505: a UNIQUE or PRIMARY KEY constraint would be violated.
    public var isUniqueViolation: Bool { sqlState == SQLState.uniqueViolation }
    /// 23503: a FOREIGN KEY constraint would be violated.
    public var isForeignKeyViolation: Bool { sqlState == SQLState.foreignKeyViolation }
    /// 23514: a CHECK constraint would be violated.
    public var isCheckViolation: Bool { sqlState == SQLState.checkViolation }
    /// 23502: a NOT NULL constraint would be violated.
    public var isNotNullViolation: Bool { sqlState == SQLState.notNullViolation }
    /// Class 23: any integrity constraint violation.
    public var isIntegrityConstraintViolation: Bool { sqlStateClass == "23" }
    /// 40001: a serializable transaction could not be serialized; retry it.
    public var isSerializationFailure: Bool { sqlState == SQLState.serializationFailure }
    /// 40P01: a deadlock was detected and this transaction was chosen to abort; retry it.
    public var isDeadlock: Bool { sqlState == SQLState.deadlockDetected }
    /// A failure after which re-running the whole transaction may succeed (40001, 40P01).
    public var isRetryableTransactionFailure: Bool { isSerializationFailure || isDeadlock }
    /// The connection could not be made, was lost, or the server is shutting down or starting up
    /// (class 08; 57P01, 57P02, 57P03).
    public var isConnectionFailure: Bool {
        origin == .connection || sqlStateClass == "08"
            || [SQLState.adminShutdown, SQLState.crashShutdown, SQLState.cannotConnectNow].contains(sqlState)
    }
    /// Class 28: the server rejected the credentials.
    public var isAuthenticationFailure: Bool { sqlStateClass == "28" }
    /// 55P03: a lock could not be taken (NOWAIT, or `lock_timeout` expired).
    public var isLockNotAvailable: Bool { sqlState == SQLState.lockNotAvailable }
    /// 57014: the statement was cancelled (`statement_timeout` or a cancel request).
    public var isQueryCanceled: Bool { sqlState == SQLState.queryCanceled }
    /// 42601: the SQL text does not parse.
    public var isSyntaxError: Bool { sqlState == SQLState.syntaxError }
    /// 42P01: a table or view does not exist.
    public var isUndefinedTable: Bool { sqlState == SQLState.undefinedTable }
    /// 42501: the role lacks a privilege.
    public var isInsufficientPrivilege: Bool { sqlState == SQLState.insufficientPrivilege }
    /// 25P02: a statement was sent inside a transaction that an earlier error aborted.
    public var isInFailedTransaction: Bool { sqlState == SQLState.inFailedSQLTransaction }
    /// Class 53: the server ran out of a resource (disk full 53100, out of memory 53200,
    /// too many connections 53300).
    public var isInsufficientResources: Bool { sqlStateClass == "53" }

    /// The SQLSTATE codes this wrapper names (PostgreSQL manual, appendix A).
    public enum SQLState {
        /// 08001: the client could not establish a connection.
        public static let unableToConnect = "08001"
        /// 08006: the connection failed or was lost.
        public static let connectionFailure = "08006"
        /// 23502
        public static let notNullViolation = "23502"
        /// 23503
        public static let foreignKeyViolation = "23503"
        /// 23505
        public static let uniqueViolation = "23505"
        /// 23514
        public static let checkViolation = "23514"
        /// 25P02
        public static let inFailedSQLTransaction = "25P02"
        /// 40001
        public static let serializationFailure = "40001"
        /// 40P01
        public static let deadlockDetected = "40P01"
        /// 42501
        public static let insufficientPrivilege = "42501"
        /// 42601
        public static let syntaxError = "42601"
        /// 42P01
        public static let undefinedTable = "42P01"
        /// 55P03
        public static let lockNotAvailable = "55P03"
        /// 57014
        public static let queryCanceled = "57014"
        /// 57P01
        public static let adminShutdown = "57P01"
        /// 57P02
        public static let crashShutdown = "57P02"
        /// 57P03
        public static let cannotConnectNow = "57P03"
    }

    /// Messages from libpq end in a newline and may span lines; keep them to one line.
    private static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingSpaces() }.filter { !$0.isEmpty }.joined(separator: "; ")
    }

    /// A statement for a one-line description: whitespace collapsed, at most 160 characters.
    private static func abbreviated(_ statement: String) -> String {
        let collapsed = statement.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        return collapsed.count <= 160 ? collapsed : String(collapsed.prefix(157)) + "..."
    }
}

extension Substring {
    /// The substring without leading and trailing spaces and tabs.
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }
}
