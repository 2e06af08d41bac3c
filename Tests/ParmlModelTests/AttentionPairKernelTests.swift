import Foundation
import Testing
import _CParmlKernels
import _ParmlTestSupport

/// pml_attention_forward/backward (one (sample, head) pair, pml_attention.h)
/// against the attention written out in Double, on strided q, k, v and
/// head sizes read in place (16, 32, 64) or padded (1, 3, 20, 33), T short,
/// odd, 64 and past one 64-column chunk. The layer's own tests
/// (CausalSelfAttentionTests) check it through the projections on small heads.
@Suite struct AttentionPairKernelTests {
    struct Case: CustomStringConvertible, Sendable {
        var t: Int, hs: Int, dropout: Bool
        var description: String { "T\(t) hs \(hs) dropout \(dropout)" }
    }

    static let cases: [Case] = [(1, 1), (5, 3), (17, 16), (33, 20), (64, 32), (37, 33), (70, 64)].flatMap { t, hs in
        [Case(t: t, hs: hs, dropout: false), Case(t: t, hs: hs, dropout: true)]
    }

    /// max |a − b| / (atol + rtol·|b|): ≤ 1 passes (float32 sums of up to 70 terms).
    private func worst(_ a: [Float], _ b: [Double], atol: Double = 1e-5, rtol: Double = 1e-4) -> Double {
        var w = 0.0
        for i in 0..<a.count { w = maxNaN(w, abs(Double(a[i]) - b[i]) / (atol + rtol * abs(b[i]))) }
        return w
    }

    @Test(arguments: cases)
    func matchesTheNaiveReference(_ k: Case) throws {
        let t = k.t, hs = k.hs, ld = 3 * hs + 5, lddy = hs + 3
        let scale = 1 / Float(hs).squareRoot()
        let qkv = randomArray(t * ld, seed: 3, low: -2, high: 2), dy = randomArray(t * lddy, seed: 4)
        let mask = k.dropout ? randomArray(t * t, seed: 5, low: 0, high: 1).map { $0 >= 0.3 ? 1 / Float(0.7) : 0 } : nil
        var p = [Float](repeating: .nan, count: t * t), pv = p
        var y = [Float](repeating: .nan, count: t * lddy), d = [Float](repeating: .nan, count: t * ld)
        var scratch = [Float](repeating: .nan, count: pml_attention_scratch(t, hs))
        let mk = mask ?? []
        qkv.withUnsafeBufferPointer { x in
            mk.withUnsafeBufferPointer { mb in
                d.withUnsafeMutableBufferPointer { db in
                    let q = x.baseAddress!, m = k.dropout ? mb.baseAddress : nil, g = db.baseAddress!
                    pml_attention_forward(t, hs, scale, q, q + hs, q + 2 * hs, ld, &p, &pv, m, &y, lddy, &scratch)
                    let tilde = k.dropout ? pv : p
                    pml_attention_backward(
                        t, hs, scale, q, q + hs, q + 2 * hs, ld, p, tilde, m, dy, lddy, g, g + hs, g + 2 * hs, ld, &scratch)
                }
            }
        }

        func q(_ i: Int, _ e: Int) -> Double { Double(qkv[i * ld + e]) }
        func kk(_ i: Int, _ e: Int) -> Double { Double(qkv[i * ld + hs + e]) }
        func v(_ i: Int, _ e: Int) -> Double { Double(qkv[i * ld + 2 * hs + e]) }
        func m(_ i: Int, _ j: Int) -> Double { mask.map { Double($0[i * t + j]) } ?? 1 }
        var rp = [Double](repeating: 0, count: t * t), ry = [Double](repeating: 0, count: t * hs)
        for i in 0..<t {
            var s = [Double](repeating: 0, count: i + 1)
            for j in 0...i { s[j] = (0..<hs).reduce(0.0) { $0 + q(i, $1) * kk(j, $1) } * Double(scale) }
            let mx = s.max()!, z = s.reduce(0.0) { $0 + exp($1 - mx) }
            for j in 0...i { rp[i * t + j] = exp(s[j] - mx) / z }
            for e in 0..<hs { ry[i * hs + e] = (0...i).reduce(0.0) { $0 + rp[i * t + $1] * m(i, $1) * v($1, e) } }
        }
        var dq = [Double](repeating: 0, count: t * hs), dk = dq, dv = dq
        for i in 0..<t {
            var dp = [Double](repeating: 0, count: i + 1)
            for j in 0...i {
                dp[j] = (0..<hs).reduce(0.0) { $0 + Double(dy[i * lddy + $1]) * v(j, $1) } * m(i, j)
                for e in 0..<hs { dv[j * hs + e] += rp[i * t + j] * m(i, j) * Double(dy[i * lddy + e]) }
            }
            let dot = (0...i).reduce(0.0) { $0 + dp[$1] * rp[i * t + $1] }
            for j in 0...i {
                let ds = rp[i * t + j] * (dp[j] - dot) * Double(scale)
                for e in 0..<hs {
                    dq[i * hs + e] += ds * kk(j, e)
                    dk[j * hs + e] += ds * q(i, e)
                }
            }
        }

        #expect(worst(p, rp) <= 1, "P, \(k)")  // 0 above the diagonal, every element written
        if k.dropout {
            expectEqualElements(pv, zip(p, mask!).map { $0 * $1 }, "P̃, \(k)")
        }
        func columns(_ a: [Float], ld: Int, from: Int) -> [Float] { (0..<t).flatMap { a[($0 * ld + from)..<($0 * ld + from + hs)] } }
        #expect(worst(columns(y, ld: lddy, from: 0), ry) <= 1, "y, \(k)")
        #expect(worst(columns(d, ld: ld, from: 0), dq) <= 1, "dq, \(k)")
        #expect(worst(columns(d, ld: ld, from: hs), dk) <= 1, "dk, \(k)")
        #expect(worst(columns(d, ld: ld, from: 2 * hs), dv) <= 1, "dv, \(k)")
        // Only the head's columns are written: the 5 past 3·hs and y's 3 stay NaN.
        #expect((0..<t).allSatisfy { i in (3 * hs..<ld).allSatisfy { d[i * ld + $0].isNaN } })
        #expect((0..<t).allSatisfy { i in (hs..<lddy).allSatisfy { y[i * lddy + $0].isNaN } })
    }
}
