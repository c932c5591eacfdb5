/// Which pending snapshots a removal takes with it.
enum PendingRemoval {
    /// Those at the RUN@STEP selected for removal (`rm`).
    case ofSelected
    /// Those whose first part arrived before a time (unix milliseconds), of one run or all
    /// (`gc`: before now − `pending_grace`; `gc --pending`: all).
    case createdBefore(Int64, run: String?)

    /// Sets the collection options that say so.
    func apply(to options: inout CollectionOptions) {
        switch self {
        case .ofSelected: options.dropsPendingOfSelected = true
        case .createdBefore(let cutoff, let run):
            options.pendingCreatedBefore = cutoff
            options.pendingRun = run
        }
    }
}

extension Store {
    /// `rm RUN@STEP` of a step that is pending and not complete: its key; nil otherwise (the ref
    /// is then resolved as a snapshot).
    func pendingTarget(_ ref: SnapshotRef) throws(CKStoreError) -> (String, Int)? {
        guard case .step(let run, let step) = ref else { return nil }
        return try wrapping("rm \(run)@\(step)") { () throws -> (String, Int)? in
            guard try metadata.snapshot(run: run, step: step) == nil, try metadata.pendingSnapshot(run: run, step: step) != nil else {
                return nil
            }
            return (run, step)
        }
    }
}

/// Parsing of the `pending_grace` configuration key.
enum PendingGrace {
    /// Seconds from a number (seconds) or a string with a unit: "90s", "30m", "24h", "2d".
    static func seconds(_ value: JSONValue, fail: (String) -> CKStoreError) throws(CKStoreError) -> Int {
        let why = "must be a whole number of seconds, or a string such as \"90s\", \"30m\", \"24h\", \"2d\" (at most 3650 days)"
        let limit = 3650 * 86_400
        switch value {
        case .number(let text):
            guard let n = Double(text), n == n.rounded(), n >= 0, n <= Double(limit) else { throw fail(why) }
            return Int(n)
        case .string(let text):
            let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
            guard let unit = text.last, let factor = units[unit], let n = Int(text.dropLast()), n >= 0, n <= limit / factor else {
                throw fail(why)
            }
            return n * factor
        default: throw fail(why)
        }
    }
}
