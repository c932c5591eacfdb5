import CKStore

/// `ckstore fsck`: check the store's invariants; with --repair, fix what needs no guess.
enum FsckCommand {
    static let command = Command(
        summary: "check the store: rows, headers, blobs (--full: decode and re-hash; --repair: safe repairs)",
        help: """
            usage: ckstore fsck [--full] [--repair] [--json] [--wait SECONDS]

            Structural check: the SQLite database (integrity_check, foreign keys); every manifest's
            tensor and chunk rows against its stored header and digest; every chunk row against
            its blob file (a regular file — symbolic links in objects/ are never followed —
            with a valid header, the recorded size and raw length). --full also reads, decodes
            and re-hashes every blob. Lists every problem and the snapshots it damages
            (RUN@STEP and digest, with how to repair them), and exits 3 if there is any; orphan
            blobs, temporary files and foreign entries in objects/ are notes (exit 0).

            --repair (takes the store lock exclusively) changes only what needs no guess, then
            checks again:
              - drops cached averages (derived rows) that use a missing or damaged blob: they
                are recomputed on the next query;
              - drops chunk rows no tensor uses whose blob is missing or damaged;
              - moves a blob file that is proven damaged (it does not decode, or does not hash
                to its name) to STORE/quarantine/, never deleting it;
              - removes ckstore's temporary files left in objects/ by interrupted writes.
            It never changes a snapshot or the blob of a snapshot it cannot prove damaged. A
            snapshot that lost a blob is repaired by putting the original file again
            (ckstore put --run RUN --step STEP FILE): put rewrites missing or damaged blobs.

            --json prints one object (keys in README). fsck --repair waits for the store lock
            like gc: a message on stderr after a second; --wait SECONDS gives up after that
            long (exit 1, nothing changed). Plain fsck shares the lock with puts and reads.
            """,
        run: { (args, globals) throws(CKStoreError) in
            let full = args.flag("--full")
            let repair = args.flag("--repair")
            let json = args.flag("--json")
            let wait = try MaintenanceOptions.waitSeconds(&args)
            _ = try args.positionals(max: 0, names: "")
            let store = try MaintenanceOptions.open(globals, wait: wait)
            let report = repair ? try store.repair(full: full) : try store.check(full: full)
            let summary =
                "checked \(report.manifestsChecked) manifest(s), \(report.chunksChecked) chunk(s)"
                + (full ? ", decoded \(report.blobsDecoded) blob(s)" : "")
            if json {
                Console.json(fsckJSON(report, full: full, repair: repair))
            } else {
                for r in report.repairs { Console.out("repaired: \(r)") }
                for p in report.problems { Console.out("problem: \(p)") }
                for d in report.damagedSnapshots { Console.out("damaged: \(describe(d))") }
                for n in report.notes { Console.out("note: \(n)") }
                if report.problems.isEmpty { Console.out("ok: \(summary)") }
            }
            if report.problems.isEmpty { return 0 }
            let hint =
                repair || report.damagedSnapshots.allSatisfy { !$0.names.isEmpty } ? "" : " (fsck --repair drops damaged cached averages)"
            Console.err("ckstore: error: fsck found \(report.problems.count) problem(s)\(hint); \(summary)")
            return 3
        })

    /// One line per damaged snapshot: what it is, what is wrong, how to repair it.
    static func describe(_ d: DamagedSnapshot) -> String {
        var what: [String] = []
        if d.missingBlobs > 0 { what.append("\(d.missingBlobs) blob(s) missing") }
        if d.damagedBlobs > 0 { what.append("\(d.damagedBlobs) blob(s) damaged") }
        if d.foreignBlobs > 0 { what.append("\(d.foreignBlobs) blob(s) not regular files") }
        if d.rowsDamaged { what.append("its rows are damaged") }
        let names = d.names.map { "\($0.run)@\($0.step)" } + d.recipes.map { "cached average '\($0)'" }
        let label = (names.isEmpty ? "unnamed manifest" : names.joined(separator: ", ")) + " (sha256:\(d.digest.hex))"
        let fix: String
        if let first = d.names.first, !d.rowsDamaged {
            fix = "repair: put the original file again (ckstore put --run \(first.run) --step \(first.step) FILE)"
        } else if d.names.isEmpty {
            fix = "repair: ckstore fsck --repair drops it (it is recomputed on the next query)"
        } else {
            fix = "repair: rm it and put the original file again"
        }
        return "\(label): \(what.joined(separator: ", ")); \(fix)"
    }

    /// The `--json` object (keys documented in README.md).
    static func fsckJSON(_ r: IntegrityReport, full: Bool, repair: Bool) -> JSONValue {
        let damaged: [JSONValue] = r.damagedSnapshots.map { d in
            .object([
                ("digest", .string("sha256:\(d.digest.hex)")),
                ("snapshots", .array(d.names.map { .object([("run", .string($0.run)), ("step", .int($0.step))]) })),
                ("derived", .array(d.recipes.map { .string($0) })),
                ("missing_blobs", .int(d.missingBlobs)), ("damaged_blobs", .int(d.damagedBlobs)),
                ("foreign_blobs", .int(d.foreignBlobs)), ("rows_damaged", .bool(d.rowsDamaged)),
            ])
        }
        return .object([
            ("ok", .bool(r.problems.isEmpty)),
            ("full", .bool(full)),
            ("repair", .bool(repair)),
            ("manifests_checked", .int(r.manifestsChecked)),
            ("chunks_checked", .int(r.chunksChecked)),
            ("blobs_decoded", .int(r.blobsDecoded)),
            (
                "problems",
                .array(
                    r.problems.map { p in
                        .object([
                            ("subject", .string(p.subject)), ("detail", .string(p.detail)),
                            ("blob", p.blob.map { .string($0.hex) } ?? .null),
                        ])
                    })
            ),
            ("damaged_snapshots", .array(damaged)),
            (
                "repairs",
                .array(
                    r.repairs.map {
                        .object([("action", .string($0.action)), ("target", .string($0.target)), ("reason", .string($0.reason))])
                    })
            ),
            ("orphan_blobs", .int(r.orphanBlobs)),
            ("orphan_bytes", .int(r.orphanBytes)),
            ("temporary_files", .int(r.temporaryFiles)),
            ("quarantined_files", .int(r.quarantinedFiles)),
            ("foreign_entries", .array(r.foreignEntries.map { .string($0) })),
            ("notes", .array(r.notes.map { .string($0) })),
        ])
    }
}
