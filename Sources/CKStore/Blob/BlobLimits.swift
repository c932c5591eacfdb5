/// Limits every blob store enforces.
package enum BlobLimits {
    /// The largest blob of a valid chunk (`LocalBlobStore.maxBlobSize`: a version 2 header and the
    /// LZ4 bound of the largest raw length). Larger objects are damage and are never read whole.
    package static var maxBlobSize: Int { LocalBlobStore.maxBlobSize }
}
