import Synchronization

/// A free list of ``S3Client``s for one bucket, shared by the threads of a worker pool.
///
/// An `S3Client` performs one request at a time (it owns one libcurl handle and its connection),
/// so each request borrows a client, uses it on the calling thread, and gives it back; a thread
/// that finds the list empty makes a new client. The pool therefore holds at most as many
/// clients (and kept-alive connections) as requests ever ran at once, which the worker pool
/// bounds. A client whose request failed at the transport level is dropped rather than reused,
/// so a broken connection is not handed to the next request.
final class S3ClientPool: Sendable {
    /// A client as the pool stores it. `@unchecked Sendable`: a client is used by one thread at
    /// a time; the pool hands it over under its lock.
    private final class Entry: @unchecked Sendable {
        let client: S3Client
        init(_ client: S3Client) { self.client = client }
    }

    /// The service configuration of every client.
    let config: S3Config
    /// The bucket every client addresses.
    let bucket: String
    private let free = Mutex<[Entry]>([])
    /// Clients kept for reuse at most (more are closed when returned).
    let capacity: Int

    /// An empty pool for `bucket`.
    init(config: S3Config, bucket: String, capacity: Int = 32) {
        self.config = config
        self.bucket = bucket
        self.capacity = capacity
    }

    /// Runs `body` with a client of the pool (or a new one), then returns the client to the pool.
    /// A client whose request ended in ``S3Error/unavailable(_:)`` (a transport failure or a
    /// persistent 5xx) is closed instead.
    func withClient<T>(_ body: (S3Client) throws(S3Error) -> T) throws(S3Error) -> T {
        let pooled = free.withLock { $0.popLast() }
        let entry: Entry
        if let pooled { entry = pooled } else { entry = Entry(try S3Client(config: config, bucket: bucket)) }
        do {
            let result = try body(entry.client)
            giveBack(entry)
            return result
        } catch {
            if case .unavailable = error {} else { giveBack(entry) }
            throw error
        }
    }

    private func giveBack(_ entry: Entry) {
        free.withLock { list in
            if list.count < capacity { list.append(entry) }
        }
    }
}
