import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// nanoGPT's CausalSelfAttention written out with loops in Double: the
/// reference the layer's forward and backward are checked against.
/// Parameters in the layer's order (c_attn.weight, [c_attn.bias],
/// c_proj.weight, [c_proj.bias]); `keep` (when given) is the dropout
/// multiplier M/(1−p) of element ((b·nh + h)·T + i)·T + j.
private struct Reference {
    let b: Int, t: Int, c: Int, nh: Int, bias: Bool
    var hs: Int { c / nh }

    struct Result {
        var out: [Double]
        var dx: [Double]
        var dWa: [Double], dba: [Double], dWp: [Double], dbp: [Double]
    }

    func run(x: [Float], wa: [Float], ba: [Float]?, wp: [Float], bp: [Float]?, dout: [Float], keep: [Double]?) -> Result {
        let c3 = 3 * c, rows = b * t
        let scale = 1 / Double(hs).squareRoot()
        // qkv = x·Waᵀ + ba
        var qkv = [Double](repeating: 0, count: rows * c3)
        for r in 0..<rows {
            for o in 0..<c3 {
                var s = ba.map { Double($0[o]) } ?? 0
                for i in 0..<c { s += Double(x[r * c + i]) * Double(wa[o * c + i]) }
                qkv[r * c3 + o] = s
            }
        }
        func q(_ bi: Int, _ i: Int, _ h: Int, _ d: Int) -> Double { qkv[(bi * t + i) * c3 + h * hs + d] }
        func k(_ bi: Int, _ i: Int, _ h: Int, _ d: Int) -> Double { qkv[(bi * t + i) * c3 + c + h * hs + d] }
        func v(_ bi: Int, _ i: Int, _ h: Int, _ d: Int) -> Double { qkv[(bi * t + i) * c3 + 2 * c + h * hs + d] }
        func m(_ bi: Int, _ h: Int, _ i: Int, _ j: Int) -> Double { keep.map { $0[((bi * nh + h) * t + i) * t + j] } ?? 1 }
        // P (b, h, i, j), y (rows, C)
        var p = [Double](repeating: 0, count: b * nh * t * t)
        var y = [Double](repeating: 0, count: rows * c)
        for bi in 0..<b {
            for h in 0..<nh {
                for i in 0..<t {
                    var s = [Double](repeating: -.infinity, count: t)
                    for j in 0...i {
                        var d = 0.0
                        for e in 0..<hs { d += q(bi, i, h, e) * k(bi, j, h, e) }
                        s[j] = d * scale
                    }
                    let mx = s.max()!
                    let ex = s.map { $0 == -.infinity ? 0 : exp($0 - mx) }
                    let z = ex.reduce(0, +)
                    for j in 0..<t { p[((bi * nh + h) * t + i) * t + j] = ex[j] / z }
                    for e in 0..<hs {
                        var acc = 0.0
                        for j in 0...i { acc += p[((bi * nh + h) * t + i) * t + j] * m(bi, h, i, j) * v(bi, j, h, e) }
                        y[(bi * t + i) * c + h * hs + e] = acc
                    }
                }
            }
        }
        var out = [Double](repeating: 0, count: rows * c)
        for r in 0..<rows {
            for o in 0..<c {
                var s = bp.map { Double($0[o]) } ?? 0
                for i in 0..<c { s += y[r * c + i] * Double(wp[o * c + i]) }
                out[r * c + o] = s
            }
        }
        // Backward.
        var dWp = [Double](repeating: 0, count: c * c), dbp = [Double](repeating: 0, count: c)
        var dy = [Double](repeating: 0, count: rows * c)
        for r in 0..<rows {
            for o in 0..<c {
                let g = Double(dout[r * c + o])
                dbp[o] += g
                for i in 0..<c {
                    dWp[o * c + i] += g * y[r * c + i]
                    dy[r * c + i] += g * Double(wp[o * c + i])
                }
            }
        }
        var dqkv = [Double](repeating: 0, count: rows * c3)
        for bi in 0..<b {
            for h in 0..<nh {
                for i in 0..<t {
                    // dP(i, j) = Σ_e dy(i, e)·v(j, e)·M(i, j) for j ≤ i
                    var dp = [Double](repeating: 0, count: t)
                    for j in 0...i {
                        var d = 0.0
                        for e in 0..<hs { d += dy[(bi * t + i) * c + h * hs + e] * v(bi, j, h, e) }
                        dp[j] = d * m(bi, h, i, j)
                        let pij = p[((bi * nh + h) * t + i) * t + j] * m(bi, h, i, j)
                        for e in 0..<hs { dqkv[(bi * t + j) * c3 + 2 * c + h * hs + e] += pij * dy[(bi * t + i) * c + h * hs + e] }
                    }
                    var dot = 0.0
                    for j in 0...i { dot += dp[j] * p[((bi * nh + h) * t + i) * t + j] }
                    for j in 0...i {
                        let ds = p[((bi * nh + h) * t + i) * t + j] * (dp[j] - dot) * scale
                        for e in 0..<hs {
                            dqkv[(bi * t + i) * c3 + h * hs + e] += ds * k(bi, j, h, e)
                            dqkv[(bi * t + j) * c3 + c + h * hs + e] += ds * q(bi, i, h, e)
                        }
                    }
                }
            }
        }
        var dWa = [Double](repeating: 0, count: c3 * c), dba = [Double](repeating: 0, count: c3)
        var dx = [Double](repeating: 0, count: rows * c)
        for r in 0..<rows {
            for o in 0..<c3 {
                let g = dqkv[r * c3 + o]
                dba[o] += g
                for i in 0..<c {
                    dWa[o * c + i] += g * Double(x[r * c + i])
                    dx[r * c + i] += g * Double(wa[o * c + i])
                }
            }
        }
        return Result(out: out, dx: dx, dWa: dWa, dba: dba, dWp: dWp, dbp: dbp)
    }
}

/// max |a − b| / (atol + rtol·|b|) over the elements: ≤ 1 passes.
private func worst(_ a: [Float], _ b: [Double], atol: Double = 1e-5, rtol: Double = 1e-4) -> Double {
    precondition(a.count == b.count)
    var w = 0.0
    for i in 0..<a.count { w = maxNaN(w, abs(Double(a[i]) - b[i]) / (atol + rtol * abs(b[i]))) }
    return w
}

@Suite struct CausalSelfAttentionTests {
    struct Case: CustomStringConvertible, Sendable {
        var b: Int, t: Int, c: Int, heads: Int, bias: Bool, dropout: Float = 0
        var description: String { "B\(b) T\(t) C\(c) heads \(heads) bias \(bias) p \(dropout)" }
    }

    static let cases: [Case] = [
        Case(b: 1, t: 1, c: 4, heads: 1, bias: true),
        Case(b: 1, t: 5, c: 4, heads: 1, bias: false),
        Case(b: 3, t: 5, c: 8, heads: 2, bias: true),
        Case(b: 3, t: 5, c: 8, heads: 4, bias: false),
        Case(b: 3, t: 1, c: 8, heads: 4, bias: true),
        Case(b: 1, t: 5, c: 12, heads: 4, bias: true),
        Case(b: 3, t: 5, c: 8, heads: 2, bias: true, dropout: 0.3),
        Case(b: 2, t: 7, c: 8, heads: 4, bias: false, dropout: 0.5),
        // Long enough for the pair kernel's 4-row blocks and 16-lane chunks
        // (pml_attention.h) and the softmax's: T odd (a masked chunk, then
        // one key at a time past the last whole chunk, a short last block),
        // and 64 with dropout. Wider heads: AttentionPairKernelTests.
        Case(b: 2, t: 33, c: 8, heads: 2, bias: true),
        Case(b: 1, t: 64, c: 8, heads: 2, bias: false, dropout: 0.2),
    ]

    /// Forward, the input gradient and all four parameter gradients against
    /// the Double reference; in training mode, so the dropout cases use the
    /// documented mask stream (recomputed here from Philox).
    @Test(arguments: cases)
    func matchesTheNaiveReference(_ k: Case) throws {
        let layer = try CausalSelfAttention(features: k.c, heads: k.heads, bias: k.bias, dropout: k.dropout)
        let model = try makeModel([layer], seed: 9)
        let params = model.parameters!.toArray()
        let specs = layer.parameterSpecs
        var off = 0
        var p: [[Float]] = []
        for s in specs {
            p.append(Array(params[off..<off + s.shape.count]))
            off += s.shape.count
        }
        let wa = p[0], ba = k.bias ? p[1] : nil, wp = k.bias ? p[2] : p[1], bp = k.bias ? p[3] : nil
        let x = randomArray(k.b * k.t * k.c, seed: 10, low: -2, high: 2)
        let dout = randomArray(k.b * k.t * k.c, seed: 11)
        let ctx = PassContext(training: true, step: 3, sampleOffset: 5, seed: 17)

        var keep: [Double]?
        if k.dropout > 0 {
            let rng = Philox(seed: ctx.seed)
            let stream = RandomStream.dropout(layer: 0, step: ctx.step)
            let perSample = k.heads * k.t * k.t
            keep = (0..<(k.b * perSample)).map { e in
                let u = rng.uniform(stream: stream, index: UInt64(ctx.sampleOffset * perSample + e))
                return u >= k.dropout ? 1 / Double(1 - k.dropout) : 0
            }
        }
        let ref = Reference(b: k.b, t: k.t, c: k.c, nh: k.heads, bias: k.bias)
            .run(x: x, wa: wa, ba: ba, wp: wp, bp: bp, dout: dout, keep: keep)

        let xt = try Tensor(x, shape: Shape(k.b, k.t, k.c))
        let y = try model.forward(xt, ctx)
        #expect(y.shape == xt.shape)
        #expect(worst(y.toArray(), ref.out) <= 1, "forward, \(k)")
        // Gradients start as NaN: β = 0 must overwrite, not scale.
        model.gradients!.fill(.nan)
        let dx = try model.root.backward(try Tensor(dout, shape: xt.shape), ctx, needInputGradient: true, accumulate: false)!
        #expect(worst(dx.toArray(), ref.dx) <= 1, "input gradient, \(k)")
        let grads = model.gradients!.toArray()
        var names: [(String, [Double])] = [("c_attn.weight", ref.dWa)]
        if k.bias { names.append(("c_attn.bias", ref.dba)) }
        names.append(("c_proj.weight", ref.dWp))
        if k.bias { names.append(("c_proj.bias", ref.dbp)) }
        off = 0
        for ((name, want), spec) in zip(names, specs) {
            #expect(spec.name == name)
            let got = Array(grads[off..<off + spec.shape.count])
            #expect(worst(got, want) <= 1, "\(name) gradient, \(k)")
            off += spec.shape.count
        }

        // Accumulating adds the new gradient to the old; the momentum fold keeps β·old.
        let first = grads
        _ = try model.root.backward(try Tensor(dout, shape: xt.shape), ctx, needInputGradient: false, accumulate: true)
        let twice = model.gradients!.toArray()
        #expect(maxAbsDiff(twice, first.map { 2 * $0 }) <= 1e-5 * Double(first.map { abs($0) }.max()! + 1))
        var folded = ctx
        folded.gradientDecay = 0.5
        _ = try model.root.backward(try Tensor(dout, shape: xt.shape), folded, needInputGradient: false, accumulate: false)
        let expect = zip(twice, first).map { 0.5 * $0 + $1 }
        #expect(maxAbsDiff(model.gradients!.toArray(), expect) <= 1e-5 * Double(first.map { abs($0) }.max()! + 1))
    }

    @Test func parametersAreNanoGPTs() throws {
        let layer = try CausalSelfAttention(features: 8, heads: 2)
        #expect(layer.parameterSpecs.map(\.name) == ["c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias"])
        #expect(layer.parameterSpecs.map(\.shape) == [Shape(24, 8), Shape(24), Shape(8, 8), Shape(8)])
        #expect(layer.parameterSpecs.map(\.decays) == [true, false, true, false])
        let bound = 1 / Float(8).squareRoot()
        #expect(layer.parameterSpecs.allSatisfy { $0.initializer == .uniform(bound: bound) })
        let plain = try CausalSelfAttention(features: 8, heads: 2, bias: false)
        #expect(plain.parameterSpecs.map(\.name) == ["c_attn.weight", "c_proj.weight"])
        let model = try makeModel([try CausalSelfAttention(features: 8, heads: 2)], randomize: false)
        let w = model.parameters!.toArray()
        #expect(w.allSatisfy { abs($0) <= bound } && w.contains { abs($0) > bound / 2 })
    }

    /// Central differences through the model, in training with dropout on
    /// (the masks are a function of the pass context, so they are fixed).
    @Test(arguments: [Float(0), 0.25])
    func gradientsMatchFiniteDifferences(_ p: Float) throws {
        let model = try makeModel([try CausalSelfAttention(features: 8, heads: 2, dropout: p)], seed: 31)
        let x = try randomTensor(Shape(2, 4, 8), seed: 32)
        let ctx = PassContext(training: true, step: 2, sampleOffset: 1, seed: 8)
        try gradientCheck(model: model, input: x, ctx: ctx)
    }

    /// Changing token j leaves every output before j bit for bit as it was.
    @Test func isCausal() throws {
        let model = try makeModel([try CausalSelfAttention(features: 8, heads: 4)], seed: 41)
        let b = 2, t = 6, c = 8
        let x = randomArray(b * t * c, seed: 42)
        let ctx = PassContext(training: false)
        let base = try model.forward(try Tensor(x, shape: Shape(b, t, c)), ctx).toArray()
        for j in 0..<t {
            var x2 = x
            for bi in 0..<b { for e in 0..<c { x2[(bi * t + j) * c + e] += 0.5 } }
            let y = try model.forward(try Tensor(x2, shape: Shape(b, t, c)), ctx).toArray()
            for bi in 0..<b {
                for i in 0..<t {
                    let row = Array(y[(bi * t + i) * c..<(bi * t + i + 1) * c]), was = Array(base[(bi * t + i) * c..<(bi * t + i + 1) * c])
                    if i < j {
                        expectEqualElements(row.map(\.bitPattern), was.map(\.bitPattern), "token \(j) changed output \(i) of sample \(bi)")
                    } else {
                        #expect(maxAbsDiff(row, was) > 1e-3, "token \(j) did not change output \(i) of sample \(bi)")
                    }
                }
            }
        }
    }

    /// Dropout masks are keyed on the global sample: the batch run whole or
    /// as two halves with their sample offsets gives the same outputs and gradients.
    @Test func dropoutIsTheSameForAnySplitOfTheBatch() throws {
        let model = try makeModel([try CausalSelfAttention(features: 8, heads: 2, dropout: 0.4)], seed: 51)
        let b = 4, t = 5, c = 8
        let x = randomArray(b * t * c, seed: 52), dout = randomArray(b * t * c, seed: 53)
        let ctx = PassContext(training: true, step: 6, sampleOffset: 10, seed: 3)
        let whole = try model.forward(try Tensor(x, shape: Shape(b, t, c)), ctx).toArray()
        let dxWhole = try model.root.backward(try Tensor(dout, shape: Shape(b, t, c)), ctx, needInputGradient: true, accumulate: false)!
            .toArray()
        let eval = try model.forward(try Tensor(x, shape: Shape(b, t, c)), PassContext(training: false)).toArray()
        #expect(maxAbsDiff(whole, eval) > 1e-2, "dropout had no effect")
        var halves: [Float] = [], dxHalves: [Float] = []
        let n = t * c
        for (start, count) in [(0, 1), (1, 3)] {
            var part = ctx
            part.sampleOffset = ctx.sampleOffset + start
            let xs = try Tensor(Array(x[start * n..<(start + count) * n]), shape: Shape(count, t, c))
            halves += try model.forward(xs, part).toArray()
            let ds = try Tensor(Array(dout[start * n..<(start + count) * n]), shape: Shape(count, t, c))
            dxHalves += try model.root.backward(ds, part, needInputGradient: true, accumulate: false)!.toArray()
        }
        // Same masks, other row splits: the products sum in another order
        // (AVX2 kernels: 1.2e-6 on the input gradient); other masks move it by 1e-3 and more.
        #expect(maxAbsDiff(halves, whole) <= 1e-5)
        #expect(maxAbsDiff(dxHalves, dxWhole) <= 1e-5)
        // Another step draws other masks.
        var later = ctx
        later.step = 7
        let other = try model.forward(try Tensor(x, shape: Shape(b, t, c)), later).toArray()
        #expect(maxAbsDiff(other, whole) > 1e-3)
    }

    @Test func badAttributesAndShapesAreRefused() throws {
        let kind = try LayerKinds.kind(named: "causal_self_attention")
        expectError(
            parmlError { _ = try kind.make(["features": .int(6), "heads": .int(4)]) }, "invalidArgument",
            mentions: ["causal_self_attention", "heads (4)", "features (6)"])
        expectError(
            parmlError { _ = try kind.make(["features": .int(8), "heads": .int(2), "dropout": .float(1)]) }, "invalidArgument",
            mentions: ["causal_self_attention", "'dropout'", "[0, 1)"])
        expectError(parmlError { _ = try kind.make(["features": .int(8)]) }, "invalidArgument", mentions: ["causal_self_attention", "'heads'", "required"])
        let layer = try kind.make(["features": .int(8), "heads": .int(2)])
        #expect(layer.attributes == ["features": .int(8), "heads": .int(2), "bias": .bool(true), "dropout": .float(0)])
        expectError(parmlError { _ = try layer.outputShape(for: Shape(3, 8)) }, "shape", mentions: ["causal_self_attention", "(B, T, 8)", "(3, 8)"])
        expectError(parmlError { _ = try layer.outputShape(for: Shape(3, 5, 6)) }, "shape", mentions: ["(B, T, 8)", "(3, 5, 6)"])
        #expect(try layer.outputShape(for: Shape(3, 5, 8)) == Shape(3, 5, 8))
    }
}
