extension Store {
    /// The refusal of RUN@STEP while its parts are arriving: it is not a snapshot yet.
    static func notYetComplete(_ pending: PendingSnapshot) -> CKStoreError {
        CKStoreError(
            .notFound,
            "\(pending.ref) is not a snapshot yet: \(pending.parts.count) of \(pending.total) parts have been put "
                + "('ckstore ls --pending' lists them)")
    }

    /// Refuses a query whose window needs a step that is still pending (its parts are arriving):
    /// `.notFound`, "step N is incomplete: 3 of 8 parts", naming the parts present and, when the
    /// part names follow the `NNNNN-of-TOTAL` pattern, the missing ones.
    func refuseIncomplete(_ steps: [Int], run: String, query: String) throws(CKStoreError) {
        for step in steps {
            guard let pending = try wrapping(query, { try metadata.pendingSnapshot(run: run, step: step) }) else { continue }
            var message = "\(query): \(pending.incompleteDescription)"
            let missing = pending.inferredMissingPaths
            if !missing.isEmpty {
                message += "; missing: " + missing.prefix(8).joined(separator: ", ") + (missing.count > 8 ? ", …" : "")
            }
            throw CKStoreError(.notFound, message)
        }
    }
}

extension PendingSnapshot {
    /// The missing paths, when every present path is `PREFIX<digits>-of-<TOTAL digits>SUFFIX`
    /// with one prefix, suffix and width (`rank-00003-of-00008.safetensors`,
    /// `model-00002-of-00004.safetensors`); [] when the names follow no such pattern. Indices
    /// start at 0 when a present one is 0 or the prefix names ranks, else at 1.
    public var inferredMissingPaths: [String] {
        var shape: (prefix: String, width: Int, suffix: String)?
        var present = Set<Int>()
        for part in parts {
            guard let (prefix, digits, suffix) = Self.numbered(part.path, total: total) else { return [] }
            if let shape, shape.prefix != prefix || shape.width != digits.count || shape.suffix != suffix { return [] }
            shape = (prefix, digits.count, suffix)
            guard let index = Int(digits) else { return [] }
            present.insert(index)
        }
        guard let shape else { return [] }
        let base = present.contains(0) || shape.prefix.lowercased().contains("rank") ? 0 : 1
        return (base..<(base + total)).filter { !present.contains($0) }.map { index in
            let digits = String(index)
            return shape.prefix + String(repeating: "0", count: max(0, shape.width - digits.count)) + digits + shape.suffix
        }
    }

    /// Splits `PREFIX<digits>-of-<TOTAL>REST` into PREFIX, the digits, and `-of-<TOTAL>REST`.
    private static func numbered(_ path: String, total: Int) -> (String, String, String)? {
        let chars = Array(path)
        let marker: [Character] = ["-", "o", "f", "-"]
        guard chars.count >= 4,
            let at = (0...(chars.count - 4)).reversed().first(where: { Array(chars[$0..<$0 + 4]) == marker })
        else { return nil }
        let before = chars[..<at]
        let digits = before.reversed().prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty else { return nil }
        let after = chars[(at + 4)...]
        let totalDigits = after.prefix { $0.isASCII && $0.isNumber }
        guard let n = Int(String(totalDigits)), n == total else { return nil }
        let prefix = String(before.dropLast(digits.count))
        return (prefix, String(digits.reversed()), String(chars[at...]))
    }
}
