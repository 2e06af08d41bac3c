import CParmlProto
import CZlib
import ParmlSerialization
import Testing
import _ParmlTestSupport

/// pml_crc32 (PCLMULQDQ folding where the CPU has it) must equal zlib's
/// crc32 everywhere: files written with either stay readable by both.
@Suite struct CRC32Tests {
    static func zlibCRC(_ seed: UInt32, _ p: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(truncatingIfNeeded: crc32(UInt(seed), p.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt32(p.count)))
    }

    static func foldCRC(_ seed: UInt32, _ p: UnsafeRawBufferPointer) -> UInt32 {
        pml_crc32(seed, p.baseAddress?.assumingMemoryBound(to: UInt8.self), p.count)
    }

    /// Deterministic test values: the bit patterns of Philox uniforms.
    static func randomWords(_ n: Int, seed: UInt64) -> [UInt32] { randomArray(n, seed: seed).map(\.bitPattern) }

    static func randomBytes(_ n: Int, seed: UInt64) -> [UInt8] {
        randomWords(n, seed: seed).map { UInt8(truncatingIfNeeded: $0 ^ $0 >> 8 ^ $0 >> 16 ^ $0 >> 24) }
    }

    @Test func everyShortLengthAndOffset() {
        let data = Self.randomBytes(400, seed: 1)
        let seeds = Self.randomWords(17 * 301, seed: 2)
        data.withUnsafeBytes { all in
            for offset in 0..<17 {
                for n in 0...300 {
                    let p = UnsafeRawBufferPointer(rebasing: all[offset..<offset + n])
                    let seed = seeds[offset * 301 + n]
                    #expect(Self.foldCRC(0, p) == Self.zlibCRC(0, p), "offset \(offset), length \(n)")
                    #expect(Self.foldCRC(seed, p) == Self.zlibCRC(seed, p), "offset \(offset), length \(n), seed \(seed)")
                }
            }
        }
    }

    @Test func largeBuffersAndChainedCalls() {
        let data = Self.randomBytes((5 << 20) + 77, seed: 3)
        let lengths = Self.randomWords(1 << 16, seed: 4)
        var next = 0
        data.withUnsafeBytes { all in
            for offset in [0, 1, 3, 8, 13] {
                let p = UnsafeRawBufferPointer(rebasing: all[offset...])
                let whole = Self.zlibCRC(0, p)
                #expect(Self.foldCRC(0, p) == whole, "offset \(offset)")
                // In pieces of random lengths (short, odd, long): continuing from the previous value.
                var c: UInt32 = 0
                var done = 0
                while done < p.count {
                    let n = min(p.count - done, Int(lengths[next % lengths.count] % (offset.isMultiple(of: 2) ? 300 : 200_000)))
                    next += 1
                    c = Self.foldCRC(c, UnsafeRawBufferPointer(rebasing: p[done..<done + n]))
                    done += n
                }
                #expect(c == whole, "offset \(offset), chained")
            }
        }
    }

    @Test func emptyAndKnownValues() {
        #expect(pml_crc32(0, nil, 0) == 0)
        #expect(pml_crc32(0x1234_5678, nil, 0) == 0x1234_5678)
        // The check value of CRC-32/ISO-HDLC (zlib, gzip, PNG).
        let check = Array("123456789".utf8)
        #expect(check.withUnsafeBytes { Self.foldCRC(0, $0) } == 0xCBF4_3926)
        let zeros = [UInt8](repeating: 0, count: 4096)
        #expect(zeros.withUnsafeBytes { Self.foldCRC(0, $0) == Self.zlibCRC(0, $0) })
    }

    /// The trailer FileFormat.seal writes is zlib's CRC-32 of the body.
    @Test func sealIsZlibCRC() {
        let body = Self.randomBytes(1000, seed: 5)
        let sealed = FileFormat.seal(body)
        let stored = sealed.suffix(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(stored == body.withUnsafeBytes { Self.zlibCRC(0, $0) })
    }
}
