// The same core behaviours through the Swift API, on every library backend (SQLite + local
// files, and the in-memory implementations of the protocols), plus the checks that keep the compiled-in
// defaults (configuration, schema) in step with the files in the repository.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

/// Writes a fixture file and returns its path.
private func fixture(_ dir: TemporaryDirectory, _ name: String, _ bytes: [UInt8]) -> String {
    let path = dir.file(name)
    writeFile(path, bytes)
    return path
}

private func tensors(seed: UInt64) -> [TensorSpec] {
    var rng = SplitMix64(seed: seed)
    return [
        TensorSpec("embed", "BF16", [2500, 2], rng: &rng, compressible: true), TensorSpec("proj", "F32", [2000], rng: &rng),
        TensorSpec("step", "I64", [], rng: &rng),
    ]
}

/// Malformed files for the library's failed-put checks.
struct LibraryMalformedCase: Sendable, CustomTestStringConvertible {
    let label: String
    let bytes: [UInt8]
    var testDescription: String { label }
}

/// Removes trailing whitespace, as Tools/gen-schema.sh does.
private func rstrip(_ line: Substring) -> String {
    var s = line
    while let last = s.last, last == " " || last == "\t" || last == "\r" { s = s.dropLast() }
    return String(s)
}

/// The lines of a text file (a final newline ends the last line rather than starting another).
private func fileLines(_ text: String) -> [Substring] {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    if lines.last == "" { lines.removeLast() }
    return lines
}

@Suite("Store library")
struct StoreLibraryTests {
    @Test func initializeCreatesTheStoreOnceAndThenChangesNothing() throws {
        try withTemporaryDirectory("lib-init") { dir throws in
            let path = dir.file("s")
            #expect(try Store.initialize(at: path) == true)
            let config = readFile("\(path)/config.json")
            #expect(config == Data(Store.defaultConfigurationText.utf8))
            #expect(try Store.initialize(at: path) == false)
            #expect(readFile("\(path)/config.json") == config)
            #expect(try Store(path: path).configuration == .default)
        }
    }

    @Test func openingAMissingStoreThrowsNotFound() {
        withTemporaryDirectory("lib-missing") { dir in
            let error = #expect(throws: CKStoreError.self) { _ = try Store(path: dir.file("absent")) }
            #expect(error?.code == .notFound)
            #expect(error?.exitCode == 1)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func putResolveRestoreRoundTripsByteExact(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-roundtrip") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let bytes = makeSafetensors(tensors: tensors(seed: 1), metadata: ["lib": "yes"], order: .reversed, headerPadding: 3)
            let report = try store.put(from: .file(fixture(dir, "in.safetensors", bytes)), run: "lib", step: 10)
            #expect(report.outcome == .created)
            #expect(report.bytesIn == bytes.count)
            #expect(report.newChunks == report.chunkCount && report.dedupHits == 0)

            for ref in [
                SnapshotRef.step(run: "lib", step: 10), .latest(run: "lib"), .digest(report.digest),
                .prefix(String(report.digest.hex.prefix(8))),
            ] {
                let resolved = try store.resolve(ref)
                #expect(resolved.digest == report.digest, "\(ref)")
                let out = dir.file("out.safetensors")
                let get = try store.restore(resolved, to: .file(out))
                #expect(get.bytesOut == bytes.count)
                #expect(readFile(out) == Data(bytes), "restore(\(ref)) is byte-exact")
            }
        }
    }

    @Test(arguments: LibraryBackend.all)
    func putCutsTensorsIntoChunksNamedBySHA256AtTheConfiguredSize(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-chunks") { dir throws in
            let store = try backend.makeStore(dir, "store")
            #expect(store.configuration.chunkSize == 4096)
            let specs = tensors(seed: 2)
            let report = try store.put(from: .file(fixture(dir, "in.safetensors", makeSafetensors(tensors: specs))), run: "r", step: 0)
            let manifest = try store.manifest(of: try store.resolve(.step(run: "r", step: 0)))
            #expect(manifest.digest == report.digest)
            #expect(manifest.tensors.map(\.info.name) == specs.map(\.name))
            for (entry, spec) in zip(manifest.tensors, specs) {
                let expected = chunks(of: spec.bytes, dtype: spec.dtype, chunkSize: 4096)
                #expect(entry.chunks.map(\.hash.hex) == expected.map { sha256Hex($0) }, "chunks of \(spec.name)")
                #expect(entry.chunks.map(\.rawSize) == expected.map(\.count))
            }
            #expect(report.chunkCount == 3 + 2 + 1)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func sameFileAtTwoStepsWritesNoNewChunks(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-dedup") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let path = fixture(dir, "in.safetensors", makeSafetensors(tensors: tensors(seed: 3)))
            let first = try store.put(from: .file(path), run: "r", step: 1)
            let statsBefore = try store.statistics()
            let blobsBefore = storedBlobs(store)
            let second = try store.put(from: .file(path), run: "r", step: 2)
            #expect(second.digest == first.digest)
            #expect(second.outcome == .created)
            #expect(second.newChunks == 0 && second.dedupHits == first.chunkCount && second.bytesStored == 0)
            let statsAfter = try store.statistics()
            #expect(statsAfter.storedBytes == statsBefore.storedBytes)
            #expect(statsAfter.blobCount == statsBefore.blobCount)
            #expect(statsAfter.snapshots == 2 && statsAfter.logicalBytes == 2 * statsBefore.logicalBytes)
            #expect(storedBlobs(store) == blobsBefore)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func identicalReputIsUnchangedAndForceReplacesDifferentContent(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-force") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let a = fixture(dir, "a.safetensors", makeSafetensors(tensors: tensors(seed: 4)))
            let bBytes = makeSafetensors(tensors: tensors(seed: 5))
            let b = fixture(dir, "b.safetensors", bBytes)
            let first = try store.put(from: .file(a), run: "r", step: 1)
            let again = try store.put(from: .file(a), run: "r", step: 1)
            #expect(again.outcome == .unchanged && again.digest == first.digest)
            let replaced = try store.put(from: .file(b), run: "r", step: 1, force: true)
            #expect(replaced.outcome == .replaced(previous: first.digest))
            let out = dir.file("out.safetensors")
            _ = try store.restore(try store.resolve(.step(run: "r", step: 1)), to: .file(out))
            #expect(readFile(out) == Data(bBytes))
        }
    }

    /// A reader that resolved RUN@STEP just before a `put --force` replaced it must not be told
    /// the step does not exist: asking the kind of what it resolved re-resolves the step (the
    /// race `test_readers_racing_put_force_never_see_a_false_not_found` hit once in 200 reads).
    @Test(arguments: LibraryBackend.all)
    func theKindOfARefReplacedAfterItWasResolvedIsTheNewContents(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-replaced-kind") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let a = fixture(dir, "a.safetensors", makeSafetensors(tensors: tensors(seed: 8)))
            let bBytes = makeSafetensors(tensors: tensors(seed: 9))
            let b = fixture(dir, "b.safetensors", bBytes)
            _ = try store.put(from: .file(a), run: "r", step: 1)
            let resolved = try store.resolve(.step(run: "r", step: 1))
            _ = try store.put(from: .file(b), run: "r", step: 1, force: true)
            #expect(try store.contentKind(of: resolved) == .safetensors)
            let out = dir.file("out.safetensors")
            _ = try store.restore(resolved, to: .file(out))
            #expect(readFile(out) == Data(bBytes))
            let gone = ResolvedRef(digest: resolved.digest, snapshot: nil)
            let missing = #expect(throws: CKStoreError.self) { _ = try store.contentKind(of: gone) }
            #expect(missing?.code == .notFound)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func differentContentAtAnExistingStepThrowsConflictAndChangesNothing(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-conflict") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let a = fixture(dir, "a.safetensors", makeSafetensors(tensors: tensors(seed: 6)))
            let b = fixture(dir, "b.safetensors", makeSafetensors(tensors: tensors(seed: 7)))
            let first = try store.put(from: .file(a), run: "r", step: 3)
            let stats = try store.statistics()
            let blobs = storedBlobs(store)
            let error = #expect(throws: CKStoreError.self) { _ = try store.put(from: .file(b), run: "r", step: 3) }
            #expect(error?.code == .conflict)
            #expect(error?.message.contains("r@3") == true, "\(error?.message ?? "")")
            #expect(try store.statistics() == stats)
            #expect(storedBlobs(store) == blobs)
            #expect(try store.resolve(.step(run: "r", step: 3)).digest == first.digest)
        }
    }

    static let malformedCases: [LibraryMalformedCase] = {
        var rng = SplitMix64(seed: 0x11B)
        let file = makeSafetensors(tensors: [TensorSpec("a", "F32", [3000], rng: &rng), TensorSpec("b", "F32", [1000], rng: &rng)])
        return [
            LibraryMalformedCase(label: "data truncated in the last tensor", bytes: Array(file.dropLast(10))),
            LibraryMalformedCase(label: "trailing bytes", bytes: file + [0]),
            LibraryMalformedCase(
                label: "unknown dtype",
                bytes: rawSafetensors(header: "{\"w\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,1]}}", data: [0])),
            LibraryMalformedCase(label: "invalid JSON", bytes: rawSafetensors(header: "{\"w\"")),
            LibraryMalformedCase(label: "5-byte file", bytes: [0, 0, 0, 0, 0]),
        ]
    }()

    @Test(arguments: LibraryBackend.all, malformedCases)
    func failedMalformedPutLeavesStatisticsAndOrphanBytesUnchanged(_ backend: LibraryBackend, _ bad: LibraryMalformedCase) throws {
        try withTemporaryDirectory("lib-malformed") { dir throws in
            let store = try backend.makeStore(dir, "store")
            _ = try store.put(from: .file(fixture(dir, "good.safetensors", makeSafetensors(tensors: tensors(seed: 8)))), run: "r", step: 1)
            let before = try store.statistics()
            let blobs = storedBlobs(store)
            let error = #expect(throws: CKStoreError.self) {
                _ = try store.put(from: .file(fixture(dir, "bad.safetensors", bad.bytes)), run: "r", step: 2)
            }
            #expect(error?.code == .badInput)
            #expect(error?.exitCode == 1)
            let after = try store.statistics()
            #expect(after == before)
            #expect(after.orphanBytes == 0 && after.orphanBlobs == 0)
            #expect(storedBlobs(store) == blobs)
            #expect(try store.snapshots(run: "r").map(\.step) == [1])
        }
    }

    static let streamingCases: [LibraryMalformedCase] = {
        var rng = SplitMix64(seed: 0x57E)
        let file = makeSafetensors(tensors: [TensorSpec("big", "F32", [20_000], rng: &rng), TensorSpec("end", "F32", [1000], rng: &rng)])
        return [
            LibraryMalformedCase(label: "trailing bytes after 21 chunks", bytes: file + [0]),
            LibraryMalformedCase(label: "data truncated in the last tensor", bytes: Array(file.dropLast(10))),
            LibraryMalformedCase(label: "data truncated in the first tensor", bytes: Array(file.prefix(50_000))),
        ]
    }()

    /// The input is a FIFO, so its size is unknown up front (as with standard input) and the
    /// error is found only after chunks were hashed and written.
    @Test(arguments: LibraryBackend.all, streamingCases)
    func failedStreamingPutLeavesStatisticsAndOrphanBytesUnchanged(_ backend: LibraryBackend, _ bad: LibraryMalformedCase) throws {
        try withTemporaryDirectory("lib-stream") { dir throws in
            let store = try backend.makeStore(dir, "store")
            _ = try store.put(from: .file(fixture(dir, "good.safetensors", makeSafetensors(tensors: tensors(seed: 15)))), run: "r", step: 1)
            let before = try store.statistics()
            let blobs = storedBlobs(store)
            let error = withFIFO(in: dir, bad.bytes) { fifo in
                #expect(throws: CKStoreError.self) { _ = try store.put(from: .file(fifo), run: "r", step: 2) }
            }
            #expect(error?.code == .badInput)
            let after = try store.statistics()
            #expect(
                after.orphanBytes == 0 && after.orphanBlobs == 0,
                "orphans after a failed put: \(after.orphanBlobs) blobs, \(after.orphanBytes) bytes")
            #expect(after == before)
            #expect(storedBlobs(store) == blobs)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func invalidRunNamesAndNegativeStepsAreBadInput(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-args") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let path = fixture(dir, "in.safetensors", makeSafetensors(tensors: tensors(seed: 9)))
            for run in ["a@b", "a,b", "a b", "", "-run", "tab\there", String(repeating: "x", count: 201)] {
                let error = #expect(throws: CKStoreError.self, "run \(run.debugDescription)") {
                    _ = try store.put(from: .file(path), run: run, step: 1)
                }
                #expect(error?.code == .badInput)
            }
            let error = #expect(throws: CKStoreError.self) { _ = try store.put(from: .file(path), run: "r", step: -1) }
            #expect(error?.code == .badInput)
            #expect(try store.runs().isEmpty)
        }
    }

    @Test(arguments: LibraryBackend.all)
    func unknownRefsThrowNotFound(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-notfound") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let report = try store.put(
                from: .file(fixture(dir, "in.safetensors", makeSafetensors(tensors: tensors(seed: 10)))), run: "r", step: 1)
            let other = report.digest.hex.first == "0" ? "1" : "0"
            let refs: [SnapshotRef] = [
                .step(run: "r", step: 99), .step(run: "nosuch", step: 1), .latest(run: "nosuch"),
                .digest(SHA256Digest(hex: String(repeating: "0", count: 64))!),
                .prefix(other + String(report.digest.hex.dropFirst().prefix(7))),
            ]
            for ref in refs {
                let error = #expect(throws: CKStoreError.self, "\(ref)") { _ = try store.resolve(ref) }
                #expect(error?.code == .notFound, "\(ref)")
                #expect(error?.exitCode == 1)
            }
        }
    }

    @Test(arguments: LibraryBackend.all)
    func damagedBlobMakesRestoreThrowIntegrityNamingSnapshotAndTensor(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-damage") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let specs = tensors(seed: 11)
            _ = try store.put(from: .file(fixture(dir, "in.safetensors", makeSafetensors(tensors: specs))), run: "r", step: 4)
            let victim = SHA256Digest(hex: sha256Hex(chunks(of: specs[1].bytes, dtype: "F32", chunkSize: 4096)[0]))!
            backend.damageBlob(store, victim)
            let out = dir.file("out.safetensors")
            let error = #expect(throws: CKStoreError.self) {
                _ = try store.restore(try store.resolve(.step(run: "r", step: 4)), to: .file(out))
            }
            #expect(error?.code == .integrity)
            #expect(error?.exitCode == 3)
            #expect(error?.message.contains("r@4") == true && error?.message.contains("'proj'") == true, "\(error?.message ?? "")")
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    @Test(arguments: LibraryBackend.all)
    func putRecordsItsMetricsForTheStep(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-metrics") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let path = fixture(dir, "in.safetensors", makeSafetensors(tensors: tensors(seed: 12)))
            _ = try store.put(from: .file(path), run: "r", step: 8, metrics: [("loss", 1.25), ("acc", 0.5)])
            let metrics = try store.metrics(run: "r")
            #expect(Set(metrics.map { "\($0.step) \($0.variant) \($0.name) \($0.value)" }) == ["8 raw loss 1.25", "8 raw acc 0.5"])
        }
    }

    @Test(arguments: LibraryBackend.all)
    func statisticsSumSnapshotsAndDistinctChunks(_ backend: LibraryBackend) throws {
        try withTemporaryDirectory("lib-stats") { dir throws in
            let store = try backend.makeStore(dir, "store")
            let a = tensors(seed: 13)
            var rng = SplitMix64(seed: 14)
            let b = [a[0], TensorSpec("proj", "F32", [2000], rng: &rng), a[2]]
            let fa = makeSafetensors(tensors: a)
            let fb = makeSafetensors(tensors: b)
            _ = try store.put(from: .file(fixture(dir, "a.safetensors", fa)), run: "x", step: 1)
            _ = try store.put(from: .file(fixture(dir, "b.safetensors", fb)), run: "y", step: 1)
            var distinct: [String: Int] = [:]
            for t in a + b { for c in chunks(of: t.bytes, dtype: t.dtype, chunkSize: 4096) { distinct[sha256Hex(c)] = c.count } }
            let s = try store.statistics()
            #expect(s.runs == 2 && s.snapshots == 2)
            #expect(s.logicalBytes == fa.count + fb.count)
            #expect(s.uniqueRawBytes == distinct.values.reduce(0, +))
            #expect(s.blobCount == distinct.count)
            #expect(s.storedBytes == storedBlobs(store).values.reduce(0, +))
            #expect(s.orphanBytes == 0 && s.orphanBlobs == 0)
        }
    }

    @Test(arguments: [
        ("r@1", SnapshotRef.step(run: "r", step: 1)), ("run.with-dots_x@latest", .latest(run: "run.with-dots_x")),
        ("ABCDEF12", .prefix("abcdef12")),
        ("sha256:" + String(repeating: "ab", count: 32), .digest(SHA256Digest(hex: String(repeating: "ab", count: 32))!)),
    ])
    func snapshotRefParsesEachForm(text: String, expected: SnapshotRef) throws {
        #expect(try SnapshotRef.parse(text) == expected)
    }

    @Test(arguments: ["r@", "@3", "r@-1", "r@1.0", "abc", "1234567", "sha256:abc", "xyz12345g"])
    func snapshotRefRejectsMalformedText(text: String) {
        let error = #expect(throws: CKStoreError.self) { _ = try SnapshotRef.parse(text) }
        #expect(error?.code == .badInput)
    }

    // MARK: Repository consistency

    @Test func defaultConfigFileIsByteIdenticalToTheCompiledInTextAndParsesToTheDefaults() throws {
        let url = repositoryRoot.appendingPathComponent("Config/ckstore.json")
        let bytes = try Data(contentsOf: url)
        #expect(bytes == Data(Store.defaultConfigurationText.utf8), "Config/ckstore.json differs from Store.defaultConfigurationText")
        #expect(try StoreConfiguration.parse(Array(bytes), source: url.path) == StoreConfiguration.default)
    }

    @Test func generatedSchemaMigrationsMatchSchemaSQLFiles() throws {
        let schemaDir = repositoryRoot.appendingPathComponent("Schema")
        let files = try FileManager.default.contentsOfDirectory(atPath: schemaDir.path)
            .filter { $0.wholeMatch(of: /\d{3}-.*\.sql/) != nil }.sorted()
        try #require(!files.isEmpty, "no Schema/NNN-*.sql files")
        let generated = try String(
            contentsOf: repositoryRoot.appendingPathComponent("Sources/CKStoreSQLite/SchemaMigrations.swift"), encoding: .utf8)

        // The compiled-in table lists every file, in order, with its exact (stripped) text.
        #expect(schemaMigrations.map(\.name) == files)
        #expect(schemaMigrations.map(\.id) == files.map { Int($0.prefix(3))! })

        for (index, name) in files.enumerated() {
            let sql = try String(contentsOf: schemaDir.appendingPathComponent(name), encoding: .utf8)
            let sqlLines = fileLines(sql).map(rstrip)
            // The literal in the generated source: after `name: "<file>",` and `sql: #"""`, up to `"""#`.
            let marker = try #require(generated.range(of: "name: \"\(name)\","), "\(name) missing from SchemaMigrations.swift")
            let open = try #require(generated.range(of: "#\"\"\"\n", range: marker.upperBound..<generated.endIndex))
            let close = try #require(generated.range(of: "\"\"\"#", range: open.upperBound..<generated.endIndex))
            let literal = fileLines(String(generated[open.upperBound..<close.lowerBound])).map { line -> String in
                let dedented = line.hasPrefix("        ") ? line.dropFirst(8) : line
                return rstrip(dedented)
            }
            // Every SQL line appears, in order, in the literal…
            var cursor = literal.startIndex
            for (n, line) in sqlLines.enumerated() {
                guard let found = literal[cursor...].firstIndex(of: line) else {
                    Issue.record("\(name) line \(n + 1) not found (in order) in the generated literal: \(line.debugDescription)")
                    break
                }
                cursor = literal.index(after: found)
            }
            // …and nothing else is there.
            #expect(
                Array(literal).filter { !$0.isEmpty }.count == sqlLines.filter { !$0.isEmpty }.count, "\(name): extra lines in the literal")
            // The compiled string is the stripped SQL text.
            if index < schemaMigrations.count {
                #expect(schemaMigrations[index].sql == sqlLines.joined(separator: "\n"), "\(name): compiled SQL differs from the file")
            }
        }
    }
}
