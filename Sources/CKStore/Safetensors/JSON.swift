/// A JSON value that keeps object members in the order they were written.
///
/// Numbers keep their literal text, so integers of any size round-trip exactly and callers
/// decide how strictly to interpret them.
public enum JSONValue: Sendable, Equatable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, as its literal text (for example `"12"`, `"-0.5e3"`).
    case number(String)
    /// A string, with escapes decoded.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object, members in document order. Keys are unique in anything ``JSON/parse(_:maxDepth:)``
    /// returns.
    case object([(key: String, value: JSONValue)])

    /// Structural equality; objects compare member by member, in order.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }
}

/// A strict JSON (RFC 8259) parser and compact serializer for safetensors headers.
///
/// The parser is stricter than serde_json, which the reference implementation uses: it also
/// rejects duplicate keys in any object (serde keeps the last one for maps). It rejects invalid
/// UTF-8, control characters in strings, lone surrogates in `\u` escapes, anything but
/// whitespace after the top-level value, and nesting deeper than `maxDepth`. It runs in linear
/// time with an explicit stack, so hostile input cannot overflow the call stack; the values it
/// returns nest at most `maxDepth` levels, which keeps recursive work on them (``serialize(_:)``,
/// `==`, deallocation) shallow. Keep `maxDepth` small (the default suits safetensors).
public enum JSON {
    /// Parses one JSON document from `bytes`.
    ///
    /// - Parameters:
    ///   - bytes: the complete document, UTF-8 encoded; leading and trailing JSON whitespace is allowed.
    ///   - maxDepth: the deepest nesting of arrays and objects accepted (the top level counts as 1).
    /// - Throws: ``SafetensorsError`` of kind `.invalidUTF8`, `.invalidJSON` or `.duplicateKey`;
    ///   the message names the byte offset at fault.
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = 64) throws(SafetensorsError)
        -> JSONValue
    {
        try parse(bytes, maxDepth: maxDepth, validatingUTF8: true)
    }

    /// Parses `bytes`; skips the UTF-8 pass when the caller has already validated them.
    static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int, validatingUTF8: Bool)
        throws(SafetensorsError) -> JSONValue
    {
        let body = { (buf: UnsafeBufferPointer<UInt8>) -> Result<JSONValue, SafetensorsError> in
            Result { () throws(SafetensorsError) -> JSONValue in
                if validatingUTF8, let bad = UTF8Check.firstInvalidByte(in: buf) {
                    throw SafetensorsError(.invalidUTF8, "invalid UTF-8 at header byte \(bad)")
                }
                var parser = JSONParser(buf: buf, maxDepth: maxDepth)
                return try parser.parseDocument()
            }
        }
        if let result = bytes.withContiguousStorageIfAvailable(body) { return try result.get() }
        return try Array(bytes).withUnsafeBufferPointer(body).get()
    }

    /// Serializes `value` compactly: no insignificant whitespace, object keys in stored order,
    /// numbers as their literal text, strings escaped minimally (`\"`, `\\`, and control
    /// characters as `\b \f \n \r \t` or `\u00XX`; everything else as raw UTF-8).
    public static func serialize(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        write(value, into: &out)
        return out
    }

    /// Appends the compact serialization of `value` to `out`.
    static func write(_ value: JSONValue, into out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let text): out.append(contentsOf: text.utf8)
        case .string(let s): writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, member) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeString(member.key, into: &out)
                out.append(UInt8(ascii: ":"))
                write(member.value, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Appends `s` as a quoted, minimally escaped JSON string.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                out.append(contentsOf: "\\u00".utf8)
                out.append(hexDigits[Int(b >> 4)])
                out.append(hexDigits[Int(b & 0xF)])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// `s` in single quotes for an error message: control characters escaped, at most 200
    /// characters, so the message stays one short line.
    static func quoted(_ s: String) -> String {
        var text = ""
        for (i, ch) in s.unicodeScalars.enumerated() {
            if i == 200 {
                text += "…"
                break
            }
            if ch.value < 0x20 || ch.value == 0x7F {
                let hex = String(ch.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                text.unicodeScalars.append(ch)
            }
        }
        return "'" + text + "'"
    }
}

/// Strict UTF-8 validation (no overlong forms, no surrogates, nothing above U+10FFFF).
enum UTF8Check {
    /// The offset of the first byte that starts an invalid sequence, or nil when all is valid.
    static func firstInvalidByte(in buf: UnsafeBufferPointer<UInt8>) -> Int? {
        var i = 0
        let n = buf.count
        while i < n {
            let b0 = buf[i]
            if b0 < 0x80 {
                i += 1
                continue
            }
            var lo: UInt8 = 0x80
            var hi: UInt8 = 0xBF
            let length: Int
            switch b0 {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; hi = 0x9F
            case 0xF0: length = 4; lo = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; hi = 0x8F
            default: return i
            }
            guard n - i >= length, (lo...hi).contains(buf[i + 1]) else { return i }
            for k in 2..<length where buf[i + k] & 0xC0 != 0x80 { return i }
            i += length
        }
        return nil
    }
}

/// The iterative parser behind ``JSON/parse(_:maxDepth:)``. Works on bytes already known to be
/// valid UTF-8, so strings without escapes are decoded in one step.
struct JSONParser {
    /// One open array or object.
    private struct Frame {
        var isObject: Bool
        var items: [JSONValue] = []
        var members: [(key: String, value: JSONValue)] = []
        var keys: Set<[UInt8]> = []
        var pendingKey = ""

        /// Records `key`, returning false when the object already has it. Keys are compared as
        /// UTF-8 bytes, as the reference implementation does (Swift's `String ==` would treat
        /// "é" and "e\u{301}" as equal). Small objects are scanned linearly; from 16 members
        /// on, a set keeps the check O(1).
        mutating func isNewKey(_ key: String) -> Bool {
            if members.count < 16 { return !members.contains { $0.key.utf8.elementsEqual(key.utf8) } }
            if keys.isEmpty { keys = Set(members.lazy.map { Array($0.key.utf8) }) }
            return keys.insert(Array(key.utf8)).inserted
        }
    }

    let buf: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    private var pos = 0
    private var stack: [Frame] = []

    init(buf: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.buf = buf
        self.maxDepth = maxDepth
    }

    private func error(_ what: String, at offset: Int) -> SafetensorsError {
        SafetensorsError(.invalidJSON, "invalid JSON at header byte \(offset): \(what)")
    }

    private var endError: SafetensorsError { error("unexpected end of input", at: buf.count) }

    private mutating func skipWhitespace() {
        while pos < buf.count {
            switch buf[pos] {
            case 0x20, 0x09, 0x0A, 0x0D: pos += 1
            default: return
            }
        }
    }

    /// Parses the whole buffer as one value followed only by whitespace.
    mutating func parseDocument() throws(SafetensorsError) -> JSONValue {
        var value = try parseValueOrOpen()
        while true {
            guard var finished = value else {
                value = try parseValueOrOpen()
                continue
            }
            // Attach the finished value to the innermost open container, closing containers
            // for as long as their closing bracket follows.
            while true {
                guard !stack.isEmpty else {
                    skipWhitespace()
                    guard pos == buf.count else { throw error("unexpected bytes after the JSON value", at: pos) }
                    return finished
                }
                let top = stack.count - 1
                if stack[top].isObject {
                    stack[top].members.append((stack[top].pendingKey, finished))
                } else {
                    stack[top].items.append(finished)
                }
                skipWhitespace()
                guard pos < buf.count else { throw endError }
                let c = buf[pos]
                let isObject = stack[top].isObject
                if c == UInt8(ascii: ",") {
                    pos += 1
                    if isObject { try parseKey() }
                    break
                }
                guard c == UInt8(ascii: isObject ? "}" : "]") else {
                    throw error(isObject ? "expected ',' or '}'" : "expected ',' or ']'", at: pos)
                }
                pos += 1
                let frame = stack.removeLast()
                finished = frame.isObject ? .object(frame.members) : .array(frame.items)
            }
            value = nil
        }
    }

    /// Parses a scalar or an empty container and returns it, or opens a non-empty container
    /// (pushing a frame, and for objects reading the first key) and returns nil.
    private mutating func parseValueOrOpen() throws(SafetensorsError) -> JSONValue? {
        skipWhitespace()
        guard pos < buf.count else { throw endError }
        switch buf[pos] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let isObject = buf[pos] == UInt8(ascii: "{")
            guard stack.count < maxDepth else { throw error("nesting deeper than \(maxDepth) levels", at: pos) }
            pos += 1
            skipWhitespace()
            if pos < buf.count, buf[pos] == UInt8(ascii: isObject ? "}" : "]") {
                pos += 1
                return isObject ? .object([]) : .array([])
            }
            stack.append(Frame(isObject: isObject))
            if isObject { try parseKey() }
            return nil
        case UInt8(ascii: "\""):
            return .string(try parseString())
        case UInt8(ascii: "t"): return try parseLiteral("true", .bool(true))
        case UInt8(ascii: "f"): return try parseLiteral("false", .bool(false))
        case UInt8(ascii: "n"): return try parseLiteral("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try parseNumber()
        default:
            throw error("expected a value", at: pos)
        }
    }

    /// Reads `"key" :` into the innermost (object) frame, rejecting a repeated key.
    private mutating func parseKey() throws(SafetensorsError) {
        skipWhitespace()
        guard pos < buf.count else { throw endError }
        guard buf[pos] == UInt8(ascii: "\"") else { throw error("expected '\"' to begin an object key", at: pos) }
        let keyOffset = pos
        let key = try parseString()
        let top = stack.count - 1
        guard stack[top].isNewKey(key) else {
            throw SafetensorsError(.duplicateKey, "duplicate key \(JSON.quoted(key)) at header byte \(keyOffset)")
        }
        stack[top].pendingKey = key
        skipWhitespace()
        guard pos < buf.count else { throw endError }
        guard buf[pos] == UInt8(ascii: ":") else { throw error("expected ':' after an object key", at: pos) }
        pos += 1
    }

    private mutating func parseLiteral(_ word: StaticString, _ value: JSONValue) throws(SafetensorsError) -> JSONValue {
        let count = word.utf8CodeUnitCount
        let start = word.utf8Start
        for k in 0..<count {
            guard pos + k < buf.count else { throw endError }
            guard buf[pos + k] == start[k] else { throw error("invalid literal", at: pos + k) }
        }
        pos += count
        return value
    }

    private func isDigit(_ offset: Int) -> Bool {
        offset < buf.count && buf[offset] >= UInt8(ascii: "0") && buf[offset] <= UInt8(ascii: "9")
    }

    private mutating func requireDigits() throws(SafetensorsError) {
        guard pos < buf.count else { throw endError }
        guard isDigit(pos) else { throw error("expected a digit", at: pos) }
        while isDigit(pos) { pos += 1 }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, kept as text.
    private mutating func parseNumber() throws(SafetensorsError) -> JSONValue {
        let start = pos
        if buf[pos] == UInt8(ascii: "-") { pos += 1 }
        if pos < buf.count, buf[pos] == UInt8(ascii: "0") {
            pos += 1
            if isDigit(pos) { throw error("leading zero in number", at: start) }
        } else {
            try requireDigits()
        }
        if pos < buf.count, buf[pos] == UInt8(ascii: ".") {
            pos += 1
            try requireDigits()
        }
        if pos < buf.count, buf[pos] | 0x20 == UInt8(ascii: "e") {
            pos += 1
            if pos < buf.count, buf[pos] == UInt8(ascii: "+") || buf[pos] == UInt8(ascii: "-") { pos += 1 }
            try requireDigits()
        }
        return .number(String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self))
    }

    /// Parses a string starting at the opening quote; escape-free strings take the fast path.
    private mutating func parseString() throws(SafetensorsError) -> String {
        pos += 1
        let start = pos
        while pos < buf.count {
            let b = buf[pos]
            if b == UInt8(ascii: "\"") {
                defer { pos += 1 }
                return String(decoding: UnsafeBufferPointer(rebasing: buf[start..<pos]), as: UTF8.self)
            }
            if b == UInt8(ascii: "\\") { return try parseEscapedString(from: start) }
            if b < 0x20 { throw controlCharacterError(b) }
            pos += 1
        }
        throw endError
    }

    private func controlCharacterError(_ b: UInt8) -> SafetensorsError {
        error("control character 0x\(String(b, radix: 16)) in string", at: pos)
    }

    /// The slow path of ``parseString()``: `pos` is at the first backslash.
    private mutating func parseEscapedString(from start: Int) throws(SafetensorsError) -> String {
        var out = Array(buf[start..<pos])
        while pos < buf.count {
            let b = buf[pos]
            if b == UInt8(ascii: "\"") {
                pos += 1
                return String(decoding: out, as: UTF8.self)
            }
            if b < 0x20 { throw controlCharacterError(b) }
            guard b == UInt8(ascii: "\\") else {
                out.append(b)
                pos += 1
                continue
            }
            let escapeOffset = pos
            pos += 1
            guard pos < buf.count else { throw endError }
            let e = buf[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var code = try parseHex4()
                if (0xDC00...0xDFFF).contains(code) {
                    throw error("lone trailing surrogate in \\u escape", at: escapeOffset)
                }
                if (0xD800...0xDBFF).contains(code) {
                    guard pos + 1 < buf.count, buf[pos] == UInt8(ascii: "\\"), buf[pos + 1] == UInt8(ascii: "u") else {
                        throw error("lone leading surrogate in \\u escape", at: escapeOffset)
                    }
                    pos += 2
                    let low = try parseHex4()
                    guard (0xDC00...0xDFFF).contains(low) else {
                        throw error("lone leading surrogate in \\u escape", at: escapeOffset)
                    }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                if let scalar = Unicode.Scalar(code) { UTF8.encode(scalar) { out.append($0) } }
            default:
                throw error("invalid escape sequence", at: escapeOffset)
            }
        }
        throw endError
    }

    /// Four hex digits after `\u`.
    private mutating func parseHex4() throws(SafetensorsError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard pos < buf.count else { throw endError }
            let b = buf[pos]
            let digit: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in \\u escape", at: pos)
            }
            value = value << 4 | UInt32(digit)
            pos += 1
        }
        return value
    }
}
