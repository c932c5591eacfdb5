import CKStore

/// `ckstore put --parts TOTAL --path REL FILE|-`: one file of a snapshot pushed part by part
/// (one per rank), which becomes visible when TOTAL distinct paths have been put.
enum PutPartCommand {
    /// The part options of a put.
    struct Options {
        let run: String
        let step: Int
        let total: Int
        let path: String
    }

    /// The paragraph of `put --help` about parts.
    static let help = """
        Parts (one file per rank): with --parts TOTAL --path REL, FILE (or '-') becomes the
        file at REL inside the snapshot RUN@STEP, which stays *pending*, invisible to get, ls,
        queries and watch, until TOTAL distinct paths have been put; the put that brings the
        count to TOTAL makes it a complete tree snapshot in the same transaction (exactly once,
        whichever ranks finish together). A REL ending in '.safetensors' is parsed and chunked
        by tensor, anything else is stored as opaque bytes. stdout: line 1 is the part's own
        digest (sha256:…); the completing put prints a line 2, the snapshot's digest (with
        --json, one object: "digest" is the part's, "snapshot" {digest, outcome} or null,
        "present"/"total" the count after this put). Re-putting
        an identical part is a no-op; different content at REL, or parts for a RUN@STEP that is
        already complete, are refused (exit 1) unless --force (a complete snapshot is then
        replaced when the new parts complete); a TOTAL that disagrees with the pending
        snapshot's is exit 1. 'ckstore ls --pending' lists pending snapshots; 'ckstore gc
        --pending' removes them, plain gc removes those older than pending_grace (config,
        default 24 h). A part is acknowledged once its put exits 0: a crash loses no
        acknowledged part.

          --parts TOTAL          the number of distinct paths that completes the snapshot
                                 (1 to 100000; every part gives the same TOTAL)
          --path REL             the part's path inside the snapshot: relative, '/'-separated,
                                 no '..', '.', empty component, leading '/' or NUL (required
                                 with --parts)
        """

    /// Reads --parts and --path; nil when neither is given.
    static func parse(_ args: inout Arguments, run: String, step: Int) throws(CKStoreError) -> Options? {
        let total = try args.integer("--parts")
        let path = try args.value("--path")
        guard let total else {
            if path != nil { throw args.usage("--path is only used with --parts TOTAL") }
            return nil
        }
        guard let path else { throw args.usage("--parts needs --path REL (the part's path inside the snapshot)") }
        guard (1...PendingSnapshot.maxParts).contains(total) else {
            throw args.usage("--parts must be from 1 to \(PendingSnapshot.maxParts), got \(total)")
        }
        if let problem = TreePath.problem(path) {
            throw args.usage("--path '\(path)' is not a clean relative path: \(problem)")
        }
        return Options(run: run, step: step, total: total, path: path)
    }

    /// Puts one part and reports it.
    static func run(_ options: Options, _ args: inout Arguments, _ globals: GlobalOptions) throws(CKStoreError) -> Int32 {
        if !(try args.values("--metric")).isEmpty {
            throw args.usage("--metric cannot be given with --parts (record metrics with 'ckstore metric' once the snapshot is complete)")
        }
        let force = args.flag("--force")
        let quiet = args.flag("--quiet")
        let json = args.flag("--json")
        let file = try args.positionals(min: 1, max: 1, names: "FILE (or - for standard input)")[0]
        try Store.validateRunName(options.run)
        if file != "-", case .success(let st) = Sys.fileStatus(file), st.isDirectory {
            throw CKStoreError(.badInput, "\(file) is a directory; a part is one file (put a whole directory without --parts)")
        }
        let store = try PutCommand.openForPut(globals)
        let progress = ProgressDisplay.make(quiet: quiet, verb: "put")
        store.progressHandler = progress.map { display in { display.update($0) } }
        defer { progress?.clear() }
        let report = try store.put(
            part: file == "-" ? .standardInput : .file(file), path: options.path, run: options.run, step: options.step,
            total: options.total, force: force)
        progress?.clear()
        let ref = "\(options.run)@\(options.step)"
        if json {
            Console.json(reportJSON(report, ref: ref, options: options))
        } else {
            Console.out("sha256:\(report.put.digest.hex)")
            if let completed = report.pending.completed { Console.out("sha256:\(completed.digest.hex)") }
        }
        if !quiet { Console.err(summary(report, ref: ref, path: options.path)) }
        return 0
    }

    /// The summary line on stderr.
    private static func summary(_ report: PartReport, ref: String, path: String) -> String {
        let put = report.put
        let what: String
        switch put.outcome {
        case .created: what = "stored"
        case .unchanged: what = "unchanged (identical part already there)"
        case .replaced(let previous): what = "replaced sha256:\(previous.hex.prefix(12))…"
        }
        var line =
            "\(ref): part '\(path)' \(what); \(Console.bytes(put.bytesIn)) in, \(Console.bytes(put.bytesStored)) stored, "
            + "\(put.newChunks) new chunks, \(put.dedupHits) dedup hits; "
        if let completed = report.pending.completed {
            let how: String
            switch completed.outcome {
            case .created: how = "created"
            case .unchanged: how = "already complete"
            case .replaced(let previous): how = "replaced sha256:\(previous.hex.prefix(12))…"
            }
            line += "snapshot complete (\(report.pending.total) parts), \(how): sha256:\(completed.digest.hex)"
            if completed.droppedMetrics > 0 { line += "; dropped \(completed.droppedMetrics) metric(s) measured on the old content" }
        } else {
            line += "\(report.pending.present) of \(report.pending.total) parts present (pending)"
        }
        return line
    }

    /// The result as JSON.
    private static func reportJSON(_ report: PartReport, ref: String, options: Options) -> JSONValue {
        let part: String
        var previous: JSONValue = .null
        switch report.put.outcome {
        case .created: part = "added"
        case .unchanged: part = "unchanged"
        case .replaced(let p):
            part = "replaced"
            previous = .string("sha256:\(p.hex)")
        }
        var snapshot: JSONValue = .null
        if let completed = report.pending.completed {
            let outcome: String
            switch completed.outcome {
            case .created: outcome = "created"
            case .unchanged: outcome = "unchanged"
            case .replaced: outcome = "replaced"
            }
            snapshot = .object([("digest", .string("sha256:\(completed.digest.hex)")), ("outcome", .string(outcome))])
        }
        return .object([
            ("ref", .string(ref)), ("run", .string(options.run)), ("step", .int(options.step)), ("path", .string(options.path)),
            ("digest", .string("sha256:\(report.put.digest.hex)")), ("part", .string(part)), ("previous", previous),
            ("present", .int(report.pending.present)), ("total", .int(report.pending.total)),
            ("complete", .bool(report.pending.completed != nil)), ("snapshot", snapshot),
            ("bytes_in", .int(report.put.bytesIn)), ("bytes_stored", .int(report.put.bytesStored)),
            ("new_chunks", .int(report.put.newChunks)), ("dedup_hits", .int(report.put.dedupHits)),
            ("seconds", .double(report.put.seconds)),
        ])
    }
}
