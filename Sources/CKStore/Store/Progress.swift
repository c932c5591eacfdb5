#if canImport(Glibc)
    import Glibc
#endif

/// How far a transfer has come: the bytes `put` has read or `get` has written so far.
public struct TransferProgress: Sendable {
    /// Bytes done.
    public let bytesDone: Int
    /// The total, when known (the file size, or the length the header describes).
    public let bytesTotal: Int?
}

/// Counts bytes and calls a progress handler at most every 100 ms (and not before the first
/// 100 ms), so that reporting costs one clock read per chunk.
final class ProgressMeter {
    private let handler: (TransferProgress) -> Void
    /// The total, once known.
    var total: Int?
    /// Bytes counted so far.
    private(set) var done = 0
    private var nextReport: UInt64

    /// The interval between two calls of the handler, in nanoseconds.
    static let interval: UInt64 = 100_000_000

    init(total: Int?, handler: @escaping (TransferProgress) -> Void) {
        self.total = total
        self.handler = handler
        nextReport = ProgressMeter.now() + ProgressMeter.interval
    }

    /// Counts `bytes` more; calls the handler when the interval has passed.
    func add(_ bytes: Int) {
        done += bytes
        let now = ProgressMeter.now()
        guard now >= nextReport else { return }
        nextReport = now + ProgressMeter.interval
        handler(TransferProgress(bytesDone: done, bytesTotal: total))
    }

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

extension Store {
    /// A meter for one transfer reporting to `progressHandler`, or nil when there is none.
    func progressMeter(total: Int?) -> ProgressMeter? {
        progressHandler.map { ProgressMeter(total: total, handler: $0) }
    }
}
