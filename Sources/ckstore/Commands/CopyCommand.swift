import CKStore

/// `ckstore copy`: copy snapshots, their blobs and their runs' metrics between stores.
enum CopyCommand {
    static let command = Command(
        summary: "copy snapshots (and their blobs and metrics) from one store to another",
        help: """
            usage: ckstore copy --from STORE --to STORE [--run RUN] [--json]

            Copies every snapshot (or only RUN's) with its manifest, chunk rows and blobs,
            and the metrics of the runs copied, from --from into --to (created if missing).
            Blobs the destination already holds intact are not transferred (dedup); every
            blob read from the source is verified (header, identity, checksum, SHA-256 of
            the decoded bytes) before it is written; a snapshot's blobs are durable before
            its metadata is committed. Copying again copies only what is missing.
            A RUN@STEP the destination holds with other content is refused before anything
            is written (exit 1); a damaged source blob stops the copy (exit 3).
            """,
        run: { (args, globals) throws(CKStoreError) in
            let json = args.flag("--json")
            guard let from = try args.value("--from") else { throw args.usage("--from STORE is required") }
            guard let to = try args.value("--to") else { throw args.usage("--to STORE is required") }
            let run = try args.value("--run")
            _ = try args.positionals(max: 0, names: "")
            let source = try Store(path: from)
            if let run { _ = try source.snapshots(run: run) }
            let destination = try Store.openOrCreate(path: to)
            let r = try source.copy(to: destination, run: run)
            if json {
                Console.json(
                    .object([
                        ("snapshots_copied", .int(r.snapshotsCopied)), ("snapshots_unchanged", .int(r.snapshotsUnchanged)),
                        ("blobs_copied", .int(r.blobsCopied)), ("blobs_skipped", .int(r.blobsSkipped)),
                        ("bytes_copied", .int(r.bytesCopied)), ("metrics_copied", .int(r.metricsCopied)),
                        ("seconds", .double(r.seconds)),
                    ]))
            } else {
                Console.out(
                    "copied \(r.snapshotsCopied) snapshot(s) (\(r.snapshotsUnchanged) already there), \(r.blobsCopied) blob(s) "
                        + "(\(Console.bytes(r.bytesCopied))), \(r.blobsSkipped) already present, \(r.metricsCopied) metric value(s) "
                        + "in \(Console.format(r.seconds, decimals: 2)) s")
            }
            return 0
        })
}
