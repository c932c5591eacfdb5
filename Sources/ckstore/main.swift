import CKStore
import CKStoreBackends
import CKStorePostgres
import CKStoreS3

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
    /// True when the location was given (--store or $CKSTORE_DIR), false for the ./.ckstore
    /// default: `put` creates a missing store only at a location that was asked for.
    var storeIsExplicit: Bool
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
    ("sweep", SweepCommand.command),
    ("plot", PlotCommand.command),
    ("copy", CopyCommand.command),
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

    'ckstore help COMMAND' or 'ckstore COMMAND --help' describes a command; 'ckstore version'
    (or --version) prints the version. The global options --store PATH (or --store=PATH),
    --verbose (-v) and --version may also follow the command. Exit status: 0 ok, 1 failure
    (not found, bad input, conflict), 2 usage error, 3 integrity failure (stored data is
    missing or damaged).
    """

/// The global options found anywhere before `--` in the command line.
struct ParsedCommandLine {
    var storePath: String?
    var verbose = false
    var version = false
    /// Everything else, in order.
    var rest: [String] = []
}

/// Removes the global options (`--store PATH`, `--store=PATH`, `--verbose`, `-v`,
/// `--version`) from anywhere before a `--`, so that they may precede or follow the command.
func parseGlobalOptions(_ argv: [String]) throws(CKStoreError) -> ParsedCommandLine {
    var parsed = ParsedCommandLine()
    var i = 0
    while i < argv.count {
        let item = argv[i]
        if item == "--" {
            parsed.rest.append(contentsOf: argv[i...])
            break
        }
        switch item {
        case "--verbose", "-v": parsed.verbose = true
        case "--version": parsed.version = true
        case "--store":
            guard i + 1 < argv.count, !argv[i + 1].hasPrefix("--"), !argv[i + 1].isEmpty else {
                throw CKStoreError(.usage, "--store needs a path")
            }
            guard parsed.storePath == nil else { throw CKStoreError(.usage, "--store given more than once") }
            parsed.storePath = argv[i + 1]
            i += 1
        default:
            if item.hasPrefix("--store=") {
                guard parsed.storePath == nil else { throw CKStoreError(.usage, "--store given more than once") }
                let path = String(item.dropFirst(8))
                guard !path.isEmpty else { throw CKStoreError(.usage, "--store needs a path") }
                parsed.storePath = path
            } else {
                parsed.rest.append(item)
            }
        }
        i += 1
    }
    return parsed
}

/// `~` and `~/…` in a store path given as `--store=~/x` or `CKSTORE_DIR="~/x"`, where no
/// shell expanded it: the home folder, rather than a folder literally named `~`.
func expandHome(_ path: String) -> String {
    guard path == "~" || path.hasPrefix("~/"), let home = getenv("HOME"), home.pointee != 0 else { return path }
    return String(cString: home) + path.dropFirst()
}

/// Parses global options and runs the command; returns the exit status.
@MainActor
func runMain(_ argv: [String]) -> Int32 {
    // postgres://…?blobs=… locations (issue 10).
    StoreFactories.register(PostgresStoreFactory())
    PostgresStoreFactory.makeS3BlobStore = { location, _ throws(CKStoreError) in try S3BlobStore.opening(location) }
    let parsed: ParsedCommandLine
    do {
        parsed = try parseGlobalOptions(argv)
    } catch {
        Console.err("ckstore: error: \(error.message) (see 'ckstore --help')")
        return error.exitCode
    }
    var rest = parsed.rest
    if parsed.version || rest.first == "version" {
        Console.out("ckstore \(ckstoreVersion)")
        return 0
    }
    if let first = rest.first, first.hasPrefix("-"), first != "--" {
        if first == "--help" || first == "-h" {
            Console.text(mainHelp)
            return 0
        }
        Console.err("ckstore: error: unknown option \(first) (see 'ckstore --help')")
        return 2
    }
    if rest.first == "--" { rest.removeFirst() }
    guard var name = rest.first else {
        Console.text(mainHelp, toStandardError: true)
        return 2
    }
    if name == "help" {
        // `ckstore help` is the main help; `ckstore help COMMAND` is that command's.
        guard rest.count > 1 else {
            Console.text(mainHelp)
            return 0
        }
        name = rest[1]
        if name == "help" {
            Console.text(mainHelp)
            return 0
        }
        rest = [name, "--help"]
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
    let fromEnvironment = getenv("CKSTORE_DIR").map { $0.pointee != 0 } ?? false
    let globals = GlobalOptions(
        storePath: expandHome(Store.resolvePath(explicit: parsed.storePath)),
        storeIsExplicit: parsed.storePath != nil || fromEnvironment, verbose: parsed.verbose)
    // A command interrupted by SIGINT/SIGTERM/SIGHUP removes the temporary files it was
    // writing (get -o, plot -o) before dying of the signal. `watch` and `sweep` handle the
    // signals themselves.
    if name != "watch" && name != "sweep" { InterruptCleanup.install() }
    do {
        return try command.run(&args, globals)
    } catch {
        Console.err("ckstore: error: \(error.message)")
        if parsed.verbose { Console.text(error.detailedDescription(), toStandardError: true) }
        return error.exitCode
    }
}

signal(SIGPIPE, SIG_IGN)
// Store locations beyond local paths: sqlite:///path?blobs=s3://bucket/prefix.
StoreFactories.register(SQLiteS3StoreFactory())
// Every command that waits more than a second for the store lock says so, naming the holder.
Store.defaultLockWait.withLock { $0.onWait = { line in Console.err("ckstore: \(line)") } }
exit(runMain(Array(CommandLine.arguments.dropFirst())))
