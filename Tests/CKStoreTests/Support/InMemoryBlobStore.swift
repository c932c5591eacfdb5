// An in-memory `BlobStore` for the test target (see InMemoryMetadataStore.swift).

import Synchronization

@testable import CKStore

/// Blobs in a dictionary; quarantined blobs in another. Thread-safe.
final class InMemoryBlobStore: BlobStore {
    private struct State {
        var blobs: [SHA256Digest: [UInt8]] = [:]
        var quarantine: [String: [UInt8]] = [:]
    }

    private let state = Mutex(State())
    let name: String

    init(name: String = "memory") { self.name = name }

    var properties: BlobStoreProperties { BlobStoreProperties(hasAtomicCreate: true) }

    var location: String { "memory://\(name)" }

    func put(_ id: SHA256Digest, bytes: UnsafeRawBufferPointer, isValid: (UnsafeRawBufferPointer) -> Bool) throws -> (
        isNew: Bool, size: Int
    ) {
        // Create-once, like a conditional PUT: the check and the store are one atomic step.
        let copy = Array(bytes)
        return state.withLock { state in
            if let existing = state.blobs[id], existing.withUnsafeBytes({ isValid($0) }) { return (false, existing.count) }
            state.blobs[id] = copy
            return (true, copy.count)
        }
    }

    private func bytes(of id: SHA256Digest) throws -> [UInt8] {
        guard let bytes = state.withLock({ $0.blobs[id] }) else { throw BlobStoreError.notFound(id) }
        guard bytes.count <= LocalBlobStore.maxBlobSize else { throw BlobStoreError.tooLarge(id, bytes.count) }
        return bytes
    }

    func read(_ id: SHA256Digest, into buffer: inout ByteBuffer) throws -> Int {
        let bytes = try bytes(of: id)
        if buffer.capacity < bytes.count { buffer = ByteBuffer(capacity: bytes.count) }
        bytes.withUnsafeBytes { buffer.prefix(bytes.count).copyMemory(from: $0) }
        buffer.count = bytes.count
        return bytes.count
    }

    func withBytes<T>(of id: SHA256Digest, scratch: inout ByteBuffer, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        try bytes(of: id).withUnsafeBytes { try body($0) }
    }

    func readPrefix(_ id: SHA256Digest, count: Int) throws -> (bytes: [UInt8], size: Int) {
        guard let bytes = state.withLock({ $0.blobs[id] }) else { throw BlobStoreError.notFound(id) }
        return (Array(bytes.prefix(count)), bytes.count)
    }

    func size(of id: SHA256Digest) throws -> Int? { state.withLock { $0.blobs[id]?.count } }

    func state(of id: SHA256Digest) throws -> BlobEntryState {
        state.withLock { $0.blobs[id].map { .regular(size: $0.count) } ?? .missing }
    }

    func remove(_ id: SHA256Digest) throws { _ = state.withLock { $0.blobs.removeValue(forKey: id) } }

    func forEach(_ body: (SHA256Digest, Int) throws -> Void) throws {
        for blob in try listing().blobs { try body(blob.id, blob.size) }
    }

    func listing() throws -> BlobListing {
        BlobListing(blobs: state.withLock { $0.blobs.map { BlobListing.Blob(id: $0.key, size: $0.value.count) } }.sorted { $0.id < $1.id })
    }

    func removeTemporary(_ leftover: BlobListing.Temporary) throws -> Bool { false }

    func quarantine(_ id: SHA256Digest) throws -> String? {
        state.withLock { state in
            guard let bytes = state.blobs.removeValue(forKey: id) else { return nil }
            let name = "\(id.hex).\(state.quarantine.count)"
            state.quarantine[name] = bytes
            return "quarantine/\(name)"
        }
    }

    func quarantined() throws -> (count: Int, location: String) {
        (state.withLock { $0.quarantine.count }, "\(location)/quarantine")
    }

    func namespaceProblem() throws -> String? { nil }

    func syncNamespace() throws {}

    // MARK: Test hooks

    /// Replaces a blob's bytes (to simulate damage from outside).
    func overwrite(_ id: SHA256Digest, with bytes: [UInt8]) {
        state.withLock { $0.blobs[id] = bytes }
    }

    /// A blob's bytes, or nil.
    func stored(_ id: SHA256Digest) -> [UInt8]? { state.withLock { $0.blobs[id] } }
}
