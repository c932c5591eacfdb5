/// Which snapshots `gc` keeps. When no policy is set, gc removes no snapshot (only garbage).
public struct RetentionPolicy: Sendable, Equatable {
    /// Keep the last N steps of each run.
    public var keepLast: Int?
    /// Keep every step that is a multiple of N.
    public var keepEvery: Int?
    /// Keep the LAWA k=K,stride=NU windows of each run that `lawaWindows` finds: the newest
    /// step's window (what of it is stored) and the newest complete window. A run without any
    /// complete window keeps every snapshot (see `lawaWindows`).
    public var keepLAWA: (k: Int, stride: Int)?
    /// Keep the derived snapshots (by default gc drops them: they can be recomputed).
    public var keepDerived = false

    /// Creates a policy.
    public init(keepLast: Int? = nil, keepEvery: Int? = nil, keepLAWA: (k: Int, stride: Int)? = nil, keepDerived: Bool = false) {
        self.keepLast = keepLast
        self.keepEvery = keepEvery
        self.keepLAWA = keepLAWA
        self.keepDerived = keepDerived
    }

    /// True when some policy selects snapshots to keep (and so the others to remove).
    public var selectsSnapshots: Bool { keepLast != nil || keepEvery != nil || keepLAWA != nil }

    public static func == (a: RetentionPolicy, b: RetentionPolicy) -> Bool {
        a.keepLast == b.keepLast && a.keepEvery == b.keepEvery && a.keepLAWA?.k == b.keepLAWA?.k
            && a.keepLAWA?.stride == b.keepLAWA?.stride && a.keepDerived == b.keepDerived
    }

    /// The steps of one run (ascending, distinct, non-negative) that the policy keeps: the
    /// union of what each names. `--keep-lawa` keeps every step of a run that has no complete
    /// window (it cannot tell which snapshots LAWA needs; gc reports that run).
    public func stepsToKeep(_ steps: [Int]) -> Set<Int> {
        var keep = Set<Int>()
        if let n = keepLast { keep.formUnion(steps.suffix(n)) }
        if let n = keepEvery, n > 0 { keep.formUnion(steps.filter { $0 % n == 0 }) }
        if let windows = lawaWindows(steps) {
            if windows.complete == nil {
                keep.formUnion(steps)
            } else {
                keep.formUnion(windows.latestWindow)
                keep.formUnion(windows.completeWindow)
            }
        }
        return keep
    }

    /// For `--keep-lawa`: the window of the newest step (its stored members) and the newest
    /// window whose K inputs are all stored. Nil without `--keep-lawa` or without steps.
    ///
    /// Bounded work for any K and NU (no K-sized allocation, no overflow): membership of the
    /// newest step's window is tested per stored step, and a complete window needs K stored
    /// steps, so it is searched only when K ≤ the number of steps.
    public func lawaWindows(_ steps: [Int]) -> LAWAWindows? {
        guard let (k, stride) = keepLAWA, k >= 1, stride >= 1, let latest = steps.last else { return nil }
        let latestWindow = steps.filter { s in
            let distance = latest - s  // 0 ≤ distance: steps are ascending and non-negative
            return distance % stride == 0 && distance / stride < k
        }
        var result = LAWAWindows(latest: latest, latestWindow: latestWindow, complete: nil, completeWindow: [])
        guard k <= steps.count else { return result }
        let stored = Set(steps)
        search: for end in steps.reversed() {
            var window: [Int] = []
            for j in 0..<k {
                let (offset, overflow) = j.multipliedReportingOverflow(by: stride)
                guard !overflow, offset <= end, stored.contains(end - offset) else { continue search }
                window.append(end - offset)
            }
            result.complete = end
            result.completeWindow = window.reversed()
            break
        }
        return result
    }
}

/// The LAWA windows `--keep-lawa` keeps in one run.
public struct LAWAWindows: Sendable, Equatable {
    /// The run's newest step.
    public var latest: Int
    /// The stored steps of the newest step's window (ascending).
    public var latestWindow: [Int]
    /// The newest step whose whole window is stored, or nil when no window is complete.
    public var complete: Int?
    /// That window's steps (ascending); empty when `complete` is nil.
    public var completeWindow: [Int]
}
