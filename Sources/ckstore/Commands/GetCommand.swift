import CKStore

/// `ckstore get`: write a stored snapshot back out as a safetensors file.
enum GetCommand {
    static let command = Command(
        summary: "write a snapshot out as a safetensors file",
        help: """
            usage: ckstore get REF -o FILE|-

            Writes the exact bytes that were put (same SHA-256 as the original file). Every
            chunk is checked on the way out (header, checksum, length, and SHA-256 unless the
            store's verify_reads is 'checksum'); a missing or damaged blob is exit 3.

            REF is RUN@STEP, RUN@latest, sha256:<64 hex>, or a unique hex prefix of at least 8
            digits. -o FILE writes atomically (a temporary file renamed into place); -o - writes
            to standard output.
            """,
        run: { (args, globals) throws(CKStoreError) in
            let short = try args.value("-o")
            let long = try args.value("--output")
            guard let out = short ?? long else { throw args.usage("-o FILE|- is required") }
            let quiet = args.flag("--quiet")
            let refText = try args.positionals(min: 1, max: 1, names: "REF")[0]
            let ref = try SnapshotRef.parse(refText)
            let store = try Store(path: globals.storePath)
            let resolved = try store.resolve(ref)
            let report = try store.restore(resolved, to: out == "-" ? .standardOutput : .file(out))
            if !quiet && out != "-" {
                let mbps = report.seconds > 0 ? Double(report.bytesOut) / report.seconds / 1e6 : 0
                Console.err(
                    "\(resolved.label): wrote \(Console.bytes(report.bytesOut)) to \(out) in \(Console.format(report.seconds, decimals: 2)) s, \(Console.format1(mbps)) MB/s"
                )
            }
            return 0
        })
}
