import Foundation
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

// Tensor parallelism splits sums over the inner dimension of the row-parallel
// GEMMs (tp partial sums added in rank order), so it matches serial training
// within rounding, not bit for bit. The bound used here, and why, is stated
// on `tolerance` below.

/// 12 → [Linear(12→32), ReLU, Linear(32→16)] → residual[LayerNorm, Linear(16→32),
/// GELU, Dropout, Linear(32→16)] → Linear(16→4): two column/row pairs (one
/// at the top level, one inside a residual block, with dropout between the
/// halves) and a replicated LayerNorm and classifier.
private func tpModel(seed: UInt64 = 13) throws -> Model {
    let m = Model()
    try m.add(try Linear(inFeatures: 12, outFeatures: 32))
    try m.add(Activation(.relu))
    try m.add(try Linear(inFeatures: 32, outFeatures: 16))
    try m.beginResidual()
    try m.add(try LayerNorm(features: 16))
    try m.add(try Linear(inFeatures: 16, outFeatures: 32))
    try m.add(Activation(.gelu))
    try m.add(try Dropout(probability: 0.25))
    try m.add(try Linear(inFeatures: 32, outFeatures: 16))
    try m.endResidual()
    try m.add(try Linear(inFeatures: 16, outFeatures: 4))
    try m.initialize(seed: seed)
    return m
}

private func tpBatch(_ n: Int, step: Int) throws -> (Tensor, Tensor) {
    let x = randomArray(n * 12, seed: 31, stream: UInt64(step))
    let y = (0..<n).map { Float(($0 * 3 + step) % 4) }
    return (try Tensor(x, shape: Shape(n, 12)), try Tensor(y, shape: Shape(n)))
}

/// Parameters after each of `steps` steps, and the losses.
private func trainTP(
    dp: Int = 1, pp: Int = 1, tp: Int = 1, m: Int = 1, zero: Int = 0, deterministic: Bool = false,
    splitClassifier: Bool = false, optimizer: DPOptimizer, steps: Int = 6, lossOptions: LossOptions = LossOptions(),
    sampleWeights: Bool = false
) throws -> (params: [[Float]], losses: [Float], correct: [Int]) {
    var s = StrategyConfig()
    s.dp = dp
    s.pp = pp
    s.tp = tp
    s.microBatches = m
    s.zeroStage = zero
    s.deterministic = deterministic
    s.gradientChunk = 8
    s.seed = 6
    s.blasThreads = 1
    s.watchdogSeconds = 20
    s.splitClassifier = splitClassifier
    let model = try tpModel()
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: optimizer.config, strategy: s)
    try t.setLossOptions(lossOptions)
    var params: [[Float]] = []
    var losses: [Float] = []
    var correct: [Int] = []
    for k in 0..<steps {
        let (x, y) = try tpBatch(40, step: k)
        let w = sampleWeights ? try Tensor(randomArray(40, seed: 5, stream: UInt64(k), low: 0, high: 2), shape: Shape(40)) : nil
        let r = try t.step(inputs: x, targets: y, sampleWeights: w)
        losses.append(r.loss)
        correct.append(r.correct)
        params.append(model.parameters!.toArray())
    }
    return (params, losses, correct)
}

struct TensorParallelTests {
    /// A row-parallel output is Σ_t (x_t·W_tᵀ) instead of one GEMM over the
    /// whole inner dimension: each sum is reassociated, an error of a few
    /// float32 ulps (≈ 1e-7 relative) per output, which the optimizer passes
    /// on to the parameters and later steps compound. Measured over this
    /// file's matrix (tp 2 and 4, hybrids, SGD momentum and AdamW): largest
    /// |Δ| / max|θ| = 3.0e-8 after step 1 and 2.7e-7 after step 6. The bound,
    /// 2e-6 × steps taken, leaves a margin of over 40× at every step and is
    /// 100× below what other dropout masks do (`toleranceSeesOtherMasks`).
    static let tolerance = 2e-6

    @Test(arguments: [2, 4], DPOptimizer.allCases)
    func tensorParallelMatchesSerialWithinRounding(tp: Int, optimizer: DPOptimizer) throws {
        let serial = try trainTP(optimizer: optimizer)
        for deterministic in [false, true] {
            let serialRun = deterministic ? try trainTP(deterministic: true, optimizer: optimizer) : serial
            let got = try trainTP(tp: tp, deterministic: deterministic, optimizer: optimizer)
            for k in 0..<got.params.count {
                let d = relativeDifference(got.params[k], serialRun.params[k])
                #expect(d <= Self.tolerance * Double(k + 1), "tp=\(tp) \(optimizer) det=\(deterministic) step \(k): relative Δ = \(d)")
                #expect(abs(got.losses[k] - serialRun.losses[k]) <= 1e-4 * max(1, abs(serialRun.losses[k])))
            }
        }
    }

    /// Hybrids 2×2 (dp×tp, pp×tp) and 2×2×2 (dp×pp×tp) with ZeRO 0 and 2.
    @Test(arguments: DPOptimizer.allCases)
    func hybridsMatchSerialWithinRounding(optimizer: DPOptimizer) throws {
        let serial = try trainTP(deterministic: true, optimizer: optimizer)
        let layouts: [(dp: Int, pp: Int, m: Int, zero: Int)] = [(2, 1, 1, 0), (1, 2, 3, 0), (2, 2, 2, 0), (2, 2, 3, 2), (2, 1, 1, 3)]
        for l in layouts {
            let got = try trainTP(dp: l.dp, pp: l.pp, tp: 2, m: l.m, zero: l.zero, deterministic: true, optimizer: optimizer)
            for k in 0..<got.params.count {
                let d = relativeDifference(got.params[k], serial.params[k])
                #expect(d <= Self.tolerance * Double(k + 1), "dp=\(l.dp) pp=\(l.pp) tp=2 zero=\(l.zero) \(optimizer) step \(k): relative Δ = \(d)")
            }
        }
    }

    /// The classifier split by classes, its loss on the sharded logits:
    /// serial within the same tolerance (the only new reassociation is Σ exp
    /// over the shards), the same hits, alone and in hybrids.
    @Test(arguments: DPOptimizer.allCases)
    func splitClassifierMatchesSerialWithinRounding(optimizer: DPOptimizer) throws {
        let serial = [false: try trainTP(optimizer: optimizer), true: try trainTP(deterministic: true, optimizer: optimizer)]
        let layouts: [(dp: Int, pp: Int, tp: Int, m: Int, zero: Int, deterministic: Bool)] = [
            (1, 1, 2, 1, 0, false), (1, 1, 4, 1, 0, false), (1, 1, 2, 1, 0, true), (1, 1, 4, 1, 0, true), (2, 1, 2, 1, 2, true),
            (1, 2, 2, 3, 0, true), (2, 2, 2, 2, 0, true),
        ]
        for l in layouts {
            let serial = serial[l.deterministic]!
            let got = try trainTP(
                dp: l.dp, pp: l.pp, tp: l.tp, m: l.m, zero: l.zero, deterministic: l.deterministic, splitClassifier: true, optimizer: optimizer)
            for k in 0..<got.params.count {
                let d = relativeDifference(got.params[k], serial.params[k])
                #expect(d <= Self.tolerance * Double(k + 1), "\(l) \(optimizer) step \(k): relative Δ = \(d)")
                #expect(abs(got.losses[k] - serial.losses[k]) <= 1e-4 * max(1, abs(serial.losses[k])))
                #expect(got.correct[k] == serial.correct[k], "\(l) step \(k): \(got.correct[k]) hits vs \(serial.correct[k])")
            }
        }
    }

    /// Class weights and label smoothing on the sharded logits (each rank
    /// weighs its classes; the smoothing sum crosses the shards): serial
    /// within the same tolerance, alone and in a hybrid; and with per-sample
    /// weights on top (each rank weighs its rows of the sharded logits).
    @Test(arguments: [false, true])
    func weightedSmoothedSplitClassifierMatchesSerial(sampleWeights: Bool) throws {
        var options = LossOptions()
        options.classWeights = [0.5, 2, 1, 3]
        options.labelSmoothing = 0.1
        let serial = try trainTP(deterministic: true, optimizer: .adamW, lossOptions: options, sampleWeights: sampleWeights)
        let plain = try trainTP(deterministic: true, optimizer: .adamW, lossOptions: sampleWeights ? options : LossOptions())
        // The options change the training (else this test would prove nothing).
        #expect(relativeDifference(plain.params[5], serial.params[5]) > 1e-3)
        for l in [(dp: 1, pp: 1, tp: 2, m: 1), (dp: 1, pp: 1, tp: 4, m: 1), (dp: 2, pp: 2, tp: 2, m: 2)] {
            let got = try trainTP(
                dp: l.dp, pp: l.pp, tp: l.tp, m: l.m, deterministic: true, splitClassifier: true, optimizer: .adamW, lossOptions: options,
                sampleWeights: sampleWeights)
            for k in 0..<got.params.count {
                let d = relativeDifference(got.params[k], serial.params[k])
                #expect(d <= Self.tolerance * Double(k + 1), "\(l) step \(k): relative Δ = \(d)")
                #expect(abs(got.losses[k] - serial.losses[k]) <= 1e-4 * max(1, abs(serial.losses[k])))
            }
        }
    }

    @Test func splitClassifierIsPlannedAndCounted() throws {
        var s = StrategyConfig()
        s.tp = 2
        s.splitClassifier = true
        s.blasThreads = 1
        let t = try Trainer(model: try tpModel(), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        let plan = t.planDescription
        for part in ["4: column-parallel classifier linear(16→4), 2 classes per rank", "its logits stay sharded"] {
            #expect(plan.contains(part), "\(part) missing from:\n\(plan)")
        }
        // Floats per step at batch 40: both pairs' 40×16 outputs forward,
        // the residual pair's 40×16 input gradient backward (the first
        // pair's input is data), the classifier's 40×16 input gradient, and
        // the loss's row maxima (40·tp·2) and sums (40·2).
        let (x, y) = try tpBatch(40, step: 0)
        try t.step(inputs: x, targets: y)
        let before = t.tensorParallelBytes(rank: 0)
        try t.step(inputs: x, targets: y)
        #expect(t.tensorParallelBytes(rank: 0) - before == 4 * (40 * 16 * 2 + 40 * 16 + 40 * 16 + 40 * 4 + 40 * 2))
    }

    @Test func splitClassifierErrorsNameTheLayerAndNumbers() throws {
        func message(tp: Int, loss: LossKind = .crossEntropy, model: Model) -> String {
            var s = StrategyConfig()
            s.tp = tp
            s.splitClassifier = true
            return parmlError { _ = try Trainer(model: model, loss: loss, optimizer: OptimizerConfig(), strategy: s) }?.message ?? "no error"
        }
        // 4 classes, tp 8: the pairs' 32 divide, the classifier's 4 do not.
        let m = message(tp: 8, model: try tpModel())
        #expect(m.contains("tp=8") && m.contains("4 classes") && m.contains("layer 4"), "\(m)")
        #expect(message(tp: 2, loss: .meanSquaredError, model: try tpModel()).contains("cross-entropy"))
        // Linear(12→32), ReLU, Linear(32→4): the classifier is already a pair's row half.
        let pair = Model()
        try pair.add(try Linear(inFeatures: 12, outFeatures: 32))
        try pair.add(Activation(.relu))
        try pair.add(try Linear(inFeatures: 32, outFeatures: 4))
        try pair.initialize(seed: 1)
        #expect(message(tp: 2, model: pair).contains("row-parallel half"))
        let ending = Model()
        try ending.add(try Linear(inFeatures: 12, outFeatures: 4))
        try ending.add(Activation(.tanh))
        try ending.initialize(seed: 1)
        #expect(message(tp: 2, model: ending).contains("not a linear classifier"))
    }

    /// Two runs of one tp layout are bit for bit equal (reductions in rank order).
    @Test func tensorParallelIsReproducible() throws {
        let a = try trainTP(dp: 2, tp: 2, zero: 1, optimizer: .adamW, steps: 3)
        let b = try trainTP(dp: 2, tp: 2, zero: 1, optimizer: .adamW, steps: 3)
        expectEqualElements(a.params.last!.map(\.bitPattern), b.params.last!.map(\.bitPattern))
    }

    /// Dropout between the halves of a pair draws, on each tp rank, its
    /// window of the serial layer's mask (same layer id, features t·o..<(t+1)·o).
    @Test func dropoutKeepsTheSerialMaskWindow() throws {
        let model = try tpModel()
        let serialDropout = try #require(model.allLayers.compactMap { $0 as? Dropout }.first)
        let rewrite = try TensorParallelRewrite(serial: model, rank: 1, ranks: 2)
        let residual = try #require(rewrite.layers.compactMap { $0 as? Residual }.first)
        let d = try #require(residual.body.layers.compactMap { $0 as? Dropout }.first)
        #expect(d.featureWindow?.start == 16 && d.featureWindow?.rowWidth == 32)
        #expect(d.pinnedLayerID == serialDropout.layerID)
    }

    /// The tolerance is meaningful: other dropout masks (another seed), a
    /// small change to the computation, land far outside it.
    @Test func toleranceSeesOtherMasks() throws {
        let serial = try trainTP(optimizer: .adamW, steps: 3)
        var s = StrategyConfig()
        s.seed = 99
        s.blasThreads = 1
        let m2 = try tpModel()
        let t2 = try Trainer(model: m2, loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: s)
        for k in 0..<3 {
            let (x, y) = try tpBatch(40, step: k)
            try t2.step(inputs: x, targets: y)
        }
        let d = relativeDifference(m2.parameters!.toArray(), serial.params.last!)
        #expect(d > 100 * Self.tolerance, "other masks moved parameters by only \(d)")
    }

    @Test func tpMustDivideTheSplitWidth() throws {
        var s = StrategyConfig()
        s.tp = 3
        let e = parmlError { _ = try Trainer(model: try tpModel(), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s) }
        #expect(e?.message.contains("tp=3") == true && e?.message.contains("32") == true && e?.message.contains("layer 0") == true,
            "\(String(describing: e))")
    }

    @Test func planNamesSplitAndReplicatedLayers() throws {
        var s = StrategyConfig()
        s.tp = 2
        let t = try Trainer(model: try tpModel(), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        let plan = t.planDescription
        for part in ["0: column-parallel linear(12→32)", "2: row-parallel linear(32→16)", "3.0: layer_norm replicated",
            "3.3: dropout on each rank's 16 of 32 features", "4: linear(16→4) replicated"] {
            #expect(plan.contains(part), "\(part) missing from:\n\(plan)")
        }
    }

    /// One causal_self_attention (C 16, H 4, attention dropout 0.1, in
    /// training) rewritten for tp 2 and 4: each rank's head slice, fed the
    /// whole input, gives a partial output; their sum plus the serial c_proj
    /// bias is the serial output, the sum of their input gradients the serial
    /// one, and each slice's parameter gradients are the serial gradients'
    /// entries its ParameterSource runs name. The runs cover the serial arena
    /// exactly once (replicated tensors counted on rank 0) and each rank's
    /// arena exactly once.
    @Test(arguments: [2, 4], [true, false])
    func headSlicesSumToTheSerialAttention(tp: Int, bias: Bool) throws {
        let (b, t, c) = (3, 5, 16)
        let serial = Model()
        try serial.add(try CausalSelfAttention(features: c, heads: 4, bias: bias, dropout: 0.1))
        try serial.initialize(seed: 9)
        let whole = try #require(serial.allLayers.first as? CausalSelfAttention)
        let ctx = PassContext(training: true, step: 3, sampleOffset: 7, seed: 21)
        let x = try Tensor(randomArray(b * t * c, seed: 4), shape: Shape(b, t, c))
        let dy = try Tensor(randomArray(b * t * c, seed: 5), shape: Shape(b, t, c))
        let want = try whole.forward(x, ctx).toArray()
        let wantDx = try #require(try whole.backward(dy, ctx, needInputGradient: true, accumulate: false)).toArray()
        let serialGrad = serial.gradients!.toArray()
        var out = [Float](repeating: 0, count: want.count)
        var dx = [Float](repeating: 0, count: want.count)
        if bias {
            let pb = try serial.parameter(named: "0.c_proj.bias")
            let v = serial.parameters!.toArray()
            for i in out.indices { out[i] = v[pb.offset + i % c] }
        }
        var serialCover = [Int](repeating: 0, count: serial.parameterCount)
        for r in 0..<tp {
            let rewrite = try TensorParallelRewrite(serial: serial, rank: r, ranks: tp)
            #expect(rewrite.notes.first?.contains("split by heads, \(4 / tp) of 4 per rank") == true, "\(rewrite.notes)")
            let m = try rewrite.makeModel(from: serial)
            let slice = try #require(m.allLayers.compactMap { $0 as? CausalSelfAttention }.first)
            #expect(slice.heads == 4 / tp && slice.headOffset == r * 4 / tp && slice.pinnedLayerID == whole.layerID)
            #expect(!slice.parameterSpecs.contains { $0.name == "c_proj.bias" })
            let y = try slice.forward(x, ctx).toArray()
            for i in out.indices { out[i] += y[i] }
            let g = try #require(try slice.backward(dy, ctx, needInputGradient: true, accumulate: false)).toArray()
            for i in dx.indices { dx[i] += g[i] }
            let grad = m.gradients!.toArray()
            var localCover = [Int](repeating: 0, count: m.parameterCount)
            rewrite.forEachRun(in: 0..<m.parameterCount, model: m) { l, _, n in
                for k in l..<(l + n) { localCover[k] += 1 }
            }
            #expect(localCover.allSatisfy { $0 == 1 }, "rank \(r): its arena is not covered once")
            rewrite.forEachRun(in: 0..<m.parameterCount, model: m, replicated: r == 0) { l, s, n in
                for k in s..<(s + n) { serialCover[k] += 1 }
            }
            // The slice's gradients (the replicated bias's is tp_reduce's, not run here).
            var worst = 0.0
            rewrite.forEachRun(in: 0..<m.parameterCount, model: m, replicated: false) { l, s, n in
                worst = max(worst, maxAbsDiff(Array(grad[l..<(l + n)]), Array(serialGrad[s..<(s + n)])))
            }
            #expect(worst <= 1e-5, "rank \(r): parameter gradients differ by \(worst)")
        }
        #expect(serialCover.allSatisfy { $0 == 1 }, "the serial arena is not covered once: \(serialCover)")
        #expect(maxAbsDiff(out, want) <= 1e-5, "forward: \(maxAbsDiff(out, want))")
        #expect(maxAbsDiff(dx, wantDx) <= 1e-5, "input gradient: \(maxAbsDiff(dx, wantDx))")
    }

    @Test func tpMustDivideTheHeads() throws {
        let m = Model()
        try m.add(try Linear(inFeatures: 4, outFeatures: 12))
        try m.add(try CausalSelfAttention(features: 12, heads: 6))
        try m.initialize(seed: 1)
        var s = StrategyConfig()
        s.tp = 4
        let e = parmlError { _ = try Trainer(model: m, loss: .meanSquaredError, optimizer: OptimizerConfig(), strategy: s) }
        #expect(e?.message.contains("layer 1 causal_self_attention(12, 6 heads)") == true && e?.message.contains("tp=4") == true
            && e?.message.contains("6 heads") == true, "\(String(describing: e))")
    }

}
