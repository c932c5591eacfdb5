/// The hybrid filter (filter id 3): byte-shuffle, then bit-shuffle only the upper half of the
/// byte planes.
///
/// Layout, for lane width `W` ≥ 2 and `N` input bytes: let `n = N / W`, `h = W / 2`. First the
/// byte-shuffle of the input (filter 1, lane width `W`: byte planes `0..<W` of `n` bytes, then
/// the `N mod W` tail). Then the contiguous region of byte planes `h..<W`, bytes `h·n ..< W·n`,
/// is replaced by its bit-shuffle with lane width 1 (filter 2 applied to that region alone,
/// including its own verbatim tail of fewer than 8 bytes). Byte planes `0..<h` and the tail
/// stay as the byte-shuffle left them. With `W = 1` the filter is the bit-shuffle itself.
///
/// Why: in float weights the low mantissa bytes are noise that no filter makes compressible,
/// while the sign, exponent and top mantissa bits are where LZ4 finds redundancy. Bit-shuffling
/// only the upper byte planes compresses float32 as well as a full bit-shuffle (the lower planes
/// are stored as literals either way) at about half its decoding cost.
extension Shuffle {
    /// The byte range of the bit-shuffled upper byte planes.
    @inline(__always)
    static func hybridRegion(count: Int, laneWidth: Int) -> Range<Int> {
        let n = count / laneWidth
        return (laneWidth / 2 * n)..<(laneWidth * n)
    }

    /// Applies the hybrid filter (see above) from `src` to `dst`.
    /// `scratch` (at least `count` bytes) avoids an allocation per call when given.
    static func hybridForward(
        _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, count: Int, laneWidth: Int,
        scratch given: UnsafeMutableRawBufferPointer? = nil
    ) {
        guard laneWidth > 1 else {
            apply(
                .bitShuffle, laneWidth: 1, source: UnsafeRawBufferPointer(start: src, count: count),
                destination: UnsafeMutableRawBufferPointer(start: dst, count: count))
            return
        }
        let region = hybridRegion(count: count, laneWidth: laneWidth)
        let owned = given == nil || given!.count < region.count
        let scratch = owned ? UnsafeMutableRawBufferPointer.allocate(byteCount: max(region.count, 1), alignment: 64) : given!
        defer { if owned { scratch.deallocate() } }
        apply(
            .byteShuffle, laneWidth: laneWidth, source: UnsafeRawBufferPointer(start: src, count: count),
            destination: UnsafeMutableRawBufferPointer(start: dst, count: count))
        guard !region.isEmpty else { return }
        scratch.baseAddress!.copyMemory(from: dst + region.lowerBound, byteCount: region.count)
        apply(
            .bitShuffle, laneWidth: 1, source: UnsafeRawBufferPointer(rebasing: scratch[0..<region.count]),
            destination: UnsafeMutableRawBufferPointer(start: dst + region.lowerBound, count: region.count))
    }

    /// Inverts the hybrid filter from `src` to `dst`.
    /// `scratch` (at least the bit-shuffled region's size, half of `count`) avoids an
    /// allocation per call when given.
    static func hybridInverse(
        _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, count: Int, laneWidth: Int,
        scratch given: UnsafeMutableRawBufferPointer? = nil
    ) {
        guard laneWidth > 1 else {
            invert(
                .bitShuffle, laneWidth: 1, source: UnsafeRawBufferPointer(start: src, count: count),
                destination: UnsafeMutableRawBufferPointer(start: dst, count: count))
            return
        }
        let region = hybridRegion(count: count, laneWidth: laneWidth)
        let n = count / laneWidth
        // Un-bit-shuffle the upper byte planes into `upper`, then undo the byte-shuffle into
        // `dst` reading the lower planes where they are in `src` (no copy of them) and the
        // upper ones from `upper`; the tail is copied as stored.
        let owned = given == nil || given!.count < region.count
        let upper = owned ? UnsafeMutableRawBufferPointer.allocate(byteCount: max(region.count, 1), alignment: 64) : given!
        defer { if owned { upper.deallocate() } }
        if !region.isEmpty {
            invert(
                .bitShuffle, laneWidth: 1, source: UnsafeRawBufferPointer(start: src + region.lowerBound, count: region.count),
                destination: UnsafeMutableRawBufferPointer(rebasing: upper[0..<region.count]))
        }
        unshuffleBytes(
            lower: src, upper: UnsafeRawPointer(upper.baseAddress!), dst, elements: n, width: laneWidth, planeStride: n)
        copyTail(src, dst, from: n * laneWidth, to: count)
    }
}
