import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// `ckstore ls --pending`: pending snapshots (parts still arriving) with their parts and age.
enum ListPending {
    /// Prints the pending snapshots (of one run, or all).
    static func list(store: Store, run: String?, json: Bool) throws(CKStoreError) {
        let all = try store.pendingSnapshots().filter { run == nil || $0.run == run }
        let now = nowMilliseconds()
        if json {
            Console.json(
                .object([
                    (
                        "pending",
                        .array(
                            all.map { p in
                                .object([
                                    ("ref", .string(p.ref)), ("run", .string(p.run)), ("step", .int(p.step)), ("total", .int(p.total)),
                                    ("present", .int(p.parts.count)), ("replaces", .bool(p.replaces)),
                                    ("created_at_ms", .int(Int(p.createdAtMilliseconds))),
                                    ("age_seconds", .double(Double(now - p.createdAtMilliseconds) / 1000)),
                                    (
                                        "parts",
                                        .array(
                                            p.parts.map { part in
                                                .object([
                                                    ("path", .string(part.path)), ("kind", .string(part.kind.rawValue)),
                                                    ("size", .int(part.size)), ("digest", .string("sha256:\(part.digest.hex)")),
                                                    ("created_at_ms", .int(Int(part.createdAtMilliseconds))),
                                                ])
                                            })
                                    ),
                                ])
                            })
                    )
                ]))
            return
        }
        if all.isEmpty {
            Console.err(run.map { "no pending snapshots in run '\($0)'" } ?? "no pending snapshots")
            return
        }
        var rows = [["PENDING", "PARTS", "AGE", "PATH", "DIGEST", "SIZE"]]
        for p in all {
            rows.append([
                p.ref + (p.replaces ? " (--force)" : ""), "\(p.parts.count)/\(p.total)", age(now - p.createdAtMilliseconds), "", "", "",
            ])
            for part in p.parts {
                rows.append(["", "", "", part.path, "sha256:\(part.digest.hex.prefix(12))", Console.bytes(part.size)])
            }
        }
        Console.table(rows).forEach(Console.out)
    }

    /// After the list of runs: a note on stderr when snapshots are pending (not listed there).
    static func note(store: Store) throws(CKStoreError) {
        let count = try store.pendingSnapshots().count
        if count > 0 { Console.err("ckstore: note: \(count) pending snapshot(s) not listed ('ckstore ls --pending')") }
    }

    /// "42 s", "17 min", "3.5 h", "2.0 d".
    static func age(_ milliseconds: Int64) -> String {
        let s = Double(max(0, milliseconds)) / 1000
        if s < 120 { return "\(Int(s)) s" }
        if s < 7200 { return "\(Int(s / 60)) min" }
        if s < 172_800 { return Console.format1(s / 3600) + " h" }
        return Console.format1(s / 86400) + " d"
    }
}
