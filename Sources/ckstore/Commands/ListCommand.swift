import CKStore
import CKStoreBackends

/// `ckstore ls`: runs, or the snapshots of one run.
enum ListCommand {
    static let command = Command(
        summary: "list runs, or the snapshots of a run",
        help: """
            usage: ckstore ls [--run RUN] [--json]
                   ckstore ls --derived [--run RUN] [--json]
                   ckstore ls --pending [--run RUN] [--json]
                   ckstore ls [--run RUN] (--lawa … | --swa … | --ema … | --mean …) [--json]

            Without --run: every run with its snapshot count and first and last step.
            With --run: the run's snapshots (step, digest, file count, logical size, stored
            size, time) and the metrics recorded for each step (all variants); FILES is 1 for
            a single safetensors file, the number of files for a directory snapshot.
            With --derived: the cached query results (recipe, digest, size, time).
            With --pending: the snapshots whose parts are still arriving (put --parts), each
            with its parts received (path, digest, size) and its age; not yet visible elsewhere.
            With a query: the snapshots the query would read (as `show` does for a query).

            \(QueryOptions.help)
            """,
        run: { (args, globals) throws(CKStoreError) in
            let run = try args.value("--run")
            let json = args.flag("--json")
            let derived = args.flag("--derived")
            let pending = args.flag("--pending")
            let options = try QueryOptions.parse(&args)
            _ = try args.positionals(max: 0, names: "")
            let store = try Store(path: globals.storePath)
            if let query = options.query {
                let plan = try store.plan(query, run: run)
                if json {
                    // The same keys as `show <query> --json`, including whether it is cached.
                    let lazy = try store.lazyCheckpoint(plan)
                    guard
                        case .object(var fields) = plan.json(copied: lazy.copiedTensors, copiedFiles: lazy.isTree ? lazy.copiedFiles : nil)
                    else { return 2 }
                    fields.append(("cached", try store.cachedResult(for: plan).map { .string("sha256:\($0.hex)") } ?? .null))
                    Console.json(.object(fields))
                } else {
                    var rows = [["INPUT", "STEP", "DIGEST"]]
                    for i in plan.inputs { rows.append([i.label, i.step.map(String.init) ?? "-", "sha256:\(i.digest.hex)"]) }
                    Console.table(rows).forEach(Console.out)
                }
                return 0
            }
            if pending {
                try ListPending.list(store: store, run: run, json: json)
            } else if derived {
                try listDerived(store: store, run: run, json: json)
            } else if let run {
                try listSnapshots(store: store, run: run, json: json)
            } else {
                try listRuns(store: store, json: json)
                if !json { try ListPending.note(store: store) }
            }
            return 0
        })

    private static func listDerived(store: Store, run: String?, json: Bool) throws(CKStoreError) {
        let list = try store.derivedSnapshots(run: run)
        if json {
            Console.json(
                .object([
                    (
                        "derived",
                        .array(
                            list.map { d in
                                .object([
                                    ("recipe", .string(d.recipe)), ("run", d.run.map { .string($0) } ?? .null),
                                    ("digest", .string("sha256:\(d.digest.hex)")), ("logical_bytes", .int(d.logicalBytes)),
                                    ("inputs", .array(d.inputs.split(separator: ",").map { .string(String($0)) })),
                                    ("created_at", .string(Console.timestamp(d.createdAtMilliseconds))),
                                ])
                            })
                    )
                ]))
            return
        }
        if list.isEmpty {
            Console.out("no derived snapshots")
            return
        }
        var rows = [["RECIPE", "DIGEST", "SIZE", "CREATED"]]
        for d in list {
            rows.append([
                d.recipe, "sha256:\(d.digest.hex.prefix(12))", Console.bytes(d.logicalBytes), Console.timestamp(d.createdAtMilliseconds),
            ])
        }
        Console.table(rows).forEach(Console.out)
    }

    private static func listRuns(store: Store, json: Bool) throws(CKStoreError) {
        let runs = try store.runs()
        if json {
            Console.json(
                .object([
                    (
                        "runs",
                        .array(
                            runs.map { r in
                                .object([
                                    ("name", .string(r.name)), ("snapshots", .int(r.snapshotCount)),
                                    ("first_step", r.firstStep.map { .int($0) } ?? .null),
                                    ("last_step", r.lastStep.map { .int($0) } ?? .null),
                                ])
                            })
                    )
                ]))
            return
        }
        if runs.isEmpty {
            Console.out("no runs")
            return
        }
        var rows = [["RUN", "SNAPSHOTS", "FIRST", "LAST"]]
        for r in runs {
            rows.append([r.name, "\(r.snapshotCount)", r.firstStep.map(String.init) ?? "-", r.lastStep.map(String.init) ?? "-"])
        }
        Console.table(rows).forEach(Console.out)
    }

    private static func listSnapshots(store: Store, run: String, json: Bool) throws(CKStoreError) {
        let snapshots = try store.snapshots(run: run)
        let stored = try store.storedBytesByStep(run: run)
        let metrics = try store.metrics(run: run)
        var metricsByStep: [Int: [MetricRecord]] = [:]
        for m in metrics { metricsByStep[m.step, default: []].append(m) }
        if json {
            func metricJSON(_ list: [MetricRecord], withStep: Bool = false) -> JSONValue {
                .array(
                    list.map { m in
                        var fields: [(key: String, value: JSONValue)] = [
                            ("variant", .string(m.variant)), ("name", .string(m.name)), ("value", .double(m.value)),
                        ]
                        if withStep { fields.insert(("step", .int(m.step)), at: 0) }
                        return .object(fields)
                    })
            }
            Console.json(
                .object([
                    ("run", .string(run)),
                    (
                        "snapshots",
                        .array(
                            snapshots.map { s in
                                .object([
                                    ("step", .int(s.step)), ("digest", .string(s.digestString)),
                                    ("logical_bytes", .int(s.logicalBytes)), ("stored_bytes", .int(stored[s.step] ?? 0)),
                                    ("tensors", .int(s.tensorCount)), ("files", .int(s.fileCount)),
                                    ("kind", .string(s.kind == .tree ? "tree" : "file")),
                                    ("created_at", .string(Console.timestamp(s.createdAtMilliseconds))),
                                    ("metrics", metricJSON(metricsByStep[s.step] ?? [])),
                                ])
                            })
                    ),
                    ("metrics", metricJSON(metrics, withStep: true)),
                ]))
            return
        }
        var rows = [["STEP", "DIGEST", "FILES", "SIZE", "STORED", "CREATED", "METRICS"]]
        for s in snapshots {
            let m = (metricsByStep[s.step] ?? []).map { ($0.variant == "raw" ? "" : "\($0.variant):") + "\($0.name)=\($0.value)" }
            rows.append([
                "\(s.step)", "sha256:\(s.digest.hex.prefix(12))", "\(s.fileCount)", Console.bytes(s.logicalBytes),
                Console.bytes(stored[s.step] ?? 0),
                Console.timestamp(s.createdAtMilliseconds), m.joined(separator: " "),
            ])
        }
        Console.table(rows).forEach(Console.out)
        let steps = Set(snapshots.map(\.step))
        let unattached = metrics.filter { !steps.contains($0.step) }
        if !unattached.isEmpty {
            Console.out("metrics at steps without a snapshot:")
            for m in unattached { Console.out("  \(m.step)  \(m.variant):\(m.name)=\(m.value)") }
        }
    }
}
