import CKStore
import CKStoreBackends

/// `ckstore stats`: store-wide totals.
enum StatsCommand {
    static let command = Command(
        summary: "show store totals: logical and stored bytes, dedup and compression",
        help: """
            usage: ckstore stats [--json]

            logical bytes   sum of the sizes of every named snapshot (what get would write)
            stored bytes    blob bytes that snapshots refer to
            derived bytes   blob bytes only cached query results (derived snapshots) use
            orphan bytes    blob and temporary files no snapshot refers to (freed by gc;
                            reported apart, so a failed put does not change the stored figure)
            side files      the non-safetensors files of directory snapshots: how many
                            entries all trees hold, their total size, and the size of the
                            distinct ones (a config.json unchanged at every step counts once)
            dedup ratio     logical / distinct raw chunk bytes
            compression     stored / distinct raw chunk bytes
            """,
        run: { (args, globals) throws(CKStoreError) in
            let json = args.flag("--json")
            _ = try args.positionals(max: 0, names: "")
            let store = try Store(path: globals.storePath)
            let s = try store.statistics()
            if json {
                Console.json(
                    .object([
                        ("runs", .int(s.runs)), ("snapshots", .int(s.snapshots)), ("logical_bytes", .int(s.logicalBytes)),
                        ("unique_raw_bytes", .int(s.uniqueRawBytes)), ("stored_bytes", .int(s.storedBytes)),
                        ("blobs", .int(s.blobCount)), ("derived_bytes", .int(s.derivedBytes)), ("derived_blobs", .int(s.derivedBlobs)),
                        ("orphan_bytes", .int(s.orphanBytes)), ("orphan_blobs", .int(s.orphanBlobs)),
                        ("dedup_ratio", .double(s.dedupRatio)), ("compression_ratio", .double(s.compressionRatio)),
                        ("side_files", .int(s.sideFiles)), ("side_file_bytes", .int(s.sideFileBytes)),
                        ("side_file_unique_bytes", .int(s.sideFileUniqueBytes)),
                    ]))
                return 0
            }
            Console.table([
                ["runs", "\(s.runs)"],
                ["snapshots", "\(s.snapshots)"],
                ["logical bytes", "\(Console.bytes(s.logicalBytes)) (\(s.logicalBytes))"],
                ["unique raw bytes", "\(Console.bytes(s.uniqueRawBytes)) (\(s.uniqueRawBytes))"],
                ["stored bytes", "\(Console.bytes(s.storedBytes)) (\(s.storedBytes)) in \(s.blobCount) blobs"],
                ["derived bytes", "\(Console.bytes(s.derivedBytes)) (\(s.derivedBytes)) in \(s.derivedBlobs) blobs (cached averages)"],
                ["orphan bytes", "\(Console.bytes(s.orphanBytes)) (\(s.orphanBytes)) in \(s.orphanBlobs) files"],
                [
                    "side files",
                    "\(s.sideFiles) in trees, \(Console.bytes(s.sideFileBytes)) (\(s.sideFileBytes)), "
                        + "\(Console.bytes(s.sideFileUniqueBytes)) (\(s.sideFileUniqueBytes)) distinct",
                ],
                ["dedup ratio", Console.format(s.dedupRatio, decimals: 2) + "x"],
                ["compression", Console.format(s.compressionRatio, decimals: 3) + " of raw"],
            ]).forEach(Console.out)
            return 0
        })
}
