// Helpers shared by the end-to-end suites: temporary directories, running the built `ckstore`
// binary, a seeded RNG, and a logical snapshot of a store for "nothing changed" assertions
// (safetensors fixtures and named pipes: SafetensorsFixtures.swift).

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Repository and binary

/// The repository root, found from this file's location (Tests/CKStoreTests/Support/).
let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // Support
    .deletingLastPathComponent()  // CKStoreTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

/// The `ckstore` executable under test: `$CKSTORE_BIN`, else a `ckstore` beside the running
/// test executable or bundle (SwiftPM puts both in the same bin folder), else
/// `<repo>/.build/debug/ckstore`. Nil when none exists.
let ckstoreBinaryPath: String? = {
    let fm = FileManager.default
    func isExecutableFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return fm.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
            && fm.isExecutableFile(atPath: path)
    }
    if let env = ProcessInfo.processInfo.environment["CKSTORE_BIN"], !env.isEmpty {
        return isExecutableFile(env) ? env : nil
    }
    var starts: [URL] = []
    if let argv0 = CommandLine.arguments.first, !argv0.isEmpty {
        starts.append(URL(fileURLWithPath: argv0).resolvingSymlinksInPath())
    }
    starts.append(Bundle.main.bundleURL.resolvingSymlinksInPath())
    starts.append(Bundle.main.executableURL?.resolvingSymlinksInPath() ?? Bundle.main.bundleURL)
    for start in starts {
        var dir = start.deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent("ckstore").path
            if isExecutableFile(candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
    }
    let fallback = repositoryRoot.appendingPathComponent(".build/debug/ckstore").path
    return isExecutableFile(fallback) ? fallback : nil
}()

// MARK: - Temporary directories

/// A fresh directory under the system temporary folder; it and everything in it (read-only
/// blob files included) are removed when the value is deinitialized.
final class TemporaryDirectory: @unchecked Sendable {
    /// The directory's absolute path.
    let path: String

    init(_ label: String = "test") {
        let safe = String(label.map { $0.isLetter || $0.isNumber ? $0 : "-" }.prefix(40))
        let base = FileManager.default.temporaryDirectory.path
        var template = Array("\(base)/ckstore-\(safe)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed: errno \(errno)")
        path = String(cString: made!)
    }

    /// `path/name`.
    func file(_ name: String) -> String { "\(path)/\(name)" }

    deinit { removeTree(path) }
}

/// Removes a directory tree, first making every folder in it writable.
func removeTree(_ path: String) {
    let fm = FileManager.default
    if let items = fm.enumerator(atPath: path) {
        for case let rel as String in items {
            let full = "\(path)/\(rel)"
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: full, isDirectory: &isDirectory), isDirectory.boolValue {
                chmod(full, 0o755)
            }
        }
    }
    chmod(path, 0o755)
    try? fm.removeItem(atPath: path)
}

/// Runs `body` with a fresh temporary directory that is always removed afterwards, whether
/// `body` returns or throws.
func withTemporaryDirectory<T>(_ label: String = "test", _ body: (TemporaryDirectory) throws -> T) rethrows -> T {
    let dir = TemporaryDirectory(label)
    defer { removeTree(dir.path) }
    return try body(dir)
}

// MARK: - Running the CLI

/// What a `ckstore` run produced.
typealias CLIResult = (status: Int32, stdout: Data, stderr: String)

/// Standard output as text.
func text(_ data: Data) -> String { String(decoding: data, as: UTF8.self) }

let ignoreSIGPIPE: Void = {
    // Writing a child's stdin after it exited must not kill the test process.
    signal(SIGPIPE, SIG_IGN)
}()

/// The environment children get by default: the test's own, without `CKSTORE_DIR` (so only
/// the tests that are about it set it).
func childEnvironment(_ extra: [String: String] = [:], removing: [String] = []) -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    env["CKSTORE_DIR"] = nil
    for key in removing { env[key] = nil }
    for (k, v) in extra { env[k] = v }
    return env
}

/// Runs `ckstore` with `args` (no implicit `--store`), in `directory`, with `environment`, and
/// `stdin` (nil: /dev/null) on standard input. Output goes through files, so large outputs
/// cannot dead-lock. A run still going after `timeout` seconds is killed and recorded as an
/// issue.
func runCKStore(
    _ args: [String], environment: [String: String]? = nil, directory: String? = nil, stdin: Data? = nil,
    timeout: TimeInterval = 120, sourceLocation: SourceLocation = #_sourceLocation
) -> CLIResult {
    _ = ignoreSIGPIPE
    guard let binary = ckstoreBinaryPath else {
        Issue.record("ckstore binary not found: set CKSTORE_BIN or run 'swift build' first", sourceLocation: sourceLocation)
        return (-1, Data(), "")
    }
    let capture = TemporaryDirectory("capture")
    let outPath = capture.file("stdout")
    let errPath = capture.file("stderr")
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    guard let outHandle = FileHandle(forWritingAtPath: outPath), let errHandle = FileHandle(forWritingAtPath: errPath) else {
        Issue.record("cannot create capture files", sourceLocation: sourceLocation)
        return (-1, Data(), "")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binary)
    process.arguments = args
    process.environment = environment ?? childEnvironment()
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    process.standardOutput = outHandle
    process.standardError = errHandle
    let inputPipe = stdin.map { _ in Pipe() }
    process.standardInput = inputPipe ?? FileHandle.nullDevice

    let timedOut = LockedValue(false)
    do {
        try process.run()
    } catch {
        Issue.record("cannot run \(binary): \(error)", sourceLocation: sourceLocation)
        return (-1, Data(), "")
    }
    let writer = DispatchGroup()
    if let stdin, let inputPipe {
        let writeHandle = inputPipe.fileHandleForWriting
        DispatchQueue.global().async(group: writer) {
            let fd = writeHandle.fileDescriptor
            stdin.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    let n = write(fd, raw.baseAddress! + done, raw.count - done)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }  // the child closed its end (EPIPE): it stopped reading
                    done += n
                }
            }
            try? writeHandle.close()
        }
    }
    let watchdog = DispatchWorkItem {
        if process.isRunning {
            timedOut.withLock { $0 = true }
            process.terminate()
        }
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
    process.waitUntilExit()
    watchdog.cancel()
    writer.wait()
    try? outHandle.close()
    try? errHandle.close()
    let stdout = FileManager.default.contents(atPath: outPath) ?? Data()
    let stderr = String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
    if timedOut.withLock({ $0 }) {
        Issue.record("ckstore \(args.joined(separator: " ")) timed out after \(timeout) s", sourceLocation: sourceLocation)
    }
    let status = process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    return (status, stdout, stderr)
}

/// Runs `ckstore --store STORE args…` (see `runCKStore`).
func runCLI(
    _ args: [String], store: String, stdin: Data? = nil, sourceLocation: SourceLocation = #_sourceLocation
) -> CLIResult {
    runCKStore(["--store", store] + args, stdin: stdin, sourceLocation: sourceLocation)
}

/// A small lock-protected value (kept apart from Synchronization.Mutex so the helpers need
/// no import that other test files might also make).
final class LockedValue<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

// MARK: - CLI assertions

/// The lines of `text` (a final newline does not start another line).
func outputLines(_ text: String) -> [String] {
    var lines = text.components(separatedBy: "\n")
    if lines.last == "" { lines.removeLast() }
    return lines
}

/// Checks that `result` failed with `status` and exactly one stderr line, starting with
/// `ckstore: error:` and containing each of `mentions`; nothing on stdout.
func expectOneErrorLine(
    _ result: CLIResult, status: Int32, mentions: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(result.status == status, "exit status; stderr: \(result.stderr)", sourceLocation: sourceLocation)
    let lines = outputLines(result.stderr)
    #expect(lines.count == 1, "expected exactly one stderr line, got: \(result.stderr.debugDescription)", sourceLocation: sourceLocation)
    #expect(result.stderr.hasSuffix("\n"), "stderr line must end with a newline", sourceLocation: sourceLocation)
    #expect(
        lines.first?.hasPrefix("ckstore: error: ") == true, "stderr must start with 'ckstore: error:': \(result.stderr.debugDescription)",
        sourceLocation: sourceLocation)
    for m in mentions {
        #expect(
            result.stderr.contains(m), "stderr should mention \(m.debugDescription): \(result.stderr.debugDescription)",
            sourceLocation: sourceLocation)
    }
    #expect(result.stdout.isEmpty, "stdout should be empty: \(text(result.stdout).debugDescription)", sourceLocation: sourceLocation)
}

/// The digest from `put`'s stdout when it is exactly one line `sha256:<64 lowercase hex>`.
func parseDigestLine(_ stdout: Data) -> String? {
    let s = text(stdout)
    guard s.hasSuffix("\n") else { return nil }
    let line = s.dropLast()
    guard !line.contains("\n"), line.hasPrefix("sha256:") else { return nil }
    let hex = line.dropFirst(7)
    guard hex.count == 64, hex.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) else { return nil }
    return String(hex)
}

/// Puts `file` (a path, or "-" with `stdin`) as RUN@STEP; records an issue unless it exits 0
/// with one digest line. Returns the 64-hex digest.
@discardableResult
func putOK(
    _ file: String, run: String, step: Int, store: String, stdin: Data? = nil, extra: [String] = [],
    sourceLocation: SourceLocation = #_sourceLocation
) -> String? {
    let r = runCLI(["put", "--run", run, "--step", "\(step)"] + extra + [file], store: store, stdin: stdin, sourceLocation: sourceLocation)
    #expect(r.status == 0, "put \(run)@\(step) failed: \(r.stderr)", sourceLocation: sourceLocation)
    let digest = parseDigestLine(r.stdout)
    #expect(digest != nil, "put stdout is not one sha256 line: \(text(r.stdout).debugDescription)", sourceLocation: sourceLocation)
    return digest
}

/// `get REF -o -`: the bytes written to stdout; records an issue unless it exits 0.
func getBytes(_ ref: String, store: String, sourceLocation: SourceLocation = #_sourceLocation) -> Data {
    let r = runCLI(["get", ref, "-o", "-"], store: store, sourceLocation: sourceLocation)
    #expect(r.status == 0, "get \(ref) failed: \(r.stderr)", sourceLocation: sourceLocation)
    return r.stdout
}

/// Parses a JSON object printed by `--json`.
func jsonObject(_ data: Data, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
    guard let object = (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) as? [String: Any] else {
        Issue.record("not a JSON object: \(text(data).debugDescription)", sourceLocation: sourceLocation)
        return [:]
    }
    return object
}

/// Runs `ARGS --json` and parses the output object.
func cliJSON(_ args: [String], store: String, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
    let r = runCLI(args + ["--json"], store: store, sourceLocation: sourceLocation)
    #expect(r.status == 0, "\(args) --json failed: \(r.stderr)", sourceLocation: sourceLocation)
    return jsonObject(r.stdout, sourceLocation: sourceLocation)
}

// MARK: - Stores

/// Creates a store at `dir/name` with `ckstore init`, then sets its chunk size (4096 unless
/// nil: keep the default) in `config.json`. Returns the store path.
func makeStore(
    in dir: TemporaryDirectory, name: String = "store", chunkSize: Int? = 4096, sourceLocation: SourceLocation = #_sourceLocation
) -> String {
    let store = dir.file(name)
    let r = runCLI(["init"], store: store, sourceLocation: sourceLocation)
    #expect(r.status == 0, "init failed: \(r.stderr)", sourceLocation: sourceLocation)
    if let chunkSize { setChunkSize(store: store, chunkSize, sourceLocation: sourceLocation) }
    return store
}

/// Rewrites `<store>/config.json` with another `chunk_size` (whatever the current one is).
func setChunkSize(store: String, _ chunkSize: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    let path = "\(store)/config.json"
    let config = String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    let updated = config.replacingOccurrences(
        of: #""chunk_size": [0-9]+"#, with: "\"chunk_size\": \(chunkSize)", options: .regularExpression)
    #expect(config.contains("\"chunk_size\": "), "config.json has no chunk_size line: \(config)", sourceLocation: sourceLocation)
    _ = FileManager.default.createFile(atPath: path, contents: Data(updated.utf8))
}

/// Blob files under `<store>/objects`: relative path → size (temporary files included, named
/// as they are).
func objectFiles(_ store: String) -> [String: Int] {
    let root = "\(store)/objects"
    var result: [String: Int] = [:]
    let fm = FileManager.default
    guard let items = fm.enumerator(atPath: root) else { return [:] }
    for case let rel as String in items {
        let full = "\(root)/\(rel)"
        guard let attrs = try? fm.attributesOfItem(atPath: full), (attrs[.type] as? FileAttributeType) == .typeRegular else { continue }
        result[rel] = (attrs[.size] as? NSNumber)?.intValue ?? -1
    }
    return result
}

/// The path of the blob that holds `chunk` (its name is the SHA-256 of the raw bytes).
func blobPath(store: String, chunk: [UInt8]) -> String {
    let hex = SHA256Digest.hash(chunk).hex
    return "\(store)/objects/\(hex.prefix(2))/\(hex)"
}

/// How `put` cuts a tensor of `dtype` into chunks of at most `chunkSize` bytes (a multiple of
/// the dtype's byte granule).
func chunks(of bytes: [UInt8], dtype: String, chunkSize: Int) -> [[UInt8]] {
    let granule = DType(rawValue: dtype)!.byteGranule
    let step = max(granule, chunkSize - chunkSize % granule)
    return stride(from: 0, to: bytes.count, by: step).map { Array(bytes[$0..<min($0 + step, bytes.count)]) }
}

/// Everything observable about a store, for "the store is unchanged" checks: every file's bytes
/// (except the SQLite database and its WAL/SHM files, which are compared logically instead),
/// a sorted listing of objects/ with sizes, and the JSON of `ls`, `ls --run` for each run and
/// `stats`.
func storeSnapshot(_ store: String, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Data] {
    var result: [String: Data] = [:]
    // The commands first: opening a store may create its (empty) lock file.
    let ls = runCLI(["ls", "--json"], store: store, sourceLocation: sourceLocation)
    result["ls --json"] = ls.stdout + Data("exit \(ls.status)".utf8)
    let stats = runCLI(["stats", "--json"], store: store, sourceLocation: sourceLocation)
    result["stats --json"] = stats.stdout + Data("exit \(stats.status)".utf8)
    let runs = (jsonObject(ls.stdout, sourceLocation: sourceLocation)["runs"] as? [[String: Any]]) ?? []
    for run in runs {
        guard let name = run["name"] as? String else { continue }
        let r = runCLI(["ls", "--run", name, "--json"], store: store, sourceLocation: sourceLocation)
        result["ls --run \(name) --json"] = r.stdout + Data("exit \(r.status)".utf8)
    }
    let fm = FileManager.default
    if let items = fm.enumerator(atPath: store) {
        for case let rel as String in items {
            let full = "\(store)/\(rel)"
            guard let attrs = try? fm.attributesOfItem(atPath: full), (attrs[.type] as? FileAttributeType) == .typeRegular else { continue }
            let base = (rel as NSString).lastPathComponent
            if base.hasPrefix("ckstore.db") { continue }
            result["file \(rel)"] = fm.contents(atPath: full) ?? Data()
        }
    }
    let listing = objectFiles(store).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: "\n")
    result["objects listing"] = Data(listing.utf8)
    return result
}

/// The keys whose values differ between two snapshots, described for a failure message.
func snapshotDifferences(_ before: [String: Data], _ after: [String: Data]) -> [String] {
    var diffs: [String] = []
    for key in Set(before.keys).union(after.keys).sorted() {
        switch (before[key], after[key]) {
        case (nil, .some): diffs.append("added \(key)")
        case (.some, nil): diffs.append("removed \(key)")
        case let (a?, b?) where a != b:
            if key.hasPrefix("file ") {
                diffs.append("changed \(key)")
            } else {
                diffs.append("changed \(key): \(text(a)) -> \(text(b))")
            }
        default: break
        }
    }
    return diffs
}

/// Checks that the store looks exactly as in `before`.
func expectStoreUnchanged(_ store: String, since before: [String: Data], sourceLocation: SourceLocation = #_sourceLocation) {
    let diffs = snapshotDifferences(before, storeSnapshot(store, sourceLocation: sourceLocation))
    #expect(diffs.isEmpty, "the store changed: \(diffs.joined(separator: "; "))", sourceLocation: sourceLocation)
}

// MARK: - Seeded randomness

/// SplitMix64: a tiny, seedable generator, so fixtures are the same on every run.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` uniformly random bytes.
    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        while out.count < count {
            var v = next()
            for _ in 0..<8 {
                out.append(UInt8(truncatingIfNeeded: v))
                v >>= 8
            }
        }
        return Array(out.prefix(count))
    }

    /// `count` bytes that compress well: a slowly varying value plus a little noise in the low
    /// bits, like trained weights' exponent and sign bytes.
    mutating func compressibleBytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            out[i] = i % 4 == 0 ? UInt8(truncatingIfNeeded: next() & 0x3) : UInt8(truncatingIfNeeded: (i / 512) & 0xFF)
        }
        return out
    }
}
