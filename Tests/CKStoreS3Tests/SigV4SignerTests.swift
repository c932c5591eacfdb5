import Testing

@testable import CKStoreS3

/// AWS's published Signature V4 examples for S3 ("Signature Calculations for the Authorization
/// Header", bucket `examplebucket`, 24 May 2013): inputs and expected signatures.
@Suite struct SigV4SignerTests {
    static let credentials = S3Credentials(
        accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let signer = SigV4Signer(credentials: credentials, region: "us-east-1")
    static let host = "examplebucket.s3.amazonaws.com"
    static let date = "20130524T000000Z"

    @Test func getObjectWithRange() {
        let signed = Self.signer.sign(
            .init(method: "GET", host: Self.host, path: "/test.txt", headers: [(name: "Range", value: "bytes=0-9")]),
            amzDate: Self.date)
        #expect(
            signed.canonicalRequest
                == """
                GET
                /test.txt

                host:examplebucket.s3.amazonaws.com
                range:bytes=0-9
                x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                x-amz-date:20130524T000000Z

                host;range;x-amz-content-sha256;x-amz-date
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                """)
        #expect(
            signed.stringToSign
                == "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                + "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
        #expect(signed.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(
            signed.authorization
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func putObjectWithEncodedKeyAndSignedPayload() {
        let payload = Array("Welcome to Amazon S3.".utf8)
        let hash = S3Crypto.sha256Hex(payload)
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let signed = Self.signer.sign(
            .init(
                method: "PUT", host: Self.host, path: "/test$file.text",
                headers: [
                    (name: "Date", value: "Fri, 24 May 2013 00:00:00 GMT"), (name: "x-amz-storage-class", value: "REDUCED_REDUNDANCY"),
                ],
                payloadHash: hash),
            amzDate: Self.date)
        #expect(signed.encodedPath == "/test%24file.text")
        #expect(signed.signedHeaders == "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class")
        #expect(
            signed.stringToSign.hasSuffix("9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"))
        #expect(signed.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func getBucketLifecycleWithValuelessQuery() {
        let signed = Self.signer.sign(
            .init(method: "GET", host: Self.host, path: "/", query: [(name: "lifecycle", value: "")]), amzDate: Self.date)
        #expect(signed.encodedQuery == "lifecycle=")
        #expect(signed.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    @Test func listObjectsWithQuerySorted() {
        let signed = Self.signer.sign(
            .init(method: "GET", host: Self.host, path: "/", query: [(name: "prefix", value: "J"), (name: "max-keys", value: "2")]),
            amzDate: Self.date)
        #expect(signed.encodedQuery == "max-keys=2&prefix=J")
        #expect(
            S3Crypto.sha256Hex(Array(signed.canonicalRequest.utf8)) == "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7")
        #expect(signed.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func everyInputChangesTheSignature() {
        let base = SigV4Signer.Request(method: "GET", host: Self.host, path: "/test.txt")
        let reference = Self.signer.sign(base, amzDate: Self.date).signature
        var other = base
        other.method = "DELETE"
        #expect(Self.signer.sign(other, amzDate: Self.date).signature != reference)
        other = base
        other.path = "/test.txu"
        #expect(Self.signer.sign(other, amzDate: Self.date).signature != reference)
        other = base
        other.payloadHash = SigV4Signer.unsignedPayload
        #expect(Self.signer.sign(other, amzDate: Self.date).signature != reference)
        #expect(Self.signer.sign(base, amzDate: "20130524T000001Z").signature != reference)
        let eu = SigV4Signer(credentials: Self.credentials, region: "eu-west-1")
        #expect(eu.sign(base, amzDate: Self.date).signature != reference)
    }

    @Test func sessionTokenIsSignedAndSent() {
        var credentials = Self.credentials
        credentials.sessionToken = "token/with+chars"
        let signed = SigV4Signer(credentials: credentials, region: "us-east-1").sign(
            .init(method: "GET", host: Self.host, path: "/test.txt"), amzDate: Self.date)
        #expect(signed.signedHeaders == "host;x-amz-content-sha256;x-amz-date;x-amz-security-token")
        #expect(signed.headers.contains { $0.name == "x-amz-security-token" && $0.value == "token/with+chars" })
    }

    @Test func secretNeverLeavesTheSigner() {
        let signed = Self.signer.sign(.init(method: "GET", host: Self.host, path: "/k"), amzDate: Self.date)
        let everything = signed.headers.map { "\($0.name): \($0.value)" }.joined() + signed.canonicalRequest + signed.stringToSign
        #expect(!everything.contains(Self.credentials.secretAccessKey))
        #expect(!"\(Self.credentials)".contains("wJalr"))
        #expect(!"\(Self.credentials)".contains("AKIA"))
    }

    @Test func uriEncodingFollowsS3Rules() {
        #expect(S3URIEncoding.encodePath("/b/a b/c+d/é~._-") == "/b/a%20b/c%2Bd/%C3%A9~._-")
        #expect(S3URIEncoding.encodePath("/b/already%20encoded") == "/b/already%2520encoded")
        #expect(S3URIEncoding.encodePath("/b//x/") == "/b//x/")
        #expect(S3URIEncoding.encode("a/b=c&d") == "a%2Fb%3Dc%26d")
        #expect(
            S3URIEncoding.canonicalQuery([(name: "b", value: "2"), (name: "a", value: "x y"), (name: "a", value: "1")]) == "a=1&a=x%20y&b=2"
        )
    }

    @Test func canonicalHeaderValuesAreTrimmed() {
        #expect(SigV4Signer.canonicalValue("  a   b  c ") == "a b c")
        #expect(SigV4Signer.canonicalValue("") == "")
    }

    @Test func amzDateFormatsUTC() {
        #expect(SigV4Signer.amzDate(epochSeconds: 1_369_353_600) == "20130524T000000Z")
        #expect(SigV4Signer.amzDate(epochSeconds: 0) == "19700101T000000Z")
        #expect(SigV4Signer.amzDate(epochSeconds: 1_700_000_000) == "20231114T221320Z")
    }

    @Test func hmacMatchesRFC4231() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = S3Crypto.hmacSHA256(key: Array("Jefe".utf8), "what do ya want for nothing?")
        #expect(S3Crypto.hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }
}
