import CSQLite

/// An error reported by SQLite: the extended result code, SQLite's message, and the SQL that
/// failed (when a statement was involved).
public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// SQLite's extended result code (`sqlite3_extended_errcode`).
    public let code: Int32
    /// SQLite's message for the failure (`sqlite3_errmsg`), or the generic text for the code.
    public let message: String
    /// The SQL text being prepared or run, when known.
    public let sql: String?

    /// The primary result code (the low byte of the extended code).
    public var primaryCode: Int32 { code & 0xFF }

    /// True when the database was busy or locked beyond the busy timeout.
    public var isBusy: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }

    /// True when a constraint (UNIQUE, FOREIGN KEY, CHECK, NOT NULL) was violated.
    public var isConstraintViolation: Bool { primaryCode == SQLITE_CONSTRAINT }

    /// True when SQLite reports that the database file is corrupt or not a database.
    public var isCorruption: Bool { primaryCode == SQLITE_CORRUPT || primaryCode == SQLITE_NOTADB }

    /// True when the store is read-only or the disk is full.
    public var isEnvironmental: Bool {
        primaryCode == SQLITE_READONLY || primaryCode == SQLITE_FULL || primaryCode == SQLITE_IOERR
            || primaryCode == SQLITE_CANTOPEN || primaryCode == SQLITE_PERM
    }

    init(code: Int32, message: String? = nil, sql: String? = nil) {
        self.code = code
        self.message = message ?? String(cString: sqlite3_errstr(code))
        self.sql = sql
    }

    public var description: String {
        var text = "SQLite error \(code): \(message)"
        if let sql { text += " (while running: \(sql.prefix(120)))" }
        return text
    }
}

extension SQLiteError: ClassifiedBackendError {
    /// Busy and locked are transient; corruption is an integrity failure; read-only, permission
    /// and cannot-open are refusals to write; everything else (I/O, disk full, constraint
    /// violations of a damaged database) is an environment failure.
    package var failureKind: BackendFailureKind {
        if isBusy { return .busy }
        if isCorruption { return .integrity }
        if primaryCode == SQLITE_READONLY || primaryCode == SQLITE_PERM { return .readOnly }
        return .environment
    }

    package var failureMessage: String { isCorruption ? "database is corrupt: \(message)" : message }
}
