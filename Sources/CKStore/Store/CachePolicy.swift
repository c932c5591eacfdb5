/// When `get` stores a computed query result as a derived snapshot (`cache_policy` in
/// `config.json`).
///
/// Caching a result costs a second write of every output byte (and a hash of each chunk), which
/// more than doubled the time of a first request in the benchmark; most recipes are asked for
/// once. `secondHit` keeps the first request as cheap as `--no-cache` and caches a recipe the
/// second time it is asked for, so repeated queries still come from the cache from their third
/// request on.
public enum CachePolicy: String, Sendable, Equatable, CaseIterable {
    /// Cache every computed result (the behaviour before `cache_policy` existed).
    case always
    /// Cache a result when the same recipe over the same inputs is requested a second time.
    /// The first requests are noted in the store's request log (`<store>/cache-requests`);
    /// a store without one (PostgreSQL metadata, the in-memory test store) caches at once, as
    /// `always` does.
    case secondHit = "second-hit"
    /// Never look up nor store results (every `get` behaves as with `--no-cache`).
    case never
}

/// A record of the query recipes requested before (their cache keys), for `cache_policy:
/// second-hit`. It is a hint, not a promise: it may forget a request (a slot reused by another
/// key, a lost write), which only delays caching.
package protocol QueryRequestLog: Sendable {
    /// Notes a request for `key` and returns true when `key` had been requested before and
    /// the caller is to store its result (the request then claims `key`: concurrent requests
    /// get false until `release`, so the result is stored once).
    func noteRequest(_ key: SHA256Digest) -> Bool
    /// Ends the claim `noteRequest` took on `key` (the result was stored, or storing it failed),
    /// leaving `key` noted as requested.
    func release(_ key: SHA256Digest)
}
