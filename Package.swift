// swift-tools-version:6.0
//
// ckstore: a content-addressed checkpoint store for neural-network training.
// No Swift package dependencies: SQLite, LZ4 and libcrypto are linked as system libraries.

import PackageDescription

let package = Package(
    name: "ckstore",
    products: [
        .library(name: "CKStore", targets: ["CKStore"]),
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
        .target(
            name: "CKStore",
            dependencies: ["CSQLite", "CLZ4", "CCrypto"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "ckstore",
            dependencies: ["CKStore"]
        ),
        .testTarget(
            name: "CKStoreTests",
            dependencies: ["CKStore"]
        ),
    ]
)
