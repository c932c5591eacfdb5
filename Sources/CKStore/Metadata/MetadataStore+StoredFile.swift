/// Lookups every metadata backend shares, written once over the protocol.
extension MetadataStore {
    /// The stored content of a pending part's file object (completion builds the tree from it).
    /// - Throws: `CKStoreError.integrity` naming the part when its row names no stored file
    ///   (a damaged row, or a tree, which cannot be a part).
    package func storedFile(of part: PendingPart) throws -> FileContent {
        switch part.kind {
        case .safetensors:
            if let manifest = try manifest(part.digest) { return .safetensors(manifest) }
        case .bytes:
            if let file = try bytesFile(part.digest) { return .bytes(file) }
        case .tree: break
        }
        throw CKStoreError(.integrity, "part '\(part.path)' names sha256:\(part.digest.hex), which is not a stored file")
    }
}
