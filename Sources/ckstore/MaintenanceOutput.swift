import CKStore
import CKStoreBackends

/// Options and output shared by the maintenance commands (`rm`, `gc`, `fsck`).
enum MaintenanceOptions {
    /// Removes `--wait SECONDS` and applies it to `store` (absent: wait as long as the lock is
    /// held; 0: fail at once when it is held). Fractions are allowed; at most a week.
    static func waitSeconds(_ args: inout Arguments) throws(CKStoreError) -> Double? {
        guard let text = try args.value("--wait") else { return nil }
        guard let seconds = Double(text), seconds.isFinite, seconds >= 0, seconds <= 604_800 else {
            throw args.usage("--wait needs a number of seconds from 0 to 604800, got '\(text)'")
        }
        return seconds
    }

    /// Opens the store for a maintenance command with its `--wait` limit.
    static func open(_ globals: GlobalOptions, wait: Double?) throws(CKStoreError) -> Store {
        let store = try Store(path: globals.storePath)
        if let wait { store.lockWait.timeout = wait }
        return store
    }
}

/// Prints what rm/gc removed (or would remove), and their warnings on stderr.
func printCollection(_ report: CollectionReport, lawa: (k: Int, stride: Int)? = nil) {
    let verb = report.dryRun ? "would remove" : "removed"
    for s in report.removedSnapshots { Console.out("\(verb) \(s)") }
    for d in report.removedDerived { Console.out("\(verb) derived: \(d)") }
    for p in report.removedPending { Console.out("\(verb) pending \(p) (its parts)") }
    if let lawa {
        for (run, w) in report.lawaWindows {
            let name = "LAWA k=\(lawa.k),stride=\(lawa.stride)"
            guard let complete = w.complete else { continue }
            let refs = { (steps: [Int]) in steps.map { "\(run)@\($0)" }.joined(separator: ", ") }
            if complete == w.latest {
                Console.out("keep \(refs(w.completeWindow)): the \(name) window at the newest step \(complete)")
            } else {
                Console.out("keep \(refs(w.completeWindow)): the newest complete \(name) window (at \(complete))")
                if !w.latestWindow.isEmpty {
                    Console.out("keep \(refs(w.latestWindow)): what is stored of the \(name) window at the newest step \(w.latest)")
                }
            }
        }
    }
    Console.out(
        "\(verb) \(report.removedSnapshots.count) snapshot(s), \(report.removedDerived.count) derived, "
            + "\(report.removedBlobs) blob file(s); \(report.dryRun ? "would free" : "freed") \(Console.bytes(report.freedBytes)) (\(report.freedBytes) bytes)"
    )
    if report.droppedMetrics > 0 {
        Console.out("\(report.dryRun ? "would drop" : "dropped") \(report.droppedMetrics) metric(s) measured on the removed content")
    }
    printCollectionWarnings(report)
}

/// Warnings and foreign entries on stderr (also in JSON mode, where they are in the object too).
func printCollectionWarnings(_ report: CollectionReport) {
    for w in report.warnings { Console.err("ckstore: warning: \(w)") }
    for f in report.foreignEntries.prefix(5) { Console.err("ckstore: note: left alone (not ckstore's): \(f)") }
    if report.foreignEntries.count > 5 {
        Console.err("ckstore: note: … and \(report.foreignEntries.count - 5) more foreign entries in objects/")
    }
}

/// The `--json` object of rm and gc (keys documented in README.md).
func collectionJSON(_ report: CollectionReport) -> JSONValue {
    let snapshots: [JSONValue] = report.removedSnapshots.map { ref in
        let at = ref.lastIndex(of: "@")!
        return .object([("run", .string(String(ref[..<at]))), ("step", .int(Int(ref[ref.index(after: at)...]) ?? -1))])
    }
    let windows: [JSONValue] = report.lawaWindows.map { run, w in
        .object([
            ("run", .string(run)), ("latest", .int(w.latest)), ("latest_window", .array(w.latestWindow.map { .int($0) })),
            ("complete_at", w.complete.map { .int($0) } ?? .null), ("complete_window", .array(w.completeWindow.map { .int($0) })),
        ])
    }
    return .object([
        ("dry_run", .bool(report.dryRun)),
        ("removed_snapshots", .array(snapshots)),
        ("removed_derived", .array(report.removedDerived.map { .string($0) })),
        ("removed_pending", .array(report.removedPending.map { .string($0) })),
        ("removed_files", .int(report.removedBlobs)),
        ("removed_referenced_blobs", .int(report.removedReferencedBlobs)),
        ("removed_orphan_blobs", .int(report.removedOrphans)),
        ("removed_temporary_files", .int(report.removedTemporaryFiles)),
        ("freed_bytes", .int(report.freedBytes)),
        ("dropped_metrics", .int(report.droppedMetrics)),
        ("lawa_windows", .array(windows)),
        ("warnings", .array(report.warnings.map { .string($0) })),
        ("foreign_entries", .array(report.foreignEntries.map { .string($0) })),
    ])
}
