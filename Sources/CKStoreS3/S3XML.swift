/// A small, tolerant reader for the XML S3 answers with (ListObjectsV2 results, error bodies).
///
/// It is not a general XML parser: it finds elements by name (namespace prefixes and attributes
/// allowed, same-name nesting not), decodes the five predefined entities, numeric character
/// references and CDATA sections, and ignores everything it does not look for.
struct S3XML {
    /// The document's bytes.
    let bytes: [UInt8]

    /// A reader over `bytes`.
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The inner ranges of every `<name …>…</name>` (or `<name/>`) inside `range`, in order.
    func elements(_ name: String, in range: Range<Int>? = nil) -> [Range<Int>] {
        let range = range ?? 0..<bytes.count
        let open = Array("<\(name)".utf8)
        let close = Array("</\(name)>".utf8)
        var found: [Range<Int>] = []
        var index = range.lowerBound
        while let start = find(open, from: index, before: range.upperBound) {
            let after = start + open.count
            guard after < range.upperBound else { break }
            let next = bytes[after]
            guard next == UInt8(ascii: ">") || next == UInt8(ascii: "/") || next == 0x20 || next == 0x09 || next == 0x0a || next == 0x0d
            else {
                index = after
                continue
            }
            guard let tagEnd = find([UInt8(ascii: ">")], from: after, before: range.upperBound) else { break }
            if bytes[tagEnd - 1] == UInt8(ascii: "/") {
                found.append(tagEnd + 1..<tagEnd + 1)
                index = tagEnd + 1
                continue
            }
            guard let end = find(close, from: tagEnd + 1, before: range.upperBound) else { break }
            found.append(tagEnd + 1..<end)
            index = end + close.count
        }
        return found
    }

    /// The decoded text of the first `<name>` inside `range`, or nil when there is none.
    func text(_ name: String, in range: Range<Int>? = nil) -> String? {
        guard let inner = firstElement(name, in: range) else { return nil }
        return Self.decode(bytes[inner])
    }

    /// The inner range of the first `<name>` inside `range`.
    func firstElement(_ name: String, in range: Range<Int>? = nil) -> Range<Int>? {
        // elements() is linear; the documents are small (one list page), so scanning all is fine.
        elements(name, in: range).first
    }

    /// The first index of `needle` at or after `from` that ends before `before`.
    private func find(_ needle: [UInt8], from: Int, before: Int) -> Int? {
        guard !needle.isEmpty, before - from >= needle.count else { return nil }
        let first = needle[0]
        var index = from
        let last = before - needle.count
        while index <= last {
            if bytes[index] == first {
                var matches = true
                for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                    matches = false
                    break
                }
                if matches { return index }
            }
            index += 1
        }
        return nil
    }

    /// Element text with entities, character references and CDATA sections decoded. Unknown or
    /// malformed references are kept literally.
    static func decode(_ slice: ArraySlice<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(slice.count)
        var index = slice.startIndex
        let cdataOpen = Array("<![CDATA[".utf8)
        while index < slice.endIndex {
            let byte = slice[index]
            if byte == UInt8(ascii: "<"), slice[index...].starts(with: cdataOpen) {
                let start = index + cdataOpen.count
                var end = start
                while end + 2 < slice.endIndex, !(slice[end] == 0x5d && slice[end + 1] == 0x5d && slice[end + 2] == 0x3e) { end += 1 }
                if end + 2 >= slice.endIndex { end = slice.endIndex }
                out.append(contentsOf: slice[start..<min(end, slice.endIndex)])
                index = min(end + 3, slice.endIndex)
                continue
            }
            guard byte == UInt8(ascii: "&"), let semicolon = slice[index...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else {
                out.append(byte)
                index += 1
                continue
            }
            let name = String(decoding: slice[(index + 1)..<semicolon], as: UTF8.self)
            var replacement: [UInt8]?
            switch name {
            case "amp": replacement = [UInt8(ascii: "&")]
            case "lt": replacement = [UInt8(ascii: "<")]
            case "gt": replacement = [UInt8(ascii: ">")]
            case "quot": replacement = [UInt8(ascii: "\"")]
            case "apos": replacement = [UInt8(ascii: "'")]
            default:
                var code: UInt32?
                if name.hasPrefix("#x") || name.hasPrefix("#X") {
                    code = UInt32(name.dropFirst(2), radix: 16)
                } else if name.hasPrefix("#") {
                    code = UInt32(name.dropFirst(), radix: 10)
                }
                if let code, let scalar = Unicode.Scalar(code) {
                    replacement = Array(String(Character(scalar)).utf8)
                }
            }
            if let replacement {
                out.append(contentsOf: replacement)
                index = semicolon + 1
            } else {
                out.append(byte)
                index += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// One object in a listing.
public struct S3ObjectInfo: Sendable, Equatable {
    /// The full key.
    public var key: String
    /// The size in bytes.
    public var size: Int

    /// An entry from its parts.
    public init(key: String, size: Int) {
        self.key = key
        self.size = size
    }
}

/// One page of a ListObjectsV2 listing.
public struct S3ListPage: Sendable, Equatable {
    /// The objects on this page, in key order.
    public var objects: [S3ObjectInfo]
    /// True when more pages follow.
    public var isTruncated: Bool
    /// The token that fetches the next page (present when truncated).
    public var nextContinuationToken: String?

    /// A page from its parts.
    public init(objects: [S3ObjectInfo], isTruncated: Bool, nextContinuationToken: String?) {
        self.objects = objects
        self.isTruncated = isTruncated
        self.nextContinuationToken = nextContinuationToken
    }

    /// Parses a `ListBucketResult` body; nil when it is not one (or an entry lacks Key or a valid Size).
    public init?(xml: [UInt8]) {
        let doc = S3XML(xml)
        guard let result = doc.firstElement("ListBucketResult") else { return nil }
        var objects: [S3ObjectInfo] = []
        for entry in doc.elements("Contents", in: result) {
            guard let key = doc.text("Key", in: entry), let sizeText = doc.text("Size", in: entry),
                let size = Int(sizeText.trimmingSpaces()), size >= 0
            else { return nil }
            objects.append(S3ObjectInfo(key: key, size: size))
        }
        let truncated = doc.text("IsTruncated", in: result)?.trimmingSpaces().lowercased() == "true"
        let token = doc.text("NextContinuationToken", in: result).flatMap { $0.isEmpty ? nil : $0 }
        self.init(objects: objects, isTruncated: truncated, nextContinuationToken: token)
    }
}

/// The fields of an S3 `<Error>` body.
struct S3ErrorBody: Equatable {
    /// The machine-readable code, e.g. `NoSuchKey`, `PreconditionFailed`, `SlowDown`.
    var code: String?
    /// The human-readable message.
    var message: String?
    /// The request id.
    var requestId: String?

    /// Parses an `<Error>` body; all fields nil when it is not one.
    init(xml: [UInt8]) {
        let doc = S3XML(xml)
        guard let error = doc.firstElement("Error") else { return }
        code = doc.text("Code", in: error)
        message = doc.text("Message", in: error)
        requestId = doc.text("RequestId", in: error)
    }

    /// An error body from its parts.
    init(code: String?, message: String?, requestId: String?) {
        self.code = code
        self.message = message
        self.requestId = requestId
    }
}
