// Hardening of gc, rm and fsck (issue 9): the --keep-lawa window rule as a pure function, the
// names gc may delete in objects/, and the objects/ walk that never follows a symlink. The
// end-to-end behaviour (CLI, lock waits, fsck --repair) is in Tests/python/test_hardening_gc.py.

import Foundation
import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Hardening: gc, rm, fsck")
struct HardeningMaintenanceTests {
    private func policy(k: Int, stride: Int) -> RetentionPolicy { RetentionPolicy(keepLAWA: (k, stride)) }

    /// Steps 1000…7000 and a final save at 7350 (issue 9, item 2): the newest complete window
    /// (5000, 6000, 7000) is kept as well as the newest step.
    @Test func keepLAWAKeepsTheNewestCompleteWindowWhenTheNewestStepIsOffTheGrid() {
        let steps = Array(stride(from: 1000, through: 7000, by: 1000)) + [7350]
        let p = policy(k: 3, stride: 1000)
        #expect(p.stepsToKeep(steps) == [5000, 6000, 7000, 7350])
        #expect(
            p.lawaWindows(steps) == LAWAWindows(latest: 7350, latestWindow: [7350], complete: 7000, completeWindow: [5000, 6000, 7000]))
        // The newest step's window partly stored (6350 is): kept too.
        #expect(p.stepsToKeep(steps.dropLast() + [6350, 7350]) == [5000, 6000, 6350, 7000, 7350])
        // On the grid: exactly the newest window, as before.
        #expect(p.stepsToKeep(Array(steps.dropLast())) == [5000, 6000, 7000])
    }

    /// No complete window at all: every step is kept (gc warns), whatever the values.
    @Test(arguments: [
        ([0, 1000, 2000, 3000], 2, 300), ([10, 20], 3, 10), ([0, 5], 1_000_000_000_000, 1), ([3, 9], 2, Int.max / 4),
        ([0, Int.max / 2], 2, Int.max / 2 - 1),
    ])
    func keepLAWAWithoutACompleteWindowKeepsEverything(_ steps: [Int], _ k: Int, _ stride: Int) {
        let p = policy(k: k, stride: stride)
        #expect(p.lawaWindows(steps)?.complete == nil)
        #expect(p.stepsToKeep(steps) == Set(steps))
    }

    /// Extreme k and stride are bounded work and never overflow: k·stride beyond Int.max, a
    /// window reaching below 0.
    @Test func keepLAWAHandlesExtremeValues() {
        let steps = [0, Int.max / 2]
        #expect(policy(k: 2, stride: Int.max / 2).lawaWindows(steps)?.completeWindow == [0, Int.max / 2])
        #expect(policy(k: 1, stride: 1).stepsToKeep(steps) == [Int.max / 2])
        #expect(policy(k: Int.max / 2, stride: Int.max / 2).lawaWindows(Array(0..<10_000))?.complete == nil)
        #expect(policy(k: 2, stride: 3).lawaWindows([])?.complete == nil)
    }

    /// The temporary names gc may delete are exactly what `FileSystem.temporaryName` makes for
    /// a blob path; anything else with `.tmp-` in it is foreign.
    @Test func temporaryBlobNamesAreRecognisedExactly() {
        let hex = SHA256Digest.hash([1, 2, 3]).hex
        let folder = String(hex.prefix(2))
        let made = FileSystem.temporaryName(prefix: "/x/objects/\(folder)/\(hex)")
        let name = String(made.split(separator: "/").last!)
        #expect(ObjectNames.isTemporaryBlobName(name, folder: folder), "\(name)")
        #expect(ObjectNames.blobID(hex, folder: folder) == SHA256Digest(hex: hex))
        let other = folder == "00" ? "01" : "00"
        for foreign in [
            "report.tmp-final.txt", "\(hex).tmp-final", "\(hex).tmp-1-2", "\(hex).tmp-1-2-3-4", "\(hex).tmp-1-x-3", "\(hex).tmp--2-3",
            "\(hex.uppercased()).tmp-1-2-3", "\(hex)x.tmp-1-2-3", "x\(hex).tmp-1-2-3", ".\(hex).tmp-1-2-3",
        ] {
            #expect(!ObjectNames.isTemporaryBlobName(foreign, folder: folder), "\(foreign)")
        }
        #expect(!ObjectNames.isTemporaryBlobName("\(hex).tmp-1-2-3", folder: other), "temp file in the wrong folder")
        #expect(ObjectNames.blobID(hex, folder: other) == nil, "blob in the wrong folder")
        #expect(ObjectNames.blobID(hex.uppercased(), folder: folder.uppercased()) == nil, "upper-case hex")
        #expect(ObjectNames.blobID(hex + "0", folder: folder) == nil)
    }

    /// The walk of objects/: a symlinked fan-out folder and a symlinked blob name are foreign,
    /// never entered; removal through a symlinked folder or of a symlink is refused.
    @Test func objectsWalkNeverFollowsSymlinks() throws {
        try withTemporaryDirectory("objects-walk") { dir throws in
            let objects = dir.file("objects")
            let elsewhere = dir.file("elsewhere")
            try FileManager.default.createDirectory(atPath: objects, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
            let a = SHA256Digest.hash([1]).hex
            let b = SHA256Digest.hash([2]).hex
            let folderA = String(a.prefix(2))
            let folderB = String(b.prefix(2))
            #expect(folderA != folderB)
            // Folder A is a symlink to `elsewhere`, which holds a blob-named and a temp-named file.
            writeFile("\(elsewhere)/\(a)", [1, 2, 3])
            writeFile("\(elsewhere)/\(a).tmp-1-2-3", [4])
            #expect(symlink(elsewhere, "\(objects)/\(folderA)") == 0)
            // Folder B is real: a real temp file, a symlinked blob name, a foreign file.
            try FileManager.default.createDirectory(atPath: "\(objects)/\(folderB)", withIntermediateDirectories: true)
            writeFile("\(objects)/\(folderB)/\(b).tmp-9-8-7", [5, 6])
            writeFile("\(elsewhere)/target", [7])
            #expect(symlink("\(elsewhere)/target", "\(objects)/\(folderB)/\(b)") == 0)
            writeFile("\(objects)/\(folderB)/notes.txt", [8])

            let store = LocalBlobStore(root: objects, durable: false)
            let listing = try store.listObjects()
            #expect(listing.blobs.isEmpty)
            #expect(listing.temporary.map(\.name) == ["\(b).tmp-9-8-7"])
            #expect(
                Set(listing.foreign.map(\.path)) == ["\(folderA)", "\(folderB)/\(b)", "\(folderB)/notes.txt"], "\(listing.foreign)")
            #expect(try store.entryState(of: SHA256Digest(hex: a)!) != .missing)
            if case .regular = try store.entryState(of: SHA256Digest(hex: a)!) { Issue.record("read through a symlinked folder") }
            if case .regular = try store.entryState(of: SHA256Digest(hex: b)!) { Issue.record("read through a symlinked blob") }

            try store.remove(SHA256Digest(hex: a)!)
            try store.remove(SHA256Digest(hex: b)!)
            #expect(try !store.removeOwnFile(folder: folderA, name: "\(a).tmp-1-2-3"))
            #expect(try !store.removeOwnFile(folder: folderB, name: "notes.txt"))
            #expect(FileManager.default.fileExists(atPath: "\(elsewhere)/\(a)"))
            #expect(FileManager.default.fileExists(atPath: "\(elsewhere)/\(a).tmp-1-2-3"))
            #expect(FileManager.default.fileExists(atPath: "\(elsewhere)/target"))
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "\(objects)/\(folderB)/\(b)")) != nil, "link kept")
            #expect(FileManager.default.fileExists(atPath: "\(objects)/\(folderB)/notes.txt"))
            // The real temporary file is ckstore's: removed.
            #expect(try store.removeOwnFile(folder: folderB, name: "\(b).tmp-9-8-7"))
            #expect(!FileManager.default.fileExists(atPath: "\(objects)/\(folderB)/\(b).tmp-9-8-7"))
        }
    }
}
