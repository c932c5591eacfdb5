import CKStore
import CKStoreBackends

#if canImport(Glibc)
    import Glibc
#endif

/// `ckstore sweep`: every LAWA (k, ν) combination at some steps, computed in one pass per step,
/// with an evaluator run on each.
enum SweepCommand {
    static let command = Command(
        summary: "compute every LAWA (k, stride) combination at some steps in one pass and run an evaluator on each",
        help: """
            usage: ckstore sweep --run RUN --lawa k=K[,K…] --stride NU[,NU…] --at S[,S…]
                                 [--exec CMD] [--dry-run] [--no-cache] [--quiet]

            Materializes the LAWA average of every (K, NU) pair at each step S (S must be a
            stored step of RUN). Per step, every distinct input snapshot is read and decoded
            once per output chunk for all the pairs that use it; each result is bit-identical to
            `get --lawa k=K,stride=NU --at S` and is cached under the same key, so that command
            is then a cache hit (--no-cache: not cached). With --exec, the store's cache_policy
            decides, each (K, NU, S) counting as one request of that `get`: under second-hit
            (the default) a pair is cached the second time it is asked for, by a sweep or a
            get. Without --exec the sweep only fills the cache: every result is cached (refused
            under cache_policy never). With --exec, CMD runs through
            /bin/sh -c on each result in turn (ascending S, then K, then NU), with the same
            placeholders and environment as `watch --exec` (values are never parsed as shell):
              {path}     $CKSTORE_PATH      the safetensors file (removed after CMD)
              {step}     $CKSTORE_STEP      S
              {run}      $CKSTORE_RUN       RUN
              {variant}  $CKSTORE_VARIANT   lawa-k{K}-s{NU}, the name to record metrics under:
                                            ckstore metric "$CKSTORE_RUN@$CKSTORE_STEP" \\
                                              loss=… --variant "$CKSTORE_VARIANT"
            Without --exec the results are only cached. All the results at one step are written
            to temporary files ($TMPDIR) before CMD runs on them: that needs disk space for one
            output per pair.

            A pair whose window lacks inputs (a step below 0, off the run's grid of saved
            steps, or not stored) is reported on stderr and skipped. --dry-run prints, per
            step, what would be computed (or served from the cache) and what lacks inputs and
            why, and changes nothing.

              --lawa k=K[,K…]       window lengths, 1 to 10000, each once
              --stride NU[,NU…]     strides ≥ 1, each once (at most 256 pairs in all)
              --at S[,S…]           output steps ≥ 0, each once, each a stored step of RUN
              --exec CMD            run CMD on each result
              --dry-run             list the plan only
              --no-cache            do not store the results (needs --exec)
              --quiet               no per-pair lines on stderr (skips and errors still shown)

            Exit status: 0 when every pair with its inputs was computed and every CMD succeeded
            (pairs lacking inputs do not count: they are reported), 1 when a CMD failed (the
            others still run; each failure names its pair), when a step could not be computed,
            or when no pair at all has its inputs, 2 usage error, 3 a damaged input. SIGINT or
            SIGTERM stops the sweep after the step being computed (a running CMD is sent
            SIGTERM; temporary files are removed), exit 128 + the signal number.
            """,
        run: { (args, globals) throws(CKStoreError) in try run(&args, globals) })

    /// The parsed command line.
    struct Options {
        var run: String?
        var ks: [Int]
        var strides: [Int]
        var steps: [Int]
        var exec: String?
        var dryRun: Bool
        var noCache: Bool
        var quiet: Bool
    }

    /// A comma-separated list of integers (`what` names the option in errors).
    static func integers(_ text: String, _ what: String, _ args: Arguments) throws(CKStoreError) -> [Int] {
        var result: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let n = Int(part) else { throw args.usage("\(what): '\(part)' is not an integer") }
            result.append(n)
        }
        return result
    }

    static func parse(_ args: inout Arguments) throws(CKStoreError) -> Options {
        let run = try args.value("--run")
        guard let lawa = try args.value("--lawa") else { throw args.usage("--lawa k=K[,K…] is required") }
        guard let strideText = try args.value("--stride") else { throw args.usage("--stride NU[,NU…] is required") }
        guard let atText = try args.value("--at") else { throw args.usage("--at S[,S…] is required") }
        let exec = try args.value("--exec")
        let dryRun = args.flag("--dry-run")
        let noCache = args.flag("--no-cache")
        let quiet = args.flag("--quiet")
        _ = try args.positionals(max: 0, names: "")
        guard lawa.hasPrefix("k="), !lawa.contains("=", after: 2) else {
            throw args.usage("--lawa takes k=K[,K…] (e.g. k=2,4,6); give the strides with --stride")
        }
        let ks = try integers(String(lawa.dropFirst(2)), "--lawa k", args)
        let strides = try integers(strideText, "--stride", args)
        let steps = try integers(atText, "--at", args)
        do {
            try SweepPlan.validate(ks: ks, strides: strides, steps: steps)
        } catch {
            throw args.usage(error.message)
        }
        if let run { try Store.validateRunName(run) }
        if exec?.isEmpty == true { throw args.usage("--exec needs a command") }
        if noCache && exec == nil && !dryRun { throw args.usage("--no-cache needs --exec (nothing would be kept)") }
        return Options(
            run: run, ks: ks, strides: strides, steps: steps.sorted(), exec: exec, dryRun: dryRun, noCache: noCache, quiet: quiet)
    }

    private static func run(_ args: inout Arguments, _ globals: GlobalOptions) throws(CKStoreError) -> Int32 {
        let o = try parse(&args)
        let store = try Store(path: globals.storePath)
        let plan: SweepPlan
        do {
            plan = try store.planSweep(run: o.run, ks: o.ks, strides: o.strides, at: o.steps)
        } catch  where error.code == .usage {
            throw args.usage(error.message)
        }
        if o.exec == nil && !o.dryRun && store.configuration.cachePolicy == .never {
            throw args.usage("the store's cache_policy is never: without --exec the sweep would keep nothing")
        }
        if o.dryRun { return try dryRun(plan, store: store, noCache: o.noCache || store.configuration.cachePolicy == .never) }
        installStopHandlers()
        let template = o.exec.map { CommandTemplate(template: $0).expanded() }
        let tempDir = template == nil ? nil : try makeTemporaryDirectory()
        defer { if let tempDir { rmdir(tempDir) } }
        var status: Int32 = 0
        var computable = 0
        for at in o.steps {
            if stopSignal != 0 { break }
            let cells = plan.cells.filter { $0.at == at }
            for cell in cells where cell.plan == nil {
                Console.err("sweep: skipping \(plan.run)@\(at) \(cell.combination.variantName): \(cell.missingReason ?? "")")
            }
            let ready = cells.filter { $0.plan != nil }
            computable += ready.count
            guard !ready.isEmpty else { continue }
            let paths: [String?] = ready.map { cell in
                tempDir.map { "\($0)/\(WatchCommand.fileStem(plan.run))-\(at)-\(cell.combination.variantName).safetensors" }
            }
            let reports: [AverageReport]
            do {
                reports = try store.materializeSweep(
                    ready.map { $0.plan! }, to: paths.map { $0.map(OutputTarget.file) }, useCache: !o.noCache)
            } catch {
                for path in paths { if let path { unlink(path) } }
                Console.err("ckstore: error: sweep: \(plan.run)@\(at): \(error.message)")
                status = max(status, error.exitCode == 2 ? 1 : error.exitCode)
                continue
            }
            for (n, cell) in ready.enumerated() {
                let report = reports[n]
                for note in report.cacheNotes { Console.err("ckstore: warning: sweep: \(note)") }
                if !o.quiet {
                    let source =
                        report.fromCache
                        ? "from the cache"
                        : "computed from \(report.plan.inputs.count) inputs"
                            + (report.derivedDigest.map { ", cached as derived sha256:\($0.hex.prefix(12))…" } ?? "")
                    Console.err("sweep: \(report.plan.recipe): \(source) (\(Console.format(report.seconds, decimals: 2)) s for the step)")
                }
                guard let template, let path = paths[n] else { continue }
                defer { unlink(path) }
                if stopSignal != 0 { continue }
                let variant = cell.combination.variantName
                let code = try runShell(
                    template, environment: CommandTemplate.environment(path: path, step: at, run: plan.run, variant: variant))
                if code != 0 && stopSignal == 0 {
                    Console.err("ckstore: error: sweep: command for \(plan.run)@\(at) (\(variant)) exited with status \(code)")
                    status = max(status, 1)
                }
            }
        }
        if stopSignal != 0 {
            Console.err("sweep: stopped by signal \(stopSignal)")
            return 128 + Int32(stopSignal)
        }
        if computable == 0 {
            Console.err(
                "ckstore: error: sweep: no (k, stride) pair has all its inputs at \(o.steps.map(String.init).joined(separator: ", "))")
            return 1
        }
        return status
    }

    /// Prints what the sweep would do: per step, each pair computed, cached or lacking inputs.
    private static func dryRun(_ plan: SweepPlan, store: Store, noCache: Bool) throws(CKStoreError) -> Int32 {
        var steps: [Int] = []
        for cell in plan.cells where !steps.contains(cell.at) { steps.append(cell.at) }
        for at in steps {
            let cells = plan.cells.filter { $0.at == at }
            var lines: [[String]] = []
            var counts = (compute: 0, cached: 0, missing: 0)
            for cell in cells {
                let name = cell.combination.variantName
                guard let p = cell.plan else {
                    counts.missing += 1
                    lines.append([name, "lacks", cell.missingReason ?? ""])
                    continue
                }
                if !noCache, let digest = try store.cachedResult(for: p) {
                    counts.cached += 1
                    lines.append([name, "cached", "sha256:\(digest.hex.prefix(12))…"])
                } else {
                    counts.compute += 1
                    lines.append([name, "compute", "inputs " + p.inputs.compactMap(\.step).map(String.init).joined(separator: ",")])
                }
            }
            Console.out(
                "sweep \(plan.run)@\(at): \(cells.count) combinations: \(counts.compute) to compute, \(counts.cached) cached, "
                    + "\(counts.missing) lacking inputs; \(plan.inputSteps(at: at).count) distinct inputs, each decoded once")
            for line in Console.table(lines) { Console.out("  " + line) }
        }
        return 0
    }

    private static func makeTemporaryDirectory() throws(CKStoreError) -> String {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(base)/ckstore-sweep-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw CKStoreError(.environment, "cannot create a temporary directory in \(base): \(String(cString: strerror(errno)))")
        }
        return String(cString: p)
    }
}

extension String {
    /// Whether `character` occurs at or after the `offset`-th character.
    fileprivate func contains(_ character: Character, after offset: Int) -> Bool {
        dropFirst(offset).contains(character)
    }
}
