import CKStore

/// A command's arguments, consumed option by option. Whatever is left at the end must be
/// positional; an unknown `--option` is a usage error.
struct Arguments {
    private var items: [String]
    /// The command name, for messages.
    let command: String

    init(_ items: [String], command: String) {
        self.items = items
        self.command = command
    }

    /// True when `--help` or `-h` is present before `--` (after it they are literal arguments).
    var wantsHelp: Bool {
        let options = items.prefix { $0 != "--" }
        return options.contains("--help") || options.contains("-h")
    }

    /// Removes every `--name VALUE` / `--name=VALUE` and returns the values in order.
    mutating func values(_ name: String) throws(CKStoreError) -> [String] {
        var found: [String] = []
        var i = 0
        var rest: [String] = []
        while i < items.count {
            let item = items[i]
            if item == "--" {
                rest.append(contentsOf: items[i...])
                break
            }
            if item == name {
                // A following `--option` (or `--`) is the next option, never this one's value:
                // `--run --step 5` is a missing run name, not a run called "--step".
                guard i + 1 < items.count, !items[i + 1].hasPrefix("--") else { throw usage("\(name) needs a value") }
                found.append(items[i + 1])
                i += 2
                continue
            }
            if item.hasPrefix(name + "=") {
                found.append(String(item.dropFirst(name.count + 1)))
                i += 1
                continue
            }
            rest.append(item)
            i += 1
        }
        items = rest
        return found
    }

    /// Removes `--name VALUE` and returns the value; given twice is a usage error.
    mutating func value(_ name: String) throws(CKStoreError) -> String? {
        let all = try values(name)
        guard all.count <= 1 else { throw usage("\(name) given more than once") }
        return all.first
    }

    /// Removes `--name VALUE` and parses it as a non-negative integer.
    mutating func integer(_ name: String) throws(CKStoreError) -> Int? {
        guard let text = try value(name) else { return nil }
        guard let n = Int(text), n >= 0 else { throw usage("\(name) must be a non-negative integer, got '\(text)'") }
        return n
    }

    /// Removes `--name` and returns whether it was present.
    mutating func flag(_ name: String) -> Bool {
        guard let end = items.firstIndex(of: "--") else {
            let had = items.contains(name)
            items.removeAll { $0 == name }
            return had
        }
        let had = items[..<end].contains(name)
        items = items[..<end].filter { $0 != name } + items[end...]
        return had
    }

    /// The remaining positional arguments; any leftover `--option` is a usage error.
    mutating func positionals(min: Int = 0, max: Int = Int.max, names: String) throws(CKStoreError) -> [String] {
        var result: [String] = []
        var literal = false
        for item in items {
            if !literal && item == "--" {
                literal = true
                continue
            }
            if !literal && item.hasPrefix("-") && item != "-" {
                throw usage("unknown option \(item)")
            }
            result.append(item)
        }
        items = []
        guard result.count >= min else { throw usage("missing \(names)") }
        guard result.count <= max else { throw usage("unexpected argument '\(result[max])'") }
        return result
    }

    /// A usage error for this command.
    func usage(_ message: String) -> CKStoreError {
        CKStoreError(.usage, "\(command): \(message) (see 'ckstore \(command) --help')")
    }
}

/// Parses `NAME=VALUE` metric arguments. A name given twice is a usage error (which value
/// was meant?); a name with invisible or non-NFC characters is bad input.
func parseMetrics(_ items: [String], command: String) throws(CKStoreError) -> [(String, Double)] {
    var result: [(String, Double)] = []
    for item in items {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw CKStoreError(.usage, "\(command): metric '\(item)' must be NAME=VALUE")
        }
        let name = String(item[..<eq])
        if result.contains(where: { $0.0 == name }) {
            throw CKStoreError(
                .usage, "\(command): metric '\(name)' given more than once (see 'ckstore \(command) --help')")
        }
        try Store.validateName(name, kind: "metric name")
        guard let value = Double(item[item.index(after: eq)...]), value.isFinite else {
            throw CKStoreError(.badInput, "\(command): metric '\(name)' needs a finite number, got '\(item[item.index(after: eq)...])'")
        }
        result.append((name, value))
    }
    return result
}
