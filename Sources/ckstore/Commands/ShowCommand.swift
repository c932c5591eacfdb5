import CKStore

/// `ckstore show`: the tensors and metadata of a snapshot.
enum ShowCommand {
    static let command = Command(
        summary: "show a snapshot's tensors and metadata",
        help: """
            usage: ckstore show REF [--json]

            Lists the tensors (name, dtype, shape, bytes, chunks) in data-section order and the
            file's __metadata__. REF is RUN@STEP, RUN@latest, sha256:<64 hex> or a hex prefix.
            """,
        run: { (args, globals) throws(CKStoreError) in
            let json = args.flag("--json")
            let refText = try args.positionals(min: 1, max: 1, names: "REF")[0]
            let store = try Store(path: globals.storePath)
            let resolved = try store.resolve(try SnapshotRef.parse(refText))
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
}
