import CKStore

/// `ckstore rm`: remove snapshots and the blobs only they used.
enum RemoveCommand {
    static let command = Command(
        summary: "remove snapshots (and the blobs only they used)",
        help: """
            usage: ckstore rm REF... [--dry-run] [--json] [--wait SECONDS]

            Removes the named snapshots (RUN@STEP or RUN@latest) in one transaction, then deletes
            the blob files of the chunks only they used. Derived snapshots are kept (gc may drop
            them); orphan blobs and temporary files are left to gc. The metrics recorded at a
            removed step (and those of LAWA/SWA/EMA variants whose inputs include it) are dropped:
            they describe content that is gone. A RUN@STEP whose parts are still arriving (put
            --parts) is removed with all its parts; rm of a complete RUN@STEP also removes a
            pending replacement of it (put --parts --force). With --dry-run, prints what
            would go and the bytes freed, changing nothing. --json prints one object (see README).

            rm takes the store lock exclusively: it waits for running puts and reads, saying so
            on stderr after a second; --wait SECONDS gives up after that long (exit 1, nothing
            changed; 0: do not wait). Without --wait it waits as long as the lock is held.
            """,
        run: { (args, globals) throws(CKStoreError) in
            let dryRun = args.flag("--dry-run")
            let json = args.flag("--json")
            let wait = try MaintenanceOptions.waitSeconds(&args)
            let refs = try args.positionals(min: 1, names: "REF")
            var parsed: [SnapshotRef] = []
            for r in refs { parsed.append(try SnapshotRef.parse(r)) }
            let store = try MaintenanceOptions.open(globals, wait: wait)
            let report = try store.remove(parsed, dryRun: dryRun)
            if json {
                Console.json(collectionJSON(report))
                printCollectionWarnings(report)
            } else {
                printCollection(report)
            }
            return 0
        })
}
