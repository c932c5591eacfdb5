/// The `fsck` check of the derived-snapshot cache.
extension Store {
    /// Every derived row answers the query it is stored under: its key is the hash of its
    /// recorded recipe and inputs (`QueryPlan.cacheKey`), its manifest exists, and that
    /// manifest's own `__metadata__` records the same `ckstore.recipe` and `ckstore.inputs`.
    /// A row that fails is a problem (`get` would drop and recompute it; `gc` removes it).
    func checkDerivedRows(_ report: inout IntegrityReport) throws {
        for row in try metadata.derivedRows() {
            let subject = "derived row \(row.id) (\(row.recipe))"
            let expectedKey = SHA256Digest.hash(Array((row.recipe + "\n" + row.inputs.split(separator: ",").joined(separator: "\n")).utf8))
            guard row.key == expectedKey else {
                report.problems.append(IntegrityProblem(subject: subject, detail: "its key is not the hash of its recipe and inputs"))
                continue
            }
            // Damaged manifest rows are reported by the manifest check; skip them here.
            guard let digest = row.digest else {
                report.problems.append(IntegrityProblem(subject: subject, detail: "its manifest is missing"))
                continue
            }
            // An average of directory snapshots is a tree: each of its safetensors files must
            // carry the row's recipe and inputs.
            var files: [(String, Manifest?)] = []
            if let tree = try? metadata.tree(digest) {
                for entry in tree.entries where entry.kind == .safetensors {
                    files.append(("file '\(entry.path)': ", try? metadata.manifest(entry.digest)))
                }
            } else {
                files.append(("", try? metadata.manifest(digest)))
            }
            for (prefix, manifest) in files {
                guard let manifest else {
                    report.problems.append(IntegrityProblem(subject: subject, detail: "\(prefix)its manifest is missing"))
                    continue
                }
                if let reason = Store.cacheMismatch(
                    manifest: manifest, recordedRecipe: row.recipe, recordedInputs: row.inputs, expectedRecipe: row.recipe,
                    expectedInputs: row.inputs)
                {
                    report.problems.append(
                        IntegrityProblem(
                            subject: subject,
                            detail: "result sha256:\(digest.hex.prefix(12))… does not match its query: \(prefix)\(reason)"))
                }
            }
        }
    }
}
