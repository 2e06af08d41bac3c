import Foundation
import Testing
import _ParmlTestSupport

@testable import ParmlTensor

/// A Random123 known-answer vector for Philox4x32-10.
struct PhiloxVector: Sendable, CustomTestStringConvertible {
    let counter: (UInt32, UInt32, UInt32, UInt32)
    let key: (UInt32, UInt32)
    let expected: (UInt32, UInt32, UInt32, UInt32)
    var seed: UInt64 { UInt64(key.1) << 32 | UInt64(key.0) }
    var testDescription: String { "key=(\(hex(key.0)), \(hex(key.1))) counter.0=\(hex(counter.0))" }
}

private func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

/// From Random123's kat_vectors (philox4x32 10 rounds).
let philoxVectors: [PhiloxVector] = [
    PhiloxVector(counter: (0, 0, 0, 0), key: (0, 0), expected: (0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8)),
    PhiloxVector(
        counter: (0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff), key: (0xffff_ffff, 0xffff_ffff),
        expected: (0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd)),
    PhiloxVector(
        counter: (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), key: (0xa409_3822, 0x299f_31d0),
        expected: (0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1)),
]

@Suite struct PhiloxTests {
    @Test(arguments: philoxVectors)
    func knownAnswers(_ v: PhiloxVector) {
        let rng = Philox(seed: v.seed)
        // The low 32 bits of the seed are key.0, the high 32 bits key.1.
        #expect(rng.key.0 == v.key.0 && rng.key.1 == v.key.1, "key (\(hex(rng.key.0)), \(hex(rng.key.1)))")
        let r = rng.block(v.counter.0, v.counter.1, v.counter.2, v.counter.3)
        let got = [r.0, r.1, r.2, r.3], want = [v.expected.0, v.expected.1, v.expected.2, v.expected.3]
        expectEqualElements(got, want, "got \(got.map(hex)), want \(want.map(hex))")
    }

    /// Element i of a stream has one value, whatever range it is drawn in.
    @Test(arguments: [UInt64(0), 1, 3, 5, 0x1_0000_0001, 0xFFFF_FFFF_FFFF_FF00])
    func fillUniformIsSplitInvariant(_ base: UInt64) {
        let rng = Philox(seed: 0xDEAD_BEEF_1234)
        let stream = RandomStream.dropout(layer: 3, step: 17)
        let n = 103
        var whole = [Float](repeating: .nan, count: n)
        whole.withUnsafeMutableBufferPointer { rng.fillUniform($0.baseAddress!, count: n, stream: stream, first: base) }
        let splits = [[103], [1, 102], [2, 1, 3, 97], [4, 4, 95], [5, 7, 11, 13, 17, 19, 31], Array(repeating: 1, count: 103)]
        for split in splits {
            var parts = [Float](repeating: .nan, count: n)
            var at = 0
            parts.withUnsafeMutableBufferPointer { p in
                for len in split {
                    rng.fillUniform(p.baseAddress! + at, count: len, stream: stream, first: base &+ UInt64(at))
                    at += len
                }
            }
            expectEqualElements(whole.map(\.bitPattern), parts.map(\.bitPattern), "split \(split) at first=\(base): max abs diff \(maxAbsDiff(whole, parts))")
        }
    }

    @Test func fillUniformUsesAllFourWordsOfABlock() {
        let rng = Philox(seed: 99)
        var v = [Float](repeating: 0, count: 8)
        v.withUnsafeMutableBufferPointer { rng.fillUniform($0.baseAddress!, count: 8, stream: 5) }
        let b0 = rng.block(0, 0, 5, 0), b1 = rng.block(1, 0, 5, 0)
        let words = [b0.0, b0.1, b0.2, b0.3, b1.0, b1.1, b1.2, b1.3]
        expectEqualElements(v, words.map(Philox.toUnit))
    }

    @Test(arguments: [(Float(0), Float(1)), (-2, 3), (-0.125, 0.125), (-0.0883883, 0.0883883), (10, 10.5)])
    func valuesLieInHalfOpenRange(_ low: Float, _ high: Float) {
        let n = 100_000
        let v = randomArray(n, seed: 123, stream: 9, low: low, high: high)
        let bad = v.filter { !($0 >= low && $0 < high) }
        #expect(bad.isEmpty, "\(bad.count) values outside [\(low), \(high)), e.g. \(bad.prefix(3))")
        // Spread over the range: both ends get close.
        #expect(v.min()! < low + (high - low) * 1e-3 && v.max()! > high - (high - low) * 1e-3)
    }

    @Test func uniformMeanAndVariance() {
        let n = 100_000
        let v = randomArray(n, seed: 2024, stream: 1, low: 0, high: 1)
        let mean = v.reduce(0.0) { $0 + Double($1) } / Double(n)
        let variance = v.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)
        // Standard error of the mean is 0.29/√1e5 ≈ 9e-4: 0.01 is > 10σ.
        #expect(abs(mean - 0.5) < 0.01, "mean \(mean)")
        #expect(abs(variance - 1.0 / 12) < 0.005, "variance \(variance)")
        // Ten equal bins each hold about a tenth.
        var bins = [Int](repeating: 0, count: 10)
        for x in v { bins[min(9, Int(x * 10))] += 1 }
        #expect(bins.allSatisfy { abs($0 - n / 10) < 600 }, "bins \(bins)")
    }

    @Test func toUnitEndpoints() {
        #expect(Philox.toUnit(0) == 0)
        #expect(Philox.toUnit(0xFFFF_FFFF) == 1 - 0x1p-24)
        #expect(Philox.toUnit(0xFFFF_FFFF) < 1)
    }

    @Test func seedsAndStreamsAreIndependent() {
        let a = randomArray(64, seed: 1, stream: 1)
        expectEqualElements(a, randomArray(64, seed: 1, stream: 1))
        #expect(a != randomArray(64, seed: 2, stream: 1))
        #expect(a != randomArray(64, seed: 1, stream: 2))
        // High seed bits matter too (they are key.1).
        #expect(a != randomArray(64, seed: 1 | (1 << 32), stream: 1))
        // Stream ids of different uses never coincide.
        #expect(RandomStream.parameter(0) != RandomStream.dropout(layer: 0, step: 0))
        #expect(RandomStream.dropout(layer: 1, step: 0) != RandomStream.dropout(layer: 0, step: 1))
        #expect(RandomStream.shuffle(epoch: 0) != RandomStream.parameter(0))
    }

    @Test func uniformAgreesWithFillUniform() {
        let rng = Philox(seed: 99)
        let n = 37
        let out = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { out.deallocate() }
        rng.fillUniform(out, count: n, stream: 5, first: 1001)
        for i in 0..<n {
            #expect(rng.uniform(stream: 5, index: 1001 + UInt64(i)) == out[i], "element \(1001 + i)")
        }
    }
}

/// DP-SGD's noise: each element's draw depends on its index only (a range
/// started at an odd offset, or cut anywhere, adds what the whole fill adds
/// there), it adds rather than overwrites, and its moments are N(0, std²)'s.
@Test func addNormalIsKeyedByElementAndHasNormalMoments() throws {
    let rng = Philox(seed: 17), n = 200_003, std: Float = 0.25
    var whole = [Float](repeating: 0, count: n)
    whole.withUnsafeMutableBufferPointer { rng.addNormal(to: $0.baseAddress!, count: n, stream: 5, std: std) }
    for (first, count) in [(0, 1), (1, 6), (3, 2), (7, 1), (1001, 4093), (n - 3, 3)] {
        var part = [Float](repeating: 1, count: count)
        part.withUnsafeMutableBufferPointer { rng.addNormal(to: $0.baseAddress!, count: count, stream: 5, first: UInt64(first), std: std) }
        expectEqualElements(part, whole[first..<first + count].map { $0 + 1 }, "elements \(first)..<\(first + count)")
    }
    let mean = whole.reduce(0.0) { $0 + Double($1) } / Double(n)
    let variance = whole.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n - 1)
    let fourth = whole.reduce(0.0) { $0 + pow(Double($1) - mean, 4) } / Double(n) / (variance * variance)
    // 200k draws: s.e. of the mean 0.0022 std, of the variance 0.32 %, of the kurtosis about 0.011.
    #expect(abs(mean) < 0.01 * Double(std))
    #expect(abs(variance / Double(std * std) - 1) < 0.015)
    #expect(abs(fourth - 3) < 0.06, "kurtosis \(fourth)")
    var other = [Float](repeating: 0, count: 8)
    other.withUnsafeMutableBufferPointer { rng.addNormal(to: $0.baseAddress!, count: 8, stream: 6, std: std) }
    #expect(other != Array(whole[0..<8]), "another stream draws other numbers")
}

/// The C kernel's draws against Box–Muller in double with libm on the
/// Swift generator's blocks: same Philox words, polynomials within 1e-6.
@Test func addNormalMatchesBoxMullerOnPhiloxBlocks() throws {
    let rng = Philox(seed: 0x1234_5678_9ABC), stream: UInt64 = 0xA000_0000_0007, n = 40_000
    var got = [Float](repeating: 0, count: n)
    got.withUnsafeMutableBufferPointer { rng.addNormal(to: $0.baseAddress!, count: n, stream: stream, std: 1) }
    var worst = 0.0
    for e in 0..<n {
        let b = UInt64(e / 4)
        let r = rng.block(
            UInt32(truncatingIfNeeded: b), UInt32(truncatingIfNeeded: b >> 32), UInt32(truncatingIfNeeded: stream),
            UInt32(truncatingIfNeeded: stream >> 32))
        let (w1, w2) = e % 4 < 2 ? (r.0, r.1) : (r.2, r.3)
        let radius = (-2 * log(1 - Double(w1 >> 8) / 16_777_216)).squareRoot()
        let angle = 2 * Double.pi * Double(w2 >> 8) / 16_777_216
        let want = radius * (e % 2 == 0 ? cos(angle) : sin(angle))
        worst = max(worst, abs(Double(got[e]) - want) / (1 + abs(want)))
    }
    #expect(worst < 1e-6, "worst relative error \(worst)")
}
