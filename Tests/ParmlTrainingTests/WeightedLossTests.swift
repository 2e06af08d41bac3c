import Foundation
import ParmlData
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

// Promise 1 for the weighted losses: class weights (a weighted mean over
// the global batch's targets), label smoothing and binary cross-entropy
// with pos_weight give, in deterministic mode, serial's parameters bit for
// bit under every dp, ZeRO stage, pipeline and micro-batch count.

/// The weighted losses checked: class-weighted cross-entropy with label
/// smoothing, and binary cross-entropy with pos_weight on soft multi-label
/// targets; each with per-sample weights too, and MSE with them.
enum WeightedLoss: String, CaseIterable, Sendable {
    case weightedSmoothedCrossEntropy, binaryWithPositiveWeights
    case sampleWeightedCrossEntropy, sampleWeightedBinary, sampleWeightedMSE

    var kind: LossKind {
        switch self {
        case .weightedSmoothedCrossEntropy, .sampleWeightedCrossEntropy: .crossEntropy
        case .binaryWithPositiveWeights, .sampleWeightedBinary: .binaryCrossEntropy
        case .sampleWeightedMSE: .meanSquaredError
        }
    }

    var options: LossOptions {
        var o = LossOptions()
        switch kind {
        case .crossEntropy:
            o.classWeights = [0.25, 1, 2.5, 0.75]
            o.labelSmoothing = 0.15
        case .binaryCrossEntropy:
            o.positiveWeights = [4, 1, 0.5, 2]
        case .meanSquaredError:
            break
        }
        return o
    }

    /// Step `step`'s batch of `n` rows for `residualMLP` (4 outputs).
    func batch(_ n: Int, step: Int) throws -> (Tensor, Tensor) {
        let (x, y) = try residualMLPBatch(n, step: step)
        guard kind != .crossEntropy else { return (x, y) }
        let u = randomArray(n * 4, seed: 9, stream: UInt64(step), low: 0, high: 1)
        // Hard 0/1 labels with some soft ones (MSE: the soft values).
        let t = kind == .meanSquaredError ? u : u.enumerated().map { i, v in i % 5 == 0 ? v : (v > 0.6 ? 1 : 0) }
        return (x, try Tensor(t, shape: Shape(n, 4)))
    }

    /// Step `step`'s per-sample weights: in [0, 2) with some exact zeros; nil for the first two.
    func sampleWeights(_ n: Int, step: Int) throws -> Tensor? {
        guard self != .weightedSmoothedCrossEntropy, self != .binaryWithPositiveWeights else { return nil }
        let w = randomArray(n, seed: UInt64(step), stream: 7, low: 0, high: 2).enumerated().map { $0 % 7 == 3 ? 0 : $1 }
        return try Tensor(w, shape: Shape(n))
    }
}

/// Parameters and losses after `steps` steps of `residualMLP` (one block)
/// under `s`; `plain`: without the loss options and sample weights.
private func train(_ loss: WeightedLoss, _ s: StrategyConfig, n: Int = 37, steps: Int = 4, plain: Bool = false) throws -> (
    params: [Float], losses: [Float]
) {
    var s = s
    s.gradientChunk = 8
    s.seed = 4
    s.watchdogSeconds = 20
    var o = OptimizerConfig()
    o.kind = .adamW
    o.learningRate = 0.01
    let model = try residualMLP(width: 16, blocks: 2, seed: 8)
    let t = try Trainer(model: model, loss: loss.kind, optimizer: o, strategy: s)
    try t.setLossOptions(plain ? LossOptions() : loss.options)
    var losses: [Float] = []
    for k in 0..<steps {
        let (x, y) = try loss.batch(n, step: k)
        losses.append(try t.step(inputs: x, targets: y, sampleWeights: plain ? nil : try loss.sampleWeights(n, step: k)).loss)
    }
    return (model.parameters!.toArray(), losses)
}

private func strategy(dp: Int = 1, pp: Int = 1, m: Int = 1, zero: Int = 0, deterministic: Bool = true) -> StrategyConfig {
    var s = StrategyConfig()
    s.dp = dp
    s.pp = pp
    s.microBatches = m
    s.zeroStage = zero
    s.deterministic = deterministic
    return s
}

struct WeightedLossTests {
    @Test(arguments: WeightedLoss.allCases)
    func deterministicLayoutsAreBitIdenticalToSerial(_ loss: WeightedLoss) throws {
        let serial = try train(loss, strategy())
        // The options matter: without them training lands elsewhere.
        let plain = try train(loss, strategy(), plain: true)
        #expect(maxAbsDiff(plain.params, serial.params) > 1e-4)
        let layouts: [(dp: Int, pp: Int, m: Int, zero: Int)] = [
            (2, 1, 1, 0), (3, 1, 1, 1), (2, 1, 1, 2), (4, 1, 1, 3), (1, 2, 3, 0), (1, 1, 4, 0), (2, 2, 2, 1),
        ]
        for l in layouts {
            let got = try train(loss, strategy(dp: l.dp, pp: l.pp, m: l.m, zero: l.zero))
            expectSameBits(got.params, serial.params, "\(loss) \(l): max |Δ| = \(maxAbsDiff(got.params, serial.params))")
            // The reported loss sums the ranks' parts: the same within rounding.
            for (g, w) in zip(got.losses, serial.losses) { #expect(abs(g - w) <= 1e-6 * abs(w), "\(loss) \(l): loss \(g) vs \(w)") }
        }
    }

    /// Default (fast) mode with sample weights: dp and micro-batches sum in
    /// other orders, so they match serial within float32 rounding.
    @Test func sampleWeightedFastLayoutsMatchSerialWithinRounding() throws {
        let serial = try train(.sampleWeightedCrossEntropy, strategy(deterministic: false))
        for l in [(dp: 2, m: 1), (dp: 1, m: 3), (dp: 2, m: 2)] {
            let got = try train(.sampleWeightedCrossEntropy, strategy(dp: l.dp, m: l.m, deterministic: false))
            let d = relativeDifference(got.params, serial.params)
            #expect(d <= 1e-5, "\(l): relative Δ = \(d)")
        }
    }

    /// The step's loss is torch's weighted mean: Σ w[y]·lᵢ / Σ w[y] (no
    /// smoothing here, so lᵢ is the per-sample cross-entropy).
    @Test func classWeightedLossIsTheWeightedMean() throws {
        let model = try classifier(seed: 2)
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: StrategyConfig())
        var o = LossOptions()
        o.classWeights = [1, 3, 0.5]
        try t.setLossOptions(o)
        let data = try blobs(30, seed: 5)
        let x = data.inputs, y = data.targets
        let logits = try model.forward(x, PassContext(training: false)).toArray()
        var num = 0.0, den = 0.0
        for i in 0..<30 {
            let row = (0..<3).map { Double(logits[i * 3 + $0]) }, target = Int(y.data[i])
            let w = Double(o.classWeights![target])
            num += w * (log(row.map { exp($0) }.reduce(0, +)) - row[target])
            den += w
        }
        let r = try t.step(inputs: x, targets: y)
        #expect(abs(Double(r.loss) - num / den) <= 1e-6 * num / den, "\(r.loss) vs \(num / den)")
        #expect(r.lossWeight == den)
        // evaluate: the weighted mean over the dataset, whatever the batch size.
        let whole = try t.evaluate(data, batchSize: 30), small = try t.evaluate(data, batchSize: 7)
        #expect(abs(whole.loss - small.loss) <= 1e-6 * whole.loss, "\(whole.loss) vs \(small.loss)")
    }

    @Test func badOptionsAreRefused() throws {
        let t = try Trainer(model: try classifier(seed: 2), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: StrategyConfig())
        var o = LossOptions()
        o.classWeights = [1, -1, 1]
        expectError(parmlError { try t.setLossOptions(o) }, "invalidArgument", mentions: ["class weight 1"])
        o.classWeights = [1, .nan, 1]
        expectError(parmlError { try t.setLossOptions(o) }, "invalidArgument", mentions: ["finite"])
        o = LossOptions()
        o.labelSmoothing = 1.5
        expectError(parmlError { try t.setLossOptions(o) }, "invalidArgument", mentions: ["[0, 1]"])
        o = LossOptions()
        o.positiveWeights = [1, 1, 1]
        expectError(parmlError { try t.setLossOptions(o) }, "invalidArgument", mentions: ["binary cross-entropy only"])
        // Weights for 2 classes on a 3-class model: refused at the step, nothing trained.
        o = LossOptions()
        o.classWeights = [1, 2]
        try t.setLossOptions(o)
        let data = try blobs(6, seed: 1)
        expectError(parmlError { try t.step(inputs: data.inputs, targets: data.targets) }, "shape", mentions: ["2 class weights", "3 classes"])
        #expect(t.stepCount == 0)
        // Every target of weight 0: the weighted mean is undefined.
        o.classWeights = [0, 0, 1]
        try t.setLossOptions(o)
        let y = try Tensor([0, 1, 0, 1, 0, 1], shape: Shape(6))
        expectError(parmlError { try t.step(inputs: data.inputs, targets: y) }, "invalidArgument", mentions: ["weight 0"])
        // Binary targets outside [0, 1].
        let b = try Trainer(model: try classifier(seed: 2), loss: .binaryCrossEntropy, optimizer: OptimizerConfig(), strategy: StrategyConfig())
        let bad = try Tensor([0, 1, 1.5, 0, 0, 0], shape: Shape(2, 3))
        expectError(parmlError { try b.step(inputs: try Tensor(shape: Shape(2, 2)), targets: bad) }, "invalidArgument", mentions: ["element 2", "[0, 1]"])
    }
}

/// Class-balanced sampling in fit: the rare class is drawn about as often
/// as the others, every layout trains on the same draws (deterministic mode:
/// serial's bits), and two fits of one epoch continue as one fit of two.
struct ClassBalancedSamplingTests {
    /// 60 samples, 54 of class 0 and 3 each of classes 1 and 2.
    private func skewedBlobs() throws -> Dataset {
        let d = try blobs(60, seed: 6)
        for i in 0..<60 { d.targets.data[i] = i % 20 == 1 ? 1 : i % 20 == 2 ? 2 : 0 }
        return try Dataset(inputs: d.inputs, targets: d.targets)
    }

    private func fit(_ data: Dataset, dp: Int, epochs: [Int]) throws -> [Float] {
        var s = StrategyConfig()
        s.dp = dp
        s.deterministic = true
        s.gradientChunk = 8
        s.seed = 2
        let m = try classifier(seed: 4)
        let t = try Trainer(model: m, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        var o = FitOptions()
        o.batchSize = 16
        o.classSamplingWeights = [1, 18, 18]
        for e in epochs {
            o.epochs = e
            try t.fit(data, options: o)
        }
        return m.parameters!.toArray()
    }

    @Test func layoutsAndResumesAgree() throws {
        let data = try skewedBlobs()
        let serial = try fit(data, dp: 1, epochs: [2])
        expectSameBits(try fit(data, dp: 2, epochs: [2]), serial, "dp 2")
        expectSameBits(try fit(data, dp: 1, epochs: [1, 1]), serial, "fit 1 + fit 1")
    }

    @Test func theRareClassesAreDrawnAsOftenAsTheCommonOne() throws {
        let data = try skewedBlobs()
        let w = try Trainer.sampleWeights(data, classWeights: [1, 18, 18])
        var b = try Batcher(dataset: data, batchSize: 60, shuffle: true, dropLast: false, seed: 1, sampleWeights: w)
        var perClass = [0, 0, 0]
        for e in 0..<50 {
            b.startEpoch(e)
            for s in b.sampleOrder { perClass[Int(data.targets.data[s])] += 1 }
        }
        // Each class has total weight 54: a third of 3,000 draws each, ± 4.5 sd (about 116).
        for c in 0..<3 { #expect(abs(perClass[c] - 1000) <= 116, "class \(c): \(perClass[c]) of 3000 draws") }
        expectError(
            parmlError { _ = try Trainer.sampleWeights(data, classWeights: [1, 2]) }, "invalidArgument", mentions: ["class 2", "2 class weights"])
    }
}
