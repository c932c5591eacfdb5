import CKStore

/// `ckstore show REF` for a directory snapshot: its files, then each safetensors file's tensors.
extension ShowCommand {
    static func showTree(store: Store, resolved: ResolvedRef, json: Bool) throws(CKStoreError) {
        let (ref, snapshot) = try store.tree(of: resolved)
        let tree = snapshot.tree
        func manifest(_ entry: TreeEntry) -> Manifest? {
            if case .safetensors(let m) = snapshot.files[entry.digest] { return m }
            return nil
        }
        func metadata(_ m: Manifest) -> [(key: String, value: String)] {
            (try? SafetensorsHeader.parse(headerBytes: m.headerBytes))?.metadata ?? []
        }
        if json {
            Console.json(
                .object([
                    ("ref", .string(ref.label)), ("digest", .string("sha256:\(tree.digest.hex)")), ("kind", .string("tree")),
                    ("logical_bytes", .int(tree.totalSize)), ("file_count", .int(tree.entries.count)),
                    (
                        "files",
                        .array(
                            tree.entries.map { entry in
                                var fields: [(key: String, value: JSONValue)] = [
                                    ("path", .string(entry.path)), ("kind", .string(entry.kind.rawValue)), ("bytes", .int(entry.size)),
                                    ("digest", .string("sha256:\(entry.digest.hex)")),
                                ]
                                if let m = manifest(entry) {
                                    fields.append(("metadata", .object(metadata(m).map { ($0.key, .string($0.value)) })))
                                    fields.append(("tensors", tensorsJSON(m)))
                                }
                                return .object(fields)
                            })
                    ),
                ]))
            return
        }
        Console.out(
            "\(ref.label)  sha256:\(tree.digest.hex)  \(tree.entries.count) files  \(Console.bytes(tree.totalSize))")
        var rows = [["FILE", "KIND", "BYTES", "DIGEST"]]
        for entry in tree.entries {
            rows.append([entry.path, entry.kind.rawValue, "\(entry.size)", "sha256:\(entry.digest.hex.prefix(12))"])
        }
        Console.table(rows).forEach(Console.out)
        for entry in tree.entries {
            guard let m = manifest(entry) else { continue }
            Console.out("")
            Console.out("\(entry.path)  \(m.tensors.count) tensors")
            for (k, v) in metadata(m) { Console.out("metadata \(k) = \(v)") }
            var tensorRows = [["TENSOR", "DTYPE", "SHAPE", "BYTES", "CHUNKS"]]
            for t in m.tensors {
                tensorRows.append([
                    t.info.name, t.info.dtype.rawValue, "[" + t.info.shape.map(String.init).joined(separator: ", ") + "]",
                    "\(t.info.byteCount)", "\(t.chunks.count)",
                ])
            }
            Console.table(tensorRows).forEach(Console.out)
        }
    }

    /// A manifest's tensors as `show --json` lists them.
    static func tensorsJSON(_ manifest: Manifest) -> JSONValue {
        .array(
            manifest.tensors.map { t in
                .object([
                    ("name", .string(t.info.name)), ("dtype", .string(t.info.dtype.rawValue)),
                    ("shape", .array(t.info.shape.map { .int($0) })), ("bytes", .int(t.info.byteCount)), ("chunks", .int(t.chunks.count)),
                ])
            })
    }
}
