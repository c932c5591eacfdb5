/// The derived-snapshot cache as the facade shows it.
extension Store {
    /// The derived snapshot cached under `key`, if any.
    package func derivedSnapshot(key: SHA256Digest) throws(CKStoreError) -> SHA256Digest? {
        try wrapping("look up the derived-snapshot cache") { try metadata.derivedDigest(key: key) }
    }

    /// The cached query results (optionally of one run), newest first.
    public func derivedSnapshots(run: String?) throws(CKStoreError) -> [DerivedInfo] {
        try wrapping("list derived snapshots") { try metadata.derivedSnapshots(run: run) }
    }
}
