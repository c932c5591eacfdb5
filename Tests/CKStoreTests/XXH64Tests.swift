import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// Tests of XXH64 against the reference implementation's digests.
@Suite struct XXH64Tests {
    /// The fixed test pattern the vectors below were generated from: byte i = (31·i + i / 256) mod 256.
    static func pattern(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 8)) }
    }

    /// (length of the pattern, seed, digest), generated once with the reference implementation
    /// (python-xxhash 4.1.0, `xxhash.xxh64(data, seed).intdigest()`). The lengths cover every branch:
    /// empty, 1-byte steps only, 4-byte step, 8-byte steps, exactly one 32-byte stripe, and mixed.
    static let vectors: [(Int, UInt64, UInt64)] = [
        (0, 0, 0xEF46_DB37_51D8_E999),
        (0, 1, 0xD5AF_BA13_36A3_BE4B),
        (1, 0, 0xE934_A84A_DB05_2768),
        (3, 1, 0x99C2_8733_C3B2_6377),
        (4, 0, 0x3B4D_7F7C_6BD1_AE90),
        (7, 1, 0x2148_045F_D813_43D2),
        (8, 0, 0x5068_3412_2CB7_B4D0),
        (15, 1, 0xC39F_4550_1D23_931F),
        (31, 0, 0xF9C8_15C5_99CB_B32D),
        (32, 0, 0xBA7B_AFD4_7342_62DD),
        (32, 1, 0xECD9_3708_5127_E07E),
        (33, 0, 0x791C_BE85_7E7F_A007),
        (63, 1, 0x98B2_FBF9_A68E_81F9),
        (64, 0, 0xD14B_F011_9FD2_50A1),
        (65, 1, 0x251B_1749_E0F8_D329),
        (100, 0, 0x2BDD_AAD0_EE8A_2178),
        (100, 1, 0xFD9B_9D06_5B42_E85C),
        (1 << 20, 0, 0x7E20_E1B9_9E54_2A65),
        (1 << 20, 1, 0xD3E9_3BDC_1E2E_1D5F),
        ((1 << 20) + 5, 0, 0x6EAB_3FC2_6D6E_1173),
    ]

    /// The published digest of the empty input, through both entry points (including a nil base address).
    @Test func emptyInputWithSeedZero() {
        #expect(XXH64.hash([UInt8]()) == 0xEF46_DB37_51D8_E999)
        #expect(XXH64.hash(UnsafeRawBufferPointer(start: nil, count: 0)) == 0xEF46_DB37_51D8_E999)
    }

    /// Every reference vector, through both the array and the raw-buffer entry points.
    @Test func knownAnswers() {
        for (length, seed, digest) in Self.vectors {
            let data = Self.pattern(length)
            #expect(XXH64.hash(data, seed: seed) == digest, "length \(length) seed \(seed)")
            data.withUnsafeBytes { raw in
                #expect(XXH64.hash(raw, seed: seed) == digest, "length \(length) seed \(seed) (raw)")
            }
        }
    }

    /// A well-known short string.
    @Test func asciiAbc() {
        #expect(XXH64.hash(Array("abc".utf8)) == 0x44BC_2CF5_AD77_0999)
    }

    /// Unaligned start addresses give the same digest as an aligned copy of the bytes.
    @Test func unalignedSlicesHashLikeCopies() {
        let data = Self.pattern(300)
        data.withUnsafeBytes { raw in
            for start in 0..<9 {
                for length in [0, 1, 5, 31, 32, 33, 200] {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)])
                    #expect(XXH64.hash(slice) == XXH64.hash(Array(data[start..<(start + length)])))
                }
            }
        }
    }

    /// Flipping any single bit, or changing the seed, changes the digest.
    @Test func everyByteMatters() {
        var data = Self.pattern(97)
        let base = XXH64.hash(data)
        for i in data.indices {
            data[i] ^= 0x01
            #expect(XXH64.hash(data) != base)
            data[i] ^= 0x01
        }
        #expect(XXH64.hash(data, seed: 1) != base)
    }
}
