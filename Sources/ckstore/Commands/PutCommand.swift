import CKStore

/// `ckstore put`: store a safetensors file as RUN@STEP.
enum PutCommand {
    static let command = Command(
        summary: "store a safetensors file as RUN@STEP",
        help: """
            usage: ckstore put --run RUN --step N [--metric NAME=VALUE]... [--force] FILE|-

            Reads a safetensors file (or standard input with '-'), validates it, cuts each
            tensor into content-addressed chunks (deduplicated, filtered, LZ4-compressed) and
            records it as RUN@STEP. Prints the snapshot digest (sha256:…) on stdout and a
            summary on stderr. Creates the store when missing.

            Putting identical content at an existing RUN@STEP is a no-op that prints the same
            digest; different content there is refused unless --force replaces it.

              --run RUN              run name (no '@', ',', spaces or control characters)
              --step N               training step (non-negative integer)
              --metric NAME=VALUE    record a metric for this step (repeatable)
              --force                replace different content at RUN@STEP (drops the metrics
                                     measured on the old content, and says how many)
              --quiet                no summary on stderr
            """,
        run: { (args, globals) throws(CKStoreError) in
            guard let run = try args.value("--run") else { throw args.usage("--run is required") }
            guard let step = try args.integer("--step") else { throw args.usage("--step is required") }
            let metrics = try parseMetrics(try args.values("--metric"), command: "put")
            let force = args.flag("--force")
            let quiet = args.flag("--quiet")
            let file = try args.positionals(min: 1, max: 1, names: "FILE (or - for standard input)")[0]
            try Store.validateRunName(run)
            let store = try Store.openOrCreate(path: globals.storePath)
            let report = try store.put(
                from: file == "-" ? .standardInput : .file(file), run: run, step: step, metrics: metrics, force: force)
            Console.out("sha256:\(report.digest.hex)")
            if !quiet {
                let what: String
                switch report.outcome {
                case .created: what = "stored"
                case .unchanged: what = "unchanged (identical content already at \(run)@\(step))"
                case .replaced(let previous): what = "replaced sha256:\(previous.hex.prefix(12))…"
                }
                let mbps = report.seconds > 0 ? Double(report.bytesIn) / report.seconds / 1e6 : 0
                Console.err(
                    "\(run)@\(step): \(what); \(Console.bytes(report.bytesIn)) in, \(Console.bytes(report.bytesStored)) stored, "
                        + "\(report.newChunks) new chunks, \(report.dedupHits) dedup hits, "
                        + (report.repairedBlobs > 0 ? "\(report.repairedBlobs) missing or damaged blob(s) rewritten, " : "")
                        + "\(Console.format(report.seconds, decimals: 2)) s, \(Console.format1(mbps)) MB/s"
                        + (report.droppedMetrics > 0 ? "; dropped \(report.droppedMetrics) metric(s) measured on the old content" : ""))
            }
            return 0
        })
}
