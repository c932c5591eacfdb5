/// An input chunk decoded for the blocked averaging path: either its raw bytes, contiguous in
/// `payload`, or, for a chunk stored with the hybrid filter, its byte planes (the lower ones in
/// `payload` as LZ4 left them, the upper ones in `upper` after the bit-unshuffle), so the final
/// byte unshuffle can run one small block at a time right before the block is accumulated,
/// instead of writing and re-reading the whole chunk (see `AverageWorker+Blocked.swift`).
final class DecodedInput {
    /// The raw bytes (contiguous) or the LZ4 output holding the lower byte planes.
    let payload: ByteBuffer
    /// The bit-unshuffled upper byte planes (planes layout only).
    let upper: ByteBuffer
    /// With the planes layout: the element count `n` (the plane stride) and the element width.
    private(set) var planes: (count: Int, width: Int)?
    /// The raw length of the chunk.
    private(set) var count = 0

    /// Buffers for chunks of up to `capacity` raw bytes.
    init(capacity: Int) {
        payload = ByteBuffer(capacity: capacity)
        upper = ByteBuffer(capacity: capacity / 2 + 64)
    }

    /// Records a contiguous decode of `count` bytes in `payload`.
    func setContiguous(_ count: Int) {
        planes = nil
        self.count = count
    }

    /// Records a planes decode of `count` bytes of `width`-byte elements.
    func setPlanes(count: Int, width: Int) {
        planes = (count / width, width)
        self.count = count
    }
}

extension BlobCodec {
    /// Checks and decodes a blob file for averaging: exactly the checks of
    /// `decode(_:into:name:rehash:)` (without the SHA-256 re-hash), and the same bytes, but a
    /// chunk stored LZ4-compressed with the hybrid filter at lane width `elementWidth` (whole
    /// elements) is left as byte planes in `input` (see `DecodedInput`). Any other blob is
    /// decoded contiguously into `input.payload`.
    /// - Returns: the raw length.
    func decodeForAveraging(_ file: UnsafeRawBufferPointer, into input: DecodedInput, name: SHA256Digest, elementWidth: Int)
        throws(BlobDamage) -> Int
    {
        let planar: Bool
        switch BlobHeader.decode(file, fileSize: file.count) {
        case .success(let h):
            planar =
                h.codec == .lz4 && h.filter == .hybridShuffle && elementWidth > 1 && Int(h.laneWidth) == elementWidth
                && Int(h.rawLength) % elementWidth == 0
        case .failure: planar = false  // decode() reports the damage
        }
        guard planar else {
            let n = try decode(file, into: input.payload, name: name, rehash: false)
            input.setContiguous(n)
            return n
        }
        let (header, payload) = try checkedPayload(file, name: name)
        let raw = header.rawLength
        guard raw <= input.payload.capacity else {
            throw BlobDamage(offset: 8, reason: "raw length \(raw) exceeds the expected chunk size \(input.payload.capacity)")
        }
        let target = input.payload.prefix(raw)
        guard LZ4.decompress(payload, into: target) == raw else {
            throw BlobDamage(offset: header.encodedSize, reason: "LZ4 payload does not decode to \(raw) bytes")
        }
        let region = Shuffle.hybridRegion(count: raw, laneWidth: elementWidth)
        precondition(region.count <= input.upper.capacity, "DecodedInput: upper planes buffer too small")
        if !region.isEmpty {
            Shuffle.invert(
                .bitShuffle, laneWidth: 1, source: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(target)[region]),
                destination: input.upper.prefix(region.count))
        }
        input.setPlanes(count: raw, width: elementWidth)
        return raw
    }
}
