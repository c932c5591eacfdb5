import CKStorePostgres
import Foundation
import Testing

/// The live server for these suites: `CKSTORE_TEST_PG_URL` (credentials from `PGPASSWORD`),
/// set by `Tools/test.sh` (as root) or by sourcing the env file `Tools/services/postgres.sh start` writes.
let liveURL: String? = ProcessInfo.processInfo.environment["CKSTORE_TEST_PG_URL"].flatMap { $0.isEmpty ? nil : $0 }

/// Why the live suites are skipped when they are.
let liveSkipReason: Comment =
    "CKSTORE_TEST_PG_URL is not set: no live PostgreSQL. Start one with `Tools/services/postgres.sh start` and source the env file it prints (Tools/test.sh does this when run as root)"

/// The trait that runs a suite only against a live server.
let requiresLiveServer = ConditionTrait.enabled(if: liveURL != nil, liveSkipReason)

/// A fresh connection to the live server whose `search_path` is `schema` (when given).
func connect(schema: String? = nil) throws -> PGConnection {
    let conn = try PGConnection(try #require(liveURL), applicationName: "ckstore-tests")
    if let schema { try conn.execute("SELECT set_config('search_path', $1, false)", [.text(schema)]) }
    return conn
}

/// Runs `body` with a connection whose `search_path` is a new, empty schema, dropped afterwards,
/// so that tests running in parallel do not see each other's tables.
func withScratchSchema<T>(_ body: (PGConnection, String) throws -> T) throws -> T {
    let conn = try connect()
    let schema = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    try conn.execute("CREATE SCHEMA \(schema)")
    defer {
        let cleanup = try? connect()
        _ = try? cleanup?.executeScript("DROP SCHEMA \(schema) CASCADE")
    }
    try conn.execute("SELECT set_config('search_path', $1, false)", [.text(schema)])
    return try body(conn, schema)
}

/// A random advisory-lock key, so that parallel tests never contend for the same lock.
func randomLockKey() -> Int64 { Int64.random(in: Int64.min...Int64.max) }

/// The error `body` throws, as type `E` (recording an issue when it throws nothing or another type).
func caught<E: Error>(_ errorType: E.Type, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> E? {
    do {
        try body()
        Issue.record("expected \(E.self) to be thrown, nothing was", sourceLocation: sourceLocation)
    } catch let error as E {
        return error
    } catch {
        Issue.record("expected \(E.self), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
