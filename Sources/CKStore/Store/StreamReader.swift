/// Reads a safetensors file front to back from a descriptor (a file or a pipe), tracking the
/// byte offset so that errors can name it.
struct StreamReader: ~Copyable {
    let file: FileHandle
    /// The input's name for messages.
    let name: String
    /// Bytes consumed so far.
    private(set) var offset = 0
    /// The file size when the input is a regular file (checked up front), else nil.
    private var knownSize: Int?
    /// The expected total length once the header is parsed.
    private var expectedLength = 0
    /// Progress reporting, when the caller asked for it.
    var progress: ProgressMeter?

    init(file: consuming FileHandle, name: String) {
        self.file = file
        self.name = name
        if case .success(let st) = Sys.fileStatus("/proc/self/fd/\(self.file.fd)"), st.isRegular {
            knownSize = st.size
        }
    }

    private mutating func read(_ count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(CKStoreError) -> Int {
        do {
            guard let progress else {
                let n = try file.readFully(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]))
                offset += n
                return n
            }
            // With progress, read in slices of at most 1 MiB, so that a slow input (a pipe fed
            // by a trainer) moves the display within a chunk.
            var total = 0
            while total < count {
                let slice = min(count - total, 1 << 20)
                let n = try file.readFully(into: UnsafeMutableRawBufferPointer(rebasing: buffer[total..<total + slice]))
                total += n
                offset += n
                progress.add(n)
                if n < slice { break }
            }
            return total
        } catch {
            throw CKStoreError(.badInput, "\(name): read failed at byte \(offset): \(error)", cause: error)
        }
    }

    /// Reads up to `count` bytes into a new array (shorter only at end of input).
    private mutating func readArray(_ count: Int) throws(CKStoreError) -> [UInt8] {
        let buffer = ByteBuffer(capacity: count)
        let n = try read(count, into: buffer.storage)
        return Array(UnsafeRawBufferPointer(rebasing: buffer.storage[0..<n]))
    }

    /// Reads and validates the length prefix and header. For a regular file, also checks that
    /// its size matches what the header describes, before any data is read.
    mutating func readHeader() throws(CKStoreError) -> SafetensorsHeader {
        let prefix = try readArray(8)
        let n = prefix.count
        guard n == 8 else {
            throw CKStoreError(.badInput, "\(name): file is \(n) bytes, too short for the 8-byte header length")
        }
        let length: Int
        do {
            length = try SafetensorsHeader.headerLength(prefix: prefix, fileSize: knownSize)
        } catch {
            // Most often another format given by mistake (a PyTorch .bin, a .npy, a GGUF):
            // say so rather than report a multi-gigabyte header length.
            if let other = ForeignFormat.identify(prefix) { throw StreamReader.foreignFormatError(other, name: name) }
            throw CKStoreError(.badInput, "\(name): \(error)", cause: error)
        }
        if let knownSize { progress?.total = knownSize }
        let headerBytes = try readArray(length)
        let got = headerBytes.count
        guard got == length else {
            if let other = ForeignFormat.identify(prefix) { throw StreamReader.foreignFormatError(other, name: name) }
            throw CKStoreError(.badInput, "\(name): truncated at byte \(8 + got): the header is \(length) bytes")
        }
        let header: SafetensorsHeader
        do {
            header = try SafetensorsHeader.parse(headerBytes: headerBytes)
        } catch {
            if error.kind == .notAnObject || error.kind == .invalidUTF8, let other = ForeignFormat.identify(prefix) {
                throw StreamReader.foreignFormatError(other, name: name)
            }
            throw CKStoreError(.badInput, "\(name): \(error)", cause: error)
        }
        // The metadata database keeps tensor names as C strings, so a name with U+0000 would
        // be stored cut at the NUL (and fsck would then find the rows disagreeing with the
        // header). Refuse such files up front instead of storing a damaged snapshot.
        if let bad = header.tensors.first(where: { $0.name.utf8.contains(0) }) {
            throw CKStoreError(
                .badInput, "\(name): tensor \(JSON.quoted(bad.name)): names containing NUL (\\u0000) are not supported")
        }
        expectedLength = header.fileLength
        progress?.total = knownSize ?? expectedLength
        if let knownSize, knownSize != expectedLength {
            if knownSize < expectedLength {
                let tensor = header.tensors.first { 8 + length + $0.dataEnd > knownSize }
                throw CKStoreError(
                    .badInput,
                    "\(name): truncated: the file is \(knownSize) bytes but its header describes \(expectedLength)"
                        + (tensor.map { " (tensor '\($0.name)' ends at byte \(8 + length + $0.dataEnd))" } ?? ""))
            }
            throw CKStoreError(
                .badInput, "\(name): \(knownSize - expectedLength) trailing bytes after the data section, from byte \(expectedLength)")
        }
        return header
    }

    /// Declares the input's expected length when there is no header (an opaque file of a tree),
    /// for the messages of a short read.
    mutating func expect(length: Int) {
        expectedLength = length
    }

    /// Reads exactly `count` bytes of `tensor` into `buffer`; a short read is a truncated file.
    mutating func readExactly(_ count: Int, into buffer: ByteBuffer, tensor: String) throws(CKStoreError) {
        let n = try read(count, into: buffer.storage)
        buffer.count = n
        guard n == count else {
            throw CKStoreError(
                .badInput, "\(name): truncated at byte \(offset) inside tensor '\(tensor)' (the header describes \(expectedLength) bytes)")
        }
    }

    /// Checks that the input ends exactly where the data section does.
    mutating func expectEnd() throws(CKStoreError) {
        let at = offset
        guard try readArray(1).isEmpty else {
            throw CKStoreError(.badInput, "\(name): trailing bytes after the data section, from byte \(at)")
        }
    }
}

extension StreamReader {
    /// The error for input `name` that is another file format than safetensors (kept out of
    /// Safetensors/, which builds alone in the fuzz target).
    static func foreignFormatError(_ format: ForeignFormat, name: String) -> CKStoreError {
        CKStoreError(.badInput, "\(name): not a safetensors file (\(format.description))")
    }
}
