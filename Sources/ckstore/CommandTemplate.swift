/// The `watch --exec` command template: `{name}` placeholders expanded in one pass into
/// references to environment variables, so that no value (a run name, a path) ever becomes
/// shell source.
///
/// `{path}` becomes `"$CKSTORE_PATH"` (quoted for the context it appears in: `"$CKSTORE_PATH"`
/// outside quotes, `${CKSTORE_PATH}` inside double quotes, `'"$CKSTORE_PATH"'` inside single
/// quotes), and the child process gets `CKSTORE_PATH` in its environment. The shell expands a
/// variable without parsing its value again, so a run named `x$(touch marker)` or `it's` is
/// passed through exactly, whatever quoting the template uses. The template is scanned once:
/// inserted text is never searched for placeholders. Unknown `{words}` and `\{` stay as they
/// are.
struct CommandTemplate {
    /// The placeholders, each with the environment variable that carries its value.
    static let variables: [(placeholder: String, variable: String)] = [
        ("path", "CKSTORE_PATH"), ("step", "CKSTORE_STEP"), ("run", "CKSTORE_RUN"), ("variant", "CKSTORE_VARIANT"),
    ]

    /// The template as the user gave it.
    let template: String

    private enum Context { case plain, singleQuoted, doubleQuoted }

    /// The shell command: every known placeholder replaced by a reference to its variable.
    func expanded() -> String {
        let scalars = Array(template.unicodeScalars)
        var out = String.UnicodeScalarView()
        var context = Context.plain
        var i = 0
        while i < scalars.count {
            let c = scalars[i]
            switch (context, c) {
            case (.plain, "\\"), (.doubleQuoted, "\\"):
                // An escaped character (including an escaped '{') is copied as it is.
                out.append(c)
                if i + 1 < scalars.count { out.append(scalars[i + 1]) }
                i += 2
                continue
            case (.plain, "'"): context = .singleQuoted
            case (.singleQuoted, "'"): context = .plain
            case (.plain, "\""): context = .doubleQuoted
            case (.doubleQuoted, "\""): context = .plain
            case (_, "{"):
                if let (variable, length) = placeholder(at: i, in: scalars) {
                    let reference: String
                    switch context {
                    case .plain: reference = "\"$\(variable)\""
                    case .doubleQuoted: reference = "${\(variable)}"
                    case .singleQuoted: reference = "'\"$\(variable)\"'"
                    }
                    out.append(contentsOf: reference.unicodeScalars)
                    i += length
                    continue
                }
            default: break
            }
            out.append(c)
            i += 1
        }
        return String(out)
    }

    /// The environment variables for one run of the command.
    static func environment(path: String, step: Int, run: String, variant: String) -> [(String, String)] {
        [("CKSTORE_PATH", path), ("CKSTORE_STEP", String(step)), ("CKSTORE_RUN", run), ("CKSTORE_VARIANT", variant)]
    }

    /// The variable and the placeholder's length when `{name}` of a known name starts at `i`.
    private func placeholder(at i: Int, in scalars: [Unicode.Scalar]) -> (String, Int)? {
        for (name, variable) in CommandTemplate.variables {
            let token = Array("{\(name)}".unicodeScalars)
            if i + token.count <= scalars.count, Array(scalars[i..<(i + token.count)]) == token {
                return (variable, token.count)
            }
        }
        return nil
    }
}
