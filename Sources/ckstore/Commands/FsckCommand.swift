import CKStore

/// `ckstore fsck`: check the store's invariants.
enum FsckCommand {
    static let command = Command(
        summary: "check the store: rows, headers, blobs (--full: decode and re-hash every blob)",
        help: """
            usage: ckstore fsck [--full]

            Structural check: the SQLite database (integrity_check, foreign keys); every manifest's
            tensor and chunk rows against its stored header and digest; every chunk row against
            its blob file (present, valid header holding the chunk's address, recorded size and
            raw length). --full also
            reads, decodes and re-hashes every blob. Lists every problem and exits 3 if there is
            any; orphan blobs (harmless, collected by gc) are reported as notes. Repairs nothing.
            """,
        run: { (args, globals) throws(CKStoreError) in
            let full = args.flag("--full")
            _ = try args.positionals(max: 0, names: "")
            let store = try Store(path: globals.storePath)
            let report = try store.check(full: full)
            for p in report.problems { Console.out("problem: \(p)") }
            for n in report.notes { Console.out("note: \(n)") }
            let summary =
                "checked \(report.manifestsChecked) manifest(s), \(report.chunksChecked) chunk(s)"
                + (full ? ", decoded \(report.blobsDecoded) blob(s)" : "")
            if report.problems.isEmpty {
                Console.out("ok: \(summary)")
                return 0
            }
            Console.err("ckstore: error: fsck found \(report.problems.count) problem(s); \(summary)")
            return 3
        })
}
