import Foundation
import ParmlData
import ParmlModel
import ParmlPrivacy
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// DP-SGD in the trainer: per-example clipping against a naive oracle, the
// noise's distribution, the same private model under dp (bit for bit in
// deterministic mode), refusals, Poisson sampling and the ε it reports.

/// 12 → 16 → ReLU → LayerNorm → 16 → GELU → Dropout → 4: every layer kind
/// private training clips, plus dropout (masks keyed per sample).
func privateMLP(seed: UInt64 = 5, dropout: Float = 0.2) throws -> Model {
    let m = Model()
    try m.add(try Linear(inFeatures: 12, outFeatures: 16))
    try m.add(Activation(.relu))
    try m.add(try LayerNorm(features: 16))
    try m.add(try Linear(inFeatures: 16, outFeatures: 16))
    try m.add(Activation(.gelu))
    if dropout > 0 { try m.add(try Dropout(probability: dropout)) }
    try m.add(try Linear(inFeatures: 16, outFeatures: 4))
    try m.initialize(seed: seed)
    return m
}

private func sgd(_ lr: Float, momentum: Float = 0) -> OptimizerConfig {
    var c = OptimizerConfig()
    c.kind = .sgd
    c.learningRate = lr
    c.momentum = momentum
    return c
}

private func strategy(dp: Int = 1, deterministic: Bool = false) -> StrategyConfig {
    var s = StrategyConfig()
    s.dp = dp
    s.deterministic = deterministic
    s.gradientChunk = 8
    s.seed = 11
    s.watchdogSeconds = 20
    return s
}

/// The parameters after `steps` private SGD steps (momentum 0.9) on
/// `batch`'s batches (default: 20 rows of residualMLPBatch).
func trainPrivately(
    _ s: StrategyConfig, _ model: Model, sigma: Double = 1.1, c: Float = 0.5, steps: Int = 4,
    batch: (Int) throws -> (Tensor, Tensor) = { try residualMLPBatch(20, step: $0) }
) throws -> [Float] {
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: sgd(0.1, momentum: 0.9), strategy: s)
    try t.setPrivacy(PrivacyConfig(noiseMultiplier: sigma, maxGradNorm: c))
    for k in 0..<steps {
        let (x, y) = try batch(k)
        try t.step(inputs: x, targets: y)
    }
    return model.parameters!.toArray()
}

struct PrivateTrainingTests {
    /// With σ = 0 and C above every example's norm each clip factor is
    /// exactly 1 and B = N: the private step multiplies nothing and adds
    /// nothing, so it is the ordinary step bit for bit (both divide the
    /// summed gradient by the batch size).
    @Test func noNoiseAndHugeNormIsTheOrdinaryStep() throws {
        let plain = try privateMLP(), priv = try privateMLP()
        let a = try Trainer(model: plain, loss: .crossEntropy, optimizer: sgd(0.1, momentum: 0.9), strategy: strategy())
        let b = try Trainer(model: priv, loss: .crossEntropy, optimizer: sgd(0.1, momentum: 0.9), strategy: strategy())
        try b.setPrivacy(PrivacyConfig(noiseMultiplier: 0, maxGradNorm: 1e30))
        for k in 0..<3 {
            let (x, y) = try residualMLPBatch(10, step: k)
            let ra = try a.step(inputs: x, targets: y), rb = try b.step(inputs: x, targets: y)
            #expect(ra.loss == rb.loss)
        }
        expectSameBits(priv.parameters!.toArray(), plain.parameters!.toArray(), "private step with σ = 0, C = 1e30")
    }

    /// The update of one private SGD step (lr 1, σ = 0, C small enough to
    /// clip most examples) is −(1/N) Σᵢ clip(gᵢ), gᵢ formed by a backward
    /// of example i alone with its own loss (scale 1).
    @Test func clippedSumMatchesPerExampleOracle() throws {
        let n = 9, c: Float = 2.5
        let (x, y) = try residualMLPBatch(n, step: 2)
        let oracleModel = try privateMLP(dropout: 0)
        let before = oracleModel.parameters!.toArray()
        var sum = [Double](repeating: 0, count: before.count)
        var clipped = 0
        var norms: [Double] = []
        let loss = Loss(.crossEntropy)
        let xs = x.toArray(), ys = y.toArray()
        for i in 0..<n {
            let xi = try Tensor(Array(xs[i * 12..<(i + 1) * 12]), shape: Shape(1, 12))
            let yi = try Tensor([ys[i]], shape: Shape(1))
            let out = try oracleModel.forward(xi, PassContext(training: true))
            _ = try loss.compute(output: out, targets: yi, scale: 1, wantGradient: true)
            try oracleModel.backward(loss.gradient, PassContext(training: true), accumulate: false)
            let g = oracleModel.gradients!.toArray()
            let norm = Naive.sumOfSquares(g).squareRoot()
            norms.append(norm)
            let f = norm > Double(c) ? Double(c) / norm : 1
            if f < 1 { clipped += 1 }
            for k in g.indices { sum[k] += f * Double(g[k]) }
        }
        #expect(clipped >= 3 && clipped < n, "\(clipped) of \(n) clipped (norms \(norms)): pick C so that some are and some are not")
        let model = try privateMLP(dropout: 0)
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: sgd(1), strategy: strategy())
        try t.setPrivacy(PrivacyConfig(noiseMultiplier: 0, maxGradNorm: c))
        try t.step(inputs: x, targets: y)
        let after = model.parameters!.toArray()
        let update = zip(before, after).map { Double($0 - $1) }
        let want = sum.map { $0 / Double(n) }
        let scale = want.reduce(0) { max($0, abs($1)) }
        let worst = zip(update, want).reduce(0) { max($0, abs($1.0 - $1.1)) }
        #expect(worst <= 1e-5 * scale, "max |Δ| \(worst) vs max |update| \(scale)")
    }

    /// The noise on each element is N(0, (σC/B)²): the difference between a
    /// step with σ and the same step with σ = 0 (lr 1) over 1,000-odd elements.
    @Test func noiseHasTheStatedDistribution() throws {
        let sigma = 1.5, c: Float = 0.5, n = 8
        func params(_ s: Double) throws -> [Float] {
            let model = Model()
            try model.add(try Linear(inFeatures: 12, outFeatures: 64))
            try model.add(Activation(.relu))
            try model.add(try Linear(inFeatures: 64, outFeatures: 4))
            try model.initialize(seed: 3)
            let t = try Trainer(model: model, loss: .crossEntropy, optimizer: sgd(1), strategy: strategy())
            try t.setPrivacy(PrivacyConfig(noiseMultiplier: s, maxGradNorm: c))
            let (x, y) = try residualMLPBatch(n, step: 0)
            try t.step(inputs: x, targets: y)
            return model.parameters!.toArray()
        }
        let noisy = try params(sigma), clean = try params(0)
        let z = zip(clean, noisy).map { Double($0 - $1) }  // lr 1: the parameters move by −noise
        let mean = z.reduce(0, +) / Double(z.count)
        let std = (z.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(z.count - 1)).squareRoot()
        let want = sigma * Double(c) / Double(n)
        // 1,000-odd draws: the sample std is within ~2.2 % (1 s.e.) of the truth; the mean within 0.03 std.
        #expect(z.count > 1000)
        #expect(abs(std / want - 1) < 0.08, "std \(std), want \(want)")
        #expect(abs(mean) < 0.12 * want, "mean \(mean)")
    }

    /// Deterministic mode: dp 2 and 3 (with ZeRO-1) give serial's private
    /// model bit for bit: the same clip factors per example, the same noise
    /// per parameter element.
    @Test func dataParallelPrivateTrainingIsBitIdenticalToSerial() throws {
        func train(dp: Int, zero: Int, microBatches: Int = 1) throws -> [Float] {
            var s = strategy(dp: dp, deterministic: true)
            s.zeroStage = zero
            s.microBatches = microBatches
            return try trainPrivately(s, try privateMLP())
        }
        let serial = try train(dp: 1, zero: 0)
        for (dp, zero) in [(2, 0), (3, 1), (2, 2)] {
            expectSameBits(try train(dp: dp, zero: zero), serial, "dp \(dp) zero \(zero)")
        }
        expectSameBits(try train(dp: 2, zero: 0, microBatches: 3), serial, "dp 2, 3 micro-batches")
        // A residual block (layer_norm, linear, gelu, dropout inside).
        func residual(dp: Int) throws -> [Float] {
            try trainPrivately(strategy(dp: dp, deterministic: true), try residualMLP(width: 8, seed: 4), sigma: 0.8, c: 0.3, steps: 3)
        }
        expectSameBits(try residual(dp: 2), try residual(dp: 1), "residual MLP, dp 2")
    }

    /// Deterministic mode: pp 2 (GPipe and 1F1B, one micro-batch and
    /// several) and dp 2 × pp 2 give serial's private model bit for bit: the
    /// norm pass carries each example's running sum from the last stage to
    /// the first, adding the layers in serial's order, and the first stage's
    /// totals set the last stage's clip factors.
    @Test func pipelinedPrivateTrainingIsBitIdenticalToSerial() throws {
        func train(dp: Int = 1, pp: Int = 1, microBatches: Int = 1, schedule: PipelineSchedule = .oneForwardOneBackward, zero: Int = 0)
            throws -> [Float]
        {
            var s = strategy(dp: dp, deterministic: true)
            s.pp = pp
            s.microBatches = microBatches
            s.pipelineSchedule = schedule
            s.zeroStage = zero
            return try trainPrivately(s, try privateMLP())
        }
        let serial = try train()
        for schedule in [PipelineSchedule.gpipe, .oneForwardOneBackward] {
            for m in [1, 3] {
                expectSameBits(try train(pp: 2, microBatches: m, schedule: schedule), serial, "pp 2, \(m) micro-batches, \(schedule)")
            }
        }
        expectSameBits(try train(pp: 3, microBatches: 2), serial, "pp 3, 2 micro-batches")
        expectSameBits(try train(dp: 2, pp: 2, microBatches: 2, zero: 1), serial, "dp 2 × pp 2, ZeRO-1")
        // A stage boundary between residual blocks.
        func residual(pp: Int) throws -> [Float] {
            var s = strategy(deterministic: true)
            s.pp = pp
            s.microBatches = 2
            return try trainPrivately(s, try residualMLP(width: 8, seed: 4), sigma: 0.8, c: 0.3, steps: 3)
        }
        expectSameBits(try residual(pp: 2), try residual(pp: 1), "residual MLP, pp 2")
    }

    /// Fast mode (one piece per micro-batch, GEMMs over the whole piece):
    /// pp 2 clips the same examples by the same factors as serial, so the
    /// models agree to rounding.
    @Test func pipelinedPrivateTrainingInFastModeMatchesSerial() throws {
        var s = strategy()
        let serial = try trainPrivately(s, try privateMLP())
        s.pp = 2
        s.microBatches = 2
        let piped = try trainPrivately(s, try privateMLP())
        let worst = zip(piped, serial).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(worst < 1e-5, "max |pp 2 − serial| \(worst)")
    }

    @Test func refusesWhatItCannotTrainPrivately() throws {
        func trainer(_ model: Model, _ s: StrategyConfig = strategy()) throws -> Trainer {
            try Trainer(model: model, loss: .crossEntropy, optimizer: sgd(0.1), strategy: s)
        }
        let t = try trainer(try privateMLP())
        #expect(parmlError { try t.setPrivacy(PrivacyConfig(noiseMultiplier: -1, maxGradNorm: 1)) }?.message.contains("noise_multiplier") == true)
        #expect(parmlError { try t.setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 0)) }?.message.contains("max_grad_norm") == true)
        #expect(parmlError { try t.setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: .nan)) }?.message.contains("max_grad_norm") == true)
        #expect(parmlError { try t.setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1, delta: 1)) }?.message.contains("delta") == true)
        #expect(t.privacy == nil)
        var tp = strategy()
        tp.tp = 2
        tp.splitClassifier = true
        let e = parmlError { try trainer(try residualMLP(width: 8, seed: 1), tp).setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1)) }
        #expect(e?.message.contains("private training with split_classifier") == true, "\(String(describing: e))")
        var interleaved = strategy()
        (interleaved.pp, interleaved.pipelineSchedule, interleaved.virtualStages, interleaved.microBatches) = (2, .interleaved, 2, 2)
        let ei = parmlError { try trainer(try privateMLP(), interleaved).setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1)) }
        #expect(ei?.message.contains("interleaved 1F1B") == true && ei?.message.contains("GPipe or 1F1B") == true, "\(String(describing: ei))")
        let bn = Model()
        try bn.add(try Linear(inFeatures: 12, outFeatures: 4))
        try bn.add(try BatchNorm(channels: 4))
        try bn.initialize(seed: 1)
        let e2 = parmlError { try trainer(bn).setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1)) }
        #expect(e2?.message.contains("batch_norm") == true && e2?.message.contains("layer_norm") == true, "\(String(describing: e2))")
        // Residual blocks of supported layers are supported, embeddings and attention too.
        try trainer(try residualMLP(width: 8, seed: 1)).setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1))
        let emb = Model()
        try emb.add(try Embedding(count: 10, dim: 4, initStd: 0.02))
        try emb.add(try PositionEmbedding(positions: 6, dim: 4, initStd: 0.02))
        try emb.add(try CausalSelfAttention(features: 4, heads: 2))
        try emb.add(try Linear(inFeatures: 4, outFeatures: 3))
        try emb.initialize(seed: 1)
        try trainer(emb).setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1))
    }

    /// fit with Poisson sampling: batch sizes vary around q·n, and the ε it
    /// reports after each epoch is the accountant's for (q, σ, steps).
    @Test func poissonFitReportsTheAccountantsEpsilon() throws {
        let data = try blobs(300, seed: 4)
        let m = Model()
        try m.add(try Linear(inFeatures: 2, outFeatures: 16))
        try m.add(Activation(.tanh))
        try m.add(try Linear(inFeatures: 16, outFeatures: 3))
        try m.initialize(seed: 2)
        let t = try Trainer(model: m, loss: .crossEntropy, optimizer: sgd(0.5, momentum: 0.5), strategy: strategy())
        try t.setPrivacy(PrivacyConfig(noiseMultiplier: 1.0, maxGradNorm: 1.0, delta: 1e-5))
        let batches = try t.poissonBatches(data, epoch: 0, batchSize: 30)
        #expect(batches.count == 10)
        let sizes = batches.map(\.count)
        #expect(Set(sizes).count > 3, "\(sizes)")
        #expect(abs(Double(sizes.reduce(0, +)) / 300 - 1) < 0.25, "\(sizes)")
        var epsilons: [Double] = []
        var options = FitOptions()
        options.epochs = 3
        options.batchSize = 30
        let last = try t.fit(data, options: options) { epsilons.append($0.privacyEpsilon); return true }
        #expect(t.privateSteps == 30)
        for (e, eps) in epsilons.enumerated() {
            let want = try RDPAccountant.epsilon(samplingRate: 0.1, noiseMultiplier: 1.0, steps: 10 * (e + 1), delta: 1e-5)
            #expect(abs(Double(eps) - want) < 1e-4 * want, "epoch \(e + 1): \(eps) vs \(want)")
        }
        #expect(last.trainAccuracy > 0.8, "accuracy \(last.trainAccuracy)")
        // Poisson sampling draws the batches itself: class-balanced sampling is refused, nothing trained.
        options.classSamplingWeights = [1, 1, 2]
        let steps = t.stepCount
        let e = parmlError { try t.fit(data, options: options) }
        #expect(e?.message.contains("class-balanced") == true && t.stepCount == steps, "\(String(describing: e))")
        options.classSamplingWeights = nil
        // A step outside fit counts with q = 1: RDP adds over the two runs.
        let x = try Tensor(Array(data.inputs.toArray()[0..<20]), shape: Shape(10, 2))
        let y = try Tensor(Array(data.targets.toArray()[0..<10]), shape: Shape(10))
        try t.step(inputs: x, targets: y)
        let orders = RDPAccountant.defaultOrders
        let a = RDPAccountant.rdp(samplingRate: 0.1, noiseMultiplier: 1, orders: orders)
        let b = RDPAccountant.rdp(samplingRate: 1, noiseMultiplier: 1, orders: orders)
        let want = RDPAccountant.epsilon(orders: orders, rdp: orders.indices.map { 30 * a[$0] + b[$0] }, delta: 1e-5).epsilon
        #expect(abs(try t.privacySpent(delta: 1e-5) - want) < 1e-9 * want)
        #expect(try t.privacySpent(delta: 1e-5) > Double(epsilons.last!))
    }
}
