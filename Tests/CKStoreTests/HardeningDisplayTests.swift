// Issue 9, items 6, 16 and 17 at the library level: the terminal escaping every line of human
// output goes through, the LAWA parameter bounds (no huge windows, no overflowing step
// arithmetic), and temporary file names that stay within NAME_MAX.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

@Suite struct HardeningDisplayTests {
    @Test func escapesC0DelC1AndBidiControls() {
        #expect(TerminalText.escape("\u{1B}]0;title\u{07}") == "\\u001b]0;title\\u0007")
        #expect(TerminalText.escape("\u{1B}[2J") == "\\u001b[2J")
        #expect(TerminalText.escape("a\nb\tc\rd") == "a\\nb\\tc\\rd")
        #expect(TerminalText.escape("x\u{7F}\u{80}\u{9B}y") == "x\\u007f\\u0080\\u009by")
        #expect(TerminalText.escape("\u{202E}gnp.exe\u{2066}\u{2069}\u{200F}\u{061C}") == "\\u202egnp.exe\\u2066\\u2069\\u200f\\u061c")
        #expect(TerminalText.escape("\u{2028}\u{2029}\u{0}") == "\\u2028\\u2029\\u0000")
    }

    @Test func leavesOrdinaryTextAlone() {
        for text in ["", "plain", "é ü 中文 🙂", "back\\slash 'quotes' \"double\"", "tab-free", "\u{A0}\u{A1}"] {
            #expect(TerminalText.escape(text) == text)
        }
    }

    @Test func escapedTextHasNoControlCharacters() {
        var all = ""
        for v in 0..<0x300 { all.unicodeScalars.append(Unicode.Scalar(v)!) }
        for v in 0x2000..<0x2070 { all.unicodeScalars.append(Unicode.Scalar(v)!) }
        let escaped = TerminalText.escape(all)
        #expect(!escaped.unicodeScalars.contains(where: TerminalText.mustEscape))
    }

    @Test func escapeLinesKeepsLineBreaksOnly() {
        #expect(TerminalText.escapeLines("a\u{1B}\nb\u{07}\n") == "a\\u001b\nb\\u0007\n")
    }

    @Test func lawaWindowIsBounded() {
        #expect(throws: CKStoreError.self) { try AverageQuery.parseLAWA("k=1000000000000,stride=1", at: Int.max) }
        #expect(throws: CKStoreError.self) { try AverageQuery.parseLAWA("k=10001,stride=1", at: Int.max) }
        #expect((try? AverageQuery.parseLAWA("k=10000,stride=1", at: Int.max)) == .lawa(k: 10000, stride: 1, at: Int.max))
        #expect(throws: CKStoreError.self) { try AverageQuery.parseLAWA("k=3,stride=\(Int.max)", at: Int.max) }
        #expect(throws: CKStoreError.self) { try AverageQuery.validateLAWA(k: 2, stride: 0, at: 10) }
        #expect(throws: CKStoreError.self) { try AverageQuery.validateLAWA(k: 2, stride: 1, at: -1) }
        #expect(throws: CKStoreError.self) { try AverageQuery.validateLAWA(k: Int.max, stride: Int.max, at: Int.max) }
    }

    @Test func lawaPlanRejectsAHugeWindowWithoutAllocatingIt() throws {
        // Before the bound, planning k = 10^12 built the list of 10^12 wanted steps (an 8 TB
        // allocation that aborts the process) once the run existed.
        try withTemporaryDirectory { dir in
            let path = dir.file("store")
            try Store.initialize(at: path)
            let store = try Store(path: path)
            let input = dir.file("in.safetensors")
            writeFile(input, makeSafetensors(tensors: [TensorSpec("w", "F32", [2], [UInt8](repeating: 0, count: 8))]))
            _ = try store.put(from: .file(input), run: "r", step: 0)
            #expect(throws: CKStoreError.self) { try store.plan(.lawa(k: 1_000_000_000_000, stride: 1, at: Int.max), run: "r") }
            #expect(throws: CKStoreError.self) { try store.plan(.lawa(k: 3, stride: Int.max, at: Int.max), run: "r") }
        }
    }

    @Test func temporaryNamesFitInNameMax() {
        for base in [String(repeating: "a", count: 250), String(repeating: "é", count: 200), "short", String(repeating: "🙂", count: 70)] {
            let name = FileSystem.temporaryName(prefix: "/some/dir/.\(base)")
            #expect(name.hasPrefix("/some/dir/."))
            let last = name.split(separator: "/").last!
            #expect(last.utf8.count <= 255, "\(last.utf8.count) bytes")
            #expect(last.contains(".tmp-"))
            #expect(String(last).unicodeScalars.count > 0)
        }
        // Short names are kept as they are; distinct long names stay distinct.
        #expect(FileSystem.temporaryName(prefix: "/d/x").hasPrefix("/d/x.tmp-"))
        let a = FileSystem.fitting("/d/" + String(repeating: "a", count: 300) + "1", room: 40)
        let b = FileSystem.fitting("/d/" + String(repeating: "a", count: 300) + "2", room: 40)
        #expect(a != b)
    }
}
