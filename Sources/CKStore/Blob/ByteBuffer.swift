/// A heap buffer of raw bytes with a fixed capacity and a current count, freed in `deinit`.
///
/// Buffers are reused across chunks so that the hot paths allocate nothing per chunk.
/// `@unchecked Sendable`: a buffer is handed from one thread to another through the ordered
/// pipeline (whose queue is lock-protected), and only one thread touches it at a time.
package final class ByteBuffer: @unchecked Sendable {
    /// The whole allocation.
    package let storage: UnsafeMutableRawBufferPointer
    /// How many leading bytes hold data.
    package var count: Int = 0

    /// Allocates `capacity` bytes (at least one), 64-byte aligned.
    package init(capacity: Int) {
        storage = .allocate(byteCount: max(capacity, 1), alignment: 64)
    }

    deinit {
        storage.deallocate()
    }

    /// The capacity in bytes.
    package var capacity: Int { storage.count }

    /// The bytes that hold data.
    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }

    /// A mutable view of the first `n` bytes.
    package func prefix(_ n: Int) -> UnsafeMutableRawBufferPointer {
        precondition(n <= storage.count)
        return UnsafeMutableRawBufferPointer(rebasing: storage[0..<n])
    }
}
