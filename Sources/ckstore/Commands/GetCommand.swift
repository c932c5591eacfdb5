import CKStore
import CKStoreBackends

/// `ckstore get`: write a stored snapshot, or a query's result, as a safetensors file.
enum GetCommand {
    static let command = Command(
        summary: "write a snapshot (or an average of snapshots) as a safetensors file",
        help: """
            usage: ckstore get REF -o FILE|-
                   ckstore get REF -o DIR [--force]            (a directory snapshot)
                   ckstore get REF --file PATH -o FILE|-       (one file of a directory snapshot)
                   ckstore get [--run RUN] (--lawa … | --swa … | --ema …) --at STEP -o FILE|- [--no-cache]
                   ckstore get --mean REF,REF,… [--weights W,W,…] -o FILE|- [--no-cache]
                   ckstore get QUERY -o DIR [--force] | --file PATH -o FILE|-   (directory snapshots)

            With REF, writes the exact bytes that were put (same SHA-256 as the original file).
            REF is RUN@STEP, RUN@latest, sha256:<64 hex>, or a unique hex prefix of at least 8
            digits.

            With a query, averages the selected snapshots chunk by chunk (Float64 accumulation
            in ascending step order, one rounding to each tensor's dtype; integer and bool
            tensors are copied from the newest input) and writes a safetensors file with the
            newest input's layout and __metadata__ plus ckstore.recipe and ckstore.inputs. The
            result is cached as a derived snapshot: asking again returns it without recomputing,
            once it is checked against the query (recipe, input digests, header); a cached result
            that fails the check or whose blobs are damaged is dropped and recomputed (a warning
            on stderr says why). --weights must be finite, ≥ 0, not all zero, with a finite sum.

            Every chunk read is checked (header bounds and checksum, the chunk address the header
            records against the blob's name, XXH64 checksum of the stored bytes, decoded length;
            with --verify or verify_reads "sha256" also the SHA-256 of the decoded bytes against
            the chunk's name); a missing, damaged or misplaced blob is exit 3. -o FILE writes
            atomically (a temporary file renamed into place, removed if ckstore is interrupted);
            -o - writes to standard output. When FILE is a symlink, its target is replaced and
            the link kept; a device, FIFO or /dev/stdout is written in place. On a terminal, a
            get that takes over a second shows its progress on stderr.

            A directory snapshot (put from a DIR) is recreated with -o DIR: every file
            byte-identical, the same set of paths. It is written into a temporary sibling
            (.DIR.tmp-…) and renamed into place when complete, so a failed or killed get leaves
            nothing under DIR. An existing empty DIR is replaced; a non-empty one only with
            --force (its old content is deleted). --file PATH writes one file of the tree to
            FILE or standard output; -o - without --file is a usage error for a tree.

            When the inputs are directory snapshots, they are matched file by file (same
            relative path) and tensor by tensor: every input must hold the same .safetensors
            paths with the same tensors (name, dtype, shape), so per-rank shards average with
            their own rank's slice. The result is a directory with the newest input's layout,
            written with -o DIR (a temporary sibling renamed into place; a non-empty DIR only
            with --force); every other file (config, tokenizer, …) and every integer tensor is
            copied from the newest input, and every safetensors file's __metadata__ carries
            ckstore.recipe and ckstore.inputs. -o - is a usage error for a directory result
            unless --file PATH selects one file of it (served from the cached result when there
            is one; otherwise only that file is computed, and not cached). Single-file and
            directory inputs cannot be mixed.

            \(QueryOptions.help)
              --no-cache                compute without storing the result
              --verify                  also re-hash every chunk read with SHA-256
              --file PATH               one file of a directory snapshot (or of a directory result)
              --force                   replace a non-empty -o DIR
              --quiet                   no summary and no progress on stderr
            """,
        run: { (args, globals) throws(CKStoreError) in
            let short = try args.value("-o")
            let long = try args.value("--output")
            guard let out = short ?? long else { throw args.usage("-o FILE|- is required") }
            let quiet = args.flag("--quiet")
            let noCache = args.flag("--no-cache")
            let verify = args.flag("--verify")
            let run = try args.value("--run")
            let filePath = try args.value("--file")
            let force = args.flag("--force")
            let options = try QueryOptions.parse(&args)
            let target: OutputTarget = out == "-" ? .standardOutput : .file(out)
            let progress = ProgressDisplay.make(quiet: quiet, verb: "get")
            defer { progress?.clear() }
            if let query = options.query {
                _ = try args.positionals(max: 0, names: "")
                let store = try Store(path: globals.storePath)
                store.forceSHA256Verification = verify
                store.progressHandler = progress.map { display in { display.update($0) } }
                let output: AverageOutput
                if let filePath {
                    output = .treeFile(filePath, target)
                } else if out == "-" {
                    output = .file(.standardOutput)
                } else {
                    output = .automatic(out, force: force)
                }
                let report = try store.materialize(try store.plan(query, run: run), output: output, useCache: !noCache)
                progress?.clear()
                let plan = report.plan
                for note in report.cacheNotes { Console.err("ckstore: warning: \(note)") }
                if !quiet {
                    let source = report.fromCache ? "from the cache" : "computed from \(plan.inputs.count) inputs"
                    // Directory results say how many files they hold ("1 file" with --file).
                    let files =
                        report.files == 1 && report.copiedFiles.isEmpty && filePath == nil
                        ? "" : "\(report.files) file\(report.files == 1 ? "" : "s"), "
                    var line =
                        "\(plan.recipe): \(source), \(files)\(Console.bytes(report.bytesOut)) in \(Console.format(report.seconds, decimals: 2)) s"
                    if let d = report.derivedDigest { line += "; derived sha256:\(d.hex.prefix(12))…" }
                    Console.err(line)
                    if !report.copiedTensors.isEmpty {
                        Console.err(
                            "copied from \(plan.inputs.last!.label) (not averaged): \(report.copiedTensors.joined(separator: ", "))")
                    }
                    if !report.copiedFiles.isEmpty {
                        Console.err("side files copied from \(plan.inputs.last!.label): \(report.copiedFiles.joined(separator: ", "))")
                    }
                }
                return 0
            }
            if noCache { throw args.usage("--no-cache applies to queries only") }
            if run != nil { throw args.usage("--run applies to queries only (use REF = RUN@STEP)") }
            let refText = try args.positionals(min: 1, max: 1, names: "REF")[0]
            let store = try Store(path: globals.storePath)
            store.forceSHA256Verification = verify
            store.progressHandler = progress.map { display in { display.update($0) } }
            let resolved = try store.resolve(try SnapshotRef.parse(refText))
            let report: GetReport
            if let filePath {
                report = try store.restoreFile(resolved, path: filePath, to: target)
            } else if try store.contentKind(of: resolved) == .tree {
                guard out != "-" else {
                    throw args.usage("\(resolved.label) is a directory snapshot: -o - needs --file PATH (or give -o DIR)")
                }
                report = try store.restoreTree(resolved, toDirectory: out, force: force)
            } else {
                if force { throw args.usage("--force applies to directory snapshots (-o DIR)") }
                report = try store.restore(resolved, to: target)
            }
            progress?.clear()
            if !quiet && out != "-" {
                let mbps = report.seconds > 0 ? Double(report.bytesOut) / report.seconds / 1e6 : 0
                Console.err(
                    "\(resolved.label): wrote \(Console.bytes(report.bytesOut)) to \(out) in \(Console.format(report.seconds, decimals: 2)) s, \(Console.format1(mbps)) MB/s"
                )
            }
            return 0
        })
}
