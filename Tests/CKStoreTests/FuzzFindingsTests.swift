import Testing

@testable import CKStore
@testable import CKStoreBackends
@testable import CKStoreSQLite

/// Regressions for inputs the fuzzer found (Tools/fuzz; each input is also in Tools/fuzz/corpus).
@Suite("Fuzz findings")
struct FuzzFindingsTests {
    /// Found by the 10-minute run against the release flags (issue 9, item 7): the parser accepts
    /// F64 [4294947293, 64943264, 0] — an empty tensor, counted in unsigned 64-bit elements like
    /// the reference — but the encoder multiplied bits before elements and trapped on the
    /// intermediate overflow. Every header the parser accepts must encode again, to the same layout.
    @Test func everyParsedShapeEncodesAgain() throws {
        let json =
            #"{"a":{"dtype":"F64","shape":[4294947293,64943264,0],"data_offsets":[0,0]},"#
            + #""b":{"dtype":"U8","shape":[3037000500,3037000500,0],"data_offsets":[0,0]},"#
            + #""c":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let parsed = try SafetensorsHeader.parse(headerBytes: Array(json.utf8))
        let tensors = parsed.tensors.map { (name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let encoded = SafetensorsHeader.encode(tensors: tensors, metadata: nil)
        let again = try SafetensorsHeader.parse(headerBytes: encoded)
        #expect(again.tensors == parsed.tensors)
        #expect(again.dataLength == 8)
    }
}
