import CKStore
import CKStoreBackends

/// `ckstore plot`: a metric against step, raw and each variant, as an SVG file.
enum PlotCommand {
    static let command = Command(
        summary: "draw a metric against step for raw snapshots and each variant (SVG)",
        help: """
            usage: ckstore plot --run RUN --metric NAME -o FILE.svg [--title TEXT]

            Draws the metric recorded with `ckstore metric` (or `put --metric`) against step:
            one line for the raw snapshots and one per variant (e.g. lawa-k6-s1000), as a
            self-contained SVG with axes, ticks and a legend. -o - writes to standard output.
            """,
        run: { (args, globals) throws(CKStoreError) in
            guard let run = try args.value("--run") else { throw args.usage("--run is required") }
            guard let metric = try args.value("--metric") else { throw args.usage("--metric is required") }
            guard let out = try args.value("-o") else { throw args.usage("-o FILE.svg is required") }
            let title = try args.value("--title")
            _ = try args.positionals(max: 0, names: "")
            let store = try Store(path: globals.storePath)
            _ = try store.snapshots(run: run)
            let records = try store.metrics(run: run).filter { $0.name == metric }
            guard !records.isEmpty else { throw CKStoreError(.notFound, "run '\(run)' has no metric '\(metric)'") }
            var byVariant: [String: [(x: Double, y: Double)]] = [:]
            for r in records { byVariant[r.variant, default: []].append((Double(r.step), r.value)) }
            let names = byVariant.keys.sorted { ($0 == "raw" ? "" : $0) < ($1 == "raw" ? "" : $1) }
            let plot = SVGPlot(
                title: title ?? "\(metric) — \(run)", xLabel: "step", yLabel: metric,
                series: names.map { SVGPlot.Series(name: $0, points: byVariant[$0]!) })
            let output = try OutputWriter(out == "-" ? .standardOutput : .file(out))
            try output.write(Array(plot.render().utf8))
            try output.commit()
            if out != "-" { Console.err("wrote \(out): \(metric) for \(names.joined(separator: ", "))") }
            return 0
        })
}
