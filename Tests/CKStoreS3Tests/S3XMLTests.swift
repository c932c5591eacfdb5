import Testing

@testable import CKStoreS3

@Suite struct S3XMLTests {
    static func page(_ body: String) -> S3ListPage? { S3ListPage(xml: Array(body.utf8)) }

    @Test func truncatedPageWithEscapedKeys() throws {
        let xml = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
              <Name>bkt</Name><Prefix>p/</Prefix><KeyCount>3</KeyCount><MaxKeys>3</MaxKeys>
              <IsTruncated>true</IsTruncated>
              <Contents><Key>p/a&amp;b&lt;c&gt;&quot;d&apos;</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>
                <ETag>&quot;abc&quot;</ETag><Size>4194304</Size><StorageClass>STANDARD</StorageClass>
                <Owner><ID>o</ID><DisplayName>Key Owner</DisplayName></Owner></Contents>
              <Contents><Key>p/caf&#233;&#x1F600; x</Key><Size>0</Size></Contents>
              <Contents>
                <Key><![CDATA[p/raw<&>]]></Key>
                <Size> 17 </Size>
              </Contents>
              <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
            </ListBucketResult>
            """
        let page = try #require(Self.page(xml))
        #expect(
            page.objects == [
                S3ObjectInfo(key: "p/a&b<c>\"d'", size: 4_194_304), S3ObjectInfo(key: "p/café😀 x", size: 0),
                S3ObjectInfo(key: "p/raw<&>", size: 17),
            ])
        #expect(page.isTruncated)
        #expect(page.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
    }

    @Test func emptyListing() throws {
        let page = try #require(
            Self.page(
                "<ListBucketResult><Name>b</Name><Prefix>none/</Prefix><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"
            ))
        #expect(page.objects.isEmpty)
        #expect(!page.isTruncated)
        #expect(page.nextContinuationToken == nil)
        // Self-closing and empty elements are tolerated.
        let other = try #require(Self.page("<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken/></ListBucketResult>"))
        #expect(other.objects.isEmpty && other.nextContinuationToken == nil)
    }

    @Test func lastPageHasNoToken() throws {
        let page = try #require(
            Self.page(
                "<ListBucketResult><Contents><Key>k</Key><Size>1</Size></Contents><IsTruncated>false</IsTruncated></ListBucketResult>"))
        #expect(page.objects == [S3ObjectInfo(key: "k", size: 1)])
        #expect(!page.isTruncated)
    }

    @Test func malformedListingsAreRefused() {
        #expect(Self.page("<Error><Code>NoSuchBucket</Code></Error>") == nil)
        #expect(Self.page("<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents></ListBucketResult>") == nil)
        #expect(Self.page("<ListBucketResult><Contents><Key>k</Key></Contents></ListBucketResult>") == nil)
        #expect(Self.page("<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>") == nil)
        #expect(Self.page("") == nil)
    }

    @Test func similarTagNamesAreNotConfused() {
        let doc = S3XML(Array("<R><KeyCount>2</KeyCount><Key>real</Key><Keys>no</Keys></R>".utf8))
        #expect(doc.text("Key") == "real")
        #expect(doc.text("KeyCount") == "2")
        #expect(doc.text("Missing") == nil)
    }

    @Test func unknownEntitiesAreKeptLiterally() {
        #expect(S3XML.decode(ArraySlice(Array("a&bogus;b&#xZZ;c&amp".utf8))) == "a&bogus;b&#xZZ;c&amp")
        #expect(S3XML.decode(ArraySlice(Array("&#65;&#x42;&#x00000043;".utf8))) == "ABC")
    }

    @Test func errorBody() {
        let body = S3ErrorBody(
            xml: Array(
                """
                <?xml version="1.0" encoding="UTF-8"?>
                <Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>
                <Key>a&amp;b</Key><BucketName>bkt</BucketName><RequestId>tx0001-abc</RequestId><HostId>h</HostId></Error>
                """.utf8))
        #expect(body == S3ErrorBody(code: "NoSuchKey", message: "The specified key does not exist.", requestId: "tx0001-abc"))
        #expect(S3ErrorBody(xml: []) == S3ErrorBody(code: nil, message: nil, requestId: nil))
    }

    @Test func errorClassificationUsesStatusAndCode() {
        func kind(_ status: Int?, _ code: String?) -> String {
            let context = S3ErrorContext(operation: "Op", bucket: "b", key: "k", status: status, code: code)
            switch S3Error.classify(context) {
            case .notFound: return "notFound"
            case .conflict: return "conflict"
            case .unavailable: return "unavailable"
            case .auth: return "auth"
            case .permanent: return "permanent"
            }
        }
        #expect(kind(404, "NoSuchKey") == "notFound")
        #expect(kind(404, nil) == "notFound")
        #expect(kind(412, "PreconditionFailed") == "conflict")
        #expect(kind(409, "BucketAlreadyExists") == "conflict")
        #expect(kind(503, "SlowDown") == "unavailable")
        #expect(kind(429, nil) == "unavailable")
        #expect(kind(400, "RequestTimeout") == "unavailable")
        #expect(kind(nil, nil) == "unavailable")
        #expect(kind(403, "SignatureDoesNotMatch") == "auth")
        #expect(kind(403, "AccessDenied") == "auth")
        #expect(kind(400, "InvalidAccessKeyId") == "auth")
        #expect(kind(400, "InvalidArgument") == "permanent")
        #expect(kind(416, "InvalidRange") == "permanent")
        let error = S3Error.notFound(
            S3ErrorContext(operation: "GetObject", bucket: "b", key: "k", status: 404, code: "NoSuchKey", requestId: "tx1"))
        #expect(error.description == "S3 not found: GetObject s3://b/k: HTTP 404 NoSuchKey, request id tx1, 1 attempt")
    }
}
