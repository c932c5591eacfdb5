/// A safetensors file, or the JSON in its header, is not acceptable.
///
/// Every error carries a ``Kind`` that callers can switch on and a one-line ``message`` that
/// names the tensor and/or the byte offset at fault, for example
/// `tensor 'h.0.w': data_offsets [0, 12] hold 12 bytes but F32 shape [2, 2] needs 16`.
public struct SafetensorsError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The category of a ``SafetensorsError``.
    public enum Kind: Sendable, Equatable {
        /// The 8-byte length prefix declares more than ``SafetensorsHeader/maxHeaderLength`` bytes.
        case headerTooLarge
        /// The 8-byte length prefix declares a header that extends past the end of the file.
        case headerBeyondFile
        /// The header is not valid UTF-8.
        case invalidUTF8
        /// The header is not valid JSON (syntax, nesting depth, trailing bytes, bad escapes).
        case invalidJSON
        /// The header is valid JSON but not an object, or does not start with `{`.
        case notAnObject
        /// `__metadata__` is not an object mapping strings to strings.
        case invalidMetadata
        /// A tensor declares a `dtype` that is not one of the 22 known names.
        case unknownDType
        /// A tensor entry is malformed: not an object, a missing or mistyped field, a value that
        /// is not a non-negative 64-bit integer, or `data_offsets` with begin > end.
        case invalidTensorInfo
        /// A tensor's element count or bit count overflows a 64-bit integer.
        case shapeOverflow
        /// A tensor's bit count is not a multiple of 8 (packed sub-byte types).
        case misalignedBits
        /// A tensor's `data_offsets` span a different number of bytes than its dtype and shape need.
        case sizeMismatch
        /// The tensors' byte ranges leave a hole (including not starting at 0).
        case offsetsGap
        /// Two tensors' byte ranges overlap.
        case offsetsOverlap
        /// The header describes a file longer than the largest 64-bit file size (2^63 − 1 bytes).
        case fileTooLarge
        /// A JSON object repeats a key.
        case duplicateKey
        /// The file ends before the length its header declares.
        case truncated
        /// The file continues after the length its header declares.
        case trailingBytes
    }

    /// What went wrong, for programmatic handling.
    public let kind: Kind
    /// A one-line, human-readable explanation naming the tensor and/or byte offset at fault.
    public let message: String

    /// Creates an error of the given kind with a one-line message.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The one-line ``message``.
    public var description: String { message }

    /// The file ended at byte `offset`, before byte `expected` that its header promises.
    public static func truncated(at offset: Int, expected: Int) -> SafetensorsError {
        SafetensorsError(
            .truncated,
            "file truncated at byte \(offset): the header declares a file of \(expected) bytes"
        )
    }

    /// The file has bytes at `offset` and beyond, after the end its header declares.
    public static func trailingBytes(at offset: Int) -> SafetensorsError {
        SafetensorsError(
            .trailingBytes,
            "unexpected trailing bytes at byte \(offset), after the end of the data section"
        )
    }
}
