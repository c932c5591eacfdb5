/// A statement parameter, sent separately from the SQL text (never spliced into it).
///
/// Numbers, booleans and bytes travel in PostgreSQL's binary format with an explicit type
/// (`int8`, `float8`, `bool`, `bytea`), so every `Int64` and every `Double` bit pattern,
/// NaN and infinities included, and every byte string, NUL bytes included, arrive exactly.
/// Text travels as text with an unspecified type, so the server infers it from the context
/// (a `text`, `varchar` or `jsonb` column alike); it cannot contain a NUL character.
public enum PGValue: Sendable, Equatable {
    /// SQL NULL.
    case null
    /// A 64-bit integer (`int8`; PostgreSQL casts it to the column's integer type on assignment).
    case int64(Int64)
    /// A double-precision float (`float8`).
    case double(Double)
    /// A boolean (`bool`).
    case bool(Bool)
    /// UTF-8 text (type inferred by the server).
    case text(String)
    /// Raw bytes (`bytea`).
    case bytes([UInt8])

    /// An `Int` parameter (`int8`).
    public static func int(_ value: Int) -> PGValue { .int64(Int64(value)) }

    /// Type OIDs of the built-in types used here (pg_type.dat).
    enum OID {
        static let bool: UInt32 = 16
        static let bytea: UInt32 = 17
        static let name: UInt32 = 19
        static let int8: UInt32 = 20
        static let int2: UInt32 = 21
        static let int4: UInt32 = 23
        static let text: UInt32 = 25
        static let oid: UInt32 = 26
        static let json: UInt32 = 114
        static let float4: UInt32 = 700
        static let float8: UInt32 = 701
        static let unknown: UInt32 = 705
        static let bpchar: UInt32 = 1042
        static let varchar: UInt32 = 1043
        static let jsonb: UInt32 = 3802
    }

    /// The wire form of this parameter for PQexecParams: type OID (0 = let the server infer),
    /// bytes (nil for NULL), and format (0 text, 1 binary).
    /// - Throws: `PGError` (origin `.client`) for text containing a NUL character.
    func encoded(index: Int, statement: String) throws -> (type: UInt32, bytes: [UInt8]?, format: Int32) {
        switch self {
        case .null:
            return (0, nil, 0)
        case .int64(let v):
            return (OID.int8, bigEndianBytes(UInt64(bitPattern: v)), 1)
        case .double(let v):
            return (OID.float8, bigEndianBytes(v.bitPattern), 1)
        case .bool(let v):
            return (OID.bool, [v ? 1 : 0], 1)
        case .bytes(let v):
            return (OID.bytea, v, 1)
        case .text(let s):
            let utf8 = Array(s.utf8)
            if utf8.contains(0) {
                throw PGError.client(
                    "text parameter $\(index + 1) contains a NUL character, which PostgreSQL text cannot hold (send it as bytes)",
                    statement: statement)
            }
            return (0, utf8, 0)
        }
    }
}

/// The 8 bytes of `value`, most significant first (network order).
private func bigEndianBytes(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
}
