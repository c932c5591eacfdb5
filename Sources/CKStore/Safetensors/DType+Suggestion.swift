extension DType {
    /// The canonical dtype a misspelled name most likely means, for error messages: a
    /// different case ("f32" → F32) or a PyTorch/NumPy name ("float32", "torch.bfloat16",
    /// "half" → F32, BF16, F16). Nil when there is no likely candidate.
    public static func suggestion(for name: String) -> DType? {
        if let exact = DType(rawValue: name.uppercased()) { return exact }
        var key = name.lowercased()
        for prefix in ["torch.", "np.", "numpy."] where key.hasPrefix(prefix) { key.removeFirst(prefix.count) }
        let aliases: [String: DType] = [
            "float16": .f16, "half": .f16, "bfloat16": .bf16, "float32": .f32, "float": .f32, "float64": .f64, "double": .f64,
            "int8": .i8, "uint8": .u8, "int16": .i16, "short": .i16, "uint16": .u16, "int32": .i32, "int": .i32, "uint32": .u32,
            "int64": .i64, "long": .i64, "uint64": .u64, "bool": .bool, "complex64": .c64, "float8_e4m3fn": .f8E4M3,
            "float8_e5m2": .f8E5M2, "float8_e4m3fnuz": .f8E4M3FNUZ, "float8_e5m2fnuz": .f8E5M2FNUZ, "float8_e8m0fnu": .f8E8M0,
        ]
        return aliases[key]
    }
}
