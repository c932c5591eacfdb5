import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// Parses a header given as JSON text.
private func parse(_ json: String) throws(SafetensorsError) -> SafetensorsHeader {
    try SafetensorsHeader.parse(headerBytes: Array(json.utf8))
}

/// The error parsing `json` throws, nil when it parses.
private func headerError(_ json: String) -> SafetensorsError? {
    headerError(Array(json.utf8))
}

private func headerError(_ bytes: [UInt8]) -> SafetensorsError? {
    do {
        _ = try SafetensorsHeader.parse(headerBytes: bytes)
        return nil
    } catch {
        return error
    }
}

/// A tensor entry as header JSON.
private func entry(_ name: String, _ dtype: String, _ shape: String, _ begin: Int, _ end: Int) -> String {
    #""\#(name)":{"dtype":"\#(dtype)","shape":\#(shape),"data_offsets":[\#(begin),\#(end)]}"#
}

/// Python with safetensors and numpy, needed to cross-check against the reference writer.
private let referenceAvailable: Bool = {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import safetensors.numpy, numpy"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}()

@Suite struct SafetensorsHeaderValidTests {
    @Test(arguments: DType.allCases)
    func acceptsEveryDType(dtype: DType) throws {
        let header = try parse("{" + entry("t", dtype.rawValue, "[4,2]", 0, dtype.bitSize) + "}")
        let tensor = try #require(header.tensor(named: "t"))
        #expect(tensor.dtype == dtype)
        #expect(tensor.shape == [4, 2] && tensor.elementCount == 8)
        #expect(tensor.byteCount == dtype.bitSize && header.dataLength == dtype.bitSize)
    }

    @Test func acceptsZeroDimensionalTensor() throws {
        let header = try parse("{" + entry("s", "F64", "[]", 0, 8) + "}")
        #expect(header.tensors == [TensorInfo(name: "s", dtype: .f64, shape: [], dataStart: 0, dataEnd: 8)])
        #expect(header.tensors[0].elementCount == 1)
    }

    @Test func acceptsZeroSizeTensorsSharingAnOffset() throws {
        let json =
            "{"
            + [
                entry("z2", "F32", "[3,0]", 4, 4), entry("b", "F32", "[1]", 4, 8), entry("z1", "F32", "[0]", 4, 4),
                entry("a", "F32", "[1]", 0, 4), entry("z0", "I64", "[0]", 0, 0), entry("z3", "F4", "[0,7]", 8, 8),
            ].joined(separator: ",") + "}"
        let header = try parse(json)
        #expect(header.tensors.map(\.name) == ["z0", "a", "z1", "z2", "b", "z3"])
        #expect(header.tensor(named: "z2")?.shape == [3, 0])
        #expect(header.tensor(named: "z2")?.elementCount == 0)
        #expect(header.dataLength == 8)
    }

    @Test func readsMetadataInOrderOrNilWhenAbsent() throws {
        let with = try parse(#"{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"__metadata__":{"z":"1","a":""}}"#)
        let metadata = try #require(with.metadata)
        #expect(metadata.map(\.key) == ["z", "a"] && metadata.map(\.value) == ["1", ""])
        #expect(with.tensors.count == 1)
        #expect(try parse("{" + entry("t", "U8", "[1]", 0, 1) + "}").metadata == nil)
        // serde reads `Option<HashMap>` from null as None; so do we.
        #expect(try parse(#"{"__metadata__":null}"#).metadata == nil)
        #expect(try parse(#"{"__metadata__":{}}"#).metadata?.isEmpty == true)
    }

    @Test func sortsTensorsByDataOffsetsNotKeyOrder() throws {
        let header = try parse(
            "{"
                + [entry("c", "F16", "[2]", 4, 8), entry("a", "BF16", "[3]", 8, 14), entry("b", "I32", "[1]", 0, 4)]
                .joined(separator: ",") + "}")
        #expect(header.tensors.map(\.name) == ["b", "c", "a"])
        #expect(header.tensor(named: "a") == TensorInfo(name: "a", dtype: .bf16, shape: [3], dataStart: 8, dataEnd: 14))
        #expect(header.tensor(named: "missing") == nil)
        #expect(header.dataLength == 14)
        guard case .object(let members) = header.json else { Issue.record("json is not an object"); return }
        #expect(members.map(\.key) == ["c", "a", "b"])
    }

    @Test func acceptsWhitespaceAndPaddingKeepingBytesExactly() throws {
        let bytes = Array(("{ \"t\" :\n\t{\"dtype\" : \"U8\", \"shape\": [ 2 ], \"data_offsets\":[0 , 2]}\r\n}" + "     ").utf8)
        let header = try SafetensorsHeader.parse(headerBytes: bytes)
        #expect(header.headerBytes == bytes)
        #expect(header.tensors == [TensorInfo(name: "t", dtype: .u8, shape: [2], dataStart: 0, dataEnd: 2)])
        #expect(header.fileLength == 8 + bytes.count + 2)
    }

    @Test func ignoresUnknownTensorFieldsAndAcceptsEmptyHeader() throws {
        let header = try parse(#"{"t":{"extra":[1,{"x":null}],"dtype":"U8","shape":[1],"data_offsets":[0,1],"n":-1.5}}"#)
        #expect(header.tensors.map(\.dtype) == [.u8])
        let empty = try parse("{}")
        #expect(empty.tensors.isEmpty && empty.dataLength == 0 && empty.fileLength == 10)
    }

    @Test func encodeThenParseRoundTrips() throws {
        let tensors: [(name: String, dtype: DType, shape: [Int])] = [
            ("w", .f32, [2, 3]), ("scalar", .f64, []), ("empty", .bf16, [0, 5]), ("packed", .f4, [3, 2]),
            ("six", .f6E2M3, [4]), ("quote\"name", .u8, [1]),
        ]
        let metadata = [(key: "format", value: "pt"), (key: "note", value: "a\nb")]
        let bytes = SafetensorsHeader.encode(tensors: tensors, metadata: metadata)
        #expect((8 + bytes.count) % 8 == 0)
        #expect(bytes.starts(with: Array(#"{"__metadata__":{"format":"pt","note":"a\nb"},"w":{"dtype":"F32""#.utf8)))
        let header = try SafetensorsHeader.parse(headerBytes: bytes)
        #expect(
            header.tensors == [
                TensorInfo(name: "w", dtype: .f32, shape: [2, 3], dataStart: 0, dataEnd: 24),
                TensorInfo(name: "scalar", dtype: .f64, shape: [], dataStart: 24, dataEnd: 32),
                TensorInfo(name: "empty", dtype: .bf16, shape: [0, 5], dataStart: 32, dataEnd: 32),
                TensorInfo(name: "packed", dtype: .f4, shape: [3, 2], dataStart: 32, dataEnd: 35),
                TensorInfo(name: "six", dtype: .f6E2M3, shape: [4], dataStart: 35, dataEnd: 38),
                TensorInfo(name: "quote\"name", dtype: .u8, shape: [1], dataStart: 38, dataEnd: 39),
            ])
        #expect(header.metadata.map { $0.map(\.key) } == ["format", "note"])
        #expect(header.metadata?.last?.value == "a\nb")
        let bare = SafetensorsHeader.encode(tensors: [("x", .i8, [1])], metadata: nil)
        #expect(String(decoding: bare, as: UTF8.self) == #"{"x":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}"# + "   ")
    }

    @Test func replacingMetadataKeepsTensorsAndOffsets() throws {
        let original = try parse(
            #"{ "b":{"dtype":"F32","shape":[1],"data_offsets":[4,8],"x":1.50}, "__metadata__":{"old":"1"}, "#
                + #""a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]} }"#)
        let replaced = try SafetensorsHeader.parse(headerBytes: original.replacingMetadata([("new", "2")]))
        #expect(replaced.headerBytes.count % 8 == 0)
        #expect(replaced.tensors == original.tensors)
        #expect(replaced.metadata?.map(\.key) == ["new"] && replaced.metadata?.first?.value == "2")
        guard case .object(let members) = replaced.json else { Issue.record("json is not an object"); return }
        #expect(members.map(\.key) == ["b", "__metadata__", "a"])
        #expect(
            members[0].value
                == .object([
                    ("dtype", .string("F32")), ("shape", .array([.number("1")])),
                    ("data_offsets", .array([.number("4"), .number("8")])), ("x", .number("1.50")),
                ]))
        let inserted = try SafetensorsHeader.parse(
            headerBytes: try parse("{" + entry("t", "U8", "[2]", 0, 2) + "}")
                .replacingMetadata([("k", "v")]))
        guard case .object(let insertedMembers) = inserted.json else { Issue.record("json is not an object"); return }
        #expect(insertedMembers.map(\.key) == ["__metadata__", "t"])
        #expect(inserted.tensors == [TensorInfo(name: "t", dtype: .u8, shape: [2], dataStart: 0, dataEnd: 2)])
    }

    @Test func lengthPrefixIsLittleEndianAndDecodes() throws {
        #expect(SafetensorsHeader.lengthPrefix(0x0102_0304) == [4, 3, 2, 1, 0, 0, 0, 0])
        let prefix = SafetensorsHeader.lengthPrefix(1234) + [0xFF, 0xFF]
        #expect(try SafetensorsHeader.headerLength(prefix: prefix, fileSize: nil) == 1234)
        #expect(try SafetensorsHeader.headerLength(prefix: prefix, fileSize: 8 + 1234) == 1234)
        #expect(
            try SafetensorsHeader.headerLength(prefix: SafetensorsHeader.lengthPrefix(100_000_000), fileSize: nil)
                == 100_000_000)
    }

    @Test func gpt2SizedHeaderParsesQuickly() throws {
        var tensors: [(name: String, dtype: DType, shape: [Int])] = [
            ("wte.weight", .f32, [50257, 768]), ("wpe.weight", .f32, [1024, 768]),
        ]
        for layer in 0..<12 {
            for (suffix, shape) in [
                ("ln_1.weight", [768]), ("ln_1.bias", [768]), ("attn.bias", [1, 1, 1024, 1024]),
                ("attn.c_attn.weight", [768, 2304]), ("attn.c_attn.bias", [2304]), ("attn.c_proj.weight", [768, 768]),
                ("attn.c_proj.bias", [768]), ("ln_2.weight", [768]), ("ln_2.bias", [768]),
                ("mlp.c_fc.weight", [768, 3072]), ("mlp.c_fc.bias", [3072]), ("mlp.c_proj.weight", [3072, 768]),
                ("mlp.c_proj.bias", [768]),
            ] {
                tensors.append(("h.\(layer).\(suffix)", .f32, shape))
            }
        }
        let bytes = SafetensorsHeader.encode(tensors: tensors, metadata: [("format", "pt")])
        #expect(try SafetensorsHeader.parse(headerBytes: bytes).tensors.count == 158)
        // The best of 20 batches, so that other load on the machine does not make this flaky.
        let clock = ContinuousClock()
        var best = Duration.seconds(1)
        for _ in 0..<20 {
            let batch = try clock.measure {
                for _ in 0..<5 { _ = try SafetensorsHeader.parse(headerBytes: bytes) }
            }
            best = min(best, batch / 5)
        }
        #if DEBUG
            let limit = Duration.milliseconds(10)  // unoptimized code is ~10x slower
        #else
            let limit = Duration.milliseconds(1)
        #endif
        #expect(best < limit, "\(best) per parse of \(bytes.count) bytes")
    }

    @Test(.enabled(if: referenceAvailable, "python3 with safetensors and numpy is required"))
    func acceptsFilesWrittenByReferenceImplementation() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckstore-st-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = """
            import sys, numpy as np
            from safetensors.numpy import save_file
            d = sys.argv[1]
            save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, dtype=np.float16),
                       "s": np.array(7, dtype=np.int64), "e": np.zeros((0, 4), dtype=np.uint8),
                       "m": np.array([True, False])}, d + "/a.safetensors", metadata={"format": "np", "k": "v"})
            save_file({f"layer.{i}.{t}": np.zeros((i + 1, 3), dtype=t) for i in range(20)
                       for t in ["int8", "uint16", "int32", "uint32", "float64", "uint64", "int16", "complex64"]},
                      d + "/b.safetensors")
            save_file({}, d + "/c.safetensors")
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, dir.path]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)

        func load(_ name: String) throws -> ([UInt8], SafetensorsHeader) {
            let file = try [UInt8](Data(contentsOf: dir.appendingPathComponent(name)))
            let length = try SafetensorsHeader.headerLength(prefix: file.prefix(8), fileSize: file.count)
            let header = try SafetensorsHeader.parse(headerBytes: Array(file[8..<(8 + length)]))
            #expect(header.fileLength == file.count, "\(name)")
            return (file, header)
        }

        let (fileA, a) = try load("a.safetensors")
        #expect(a.metadata?.count == 2 && a.metadata?.contains { $0 == ("format", "np") } == true)
        let expectedA: [String: (DType, [Int])] = [
            "w": (.f32, [2, 3]), "b": (.f16, [3]), "s": (.i64, []), "e": (.u8, [0, 4]), "m": (.bool, [2]),
        ]
        #expect(a.tensors.count == expectedA.count)
        for (name, (dtype, shape)) in expectedA {
            #expect(a.tensor(named: name)?.dtype == dtype, "\(name)")
            #expect(a.tensor(named: name)?.shape == shape, "\(name)")
        }
        let w = try #require(a.tensor(named: "w"))
        let base = fileA.count - a.dataLength
        let floats = (0..<6).map { i in
            Float(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(fileA[base + w.dataStart + 4 * i + $1]) << (8 * $1) })
        }
        #expect(floats == [0, 1, 2, 3, 4, 5])

        let (_, b) = try load("b.safetensors")
        #expect(b.metadata == nil && b.tensors.count == 160)
        #expect(b.tensor(named: "layer.4.complex64")?.dtype == .c64)
        #expect(b.tensor(named: "layer.19.uint16")?.shape == [20, 3])
        #expect(Set(b.tensors.map(\.dtype)) == [.i8, .u16, .i32, .u32, .f64, .u64, .i16, .c64])

        let (_, c) = try load("c.safetensors")
        #expect(c.tensors.isEmpty && c.dataLength == 0)
    }
}

@Suite struct SafetensorsHeaderInvalidTests {
    /// Asserts that `json` fails with `kind` and a message containing every one of `fragments`.
    private func expectFailure(
        _ json: String, _ kind: SafetensorsError.Kind, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let error = headerError(json) else {
            Issue.record("expected \(kind), but the header parsed", sourceLocation: sourceLocation)
            return
        }
        #expect(error.kind == kind, "\(error.message)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(error.message.contains(fragment), "\(error.message)", sourceLocation: sourceLocation)
        }
        #expect(!error.message.contains("\n"), sourceLocation: sourceLocation)
    }

    @Test func rejectsTruncatedJSON() {
        let json = #"{"a":{"dtype":"F32""#
        expectFailure(json, .invalidJSON, "header byte \(json.utf8.count)", "unexpected end")
    }

    @Test func rejectsNonObjectHeaders() {
        expectFailure(#"[{"a":1}]"#, .notAnObject, "header byte 0")
        expectFailure(#""{}""#, .notAnObject, "header byte 0")
        expectFailure(" {}", .notAnObject, "header byte 0")  // stricter than safetensors 0.8
        expectFailure("", .notAnObject, "empty")
    }

    @Test func rejectsInvalidUTF8() throws {
        let error = try #require(headerError(Array(#"{"a"#.utf8) + [0xC3, 0x28] + Array(#"":1}"#.utf8)))
        #expect(error.kind == .invalidUTF8)
        #expect(error.message.contains("header byte 3"))
        // Checked before the leading '{', as in the reference.
        #expect(headerError([0xFF, 0x7B, 0x7D])?.kind == .invalidUTF8)
    }

    @Test func rejectsHeaderLengthOverLimit() throws {
        for value in [UInt64(100_000_001), UInt64.max] {
            let prefix = (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
            do {
                _ = try SafetensorsHeader.headerLength(prefix: prefix, fileSize: nil)
                Issue.record("accepted header length \(value)")
            } catch {
                #expect(error.kind == .headerTooLarge)
                #expect(error.message.contains("\(value)") && error.message.contains("byte 0"))
            }
        }
    }

    @Test func rejectsHeaderLengthBeyondFileSize() throws {
        do {
            _ = try SafetensorsHeader.headerLength(prefix: SafetensorsHeader.lengthPrefix(100), fileSize: 107)
            Issue.record("accepted a header ending past the file")
        } catch {
            #expect(error.kind == .headerBeyondFile)
            #expect(error.message.contains("byte 0") && error.message.contains("107"))
        }
        #expect(throws: SafetensorsError.truncated(at: 5, expected: 8)) {
            try SafetensorsHeader.headerLength(prefix: [1, 2, 3, 4, 5], fileSize: nil)
        }
    }

    @Test func rejectsUnknownDType() {
        expectFailure("{" + entry("h.0.w", "F17", "[1]", 0, 4) + "}", .unknownDType, "'h.0.w'", "'F17'")
        expectFailure("{" + entry("t", "f32", "[1]", 0, 4) + "}", .unknownDType, "'t'", "'f32'")
    }

    @Test(arguments: ["-1", "1.5", "2.0", "1e2", "-0", "9223372036854775808", "99999999999999999999", "\"2\"", "null"])
    func rejectsShapeValuesThatAreNotNonNegativeInts(value: String) {
        expectFailure("{" + entry("t", "U8", "[1,\(value)]", 0, 4) + "}", .invalidTensorInfo, "'t'", "shape[1]")
    }

    @Test func acceptsLargestIntThenRejectsOffsetsBeyondInt() {
        expectFailure(
            #"{"t":{"dtype":"U8","shape":[0],"data_offsets":[0,9223372036854775807]}}"#, .sizeMismatch, "'t'")
        expectFailure(
            #"{"t":{"dtype":"U8","shape":[0],"data_offsets":[0,9223372036854775808]}}"#, .invalidTensorInfo,
            "'t'", "data_offsets[1]")
    }

    @Test func rejectsShapeProductOverflow() {
        expectFailure("{" + entry("big", "U8", "[4294967296,4294967296]", 0, 0) + "}", .shapeOverflow, "'big'")
    }

    @Test func rejectsBitCountOverflow() {
        // 2^60 elements fit in Int; 2^60 × 64 bits do not.
        expectFailure("{" + entry("big", "F64", "[1152921504606846976]", 0, 0) + "}", .shapeOverflow, "'big'", "bits")
    }

    @Test func rejectsPackedTensorWithPartialByte() {
        expectFailure("{" + entry("q", "F4", "[3]", 0, 2) + "}", .misalignedBits, "'q'", "12 bits")
        expectFailure("{" + entry("r", "F6_E3M2", "[2]", 0, 2) + "}", .misalignedBits, "'r'")
    }

    @Test func rejectsOffsetsOfWrongSize() {
        expectFailure(
            "{" + entry("h.0.w", "F32", "[2,2]", 0, 12) + "}", .sizeMismatch,
            "tensor 'h.0.w': data_offsets [0, 12] hold 12 bytes but F32 shape [2, 2] needs 16")
    }

    @Test func rejectsGapBetweenTensors() {
        expectFailure(
            "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}", .offsetsGap,
            "'b'", "'a'", "gap of 4 bytes")
    }

    @Test func rejectsOverlappingTensors() {
        expectFailure(
            "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}", .offsetsOverlap,
            "'b'", "'a'")
        // A zero-size tensor inside another tensor's bytes overlaps it too.
        expectFailure(
            "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("z", "F32", "[0]", 4, 4) + "}", .offsetsOverlap, "'z'")
    }

    @Test func rejectsDataNotStartingAtZero() {
        expectFailure("{" + entry("a", "F32", "[1]", 4, 8) + "}", .offsetsGap, "'a'", "starts at 0")
    }

    @Test func rejectsBeginAfterEnd() {
        expectFailure("{" + entry("a", "F32", "[1]", 8, 4) + "}", .invalidTensorInfo, "'a'", "[8, 4]")
    }

    @Test func rejectsOffsetsWithoutExactlyTwoElements() {
        expectFailure(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}"#, .invalidTensorInfo, "'a'", "3 elements")
        expectFailure(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":0}}"#, .invalidTensorInfo, "'a'", "data_offsets")
    }

    @Test func rejectsDuplicateTensorNames() {
        let first = "{" + entry("w", "U8", "[1]", 0, 1) + ","
        expectFailure(first + entry("w", "U8", "[1]", 1, 2) + "}", .duplicateKey, "'w'", "header byte \(first.utf8.count)")
    }

    @Test func rejectsDuplicateMetadataKeys() {
        expectFailure(#"{"__metadata__":{"k":"1","k":"2"}}"#, .duplicateKey, "'k'", "header byte 25")
        expectFailure(#"{"__metadata__":{},"__metadata__":{}}"#, .duplicateKey, "'__metadata__'", "header byte 19")
    }

    @Test func rejectsNonStringMetadataValue() {
        expectFailure(#"{"__metadata__":{"ok":"1","epoch":3}}"#, .invalidMetadata, "'epoch'", "3")
        expectFailure(#"{"__metadata__":{"n":null}}"#, .invalidMetadata, "'n'")
    }

    @Test func rejectsMetadataThatIsNotAnObject() {
        expectFailure(#"{"__metadata__":["a","b"]}"#, .invalidMetadata, "__metadata__", "an array")
        expectFailure(#"{"__metadata__":"x"}"#, .invalidMetadata, "__metadata__", "a string")
    }

    @Test(arguments: ["dtype", "shape", "data_offsets"])
    func rejectsMissingTensorField(field: String) {
        var fields = [#""dtype":"U8""#, #""shape":[1]"#, #""data_offsets":[0,1]"#]
        fields.removeAll { $0.hasPrefix("\"\(field)\"") }
        expectFailure("{\"t.x\":{" + fields.joined(separator: ",") + "}}", .invalidTensorInfo, "'t.x'", "\"\(field)\"")
    }

    @Test func rejectsTensorEntryThatIsNotAnObject() {
        expectFailure(#"{"t":["U8",[1],[0,1]]}"#, .invalidTensorInfo, "'t'", "an array")
        expectFailure(#"{"t":{"dtype":1,"shape":[1],"data_offsets":[0,1]}}"#, .invalidTensorInfo, "'t'", "dtype")
    }

    @Test func rejectsDeepNesting() {
        expectFailure(#"{"a":"# + String(repeating: "[", count: 10_000), .invalidJSON, "header byte 68", "nesting")
    }

    @Test func rejectsTrailingGarbageAfterObject() {
        let json = "{" + entry("t", "U8", "[1]", 0, 1) + "}   x"
        expectFailure(json, .invalidJSON, "header byte \(json.utf8.count - 1)")
        let nulPadded = headerError(Array("{}".utf8) + [0, 0])
        #expect(nulPadded?.kind == .invalidJSON && nulPadded?.message.contains("header byte 2") == true)
    }

    @Test func rejectsControlCharacterInString() {
        expectFailure("{\"a\u{9}b\":{}}", .invalidJSON, "header byte 3", "control character")
    }

    @Test func rejectsInvalidUnicodeEscapes() {
        expectFailure(#"{"a\uZZZZ":{}}"#, .invalidJSON, "header byte 5")
        expectFailure(#"{"__metadata__":{"k":"\udfff"}}"#, .invalidJSON, "header byte 22", "surrogate")
    }

    @Test func messagesEscapeHostileNames() {
        expectFailure(#"{"bad\nname":{"dtype":"X","shape":[],"data_offsets":[0,0]}}"#, .unknownDType, #"'bad\u000aname'"#)
    }
}
