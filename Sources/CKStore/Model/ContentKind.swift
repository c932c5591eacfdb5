/// What a content object (a row of the `manifests` table) describes.
public enum ContentKind: String, Sendable, Equatable, CaseIterable {
    /// One safetensors file: header, tensors and their chunks (`Manifest`).
    case safetensors
    /// One opaque file, stored as chunks without interpretation (`BytesFile`).
    case bytes
    /// A directory of files (`TreeManifest`); its entries are `safetensors` or `bytes` objects.
    case tree
}
