import CKStore

/// `ckstore rm`: remove snapshots and the blobs only they used.
enum RemoveCommand {
    static let command = Command(
        summary: "remove snapshots (and the blobs only they used)",
        help: """
            usage: ckstore rm REF... [--dry-run]

            Removes the named snapshots (RUN@STEP or RUN@latest) in one transaction, then deletes
            the blob files nothing refers to any more. Derived snapshots are kept (gc may drop
            them). The metrics recorded at a removed step (and those of LAWA/SWA/EMA variants
            whose inputs include it) are dropped: they describe content that is gone. With
            --dry-run, prints what would go and the bytes freed, changing nothing.
            """,
        run: { (args, globals) throws(CKStoreError) in
            let dryRun = args.flag("--dry-run")
            let refs = try args.positionals(min: 1, names: "REF")
            var parsed: [SnapshotRef] = []
            for r in refs { parsed.append(try SnapshotRef.parse(r)) }
            let store = try Store(path: globals.storePath)
            let report = try store.remove(parsed, dryRun: dryRun)
            printCollection(report)
            return 0
        })
}

/// Prints what rm/gc removed (or would remove).
func printCollection(_ report: CollectionReport) {
    let verb = report.dryRun ? "would remove" : "removed"
    for s in report.removedSnapshots { Console.out("\(verb) \(s)") }
    for d in report.removedDerived { Console.out("\(verb) derived: \(d)") }
    Console.out(
        "\(verb) \(report.removedSnapshots.count) snapshot(s), \(report.removedDerived.count) derived, "
            + "\(report.removedBlobs) blob file(s); \(report.dryRun ? "would free" : "freed") \(Console.bytes(report.freedBytes)) (\(report.freedBytes) bytes)"
    )
    if report.droppedMetrics > 0 {
        Console.out("\(report.dryRun ? "would drop" : "dropped") \(report.droppedMetrics) metric(s) measured on the removed content")
    }
}
