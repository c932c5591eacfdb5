import CPostgres

/// The rows of one successful statement, owning libpq's `PGresult` (cleared on deinit).
///
/// Results arrive in binary format, decoded by column type: `int64` reads `int2`, `int4`, `int8`
/// and `oid`; `double` reads `float4` and `float8` (and the integer types); `string` reads
/// `text`, `varchar`, `char`, `name`, `json` and `jsonb`; `bytes` reads `bytea` and the text
/// types; `bool` reads `bool`. Any other type (e.g. `numeric`, which `sum(bigint)` returns)
/// must be cast in SQL (`::bigint`, `::float8`, `::text`). A wrong type, a NULL read by a
/// non-optional accessor, or an index out of range throws `PGError` (origin `.client`); nothing traps.
public final class PGResult {
    private let result: OpaquePointer
    /// The SQL text that produced this result (for error messages).
    public let statement: String
    /// Number of rows returned.
    public let rowCount: Int
    /// Number of columns returned.
    public let columnCount: Int

    init(owning result: OpaquePointer, statement: String) {
        self.result = result
        self.statement = statement
        rowCount = Int(PQntuples(result))
        columnCount = Int(PQnfields(result))
    }

    deinit { PQclear(result) }

    /// Rows affected by INSERT, UPDATE, DELETE, MERGE, SELECT, MOVE, FETCH or COPY; nil for
    /// other commands.
    public var affectedRows: Int? {
        guard let text = PQcmdTuples(result) else { return nil }
        return Int(String(cString: text))
    }

    /// The command tag, e.g. `INSERT 0 1`.
    public var commandTag: String { PQcmdStatus(result).map { String(cString: $0) } ?? "" }

    /// The name of column `column`.
    public func columnName(_ column: Int) throws -> String {
        try check(row: nil, column: column)
        return PQfname(result, Int32(column)).map { String(cString: $0) } ?? ""
    }

    /// The index of the column named `name`, or nil.
    public func columnIndex(_ name: String) -> Int? {
        (0..<columnCount).first { PQfname(result, Int32($0)).map { String(cString: $0) } == name }
    }

    /// Whether the value at (`row`, `column`) is NULL.
    public func isNull(_ row: Int, _ column: Int) throws -> Bool {
        try check(row: row, column: column)
        return PQgetisnull(result, Int32(row), Int32(column)) != 0
    }

    /// An integer column value.
    public func int64(_ row: Int, _ column: Int) throws -> Int64 {
        let (type, raw) = try value(row, column, "an integer")
        switch (type, raw.count) {
        case (PGValue.OID.int8, 8): return Int64(bitPattern: bigEndian(raw))
        case (PGValue.OID.int4, 4): return Int64(Int32(bitPattern: UInt32(bigEndian(raw))))
        case (PGValue.OID.int2, 2): return Int64(Int16(bitPattern: UInt16(bigEndian(raw))))
        case (PGValue.OID.oid, 4): return Int64(UInt32(bigEndian(raw)))
        default: throw mismatch(row, column, type, "an integer")
        }
    }

    /// An integer column value as `Int`.
    public func int(_ row: Int, _ column: Int) throws -> Int { Int(try int64(row, column)) }

    /// A floating-point (or integer) column value.
    public func double(_ row: Int, _ column: Int) throws -> Double {
        let (type, raw) = try value(row, column, "a double")
        switch (type, raw.count) {
        case (PGValue.OID.float8, 8): return Double(bitPattern: bigEndian(raw))
        case (PGValue.OID.float4, 4): return Double(Float(bitPattern: UInt32(bigEndian(raw))))
        case (PGValue.OID.int8, _), (PGValue.OID.int4, _), (PGValue.OID.int2, _): return Double(try int64(row, column))
        default: throw mismatch(row, column, type, "a double")
        }
    }

    /// A boolean column value.
    public func bool(_ row: Int, _ column: Int) throws -> Bool {
        let (type, raw) = try value(row, column, "a bool")
        guard type == PGValue.OID.bool, raw.count == 1 else { throw mismatch(row, column, type, "a bool") }
        return raw[0] != 0
    }

    /// A text column value (valid UTF-8, checked).
    public func string(_ row: Int, _ column: Int) throws -> String {
        let (type, raw) = try value(row, column, "text")
        var bytes = raw[...]
        switch type {
        case PGValue.OID.text, PGValue.OID.varchar, PGValue.OID.bpchar, PGValue.OID.name, PGValue.OID.unknown, PGValue.OID.json:
            break
        case PGValue.OID.jsonb where raw.first == 1:  // binary jsonb: a version byte, then the text
            bytes = raw.dropFirst()
        default:
            throw mismatch(row, column, type, "text")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw PGError.client("column \(column) of row \(row) is not valid UTF-8", statement: statement)
        }
        return text
    }

    /// A `bytea` (or text) column value, exactly.
    public func bytes(_ row: Int, _ column: Int) throws -> [UInt8] {
        let (type, raw) = try value(row, column, "bytes")
        switch type {
        case PGValue.OID.bytea, PGValue.OID.text, PGValue.OID.varchar, PGValue.OID.bpchar, PGValue.OID.name, PGValue.OID.unknown:
            return raw
        default:
            throw mismatch(row, column, type, "bytes")
        }
    }

    /// The value of an optional column: nil when NULL, else `read(row, column)`.
    public func optional<T>(_ row: Int, _ column: Int, _ read: (Int, Int) throws -> T) throws -> T? {
        try isNull(row, column) ? nil : read(row, column)
    }

    // MARK: Private

    private func check(row: Int?, column: Int) throws {
        guard column >= 0, column < columnCount else {
            throw PGError.client("column \(column) out of range (the result has \(columnCount))", statement: statement)
        }
        if let row, row < 0 || row >= rowCount {
            throw PGError.client("row \(row) out of range (the result has \(rowCount))", statement: statement)
        }
    }

    /// The type OID and raw binary bytes of a non-NULL value.
    private func value(_ row: Int, _ column: Int, _ wanted: String) throws -> (UInt32, [UInt8]) {
        try check(row: row, column: column)
        let r = Int32(row)
        let c = Int32(column)
        if PQgetisnull(result, r, c) != 0 {
            throw PGError.client("column \(column) of row \(row) is NULL, expected \(wanted)", statement: statement)
        }
        guard PQfformat(result, c) == 1 else {
            throw PGError.client("column \(column) is not in binary format", statement: statement)
        }
        let length = Int(PQgetlength(result, r, c))
        guard let pointer = PQgetvalue(result, r, c) else { return (PQftype(result, c), []) }
        let raw = UnsafeRawBufferPointer(start: pointer, count: length)
        return (PQftype(result, c), Array(raw))
    }

    private func mismatch(_ row: Int, _ column: Int, _ type: UInt32, _ wanted: String) -> PGError {
        PGError.client(
            "column \(column) of row \(row) has type OID \(type), which cannot be read as \(wanted) (cast it in SQL)", statement: statement)
    }
}

/// The big-endian unsigned integer in `bytes` (at most 8 of them).
private func bigEndian(_ bytes: [UInt8]) -> UInt64 {
    bytes.reduce(0) { ($0 << 8) | UInt64($1) }
}
