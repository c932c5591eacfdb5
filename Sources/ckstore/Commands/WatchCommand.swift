import CKStore
import CKStoreBackends

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
                                 [--retries N] [--raw] [--fail-fast]

            Follows RUN while it is being written. Each time the LAWA window ending at a stored
            step s (s, s−NU, …, s−(K−1)·NU all stored) becomes complete, the average is
            materialized (and cached as cache_policy says) into a temporary file and CMD runs
            through /bin/sh -c. CMD gets the values in its environment, and these placeholders
            in CMD are replaced (in one pass) by references to those variables, so values are
            never parsed as shell code, whatever they contain or however CMD quotes them:
              {path}     $CKSTORE_PATH      the safetensors file (for a run of directory
                                            snapshots: the result directory, the newest
                                            input's layout with every safetensors file averaged)
              {step}     $CKSTORE_STEP      s
              {run}      $CKSTORE_RUN       RUN
              {variant}  $CKSTORE_VARIANT   e.g. lawa-k6-s1000 (or raw)
            With --raw, CMD also runs on every raw snapshot (variant 'raw'), so both curves can
            be compared (a directory snapshot is recreated as a directory). Steps are processed
            in ascending order, each once.

              --from S           ignore steps below S
              --until S          exit once every step up to S has been processed and a step ≥ S exists
              --poll SECONDS     how often to look for new snapshots (default 2; 0.01 to 86400)
              --idle-exit SEC    exit after SEC seconds without a new snapshot
              --retries N        retry a step whose average cannot be written (disk full, a
                                 damaged input) N more times, waiting 2·poll, 4·poll, … (at
                                 most 60 s) in between (default 3, at most 100)
              --fail-fast        stop at the first failure (exit 1); otherwise failures are
                                 reported and the watch goes on
            A failing CMD is reported with its exit status and not retried (it may have recorded
            results). Exit status: 0 when every step was processed and every CMD succeeded, 1
            when a step never succeeded (a failing CMD, or retries used up), 2 usage error.
            A warning is printed while the store or RUN does not exist; --idle-exit then ends
            the watch with exit 1 (the run never appeared). SIGINT and SIGTERM stop
            the watch cleanly (exit 0; a running CMD is sent SIGTERM; temporary files are removed).
            """,
        run: { (args, globals) throws(CKStoreError) in try run(&args, globals) })

    /// The options of one watch.
    struct Options {
        var run: String
        var k: Int
        var stride: Int
        var exec: String
        var from: Int
        var until: Int?
        var poll: Double
        var idle: Double?
        var retries: Int
        var raw: Bool
        var failFast: Bool
        /// The LAWA variant name, e.g. `lawa-k6-s1000`.
        var variant: String { AverageQuery.lawa(k: k, stride: stride, at: 0).variantName }
    }

    private static func parse(_ args: inout Arguments) throws(CKStoreError) -> Options {
        guard let run = try args.value("--run") else { throw args.usage("--run is required") }
        guard let lawaText = try args.value("--lawa") else { throw args.usage("--lawa k=K,stride=NU is required") }
        guard let exec = try args.value("--exec") else { throw args.usage("--exec CMD is required") }
        let from = try args.integer("--from") ?? 0
        let until = try args.integer("--until")
        let poll = try seconds(&args, "--poll", range: 0.01...86_400) ?? 2
        let idle = try seconds(&args, "--idle-exit", range: 0.001...1e9)
        let retries = try args.integer("--retries") ?? 3
        guard retries <= 100 else { throw args.usage("--retries must be an integer from 0 to 100, got \(retries)") }
        let raw = args.flag("--raw")
        let failFast = args.flag("--fail-fast")
        _ = try args.positionals(max: 0, names: "")
        let params: (k: Int, stride: Int)
        do throws(CKStoreError) {
            // Any step up to Int.max / 2 may end a window: (K−1)·NU must fit below it.
            guard case .lawa(let k, let stride, _) = try AverageQuery.parseLAWA(lawaText, at: Int.max / 2) else {
                throw CKStoreError(.usage, "--lawa: not a LAWA query")
            }
            params = (k, stride)
        } catch {
            throw args.usage(error.message)
        }
        try Store.validateRunName(run)
        return Options(
            run: run, k: params.k, stride: params.stride, exec: exec, from: from, until: until, poll: poll, idle: idle,
            retries: retries, raw: raw, failFast: failFast)
    }

    /// A number of seconds within `range`, or nil when the option is absent.
    private static func seconds(_ args: inout Arguments, _ name: String, range: ClosedRange<Double>) throws(CKStoreError) -> Double? {
        guard let text = try args.value(name) else { return nil }
        guard let v = Double(text), v.isFinite, range.contains(v) else {
            throw args.usage("\(name) must be a number of seconds from \(range.lowerBound) to \(Int(range.upperBound)), got '\(text)'")
        }
        return v
    }

    /// One unit of work: the LAWA average or the raw snapshot at a step.
    struct Item: Hashable {
        let step: Int
        let isLAWA: Bool
    }

    private static func run(_ args: inout Arguments, _ globals: GlobalOptions) throws(CKStoreError) -> Int32 {
        let o = try parse(&args)
        let variant = o.variant
        installStopHandlers()
        let tempDir = try makeTemporaryDirectory()
        defer { rmdir(tempDir) }
        let template = CommandTemplate(template: o.exec).expanded()
        var done = Set<Item>()
        var retry: [Item: (failures: Int, due: Double)] = [:]
        var gaveUp: [Item] = []
        var lastNew = monotonicSeconds()
        var failures = 0
        var seenSteps = Set<Int>()
        var warned: String? = nil
        var missing: String? = nil  // why the watch ended without ever seeing the run
        func warnOnce(_ text: String) {
            if warned != text { Console.err("watch: warning: \(text)") }
            warned = text
        }
        func label(_ item: Item) -> String { "\(o.run)@\(item.step) (\(item.isLAWA ? variant : "raw"))" }
        Console.err("watch: following \(o.run) for \(variant)" + (o.raw ? " and raw snapshots" : "") + "; Ctrl-C stops")
        while stopSignal == 0 {
            var didWork = false
            let store: Store
            do { store = try Store(path: globals.storePath) } catch {
                // Only absence is waited for; an inconsistent store or a schema newer than this
                // binary is an error at once, never polled.
                guard error.code == .notFound else { throw error }
                warnOnce("cannot open the store at \(globals.storePath) (\(error.message)); waiting for it")
                if let idle = o.idle, monotonicSeconds() - lastNew >= idle {
                    missing = "the store at \(globals.storePath) never appeared in \(idle) s"
                    break
                }
                sleepInterruptibly(o.poll)
                continue
            }
            let list: [SnapshotInfo]
            do { list = try store.snapshots(run: o.run) } catch {
                let runs = ((try? store.runs()) ?? []).prefix(10).map(\.name)
                warnOnce(
                    "run '\(o.run)' does not exist (yet) in the store at \(globals.storePath)"
                        + (runs.isEmpty ? "" : " (runs: \(runs.joined(separator: ", ")))") + "; waiting for its first snapshot")
                if let idle = o.idle, monotonicSeconds() - lastNew >= idle {
                    missing = "run '\(o.run)' never appeared in the store at \(globals.storePath) in \(idle) s"
                    break
                }
                sleepInterruptibly(o.poll)
                continue
            }
            warned = nil
            let steps = list.map(\.step).filter { step in step >= o.from && (o.until.map { step <= $0 } ?? true) }
            let present = Set(list.map(\.step))
            if !present.isSubset(of: seenSteps) {
                seenSteps = present
                lastNew = monotonicSeconds()
            }
            var work: [Item] = []
            for s in steps {
                if o.raw { work.append(Item(step: s, isLAWA: false)) }
                if windowComplete(s, o, present) { work.append(Item(step: s, isLAWA: true)) }
            }
            // A step waiting for a retry whose window is no longer complete (an input was
            // removed) is dropped: there is nothing left to retry.
            let current = Set(work)
            for item in retry.keys where !current.contains(item) {
                Console.err("watch: warning: \(label(item)): its inputs are no longer all stored; not retrying")
                retry[item] = nil
            }
            for item in work where !done.contains(item) {
                if stopSignal != 0 { break }
                if let r = retry[item], r.due > monotonicSeconds() { continue }
                didWork = true
                // A run of directory snapshots averages to a directory: {path} names it.
                let isTree = list.first { $0.step == item.step }?.kind == .tree
                let path =
                    "\(tempDir)/\(fileStem(o.run))-\(item.step)-\(item.isLAWA ? variant : "raw")" + (isTree ? "" : ".safetensors")
                do {
                    if item.isLAWA {
                        let plan = try store.plan(.lawa(k: o.k, stride: o.stride, at: item.step), run: o.run)
                        let report = try store.materialize(plan, output: .automatic(path, force: false))
                        for note in report.cacheNotes { Console.err("ckstore: warning: watch: \(note)") }
                    } else {
                        let resolved = try store.resolve(.step(run: o.run, step: item.step))
                        if isTree {
                            _ = try store.restoreTree(resolved, toDirectory: path, force: false)
                        } else {
                            _ = try store.restore(resolved, to: .file(path))
                        }
                    }
                    retry[item] = nil
                } catch {
                    DirectoryRemoval.remove(path)
                    let failed = (retry[item]?.failures ?? 0) + 1
                    if failed > o.retries {
                        Console.err(
                            "ckstore: error: watch: \(label(item)): \(error.message)"
                                + (o.retries > 0 ? " (giving up after \(failed) attempts)" : ""))
                        retry[item] = nil
                        done.insert(item)
                        gaveUp.append(item)
                        if o.failFast { return error.exitCode }
                    } else {
                        let wait = min(60, o.poll * Double(1 << min(failed, 20)))
                        Console.err(
                            "watch: warning: \(label(item)): \(error.message); retrying in \(Console.format(wait, decimals: 2)) s "
                                + "(attempt \(failed + 1) of \(o.retries + 1))")
                        retry[item] = (failed, monotonicSeconds() + wait)
                    }
                    continue
                }
                done.insert(item)
                if stopSignal != 0 {  // stopped while materializing: do not start CMD
                    DirectoryRemoval.remove(path)
                    break
                }
                let status: Int32
                do {
                    status = try runShell(
                        template,
                        environment: CommandTemplate.environment(
                            path: path, step: item.step, run: o.run, variant: item.isLAWA ? variant : "raw"))
                } catch {
                    DirectoryRemoval.remove(path)
                    throw error
                }
                DirectoryRemoval.remove(path)
                if status != 0 && stopSignal == 0 {
                    failures += 1
                    Console.err("ckstore: error: watch: command for \(label(item)) exited with status \(status)")
                    if o.failFast { return 1 }
                }
            }
            if let until = o.until, present.contains(where: { $0 >= until }),
                steps.allSatisfy({ s in
                    (!o.raw || done.contains(Item(step: s, isLAWA: false)))
                        && (done.contains(Item(step: s, isLAWA: true)) || !windowComplete(s, o, present))
                })
            {
                Console.err("watch: reached --until \(until)")
                break
            }
            // Only after a poll that found nothing to do (and with no retry pending): snapshots
            // that arrived while CMD ran are picked up by the next poll before the watch may go idle.
            if let idle = o.idle, !didWork, retry.isEmpty, monotonicSeconds() - lastNew >= idle {
                Console.err("watch: no new snapshot for \(idle) s, exiting")
                break
            }
            sleepInterruptibly(o.poll)
        }
        if stopSignal != 0 {
            Console.err("watch: stopped by signal \(stopSignal)")
            return 0
        }
        if let missing {
            Console.err("ckstore: error: watch: \(missing)")
            return 1
        }
        if failures > 0 { Console.err("watch: \(failures) command(s) failed") }
        let pending = retry.keys.sorted { ($0.step, $0.isLAWA ? 1 : 0) < ($1.step, $1.isLAWA ? 1 : 0) }
        let never = gaveUp + pending
        if !never.isEmpty {
            Console.err(
                "ckstore: error: watch: \(never.count) step(s) never succeeded: "
                    + never.prefix(10).map(label).joined(separator: ", ") + (never.count > 10 ? ", …" : ""))
        }
        return failures > 0 || !never.isEmpty ? 1 : 0
    }

    /// Whether every input of the window ending at `s` is stored (and none is below step 0).
    private static func windowComplete(_ s: Int, _ o: Options, _ present: Set<Int>) -> Bool {
        for i in 0..<o.k {
            let (offset, o1) = i.multipliedReportingOverflow(by: o.stride)
            let (step, o2) = s.subtractingReportingOverflow(offset)
            if o1 || o2 || step < 0 || !present.contains(step) { return false }
        }
        return true
    }

    /// The run name as a short, shell- and file-system-safe file name part: ASCII letters,
    /// digits, '.', '_' and '-' kept, everything else '_', at most 64 bytes (then a hash of
    /// the full name is appended), so that temporary names stay far below NAME_MAX.
    static func fileStem(_ run: String) -> String {
        var stem = String(
            run.unicodeScalars.map { c -> Character in
                c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "." || c == "_" || c == "-")
                    ? Character(c) : "_"
            })
        if stem.hasPrefix(".") { stem = "_" + stem.dropFirst() }
        if run.utf8.count > 64 || stem != run {
            let hash = SHA256Digest.hash(Array(run.utf8)).hex.prefix(12)
            stem = String(stem.prefix(48)) + "-" + hash
        }
        return stem
    }

    private static func makeTemporaryDirectory() throws(CKStoreError) -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/ckstore-watch-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw CKStoreError(.environment, "cannot create a temporary directory in \(base): \(String(cString: strerror(errno)))")
        }
        return String(cString: p)
    }

    private static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private static func sleepInterruptibly(_ seconds: Double) {
        let end = monotonicSeconds() + seconds
        while stopSignal == 0 {
            let left = end - monotonicSeconds()
            if left <= 0 { break }
            usleep(UInt32(min(left, 0.05) * 1_000_000))
        }
    }
}
