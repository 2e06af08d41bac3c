import Foundation
import ParmlModel
@testable import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// bf16 mixed precision (docs/precision.md). The tolerance: each operand is
// rounded to bf16 with relative error at most u = 2^-8, so a product a·b
// carries at most 2u + u², and float32 accumulation of k terms adds at
// most k·2^-24 of Σ|a·b| (recursive summation, first order; doubled for
// slack below). Elementwise, |C_bf16 − C_exact| ≤ (2u + u² + 2k·2^-24)·(|A|·|B|).

/// One Linear's y, dW (β = 0), db and dx for x, W, b, dy drawn at random.
private struct LinearPass {
    let x, w, b, dy: [Float]
    let rows, inF, outF: Int

    init(rows: Int, inF: Int, outF: Int, seed: UInt64) {
        (self.rows, self.inF, self.outF) = (rows, inF, outF)
        x = randomArray(rows * inF, seed: seed, stream: 1)
        w = randomArray(outF * inF, seed: seed, stream: 2)
        b = randomArray(outF, seed: seed, stream: 3)
        dy = randomArray(rows * outF, seed: seed, stream: 4)
    }

    /// (y, dW, db, dx) as parml computes them in `precision`.
    func run(_ precision: Precision) throws -> [[Float]] {
        let model = Model()
        try model.add(try Linear(inFeatures: inF, outFeatures: outF))
        try model.initialize(seed: 1)
        model.parameters!.data.update(from: w, count: w.count)
        (model.parameters!.data + w.count).update(from: b, count: b.count)
        var ctx = PassContext(training: true, step: 0)
        ctx.precision = precision
        ctx.stepSerial = BF16Products.nextSerial()
        let y = try model.forward(try Tensor(x, shape: Shape(rows, inF)), ctx).toArray()
        model.gradients!.fill(.nan)  // β = 0 must overwrite
        let dx = try model.root.backward(try Tensor(dy, shape: Shape(rows, outF)), ctx, needInputGradient: true, accumulate: false)!
        let g = model.gradients!.toArray()
        return [y, Array(g[0..<w.count]), Array(g[w.count...]), dx.toArray()]
    }

    /// Each product as (A, B, k) in Double, row-major C = A·B: y − b, dW, dx.
    func products(rounded: Bool) -> [(a: [[Double]], b: [[Double]])] {
        let r: (Float) -> Double = { rounded ? Double(BF16.value(bf16Bits($0))) : Double($0) }
        let X = (0..<rows).map { i in (0..<inF).map { r(x[i * inF + $0]) } }
        let W = (0..<outF).map { o in (0..<inF).map { r(w[o * inF + $0]) } }
        let D = (0..<rows).map { i in (0..<outF).map { r(dy[i * outF + $0]) } }
        let Wt = (0..<inF).map { j in (0..<outF).map { W[$0][j] } }
        let Dt = (0..<outF).map { o in (0..<rows).map { D[$0][o] } }
        return [(X, Wt), (Dt, X), (D, W)]
    }
}

private func bf16Bits(_ v: Float) -> UInt16 {
    var out: UInt16 = 0
    var x = v
    BF16.round(&x, into: &out, count: 1)
    return out
}

/// C = A·B and |A|·|B| in Double.
private func multiply(_ a: [[Double]], _ b: [[Double]]) -> (c: [Double], abs: [Double]) {
    var c: [Double] = [], s: [Double] = []
    for row in a {
        for j in 0..<b[0].count {
            var sum = 0.0, mag = 0.0
            for q in row.indices {
                sum += row[q] * b[q][j]
                mag += abs(row[q] * b[q][j])
            }
            c.append(sum)
            s.append(mag)
        }
    }
    return (c, s)
}

private func bf16Strategy(
    _ precision: Precision, dp: Int = 1, pp: Int = 1, m: Int = 1, zero: Int = 0, deterministic: Bool = true, threads: Int = 1
) -> StrategyConfig {
    var s = StrategyConfig()
    (s.dp, s.pp, s.microBatches, s.zeroStage) = (dp, pp, m, zero)
    s.deterministic = deterministic
    s.gradientChunk = 8
    s.blasThreads = threads
    s.seed = 4
    s.precision = precision
    s.watchdogSeconds = 20
    return s
}

/// Parameters and losses after `steps` steps of the pipeline tests' model.
private func train(_ s: StrategyConfig, steps: Int = 5, width: Int = 64) throws -> (params: [Float], losses: [Float], plan: String) {
    let model = try residualMLP(width: width, seed: 11)
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: s)
    var losses: [Float] = []
    for k in 0..<steps {
        let (x, y) = try residualMLPBatch(45, step: k)
        losses.append(try t.step(inputs: x, targets: y).loss)
    }
    return (model.parameters!.toArray(), losses, t.planDescription)
}

@Suite(.enabled(if: BF16.unavailableReason == nil, "bf16 products cannot run here: \(BF16.unavailableReason ?? "")"))
struct BF16PrecisionTests {
    /// Linear's three products in bf16 against exact arithmetic: within the
    /// bound above of the float32 operands' products, and within float32
    /// accumulation alone of the bf16-rounded operands' products (so the
    /// operands really were rounded, and nothing else was). db stays float32.
    @Test(arguments: [(37, 70, 23), (128, 96, 10), (5, 300, 33)])
    func linearGradientsMatchFloat32WithinBF16Tolerance(_ shape: (Int, Int, Int)) throws {
        let pass = LinearPass(rows: shape.0, inF: shape.1, outF: shape.2, seed: 3)
        let f32 = try pass.run(.float32), bf = try pass.run(.bf16)
        let u = 1.0 / 256
        let exact = pass.products(rounded: false), rounded = pass.products(rounded: true)
        let bias = (0..<pass.rows * pass.outF).map { Double(pass.b[$0 % pass.outF]) }
        for (i, name) in ["y", "dW", "dx"].enumerated() {
            let got = bf[i == 0 ? 0 : i == 1 ? 1 : 3].map(Double.init)
            let k = Double(exact[i].a[0].count)
            let (c, mag) = multiply(exact[i].a, exact[i].b)
            let (cr, magr) = multiply(rounded[i].a, rounded[i].b)
            var worst = 0.0, worstAccumulation = 0.0
            for e in c.indices {
                let shift = i == 0 ? bias[e] : 0
                let tol = (2 * u + u * u + 2 * k * 0x1p-24) * mag[e] + 0x1p-24 * abs(shift) + 1e-30
                worst = max(worst, abs(got[e] - c[e] - shift) / tol)
                let tolr = 2 * k * 0x1p-24 * magr[e] + 0x1p-23 * abs(cr[e] + shift) + 1e-30
                worstAccumulation = max(worstAccumulation, abs(got[e] - cr[e] - shift) / tolr)
            }
            #expect(worst <= 1, "\(name) \(shape): bf16 error \(worst) of its bound")
            #expect(worstAccumulation <= 1, "\(name) \(shape): \(worstAccumulation) of float32 accumulation's bound")
        }
        #expect(bf[0] != f32[0], "bf16 gave float32's bits: no rounding happened")
        expectSameBits(bf[2], f32[2], "db is a float32 sum in both")
    }

    /// Attention's two projections run in bf16 (its per-head products and
    /// softmax in float32): output and every gradient within bf16 rounding
    /// of float32 (relative to the largest entry: a few u = 2^-8 after the
    /// products chain), and not float32's bits.
    @Test func attentionProjectionsInBF16StayWithinRounding() throws {
        var results: [Precision: [[Float]]] = [:]
        for p in [Precision.float32, .bf16] {
            let model = Model()
            try model.add(try CausalSelfAttention(features: 32, heads: 4))
            try model.initialize(seed: 9)
            var ctx = PassContext(training: true, step: 0)
            ctx.precision = p
            ctx.stepSerial = BF16Products.nextSerial()
            let x = try Tensor(randomArray(3 * 10 * 32, seed: 6, stream: 1), shape: Shape(3, 10, 32))
            let y = try model.forward(x, ctx).toArray()
            let dout = try Tensor(randomArray(3 * 10 * 32, seed: 6, stream: 2), shape: Shape(3, 10, 32))
            let dx = try model.root.backward(dout, ctx, needInputGradient: true, accumulate: false)!.toArray()
            results[p] = [y, dx, model.gradients!.toArray()]
        }
        for (i, name) in ["output", "input gradient", "parameter gradients"].enumerated() {
            let a = results[.bf16]![i], b = results[.float32]![i]
            #expect(a != b, "\(name): bf16 gave float32's bits")
            #expect(relativeDifference(a, b) < 8.0 / 256, "\(name): \(relativeDifference(a, b))")
        }
    }

    /// Convolutions through oneDNN take x, w and dy in bf16 too (their
    /// outputs and gradients float32): within bf16 rounding of float32 for
    /// plain, strided and grouped shapes.
    @Test(arguments: [(4, 8, 1, 1), (6, 6, 2, 3), (3, 5, 1, 2)])
    func convolutionsInBF16StayWithinRounding(_ c: (Int, Int, Int, Int)) throws {
        var results: [Precision: [[Float]]] = [:]
        var implementation = ""
        for p in [Precision.float32, .bf16] {
            let model = Model()
            let conv = try Conv2d(
                inChannels: c.0, outChannels: c.1, kernel: (3, 3), stride: (c.3, c.3), padding: (1, 1), groups: c.2, backend: .onednn)
            try model.add(conv)
            try model.initialize(seed: 9)
            var ctx = PassContext(training: true, step: 0)
            ctx.precision = p
            let x = try Tensor(randomArray(5 * c.0 * 9 * 9, seed: 6, stream: 1), shape: Shape(5, c.0, 9, 9))
            let y = try model.forward(x, ctx)
            let dout = try Tensor(randomArray(y.count, seed: 6, stream: 2), shape: y.shape)
            let dx = try model.root.backward(dout, ctx, needInputGradient: true, accumulate: false)!.toArray()
            results[p] = [y.toArray(), dx, model.gradients!.toArray()]
            if p == .bf16 { implementation = conv.oneDNNImplementation ?? "im2col" }
        }
        // The plain shape runs oneDNN's bf16 kernels by name; others may run its
        // gemm-based convolution on the same bf16 operands (the checks below hold).
        if c.2 == 1 && c.3 == 1 { #expect(implementation.contains("bf16"), "\(c): \(implementation)") }
        for (i, name) in ["output", "input gradient", "parameter gradients"].enumerated() {
            let a = results[.bf16]![i], b = results[.float32]![i]
            #expect(a != b, "\(c) \(name): bf16 gave float32's bits")
            #expect(relativeDifference(a, b) < 8.0 / 256, "\(c) \(name): \(relativeDifference(a, b))")
        }
    }

    /// Deterministic mode: dp, pp, micro-batches and ZeRO give serial bf16
    /// training's bits (the products run per chunk of 8 samples alike).
    @Test func deterministicLayoutsAreBitIdenticalToSerialBF16() throws {
        let serial = try train(bf16Strategy(.bf16))
        #expect(serial.plan.contains("precision: bf16 products"), "\(serial.plan)")
        let f32 = try train(bf16Strategy(.float32))
        #expect(serial.params != f32.params, "bf16 training gave float32's bits")
        for (dp, pp, m, zero) in [(2, 1, 1, 0), (3, 1, 1, 1), (1, 2, 3, 0), (2, 2, 2, 2), (1, 1, 4, 0), (2, 1, 1, 3)] {
            let r = try train(bf16Strategy(.bf16, dp: dp, pp: pp, m: m, zero: zero))
            expectSameBits(r.params, serial.params, "dp \(dp) pp \(pp) m \(m) zero \(zero): max |Δ| \(maxAbsDiff(r.params, serial.params))")
        }
    }

    /// The same on two threads, with the 512-wide layer's products (8 rows
    /// a chunk: 8 × 512 × 512) large enough to be cut into blocks on the
    /// pool (BF16Products): the cut is the same in every layout.
    @Test func deterministicLayoutsAreBitIdenticalToSerialBF16OnTwoThreads() throws {
        #expect(BF16Products.blockCount(m: 8, n: 512, k: 512, threads: 2) == min(2, ProductThreads.cores))
        #expect(BF16Products.blockCount(m: 512, n: 512, k: 8, threads: 2) == min(2, ProductThreads.cores))
        let serial = try train(bf16Strategy(.bf16, threads: 2), steps: 3, width: 512)
        for (dp, pp, m, zero) in [(2, 1, 1, 0), (1, 2, 3, 0), (2, 1, 1, 2)] {
            let r = try train(bf16Strategy(.bf16, dp: dp, pp: pp, m: m, zero: zero, threads: 2), steps: 3, width: 512)
            expectSameBits(r.params, serial.params, "dp \(dp) pp \(pp) m \(m) zero \(zero): max |Δ| \(maxAbsDiff(r.params, serial.params))")
        }
    }

    /// Precision belongs to a trainer: a bf16 and a float32 trainer stepping
    /// in turn in one process each give what they give alone.
    @Test func trainersKeepTheirOwnPrecision() throws {
        let aloneBF16 = try train(bf16Strategy(.bf16, deterministic: false), steps: 3)
        let aloneF32 = try train(bf16Strategy(.float32, deterministic: false), steps: 3)
        let mb = try residualMLP(width: 64, seed: 11), mf = try residualMLP(width: 64, seed: 11)
        let tb = try Trainer(model: mb, loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: bf16Strategy(.bf16, deterministic: false))
        let tf = try Trainer(model: mf, loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: bf16Strategy(.float32, deterministic: false))
        for k in 0..<3 {
            let (x, y) = try residualMLPBatch(45, step: k)
            _ = try tb.step(inputs: x, targets: y)
            _ = try tf.step(inputs: x, targets: y)
        }
        expectSameBits(mb.parameters!.toArray(), aloneBF16.params, "bf16 trainer beside a float32 one")
        expectSameBits(mf.parameters!.toArray(), aloneF32.params, "float32 trainer beside a bf16 one")
        #expect(tb.precision == .bf16 && tf.precision == .float32)
    }

    /// A rank keeps bf16 copies of its weights, which its update rounds
    /// (BF16ParameterCopies). Parameters set from outside, or stepped by
    /// another trainer on the same model, are rounded again before the
    /// next step reads them: its loss is a fresh trainer's on those
    /// parameters, bit for bit (a stale copy gives the old weights' loss).
    @Test func rankBF16CopiesFollowParametersChangedOutsideTheStep() throws {
        func mlp(_ seed: UInt64) throws -> Model {
            let m = Model()
            try m.add(try Linear(inFeatures: 12, outFeatures: 96))
            try m.add(Activation(.relu))
            try m.add(try Linear(inFeatures: 96, outFeatures: 4))
            try m.initialize(seed: seed)
            return m
        }
        let strategy = bf16Strategy(.bf16, deterministic: false)
        func trainer(_ m: Model) throws -> Trainer {
            try Trainer(model: m, loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: strategy)
        }
        /// The loss of a first step on a copy of `m`'s parameters.
        func freshLoss(_ m: Model, _ x: Tensor, _ y: Tensor) throws -> Float {
            let copy = try mlp(1)
            try copy.setParameters(from: m.parameters!.data)
            return try trainer(copy).step(inputs: x, targets: y).loss
        }
        let model = try mlp(11)
        let t = try trainer(model)
        for k in 0..<2 {
            let (x, y) = try residualMLPBatch(45, step: k)
            _ = try t.step(inputs: x, targets: y)
        }
        #expect(t.ranks[0].bf16Copies?.isCurrent == true, "the rank keeps no bf16 copies")
        let (x, y) = try residualMLPBatch(45, step: 2)
        // Set from outside.
        let source = try mlp(12)
        try withExtendedLifetime(source) { try model.setParameters(from: source.parameters!.data) }
        let expected = try freshLoss(model, x, y)
        #expect(try t.step(inputs: x, targets: y).loss.bitPattern == expected.bitPattern)
        // Stepped by another trainer in between.
        let other = try trainer(model)
        for k in 3..<5 {
            let (x, y) = try residualMLPBatch(45, step: k)
            _ = try other.step(inputs: x, targets: y)
        }
        let expected2 = try freshLoss(model, x, y)
        #expect(try t.step(inputs: x, targets: y).loss.bitPattern == expected2.bitPattern)
        // And back: the other trainer sees this one's step.
        let expected3 = try freshLoss(model, x, y)
        #expect(try other.step(inputs: x, targets: y).loss.bitPattern == expected3.bitPattern)
        // ZeRO shards take their peers' updates by gather: no copies.
        let zero = bf16Strategy(.bf16, dp: 2, zero: 1, deterministic: false)
        let z = try Trainer(model: try mlp(11), loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: zero)
        _ = try z.step(inputs: x, targets: y)
        #expect(z.ranks.allSatisfy { $0.bf16Copies == nil })
    }

    /// Training in bf16 follows float32's loss curve closely on a small
    /// problem (three Gaussian blobs, 2 → 64 → 3): the losses of 40 steps
    /// agree within 2 %, and both learn.
    @Test func bf16LossFollowsFloat32() throws {
        let data = try blobs(256, seed: 5)
        var losses: [Precision: [Float]] = [:]
        for p in [Precision.bf16, .float32] {
            let model = try classifier(seed: 2, hidden: 64)
            let t = try Trainer(model: model, loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: bf16Strategy(p, deterministic: false))
            for k in 0..<40 {
                let rows = (k * 64) % 256
                let x = try Tensor(Array(data.inputs.toArray()[rows * 2..<(rows + 64) * 2]), shape: Shape(64, 2))
                let y = try Tensor(Array(data.targets.toArray()[rows..<rows + 64]), shape: Shape(64))
                losses[p, default: []].append(try t.step(inputs: x, targets: y).loss)
            }
        }
        let bf = losses[.bf16]!, f32 = losses[.float32]!
        for (k, (a, b)) in zip(bf, f32).enumerated() {
            #expect(abs(a - b) <= 0.02 * b, "step \(k): bf16 \(a), float32 \(b)")
        }
        #expect(bf.last! < bf.first! * 0.5, "bf16 training did not learn: \(bf)")
    }
}
