/// A reference to stored content, as written on the command line.
public enum SnapshotRef: Sendable, Equatable, CustomStringConvertible {
    /// `RUN@STEP`.
    case step(run: String, step: Int)
    /// `RUN@latest`: the highest step of the run.
    case latest(run: String)
    /// `sha256:<64 hex>`: a manifest digest.
    case digest(SHA256Digest)
    /// A unique hex prefix (8–64 characters) of a manifest digest.
    case prefix(String)

    /// Parses a ref.
    /// - Throws: `.badInput` naming the ref when it has none of the accepted forms.
    public static func parse(_ text: String) throws(CKStoreError) -> SnapshotRef {
        if let at = text.lastIndex(of: "@") {
            let run = String(text[..<at])
            let stepText = text[text.index(after: at)...]
            guard !run.isEmpty else { throw CKStoreError(.badInput, "invalid ref '\(text)': missing run name before '@'") }
            if stepText == "latest" { return .latest(run: run) }
            guard let step = Int(stepText), step >= 0, stepText.allSatisfy(\.isASCII) else {
                throw CKStoreError(.badInput, "invalid ref '\(text)': the step must be a non-negative integer or 'latest'")
            }
            return .step(run: run, step: step)
        }
        if text.hasPrefix("sha256:") {
            guard let digest = SHA256Digest(hex: text.dropFirst(7)) else {
                throw CKStoreError(.badInput, "invalid ref '\(text)': sha256: must be followed by 64 hex digits")
            }
            return .digest(digest)
        }
        if text.count >= 8, text.count <= 64, text.allSatisfy(\.isHexDigit) {
            return .prefix(text.lowercased())
        }
        // A bare run name is the most common slip: suggest its latest snapshot.
        let hint = (try? Store.validateRunName(text)) != nil ? " (did you mean '\(text)@latest'?)" : ""
        throw CKStoreError(
            .badInput,
            "invalid ref '\(text)': expected RUN@STEP, RUN@latest, sha256:<64 hex> or a hex prefix of at least 8 digits\(hint)")
    }

    public var description: String {
        switch self {
        case .step(let run, let step): return "\(run)@\(step)"
        case .latest(let run): return "\(run)@latest"
        case .digest(let d): return "sha256:\(d.hex)"
        case .prefix(let p): return p
        }
    }
}

/// A resolved ref: the manifest digest and, when the ref named a step, the snapshot.
public struct ResolvedRef: Sendable {
    /// The content.
    public let digest: SHA256Digest
    /// The snapshot, when the ref was RUN@STEP or RUN@latest (or a digest that one snapshot names).
    public let snapshot: SnapshotInfo?
    /// How to name this content in messages: RUN@STEP when known, else the digest.
    public var label: String { snapshot?.ref ?? "sha256:\(digest.hex)" }
}

extension Store {
    /// Resolves a ref to stored content.
    /// - Throws: `.notFound` naming the run, step or digest; an ambiguous prefix lists the matches.
    public func resolve(_ ref: SnapshotRef) throws(CKStoreError) -> ResolvedRef {
        try wrapping("resolve \(ref)") { () throws -> ResolvedRef in
            switch ref {
            case .step(let run, let step):
                guard let snap = try metadata.snapshot(run: run, step: step) else {
                    if let pending = try metadata.pendingSnapshot(run: run, step: step) { throw Store.notYetComplete(pending) }
                    if try metadata.snapshots(run: run) == nil { throw CKStoreError(.notFound, "run '\(run)' does not exist") }
                    throw CKStoreError(.notFound, "\(run)@\(step) does not exist")
                }
                return ResolvedRef(digest: snap.digest, snapshot: snap)
            case .latest(let run):
                guard let snap = try metadata.latestSnapshot(run: run) else {
                    throw CKStoreError(.notFound, "run '\(run)' does not exist or has no snapshots")
                }
                return ResolvedRef(digest: snap.digest, snapshot: snap)
            case .digest(let digest):
                guard try !metadata.manifestDigests(prefix: digest.hex, limit: 1).isEmpty else {
                    throw CKStoreError(.notFound, "no snapshot has digest sha256:\(digest.hex)")
                }
                return ResolvedRef(digest: digest, snapshot: nil)
            case .prefix(let prefix):
                let matches = try metadata.manifestDigests(prefix: prefix, limit: 5)
                guard let first = matches.first else {
                    // A run whose name looks like hex ("deadbeef") was probably meant.
                    let isRun = (try? metadata.snapshots(run: prefix)) != nil
                    throw CKStoreError(
                        .notFound, "no snapshot digest starts with \(prefix)" + (isRun ? " (did you mean '\(prefix)@latest'?)" : ""))
                }
                guard matches.count == 1 else {
                    throw CKStoreError(
                        .notFound,
                        "prefix \(prefix) is ambiguous: it matches \(matches.map { "sha256:\($0.hex.prefix(16))…" }.joined(separator: ", "))"
                    )
                }
                return ResolvedRef(digest: first, snapshot: nil)
            }
        }
    }

    /// The manifest a resolved ref names, checked against its digest: rows that no longer
    /// hash to the digest (a damaged database) are an integrity error, never used. When a
    /// RUN@STEP ref's content was replaced since it was resolved, the manifest the step holds
    /// now is returned (see `currentManifest(of:)`), never a false "does not exist".
    public func manifest(of ref: ResolvedRef) throws(CKStoreError) -> Manifest {
        try currentManifest(of: ref).1
    }

    /// The manifest stored under the ref's digest, checked against it (no re-resolution).
    func storedManifest(of ref: ResolvedRef) throws(CKStoreError) -> Manifest {
        let manifest = try wrapping("read \(ref.label)") { try metadata.manifest(ref.digest) }
        guard let manifest else {
            try refuseNonSafetensors(ref)
            throw CKStoreError(.notFound, "\(ref.label) does not exist")
        }
        let recomputed = Manifest(headerBytes: manifest.headerBytes, dataLength: manifest.dataLength, tensors: manifest.tensors)
        guard recomputed.digest == manifest.digest else {
            let header = try? SafetensorsHeader.parse(headerBytes: manifest.headerBytes)
            let bad = header.flatMap { h in zip(h.tensors, manifest.tensors).first { $0.0 != $0.1.info }?.1.info.name }
            throw CKStoreError(
                .integrity,
                "\(ref.label): the stored rows no longer match digest sha256:\(manifest.digest.hex)"
                    + (bad.map { " (tensor '\($0)')" } ?? ""))
        }
        return manifest
    }
}
