import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// Three steps on p0 with the gradients g1, g2, g3 below.
private let p0: [Double] = [1, -2, 0.5]
private let gradSteps: [[Double]] = [[0.5, -1, 2], [1, 0, -1], [-0.5, 0.25, 0.5]]

/// torch.optim.SGD, written out in Double:
///   g ← g + wd·p;  b ← μ·b + g (b = g at t = 1);  g ← g + μ·b (Nesterov) or b;  p ← p − lr·g
private func referenceSGD(lr: Double, momentum mu: Double, nesterov: Bool, weightDecay wd: Double) -> [[Double]] {
    var p = p0, b = [Double](repeating: 0, count: 3)
    var out: [[Double]] = []
    for (t, g0) in gradSteps.enumerated() {
        for i in 0..<3 {
            var g = g0[i] + wd * p[i]
            if mu > 0 {
                b[i] = t == 0 ? g : mu * b[i] + g
                g = nesterov ? g + mu * b[i] : b[i]
            }
            p[i] -= lr * g
        }
        out.append(p)
    }
    return out
}

/// torch.optim.Adam (L2: g ← g + wd·p) and AdamW (p ← p·(1 − lr·wd) first), in Double:
///   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  p ← p − lr·(m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε)
private func referenceAdam(lr: Double, beta1: Double, beta2: Double, eps: Double, weightDecay wd: Double, decoupled: Bool) -> [[Double]] {
    var p = p0, m = [Double](repeating: 0, count: 3), v = [Double](repeating: 0, count: 3)
    var out: [[Double]] = []
    for (k, g0) in gradSteps.enumerated() {
        let t = Double(k + 1)
        for i in 0..<3 {
            if decoupled { p[i] *= 1 - lr * wd }
            let g = g0[i] + (decoupled ? 0 : wd * p[i])
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            let mhat = m[i] / (1 - pow(beta1, t)), vhat = v[i] / (1 - pow(beta2, t))
            p[i] -= lr * mhat / (vhat.squareRoot() + eps)
        }
        out.append(p)
    }
    return out
}

/// Runs the engine's optimizer for the three steps and returns p after each.
private func run(_ config: OptimizerConfig, lr: Float) throws -> [[Float]] {
    let opt = try Optimizer(config: config, range: 0..<3)
    var p = p0.map(Float.init)
    var out: [[Float]] = []
    for (t, g) in gradSteps.enumerated() {
        var gf = g.map(Float.init)
        p.withUnsafeMutableBufferPointer { pp in
            gf.withUnsafeMutableBufferPointer { opt.update(params: pp.baseAddress!, grads: $0.baseAddress!, lr: lr, t: t + 1) }
        }
        out.append(p)
    }
    return out
}

/// Float32 arithmetic on O(1) values over three steps: 2e-6 absolute
/// (~16 float ulps at 1) separates rounding from any wrong term, which would
/// show up at ≥ 1e-3 with these learning rates.
private func expectSteps(_ got: [[Float]], _ want: [[Double]], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for t in 0..<want.count {
        let diff = maxAbsDiff(got[t], want[t].map(Float.init))
        #expect(diff <= 2e-6, "\(what) step \(t + 1): got \(got[t]), want \(want[t]); max abs diff \(diff)", sourceLocation: sourceLocation)
    }
}

@Suite struct OptimizerTests {
    @Test func sgdPlain() throws {
        var c = OptimizerConfig()
        c.learningRate = 0.1
        let got = try run(c, lr: 0.1)
        // p − 0.1·g by hand.
        expectSteps(got, [[0.95, -1.9, 0.3], [0.85, -1.9, 0.4], [0.9, -1.925, 0.35]], "sgd (hand)")
        expectSteps(got, referenceSGD(lr: 0.1, momentum: 0, nesterov: false, weightDecay: 0), "sgd")
    }

    @Test func sgdMomentum() throws {
        var c = OptimizerConfig()
        c.momentum = 0.9
        let got = try run(c, lr: 0.1)
        // b1 = g1; b2 = 0.9·b1 + g2 = (1.45, −0.9, 0.8); b3 = (0.805, −0.56, 1.22).
        expectSteps(got, [[0.95, -1.9, 0.3], [0.805, -1.81, 0.22], [0.7245, -1.754, 0.098]], "momentum (hand)")
        expectSteps(got, referenceSGD(lr: 0.1, momentum: 0.9, nesterov: false, weightDecay: 0), "momentum")
    }

    @Test func sgdNesterov() throws {
        var c = OptimizerConfig()
        c.momentum = 0.9
        c.nesterov = true
        let got = try run(c, lr: 0.1)
        // Step 1: g + 0.9·g = 1.9·g → p1 = p0 − 0.19·g1.
        expectSteps(Array(got.prefix(1)), [[0.905, -1.81, 0.12]], "nesterov (hand)")
        expectSteps(got, referenceSGD(lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0), "nesterov")
    }

    @Test func sgdWeightDecay() throws {
        var c = OptimizerConfig()
        c.weightDecay = 0.1
        let got = try run(c, lr: 0.1)
        // Step 1: g + 0.1·p0 = (0.6, −1.2, 2.05).
        expectSteps(Array(got.prefix(1)), [[0.94, -1.88, 0.295]], "weight decay (hand)")
        expectSteps(got, referenceSGD(lr: 0.1, momentum: 0, nesterov: false, weightDecay: 0.1), "weight decay")
        c.momentum = 0.5
        expectSteps(try run(c, lr: 0.1), referenceSGD(lr: 0.1, momentum: 0.5, nesterov: false, weightDecay: 0.1), "momentum + weight decay")
        c.nesterov = true
        expectSteps(try run(c, lr: 0.1), referenceSGD(lr: 0.1, momentum: 0.5, nesterov: true, weightDecay: 0.1), "nesterov + weight decay")
    }

    @Test func adam() throws {
        var c = OptimizerConfig()
        c.kind = .adam
        let got = try run(c, lr: 0.1)
        // Step 1 of Adam moves each parameter by lr·sign(g) (m̂ = g, v̂ = g²).
        expectSteps(Array(got.prefix(1)), [[0.9, -1.9, 0.4]], "adam (hand)")
        expectSteps(got, referenceAdam(lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false), "adam")
        c.beta1 = 0.5
        c.beta2 = 0.75
        c.epsilon = 0.1
        expectSteps(try run(c, lr: 0.05), referenceAdam(lr: 0.05, beta1: 0.5, beta2: 0.75, eps: 0.1, weightDecay: 0, decoupled: false), "adam (β 0.5/0.75, ε 0.1)")
    }

    @Test func adamL2WeightDecay() throws {
        var c = OptimizerConfig()
        c.kind = .adam
        c.weightDecay = 0.5
        c.epsilon = 0.01
        let got = try run(c, lr: 0.1)
        expectSteps(got, referenceAdam(lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 0.01, weightDecay: 0.5, decoupled: false), "adam + L2")
        // Decay enters the moments: not the same as AdamW.
        let w = referenceAdam(lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 0.01, weightDecay: 0.5, decoupled: true)
        #expect(maxAbsDiff(got[2], w[2].map(Float.init)) > 1e-3)
    }

    @Test func adamW() throws {
        var c = OptimizerConfig()
        c.kind = .adamW
        c.weightDecay = 0.5
        let got = try run(c, lr: 0.1)
        // Step 1: p0·(1 − 0.05) − 0.1·sign(g1).
        expectSteps(Array(got.prefix(1)), [[0.85, -1.8, 0.375]], "adamw (hand)")
        expectSteps(got, referenceAdam(lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5, decoupled: true), "adamw")
    }

    /// Folded momentum: the backward pass leaves buf = μ·buf + g in the
    /// gradient arena and the optimizer finishes the torch update from it.
    @Test(arguments: [Float(0), 0.1])
    func sgdFoldedMomentum(_ wd: Float) throws {
        var c = OptimizerConfig()
        c.momentum = 0.9
        c.weightDecay = wd
        #expect(Optimizer.canFoldMomentum(c))
        let arena = try Tensor(shape: Shape(3))
        let opt = try Optimizer(config: c, range: 0..<3, foldedMomentum: arena)
        #expect(opt.foldsMomentum)
        #expect(opt.stateTensors.count == 1 && opt.stateTensors[0] === arena)
        var p = p0.map(Float.init)
        var got: [[Float]] = []
        for (t, g) in gradSteps.enumerated() {
            // What a backward pass with gradientDecay = μ writes.
            for i in 0..<3 { arena.data[i] = 0.9 * arena.data[i] + Float(g[i]) }
            p.withUnsafeMutableBufferPointer { opt.update(params: $0.baseAddress!, grads: arena.data, lr: 0.1, t: t + 1) }
            got.append(p)
        }
        expectSteps(got, referenceSGD(lr: 0.1, momentum: 0.9, nesterov: false, weightDecay: Double(wd)), "folded momentum wd=\(wd)")
    }

    @Test func foldingNeedsPlainMomentum() throws {
        var c = OptimizerConfig()
        #expect(!Optimizer.canFoldMomentum(c))  // no momentum
        c.momentum = 0.9
        c.nesterov = true
        #expect(!Optimizer.canFoldMomentum(c))
        let buf = try Tensor(shape: Shape(3))
        expectError(parmlError { _ = try Optimizer(config: c, range: 0..<3, foldedMomentum: buf) }, "internal")
        c.nesterov = false
        expectError(parmlError { _ = try Optimizer(config: c, range: 0..<4, foldedMomentum: buf) }, "internal")
        c.kind = .adam
        #expect(!Optimizer.canFoldMomentum(c))
    }

    /// A ZeRO shard: the optimizer updates only its range of the arena.
    @Test func updatesOnlyItsRange() throws {
        var c = OptimizerConfig()
        c.kind = .adam
        let opt = try Optimizer(config: c, range: 2..<5)
        #expect(opt.stateTensors.count == 2 && opt.stateTensors[0].count == 3)
        var p: [Float] = [9, 9] + p0.map(Float.init) + [9]
        var g: [Float] = [1, 1] + gradSteps[0].map(Float.init) + [1]
        p.withUnsafeMutableBufferPointer { pp in
            g.withUnsafeMutableBufferPointer { opt.update(params: pp.baseAddress!, grads: $0.baseAddress!, lr: 0.1, t: 1) }
        }
        #expect(p[0] == 9 && p[1] == 9 && p[5] == 9)
        #expect(maxAbsDiff(Array(p[2..<5]), [0.9, -1.9, 0.4]) <= 1e-6)
        #expect(try Optimizer(config: OptimizerConfig(), range: 0..<3).stateTensors.isEmpty)
    }

    /// bf16 training: an update given a bf16 copy rounds every value it
    /// updates into it (BF16ParameterCopies), in pieces across the
    /// threads' ranges, and updates exactly as without one. Values outside
    /// the optimizer's range keep their copy. Adam and folded SGD with decay,
    /// over 70,001 values (several pieces and ranges, a ragged end).
    @Test(arguments: [OptimizerKind.adam, .sgd])
    func updateRoundsWhatItWritesIntoTheBF16Copy(_ kind: OptimizerKind) throws {
        var c = OptimizerConfig()
        c.kind = kind
        c.momentum = kind == .sgd ? 0.9 : 0
        c.weightDecay = 0.01
        let n = 70_001, lo = 3
        let range = lo..<(n - 2)
        let p0 = randomArray(n, seed: 7, stream: 1), g0 = randomArray(n, seed: 7, stream: 2)
        func run(rounding: Bool) throws -> (p: [Float], copy: [UInt16]) {
            let grads = try Tensor(g0, shape: Shape(n))
            let opt = try Optimizer(config: c, range: range, foldedMomentum: kind == .sgd ? try Tensor(shape: Shape(range.count)) : nil)
            var p = p0
            var copy = [UInt16](repeating: 0xFFFF, count: n)
            p.withUnsafeMutableBufferPointer { pp in
                copy.withUnsafeMutableBufferPointer { cp in
                    for t in 1...2 {
                        opt.update(
                            params: pp.baseAddress!, grads: grads.data, lr: 0.05, t: t,
                            rounding: rounding ? cp.baseAddress! + lo : nil)
                    }
                }
            }
            return (p, copy)
        }
        let plain = try run(rounding: false), rounded = try run(rounding: true)
        expectEqualElements(rounded.p.map(\.bitPattern), plain.p.map(\.bitPattern), "\(kind): the update changed")
        var expected = [UInt16](repeating: 0xFFFF, count: n)
        rounded.p.withUnsafeBufferPointer { pp in
            expected.withUnsafeMutableBufferPointer { BF16.round(pp.baseAddress! + lo, into: $0.baseAddress! + lo, count: range.count) }
        }
        expectEqualElements(rounded.copy, expected, "\(kind): the copy is not the updated values rounded")
    }

    @Test func validation() {
        func invalid(_ change: (inout OptimizerConfig) -> Void, _ mentions: String, sourceLocation: SourceLocation = #_sourceLocation) {
            var c = OptimizerConfig()
            change(&c)
            expectError(parmlError({ try c.validate() }, sourceLocation: sourceLocation), "invalidArgument", mentions: [mentions], sourceLocation: sourceLocation)
            expectError(parmlError({ _ = try Optimizer(config: c, range: 0..<1) }, sourceLocation: sourceLocation), "invalidArgument", sourceLocation: sourceLocation)
        }
        invalid({ $0.learningRate = -0.1 }, "learning_rate")
        invalid({ $0.learningRate = .nan }, "learning_rate")
        invalid({ $0.momentum = 1 }, "momentum")
        invalid({ $0.momentum = 1.5 }, "momentum")
        invalid({ $0.momentum = -0.1 }, "momentum")
        invalid({ $0.nesterov = true }, "Nesterov")
        invalid({ $0.weightDecay = -1 }, "weight_decay")
        invalid({ $0.beta1 = 1 }, "beta1")
        invalid({ $0.beta2 = -0.5 }, "beta2")
        invalid({ $0.epsilon = 0 }, "epsilon")
        invalid({ $0.clipGradNorm = -1 }, "clip_grad_norm")
        invalid({ $0.schedule.kind = .cosine }, "cosine")
        var ok = OptimizerConfig()
        ok.momentum = 0.99
        ok.nesterov = true
        ok.learningRate = 0
        #expect(throws: Never.self) { try ok.validate() }
    }
}

@Suite struct ScheduleTests {
    private func expectLR(_ s: ScheduleConfig, base: Float, _ pairs: [(Int, Double)], sourceLocation: SourceLocation = #_sourceLocation) {
        for (step, want) in pairs {
            let got = s.learningRate(base: base, step: step)
            #expect(abs(Double(got) - want) <= 1e-6 * max(abs(want), 1e-3), "step \(step): lr \(got), want \(want)", sourceLocation: sourceLocation)
        }
    }

    @Test func constant() {
        var s = ScheduleConfig()
        expectLR(s, base: 0.3, [(0, 0.3), (1, 0.3), (1_000_000, 0.3)])
        s.warmupSteps = 4
        // Linear warmup (s+1)/W, then the constant.
        expectLR(s, base: 0.4, [(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4), (4, 0.4), (100, 0.4)])
    }

    @Test func step() {
        var s = ScheduleConfig()
        s.kind = .step
        s.stepSize = 3
        s.gamma = 0.5
        // lr·γ^⌊s/3⌋
        expectLR(s, base: 0.1, [(0, 0.1), (2, 0.1), (3, 0.05), (5, 0.05), (6, 0.025), (9, 0.0125), (30, 0.1 * pow(0.5, 10))])
        s.warmupSteps = 2
        // Warmup, then the step count restarts at u = s − W.
        expectLR(s, base: 0.1, [(0, 0.05), (1, 0.1), (2, 0.1), (4, 0.1), (5, 0.05), (8, 0.025)])
    }

    @Test func cosineWithWarmup() {
        var s = ScheduleConfig()
        s.kind = .cosine
        s.warmupSteps = 10
        s.totalSteps = 110
        s.minLearningRate = 0.1
        let c25 = (1 + cos(Double.pi / 4)) / 2, c99 = (1 + cos(Double.pi * 99 / 100)) / 2
        expectLR(s, base: 1, [
            (0, 0.1), (4, 0.5), (9, 1.0),  // warmup (s+1)/W
            (10, 1.0),  // cosine starts at the full rate
            (35, 0.1 + 0.9 * c25),
            (60, 0.55),  // midpoint: (lr + min)/2
            (109, 0.1 + 0.9 * c99),
            (110, 0.1), (111, 0.1), (100_000, 0.1),  // min_lr at and after the end
        ])
        // Monotone decreasing after warmup.
        var last = Float.infinity
        for step in 10...120 {
            let lr = s.learningRate(base: 1, step: step)
            #expect(lr <= last, "lr rises at step \(step)")
            last = lr
        }
    }

    @Test func cosineWithoutWarmup() {
        var s = ScheduleConfig()
        s.kind = .cosine
        s.totalSteps = 100
        expectLR(s, base: 0.2, [(0, 0.2), (50, 0.1), (100, 0), (150, 0)])
    }

    @Test func validation() throws {
        func invalid(_ change: (inout ScheduleConfig) -> Void, _ mentions: String, sourceLocation: SourceLocation = #_sourceLocation) {
            var s = ScheduleConfig()
            change(&s)
            expectError(parmlError({ try s.validate() }, sourceLocation: sourceLocation), "invalidArgument", mentions: [mentions], sourceLocation: sourceLocation)
        }
        invalid({ $0.kind = .cosine; $0.warmupSteps = 10; $0.totalSteps = 10 }, "total_steps")
        invalid({ $0.kind = .cosine; $0.warmupSteps = 10; $0.totalSteps = 5 }, "total_steps")
        invalid({ $0.kind = .cosine; $0.totalSteps = 0 }, "total_steps")
        invalid({ $0.kind = .cosine; $0.totalSteps = 10; $0.minLearningRate = -0.1 }, "min_lr")
        invalid({ $0.kind = .step; $0.stepSize = 0 }, "step_size")
        invalid({ $0.kind = .step; $0.gamma = 0 }, "gamma")
        invalid({ $0.kind = .step; $0.gamma = .nan }, "gamma")
        invalid({ $0.warmupSteps = -1 }, "warmup_steps")
        var ok = ScheduleConfig()
        ok.kind = .cosine
        ok.warmupSteps = 10
        ok.totalSteps = 11
        try ok.validate()
    }
}

@Suite struct GradientClippingTests {
    /// (3, 4) spread over 37 elements, so both the 16-lane body and the tail count.
    private func grads() -> [Float] {
        var g = [Float](repeating: 0, count: 37)
        g[3] = 3
        g[35] = 4
        return g
    }

    @Test func scalesDownToTheMaximum() {
        var g = grads()
        var scratch = [Float](repeating: 0, count: GradientClipping.blockCount(37))
        let norm = g.withUnsafeMutableBufferPointer { gp in
            scratch.withUnsafeMutableBufferPointer { GradientClipping.clip(gp.baseAddress!, count: 37, maxNorm: 1, scratch: $0.baseAddress!) }
        }
        #expect(norm == 5)
        // As torch: g·max/(‖g‖ + 1e-6).
        let f = 1 / (5 + 1e-6)
        #expect(abs(Double(g[3]) - 3 * f) <= 2e-7 && abs(Double(g[35]) - 4 * f) <= 2e-7, "got \(g[3]), \(g[35])")
        let after = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(after - 1) <= 1e-6, "norm after clipping \(after)")
    }

    @Test(arguments: [Float(10), 5, 0])
    func untouchedWhenBelowOrOff(_ maxNorm: Float) {
        var g = grads()
        var scratch = [Float](repeating: 0, count: GradientClipping.blockCount(37))
        let norm = g.withUnsafeMutableBufferPointer { gp in
            scratch.withUnsafeMutableBufferPointer { GradientClipping.clip(gp.baseAddress!, count: 37, maxNorm: maxNorm, scratch: $0.baseAddress!) }
        }
        #expect(norm == 5)
        expectEqualElements(g, grads())
    }

    /// The norm is a sum of per-block sums in block order: the same bits
    /// whether the blocks are summed whole or shard by shard.
    @Test func blockwiseNormDoesNotDependOnSharding() {
        let n = 5000
        var g = (0..<n).map { Float(($0 * 37) % 101) / 17 - 3 }
        let blocks = GradientClipping.blockCount(n)
        var whole = [Float](repeating: 0, count: blocks)
        var parts = [Float](repeating: 0, count: blocks)
        g.withUnsafeMutableBufferPointer { gp in
            whole.withUnsafeMutableBufferPointer {
                GradientClipping.blockSquares(gp.baseAddress!, range: 0..<n, count: n, into: $0.baseAddress!)
            }
            parts.withUnsafeMutableBufferPointer { pp in
                for r in [0..<2048, 2048..<3072, 3072..<n] {
                    GradientClipping.blockSquares(gp.baseAddress!, range: r, count: n, into: pp.baseAddress!)
                }
            }
        }
        expectEqualElements(whole.map(\.bitPattern), parts.map(\.bitPattern))
        let norm = whole.withUnsafeBufferPointer { GradientClipping.norm(blockSums: $0.baseAddress!, blocks: blocks) }
        let exact = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        #expect(abs(Double(norm) - exact) <= 1e-5 * exact)
    }
}

/// decay_by_kind: the optimizer's range is cut where decay starts and stops.
@Suite struct DecayByKindTests {
    @Test func runsCoverTheRangeAndFollowTheDecayingTensors() {
        let runs = Optimizer.runs(of: 10..<30, decaying: [0..<12, 15..<18, 25..<40])
        #expect(runs.map(\.range) == [0..<2, 2..<5, 5..<8, 8..<15, 15..<20])
        #expect(runs.map(\.decays) == [true, false, true, false, true])
        #expect(Optimizer.runs(of: 0..<5, decaying: []).map(\.decays) == [false])
        #expect(Optimizer.runs(of: 0..<0, decaying: [0..<3]).isEmpty)
    }

    @Test func linearWeightsDecayBiasesAndLayerNormDoNot() throws {
        let m = try makeModel([try Linear(inFeatures: 3, outFeatures: 2), try LayerNorm(features: 2), try Linear(inFeatures: 2, outFeatures: 2, bias: false)])
        #expect(m.parameterInfo.map(\.decays) == [true, false, false, false, true])
        #expect(m.decayingRanges == [0..<6, 12..<16])
    }
}
