import CKStore

/// `ckstore gc`: retention policies and garbage collection.
enum GCCommand {
    static let command = Command(
        summary: "apply retention policies and delete unreferenced blobs",
        help: """
            usage: ckstore gc [--run RUN] [--keep-last N] [--keep-every N]
                              [--keep-lawa k=K,stride=NU] [--keep-derived] [--dry-run]
                              [--all-orphans] [--pending] [--json] [--wait SECONDS]

            Without a --keep option, removes no snapshot: deletes only blob files nothing refers
            to (orphans left by interrupted or failed puts, blobs of removed snapshots), ckstore's
            own temporary files, and the derived snapshots (cached averages, which can always be
            recomputed) unless --keep-derived.

            With --keep options, each run (or only --run RUN) keeps the union of what they name
            and loses its other snapshots:
              --keep-last N              the last N steps
              --keep-every N             steps that are multiples of N
              --keep-lawa k=K,stride=NU  the newest complete LAWA window (the newest step S whose
                                         inputs S, S−NU, …, S−(K−1)·NU are all stored) and what
                                         is stored of the newest step's window. A run with no
                                         complete window keeps all its snapshots (a warning
                                         says so: check the stride).
            Pending snapshots (put --parts, not yet complete) whose first part arrived more than
            pending_grace ago (config, default 24 h) are removed with their parts; --pending
            removes every pending snapshot (of --run RUN, or all), whatever its age.
            --dry-run prints what would go, what --keep-lawa keeps, and the bytes freed,
            changing nothing. --json prints one object instead (see README).

            gc refuses (exit 1, nothing changed) to delete every blob file in objects/ when no
            chunk row refers to any of them: an emptied, deleted or replaced ckstore.db looks
            exactly like that. --all-orphans deletes them anyway.

            gc deletes only regular files named like a blob (64 lowercase hex digits in the
            folder named by the first two) or like ckstore's temporary files; it never follows
            a symbolic link inside objects/ and leaves anything else alone (reported on stderr).

            gc takes the store lock exclusively: it waits for running puts and reads, saying so
            on stderr after a second; --wait SECONDS gives up after that long (exit 1, nothing
            changed; 0: do not wait). Without --wait it waits as long as the lock is held. A put
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
            let allOrphans = args.flag("--all-orphans")
            let allPending = args.flag("--pending")
            let json = args.flag("--json")
            let wait = try MaintenanceOptions.waitSeconds(&args)
            _ = try args.positionals(max: 0, names: "")
            let store = try MaintenanceOptions.open(globals, wait: wait)
            if let run { _ = try store.snapshots(run: run) }
            let report = try store.collectGarbage(run: run, policy: policy, dryRun: dryRun, allOrphans: allOrphans, allPending: allPending)
            if json {
                Console.json(collectionJSON(report))
                printCollectionWarnings(report)
            } else {
                printCollection(report, lawa: policy.keepLAWA)
            }
            return 0
        })
}
