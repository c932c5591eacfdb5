import CKStore
import CSQLite

/// An open SQLite database connection with a statement cache.
///
/// A connection and its statements belong to one thread at a time (ckstore's metadata work is
/// serial; parallelism is reserved for hashing and compression), so it is not `Sendable`.
/// `close()` finalizes cached statements and closes the handle, reporting statements that are
/// still alive; `deinit` falls back to `sqlite3_close_v2`.
final class Connection {
    /// The underlying `sqlite3` handle.
    let handle: OpaquePointer
    /// The path the database was opened from.
    let path: String
    private var cache: [String: Statement] = [:]
    private var isClosed = false

    /// How the database is opened.
    enum Mode {
        /// Read-write; create the file when missing.
        case readWriteCreate
        /// Read-write; the file must exist.
        case readWrite
        /// Read-only.
        case readOnly
        /// Read-only with SQLite's `immutable` flag: no locks and no -shm file, for a database
        /// on a read-only file system, where nobody can be writing it.
        case readOnlyImmutable
    }

    /// Opens (and configures) the database at `path`: extended result codes, a busy timeout,
    /// foreign keys on, defensive mode. WAL is set by the store when it creates the file.
    ///
    /// - Throws: `SQLiteError` when the file cannot be opened. The handle is closed on failure.
    init(path: String, mode: Mode, busyTimeoutMilliseconds: Int32 = 30_000) throws(SQLiteError) {
        var flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        switch mode {
        case .readWriteCreate: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
        case .readWrite: flags |= SQLITE_OPEN_READWRITE
        case .readOnly, .readOnlyImmutable: flags |= SQLITE_OPEN_READONLY
        }
        var target = path
        if mode == .readOnlyImmutable {
            flags |= SQLITE_OPEN_URI
            target = "file:" + Connection.percentEncoded(path) + "?immutable=1"
        }
        var db: OpaquePointer?
        let code = sqlite3_open_v2(target, &db, flags, nil)
        guard code == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) }
            sqlite3_close_v2(db)
            throw SQLiteError(code: code, message: message, sql: nil)
        }
        self.handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
        _ = ckstore_sqlite3_enable_defensive(db)
        try execute("PRAGMA foreign_keys = ON")
    }

    /// `path` with the characters that are special in an SQLite URI percent-encoded.
    static func percentEncoded(_ path: String) -> String {
        var out = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "/"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out += "%"
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 15)])
            }
        }
        return out
    }

    deinit {
        if !isClosed {
            cache.removeAll()
            sqlite3_close_v2(handle)
        }
    }

    /// Finalizes cached statements and closes the connection.
    ///
    /// - Throws: `SQLiteError` with `SQLITE_BUSY` naming the statements still alive (a bug).
    func close() throws(SQLiteError) {
        guard !isClosed else { return }
        cache.removeAll()
        let code = sqlite3_close(handle)
        if code == SQLITE_BUSY {
            var names: [String] = []
            var stmt = sqlite3_next_stmt(handle, nil)
            while let s = stmt {
                names.append(String(cString: sqlite3_sql(s)))
                stmt = sqlite3_next_stmt(handle, s)
            }
            throw SQLiteError(code: code, message: "unfinalized statements: \(names.joined(separator: "; "))")
        }
        guard code == SQLITE_OK else { throw error(code: code, sql: nil) }
        isClosed = true
    }

    /// Builds an error from the connection's current state.
    func error(code: Int32, sql: String?) -> SQLiteError {
        let extended = sqlite3_extended_errcode(handle)
        return SQLiteError(
            code: extended != 0 ? extended : code, message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    // MARK: - Running SQL

    /// Runs one or more SQL statements with no parameters and no results (`sqlite3_exec`).
    func execute(_ sql: String) throws(SQLiteError) {
        var message: UnsafeMutablePointer<CChar>?
        let code = sqlite3_exec(handle, sql, nil, nil, &message)
        guard code == SQLITE_OK else {
            let text = message.map { String(cString: $0) }
            sqlite3_free(message)
            throw SQLiteError(code: sqlite3_extended_errcode(handle), message: text, sql: sql)
        }
    }

    /// Returns a cached prepared statement for `sql`, preparing it on first use.
    func statement(_ sql: String) throws(SQLiteError) -> Statement {
        if let cached = cache[sql] { return cached }
        let statement = try Statement(connection: self, sql: sql)
        cache[sql] = statement
        return statement
    }

    /// The rowid of the most recent successful INSERT.
    var lastInsertRowID: Int { Int(sqlite3_last_insert_rowid(handle)) }

    /// The number of rows changed by the most recent statement.
    var changes: Int { Int(sqlite3_changes64(handle)) }

    // MARK: - Transactions

    /// How a transaction body ends.
    enum TransactionCompletion {
        case commit
        case rollback
    }

    /// Runs `body` in a transaction. `BEGIN IMMEDIATE` takes the write lock up front so that
    /// a busy database is waited for (busy timeout) instead of failing at the first write.
    /// If `body` throws, the transaction rolls back and the body's error is rethrown, even when
    /// the rollback fails too.
    func inTransaction<T>(immediate: Bool = true, _ body: () throws -> (TransactionCompletion, T)) throws -> T {
        try execute(immediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED")
        let outcome: (TransactionCompletion, T)
        do {
            outcome = try body()
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
        switch outcome.0 {
        case .commit:
            do {
                try execute("COMMIT")
            } catch {
                try? execute("ROLLBACK")
                throw error
            }
        case .rollback:
            try execute("ROLLBACK")
        }
        return outcome.1
    }

    /// True while a transaction is open on this connection (`sqlite3_get_autocommit` is 0).
    var isInTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Runs a read-only `body` inside one deferred transaction, so that all of its reads see
    /// one consistent snapshot of the database (WAL readers are not blocked by writers).
    /// Inside an open transaction, `body` simply joins it.
    func readTransaction<T>(_ body: () throws -> T) throws -> T {
        if isInTransaction { return try body() }
        return try inTransaction(immediate: false) { (.commit, try body()) }
    }
}

@available(*, unavailable, message: "a connection belongs to one thread at a time")
extension Connection: Sendable {}
