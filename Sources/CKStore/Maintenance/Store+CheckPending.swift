extension Store {
    /// fsck's names for the file objects of pending parts ("r@10 (pending) part 'rank-1.safetensors'"),
    /// so that a damaged part is reported by where it will go. fsck checks these objects and
    /// their chunks like every other content object (they are reachable: gc keeps them).
    func pendingPartNames() throws -> [SHA256Digest: String] {
        var names: [SHA256Digest: String] = [:]
        for pending in try metadata.pendingSnapshots() {
            for part in pending.parts { names[part.digest] = "\(pending.ref) (pending) part '\(part.path)'" }
        }
        return names
    }
}
