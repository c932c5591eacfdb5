#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The store lock of a local store: flock(2) on `<store>/lock`, shared or exclusive. flock
/// locks belong to the open file description, so two instances are two holders even in one
/// process, and a process that dies releases its lock.
package final class FlockStoreLock: StoreLock {
    /// The lock file's path.
    package let path: String
    private let file: FileHandle

    /// Opens (creating when possible) the lock file at `path`. A read-only store's lock file is
    /// opened for reading (flock works on any descriptor).
    /// - Throws: `.environment` when the file cannot be opened.
    package init(path: String) throws(CKStoreError) {
        self.path = path
        do {
            file = try FileHandle(path: path, flags: O_RDWR | O_CREAT, mode: 0o644)
        } catch let e where e.isReadOnly {
            do {
                file = try FileHandle.openForReading(path)
            } catch {
                throw CKStoreError(.environment, "cannot open \(path): \(error)", cause: error)
            }
        } catch {
            throw CKStoreError(.environment, "cannot open \(path): \(error)", cause: error)
        }
    }

    package var lockDescription: String { "the store lock at \(path)" }

    private func operation(_ mode: StoreLockMode) -> Int32 { mode == .exclusive ? LOCK_EX : LOCK_SH }

    /// The store folder, for error messages.
    private var storeFolder: String { String(path.dropLast("/lock".count)) }

    package func tryAcquire(_ mode: StoreLockMode) throws(CKStoreError) -> Bool {
        switch Sys.lock(file.fd, operation(mode) | LOCK_NB, path: path) {
        case .success:
            return true
        case .failure(let e) where e.errno == EWOULDBLOCK || e.errno == EAGAIN:
            return false
        case .failure(let e):
            throw CKStoreError(.environment, "cannot lock the store at \(storeFolder): \(e)", cause: e)
        }
    }

    package func acquireBlocking(_ mode: StoreLockMode) throws(CKStoreError) {
        do {
            _ = try Sys.lock(file.fd, operation(mode), path: path).get()
        } catch {
            throw CKStoreError(.environment, "cannot lock the store at \(storeFolder): \(error)", cause: error)
        }
    }

    package func release() {
        _ = Sys.lock(file.fd, LOCK_UN, path: nil)
    }

    package func tryUpgradeToExclusive() -> Bool {
        if case .success = Sys.lock(file.fd, LOCK_EX | LOCK_NB, path: nil) { return true }
        return false
    }

    /// The processes holding the lock, from `/proc/locks` (FLOCK entries on the lock file's
    /// device and inode, not the blocked waiters). A pid is named only when `/proc/PID/fd`
    /// shows that process has the lock file open now: `/proc/locks` records the process that
    /// took the lock, which may have exited and left it to a child (its pid could then belong
    /// to an unrelated process). Unverifiable holders are left out.
    package func holders() -> [LockHolder] {
        var st = stat()
        guard fstat(file.fd, &st) == 0 else { return [] }
        let dev = UInt64(st.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        let wanted = (major, minor, UInt64(st.st_ino))
        guard let text = readProcFile("/proc/locks") else { return [] }
        var pids: [Int32] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            // "1: FLOCK  ADVISORY  WRITE 26281 fe:00:16222354 0 EOF"; waiters have "->" after "1:".
            guard f.count >= 6, f[1] == "FLOCK", let pid = Int32(f[4]) else { continue }
            let id = f[5].split(separator: ":")
            guard id.count == 3, let ma = UInt64(id[0], radix: 16), let mi = UInt64(id[1], radix: 16), let ino = UInt64(id[2]),
                (ma, mi, ino) == wanted, !pids.contains(pid)
            else { continue }
            pids.append(pid)
        }
        let me = getpid()
        return pids.compactMap { pid in
            guard processHasOpen(pid: pid, device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) else { return nil }
            return LockHolder(pid: pid, name: processName(pid), isSelf: pid == me)
        }
    }
}

/// True when `/proc/PID/fd` lists a descriptor of the file with this device and inode.
private func processHasOpen(pid: Int32, device: UInt64, inode: UInt64) -> Bool {
    guard case .success(let fds) = Sys.listDirectory("/proc/\(pid)/fd") else { return false }
    for fd in fds {
        var st = stat()
        if stat("/proc/\(pid)/fd/\(fd)", &st) == 0, UInt64(st.st_dev) == device, UInt64(st.st_ino) == inode { return true }
    }
    return false
}

/// The ckstore command a process runs ("put"), else its executable's name (`/proc/PID/comm`).
private func processName(_ pid: Int32) -> String {
    let commands: Set<String> = ["init", "put", "get", "ls", "show", "stats", "metric", "watch", "plot", "rm", "gc", "fsck"]
    if let raw = readProcFile("/proc/\(pid)/cmdline") {
        let argv = raw.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        if let exe = argv.first, exe.split(separator: "/").last == "ckstore" {
            var i = 1
            while i < argv.count {
                let a = argv[i]
                if a == "--store" {
                    i += 2
                    continue
                }
                if !a.hasPrefix("-") { return commands.contains(a) ? a : "ckstore" }
                i += 1
            }
            return "ckstore"
        }
    }
    let comm = readProcFile("/proc/\(pid)/comm")?.split(separator: "\n").first.map(String.init) ?? ""
    return comm.isEmpty ? "process" : comm.filter { !$0.isASCII || ($0.asciiValue! >= 32 && $0.asciiValue! < 127) }
}

/// The whole text of a small `/proc` file (their sizes read as 0, so read to the end).
private func readProcFile(_ path: String) -> String? {
    guard let file = try? FileHandle.openForReading(path) else { return nil }
    var bytes: [UInt8] = []
    let chunk = ByteBuffer(capacity: 65536)
    while bytes.count < 1 << 22 {
        let n: Int
        do {
            n = try file.readFully(into: chunk.prefix(65536))
        } catch {
            return nil
        }
        bytes += UnsafeRawBufferPointer(rebasing: chunk.storage[0..<n])
        if n < 65536 { break }
    }
    return String(decoding: bytes, as: UTF8.self)
}
