import CKStore

/// `ckstore rm`: remove snapshots and the blobs only they used.
enum RemoveCommand {
    static let command = Command(
        summary: "remove snapshots (and the blobs only they used)",
        help: """
            usage: ckstore rm REF... [--dry-run] [--json]

            Removes the named snapshots (RUN@STEP or RUN@latest) in one transaction, then deletes
            the blob files nothing refers to any more. Derived snapshots are kept (gc may drop
            them). With --dry-run, prints what would go and the bytes freed, changing nothing.
            With --json, prints that as one JSON object (dry_run, removed_snapshots,
            removed_derived, removed_blobs, freed_bytes).
            """,
        run: { (args, globals) throws(CKStoreError) in
            let dryRun = args.flag("--dry-run")
            let json = args.flag("--json")
            let refs = try args.positionals(min: 1, names: "REF")
            var parsed: [SnapshotRef] = []
            for r in refs { parsed.append(try SnapshotRef.parse(r)) }
            let store = try Store(path: globals.storePath)
            let report = try store.remove(parsed, dryRun: dryRun)
            if json {
                Console.json(reportJSON(report))
            } else {
                printCollection(report)
            }
            return 0
        })

    /// What rm removed (or would remove), as JSON.
    static func reportJSON(_ report: CollectionReport) -> JSONValue {
        .object([
            ("dry_run", .bool(report.dryRun)),
            ("removed_snapshots", .array(report.removedSnapshots.map { .string($0) })),
            ("removed_derived", .array(report.removedDerived.map { .string($0) })),
            ("removed_blobs", .int(report.removedBlobs)), ("freed_bytes", .int(report.freedBytes)),
        ])
    }
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
}
