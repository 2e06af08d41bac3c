import ParmlModel
@testable import ParmlSerialization
import ParmlTensor
import ParmlTraining
import Testing
import _ParmlTestSupport

/// Authenticated model and checkpoint files (FileAuthentication): round
/// trips, and every kind of tampering refused with its own error. "Resealed"
/// bytes had their crc32 recomputed after the change, as an attacker (who
/// knows CRC-32 but not the key) would do; without it the CRC catches the
/// change first (.format), as for any damaged file.
@Suite struct AuthenticatedFileTests {
    static let key = Array("parml-test-key-0123456789abcdef!".utf8)
    static let otherKey = Array("another-test-key-0123456789abcd!".utf8)

    func encodeModel(_ m: Model, _ key: [UInt8]) throws -> [UInt8] {
        try key.withUnsafeBytes { encodedArray(try ModelFile.encode(m, key: $0)) }
    }

    func decodeError(_ bytes: [UInt8], key: [UInt8]?) -> ParmlError? {
        parmlError {
            _ = try bytes.withUnsafeBytes { b in
                if let key { return try key.withUnsafeBytes { try ModelFile.decode(b, key: $0) } }
                return try ModelFile.decode(b)
            }
        }
    }

    /// The crc32 trailer recomputed over the changed bytes.
    func resealed(_ bytes: [UInt8]) -> [UInt8] { FileFormat.seal(Array(bytes.dropLast(FileFormat.trailerSize))) }

    /// Where the auth field starts: the bytes before the trailer end with it.
    func authStart(_ bytes: [UInt8]) -> Int { bytes.count - FileFormat.trailerSize - FileAuthentication.fieldSize }

    @Test func hmacMatchesRFC4231() throws {
        // RFC 4231, test case 2.
        let tag = try Array("Jefe".utf8).withUnsafeBytes { k in
            try Array("what do ya want for nothing?".utf8).withUnsafeBytes { try FileAuthentication.mac(k, $0) }
        }
        let hex = tag.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        #expect(hex == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func modelRoundTripWithTheKey() throws {
        let m = try everyKindModel()
        let plain = encodedArray(try ModelFile.encode(m))
        let bytes = try encodeModel(m, Self.key)
        // The plain file's body, then the auth field, then the crc32.
        #expect(bytes.count == plain.count + FileAuthentication.fieldSize)
        expectEqualElements(Array(bytes.prefix(plain.count - FileFormat.trailerSize)), Array(plain.dropLast(FileFormat.trailerSize)))
        let back = try bytes.withUnsafeBytes { b in try Self.key.withUnsafeBytes { try ModelFile.decode(b, key: $0) } }
        expectEqualElements(parameterBits(back), parameterBits(m))
        #expect(back.summary == m.summary)
        // Deterministic: the same model and key give the same bytes.
        expectEqualElements(try encodeModel(m, Self.key), bytes)
    }

    @Test func keyMismatchesAreDistinctErrors() throws {
        let m = try everyKindModel()
        let signed = try encodeModel(m, Self.key)
        let plain = encodedArray(try ModelFile.encode(m))
        expectError(decodeError(signed, key: Self.otherKey), "authKey", mentions: ["another key"])
        expectError(decodeError(signed, key: nil), "authKey", mentions: ["is authenticated", "with its key"])
        expectError(decodeError(plain, key: Self.key), "authMissing", mentions: ["no authentication tag"])
        // A tag removed (and the CRC recomputed): missing for a reader with
        // the key; a reader without one sees a plain file, as it would any.
        let start = authStart(signed)
        let stripped = resealed(Array(signed[..<start]) + Array(signed[(start + FileAuthentication.fieldSize)...]))
        expectEqualElements(stripped, plain)
        expectError(decodeError(stripped, key: Self.key), "authMissing")
    }

    /// A bit flipped in each region: header (magic, version), body
    /// (parameters), key id, tag and crc32.
    @Test func bitFlipInEachRegionIsRefused() throws {
        let signed = try encodeModel(try everyKindModel(), Self.key)
        let start = authStart(signed)
        let regions: [(String, Int, String, String)] = [
            ("magic", 3, "authFailed", "authFailed"), ("format version", 14, "authFailed", "format"),
            ("parameters", start / 2, "authFailed", "authFailed"), ("last body byte", start - 1, "authFailed", "authFailed"),
            ("key id", start + 6, "authKey", "authKey"), ("tag", start + 20, "authFailed", "authFailed"),
            ("last tag byte", start + FileAuthentication.fieldSize - 1, "authFailed", "authFailed"),
        ]
        // Bit 7 of the version (a one-byte varint) makes it run into the next
        // field: the framing breaks and the file is not protobuf (.format).
        for (name, at, low, high) in regions {
            for (bit, kind) in [(0, low), (7, high)] {
                var bad = signed
                bad[at] ^= UInt8(1 << bit)
                // Not resealed: the CRC catches it, as any damage.
                expectError(decodeError(bad, key: Self.key), "format", mentions: ["damaged"])
                let e = decodeError(resealed(bad), key: Self.key)
                #expect(e?.kind == kind, "\(name) bit \(bit): \(e.map { "\($0.kind): \($0.message)" } ?? "loaded")")
            }
        }
        var crc = signed
        crc[crc.count - 1] ^= 1
        expectError(decodeError(crc, key: Self.key), "format", mentions: ["damaged"])
    }

    @Test func truncatedTagIsRefused() throws {
        let signed = try encodeModel(try everyKindModel(), Self.key)
        let start = authStart(signed)
        for cut in [1, 10, 32] {
            // Cut from the end of the tag, the field's length fixed and the CRC recomputed.
            var bad = Array(signed[..<(start + FileAuthentication.fieldSize - cut)]) + Array(signed.suffix(FileFormat.trailerSize))
            bad[start + 1] = UInt8(FileAuthentication.payloadSize - cut)
            expectError(decodeError(resealed(bad), key: Self.key), "authFailed", mentions: ["cut or altered"])
            // Only cut: the protobuf framing no longer adds up.
            let cutOnly = Array(signed[..<(start + FileAuthentication.fieldSize - cut)]) + Array(signed.suffix(FileFormat.trailerSize))
            #expect(decodeError(resealed(cutOnly), key: Self.key) != nil)
        }
    }

    @Test func tagFromAnotherFileIsRefused() throws {
        let a = try encodeModel(try everyKindModel(seed: 5), Self.key)
        let b = try encodeModel(try everyKindModel(seed: 6), Self.key)
        #expect(a.count == b.count)
        let start = authStart(a)
        var pasted = a
        pasted.replaceSubrange(start..<(start + FileAuthentication.fieldSize), with: b[start..<(start + FileAuthentication.fieldSize)])
        expectError(decodeError(resealed(pasted), key: Self.key), "authFailed", mentions: ["does not verify"])
    }

    @Test func anAuthFieldNotLastIsRefused() throws {
        let signed = try encodeModel(try everyKindModel(), Self.key)
        let start = authStart(signed)
        let field = Array(signed[start..<(start + FileAuthentication.fieldSize)])
        // The field moved before the last layer's record.
        let body = Array(signed[..<start])
        let moved = resealed(Array(body.prefix(18)) + field + Array(body.dropFirst(18)) + Array(signed.suffix(FileFormat.trailerSize)))
        #expect(decodeError(moved, key: Self.key) != nil)
    }

    @Test func shortKeysAreRefusedAndKeysStayOutOfMessages() throws {
        let m = try everyKindModel()
        let short = Array("short-key-15byt".utf8)
        let e = parmlError { _ = try short.withUnsafeBytes { try ModelFile.encode(m, key: $0) } }
        expectError(e, "invalidArgument", mentions: ["15 bytes", "at least 16"])
        let signed = try encodeModel(m, Self.key)
        let secret = String(decoding: Self.otherKey, as: UTF8.self)
        for err in [decodeError(signed, key: Self.otherKey), e, decodeError(encodedArray(try ModelFile.encode(m)), key: Self.otherKey)] {
            #expect(err.map { !$0.message.contains(secret) && !$0.message.contains("another-test") } == true)
        }
    }

    @Test func checkpointRoundTripAndRefusals() throws {
        var o = OptimizerConfig()
        o.kind = .adamW
        let src = try Trainer(model: try everyKindModel(), loss: .crossEntropy, optimizer: o, strategy: StrategyConfig())
        let x = try Tensor(randomArray(8 * 12, seed: 1), shape: Shape(8, 12))
        let y = try Tensor((0..<8).map { Float($0 % 4) }, shape: Shape(8))
        try src.step(inputs: x, targets: y)
        let signed = try Self.key.withUnsafeBytes { encodedArray(try CheckpointFile.encode(src, key: $0)) }
        let dst = try Trainer(model: try everyKindModel(seed: 9), loss: .crossEntropy, optimizer: o, strategy: StrategyConfig())
        func restoreError(_ bytes: [UInt8], _ key: [UInt8]?) -> ParmlError? {
            parmlError {
                try bytes.withUnsafeBytes { b in
                    if let key { try key.withUnsafeBytes { try CheckpointFile.restore(b, into: dst, key: $0) } } else {
                        try CheckpointFile.restore(b, into: dst)
                    }
                }
            }
        }
        let before = parameterBits(dst.model)
        expectError(restoreError(signed, nil), "authKey")
        expectError(restoreError(signed, Self.otherKey), "authKey")
        var bad = signed
        bad[bad.count / 2] ^= 0x10
        expectError(restoreError(resealed(bad), Self.key), "authFailed")
        let plain = encodedArray(try CheckpointFile.encode(src))
        expectError(restoreError(plain, Self.key), "authMissing")
        #expect(parameterBits(dst.model) == before && dst.stepCount == 0)
        try signed.withUnsafeBytes { b in try Self.key.withUnsafeBytes { try CheckpointFile.restore(b, into: dst, key: $0) } }
        #expect(parameterBits(dst.model) == parameterBits(src.model) && dst.stepCount == 1)
        // The model inside an authenticated checkpoint loads with its key only.
        #expect(decodeError(signed, key: nil)?.kind == "authKey")
        let m = try signed.withUnsafeBytes { b in try Self.key.withUnsafeBytes { try ModelFile.decode(b, key: $0) } }
        expectEqualElements(parameterBits(m), parameterBits(src.model))
    }
}
