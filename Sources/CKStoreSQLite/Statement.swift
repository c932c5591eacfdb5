import CKStore
import CSQLite

/// `SQLITE_TRANSIENT`: tells SQLite to copy bound text and blobs before the bind returns.
let sqliteTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A prepared SQL statement, owned by one `Connection` and finalized in `deinit`.
///
/// Statements are single-threaded like their connection. Bind with `bind(_:)`, step with
/// `step()` or iterate rows with `forEachRow`; the statement is reset before each execution.
final class Statement {
    /// The underlying `sqlite3_stmt`.
    let handle: OpaquePointer
    /// The SQL text, kept for error messages.
    let sql: String
    private unowned let connection: Connection

    init(connection: Connection, sql: String) throws(SQLiteError) {
        var stmt: OpaquePointer?
        let code = sqlite3_prepare_v3(connection.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard code == SQLITE_OK, let stmt else {
            throw connection.error(code: code, sql: sql)
        }
        self.handle = stmt
        self.sql = sql
        self.connection = connection
    }

    deinit {
        sqlite3_finalize(handle)
    }

    // MARK: - Binding

    /// Resets the statement and binds `values` to its parameters, in order (1-based in SQLite).
    ///
    /// A bind that fails is a programming error (wrong parameter count), so it traps.
    func bind(_ values: [SQLValue]) {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        precondition(
            Int(sqlite3_bind_parameter_count(handle)) == values.count,
            "statement expects \(sqlite3_bind_parameter_count(handle)) parameters, got \(values.count): \(sql)")
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let code: Int32
            switch value {
            case .null: code = sqlite3_bind_null(handle, index)
            case .integer(let v): code = sqlite3_bind_int64(handle, index, v)
            case .real(let v): code = sqlite3_bind_double(handle, index, v)
            case .text(let v): code = sqlite3_bind_text(handle, index, v, -1, sqliteTransient)
            case .blob(let bytes):
                code = bytes.withUnsafeBytes { raw in
                    sqlite3_bind_blob64(
                        handle, index, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64(raw.count), sqliteTransient)
                }
            }
            precondition(code == SQLITE_OK, "bind \(index) failed with \(code): \(sql)")
        }
    }

    // MARK: - Stepping

    /// Runs the statement to completion, discarding any rows.
    func run(_ values: [SQLValue] = []) throws(SQLiteError) {
        bind(values)
        defer { sqlite3_reset(handle) }
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            if code != SQLITE_ROW { throw connection.error(code: code, sql: sql) }
        }
    }

    /// Runs the statement and calls `body` for each result row.
    func forEachRow(_ values: [SQLValue] = [], _ body: (Row) throws -> Void) throws {
        bind(values)
        defer { sqlite3_reset(handle) }
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else { throw connection.error(code: code, sql: sql) }
            try body(Row(handle: handle))
        }
    }

    /// Runs the statement and maps every row with `transform`.
    func rows<T>(_ values: [SQLValue] = [], _ transform: (Row) throws -> T) throws -> [T] {
        var result: [T] = []
        try forEachRow(values) { result.append(try transform($0)) }
        return result
    }

    /// Runs the statement and maps the first row, if any.
    func firstRow<T>(_ values: [SQLValue] = [], _ transform: (Row) throws -> T) throws -> T? {
        bind(values)
        defer { sqlite3_reset(handle) }
        let code = sqlite3_step(handle)
        if code == SQLITE_DONE { return nil }
        guard code == SQLITE_ROW else { throw connection.error(code: code, sql: sql) }
        return try transform(Row(handle: handle))
    }
}

@available(*, unavailable, message: "a statement belongs to the thread of its connection")
extension Statement: Sendable {}

/// A value bound to a statement parameter.
enum SQLValue {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    /// Convenience for `Int` values.
    static func int(_ value: Int) -> SQLValue { .integer(Int64(value)) }
}

/// A view of the current result row of a stepping statement. Valid only inside the callback.
struct Row {
    let handle: OpaquePointer

    /// The column's integer value (0 for NULL).
    func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }
    /// The column's integer value, or nil for NULL.
    func optionalInt(_ column: Int32) -> Int? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : int(column)
    }
    /// The column's real value.
    func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    /// The column's text ("" for NULL).
    func text(_ column: Int32) -> String {
        guard let p = sqlite3_column_text(handle, column) else { return "" }
        return String(cString: p)
    }
    /// The column's text, or nil for NULL.
    func optionalText(_ column: Int32) -> String? {
        sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : text(column)
    }
    /// The column's bytes (empty for NULL).
    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(handle, column))
        guard count > 0, let p = sqlite3_column_blob(handle, column) else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: p, count: count))
    }
}
