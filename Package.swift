// swift-tools-version:6.0
//
// ckstore: a content-addressed checkpoint store for neural-network training.
// No Swift package dependencies: SQLite, LZ4, libcrypto and libpq are linked as system libraries.

import Foundation
import PackageDescription

/// Release builds are tuned for the CPU they are built on when it has AVX2 (x86-64, Haswell or
/// later): the shuffle filters and the averaging kernels are vectorized twice as wide, which
/// cuts the CPU time of an average by about a quarter. Set CKSTORE_PORTABLE=1 to build a binary
/// that runs on any x86-64 CPU.
///
/// Release builds use the default -O, with Swift's overflow and bounds checks: the library
/// parses untrusted files (safetensors headers, blob files, database rows), and a check that
/// fails must stop the program rather than let it compute with a wrapped-around size. The
/// -Ounchecked this package used before bought nothing measurable (LAWA k=6 and put within
/// noise of -O, docs/BENCHMARKS.md), so no code is built without checks.
let releaseFlags: [String] = {
    var flags: [String] = []
    let env = ProcessInfo.processInfo.environment
    #if arch(x86_64)
    if env["CKSTORE_PORTABLE"] == nil,
        let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
        cpuinfo.contains(" avx2 ")
    {
        flags += ["-target-cpu", "haswell"]
    }
    #endif
    return flags
}()

let package = Package(
    name: "ckstore",
    products: [
        .library(name: "CKStore", targets: ["CKStore", "CKStoreBackends"]),
        .executable(name: "ckstore", targets: ["ckstore"]),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        .systemLibrary(
            name: "CCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CPostgres",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // S3-compatible object storage over libcurl with AWS Signature V4, and `S3BlobStore`, the
        // core's `BlobStore` on top of it (issue 10).
        .target(
            name: "CKStoreS3",
            dependencies: ["CKStore", "CKStoreSQLite", "CKStoreBackends", "CCurl", "CCrypto"]
        ),
        // The core: model, codecs, blobs on disk, the store facade and the backend protocols.
        // It sees no database library.
        .target(
            name: "CKStore",
            dependencies: ["CLZ4", "CCrypto"],
            swiftSettings: [.unsafeFlags(releaseFlags, .when(configuration: .release))]
        ),
        // SQLite metadata (the only target that sees CSQLite).
        .target(
            name: "CKStoreSQLite",
            dependencies: ["CKStore", "CSQLite"],
            swiftSettings: [.unsafeFlags(releaseFlags, .when(configuration: .release))]
        ),
        // Maps a store location to its backends (local: SQLite + objects/ + flock); other
        // backends register their factories here.
        .target(
            name: "CKStoreBackends",
            dependencies: ["CKStore", "CKStoreSQLite"]
        ),
        .executableTarget(
            name: "ckstore",
            dependencies: ["CKStore", "CKStoreBackends", "CKStorePostgres", "CKStoreS3"]
        ),
        .testTarget(
            name: "CKStoreTests",
            dependencies: ["CKStore", "CKStoreSQLite", "CKStoreBackends", "CKStorePostgres", "CKStoreS3"]
        ),
        // PostgreSQL metadata backend (issue 10): the libpq wrapper, the schema migrations, and
        // PostgresMetadataStore / PostgresStoreLock, which implement the core's protocols.
        .target(
            name: "CKStorePostgres",
            dependencies: ["CPostgres", "CKStore"]
        ),
        .testTarget(
            name: "CKStorePostgresTests",
            dependencies: ["CKStorePostgres", "CKStore"]
        ),
        .testTarget(
            name: "CKStoreS3Tests",
            dependencies: ["CKStoreS3", "CKStore"]
        ),
    ]
)
