import CKStore
import CKStoreBackends

/// `ckstore plot`: a metric against step, raw and each variant, as an SVG file.
enum PlotCommand {
    static let command = Command(
        summary: "draw a metric against step for raw snapshots and each variant (SVG)",
        help: """
            usage: ckstore plot --run RUN --metric NAME -o FILE.svg [--title TEXT]
                   ckstore plot --run RUN --metric NAME --heatmap --at S -o FILE.svg
                                [--lawa k=K[,K…]] [--stride NU[,NU…]] [--title TEXT]

            Draws the metric recorded with `ckstore metric` (or `put --metric`) against step:
            one line for the raw snapshots and one per variant (e.g. lawa-k6-s1000), as a
            self-contained SVG with axes, ticks and a legend. -o - writes to standard output.

            With --heatmap, draws the metric at step S over LAWA (k, ν) instead (what
            `ckstore sweep` computes): one row per k, one column per ν, each cell coloured and
            labelled with the value recorded under the variant lawa-k{K}-s{NU}; a cell with no
            value is hatched and labelled "missing". The rows and columns are the k and ν of
            the variants recorded at S, or those given with --lawa and --stride.
            """,
        run: { (args, globals) throws(CKStoreError) in
            guard let run = try args.value("--run") else { throw args.usage("--run is required") }
            guard let metric = try args.value("--metric") else { throw args.usage("--metric is required") }
            guard let out = try args.value("-o") else { throw args.usage("-o FILE.svg is required") }
            let title = try args.value("--title")
            if args.flag("--heatmap") { return try heatmap(&args, globals, run: run, metric: metric, out: out, title: title) }
            for option in ["--at", "--lawa", "--stride"] where try args.value(option) != nil {
                throw args.usage("\(option) goes with --heatmap")
            }
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
    /// `plot --heatmap`: the metric at one step over LAWA (k, ν).
    private static func heatmap(
        _ args: inout Arguments, _ globals: GlobalOptions, run: String, metric: String, out: String, title: String?
    ) throws(CKStoreError) -> Int32 {
        guard let atText = try args.value("--at") else { throw args.usage("--heatmap needs --at S") }
        guard let at = Int(atText), at >= 0 else { throw args.usage("--at must be a step ≥ 0, got '\(atText)'") }
        let lawa = try args.value("--lawa")
        let strideText = try args.value("--stride")
        _ = try args.positionals(max: 0, names: "")
        var ks: [Int]?
        var strides: [Int]?
        if let lawa {
            guard lawa.hasPrefix("k=") else { throw args.usage("--lawa takes k=K[,K…]") }
            ks = try SweepCommand.integers(String(lawa.dropFirst(2)), "--lawa k", args)
        }
        if let strideText { strides = try SweepCommand.integers(strideText, "--stride", args) }
        do {
            try SweepPlan.validate(ks: ks ?? [1], strides: strides ?? [1], steps: [at])
        } catch {
            throw args.usage(error.message)
        }
        let store = try Store(path: globals.storePath)
        _ = try store.snapshots(run: run)
        var values: [SweepCombination: Double] = [:]
        for r in try store.metrics(run: run) where r.name == metric && r.step == at {
            if let c = lawaCombination(r.variant) { values[c] = r.value }
        }
        let rows = ks ?? Array(Set(values.keys.map(\.k))).sorted()
        let columns = strides ?? Array(Set(values.keys.map(\.stride))).sorted()
        guard !rows.isEmpty, !columns.isEmpty else {
            throw CKStoreError(.notFound, "run '\(run)' has no metric '\(metric)' for a LAWA variant at step \(at)")
        }
        let shown = values.filter { rows.contains($0.key.k) && columns.contains($0.key.stride) }
        let map = SVGHeatmap(
            ks: rows, strides: columns, values: shown, title: title ?? "\(metric) at step \(at) — \(run)", metric: metric)
        let output = try OutputWriter(out == "-" ? .standardOutput : .file(out))
        try output.write(Array(map.render().utf8))
        try output.commit()
        if out != "-" {
            Console.err(
                "wrote \(out): \(metric) at step \(at), \(shown.count) of \(rows.count * columns.count) (k, stride) cells with a value")
        }
        return 0
    }

    /// The (k, ν) of a canonical LAWA variant name `lawa-k{K}-s{NU}`, or nil.
    static func lawaCombination(_ variant: String) -> SweepCombination? {
        let parts = variant.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "lawa", parts[1].hasPrefix("k"), parts[2].hasPrefix("s"),
            let k = Int(parts[1].dropFirst()), let stride = Int(parts[2].dropFirst()), k >= 1, stride >= 1
        else { return nil }
        let combination = SweepCombination(k: k, stride: stride)
        return combination.variantName == variant ? combination : nil
    }
}
