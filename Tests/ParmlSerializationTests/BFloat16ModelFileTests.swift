import Foundation
import ParmlModel
@testable import ParmlSerialization
import ParmlTensor
import Testing
import _ParmlTestSupport

/// Model files with bfloat16 weights (docs/file-format.md): half the bytes,
/// each parameter the float32 one rounded to nearest even, widened back on
/// load; checkpoints refuse them.
@Suite struct BFloat16ModelFileTests {
    /// The rounding the format names, written from its text (not the kernel's).
    static func reference(_ x: Float) -> Float {
        var b = x.bitPattern
        if b & 0x7F80_0000 == 0 {
            b &= 0x8000_0000  // subnormals to zero
        } else {
            b = (b &+ 0x7FFF &+ ((b >> 16) & 1)) & 0xFFFF_0000
        }
        return Float(bitPattern: b)
    }

    @Test func roundTripRoundsEachParameterToNearestEven() throws {
        let m = try everyKindModel()
        let whole = encodedArray(try ModelFile.encode(m))
        let half = encodedArray(try ModelFile.encode(m, weights: .bfloat16))
        let n = m.parameters?.count ?? 0
        #expect(half.count == whole.count - 2 * n)
        let back = try half.withUnsafeBytes { try ModelFile.decode($0) }
        #expect(back.summary == m.summary)
        expectEqualElements(parameterBits(back), parameterBits(m).map { Self.reference(Float(bitPattern: $0)).bitPattern })
        // Already bfloat16: saving again changes nothing.
        expectEqualElements(encodedArray(try ModelFile.encode(back, weights: .bfloat16)), half)
        // Predictions stay within bfloat16's rounding of the weights.
        let x = try Tensor(randomArray(5 * 12, seed: 9), shape: Shape(5, 3, 4))
        let a = try m.forward(x, PassContext(training: false)).toArray()
        let b = try back.forward(x, PassContext(training: false)).toArray()
        let scale = a.map(abs).max() ?? 1
        #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 0.05 * scale })
    }

    @Test func edgeValuesRoundAsTheFormatSays() throws {
        let m = Model()
        try m.add(try Linear(inFeatures: 4, outFeatures: 2, bias: false))
        try m.initialize(seed: 1)
        // Ties to even both ways, a carry into the exponent, a subnormal, the largest finite, −0.
        let values: [Float] = [
            Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3FFF_FFFF),
            Float(bitPattern: 0x0000_1234), -Float.greatestFiniteMagnitude, -0.0, 1e-3, -7.25,
        ]
        for (i, v) in values.enumerated() { m.parameters!.data[i] = v }
        let back = try encodedArray(try ModelFile.encode(m, weights: .bfloat16)).withUnsafeBytes { try ModelFile.decode($0) }
        let got = (0..<values.count).map { back.parameters!.data[$0].bitPattern }
        expectEqualElements(got, values.map { Self.reference($0).bitPattern })
        #expect(got[0] == 0x3F80_0000 && got[1] == 0x3F82_0000 && got[2] == 0x4000_0000 && got[3] == 0)
        #expect(Float(bitPattern: got[4]).isInfinite)  // rounds past the largest bfloat16, as IEEE rounding does
    }

    @Test func fileReportSaysHowWeightsAreStored() throws {
        let dir = NSTemporaryDirectory() + "parml-bf16-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try everyKindModel()
        try ModelFile.write(m, to: dir + "/half.pb", weights: .bfloat16)
        try ModelFile.write(m, to: dir + "/whole.pb")
        #expect(try FileReport.read(dir + "/half.pb").json.contains("\"stored_weights\": \"bfloat16\""))
        #expect(try FileReport.read(dir + "/whole.pb").text.contains("stored as float32"))
    }

    /// A checkpoint resumes exactly, so its parameters must be float32.
    @Test func checkpointsRefuseBFloat16Parameters() throws {
        let half = encodedArray(try ModelFile.encode(try everyKindModel(), weights: .bfloat16))
        try half.withUnsafeBytes { bytes in
            let u = try FileFormat.model(bytes, known: nil, key: nil)
            try withExtendedLifetime(u) {
                _ = try ModelCodec.layers(from: u.message.pointee, allowBFloat16: true)
                expectError(
                    parmlError { _ = try ModelCodec.layers(from: u.message.pointee, allowBFloat16: false) }, "format",
                    mentions: ["BFLOAT16", "FLOAT32"])
            }
        }
    }

    @Test func authenticatedBFloat16FilesVerify() throws {
        let key = Array("bf16-test-key-0123456789abcdef".utf8)
        let m = try everyKindModel()
        let bytes = try key.withUnsafeBytes { encodedArray(try ModelFile.encode(m, weights: .bfloat16, key: $0)) }
        let back = try key.withUnsafeBytes { k in try bytes.withUnsafeBytes { try ModelFile.decode($0, key: k) } }
        expectEqualElements(parameterBits(back), parameterBits(m).map { Self.reference(Float(bitPattern: $0)).bitPattern })
        expectError(parmlError { _ = try bytes.withUnsafeBytes { try ModelFile.decode($0) } }, "authKey")
    }
}
