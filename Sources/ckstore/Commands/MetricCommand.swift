import CKStore
import CKStoreBackends

/// `ckstore metric`: record evaluation results for RUN@STEP.
enum MetricCommand {
    static let command = Command(
        summary: "record metric values (e.g. val_loss) for RUN@STEP",
        help: """
            usage: ckstore metric RUN@STEP NAME=VALUE... [--variant NAME]

            Records evaluation results for a step of a run, replacing earlier values of the same
            names. --variant names what was evaluated: 'raw' (the default) for the snapshot
            itself, or e.g. 'lawa-k6-s1000' for a LAWA average (what `watch` passes as
            {variant}). `ls --run RUN` shows them and `plot` draws them.
            """,
        run: { (args, globals) throws(CKStoreError) in
            let variant = try args.value("--variant") ?? "raw"
            let items = try args.positionals(min: 2, names: "RUN@STEP and at least one NAME=VALUE")
            guard items[0].contains("@"), case .step(let run, let step) = try SnapshotRef.parse(items[0]) else {
                throw args.usage(
                    "the first argument must be RUN@STEP (e.g. \(items[0].split(separator: "@").first ?? "run")@1000), got '\(items[0])'")
            }
            guard !variant.isEmpty, !variant.contains(where: { $0 == " " || $0 == "," }) else {
                throw args.usage("--variant must be a non-empty name without spaces or commas")
            }
            try Store.validateName(variant, kind: "variant name")
            let values = try parseMetrics(Array(items.dropFirst()), command: "metric")
            let store = try Store(path: globals.storePath)
            try store.recordMetrics(run: run, step: step, variant: variant, values: values)
            return 0
        })
}
