/// A canonical Huffman code over byte symbols, with code lengths limited to ``maxLength`` bits,
/// as used by the exponent-plane codec (codec 2, see `ExponentCodec`).
///
/// A code is given by its 256 code lengths (0 = symbol absent). Codes are assigned canonically
/// as in DEFLATE (RFC 1951 §3.2.2): symbols ordered by (length, symbol value) receive
/// consecutive code values, the first code of each length being the previous length's next
/// code shifted left by one. A valid code has at least two symbols and is complete
/// (Σ 2^−length = 1), so every ``maxLength``-bit window decodes to exactly one symbol.
enum Huffman {
    /// The longest code length (bits). A decode table has 2^maxLength entries (4 KiB).
    static let maxLength = 11
    /// Entries of a single-lookup decode table.
    static let tableSize = 1 << maxLength
    /// Number of interleaved bit streams per coded plane.
    static let streams = 4

    /// The number of symbols stream `k` of `streams` codes, for a plane of `count` symbols:
    /// stream k holds symbols `k·s ..< min(count, (k+1)·s)` with `s = ⌈count / 4⌉`.
    static func segment(_ k: Int, of count: Int) -> Range<Int> {
        let s = (count + streams - 1) / streams
        let lower = min(count, k * s)
        return lower..<min(count, lower + s)
    }

    /// Why a code-length table was rejected.
    enum TableProblem: Error, Equatable {
        /// A length above ``maxLength``.
        case tooLong(symbol: Int, length: Int)
        /// Fewer than two symbols present.
        case tooFewSymbols(Int)
        /// Σ 2^−length above 1: not a prefix code.
        case overSubscribed
        /// Σ 2^−length below 1: some bit patterns decode to nothing.
        case incomplete

        /// A one-line description.
        var reason: String {
            switch self {
            case .tooLong(let s, let l): "code length \(l) of symbol \(s) exceeds \(Huffman.maxLength)"
            case .tooFewSymbols(let n): "code table has \(n) symbols, at least 2 are needed"
            case .overSubscribed: "code lengths are over-subscribed (not a prefix code)"
            case .incomplete: "code lengths are incomplete"
            }
        }
    }

    /// Checks that `lengths` (256 entries) describe a valid code: every length ≤ maxLength, at
    /// least two symbols, and a complete prefix code.
    static func validate(_ lengths: UnsafePointer<UInt8>) -> TableProblem? {
        var kraft = 0
        var present = 0
        for s in 0..<256 {
            let l = Int(lengths[s])
            if l == 0 { continue }
            if l > maxLength { return .tooLong(symbol: s, length: l) }
            present += 1
            kraft += 1 << (maxLength - l)
        }
        if present < 2 { return .tooFewSymbols(present) }
        if kraft > tableSize { return .overSubscribed }
        if kraft < tableSize { return .incomplete }
        return nil
    }

    /// The canonical codes of a valid table, each bit-reversed so that it can be written
    /// least-significant-bit first (the code's first bit is its bit 0). Entry = code | length << 16.
    static func reversedCodes(_ lengths: UnsafePointer<UInt8>, into codes: UnsafeMutablePointer<UInt32>) {
        var countOf = [Int](repeating: 0, count: maxLength + 1)
        for s in 0..<256 { countOf[Int(lengths[s])] += 1 }
        countOf[0] = 0
        var next = [Int](repeating: 0, count: maxLength + 2)
        var code = 0
        for l in 1...maxLength {
            code = (code + countOf[l - 1]) << 1
            next[l] = code
        }
        for s in 0..<256 {
            let l = Int(lengths[s])
            if l == 0 {
                codes[s] = 0
                continue
            }
            let c = next[l]
            next[l] += 1
            var r = 0
            for b in 0..<l where c & (1 << b) != 0 { r |= 1 << (l - 1 - b) }
            codes[s] = UInt32(r) | UInt32(l) << 16
        }
    }

    /// Length-limited code lengths for the symbol counts `histogram` (256 entries), written to
    /// `lengths`: a Huffman code, then lengths above ``maxLength`` clamped and the code made
    /// complete again by lengthening the least frequent of the deepest short codes and, if that
    /// overshoots, shortening the most frequent codes that fit. Needs at least two symbols with
    /// a nonzero count.
    static func buildLengths(_ histogram: UnsafePointer<UInt32>, into lengths: UnsafeMutablePointer<UInt8>) {
        var symbols: [Int] = []
        for s in 0..<256 {
            lengths[s] = 0
            if histogram[s] > 0 { symbols.append(s) }
        }
        let m = symbols.count
        precondition(m >= 2, "Huffman.buildLengths needs two symbols")
        symbols.sort { (histogram[$0], $0) < (histogram[$1], $1) }
        // Two-queue Huffman construction: leaves 0..<m (ascending weight), internal nodes m..<2m-1.
        var weight = [UInt64](repeating: 0, count: 2 * m - 1)
        var parent = [Int](repeating: 0, count: 2 * m - 1)
        for i in 0..<m { weight[i] = UInt64(histogram[symbols[i]]) }
        var leaf = 0
        var inner = m
        for node in m..<(2 * m - 1) {
            var pair = (0, 0)
            for k in 0..<2 {
                let pick: Int
                if leaf < m && (inner >= node || weight[leaf] <= weight[inner]) {
                    pick = leaf
                    leaf += 1
                } else {
                    pick = inner
                    inner += 1
                }
                if k == 0 { pair.0 = pick } else { pair.1 = pick }
            }
            weight[node] = weight[pair.0] + weight[pair.1]
            parent[pair.0] = node
            parent[pair.1] = node
        }
        var depth = [Int](repeating: 0, count: 2 * m - 1)
        for node in stride(from: 2 * m - 3, through: 0, by: -1) { depth[node] = depth[parent[node]] + 1 }
        var len = (0..<m).map { min(depth[$0], maxLength) }
        var kraft = len.reduce(0) { $0 + (1 << (maxLength - $1)) }
        // Over-subscribed after clamping: lengthen the least frequent of the deepest codes
        // shorter than maxLength (symbols are in ascending frequency order).
        while kraft > tableSize {
            var best = -1
            for i in 0..<m where len[i] < maxLength && (best < 0 || len[i] > len[best]) { best = i }
            len[best] += 1
            kraft -= 1 << (maxLength - len[best])
        }
        // Incomplete: shorten the most frequent codes whose gain still fits.
        while kraft < tableSize {
            for i in stride(from: m - 1, through: 0, by: -1) where len[i] > 1 && (1 << (maxLength - len[i])) <= tableSize - kraft {
                kraft += 1 << (maxLength - len[i])
                len[i] -= 1
                break
            }
        }
        for i in 0..<m { lengths[symbols[i]] = UInt8(len[i]) }
    }

    /// Symbol counts of `count` bytes at `p` into `histogram` (256 entries, overwritten).
    static func histogram(_ p: UnsafePointer<UInt8>, count: Int, into histogram: UnsafeMutablePointer<UInt32>) {
        // Four sub-histograms, so that runs of one symbol do not serialize on one counter.
        let h = UnsafeMutablePointer<UInt32>.allocate(capacity: 1024)
        defer { h.deallocate() }
        h.initialize(repeating: 0, count: 1024)
        var i = 0
        while i &+ 4 <= count {
            h[Int(p[i])] &+= 1
            h[256 &+ Int(p[i &+ 1])] &+= 1
            h[512 &+ Int(p[i &+ 2])] &+= 1
            h[768 &+ Int(p[i &+ 3])] &+= 1
            i &+= 4
        }
        while i < count {
            h[Int(p[i])] &+= 1
            i &+= 1
        }
        for s in 0..<256 { histogram[s] = h[s] &+ h[256 + s] &+ h[512 + s] &+ h[768 + s] }
    }
}
