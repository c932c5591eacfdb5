import CKStore

#if canImport(Glibc)
    import Glibc
#endif

/// The ckstore version.
let ckstoreVersion = "0.1.0"

/// A subcommand: its one-line summary, its help text, and what it does.
struct Command: Sendable {
    let summary: String
    let help: String
    let run: @Sendable (inout Arguments, GlobalOptions) throws(CKStoreError) -> Int32
}

/// Options that apply to every command.
struct GlobalOptions {
    /// The store location (--store, $CKSTORE_DIR, ./.ckstore).
    var storePath: String
    /// Print the chain of causes on errors.
    var verbose: Bool
}

let commands: [(String, Command)] = [
    ("init", InitCommand.command),
    ("put", PutCommand.command),
    ("get", GetCommand.command),
    ("ls", ListCommand.command),
    ("show", ShowCommand.command),
    ("stats", StatsCommand.command),
    ("metric", MetricCommand.command),
    ("watch", WatchCommand.command),
    ("plot", PlotCommand.command),
    ("rm", RemoveCommand.command),
    ("gc", GCCommand.command),
    ("fsck", FsckCommand.command),
]

let mainHelp = """
    usage: ckstore [--store PATH] [--verbose] COMMAND [ARGS]

    A content-addressed checkpoint store for neural-network training.
    The store is --store PATH, else $CKSTORE_DIR, else ./.ckstore.

    commands:
    \(commands.map { "  \($0.0.padding(toLength: 8, withPad: " ", startingAt: 0))\($0.1.summary)" }.joined(separator: "\n"))

    'ckstore COMMAND --help' describes a command. Exit status: 0 ok, 1 failure (not found, bad
    input, conflict), 2 usage error, 3 integrity failure (stored data is missing or damaged).
    """

/// Parses global options and runs the command; returns the exit status.
@MainActor
func runMain(_ argv: [String]) -> Int32 {
    var rest = argv
    var storePath: String?
    var verbose = false
    while let first = rest.first, first.hasPrefix("-") {
        rest.removeFirst()
        switch first {
        case "--version":
            Console.out("ckstore \(ckstoreVersion)")
            return 0
        case "--help", "-h":
            Console.text(mainHelp)
            return 0
        case "--verbose", "-v":
            verbose = true
        case "--store":
            guard let p = rest.first else {
                Console.err("ckstore: error: --store needs a path")
                return 2
            }
            storePath = p
            rest.removeFirst()
        default:
            if first.hasPrefix("--store=") {
                storePath = String(first.dropFirst(8))
            } else {
                Console.err("ckstore: error: unknown option \(first) (see 'ckstore --help')")
                return 2
            }
        }
    }
    guard let name = rest.first else {
        Console.text(mainHelp, toStandardError: true)
        return 2
    }
    guard let command = commands.first(where: { $0.0 == name })?.1 else {
        Console.err("ckstore: error: unknown command '\(name)' (see 'ckstore --help')")
        return 2
    }
    var args = Arguments(Array(rest.dropFirst()), command: name)
    if args.wantsHelp {
        Console.text(command.help)
        return 0
    }
    let globals = GlobalOptions(storePath: Store.resolvePath(explicit: storePath), verbose: verbose)
    do {
        return try command.run(&args, globals)
    } catch {
        Console.err("ckstore: error: \(error.message)")
        if verbose { Console.text(error.detailedDescription(), toStandardError: true) }
        return error.exitCode
    }
}

signal(SIGPIPE, SIG_IGN)
exit(runMain(Array(CommandLine.arguments.dropFirst())))
