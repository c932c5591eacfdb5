// The S3 blob backend in the contract suites: runs when CKSTORE_TEST_S3=1 names a live S3
// service (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; Tools/services/ceph.sh).

import CKStoreS3
import Foundation

@testable import CKStore

/// An `S3BlobStore` under a fresh prefix of one test bucket per fixture.
enum S3ContractBackend {
    static let environment = ProcessInfo.processInfo.environment
    /// True when the live S3 suites should run.
    static let enabled = environment["CKSTORE_TEST_S3"].map { !$0.isEmpty && $0 != "0" } ?? false
    /// One bucket per test process.
    static let bucket = "ckstore-contract-\(UInt32.random(in: 0...UInt32.max))"

    static let factory = BlobBackendFactory(name: "s3") { _ in
        let location = "s3://\(bucket)/contract-\(UUID().uuidString.prefix(8))"
        _ = try S3BlobStore.opening(location, environment: environment)  // creates the bucket
        return BlobStoreFixture { try S3BlobStore.opening(location, environment: environment) }
    }
}
