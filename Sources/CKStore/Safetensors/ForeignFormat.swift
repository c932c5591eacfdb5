/// Other file formats that are often given where a safetensors file is expected (a PyTorch
/// `.bin`, a NumPy array, a GGUF model, a Git LFS pointer), recognized by their first bytes so
/// that the error says what the file is instead of reporting an absurd header length.
///
/// Only consulted after the safetensors parse has failed: a valid safetensors file can begin
/// with any byte pair (its first 8 bytes are a length), so a magic number alone proves nothing.
enum ForeignFormat: Sendable, Equatable {
    /// A zip archive (`torch.save` since PyTorch 1.6, `.npz`).
    case zip
    /// A Python pickle, protocol 2–5 (legacy `torch.save`, `pickle.dump`).
    case pickle
    /// A NumPy `.npy` array.
    case numpy
    /// A GGUF (llama.cpp) model.
    case gguf
    /// An HDF5 file (Keras `.h5`).
    case hdf5
    /// A gzip-compressed file.
    case gzip
    /// A zstd-compressed file.
    case zstd
    /// A Git LFS pointer (the repository was cloned without LFS).
    case gitLFSPointer
    /// An HTML page (a download that returned an error page).
    case html

    /// The format the first bytes of a file announce, or nil.
    static func identify(_ prefix: [UInt8]) -> ForeignFormat? {
        func starts(_ magic: [UInt8]) -> Bool { prefix.count >= magic.count && Array(prefix.prefix(magic.count)) == magic }
        if starts([0x50, 0x4B, 0x03, 0x04]) || starts([0x50, 0x4B, 0x05, 0x06]) { return .zip }
        if prefix.count >= 2, prefix[0] == 0x80, (2...5).contains(prefix[1]) { return .pickle }
        if starts([0x93] + Array("NUMPY".utf8)) { return .numpy }
        if starts(Array("GGUF".utf8)) { return .gguf }
        if starts([0x89] + Array("HDF".utf8)) { return .hdf5 }
        if starts([0x1F, 0x8B]) { return .gzip }
        if starts([0x28, 0xB5, 0x2F, 0xFD]) { return .zstd }
        if starts(Array("version ".utf8)) { return .gitLFSPointer }
        let lower = prefix.prefix(8).map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 32 : $0 }
        if lower.starts(with: Array("<!doctyp".utf8)) || lower.starts(with: Array("<html".utf8)) { return .html }
        return nil
    }

    /// What the file looks like, for the message.
    var description: String {
        switch self {
        case .zip, .pickle:
            return "looks like a PyTorch pickle/zip archive, as torch.save writes to .bin/.pt/.pth files; "
                + "convert it with safetensors.torch.save_file"
        case .numpy: return "looks like a NumPy .npy array"
        case .gguf: return "looks like a GGUF model file"
        case .hdf5: return "looks like an HDF5 file (e.g. a Keras .h5 model)"
        case .gzip: return "looks gzip-compressed; decompress it first"
        case .zstd: return "looks zstd-compressed; decompress it first"
        case .gitLFSPointer: return "looks like a Git LFS pointer file; fetch the real file with 'git lfs pull'"
        case .html: return "looks like an HTML page, perhaps a failed download"
        }
    }
}
