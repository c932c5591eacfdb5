// Issue 9, library side of the command-line items: name checks (24), the progress callback
// (22), foreign-format and dtype hints (23), output paths (8) and the interrupt registry (19).
// The end-to-end behaviour is tested through the binary in Tests/python/test_hardening_cli.py.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// A hostile name and the code point the error must name.
struct HostileName: Sendable, CustomTestStringConvertible {
    let name: String
    let codePoint: String
    let position: Int
    var testDescription: String { codePoint }
}

@Suite("Hardening: command-line items (library side)")
struct HardeningCLITests {
    static let hostile: [HostileName] = [
        HostileName(name: "a\u{200B}b", codePoint: "U+200B ZERO WIDTH SPACE", position: 2),
        HostileName(name: "a\u{00A0}b", codePoint: "U+00A0 NO-BREAK SPACE", position: 2),
        HostileName(name: "ab\u{200C}", codePoint: "U+200C ZERO WIDTH NON-JOINER", position: 3),
        HostileName(name: "\u{FEFF}x", codePoint: "U+FEFF ZERO WIDTH NO-BREAK SPACE", position: 1),
        HostileName(name: "x\u{202A}y", codePoint: "U+202A LEFT-TO-RIGHT EMBEDDING", position: 2),
        HostileName(name: "x\u{2069}", codePoint: "U+2069 POP DIRECTIONAL ISOLATE", position: 2),
        HostileName(name: "x\u{200F}", codePoint: "U+200F RIGHT-TO-LEFT MARK", position: 2),
        HostileName(name: "x\u{2029}y", codePoint: "U+2029 PARAGRAPH SEPARATOR", position: 2),
        HostileName(name: "x\u{2003}y", codePoint: "U+2003 EM SPACE", position: 2),
        HostileName(name: "x\u{FE0F}", codePoint: "U+FE0F VARIATION SELECTOR-16", position: 2),
        HostileName(name: "x\u{E000}", codePoint: "U+E000", position: 2),
    ]

    @Test(arguments: hostile)
    func runNamesWithInvisibleCharactersAreRefused(_ c: HostileName) {
        #expect {
            try Store.validateRunName(c.name)
        } throws: { error in
            guard let e = error as? CKStoreError else { return false }
            return e.code == .badInput && e.message.contains("contains \(c.codePoint) at position \(c.position)")
        }
    }

    @Test func nonNFCNamesAreRefusedAndTheirComposedFormAccepted() throws {
        #expect(throws: CKStoreError.self) { try Store.validateRunName("A\u{30A}ngstr\u{F6}m") }
        try Store.validateRunName("\u{C5}ngstr\u{F6}m")
        #expect(throws: CKStoreError.self) { try Store.validateName("n\u{303}", kind: "metric name") }
        try Store.validateName("val/acc", kind: "metric name")
        try Store.validateName("lawa-k6-s1000", kind: "variant name")
    }

    @Test func putAndRecordMetricsCheckNamesBeforeChangingAnything() throws {
        try withTemporaryDirectory("names") { dir throws in
            try Store.initialize(at: dir.file("s"))
            let store = try Store(path: dir.file("s"))
            var rng = SplitMix64(seed: 7)
            let path = dir.file("f.safetensors")
            writeFile(path, makeSafetensors(tensors: [TensorSpec("w", "F32", [10], rng: &rng)]))
            #expect(throws: CKStoreError.self) { try store.put(from: .file(path), run: "r\u{200B}", step: 1) }
            #expect(throws: CKStoreError.self) {
                try store.put(from: .file(path), run: "r", step: 1, metrics: [("lo\u{2060}ss", 1)])
            }
            #expect(try store.runs().isEmpty)
            _ = try store.put(from: .file(path), run: "r", step: 1)
            #expect(throws: CKStoreError.self) { try store.recordMetrics(run: "r", step: 1, variant: "raw\u{00A0}", values: [("a", 1)]) }
            #expect(throws: CKStoreError.self) { try store.recordMetrics(run: "r", step: 1, variant: "raw", values: [("a\u{200D}", 1)]) }
            #expect(try store.metrics(run: "r").isEmpty)
        }
    }

    @Test func progressHandlerIsCalledWhileAPutReadsASlowInput() throws {
        try withTemporaryDirectory("progress") { dir throws in
            try Store.initialize(at: dir.file("s"))
            let store = try Store(path: dir.file("s"))
            var rng = SplitMix64(seed: 8)
            let bytes = makeSafetensors(tensors: [TensorSpec("w", "F32", [1_000_000], rng: &rng)])
            let calls = LockedValue<[TransferProgress]>([])
            store.progressHandler = { p in calls.withLock { $0.append(p) } }
            let fifo = dir.file("in.fifo")
            #expect(mkfifo(fifo, 0o600) == 0)
            // Feed the FIFO in 8 pieces over ~0.8 s: the meter reports every 100 ms or so.
            let writer = Thread {
                guard let handle = FileHandle(forWritingAtPath: fifo) else { return }
                let piece = bytes.count / 8 + 1
                for i in stride(from: 0, to: bytes.count, by: piece) {
                    handle.write(Data(bytes[i..<min(bytes.count, i + piece)]))
                    usleep(100_000)
                }
                try? handle.close()
            }
            writer.start()
            _ = try store.put(from: .file(fifo), run: "p", step: 1)
            let seen = calls.withLock { $0 }
            #expect(seen.count >= 2, "\(seen.count) progress calls")
            #expect(seen.allSatisfy { $0.bytesTotal == bytes.count }, "the total is the length the header describes")
            #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.bytesDone <= $1.bytesDone })
            #expect(seen.last.map { $0.bytesDone <= bytes.count } == true)
        }
    }

    @Test func progressMeterIsThrottled() {
        let calls = LockedValue(0)
        let start = Date()
        let meter = ProgressMeter(total: 100) { _ in calls.withLock { $0 += 1 } }
        for _ in 0..<10_000 { meter.add(1) }
        // At most one call per 100 ms, however many chunks were counted.
        let elapsed = Date().timeIntervalSince(start)
        #expect(calls.withLock { $0 } <= Int(elapsed / 0.1), "\(calls.withLock { $0 }) calls in \(elapsed) s")
        let before = calls.withLock { $0 }
        usleep(150_000)
        meter.add(1)
        #expect(calls.withLock { $0 } == before + 1)
        #expect(meter.done == 10_001)
    }

    @Test func foreignFormatsAreRecognizedOnlyByTheirMagic() {
        #expect(ForeignFormat.identify(Array("PK\u{3}\u{4}abcd".utf8)) == .zip)
        #expect(ForeignFormat.identify([0x80, 0x02, 0x7D, 0x71, 0, 0, 0, 0]) == .pickle)
        #expect(ForeignFormat.identify([0x80, 0x05, 0x95, 0, 0, 0, 0, 0]) == .pickle)
        #expect(ForeignFormat.identify([0x93] + Array("NUMPY\u{1}\u{0}".utf8)) == .numpy)
        #expect(ForeignFormat.identify(Array("GGUF\u{3}\u{0}\u{0}\u{0}".utf8)) == .gguf)
        #expect(ForeignFormat.identify(Array("version https://git-lfs".utf8)) == .gitLFSPointer)
        #expect(ForeignFormat.identify([0x80, 0x01, 0, 0, 0, 0, 0, 0]) == nil)
        #expect(ForeignFormat.identify(Array(littleEndian64(100))) == nil)
    }

    @Test func dtypeSuggestions() {
        #expect(DType.suggestion(for: "f32") == .f32)
        #expect(DType.suggestion(for: "float32") == .f32)
        #expect(DType.suggestion(for: "torch.bfloat16") == .bf16)
        #expect(DType.suggestion(for: "bool") == .bool)
        #expect(DType.suggestion(for: "F128") == nil)
    }

    @Test func descriptorAliases() {
        #expect(OutputWriter.descriptorAlias("/dev/stdout") == 1)
        #expect(OutputWriter.descriptorAlias("/dev/stderr") == 2)
        #expect(OutputWriter.descriptorAlias("/dev/fd/5") == 5)
        #expect(OutputWriter.descriptorAlias("/proc/self/fd/1") == 1)
        #expect(OutputWriter.descriptorAlias("/proc/\(getpid())/fd/3") == 3)
        #expect(OutputWriter.descriptorAlias("/dev/fd/x") == nil)
        #expect(OutputWriter.descriptorAlias("/tmp/stdout") == nil)
    }

    @Test func anOutputFileIsRegisteredForInterruptCleanupUntilCommitted() throws {
        try withTemporaryDirectory("registry") { dir throws in
            let out = dir.file("out.bin")
            let writer = try OutputWriter(.file(out))
            let registered = InterruptCleanup.registeredPaths.filter { $0.hasPrefix(dir.path) }
            #expect(registered.count == 1 && registered[0].contains("/.out.bin.tmp-"), "\(registered)")
            try writer.write([1, 2, 3])
            try writer.commit()
            #expect(InterruptCleanup.registeredPaths.filter { $0.hasPrefix(dir.path) }.isEmpty)
            #expect(readFile(out) == Data([1, 2, 3]))
        }
    }
}
