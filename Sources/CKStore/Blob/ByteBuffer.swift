/// A heap buffer of raw bytes with a fixed capacity and a current count, freed in `deinit`.
///
/// Buffers are reused across chunks so that the hot paths allocate nothing per chunk.
/// `@unchecked Sendable`: a buffer is handed from one thread to another through the ordered
/// pipeline (whose queue is lock-protected), and only one thread touches it at a time.
final class ByteBuffer: @unchecked Sendable {
    /// The whole allocation.
    let storage: UnsafeMutableRawBufferPointer
    /// How many leading bytes hold data.
    var count: Int = 0

    /// Allocates `capacity` bytes (at least one), 64-byte aligned.
    init(capacity: Int) {
        storage = .allocate(byteCount: max(capacity, 1), alignment: 64)
    }

    deinit {
        storage.deallocate()
    }

    /// The capacity in bytes.
    var capacity: Int { storage.count }

    /// The bytes that hold data.
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }

    /// A mutable view of the first `n` bytes.
    func prefix(_ n: Int) -> UnsafeMutableRawBufferPointer {
        precondition(n <= storage.count)
        return UnsafeMutableRawBufferPointer(rebasing: storage[0..<n])
    }
}
