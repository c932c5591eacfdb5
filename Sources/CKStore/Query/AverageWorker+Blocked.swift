// The blocked averaging path: decode a group of inputs first, then accumulate lane block by
// lane block across the whole group.
//
// The plain path (`AverageWorker.compute`) adds one whole decoded input chunk into a whole
// Float64 accumulator at a time: for a 4 MiB float32 chunk that streams an 8 MiB accumulator in
// and out of memory once per input, then once more to divide and encode. Here the inputs of a
// group (up to `inputGroup` of them) are decoded into their own buffers, and the accumulator is
// worked on in blocks of `blockLanes` lanes (64 KiB of Float64, which stays in L2): for each
// block, the first input starts it, the others are added in ascending step order, and, when
// the group holds the last input, the block is divided and encoded into the output at once.
//
// Every element sees exactly the operations of the plain path in the same order (start with
// input 0, add inputs 1… in order, one division, one rounding): only the order in which
// *different* elements are visited changes, and elements are independent, so the output is
// bit-identical (AverageBlockedTests holds the two paths to each other).

extension AverageWorker {
    /// The most inputs decoded at once per worker (each a chunk-sized buffer): k ≤ 6, the
    /// default LAWA window, is one group; larger windows take several groups, each one pass
    /// over the accumulator.
    static let inputGroup = 6

    /// Lanes per accumulation block (64 KiB of Float64).
    static let blockLanes = 8192

    /// The decode buffer for position `i` of a group (`scratch` for 0), allocated on first use.
    private func groupBuffer(_ i: Int) -> ByteBuffer {
        if i == 0 { return scratch }
        while groupBuffers.count < i { groupBuffers.append(ByteBuffer(capacity: bufferCapacity)) }
        return groupBuffers[i - 1]
    }

    /// Computes one averaged segment whose every input is a single piece of one chunk (the
    /// normal case: the inputs are chunked like the output), bit-identical to the plain path.
    func computeBlocked(_ job: AverageJob, combination: Combination) throws(CKStoreError) {
        let k = job.inputs.count
        do {
            let lanes = try ChunkAccumulator.laneCount(byteCount: job.length, dtype: job.dtype)
            let width = FloatCodec.laneWidth(job.dtype)
            guard lanes * width == job.length else {
                throw NumericsError.sizeMismatch(expected: lanes * width, actual: job.length)
            }
            // One group: the accumulator is one block, reused. Several: a whole one, which each
            // group adds into (one pass per group instead of one per input).
            let single = k <= Self.inputGroup
            let acc = accumulatorView(lanes: single ? min(lanes, Self.blockLanes) : lanes)
            let output = job.output.prefix(job.length)
            var first = 0
            while first < k {
                let last = min(k, first + Self.inputGroup)
                var bases: [UnsafeRawPointer] = []
                bases.reserveCapacity(last - first)
                for i in first..<last {
                    let piece = job.inputs[i][0]
                    let buffer = groupBuffer(i - first)
                    try reader.fetch(piece.chunk, tensor: job.tensor, label: job.inputLabels[i], into: buffer)
                    // The piece must lie inside the decoded chunk and cover the whole segment.
                    guard piece.length == job.length, piece.offset >= 0, piece.offset <= buffer.count - piece.length else {
                        throw CKStoreError(
                            .integrity,
                            "\(job.inputLabels[i]): tensor '\(job.tensor)': chunk \(piece.chunk.hash.hex) holds \(buffer.count) bytes, "
                                + "not the \(piece.length) bytes at offset \(piece.offset) the manifest names")
                    }
                    bases.append(UnsafeRawPointer(buffer.storage.baseAddress! + piece.offset))
                }
                var lane = 0
                while lane < lanes {
                    let m = min(Self.blockLanes, lanes - lane)
                    let slice =
                        single
                        ? UnsafeMutableBufferPointer(rebasing: acc[0..<m]) : UnsafeMutableBufferPointer(rebasing: acc[lane..<(lane + m)])
                    for i in first..<last {
                        let bytes = UnsafeRawBufferPointer(start: bases[i - first] + lane * width, count: m * width)
                        try accumulate(i, bytes, dtype: job.dtype, into: slice, combination: combination)
                    }
                    if last == k {
                        if case .uniform = combination { ChunkAccumulator.finishMean(slice, divisor: Double(k)) }
                        try ChunkAccumulator.encode(
                            UnsafeBufferPointer(slice), dtype: job.dtype,
                            into: UnsafeMutableRawBufferPointer(rebasing: output[(lane * width)..<((lane + m) * width)]))
                    }
                    lane += m
                }
                first = last
            }
        } catch let e as CKStoreError {
            throw e
        } catch {
            throw CKStoreError(.badInput, "tensor '\(job.tensor)': cannot average \(job.dtype.rawValue) values: \(error)", cause: error)
        }
    }

    /// Input `i`'s step of the combination on one block: start with input 0, then add (or take
    /// an EMA step with) each later one, exactly as the plain path does on whole chunks.
    @inline(__always)
    private func accumulate(
        _ i: Int, _ bytes: UnsafeRawBufferPointer, dtype: DType, into slice: UnsafeMutableBufferPointer<Double>,
        combination: Combination
    ) throws {
        switch combination {
        case .uniform:
            if i == 0 {
                try ChunkAccumulator.start(from: bytes, dtype: dtype, into: slice)
            } else {
                try ChunkAccumulator.add(bytes, dtype: dtype, into: slice)
            }
        case .weighted(let weights):
            if i == 0 {
                try ChunkAccumulator.start(from: bytes, dtype: dtype, into: slice, weight: weights[i])
            } else {
                try ChunkAccumulator.add(bytes, dtype: dtype, into: slice, weight: weights[i])
            }
        case .ema(let decay):
            if i == 0 {
                try ChunkAccumulator.start(from: bytes, dtype: dtype, into: slice)
            } else {
                try ChunkAccumulator.emaStep(bytes, dtype: dtype, into: slice, decay: decay)
            }
        }
    }
}
