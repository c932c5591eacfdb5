// ChunkAccumulator: Float64 accumulation kernels over raw little-endian chunks of one tensor.
//
// The operation order is the numerics contract (see FloatCodec.swift for the rounding rules):
//   uniform mean   start(x_0); add(x_1); ...; add(x_{K-1}); finishMean(divisor: Double(K))
//                  i.e. acc = x_0; acc += x_i; acc /= K (one division at the end)
//   weighted mean  start(x_0, weight: w_0); add(x_i, weight: w_i)
//                  i.e. acc = w_0*x_0; acc += w_i*x_i (product rounded to Float64, then added;
//                  no FMA); the w_i are already normalised (see `normalizedWeights`)
//   EMA            start(x_0); emaStep(x_i, decay: D)  i.e. e = D*e + (1.0 - D)*x (no FMA)
// then encode(acc, dtype) rounds once to the tensor dtype (F64: the accumulator bits as they
// are). Inputs are taken in ascending step order; every element is independent, so chunks may
// be processed on several threads at once (the kernels hold no state).
//
// One accumulator lane per element; C64 has two lanes per element (real, imaginary), which are
// averaged independently as F32 values (the mean of complex numbers with real weights).
// Integer/BOOL tensors are not averaged (the caller copies them) and packed F4/F6 are rejected:
// those dtypes throw `NumericsError.unsupportedDType`.
//
// Speed: every path is a straight-line loop with unaligned loads and selects (no per-element
// branches), which the compiler vectorises; NaN/Inf/subnormals go through the same branch-free
// code, which never makes a subnormal Float64/Float32 operand (slow on x86) out of normal data.
// F16 is decoded in two passes over 4096-element blocks (f16 -> f32 four lanes wide, then the
// F32 kernel); the F8 types decode through a 256-entry table. Encoders are the branch-free
// `FloatCodec.encodeF32/F16/BF16/F8`; `FloatCodec.encodeBits` is the exact general oracle the
// tests hold them to. Chunks of 8K-32K elements keep the accumulator in L2 (the six-snapshot
// F32 mean ran fastest with 8K-16K). Tools/bench/numerics/main.swift measures the kernels.
// All of it assumes the default floating-point environment (round to nearest even, no
// flush-to-zero / denormals-are-zero), which Swift programs run in.

/// Float64 accumulation kernels over one chunk of one tensor (a namespace; no state).
public enum ChunkAccumulator {
    /// True if chunks of `dtype` can be averaged (F64, F32, F16, BF16, the F8 types, C64).
    public static func supports(_ dtype: DType) -> Bool { FloatCodec.supports(dtype) }

    /// The number of Float64 accumulator lanes `byteCount` bytes of `dtype` need (the element
    /// count, twice that for C64). Throws for dtypes that are not averaged and for byte counts
    /// that are not whole elements.
    public static func laneCount(byteCount: Int, dtype: DType) throws -> Int {
        guard FloatCodec.supports(dtype) else { throw NumericsError.unsupportedDType(dtype) }
        let w = FloatCodec.laneWidth(dtype)
        let granule = dtype.bitSize / 8
        guard byteCount >= 0, byteCount % granule == 0 else {
            throw NumericsError.sizeMismatch(expected: byteCount / granule * granule, actual: byteCount)
        }
        return byteCount / w
    }

    /// Normalises weights as the contract requires: s = w_0; s += w_1; ...; w_i / s (a plain
    /// left-to-right Float64 sum; the reference does the same).
    public static func normalizedWeights(_ weights: [Double]) -> [Double] {
        guard var s = weights.first else { return [] }
        for w in weights.dropFirst() { s = s + w }
        return weights.map { $0 / s }
    }

    /// acc = x (or acc = w * x): starts a mean, weighted mean or EMA with the first input.
    public static func start(
        from bytes: UnsafeRawBufferPointer, dtype: DType, into acc: UnsafeMutableBufferPointer<Double>,
        weight: Double? = nil
    ) throws {
        let n = try checkedLanes(bytes, dtype, acc.count)
        guard n > 0 else { return }
        if let w = weight {
            dispatch(dtype, bytes.baseAddress!, acc.baseAddress!, n, ScaledAssignOp(w: w))
        } else {
            dispatch(dtype, bytes.baseAddress!, acc.baseAddress!, n, AssignOp())
        }
    }

    /// acc += x (or acc += w * x, the product rounded first).
    public static func add(
        _ bytes: UnsafeRawBufferPointer, dtype: DType, into acc: UnsafeMutableBufferPointer<Double>,
        weight: Double? = nil
    ) throws {
        let n = try checkedLanes(bytes, dtype, acc.count)
        guard n > 0 else { return }
        if let w = weight {
            dispatch(dtype, bytes.baseAddress!, acc.baseAddress!, n, ScaledAddOp(w: w))
        } else {
            dispatch(dtype, bytes.baseAddress!, acc.baseAddress!, n, AddOp())
        }
    }

    /// acc = D * acc + (1.0 - D) * x, evaluated exactly so (two products, then the sum).
    public static func emaStep(
        _ bytes: UnsafeRawBufferPointer, dtype: DType, into acc: UnsafeMutableBufferPointer<Double>,
        decay: Double
    ) throws {
        let n = try checkedLanes(bytes, dtype, acc.count)
        guard n > 0 else { return }
        dispatch(dtype, bytes.baseAddress!, acc.baseAddress!, n, EMAOp(d: decay, c: 1.0 - decay))
    }

    /// acc /= divisor (the single division of a uniform mean; pass Double(K)).
    public static func finishMean(_ acc: UnsafeMutableBufferPointer<Double>, divisor: Double) {
        guard let p = acc.baseAddress else { return }
        for i in 0..<acc.count { p[i] = p[i] / divisor }
    }

    /// Rounds the accumulator once to `dtype` and writes little-endian bytes to `destination`,
    /// which must hold exactly the chunk (`acc.count` lanes of the dtype).
    public static func encode(
        _ acc: UnsafeBufferPointer<Double>, dtype: DType, into destination: UnsafeMutableRawBufferPointer
    ) throws {
        guard FloatCodec.supports(dtype) else { throw NumericsError.unsupportedDType(dtype) }
        let w = FloatCodec.laneWidth(dtype)
        let n = acc.count
        guard destination.count == n * w else {
            throw NumericsError.sizeMismatch(expected: n * w, actual: destination.count)
        }
        guard n > 0, let src = acc.baseAddress, let dst = destination.baseAddress else { return }
        switch dtype {
        case .f64:
            for i in 0..<n {
                dst.storeBytes(of: src[i].bitPattern.littleEndian, toByteOffset: i &* 8, as: UInt64.self)
            }
        case .f32, .c64:
            for i in 0..<n {
                dst.storeBytes(
                    of: FloatCodec.encodeF32(src[i]).littleEndian, toByteOffset: i &* 4, as: UInt32.self)
            }
        case .f16:
            for i in 0..<n {
                dst.storeBytes(
                    of: FloatCodec.encodeF16(src[i]).littleEndian, toByteOffset: i &* 2, as: UInt16.self)
            }
        case .bf16:
            for i in 0..<n {
                dst.storeBytes(
                    of: FloatCodec.encodeBF16(src[i]).littleEndian, toByteOffset: i &* 2, as: UInt16.self)
            }
        case .f8E5M2:
            encodeBytes(src, dst, n) { FloatCodec.encodeE5M2($0) }
        case .f8E4M3:
            encodeBytes(src, dst, n) { FloatCodec.encodeE4M3FN($0) }
        case .f8E4M3FNUZ:
            encodeBytes(src, dst, n) { FloatCodec.encodeE4M3FNUZ($0) }
        case .f8E5M2FNUZ:
            encodeBytes(src, dst, n) { FloatCodec.encodeE5M2FNUZ($0) }
        case .f8E8M0:
            encodeBytes(src, dst, n) { FloatCodec.encodeE8M0($0) }
        default:
            throw NumericsError.unsupportedDType(dtype)
        }
    }

    @inline(__always)
    private static func encodeBytes(
        _ src: UnsafePointer<Double>, _ dst: UnsafeMutableRawPointer, _ n: Int, _ f: (Double) -> UInt8
    ) {
        let out = dst.assumingMemoryBound(to: UInt8.self)
        for i in 0..<n { out[i] = f(src[i]) }
    }

    // MARK: - Internals

    private static func checkedLanes(_ bytes: UnsafeRawBufferPointer, _ dtype: DType, _ accCount: Int)
        throws -> Int
    {
        let n = try laneCount(byteCount: bytes.count, dtype: dtype)
        guard n == accCount else { throw NumericsError.sizeMismatch(expected: n, actual: accCount) }
        return n
    }

    @inline(__always)
    private static func dispatch<O: LaneOp>(
        _ dtype: DType, _ src: UnsafeRawPointer, _ acc: UnsafeMutablePointer<Double>, _ n: Int, _ op: O
    ) {
        switch dtype {
        case .f64: run(F64Lanes(), op, src, acc, n)
        case .f32, .c64: run(F32Lanes(), op, src, acc, n)
        case .f16:
            // two passes over L1-sized blocks: f16 -> f32 four lanes wide, then the F32 kernel
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: f16Block) { tmp in
                let t = tmp.baseAddress!
                var i = 0
                while i < n {
                    let m = min(f16Block, n &- i)
                    let s = src + i &* 2
                    for j in 0..<m {
                        t[j] = FloatCodec.f16ToF32Bits(
                            UInt16(littleEndian: s.loadUnaligned(fromByteOffset: j &* 2, as: UInt16.self)))
                    }
                    run(F32Lanes(), op, UnsafeRawPointer(t), acc + i, m)
                    i &+= m
                }
            }
        case .bf16: run(BF16Lanes(), op, src, acc, n)
        default:
            F8Tables.table(dtype).withUnsafeBufferPointer { t in
                run(TableLanes(table: t.baseAddress!), op, src, acc, n)
            }
        }
    }

    /// Elements per block of the two-pass F16 decode (16 KiB of f32 on the stack).
    private static let f16Block = 4096

    @inline(__always)
    private static func run<D: LaneDecoder, O: LaneOp>(
        _ decoder: D, _ op: O, _ src: UnsafeRawPointer, _ acc: UnsafeMutablePointer<Double>, _ n: Int
    ) {
        for i in 0..<n {
            op.apply(acc, i, decoder.decode(src, i))
        }
    }
}

// MARK: - Lane decoders (little-endian element i of a raw chunk -> Float64)

private protocol LaneDecoder {
    func decode(_ p: UnsafeRawPointer, _ i: Int) -> Double
}

private struct F64Lanes: LaneDecoder {
    @inline(__always) func decode(_ p: UnsafeRawPointer, _ i: Int) -> Double {
        Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self)))
    }
}

private struct F32Lanes: LaneDecoder {
    @inline(__always) func decode(_ p: UnsafeRawPointer, _ i: Int) -> Double {
        FloatCodec.decodeF32(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)))
    }
}

private struct BF16Lanes: LaneDecoder {
    @inline(__always) func decode(_ p: UnsafeRawPointer, _ i: Int) -> Double {
        FloatCodec.decodeBF16(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
    }
}

private struct TableLanes: LaneDecoder {
    let table: UnsafePointer<Double>
    @inline(__always) func decode(_ p: UnsafeRawPointer, _ i: Int) -> Double {
        table[Int(p.load(fromByteOffset: i, as: UInt8.self))]
    }
}

// MARK: - Lane operations

private protocol LaneOp {
    func apply(_ acc: UnsafeMutablePointer<Double>, _ i: Int, _ x: Double)
}

private struct AssignOp: LaneOp {
    @inline(__always) func apply(_ acc: UnsafeMutablePointer<Double>, _ i: Int, _ x: Double) {
        acc[i] = x
    }
}

private struct ScaledAssignOp: LaneOp {
    let w: Double
    @inline(__always) func apply(_ acc: UnsafeMutablePointer<Double>, _ i: Int, _ x: Double) {
        acc[i] = w * x
    }
}

private struct AddOp: LaneOp {
    @inline(__always) func apply(_ acc: UnsafeMutablePointer<Double>, _ i: Int, _ x: Double) {
        acc[i] = acc[i] + x
    }
}

private struct ScaledAddOp: LaneOp {
    let w: Double
    @inline(__always) func apply(_ acc: UnsafeMutablePointer<Double>, _ i: Int, _ x: Double) {
        let product = w * x
        acc[i] = acc[i] + product
    }
}

private struct EMAOp: LaneOp {
    let d: Double
    let c: Double  // 1.0 - d
    @inline(__always) func apply(_ acc: UnsafeMutablePointer<Double>, _ i: Int, _ x: Double) {
        let kept = d * acc[i]
        let added = c * x
        acc[i] = kept + added
    }
}
