import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// `ckstore watch`: follow a run and evaluate each LAWA average as soon as its inputs exist.
enum WatchCommand {
    static let command = Command(
        summary: "follow a run and run an evaluator on each LAWA average as it becomes complete",
        help: """
            usage: ckstore watch --run RUN --lawa k=K,stride=NU --exec CMD
                                 [--from S] [--until S] [--poll SECONDS] [--idle-exit SECONDS]
                                 [--raw] [--fail-fast]

            Follows RUN while it is being written. Each time the LAWA window ending at a stored
            step s (s, s−NU, …, s−(K−1)·NU all stored) becomes complete, the average is
            materialized (and cached as a derived snapshot) into a temporary file and CMD runs
            through /bin/sh -c with these placeholders replaced (shell-quoted):
              {path}     the safetensors file     {step}     s
              {run}      RUN                      {variant}  e.g. lawa-k6-s1000 (or raw)
            With --raw, CMD also runs on every raw snapshot (variant 'raw'), so both curves can
            be compared. Steps are processed in ascending order, each once.

              --from S           ignore steps below S
              --until S          exit once every step up to S has been processed and a step ≥ S exists
              --poll SECONDS     how often to look for new snapshots (default 2)
              --idle-exit SEC    exit after SEC seconds without a new snapshot
              --fail-fast        stop at the first failing CMD (exit 1); otherwise failures are
                                 reported with their exit code and the watch goes on
            SIGINT and SIGTERM stop the watch cleanly (a running CMD is sent SIGTERM; temporary
            files are removed).
            """,
        run: { (args, globals) throws(CKStoreError) in try run(&args, globals) })

    /// The store, or nil while it does not exist (yet); any other failure to open it (an
    /// inconsistent store, a schema newer than this binary) is an error at once, never polled.
    private static func openIfPresent(_ path: String) throws(CKStoreError) -> Store? {
        do {
            return try Store(path: path)
        } catch  where error.code == .notFound {
            return nil
        }
    }

    private static func run(_ args: inout Arguments, _ globals: GlobalOptions) throws(CKStoreError) -> Int32 {
        guard let run = try args.value("--run") else { throw args.usage("--run is required") }
        guard let lawaText = try args.value("--lawa") else { throw args.usage("--lawa k=K,stride=NU is required") }
        guard let exec = try args.value("--exec") else { throw args.usage("--exec CMD is required") }
        let from = try args.integer("--from") ?? 0
        let until = try args.integer("--until")
        let pollText = try args.value("--poll")
        let idleText = try args.value("--idle-exit")
        let raw = args.flag("--raw")
        let failFast = args.flag("--fail-fast")
        _ = try args.positionals(max: 0, names: "")
        guard let poll = Double(pollText ?? "2"), poll > 0 else { throw args.usage("--poll must be a positive number") }
        let idle = try idleText.map { (t) throws(CKStoreError) -> Double in
            guard let v = Double(t), v > 0 else { throw args.usage("--idle-exit must be a positive number") }
            return v
        }
        let params: (k: Int, stride: Int)
        do {
            guard case .lawa(let k, let stride, _) = try AverageQuery.parseLAWA(lawaText, at: Int.max / 2) else { fatalError() }
            params = (k, stride)
        } catch {
            throw args.usage(error.message)
        }
        let variant = AverageQuery.lawa(k: params.k, stride: params.stride, at: 0).variantName
        try Store.validateRunName(run)

        installStopHandlers()
        let tempDir = try makeTemporaryDirectory()
        defer { rmdir(tempDir) }
        var doneLAWA = Set<Int>()
        var doneRaw = Set<Int>()
        var lastNew = monotonicSeconds()
        var failures = 0
        var seenSteps = Set<Int>()
        Console.err("watch: following \(run) for \(variant)" + (raw ? " and raw snapshots" : "") + "; Ctrl-C stops")
        while stopSignal == 0 {
            let steps: [Int]
            var didWork = false
            if let store = try openIfPresent(globals.storePath), let list = try? store.snapshots(run: run) {
                steps = list.map(\.step).filter { step in step >= from && (until.map { step <= $0 } ?? true) }
                let allSteps = Set(list.map(\.step))
                if !allSteps.isSubset(of: seenSteps) {
                    seenSteps = allSteps
                    lastNew = monotonicSeconds()
                }
                let present = allSteps
                var work: [(Int, Bool)] = []  // (step, isLAWA)
                for s in steps {
                    if raw && !doneRaw.contains(s) { work.append((s, false)) }
                    let window = (0..<params.k).map { s - $0 * params.stride }
                    if !doneLAWA.contains(s), window.last! >= 0, window.allSatisfy(present.contains) { work.append((s, true)) }
                }
                for (s, isLAWA) in work {
                    if stopSignal != 0 { break }
                    didWork = true
                    let path = "\(tempDir)/\(run.replacingOccurrences(of: "/", with: "_"))-\(s)-\(isLAWA ? variant : "raw").safetensors"
                    do {
                        if isLAWA {
                            let plan = try store.plan(.lawa(k: params.k, stride: params.stride, at: s), run: run)
                            let report = try store.materialize(plan, to: .file(path))
                            for note in report.cacheNotes { Console.err("ckstore: warning: watch: \(note)") }
                            doneLAWA.insert(s)
                        } else {
                            _ = try store.restore(try store.resolve(.step(run: run, step: s)), to: .file(path))
                            doneRaw.insert(s)
                        }
                    } catch {
                        Console.err("ckstore: error: watch: \(error.message)")
                        if failFast { return error.exitCode }
                        if isLAWA { doneLAWA.insert(s) } else { doneRaw.insert(s) }
                        continue
                    }
                    if stopSignal != 0 {  // stopped while materializing: do not start CMD
                        unlink(path)
                        break
                    }
                    let command = exec.replacingOccurrences(of: "{path}", with: shellQuote(path))
                        .replacingOccurrences(of: "{step}", with: "\(s)")
                        .replacingOccurrences(of: "{run}", with: shellQuote(run))
                        .replacingOccurrences(of: "{variant}", with: isLAWA ? variant : "raw")
                    let status: Int32
                    do { status = try runShell(command) } catch {
                        unlink(path)
                        throw error
                    }
                    unlink(path)
                    if status != 0 && stopSignal == 0 {
                        failures += 1
                        Console.err(
                            "ckstore: error: watch: command for \(run)@\(s) (\(isLAWA ? variant : "raw")) exited with status \(status)")
                        if failFast { return 1 }
                    }
                }
                if let until, present.contains(where: { $0 >= until }),
                    steps.allSatisfy({ s in (!raw || doneRaw.contains(s)) && (doneLAWA.contains(s) || !windowComplete(s, params, present)) }
                    )
                {
                    Console.err("watch: reached --until \(until)")
                    break
                }
            }
            // Only after a poll that found nothing to do: snapshots that arrived while CMD ran
            // are picked up by the next poll before the watch may go idle.
            if let idle, !didWork, monotonicSeconds() - lastNew >= idle {
                Console.err("watch: no new snapshot for \(idle) s, exiting")
                break
            }
            sleepInterruptibly(poll)
        }
        if stopSignal != 0 { Console.err("watch: stopped by signal \(stopSignal)") }
        if failures > 0 { Console.err("watch: \(failures) command(s) failed") }
        return 0
    }

    private static func windowComplete(_ s: Int, _ p: (k: Int, stride: Int), _ present: Set<Int>) -> Bool {
        let window = (0..<p.k).map { s - $0 * p.stride }
        return window.last! >= 0 && window.allSatisfy(present.contains)
    }

    private static func makeTemporaryDirectory() throws(CKStoreError) -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/ckstore-watch-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw CKStoreError(.environment, "cannot create a temporary directory in \(base)")
        }
        return String(cString: p)
    }

    private static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private static func sleepInterruptibly(_ seconds: Double) {
        var left = seconds
        while left > 0 && stopSignal == 0 {
            let slice = min(left, 0.05)
            usleep(UInt32(slice * 1_000_000))
            left -= slice
        }
    }
}
