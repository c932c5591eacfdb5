import CKStore
import CKStoreBackends

#if canImport(Glibc)
    import Glibc
#endif

/// `ckstore put`: store a safetensors file, or a directory of files, as RUN@STEP.
enum PutCommand {
    static let command = Command(
        summary: "store a safetensors file (or a checkpoint directory) as RUN@STEP",
        help: """
            usage: ckstore put --run RUN --step N [--metric NAME=VALUE]... [--force] [--json] FILE|DIR|-
                   ckstore put --run RUN --step N --parts TOTAL --path REL [--force] [--json] FILE|-

            Reads a safetensors file (or standard input with '-'), validates it, cuts each
            tensor into content-addressed chunks (deduplicated, filtered, LZ4-compressed) and
            records it as RUN@STEP. Prints the snapshot digest (sha256:…) on stdout and a
            summary on stderr; on a terminal, a put that takes over a second shows its progress.

            With DIR, stores every regular file under it (recursively; paths relative to DIR,
            '/'-separated, sorted by bytes) as one snapshot, a tree: '*.safetensors' files are
            parsed, validated and chunked by tensor as above, every other file (JSON, tokenizer,
            .pt, ...) is stored as opaque bytes (chunked, LZ4, byte-exact). Symbolic links to
            regular files are followed (the Hugging Face cache layout); a link loop, a dangling
            link, a link to a directory, a FIFO, socket or device, or an empty directory is
            refused (exit 1, naming the path, store unchanged). Files identical to ones already
            stored (a config.json unchanged across steps) cost nothing. The digest printed is the
            tree's (docs/FORMAT.md); a single file keeps the digest it always had.

            A missing store is created only at a location given explicitly (--store or
            $CKSTORE_DIR), with a note on stderr; the ./.ckstore default must exist already
            ('ckstore init' creates it), so that a put in the wrong folder creates nothing.

            Putting identical content at an existing RUN@STEP is a no-op that prints the same
            digest; different content there is refused unless --force replaces it.

              --run RUN              run name (no '@', ',', spaces, control or invisible
                                     characters; Unicode NFC)
              --step N               training step (non-negative integer)
              --metric NAME=VALUE    record a metric for this step (repeatable, one per NAME)
              --force                replace different content at RUN@STEP (drops the metrics
                                     measured on the old content, and says how many)
              --json                 print the result as JSON on stdout instead of the digest
              --quiet                no summary and no progress on stderr

            \(PutPartCommand.help)
            """,
        run: { (args, globals) throws(CKStoreError) in
            guard let run = try args.value("--run") else { throw args.usage("--run is required") }
            guard let step = try args.integer("--step") else { throw args.usage("--step is required") }
            if let parts = try PutPartCommand.parse(&args, run: run, step: step) {
                return try PutPartCommand.run(parts, &args, globals)
            }
            let metrics = try parseMetrics(try args.values("--metric"), command: "put")
            let force = args.flag("--force")
            let quiet = args.flag("--quiet")
            let json = args.flag("--json")
            let file = try args.positionals(min: 1, max: 1, names: "FILE or DIR (or - for standard input)")[0]
            try Store.validateRunName(run)
            let store = try openForPut(globals)
            let progress = ProgressDisplay.make(quiet: quiet, verb: "put")
            store.progressHandler = progress.map { display in { display.update($0) } }
            defer { progress?.clear() }
            let isDirectory: Bool
            if file != "-", case .success(let st) = Sys.fileStatus(file) { isDirectory = st.isDirectory } else { isDirectory = false }
            let report =
                isDirectory
                ? try store.put(directory: file, run: run, step: step, metrics: metrics, force: force)
                : try store.put(from: file == "-" ? .standardInput : .file(file), run: run, step: step, metrics: metrics, force: force)
            progress?.clear()
            if json {
                Console.json(reportJSON(report, run: run, step: step))
            } else {
                Console.out("sha256:\(report.digest.hex)")
            }
            if !quiet {
                let what: String
                switch report.outcome {
                case .created: what = "stored"
                case .unchanged: what = "unchanged (identical content already at \(run)@\(step))"
                case .replaced(let previous): what = "replaced sha256:\(previous.hex.prefix(12))…"
                }
                let mbps = report.seconds > 0 ? Double(report.bytesIn) / report.seconds / 1e6 : 0
                Console.err(
                    "\(run)@\(step): \(what); \(isDirectory ? "\(report.fileCount) files, " : "")\(Console.bytes(report.bytesIn)) in, \(Console.bytes(report.bytesStored)) stored, "
                        + "\(report.newChunks) new chunks, \(report.dedupHits) dedup hits, "
                        + (report.repairedBlobs > 0 ? "\(report.repairedBlobs) missing or damaged blob(s) rewritten, " : "")
                        + "\(Console.format(report.seconds, decimals: 2)) s, \(Console.format1(mbps)) MB/s"
                        + (report.droppedMetrics > 0 ? "; dropped \(report.droppedMetrics) metric(s) measured on the old content" : ""))
            }
            return 0
        })

    /// Opens the store for a put: a missing store is created only where the user said
    /// (--store or $CKSTORE_DIR), never at the ./.ckstore default of whatever folder this is.
    /// Opening and creating go through `Store(path:)` and `Store.openOrCreate(path:)`, so every
    /// check those make on an existing or half-present store applies to put as well.
    static func openForPut(_ globals: GlobalOptions) throws(CKStoreError) -> Store {
        let path = globals.storePath
        let existed = (try? StoreFactories.factory(for: path).exists(path)) ?? false
        if existed || !globals.storeIsExplicit {
            do {
                return try Store(path: path)
            } catch  where error.code == .notFound && !globals.storeIsExplicit {
                throw CKStoreError(
                    .notFound,
                    "no store at \(path) (the default, in the current folder); run 'ckstore init' to create it, "
                        + "or give the store with --store PATH or $CKSTORE_DIR")
            }
        }
        let store = try Store.openOrCreate(path: path)
        if !existed { Console.err("ckstore: created store at \(path)") }
        return store
    }

    /// The put's result as JSON.
    private static func reportJSON(_ report: PutReport, run: String, step: Int) -> JSONValue {
        let outcome: String
        var previous: JSONValue = .null
        switch report.outcome {
        case .created: outcome = "created"
        case .unchanged: outcome = "unchanged"
        case .replaced(let p):
            outcome = "replaced"
            previous = .string("sha256:\(p.hex)")
        }
        return .object([
            ("ref", .string("\(run)@\(step)")), ("run", .string(run)), ("step", .int(step)),
            ("digest", .string("sha256:\(report.digest.hex)")), ("outcome", .string(outcome)), ("previous", previous),
            ("bytes_in", .int(report.bytesIn)), ("bytes_stored", .int(report.bytesStored)), ("chunks", .int(report.chunkCount)),
            ("new_chunks", .int(report.newChunks)), ("dedup_hits", .int(report.dedupHits)), ("seconds", .double(report.seconds)),
            ("files", .int(report.fileCount)),
        ])
    }
}
