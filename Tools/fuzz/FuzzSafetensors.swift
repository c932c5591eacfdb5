// libFuzzer target for the safetensors header parser and the JSON parser/serializer.
//
// Built by Tools/fuzz/build.sh together with Sources/CKStore/Safetensors/*.swift into one
// module (so internal API is reachable), with -sanitize=fuzzer,address. Each input is used
// three ways:
//
//  1. as a whole safetensors file: `SafetensorsHeader.headerLength(prefix:fileSize:)`, then
//     `parse(headerBytes:)` on the header bytes it declares;
//  2. as the header bytes alone: `SafetensorsHeader.parse(headerBytes:)`;
//  3. as a JSON document: `JSON.parse`, then serialize → parse → serialize.
//
// Beyond "no crash, no sanitizer report, no hang", it checks these invariants and traps
// (a crash libFuzzer records) when one fails:
//
//  * headerLength: the result is ≤ maxHeaderLength and 8 + N ≤ file size; without a file size
//    it returns the same N; it throws exactly when fewer than 8 bytes are given, the value
//    exceeds the limit, or the header runs past the file.
//  * parse: the file length 8 + N + dataLength fits in Int (no overflow);
//    the tensors are sorted by (begin, end, name) and tile [0, dataLength) exactly; each
//    tensor's byte count is its element count × bit size / 8; names are unique and
//    `tensor(named:)` finds each; `__metadata__` matches the JSON; headerBytes are the input.
//  * re-encoding a parsed header with `encode(tensors:metadata:)` (tensors in data-section
//    order) gives a header that parses to the same tensors and metadata, padded so that
//    8 + N is a multiple of 8; `replacingMetadata` keeps every tensor and sets the metadata.
//  * every error message is one line (no CR/LF) of at most 4 KiB, as the CLI promises;
//  * JSON: a parsed value serializes to bytes that parse to an equal value, and serializing
//    that again gives the same bytes (the compact form is a fixed point); a document that
//    parses at depth limit d also parses at any larger limit.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    checkFile(bytes)
    checkHeader(bytes)
    checkJSON(bytes)
    return 0
}

/// Stops the run with a message libFuzzer shows next to the crash.
func violated(_ what: String, file: StaticString = #file, line: UInt = #line) -> Never {
    fatalError("fuzz invariant violated: \(what)", file: file, line: line)
}

/// The CLI prints an error as one `ckstore: error:` line: a message must hold no line break
/// (names are quoted with control characters escaped) and stay short.
func checkMessage(_ error: SafetensorsError) {
    let message = error.message
    if message.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) {
        violated("multi-line error message: \(message.debugDescription)")
    }
    if message.utf8.count > 4096 { violated("error message of \(message.utf8.count) bytes") }
}

func checkFile(_ bytes: [UInt8]) {
    let length: Int
    do {
        length = try SafetensorsHeader.headerLength(prefix: bytes, fileSize: bytes.count)
    } catch {
        checkMessage(error)
        // Must be one of the three documented reasons.
        var declared: UInt64 = 0
        for (i, b) in bytes.prefix(8).enumerated() { declared |= UInt64(b) << (8 * UInt64(i)) }
        let expected =
            bytes.count < 8 || declared > UInt64(SafetensorsHeader.maxHeaderLength) || Int(declared) > bytes.count - 8
        if !expected { violated("headerLength threw \(error) for a valid prefix") }
        switch error.kind {
        case .truncated, .headerTooLarge, .headerBeyondFile: break
        default: violated("headerLength threw an unexpected kind \(error.kind)")
        }
        return
    }
    guard length >= 0, length <= SafetensorsHeader.maxHeaderLength, 8 + length <= bytes.count else {
        violated("headerLength returned \(length) for a \(bytes.count)-byte file")
    }
    guard (try? SafetensorsHeader.headerLength(prefix: bytes, fileSize: nil)) == length else {
        violated("headerLength without a file size disagrees")
    }
    let header = Array(bytes[8..<(8 + length)])
    do {
        let parsed = try SafetensorsHeader.parse(headerBytes: header)
        checkParsed(parsed, from: header)
        // The file length the header implies is consistent with the input.
        if parsed.fileLength != 8 + length + parsed.dataLength { violated("fileLength") }
    } catch {
        checkMessage(error)
    }
}

func checkHeader(_ bytes: [UInt8]) {
    do {
        checkParsed(try SafetensorsHeader.parse(headerBytes: bytes), from: bytes)
    } catch {
        checkMessage(error)
    }
}

/// Invariants of a successfully parsed header, and its re-encoding round trips.
func checkParsed(_ h: SafetensorsHeader, from bytes: [UInt8]) {
    if h.headerBytes != bytes { violated("headerBytes differ from the input") }
    guard case .object(let members) = h.json else { violated("json is not an object") }
    // Tiling.
    var end = 0
    var names = Set<String>()
    for (i, t) in h.tensors.enumerated() {
        if i > 0 {
            let p = h.tensors[i - 1]
            if !((p.dataStart, p.dataEnd, p.name) < (t.dataStart, t.dataEnd, t.name)) { violated("tensors not sorted at \(i)") }
        }
        if t.dataStart != end { violated("tensor \(i) starts at \(t.dataStart), expected \(end)") }
        if t.dataEnd < t.dataStart { violated("tensor \(i) ends before it starts") }
        let (bits, o) = t.elementCount.multipliedReportingOverflow(by: t.dtype.bitSize)
        if o || bits % 8 != 0 || bits / 8 != t.byteCount { violated("tensor \(i) byte count") }
        if t.shape.contains(where: { $0 < 0 }) { violated("negative dimension") }
        end = t.dataEnd
        if !names.insert(t.name).inserted { violated("duplicate name") }
        if t.name == "__metadata__" { violated("__metadata__ parsed as a tensor") }
        guard let found = h.tensor(named: t.name), found == t else { violated("tensor(named:) misses \(i)") }
    }
    if end != h.dataLength { violated("dataLength \(h.dataLength), tensors end at \(end)") }
    // The whole file, prefix + header + data, fits in a signed 64-bit size (fileLength cannot
    // overflow).
    if h.dataLength > Int.max - 8 - h.headerBytes.count { violated("file length beyond Int.max accepted") }
    let tensorMembers = members.filter { $0.key != "__metadata__" }.count
    if tensorMembers != h.tensors.count { violated("tensor count") }
    // Metadata agrees with the JSON.
    if let meta = members.first(where: { $0.key == "__metadata__" }) {
        switch meta.value {
        case .null: if h.metadata != nil { violated("null metadata") }
        case .object(let entries):
            guard let m = h.metadata, m.count == entries.count else { violated("metadata count") }
            for (a, b) in zip(m, entries) {
                guard a.key == b.key, case .string(let s) = b.value, s == a.value else { violated("metadata entry") }
            }
        default: violated("metadata of another type accepted")
        }
    } else if h.metadata != nil {
        violated("metadata without __metadata__")
    }

    // encode(tensors:metadata:) in data-section order gives back the same layout.
    let encoded = SafetensorsHeader.encode(
        tensors: h.tensors.map { ($0.name, $0.dtype, $0.shape) }, metadata: h.metadata)
    if (8 + encoded.count) % 8 != 0 { violated("encoded header is not padded") }
    let reparsed: SafetensorsHeader
    do {
        reparsed = try SafetensorsHeader.parse(headerBytes: encoded)
    } catch {
        violated("encoded header does not parse: \(error)")
    }
    if reparsed.tensors != h.tensors { violated("encode round trip changed the tensors") }
    if !sameMetadata(reparsed.metadata, h.metadata) { violated("encode round trip changed the metadata") }
    if reparsed.dataLength != h.dataLength { violated("encode round trip changed dataLength") }

    // replacingMetadata keeps the tensors and sets the metadata.
    let newMeta: [(key: String, value: String)] = [("ckstore.recipe", "lawa run=r k=2 stride=1 at=1"), ("x", "\u{0}\"\\")]
    let replaced = h.replacingMetadata(newMeta)
    if (8 + replaced.count) % 8 != 0 { violated("replacingMetadata is not padded") }
    do {
        let r = try SafetensorsHeader.parse(headerBytes: replaced)
        if r.tensors != h.tensors { violated("replacingMetadata changed the tensors") }
        if !sameMetadata(r.metadata, newMeta) { violated("replacingMetadata did not set the metadata") }
    } catch {
        violated("replacingMetadata output does not parse: \(error)")
    }
}

func sameMetadata(_ a: [(key: String, value: String)]?, _ b: [(key: String, value: String)]?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (x?, y?): return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    default: return false
    }
}

func checkJSON(_ bytes: [UInt8]) {
    let value: JSONValue
    do {
        value = try JSON.parse(bytes, maxDepth: 64)
    } catch {
        checkMessage(error)
        switch error.kind {
        case .invalidUTF8, .invalidJSON, .duplicateKey: return
        default: violated("JSON.parse threw an unexpected kind \(error.kind)")
        }
    }
    let serialized = JSON.serialize(value)
    let again: JSONValue
    do {
        again = try JSON.parse(serialized, maxDepth: 64)
    } catch {
        violated("serialized JSON does not parse: \(error)")
    }
    if again != value { violated("JSON round trip changed the value") }
    if JSON.serialize(again) != serialized { violated("JSON serialization is not a fixed point") }
    // A larger depth limit accepts whatever a smaller one does, with the same result.
    guard let deeper = try? JSON.parse(bytes, maxDepth: 1000), deeper == value else { violated("maxDepth monotonicity") }
    // Parsing with the UTF-8 pass skipped gives the same value on valid UTF-8.
    guard let unchecked = try? JSON.parse(bytes, maxDepth: 64, validatingUTF8: false), unchecked == value else {
        violated("validatingUTF8: false disagrees")
    }
}
