// Test helpers for stores whose tests are about caching itself: since `second-hit` became the
// default, a first query is not cached unless the store's config says `always`.

import Foundation
import Testing

@testable import CKStore

/// Sets `"cache_policy": "always"` in `<store>/config.json` (a store made by `Store.initialize`
/// or `ckstore init`), so that the first computed query result is cached.
func cacheFirstRequests(store: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let path = "\(store)/config.json"
    let config = String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    #expect(config.contains("\"cache_policy\": "), "config.json has no cache_policy line: \(config)", sourceLocation: sourceLocation)
    let updated = config.replacingOccurrences(
        of: #""cache_policy": "[a-z-]*""#, with: "\"cache_policy\": \"always\"", options: .regularExpression)
    _ = FileManager.default.createFile(atPath: path, contents: Data(updated.utf8))
}

/// Removes the `cache_policy` key from `<store>/config.json`.
func removeCachePolicy(store: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let path = "\(store)/config.json"
    let config = String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
    let edited = config.replacingOccurrences(of: #"\s*"cache_policy": [^,]*,"#, with: "", options: .regularExpression)
    #expect(edited != config && !edited.contains("cache_policy"), sourceLocation: sourceLocation)
    _ = FileManager.default.createFile(atPath: path, contents: Data(edited.utf8))
}

extension Store {
    /// This store with `cache_policy: always`, for tests about caching itself: a local store
    /// (whose default, `second-hit`, does not cache a first request) has its config.json
    /// rewritten and is opened again; other backends have no request log and cache at once.
    func cachingFirstRequests(sourceLocation: SourceLocation = #_sourceLocation) throws -> Store {
        guard requestLog != nil else { return self }
        cacheFirstRequests(store: path, sourceLocation: sourceLocation)
        return try Store(path: path)
    }
}
