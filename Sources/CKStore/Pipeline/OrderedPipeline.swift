import Dispatch
import Foundation
import Synchronization

/// A fixed pool of worker threads that processes jobs in parallel and hands results back in
/// submission order, with at most `capacity` jobs in flight (which bounds memory).
///
/// One thread (the owner) calls `submit` and `drain`; results are delivered to the owner's
/// `deliver` callback in order, so the consumer side (building a manifest, writing an output
/// file) stays single-threaded and deterministic. Each worker builds its own `State`
/// (scratch buffers, its own database connection) on its own thread; state never crosses
/// threads.
///
/// The first error (from a job or from `deliver`) is sticky: later submits fail with it and
/// queued jobs are skipped.
final class OrderedPipeline<Input: Sendable, Output: Sendable, State>: @unchecked Sendable {
    // @unchecked: all mutable shared state is inside `Mutex`es; `State` values are created and
    // used on a single worker thread each; `process` and `makeState` are @Sendable closures.

    private struct Shared {
        var queue: [(Int, Input)] = []
        var queueHead = 0
        var results: [Int: Result<Output, any Error>] = [:]
        var cancelled = false
    }

    /// What the owner and the worker threads share; the threads hold it, not the pipeline, so
    /// that the pipeline's `deinit` can shut them down.
    private final class Core: Sendable {
        let shared = Mutex(Shared())
        let jobsAvailable = DispatchSemaphore(value: 0)
        let resultReady = DispatchSemaphore(value: 0)
        let finished = DispatchGroup()
    }

    private let core = Core()
    private var jobsAvailable: DispatchSemaphore { core.jobsAvailable }
    private var resultReady: DispatchSemaphore { core.resultReady }
    private var finished: DispatchGroup { core.finished }
    private let workerCount: Int
    private let capacity: Int
    private var nextSequence = 0
    private var nextToDeliver = 0
    private var stickyError: (any Error)?
    private var shutDown = false

    /// Starts `workers` threads. `makeState` runs once on each worker thread before its first
    /// job; `process` runs a job with that thread's state.
    init(
        workers: Int, capacity: Int,
        makeState: @escaping @Sendable () throws -> State,
        process: @escaping @Sendable (inout State, Input) throws -> Output
    ) {
        self.workerCount = max(1, workers)
        self.capacity = max(capacity, workerCount)
        for index in 0..<workerCount {
            finished.enter()
            let thread = Thread { [core] in
                defer { core.finished.leave() }
                var state: Result<State, any Error> = Result { try makeState() }
                while true {
                    core.jobsAvailable.wait()
                    let next: (Int, Input, Bool)? = core.shared.withLock { s in
                        guard s.queueHead < s.queue.count else { return nil }
                        let job = s.queue[s.queueHead]
                        s.queueHead += 1
                        if s.queueHead > 1024 && s.queueHead * 2 > s.queue.count {
                            s.queue.removeFirst(s.queueHead)
                            s.queueHead = 0
                        }
                        return (job.0, job.1, s.cancelled)
                    }
                    guard let (sequence, input, cancelled) = next else { return }  // shutdown signal
                    let result: Result<Output, any Error>
                    if cancelled {
                        result = .failure(CancellationError())
                    } else {
                        switch state {
                        case .failure(let e): result = .failure(e)
                        case .success(var s):
                            result = Result { try process(&s, input) }
                            state = .success(s)
                        }
                    }
                    core.shared.withLock { $0.results[sequence] = result }
                    core.resultReady.signal()
                }
            }
            thread.name = "ckstore-worker-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit {
        shutdown()
    }

    /// Queues a job. When `capacity` jobs are in flight, first delivers finished results (in
    /// order) to `deliver` until there is room.
    func submit(_ input: Input, deliver: (Output) throws -> Void) throws {
        if let stickyError { throw stickyError }
        while nextSequence - nextToDeliver >= capacity {
            try deliverNext(deliver)
        }
        let sequence = nextSequence
        nextSequence += 1
        core.shared.withLock { $0.queue.append((sequence, input)) }
        jobsAvailable.signal()
    }

    /// Waits for every submitted job and delivers the remaining results in order.
    func drain(_ deliver: (Output) throws -> Void) throws {
        if let stickyError { throw stickyError }
        while nextToDeliver < nextSequence {
            try deliverNext(deliver)
        }
    }

    private func deliverNext(_ deliver: (Output) throws -> Void) throws {
        let sequence = nextToDeliver
        var result: Result<Output, any Error>?
        while true {
            result = core.shared.withLock { $0.results.removeValue(forKey: sequence) }
            if result != nil { break }
            resultReady.wait()
        }
        nextToDeliver += 1
        do {
            try deliver(try result!.get())
        } catch {
            stickyError = error
            cancel()
            throw error
        }
    }

    /// Skips every queued job (they finish as cancelled).
    func cancel() {
        core.shared.withLock { $0.cancelled = true }
    }

    /// Stops the workers after the queued jobs and waits for them to exit.
    func shutdown() {
        guard !shutDown else { return }
        shutDown = true
        for _ in 0..<workerCount { jobsAvailable.signal() }
        // Workers exit when they find the queue empty after a signal; queued jobs are finished
        // (or skipped when cancelled) first because each job has its own signal.
        finished.wait()
    }
}
