import CKStore
import CKStoreBackends

/// `ckstore init`: create the store (idempotent).
enum InitCommand {
    static let command = Command(
        summary: "create the store (does nothing if it exists)",
        help: """
            usage: ckstore [--store PATH] init

            Creates the store folder, its metadata database and a copy of the default
            configuration (config.json). Running it on an existing store changes nothing
            (it says "store already exists", also when the store is read-only for you).
            It never creates a database in a folder whose objects/ already holds blobs:
            that store has lost its database (exit 3; restore ckstore.db from a backup).
            """,
        run: { (args, globals) throws(CKStoreError) in
            _ = try args.positionals(max: 0, names: "")
            let created = try Store.initialize(at: globals.storePath)
            Console.out(created ? "initialized an empty store at \(globals.storePath)" : "store already exists at \(globals.storePath)")
            return 0
        })
}
