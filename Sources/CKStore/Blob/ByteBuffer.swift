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

    /// Allocates `capacity` bytes (at least one): 64-byte aligned, and page aligned from
    /// `pageAlignedFrom` bytes on, so that a blob encoded at the start of a large buffer can be
    /// written with `O_DIRECT` without a copy.
    package init(capacity: Int) {
        storage = .allocate(byteCount: max(capacity, 1), alignment: capacity >= Self.pageAlignedFrom ? 4096 : 64)
    }

    /// The capacity from which buffers are page aligned (64 KiB).
    package static let pageAlignedFrom = 64 << 10

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
