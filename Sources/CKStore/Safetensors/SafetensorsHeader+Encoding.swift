extension SafetensorsHeader {
    /// Encodes a header for tensors laid out contiguously in the given order, with data_offsets
    /// computed from the byte counts, `__metadata__` first when non-nil, compact JSON, padded with
    /// spaces so that 8 + N is a multiple of 8. Returns the bytes without the 8-byte prefix.
    ///
    /// Preconditions (checked, also in release builds, because a violation would write a file
    /// no reader accepts): tensor names are unique and not `__metadata__`, metadata keys are
    /// unique, dimensions are non-negative, and each tensor's bit count is a whole number of
    /// bytes without overflow.
    public static func encode(
        tensors: [(name: String, dtype: DType, shape: [Int])], metadata: [(key: String, value: String)]?
    ) -> [UInt8] {
        var members: [(key: String, value: JSONValue)] = []
        members.reserveCapacity(tensors.count + 1)
        if let metadata { members.append(("__metadata__", metadataJSON(metadata))) }
        var names = Set<String>()
        var offset = 0
        for tensor in tensors {
            guard tensor.name != "__metadata__", names.insert(tensor.name).inserted else {
                fatalError("SafetensorsHeader.encode: duplicate or reserved tensor name '\(tensor.name)'")
            }
            let end = offset.addingReportingOverflow(byteCount(of: tensor))
            guard !end.overflow else { fatalError("SafetensorsHeader.encode: data section overflows Int") }
            let entry: [(key: String, value: JSONValue)] = [
                ("dtype", .string(tensor.dtype.rawValue)),
                ("shape", .array(tensor.shape.map { .number(String($0)) })),
                ("data_offsets", .array([.number(String(offset)), .number(String(end.partialValue))])),
            ]
            members.append((tensor.name, .object(entry)))
            offset = end.partialValue
        }
        return padded(JSON.serialize(.object(members)))
    }

    /// Re-encodes this header's JSON with its `__metadata__` replaced (inserted first when
    /// absent), keeping every tensor entry, key order and offsets unchanged; padded as above.
    ///
    /// Tensor entries are re-serialized compactly: whitespace may change, values (including
    /// unknown fields and number literals) do not. Metadata keys must be unique (checked).
    public func replacingMetadata(_ metadata: [(key: String, value: String)]) -> [UInt8] {
        var members: [(key: String, value: JSONValue)] = []
        if case .object(let existing) = json { members = existing }
        let value = Self.metadataJSON(metadata)
        if let i = members.firstIndex(where: { $0.key == "__metadata__" }) {
            members[i].value = value
        } else {
            members.insert(("__metadata__", value), at: 0)
        }
        return Self.padded(JSON.serialize(.object(members)))
    }

    /// The 8-byte little-endian prefix for a header of `length` bytes.
    public static func lengthPrefix(_ length: Int) -> [UInt8] {
        precondition(length >= 0, "header length must be non-negative")
        let value = UInt64(length)
        return (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    /// `header` followed by spaces up to a multiple of 8 bytes (8 + N is then one too).
    static func padded(_ header: [UInt8]) -> [UInt8] {
        var out = header
        let padding = (8 - out.count % 8) % 8
        out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padding))
        return out
    }

    /// `metadata` as a JSON object of strings; keys must be unique.
    private static func metadataJSON(_ metadata: [(key: String, value: String)]) -> JSONValue {
        var keys = Set<String>()
        for entry in metadata where !keys.insert(entry.key).inserted {
            fatalError("SafetensorsHeader: duplicate __metadata__ key '\(entry.key)'")
        }
        return .object(metadata.map { ($0.key, .string($0.value)) })
    }

    /// The byte count of a tensor to be encoded; traps on values no valid header could hold.
    /// The arithmetic is the validator's (`validateSize`): unsigned 64-bit element count first,
    /// then bits, so every shape a parsed header accepts — e.g. F64 [4294947293, 64943264, 0],
    /// whose running bit count would pass Int64.max before the 0 — encodes again.
    private static func byteCount(of tensor: (name: String, dtype: DType, shape: [Int])) -> Int {
        var count: UInt64 = 1
        for dimension in tensor.shape {
            guard dimension >= 0 else { fatalError("SafetensorsHeader.encode: negative dimension in '\(tensor.name)'") }
            let product = count.multipliedReportingOverflow(by: UInt64(dimension))
            guard !product.overflow else { fatalError("SafetensorsHeader.encode: '\(tensor.name)' is too large") }
            count = product.partialValue
        }
        let bits = count.multipliedReportingOverflow(by: UInt64(tensor.dtype.bitSize))
        guard !bits.overflow, bits.partialValue / 8 <= UInt64(Int.max) else {
            fatalError("SafetensorsHeader.encode: '\(tensor.name)' is too large")
        }
        guard bits.partialValue % 8 == 0 else {
            fatalError("SafetensorsHeader.encode: '\(tensor.name)' is \(bits.partialValue) bits, not a whole number of bytes")
        }
        return Int(bits.partialValue / 8)
    }
}
