import CLZ4

/// The LZ4 block codec (liblz4's `LZ4_compress_fast` / `LZ4_decompress_safe`).
enum LZ4 {
    /// The largest compressed size `compress` may produce for `count` input bytes
    /// (`LZ4_compressBound`).
    static func bound(_ count: Int) -> Int {
        Int(LZ4_compressBound(Int32(count)))
    }

    /// Compresses `source` into `destination`; returns the compressed size, or nil when the
    /// output would not fit (the caller then stores the chunk uncompressed).
    /// `acceleration` trades ratio for speed (1 is LZ4's default, as `lz4 -1`).
    static func compress(
        _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, acceleration: Int32
    ) -> Int? {
        precondition(source.count <= Int(LZ4_MAX_INPUT_SIZE))
        let n = LZ4_compress_fast(
            source.baseAddress?.assumingMemoryBound(to: CChar.self),
            destination.baseAddress?.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(destination.count), acceleration)
        return n > 0 ? Int(n) : nil
    }

    /// Decompresses `source` into `destination`; returns the decoded size, or nil when the input
    /// is malformed or would overflow `destination` (`LZ4_decompress_safe` never writes past it).
    static func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) -> Int? {
        let n = LZ4_decompress_safe(
            source.baseAddress?.assumingMemoryBound(to: CChar.self),
            destination.baseAddress?.assumingMemoryBound(to: CChar.self),
            Int32(source.count), Int32(destination.count))
        return n >= 0 ? Int(n) : nil
    }
}
