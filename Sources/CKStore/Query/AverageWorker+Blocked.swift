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

    /// The decoded input for position `i` of a group, allocated on first use.
    private func groupInput(_ i: Int) -> DecodedInput {
        while groupInputs.count <= i { groupInputs.append(DecodedInput(capacity: bufferCapacity)) }
        return groupInputs[i]
    }

    /// Reads, checks and decodes `chunk` into `input`: as byte planes when the blob allows it
    /// and the SHA-256 re-hash is off (it needs the contiguous bytes), else contiguously.
    private func load(_ chunk: ChunkRef, job: AverageJob, input i: Int, into input: DecodedInput) throws(CKStoreError) {
        if reader.verify {
            try reader.fetch(chunk, tensor: job.tensor, label: job.inputLabels[i], into: input.payload)
            input.setContiguous(input.payload.count)
            return
        }
        let codec = reader.codec
        let width = job.dtype == .c64 ? 0 : FloatCodec.laneWidth(job.dtype)
        try reader.fetch(chunk, tensor: job.tensor, label: job.inputLabels[i]) { file throws -> Int in
            try codec.decodeForAveraging(file, into: input, name: chunk.hash, elementWidth: width)
        }
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
                var loaded: [(DecodedInput, Int)] = []
                loaded.reserveCapacity(last - first)
                for i in first..<last {
                    let piece = job.inputs[i][0]
                    let input = groupInput(i - first)
                    try load(piece.chunk, job: job, input: i, into: input)
                    // The piece must lie inside the decoded chunk and cover the whole segment.
                    guard piece.offset >= 0, piece.offset <= input.count - piece.length, piece.offset % width == 0 else {
                        throw CKStoreError(
                            .integrity,
                            "\(job.inputLabels[i]): tensor '\(job.tensor)': chunk \(piece.chunk.hash.hex) holds \(input.count) bytes, "
                                + "not the \(piece.length) bytes at offset \(piece.offset) the manifest names")
                    }
                    loaded.append((input, piece.offset))
                }
                var lane = 0
                while lane < lanes {
                    let m = min(Self.blockLanes, lanes - lane)
                    let slice =
                        single
                        ? UnsafeMutableBufferPointer(rebasing: acc[0..<m]) : UnsafeMutableBufferPointer(rebasing: acc[lane..<(lane + m)])
                    for i in first..<last {
                        let bytes = block(of: loaded[i - first].0, at: loaded[i - first].1 + lane * width, byteCount: m * width)
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

    /// Raw bytes `offset ..< offset + byteCount` of a decoded input (inside its raw length, and
    /// whole elements when it holds byte planes): a view of the contiguous bytes, or that range
    /// byte-unshuffled from the planes into `blockScratch` (valid until the next call).
    @inline(__always)
    private func block(of input: DecodedInput, at offset: Int, byteCount: Int) -> UnsafeRawBufferPointer {
        guard let (n, w) = input.planes else {
            return UnsafeRawBufferPointer(rebasing: input.payload.storage[offset..<(offset + byteCount)])
        }
        let first = offset / w
        let elements = byteCount / w
        precondition(first + elements <= n && byteCount <= blockScratch.capacity, "block outside the decoded chunk")
        let lower = UnsafeRawPointer(input.payload.storage.baseAddress!) + first
        let upper = UnsafeRawPointer(input.upper.storage.baseAddress!) + first
        Shuffle.unshuffleBytes(
            lower: lower, upper: upper, blockScratch.storage.baseAddress!, elements: elements, width: w, planeStride: n)
        return UnsafeRawBufferPointer(start: blockScratch.storage.baseAddress!, count: byteCount)
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
