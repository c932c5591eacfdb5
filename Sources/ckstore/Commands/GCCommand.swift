import CKStore

/// `ckstore gc`: retention policies and garbage collection.
enum GCCommand {
    static let command = Command(
        summary: "apply retention policies and delete unreferenced blobs",
        help: """
            usage: ckstore gc [--run RUN] [--keep-last N] [--keep-every N]
                              [--keep-lawa k=K,stride=NU] [--keep-derived] [--dry-run]

            Without a --keep option, removes no snapshot: deletes only blob files nothing refers
            to (orphans left by interrupted or failed puts, blobs of removed snapshots) and the
            derived snapshots (cached averages, which can always be recomputed) unless
            --keep-derived.

            With --keep options, each run (or only --run RUN) keeps the union of what they name
            and loses its other snapshots:
              --keep-last N              the last N steps
              --keep-every N             steps that are multiples of N
              --keep-lawa k=K,stride=NU  the steps LAWA needs at the latest step (latest,
                                         latest−NU, …, latest−(K−1)·NU) — and so at every later
                                         step on the same grid
            --dry-run prints what would go and the bytes freed, changing nothing.

            gc takes the store lock exclusively: it waits for running puts and reads, and a put
            never loses a blob it has found to gc.
            """,
        run: { (args, globals) throws(CKStoreError) in
            let run = try args.value("--run")
            var policy = RetentionPolicy()
            policy.keepLast = try args.integer("--keep-last")
            // "Keep the last 0" would remove every snapshot of every run: refuse it (rm does that).
            if policy.keepLast == 0 { throw args.usage("--keep-last must be at least 1 (use rm to remove snapshots)") }
            policy.keepEvery = try args.integer("--keep-every")
            if policy.keepEvery == 0 { throw args.usage("--keep-every must be at least 1") }
            if let lawa = try args.value("--keep-lawa") {
                do throws(CKStoreError) {
                    guard case .lawa(let k, let stride, _) = try AverageQuery.parseLAWA(lawa, at: Int.max / 2) else { return 2 }
                    policy.keepLAWA = (k, stride)
                } catch {
                    throw args.usage(error.message.replacingOccurrences(of: "--lawa", with: "--keep-lawa"))
                }
            }
            policy.keepDerived = args.flag("--keep-derived")
            let dryRun = args.flag("--dry-run")
            _ = try args.positionals(max: 0, names: "")
            let store = try Store(path: globals.storePath)
            if let run { _ = try store.snapshots(run: run) }
            printCollection(try store.collectGarbage(run: run, policy: policy, dryRun: dryRun))
            return 0
        })
}
