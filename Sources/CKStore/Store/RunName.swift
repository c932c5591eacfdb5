/// Validation of the names people type and later read back in listings: run names, metric
/// names and variant names. Two names that look identical in `ls` must be the same name, so
/// invisible and format characters, non-ASCII spaces and names that are not in Unicode
/// normalization form C (NFC, composed) are refused, with a message naming the code point.
extension Store {
    /// Validates a run name: 1–200 characters, no '@' or ',' (they separate refs), not
    /// starting with '-', no spaces, control, format or other invisible characters, and in
    /// Unicode NFC.
    /// - Throws: `.badInput` naming the offending character, its code point and position.
    public static func validateRunName(_ run: String) throws(CKStoreError) {
        guard !run.isEmpty, run.count <= 200 else {
            throw CKStoreError(.badInput, "run name must be 1 to 200 characters")
        }
        guard !run.hasPrefix("-"), !run.contains("@"), !run.contains(","),
            !run.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == " " })
        else {
            throw CKStoreError(
                .badInput,
                "invalid run name '\(escapedForMessage(run))': no '@', ',', spaces or control characters, and no leading '-'")
        }
        try validateName(run, kind: "run name")
    }

    /// Checks that `name` (a run, metric or variant name, as `kind` says) contains no
    /// invisible or confusable characters and is in Unicode NFC.
    ///
    /// Refused: control (Cc), format (Cf: zero-width spaces and joiners, bidi controls, BOM,
    /// word joiner, soft hyphen), space (Zs other than U+0020: the no-break space), line and
    /// paragraph separator (Zl, Zp), private-use, surrogate and unassigned code points, and
    /// every other default-ignorable code point (variation selectors, Hangul fillers).
    /// - Throws: `.badInput`, e.g. "run name 'ab\u{200B}c' contains U+200B ZERO WIDTH SPACE at
    ///   position 3".
    public static func validateName(_ name: String, kind: String) throws(CKStoreError) {
        // U+0020 stays allowed here (metric names such as "val loss" predate these checks);
        // run names refuse it separately.
        for (index, scalar) in name.unicodeScalars.enumerated() where scalar != " " && isInvisibleOrConfusable(scalar) {
            throw CKStoreError(
                .badInput,
                "\(kind) '\(escapedForMessage(name))' contains \(describe(scalar)) at position \(index + 1)"
                    + " (invisible, space, format and control characters are not allowed)")
        }
        let original = Array(name.unicodeScalars)
        let composed = Array(String(decoding: name._nfcCodeUnits, as: UTF8.self).unicodeScalars)
        guard original != composed else { return }
        var first = 0
        while first < min(original.count, composed.count) && original[first] == composed[first] { first += 1 }
        func codes(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
            scalars.prefix(3).map { "U+\(hex($0.value))" }.joined(separator: " ")
        }
        throw CKStoreError(
            .badInput,
            "\(kind) '\(escapedForMessage(name))' is not in Unicode normalization form C: at position \(first + 1) it has "
                + "\(codes(original[first...])) where the composed form has \(codes(composed[first...])) "
                + "(two spellings of one name would look identical)")
    }

    /// Whether a code point is invisible, a space or otherwise easy to confuse in a listing.
    static func isInvisibleOrConfusable(_ scalar: Unicode.Scalar) -> Bool {
        let properties = scalar.properties
        switch properties.generalCategory {
        case .control, .format, .spaceSeparator, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned:
            return true
        default:
            return properties.isDefaultIgnorableCodePoint
        }
    }

    /// "U+200B ZERO WIDTH SPACE".
    static func describe(_ scalar: Unicode.Scalar) -> String {
        let name = scalar.properties.name ?? scalar.properties.nameAlias
        return "U+\(hex(scalar.value))" + (name.map { " \($0)" } ?? "")
    }

    /// A name for an error message, with every invisible or control character written as
    /// `\u{XXXX}` so the message shows what the terminal would hide.
    static func escapedForMessage(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars {
            if isInvisibleOrConfusable(scalar) && scalar != " " {
                out += "\\u{\(hex(scalar.value))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// At least four upper-case hex digits.
    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
