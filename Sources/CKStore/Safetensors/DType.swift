/// The element types a safetensors file may declare.
///
/// This is exactly the set the reference implementation (safetensors 0.6+) accepts: 22 names,
/// no others. An unknown name in a header is bad input.
public enum DType: String, CaseIterable, Sendable, Hashable {
    case bool = "BOOL"
    case f4 = "F4"
    case f6E2M3 = "F6_E2M3"
    case f6E3M2 = "F6_E3M2"
    case u8 = "U8"
    case i8 = "I8"
    case f8E5M2 = "F8_E5M2"
    case f8E4M3 = "F8_E4M3"
    case f8E8M0 = "F8_E8M0"
    case f8E4M3FNUZ = "F8_E4M3FNUZ"
    case f8E5M2FNUZ = "F8_E5M2FNUZ"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bits per element. Sub-byte types (F4, F6_*) are packed; a tensor's bit count must be a
    /// multiple of 8.
    public var bitSize: Int {
        switch self {
        case .f4: return 4
        case .f6E2M3, .f6E3M2: return 6
        case .bool, .u8, .i8, .f8E5M2, .f8E4M3, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .c64, .f64, .i64, .u64: return 64
        }
    }

    /// The smallest whole number of bytes that holds a whole number of elements: chunk
    /// boundaries are multiples of this (3 bytes for the 6-bit types, 1 for F4).
    public var byteGranule: Int {
        switch self {
        case .f6E2M3, .f6E3M2: return 3
        case .f4: return 1
        default: return bitSize / 8
        }
    }

    /// True for the floating-point types whose values an average is defined on.
    public var isFloatingPoint: Bool {
        switch self {
        case .f16, .bf16, .f32, .f64, .f8E5M2, .f8E4M3, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ, .f4, .f6E2M3,
            .f6E3M2, .c64:
            return true
        default:
            return false
        }
    }

    /// The width, in bytes, of the lanes a shuffle filter groups: the scalar width of the
    /// element (4 for C64, whose elements are two float32 values), or 1 for packed types.
    public var shuffleLaneWidth: Int {
        switch self {
        case .c64: return 4
        case .f4, .f6E2M3, .f6E3M2: return 1
        default: return bitSize / 8
        }
    }
}
