import Foundation
import Testing

@testable import CKStoreS3

@Suite struct S3ConfigTests {
    static let keys = ["AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-never-printed"]

    @Test func locationParsing() throws {
        #expect(try S3Location(parsing: "s3://bucket") == S3Location(bucket: "bucket", prefix: ""))
        #expect(try S3Location(parsing: "s3://bucket/") == S3Location(bucket: "bucket", prefix: ""))
        let location = try S3Location(parsing: "s3://my.bucket-1/runs/ckpt")
        #expect(location.bucket == "my.bucket-1")
        #expect(location.prefix == "runs/ckpt/")
        #expect(location.key("objects/ab") == "runs/ckpt/objects/ab")
        #expect(try S3Location(parsing: "s3://bucket//p/").prefix == "p/")
        #expect(location.description == "s3://my.bucket-1/runs/ckpt/")
        for bad in ["http://bucket/p", "s3://", "s3:///p", "s3://Bucket", "s3://b_c/x", "s3://ab", "s3://-abc", "s3://abc/p?x=1"] {
            #expect(throws: S3ConfigError.self, "\(bad)") { try S3Location(parsing: bad) }
        }
    }

    @Test func endpointParsing() throws {
        let local = try S3Endpoint(parsing: "http://127.0.0.1:7480")
        #expect(local == S3Endpoint(scheme: "http", host: "127.0.0.1", port: 7480))
        #expect(local.authority() == "127.0.0.1:7480")
        #expect(try S3Endpoint(parsing: "https://s3.example.com/").authority() == "s3.example.com")
        #expect(try S3Endpoint(parsing: "https://s3.example.com:443").authority() == "s3.example.com")
        #expect(try S3Endpoint(parsing: "http://[::1]:9000").authority() == "[::1]:9000")
        for bad in ["ftp://x", "http://", "http://h:0", "http://h:99999", "http://h:x", "http://h/path", "http://u:p@h"] {
            #expect(throws: S3ConfigError.self, "\(bad)") { try S3Endpoint(parsing: bad) }
        }
        // User info is refused without being echoed.
        do {
            _ = try S3Endpoint(parsing: "http://user:hunter2@h")
        } catch {
            #expect(!error.description.contains("hunter2"))
        }
    }

    @Test func environmentDefaultsToAWS() throws {
        let config = try S3Config.fromEnvironment(Self.keys.merging(["HOME": "/nonexistent"]) { $1 })
        #expect(config.region == "us-east-1")
        #expect(config.endpoint == S3Endpoint(scheme: "https", host: "s3.us-east-1.amazonaws.com"))
        #expect(config.addressing == .virtualHost)
        #expect(config.credentials.accessKeyId == "AKIDTEST")
        #expect(config.credentials.sessionToken == nil)
        let address = config.address(bucket: "bkt", key: "a/b c")
        #expect(address.host == "bkt.s3.us-east-1.amazonaws.com")
        #expect(address.path == "/a/b c")
    }

    @Test func environmentWithEndpointRegionAndToken() throws {
        var env = Self.keys
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:7480"
        env["AWS_DEFAULT_REGION"] = "eu-west-1"
        env["AWS_SESSION_TOKEN"] = "tok"
        var config = try S3Config.fromEnvironment(env)
        #expect(config.region == "eu-west-1")
        #expect(config.addressing == .path)
        #expect(config.credentials.sessionToken == "tok")
        #expect(config.address(bucket: "bkt", key: "k").host == "127.0.0.1:7480")
        #expect(config.address(bucket: "bkt", key: "k").path == "/bkt/k")
        #expect(config.address(bucket: "bkt", key: nil).path == "/bkt")
        // AWS_REGION wins over AWS_DEFAULT_REGION; the S3-specific endpoint over the generic one.
        env["AWS_REGION"] = "ap-south-1"
        env["AWS_ENDPOINT_URL_S3"] = "http://localhost:9000"
        env["CKSTORE_S3_ADDRESSING"] = "virtual"
        config = try S3Config.fromEnvironment(env)
        #expect(config.region == "ap-south-1")
        #expect(config.endpoint.authority() == "localhost:9000")
        #expect(config.address(bucket: "bkt", key: "k").host == "bkt.localhost:9000")
        env["CKSTORE_S3_ADDRESSING"] = "sideways"
        #expect(throws: S3ConfigError.invalidAddressing("sideways")) { try S3Config.fromEnvironment(env) }
    }

    @Test func credentialsFileDefaultProfile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckstore-s3-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent(".aws"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = """
            # comment\r
            [other]
            aws_access_key_id = OTHER
            aws_secret_access_key = other-secret

            [default]\r
            aws_access_key_id=FILEKEY\r
            aws_secret_access_key = file secret =with= equals\r
            ; another comment
            """
        try file.write(to: dir.appendingPathComponent(".aws/credentials"), atomically: true, encoding: .utf8)
        let config = try S3Config.fromEnvironment(["HOME": dir.path])
        #expect(config.credentials == S3Credentials(accessKeyId: "FILEKEY", secretAccessKey: "file secret =with= equals"))
        let other = try S3Config.fromEnvironment(["HOME": dir.path, "AWS_PROFILE": "other"])
        #expect(other.credentials.accessKeyId == "OTHER")
        // The environment wins over the file.
        #expect(try S3Config.fromEnvironment(Self.keys.merging(["HOME": dir.path]) { $1 }).credentials.accessKeyId == "AKIDTEST")
        #expect(throws: S3ConfigError.self) { try S3Config.fromEnvironment(["HOME": dir.path, "AWS_PROFILE": "missing"]) }
        #expect(throws: S3ConfigError.self) { try S3Config.fromEnvironment(["HOME": "/nonexistent"]) }
    }

    @Test func credentialsFileErrorsNeverEchoValues() {
        do {
            _ = try S3Config.parseCredentialsFile("[default]\naws_secret_access_key topsecretvalue\n", profile: "default")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("line 2"))
            #expect(!error.description.contains("topsecretvalue"))
        }
    }

    @Test func descriptionsHideCredentials() throws {
        let config = try S3Config.fromEnvironment(Self.keys.merging(["AWS_SESSION_TOKEN": "session-tok"]) { $1 })
        for text in ["\(config)", String(reflecting: config), String(reflecting: config.credentials), "\(config.credentials)"] {
            #expect(!text.contains("s3cr3t"))
            #expect(!text.contains("session-tok"))
        }
    }
}
