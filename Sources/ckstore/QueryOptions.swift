import CKStore

/// The query options shared by `get`, `show` and `ls`:
/// `--lawa k=K,stride=NU | --swa [start=S][,stride=NU] | --ema decay=D[,start=S][,stride=NU]`
/// with `--at STEP`, or `--mean REF,REF,… [--weights W,W,…]`, and `--run RUN`.
struct QueryOptions {
    /// The query, or nil when no query option was given.
    let query: AverageQuery?

    /// The help text describing the options.
    static let help = """
          --lawa k=K,stride=NU      mean of the snapshots at STEP, STEP−NU, …, STEP−(K−1)·NU (all must exist;
                                    1 ≤ K ≤ 10000, NU ≥ 1)
          --swa [start=S][,stride=NU]
                                    uniform mean of the stored snapshots with S ≤ step ≤ STEP
                                    (only those with (STEP − step) divisible by NU, with stride)
          --ema decay=D[,start=S][,stride=NU]
                                    exponential moving average over the same selection, oldest
                                    first: e = w₀, e ← D·e + (1−D)·w (over stored snapshots,
                                    not over every optimizer step)
          --at STEP                 the step a --lawa/--swa/--ema query is taken at
          --mean REF,REF,…          mean of arbitrary snapshots (e.g. across runs: a model soup)
          --weights W,W,…           weights for --mean, normalized to sum to 1
          --run RUN                 the run (may be omitted when the store holds one run)
        """

    /// Removes the query options from `args`.
    static func parse(_ args: inout Arguments) throws(CKStoreError) -> QueryOptions {
        let lawa = try args.value("--lawa")
        let swa = try args.value("--swa")
        let ema = try args.value("--ema")
        let mean = try args.value("--mean")
        let weights = try args.value("--weights")
        let at = try args.integer("--at")
        let given = [lawa, swa, ema, mean].compactMap { $0 }
        guard given.count <= 1 else { throw args.usage("give only one of --lawa, --swa, --ema, --mean") }
        if weights != nil && mean == nil { throw args.usage("--weights goes with --mean") }
        if mean != nil && at != nil { throw args.usage("--at does not apply to --mean (its refs name the steps)") }
        if given.isEmpty {
            if at != nil { throw args.usage("--at needs --lawa, --swa or --ema") }
            return QueryOptions(query: nil)
        }
        if let mean { return QueryOptions(query: try AverageQuery.parseMean(mean, weights: weights)) }
        guard let at else { throw args.usage("--at STEP is required with --lawa, --swa and --ema") }
        do {
            if let lawa { return QueryOptions(query: try AverageQuery.parseLAWA(lawa, at: at)) }
            if let swa { return QueryOptions(query: try AverageQuery.parseSWA(swa, at: at)) }
            return QueryOptions(query: try AverageQuery.parseEMA(ema!, at: at))
        } catch {
            throw args.usage(error.message)
        }
    }
}

extension QueryPlan {
    /// The plan as JSON: recipe, run, inputs (label, step, digest), combination.
    func json(copied: [String], copiedFiles: [String]? = nil) -> JSONValue {
        var combination: [(key: String, value: JSONValue)] = []
        switch self.combination {
        case .uniform: combination = [("kind", .string("uniform"))]
        case .weighted(let w): combination = [("kind", .string("weighted")), ("weights", .array(w.map { .double($0) }))]
        case .ema(let d): combination = [("kind", .string("ema")), ("decay", .double(d))]
        }
        var fields: [(key: String, value: JSONValue)] = [
            ("recipe", .string(recipe)), ("run", run.map { .string($0) } ?? .null),
            (
                "inputs",
                .array(
                    inputs.map { i in
                        .object([
                            ("ref", .string(i.label)), ("step", i.step.map { .int($0) } ?? .null),
                            ("digest", .string("sha256:\(i.digest.hex)")),
                        ])
                    })
            ),
            ("combination", .object(combination)), ("copied_tensors", .array(copied.map { .string($0) })),
        ]
        // Averages of directory snapshots also list the side files copied from the newest input.
        if let copiedFiles { fields.append(("copied_files", .array(copiedFiles.map { .string($0) }))) }
        fields.append(("cache_key", .string(cacheKey.hex)))
        return .object(fields)
    }
}
