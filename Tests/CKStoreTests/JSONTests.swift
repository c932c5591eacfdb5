import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// Parses `text`, returning the error it throws (nil when it parses).
private func jsonError(_ text: String, maxDepth: Int = 64) -> SafetensorsError? {
    jsonError(Array(text.utf8), maxDepth: maxDepth)
}

private func jsonError(_ bytes: [UInt8], maxDepth: Int = 64) -> SafetensorsError? {
    do {
        _ = try JSON.parse(bytes, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}

@Suite struct JSONTests {
    @Test func parsesScalarsKeepingNumberLiterals() throws {
        let value = try JSON.parse(Array(#"[null,true,false,-0.5e3,0,12345678901234567890123,"x"]"#.utf8))
        #expect(
            value
                == .array([
                    .null, .bool(true), .bool(false), .number("-0.5e3"), .number("0"),
                    .number("12345678901234567890123"), .string("x"),
                ]))
    }

    @Test func preservesObjectKeyOrder() throws {
        let value = try JSON.parse(Array(#"{"b":1,"a":{"z":[],"y":{}}}"#.utf8))
        guard case .object(let members) = value, case .object(let inner) = members[1].value else {
            Issue.record("expected nested objects, got \(value)")
            return
        }
        #expect(members.map(\.key) == ["b", "a"])
        #expect(inner.map(\.key) == ["z", "y"])
    }

    @Test func equalityIsOrderSensitiveForObjects() throws {
        let ab = try JSON.parse(Array(#"{"a":1,"b":2}"#.utf8))
        let ba = try JSON.parse(Array(#"{"b":2,"a":1}"#.utf8))
        #expect(ab != ba)
        #expect(ab == .object([("a", .number("1")), ("b", .number("2"))]))
    }

    @Test func decodesAllEscapesAndSurrogatePairs() throws {
        let value = try JSON.parse(Array(#""\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00é""#.utf8))
        #expect(value == .string("\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{1F600}é"))
    }

    @Test func acceptsSurroundingWhitespace() throws {
        #expect(
            try JSON.parse(Array(" \t\r\n{ \"a\" : [ 1 , 2 ] } \n  ".utf8))
                == .object([("a", .array([.number("1"), .number("2")]))]))
    }

    @Test func acceptsAnyContiguousOrNonContiguousCollection() throws {
        let bytes = Array(#"{"a":"b"}"#.utf8)
        let expected = JSONValue.object([("a", .string("b"))])
        #expect(try JSON.parse(bytes[...]) == expected)
        #expect(try JSON.parse(bytes.lazy.map { $0 }) == expected)
    }

    @Test func serializesCompactlyWithMinimalEscaping() {
        let value = JSONValue.object([
            ("k\"\\", .array([.null, .bool(true), .number("1.5e-3")])),
            ("s", .string("a/é\n\t\u{1}\u{1F}\u{7F}")),
            ("o", .object([])),
        ])
        let text = String(decoding: JSON.serialize(value), as: UTF8.self)
        #expect(text == #"{"k\"\\":[null,true,1.5e-3],"s":"a/é\n\t\u0001\u001f"# + "\u{7F}" + #"","o":{}}"#)
    }

    @Test func serializeThenParseRoundTrips() throws {
        let value = JSONValue.object([
            ("z", .string("\u{0}\u{8}\"😀")),
            ("a", .array([.number("-1"), .object([("x", .null)]), .array([])])),
        ])
        #expect(try JSON.parse(JSON.serialize(value)) == value)
    }

    @Test func rejectsTrailingGarbageAtItsOffset() throws {
        let error = try #require(jsonError("{} x"))
        #expect(error.kind == .invalidJSON)
        #expect(error.message.contains("byte 3"))
        #expect(try #require(jsonError([0x7B, 0x7D, 0x00])).message.contains("byte 2"))
    }

    @Test func rejectsRawControlCharactersInStrings() throws {
        let error = try #require(jsonError("{\"a\nb\":1}"))
        #expect(error.kind == .invalidJSON)
        #expect(error.message.contains("byte 3"))
        #expect(error.message.contains("control character"))
        // Also after an escape (slow path).
        #expect(try #require(jsonError("\"\\n\u{1}\"")).message.contains("byte 3"))
    }

    @Test(arguments: [
        (#""\x""#, 1), (#""\u12G4""#, 5), (#""\ud800""#, 1), (#""\udc00""#, 1),
        (#""\ud800\u0041""#, 1), (#""ab\uD800x""#, 3),
    ])
    func rejectsInvalidEscapes(text: String, offset: Int) throws {
        let error = try #require(jsonError(text))
        #expect(error.kind == .invalidJSON)
        #expect(error.message.contains("byte \(offset):"))
    }

    @Test(
        arguments: [
            ([0x22, 0xFF, 0x22], 1), ([0x22, 0xC0, 0x80, 0x22], 1), ([0x22, 0x61, 0xED, 0xA0, 0x80, 0x22], 2),
            ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], 1), ([0x22, 0xE2, 0x82], 1), ([0x20, 0x80], 1),
        ] as [([UInt8], Int)])
    func rejectsInvalidUTF8AtItsOffset(bytes: [UInt8], offset: Int) throws {
        let error = try #require(jsonError(bytes))
        #expect(error.kind == .invalidUTF8)
        #expect(error.message.contains("byte \(offset)"))
    }

    @Test(arguments: ["", "{", "[1,", #"{"a""#, #"{"a":"#, #""abc"#, "tru", #""\u00"#, "-"])
    func rejectsTruncatedInput(text: String) throws {
        let error = try #require(jsonError(text))
        #expect(error.kind == .invalidJSON)
        #expect(error.message.contains("byte \(text.utf8.count):"))
        #expect(error.message.contains("unexpected end"))
    }

    @Test(arguments: ["01", "1.", ".5", "+1", "1e", "1e+", "-a", "--1", "0x10", "1.e3", "NaN"])
    func rejectsMalformedNumbers(text: String) throws {
        let error = try #require(jsonError("[\(text)]"))
        #expect(error.kind == .invalidJSON)
        #expect(error.message.contains("header byte"))
    }

    @Test(arguments: [#"{"a" 1}"#, #"{1:2}"#, "[1 2]", "{\"a\":1,}", "[1,]", "[nul]", "{,}"])
    func rejectsSyntaxErrors(text: String) {
        #expect(jsonError(text)?.kind == .invalidJSON)
    }

    @Test func rejectsDuplicateKeysAtAnyDepth() throws {
        let top = try #require(jsonError(#"{"a":1,"a":2}"#))
        #expect(top.kind == .duplicateKey)
        #expect(top.message.contains("'a'") && top.message.contains("byte 7"))
        let nested = try #require(jsonError(#"{"x":[{"k":1,"j":2,"k":3}]}"#))
        #expect(nested.kind == .duplicateKey)
        #expect(nested.message.contains("'k'") && nested.message.contains("byte 19"))
        // Equal keys in different objects are fine.
        #expect(jsonError(#"{"a":{"a":{"a":1}},"b":{"a":2}}"#) == nil)
    }

    @Test func nestingLimitIsExact() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(jsonError(ok) == nil)
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        let error = try #require(jsonError(tooDeep))
        #expect(error.kind == .invalidJSON)
        #expect(error.message.contains("byte 64") && error.message.contains("nesting"))
        #expect(jsonError(tooDeep, maxDepth: 65) == nil)
    }

    @Test func tenThousandOpenBracketsAreRejectedAtTheLimit() throws {
        let error = try #require(jsonError(String(repeating: "[", count: 10_000)))
        #expect(error.kind == .invalidJSON)
        #expect(error.message.contains("byte 64: nesting deeper than 64 levels"))
    }

    @Test func largeObjectWithLateDuplicateIsLinear() throws {
        let count = 200_000
        var text = "{"
        for i in 0..<count { text += "\"k\(i)\":\(i)," }
        text += "\"k7\":0}"
        let clock = ContinuousClock()
        let start = clock.now
        let error = try #require(jsonError(text))
        let elapsed = clock.now - start
        #expect(error.kind == .duplicateKey)
        #expect(error.message.contains("'k7'") && error.message.contains("byte \(text.utf8.count - 7)"))
        #expect(elapsed < .seconds(10), "took \(elapsed)")
    }
}
