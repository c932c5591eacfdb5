/// A store's settings, read from `<store>/config.json` (see Config/README.md for each key).
public struct StoreConfiguration: Sendable, Equatable {
    /// Maximum chunk size in bytes.
    public var chunkSize: Int
    /// True to LZ4-compress chunks; false stores them raw.
    public var compress: Bool
    /// LZ4 acceleration (1 = default).
    public var acceleration: Int
    /// Minimum fractional saving for a compressed chunk to be kept compressed.
    public var minSavings: Double
    /// Filter for floating-point tensors.
    public var floatFilter: ShuffleFilter
    /// Filter for multi-byte integer tensors.
    public var integerFilter: ShuffleFilter
    /// Also try the Huffman-coded exponent planes (blob codec 2) on F16, BF16, F32 and F64
    /// chunks, keeping them where they are smaller than LZ4 (`compression.float_entropy`:
    /// `huffman` or `none`; default `none`: it makes put slower, see Config/README.md).
    public var floatEntropy: Bool = false
    /// Worker threads; 0 = one per core.
    public var workers: Int
    /// Re-hash decoded chunks with SHA-256 on every read.
    public var verifyReadsWithSHA256: Bool
    /// How new blobs are made durable before the metadata commit: "batch" (start writeback
    /// at once, fsync each blob before the commit), "each" (fsync in the writing worker), or
    /// "syncfs" (one syncfs(2) of the file system).
    public var syncMode: String = "batch"
    /// How long a pending snapshot (parts still arriving) is kept by a plain `gc`, in seconds,
    /// counted from its first part (`pending_grace`: seconds, or a string "90s", "30m", "24h",
    /// "2d"). Default 24 h.
    public var pendingGraceSeconds: Int = 86_400
    /// When `get` stores a computed query result in the derived-snapshot cache
    /// (`cache_policy`: `always`, `second-hit` or `never`). Default `second-hit`: a first
    /// request costs what `--no-cache` costs, a repeated one is cached.
    public var cachePolicy: CachePolicy = .secondHit

    /// The defaults (the same as Config/ckstore.json).
    public static let `default` = StoreConfiguration(
        chunkSize: 4 << 20, compress: true, acceleration: 1, minSavings: 0.03, floatFilter: .hybridShuffle,
        integerFilter: .byteShuffle, workers: 0, verifyReadsWithSHA256: false)

    /// The number of worker threads to run.
    public var effectiveWorkers: Int {
        workers > 0 ? workers : max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// Compress the blobs of derived snapshots (cached query results) like snapshot blobs.
    /// Off by default: a derived snapshot is a cache that can always be recomputed, and
    /// storing it raw makes both its first computation and every cached read cheaper (no
    /// filter, no LZ4, no round-trip check) for about 12% more disk on float32 weights.
    public var compressDerived = false

    /// The codec settings for blobs of derived snapshots.
    var derivedCodecSettings: BlobCodec.Settings {
        var settings = codecSettings
        if !compressDerived { settings.minimumSavings = 2 }
        return settings
    }

    /// The codec settings derived from this configuration.
    var codecSettings: BlobCodec.Settings {
        BlobCodec.Settings(
            acceleration: Int32(acceleration), minimumSavings: compress ? minSavings : 2, verifyAfterCompress: true,
            floatFilter: floatFilter, integerFilter: integerFilter, floatEntropy: floatEntropy)
    }

    // MARK: - JSON

    /// Parses a configuration file. Missing keys take their default; unknown keys and bad
    /// values are errors naming the key.
    public static func parse(_ bytes: [UInt8], source: String) throws(CKStoreError) -> StoreConfiguration {
        let value: JSONValue
        do {
            value = try JSON.parse(bytes)
        } catch {
            throw CKStoreError(.badInput, "\(source): \(error)")
        }
        guard case .object(let top) = value else { throw CKStoreError(.badInput, "\(source): not a JSON object") }
        var config = StoreConfiguration.default
        func fail(_ key: String, _ why: String) -> CKStoreError { CKStoreError(.badInput, "\(source): \(key): \(why)") }
        func number(_ v: JSONValue, _ key: String) throws(CKStoreError) -> Double {
            guard case .number(let text) = v, let d = Double(text) else { throw fail(key, "expected a number") }
            return d
        }
        func string(_ v: JSONValue, _ key: String) throws(CKStoreError) -> String {
            guard case .string(let s) = v else { throw fail(key, "expected a string") }
            return s
        }
        func filter(_ v: JSONValue, _ key: String) throws(CKStoreError) -> ShuffleFilter {
            switch try string(v, key) {
            case "bitshuffle": return .bitShuffle
            case "byteshuffle": return .byteShuffle
            case "hybrid": return .hybridShuffle
            case "none": return .none
            case let other: throw fail(key, "unknown filter '\(other)' (bitshuffle, hybrid, byteshuffle, none)")
            }
        }
        for (key, v) in top {
            switch key {
            case "chunk_size":
                let n = try number(v, key)
                guard n == n.rounded(), n >= 4096, n <= Double(256 << 20) else {
                    throw fail(key, "must be a whole number from 4096 to 268435456")
                }
                config.chunkSize = Int(n)
            case "workers":
                let n = try number(v, key)
                guard n == n.rounded(), n >= 0, n <= 256 else { throw fail(key, "must be a whole number from 0 to 256") }
                config.workers = Int(n)
            case "derived_compression":
                switch try string(v, key) {
                case "lz4": config.compressDerived = true
                case "none": config.compressDerived = false
                case let other: throw fail(key, "unknown value '\(other)' (none, lz4)")
                }
            case "cache_policy":
                let text = try string(v, key)
                guard let policy = CachePolicy(rawValue: text) else {
                    throw fail(key, "unknown policy '\(text)' (always, second-hit, never)")
                }
                config.cachePolicy = policy
            case "sync":
                let mode = try string(v, key)
                guard ["batch", "each", "syncfs"].contains(mode) else { throw fail(key, "unknown mode '\(mode)' (batch, each, syncfs)") }
                config.syncMode = mode
            case "verify_reads":
                switch try string(v, key) {
                case "sha256": config.verifyReadsWithSHA256 = true
                case "checksum": config.verifyReadsWithSHA256 = false
                case let other: throw fail(key, "unknown mode '\(other)' (sha256, checksum)")
                }
            case "compression":
                guard case .object(let inner) = v else { throw fail(key, "expected an object") }
                for (k, w) in inner {
                    let name = "compression.\(k)"
                    switch k {
                    case "codec":
                        switch try string(w, name) {
                        case "lz4": config.compress = true
                        case "none": config.compress = false
                        case let other: throw fail(name, "unknown codec '\(other)' (lz4, none)")
                        }
                    case "acceleration":
                        let n = try number(w, name)
                        guard n == n.rounded(), n >= 1, n <= 65537 else { throw fail(name, "must be a whole number from 1 to 65537") }
                        config.acceleration = Int(n)
                    case "min_savings":
                        let n = try number(w, name)
                        guard n >= 0, n < 1 else { throw fail(name, "must be in [0, 1)") }
                        config.minSavings = n
                    case "float_filter": config.floatFilter = try filter(w, name)
                    case "integer_filter": config.integerFilter = try filter(w, name)
                    case "float_entropy":
                        switch try string(w, name) {
                        case "huffman": config.floatEntropy = true
                        case "none": config.floatEntropy = false
                        case let other: throw fail(name, "unknown value '\(other)' (huffman, none)")
                        }
                    default: throw fail(name, "unknown key")
                    }
                }
            case "pending_grace":
                config.pendingGraceSeconds = try PendingGrace.seconds(v, fail: { fail(key, $0) })
            default:
                throw fail(key, "unknown key")
            }
        }
        return config
    }
}

#if canImport(Glibc)
    import Glibc
#endif
