/// One tensor declared in a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    /// The tensor's name (its key in the header).
    public var name: String
    /// The element type.
    public var dtype: DType
    /// The dimensions; `[]` for a 0-d (scalar) tensor.
    public var shape: [Int]
    /// The first byte of the tensor's data, relative to the start of the data section.
    public var dataStart: Int
    /// One past the last byte of the tensor's data, relative to the start of the data section.
    public var dataEnd: Int

    /// Creates a tensor description.
    public init(name: String, dtype: DType, shape: [Int], dataStart: Int, dataEnd: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataStart = dataStart
        self.dataEnd = dataEnd
    }

    /// The number of data bytes, `dataEnd - dataStart`.
    public var byteCount: Int { dataEnd - dataStart }

    /// The number of elements, the product of ``shape`` (1 for a 0-d tensor). Validated headers
    /// guarantee this does not overflow.
    public var elementCount: Int { shape.contains(0) ? 0 : shape.reduce(1, *) }
}

/// The parsed and validated header of a safetensors file.
///
/// A file is an 8-byte little-endian length N, N bytes of JSON (an object, possibly padded
/// with trailing spaces), then the data section. Validation matches the reference Rust
/// implementation, except that it is stricter in three ways: duplicate keys in any JSON object
/// are rejected (serde silently keeps the last tensor of a name), the header must begin with `{`
/// (safetensors 0.8 also allows leading whitespace), and tensor entries must be JSON objects
/// (serde also accepts the positional array form `["F32", [2], [0, 8]]`).
public struct SafetensorsHeader: Sendable {
    /// The largest header the reference implementation accepts, in bytes.
    public static let maxHeaderLength = 100_000_000

    /// The N header bytes exactly as they appear in the file, padding included.
    public let headerBytes: [UInt8]
    /// The parsed header, key order preserved.
    public let json: JSONValue
    /// The `__metadata__` entries in header order; nil when `__metadata__` is absent (or `null`,
    /// which the reference also treats as absent).
    public let metadata: [(key: String, value: String)]?
    /// The tensors sorted by (dataStart, dataEnd, name): the order of the data section.
    public let tensors: [TensorInfo]
    /// The length of the data section: the largest `dataEnd`, or 0 without tensors.
    public let dataLength: Int
    private let indexByName: [String: Int]

    /// The total file length this header implies: prefix, header and data section.
    public var fileLength: Int { 8 + headerBytes.count + dataLength }

    /// The tensor called `name`, if the header declares it.
    public func tensor(named name: String) -> TensorInfo? {
        indexByName[name].map { tensors[$0] }
    }

    /// Decodes the 8-byte little-endian length prefix and checks it against maxHeaderLength (and,
    /// when known, against the file size).
    ///
    /// Only the first 8 bytes of `prefix` are read. Throws `.truncated` when fewer than 8 bytes
    /// are given or the file is shorter than 8 bytes, `.headerTooLarge` above
    /// ``maxHeaderLength``, and `.headerBeyondFile` when `8 + N` exceeds `fileSize`.
    public static func headerLength(prefix: some Collection<UInt8>, fileSize: Int?) throws(SafetensorsError) -> Int {
        if let fileSize, fileSize < 8 { throw .truncated(at: fileSize, expected: 8) }
        var value: UInt64 = 0
        var count = 0
        for byte in prefix.prefix(8) {
            value |= UInt64(byte) << (8 * UInt64(count))
            count += 1
        }
        guard count == 8 else { throw .truncated(at: count, expected: 8) }
        guard value <= UInt64(maxHeaderLength) else {
            throw SafetensorsError(
                .headerTooLarge, "header length \(value) at byte 0 exceeds the limit of \(maxHeaderLength) bytes")
        }
        let length = Int(value)
        if let fileSize, length > fileSize - 8 {
            throw SafetensorsError(
                .headerBeyondFile,
                "header length \(length) at byte 0 ends at byte \(8 + length), beyond the \(fileSize)-byte file")
        }
        return length
    }

    /// Parses and validates the N header bytes (without the 8-byte prefix).
    ///
    /// Checks, in order: the length limit, UTF-8, that the header starts with `{`, JSON syntax
    /// (duplicate keys rejected), `__metadata__` (an object of strings), each tensor entry
    /// (known dtype; shape and data_offsets of non-negative 64-bit integers; begin ≤ end;
    /// element and bit counts without overflow; whole bytes; byte count matching the offsets),
    /// and finally that the tensors, sorted by offsets, tile the data section from 0 without
    /// gaps or overlaps.
    public static func parse(headerBytes: [UInt8]) throws(SafetensorsError) -> SafetensorsHeader {
        guard headerBytes.count <= maxHeaderLength else {
            throw SafetensorsError(
                .headerTooLarge, "header of \(headerBytes.count) bytes exceeds the limit of \(maxHeaderLength) bytes")
        }
        let badByte = headerBytes.withUnsafeBufferPointer { UTF8Check.firstInvalidByte(in: $0) }
        if let badByte { throw SafetensorsError(.invalidUTF8, "invalid UTF-8 at header byte \(badByte)") }
        guard let first = headerBytes.first else {
            throw SafetensorsError(.notAnObject, "header is empty; it must be a JSON object starting with '{'")
        }
        guard first == UInt8(ascii: "{") else {
            throw SafetensorsError(
                .notAnObject,
                "header must be a JSON object starting with '{', found byte 0x\(String(first, radix: 16)) at header byte 0"
            )
        }
        let json = try JSON.parse(headerBytes, maxDepth: 64, validatingUTF8: false)
        guard case .object(let members) = json else {
            throw SafetensorsError(.notAnObject, "header at header byte 0 is not a JSON object")
        }

        var metadata: [(key: String, value: String)]? = nil
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(members.count)
        for member in members {
            if member.key == "__metadata__" {
                metadata = try decodeMetadata(member.value)
            } else {
                tensors.append(try TensorInfoDecoder.decode(name: member.key, value: member.value))
            }
        }
        for tensor in tensors { try TensorInfoDecoder.validateSize(tensor) }
        tensors.sort { a, b in
            if a.dataStart != b.dataStart { return a.dataStart < b.dataStart }
            if a.dataEnd != b.dataEnd { return a.dataEnd < b.dataEnd }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)  // names as bytes, not Unicode order
        }
        let dataLength = try checkLayout(tensors, headerLength: headerBytes.count)

        var index: [String: Int] = [:]
        index.reserveCapacity(tensors.count)
        for (i, tensor) in tensors.enumerated() { index[tensor.name] = i }
        return SafetensorsHeader(
            headerBytes: headerBytes, json: json, metadata: metadata, tensors: tensors, dataLength: dataLength,
            indexByName: index)
    }

    /// `__metadata__` must be an object of strings; `null` means absent, as for serde's `Option`.
    private static func decodeMetadata(_ value: JSONValue) throws(SafetensorsError) -> [(key: String, value: String)]? {
        switch value {
        case .null:
            return nil
        case .object(let entries):
            var result: [(key: String, value: String)] = []
            result.reserveCapacity(entries.count)
            for entry in entries {
                guard case .string(let text) = entry.value else {
                    throw SafetensorsError(
                        .invalidMetadata,
                        "__metadata__ entry \(JSON.quoted(entry.key)) is \(describe(entry.value)), expected a string")
                }
                result.append((entry.key, text))
            }
            return result
        default:
            throw SafetensorsError(
                .invalidMetadata, "__metadata__ is \(describe(value)), expected an object of strings")
        }
    }

    /// The largest data section a header of `headerLength` bytes may describe: the whole file,
    /// `8 + headerLength + dataLength`, must fit in a signed 64-bit integer (file sizes and
    /// offsets are `Int` throughout, and no file system holds more).
    static func maxDataLength(headerLength: Int) -> Int { Int.max - 8 - headerLength }

    /// Checks that `sorted` tiles `0..<end` exactly and that the whole file, `8 + headerLength
    /// + end`, fits in 64 bits; returns that end.
    private static func checkLayout(_ sorted: [TensorInfo], headerLength: Int) throws(SafetensorsError) -> Int {
        var end = 0
        var previous: TensorInfo? = nil
        let limit = maxDataLength(headerLength: headerLength)
        for tensor in sorted {
            var subject: String { "tensor \(JSON.quoted(tensor.name)): data_offsets [\(tensor.dataStart), \(tensor.dataEnd)]" }
            if tensor.dataEnd > limit {
                throw SafetensorsError(
                    .fileTooLarge,
                    "\(subject) end beyond the largest possible file: 8 + \(headerLength) header bytes + \(tensor.dataEnd) "
                        + "exceeds \(Int.max) bytes")
            }
            if tensor.dataStart > end {
                if let previous {
                    throw SafetensorsError(
                        .offsetsGap,
                        "\(subject) leave a gap of \(tensor.dataStart - end) bytes after tensor "
                            + "\(JSON.quoted(previous.name)), which ends at \(end)")
                }
                throw SafetensorsError(.offsetsGap, "\(subject) begin at \(tensor.dataStart), but the data section starts at 0")
            }
            if tensor.dataStart < end, let previous {
                throw SafetensorsError(
                    .offsetsOverlap, "\(subject) overlap tensor \(JSON.quoted(previous.name)), which ends at \(end)")
            }
            end = tensor.dataEnd
            previous = tensor
        }
        return end
    }

    /// A short description of a JSON value's type, for error messages.
    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number(let text): return text.count <= 40 ? text : "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// Decodes and checks single tensor entries of a header.
enum TensorInfoDecoder {
    /// Reads `dtype`, `shape` and `data_offsets` from a tensor entry; other fields are ignored,
    /// as serde does.
    static func decode(name: String, value: JSONValue) throws(SafetensorsError) -> TensorInfo {
        var label: String { "tensor \(JSON.quoted(name))" }
        guard case .object(let fields) = value else {
            throw SafetensorsError(
                .invalidTensorInfo, "\(label): entry is \(SafetensorsHeader.describe(value)), expected an object")
        }
        var dtypeValue: JSONValue? = nil
        var shapeValue: JSONValue? = nil
        var offsetsValue: JSONValue? = nil
        for field in fields {
            switch field.key {
            case "dtype": dtypeValue = field.value
            case "shape": shapeValue = field.value
            case "data_offsets": offsetsValue = field.value
            default: break
            }
        }
        guard let dtypeValue else { throw missing("dtype", label) }
        guard let shapeValue else { throw missing("shape", label) }
        guard let offsetsValue else { throw missing("data_offsets", label) }

        guard case .string(let dtypeName) = dtypeValue else {
            throw SafetensorsError(
                .invalidTensorInfo,
                "\(label): dtype is \(SafetensorsHeader.describe(dtypeValue)), expected a string")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            let hint = DType.suggestion(for: dtypeName).map { " (did you mean \"\($0.rawValue)\"?)" } ?? ""
            throw SafetensorsError(.unknownDType, "\(label): unknown dtype \(JSON.quoted(dtypeName))\(hint)")
        }
        let shape = try integers(shapeValue, field: "shape", label)
        let offsets = try integers(offsetsValue, field: "data_offsets", label)
        guard offsets.count == 2 else {
            throw SafetensorsError(
                .invalidTensorInfo, "\(label): data_offsets has \(offsets.count) elements, expected [begin, end]")
        }
        guard offsets[0] <= offsets[1] else {
            throw SafetensorsError(
                .invalidTensorInfo, "\(label): data_offsets [\(offsets[0]), \(offsets[1])] begin after they end")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataStart: offsets[0], dataEnd: offsets[1])
    }

    /// Checks element count and bit count for overflow, whole bytes, and that the offsets hold
    /// exactly the bytes the dtype and shape need.
    static func validateSize(_ tensor: TensorInfo) throws(SafetensorsError) {
        var label: String { "tensor \(JSON.quoted(tensor.name))" }
        var shapeText: String { "[" + tensor.shape.map(String.init).joined(separator: ", ") + "]" }
        // Unsigned 64-bit arithmetic, as the reference's usize: [3037000500, 3037000500, 0] is a
        // valid empty tensor although its running product passes Int64.max.
        var count: UInt64 = 1
        for dimension in tensor.shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: UInt64(dimension))
            guard !overflow else {
                throw SafetensorsError(
                    .shapeOverflow, "\(label): shape \(shapeText) has more elements than fit in a 64-bit integer")
            }
            count = product
        }
        let (bits, overflow) = count.multipliedReportingOverflow(by: UInt64(tensor.dtype.bitSize))
        guard !overflow else {
            throw SafetensorsError(
                .shapeOverflow,
                "\(label): \(tensor.dtype.rawValue) shape \(shapeText) has \(count) elements, too many bits for a 64-bit integer")
        }
        guard bits % 8 == 0 else {
            throw SafetensorsError(
                .misalignedBits,
                "\(label): \(tensor.dtype.rawValue) shape \(shapeText) is \(bits) bits, not a whole number of bytes")
        }
        guard tensor.byteCount >= 0, UInt64(tensor.byteCount) == bits / 8 else {
            throw SafetensorsError(
                .sizeMismatch,
                "\(label): data_offsets [\(tensor.dataStart), \(tensor.dataEnd)] hold \(tensor.byteCount) bytes "
                    + "but \(tensor.dtype.rawValue) shape \(shapeText) needs \(bits / 8)")
        }
    }

    private static func missing(_ field: String, _ label: @autoclosure () -> String) -> SafetensorsError {
        SafetensorsError(.invalidTensorInfo, "\(label()): missing field \"\(field)\"")
    }

    /// An array of non-negative integers that fit in `Int`, read exactly from their literal text.
    private static func integers(_ value: JSONValue, field: String, _ label: @autoclosure () -> String)
        throws(SafetensorsError) -> [Int]
    {
        guard case .array(let items) = value else {
            throw SafetensorsError(
                .invalidTensorInfo, "\(label()): \(field) is \(SafetensorsHeader.describe(value)), expected an array")
        }
        var result: [Int] = []
        result.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case .number(let text) = item, let n = nonNegativeInt(text) else {
                throw SafetensorsError(
                    .invalidTensorInfo,
                    "\(label()): \(field)[\(i)] is \(SafetensorsHeader.describe(item)), expected a non-negative 64-bit integer")
            }
            result.append(n)
        }
        return result
    }

    /// The value of `text` when it is a plain decimal integer in `0...Int.max`, else nil.
    static func nonNegativeInt(_ text: String) -> Int? {
        var value = 0
        var any = false
        for byte in text.utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !o1, !o2 else { return nil }
            value = sum
            any = true
        }
        return any ? value : nil
    }
}
