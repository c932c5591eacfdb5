import CKStore
import CKStoreBackends

/// `ckstore show`: the tensors and metadata of a snapshot.
enum ShowCommand {
    static let command = Command(
        summary: "show a snapshot's tensors and metadata",
        help: """
            usage: ckstore show REF [--json]
                   ckstore show [--run RUN] (--lawa … | --swa … | --ema …) --at STEP [--json]
                   ckstore show --mean REF,REF,… [--weights W,W,…] [--json]

            With REF: the tensors (name, dtype, shape, bytes, chunks) in data-section order and
            the file's __metadata__. REF is RUN@STEP, RUN@latest, sha256:<64 hex> or a hex prefix.
            For a directory snapshot: its files (path, kind, size, digest) sorted by path, then
            the tensors and __metadata__ of each safetensors file.

            With a query: what the query would read, without reading it: the recipe, the input
            steps and digests (oldest first), how they are combined, which tensors would be
            copied rather than averaged, and whether the result is already cached.

            \(QueryOptions.help)
            """,
        run: { (args, globals) throws(CKStoreError) in
            let json = args.flag("--json")
            let run = try args.value("--run")
            let options = try QueryOptions.parse(&args)
            if let query = options.query {
                _ = try args.positionals(max: 0, names: "")
                let store = try Store(path: globals.storePath)
                try showPlan(store: store, plan: try store.plan(query, run: run), json: json)
                return 0
            }
            if run != nil { throw args.usage("--run applies to queries only (use REF = RUN@STEP)") }
            let refText = try args.positionals(min: 1, max: 1, names: "REF")[0]
            let store = try Store(path: globals.storePath)
            let resolved = try store.resolve(try SnapshotRef.parse(refText))
            if try store.contentKind(of: resolved) == .tree {
                try showTree(store: store, resolved: resolved, json: json)
                return 0
            }
            let manifest = try store.manifest(of: resolved)
            let metadata = (try? SafetensorsHeader.parse(headerBytes: manifest.headerBytes))?.metadata ?? []
            if json {
                Console.json(
                    .object([
                        ("ref", .string(resolved.label)), ("digest", .string("sha256:\(manifest.digest.hex)")),
                        ("logical_bytes", .int(manifest.fileLength)),
                        ("metadata", .object(metadata.map { ($0.key, .string($0.value)) })),
                        (
                            "tensors",
                            .array(
                                manifest.tensors.map { t in
                                    .object([
                                        ("name", .string(t.info.name)), ("dtype", .string(t.info.dtype.rawValue)),
                                        ("shape", .array(t.info.shape.map { .int($0) })), ("bytes", .int(t.info.byteCount)),
                                        ("chunks", .int(t.chunks.count)),
                                    ])
                                })
                        ),
                    ]))
                return 0
            }
            Console.out("\(resolved.label)  sha256:\(manifest.digest.hex)  \(Console.bytes(manifest.fileLength))")
            for (k, v) in metadata { Console.out("metadata \(k) = \(v)") }
            var rows = [["TENSOR", "DTYPE", "SHAPE", "BYTES", "CHUNKS"]]
            for t in manifest.tensors {
                rows.append([
                    t.info.name, t.info.dtype.rawValue, "[" + t.info.shape.map(String.init).joined(separator: ", ") + "]",
                    "\(t.info.byteCount)", "\(t.chunks.count)",
                ])
            }
            Console.table(rows).forEach(Console.out)
            return 0
        })

    private static func showPlan(store: Store, plan: QueryPlan, json: Bool) throws(CKStoreError) {
        let lazy = try store.lazyCheckpoint(plan)
        let cached = try store.cachedResult(for: plan)
        if json {
            guard case .object(var fields) = plan.json(copied: lazy.copiedTensors) else { return }
            fields.append(("cached", cached.map { .string("sha256:\($0.hex)") } ?? .null))
            Console.json(.object(fields))
            return
        }
        Console.out("recipe   \(plan.recipe)")
        switch plan.combination {
        case .uniform: Console.out("combine  uniform mean of \(plan.inputs.count) inputs")
        case .weighted(let w): Console.out("combine  weighted mean, weights \(w.map { "\($0)" }.joined(separator: ", "))")
        case .ema(let d): Console.out("combine  EMA over \(plan.inputs.count) stored snapshots, decay \(d)")
        }
        Console.out("cached   " + (cached.map { "yes, sha256:\($0.hex)" } ?? "no"))
        var rows = [["INPUT", "DIGEST"]]
        for input in plan.inputs { rows.append([input.label, "sha256:\(input.digest.hex)"]) }
        Console.table(rows).forEach(Console.out)
        if !lazy.copiedTensors.isEmpty {
            Console.out("copied from \(plan.inputs.last!.label) (not averaged): \(lazy.copiedTensors.joined(separator: ", "))")
        }
    }
}
