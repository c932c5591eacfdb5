/// Making untrusted text (tensor names, metadata, run/metric/variant names, paths) safe to
/// print on a terminal.
///
/// A safetensors header or a metric name can hold escape sequences (`ESC ] 0 ; … BEL` sets
/// the window title, `ESC [ 2 J` clears the screen) or bidirectional controls that reorder
/// what the reader sees. Every line of human output goes through `escape(_:)`, which
/// replaces those characters by JSON-style escapes (`\n`, `\t`, `\r`, `\u001b`, `\u202e`):
/// they stay visible, and a line of JSON output keeps its meaning (the replacements are valid
/// JSON string escapes, and the characters replaced never occur outside JSON strings).
public enum TerminalText {
    /// Whether `scalar` must not reach a terminal raw: C0 controls (including newline and
    /// tab), DEL, C1 controls, the bidirectional formatting characters (U+061C, U+200E,
    /// U+200F, U+202A…U+202E, U+2066…U+2069) and the line and paragraph separators
    /// (U+2028, U+2029).
    public static func mustEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: return true
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0x2028, 0x2029: return true
        default: return false
        }
    }

    /// `text` with every character `mustEscape(_:)` names replaced by `\n`, `\r`, `\t` or
    /// `\uXXXX` (lowercase hex). Text without such characters is returned unchanged.
    public static func escape(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: mustEscape) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard mustEscape(scalar) else {
                result.append(scalar)
                continue
            }
            let replacement: String
            switch scalar {
            case "\n": replacement = "\\n"
            case "\r": replacement = "\\r"
            case "\t": replacement = "\\t"
            default:
                let hex = String(scalar.value, radix: 16)
                replacement = "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            }
            result.append(contentsOf: replacement.unicodeScalars)
        }
        return String(result)
    }

    /// Each line of `text` (split at `\n`) escaped, joined by `\n` again: for multi-line text
    /// whose line breaks are meant (help, a chain of causes) but whose lines may quote names.
    public static func escapeLines(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { escape(String($0)) }.joined(separator: "\n")
    }
}
