import Foundation
import ParmlData
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

// Per-sample loss weights: the loss is Σ wᵢ·lᵢ / Σ wᵢ over the global batch,
// wᵢ = sample weight × class weight of the target (a sequence's positions
// each weigh their sample's weight). Checked against naive references,
// against training on duplicated rows (an integer weight k is the sample
// k times), and through fit, evaluate and splits. The layouts (deterministic
// mode: serial's bits) are WeightedLossTests' sample-weighted cases.

/// Weights in [0, 2) with some exact zeros.
private func weights(_ n: Int, seed: UInt64 = 3) -> [Float] {
    randomArray(n, seed: seed, stream: 7, low: 0, high: 2).enumerated().map { $0 % 7 == 3 ? 0 : $1 }
}

private func logSumExp(_ row: ArraySlice<Double>) -> Double {
    let m = row.max()!
    return m + log(row.map { exp($0 - m) }.reduce(0, +))
}

struct SampleWeightLossTests {
    /// Loss.compute with sample weights against a naive float64 reference
    /// (loss and gradient): cross-entropy (N, C) with class weights and
    /// smoothing, sequence cross-entropy (N, T, C), MSE and binary
    /// cross-entropy with pos_weight.
    @Test(arguments: ["ce", "sequence", "mse", "bce"])
    func lossAndGradientMatchTheNaiveWeightedMean(_ which: String) throws {
        let n = 6, t = which == "sequence" ? 3 : 1, c = 4
        let shape = which == "sequence" ? Shape(n, t, c) : Shape(n, c)
        let z = randomArray(n * t * c, seed: 11, low: -3, high: 3)
        let s = weights(n)
        var o = LossOptions()
        let kind: LossKind
        var targets: [Float]
        switch which {
        case "mse":
            kind = .meanSquaredError
            targets = randomArray(n * c, seed: 12)
        case "bce":
            kind = .binaryCrossEntropy
            o.positiveWeights = [2, 1, 0.5, 3]
            targets = randomArray(n * c, seed: 12, low: 0, high: 1)
        default:
            kind = .crossEntropy
            o.classWeights = [0.5, 1, 2, 1.5]
            o.labelSmoothing = which == "ce" ? 0.1 : 0
            targets = (0..<(n * t)).map { Float(($0 * 7 + 1) % c) }
        }
        let loss = Loss(kind)
        try loss.setOptions(o)
        let out = try Tensor(z, shape: shape)
        let y = try Tensor(targets, shape: kind == .crossEntropy ? (t > 1 ? Shape(n, t) : Shape(n)) : Shape(n, c))
        try loss.validate(output: shape, targets: y)
        // The denominator Loss reports, and the reference's.
        var d = [Float](repeating: 0, count: n)
        try s.withUnsafeBufferPointer { sp in try d.withUnsafeMutableBufferPointer {
            try loss.sampleDenominators(targets: y, weights: sp.baseAddress!, output: shape, into: $0.baseAddress!)
        } }
        var num = 0.0, den = 0.0
        var grad = [Double](repeating: 0, count: z.count)
        for i in 0..<n {
            let si = Double(s[i])
            var rowDen = 0.0
            for p in 0..<(kind == .crossEntropy ? t : c) {
                if kind == .crossEntropy {
                    let base = (i * t + p) * c, row = z[base..<(base + c)].map(Double.init)
                    let k = Int(targets[i * t + p]), w = o.classWeights!.map(Double.init), eps = Double(o.labelSmoothing)
                    let lse = logSumExp(row[...])
                    // torch: (1−ε)·w[k]·(lse − z_k) + ε/C·Σ_j w[j]·(lse − z_j)
                    var l = (1 - eps) * w[k] * (lse - row[k])
                    for j in 0..<c { l += eps / Double(c) * w[j] * (lse - row[j]) }
                    num += si * l
                    rowDen += w[k]
                    let sumW = w.reduce(0, +)
                    for j in 0..<c {
                        let pj = exp(row[j] - lse)
                        grad[base + j] = si * (((1 - eps) * w[k] + eps / Double(c) * sumW) * pj - eps / Double(c) * w[j] - (j == k ? (1 - eps) * w[k] : 0))
                    }
                } else {
                    let e = i * c + p, x = Double(z[e]), yv = Double(targets[e])
                    if kind == .meanSquaredError {
                        num += si * (x - yv) * (x - yv)
                        grad[e] = si * 2 * (x - yv)
                    } else {
                        let pw = Double(o.positiveWeights![p]), sig = 1 / (1 + exp(-x))
                        num += si * -(pw * yv * log(sig) + (1 - yv) * log(1 - sig))
                        grad[e] = si * (sig * (pw * yv + 1 - yv) - pw * yv)
                    }
                    rowDen += 1
                }
            }
            #expect(abs(Double(d[i]) - si * rowDen) <= 1e-6 * max(1, si * rowDen), "\(which) denominator \(i): \(d[i]) vs \(si * rowDen)")
            den += si * rowDen
        }
        let got = try s.withUnsafeBufferPointer {
            try loss.compute(output: out, targets: y, scale: Float(1 / den), sampleWeights: $0.baseAddress!, wantGradient: true)
        }
        #expect(abs(Double(got.loss) - num / den) <= 2e-6 * num / den, "\(which): \(got.loss) vs \(num / den)")
        let g = loss.gradient.toArray()
        for e in 0..<z.count {
            #expect(abs(Double(g[e]) - grad[e] / den) <= 1e-6, "\(which) gradient \(e): \(g[e]) vs \(grad[e] / den)")
        }
    }
}

struct SampleWeightTrainingTests {
    /// An integer weight k trains as the sample repeated k times (0: left
    /// out): one SGD step on the weighted batch equals one on the batch of
    /// repeated rows, within rounding. This checks the gradient through the
    /// whole model, class weights included.
    @Test func integerWeightsTrainAsRepeatedSamples() throws {
        let data = try blobs(12, seed: 5)
        let k: [Int] = [2, 0, 1, 3, 1, 0, 1, 2, 1, 1, 4, 1]
        var xs: [Float] = [], ys: [Float] = []
        let x = data.inputs.toArray(), y = data.targets.toArray()
        for i in 0..<12 { for _ in 0..<k[i] { xs += x[(2 * i)..<(2 * i + 2)]; ys.append(y[i]) } }
        var o = OptimizerConfig()
        o.learningRate = 0.5
        var lo = LossOptions()
        lo.classWeights = [1, 3, 0.5]
        func run(_ body: (Trainer) throws -> Float) throws -> ([Float], Float) {
            let m = try classifier(seed: 2)
            let t = try Trainer(model: m, loss: .crossEntropy, optimizer: o, strategy: StrategyConfig())
            try t.setLossOptions(lo)
            let l = try body(t)
            return (m.parameters!.toArray(), l)
        }
        let weighted = try run {
            try $0.step(inputs: data.inputs, targets: data.targets, sampleWeights: try Tensor(k.map(Float.init), shape: Shape(12))).loss
        }
        let repeated = try run { try $0.step(inputs: try Tensor(xs, shape: Shape(ys.count, 2)), targets: try Tensor(ys, shape: Shape(ys.count))).loss }
        #expect(abs(weighted.1 - repeated.1) <= 1e-6 * repeated.1, "loss \(weighted.1) vs \(repeated.1)")
        let d = relativeDifference(weighted.0, repeated.0)
        #expect(d <= 1e-6, "relative Δ = \(d)")
        let plain = try run { try $0.step(inputs: data.inputs, targets: data.targets).loss }
        #expect(relativeDifference(plain.0, repeated.0) > 1e-3)
    }

    /// fit takes the dataset's weights, and they follow their samples
    /// through the shuffle and the class-balanced sampler: fit equals a
    /// loop of steps on the batcher's batches with `fillWeights`' weights,
    /// bit for bit, and dp = 2 (deterministic) equals serial.
    @Test(arguments: [false, true])
    func fitWeighsTheSamplesItDraws(classSampling: Bool) throws {
        let base = try blobs(45, seed: 7)
        let data = try base.withSampleWeights(weights(45))
        func trainer(dp: Int) throws -> (Trainer, Model) {
            var s = StrategyConfig()
            s.dp = dp
            s.deterministic = true
            s.gradientChunk = 8
            s.seed = 9
            let m = try classifier(seed: 3)
            return (try Trainer(model: m, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s), m)
        }
        var opts = FitOptions()
        opts.epochs = 2
        opts.batchSize = 16
        if classSampling { opts.classSamplingWeights = [1, 2, 3] }
        let (t, m) = try trainer(dp: 1)
        let fitted = try t.fit(data, options: opts)
        // The same steps by hand.
        let (u, mu) = try trainer(dp: 1)
        var b = try Batcher(
            dataset: data, batchSize: 16, shuffle: true, dropLast: false, seed: 9,
            sampleWeights: try opts.classSamplingWeights.map { try Trainer.sampleWeights(data, classWeights: $0) }, augment: true)
        let x = try Tensor(shape: Shape(0)), y = try Tensor(shape: Shape(0)), w = try Tensor(shape: Shape(0))
        var total = 0.0, weight = 0.0
        for e in 0..<2 {
            b.startEpoch(e)
            total = 0
            weight = 0
            for k in 0..<b.batchCount {
                let n = try b.fill(batch: k, inputs: x, targets: y)
                #expect(try b.fillWeights(batch: k, rows: 0..<n, weights: w))
                // Each row's weight is its sample's (inputs identify the sample).
                for r in 0..<n {
                    let sample = b.sampleOrder[k * 16 + r]
                    #expect(w.data[r] == data.sampleWeights![sample] && x.data[2 * r] == data.inputs.data[2 * sample])
                }
                let r = try u.step(inputs: x, targets: y, sampleWeights: w, zeroWeightsAllowed: true)
                total += Double(r.loss) * r.lossWeight
                weight += r.lossWeight
            }
        }
        expectSameBits(mu.parameters!.toArray(), m.parameters!.toArray(), "fit vs steps (class sampling \(classSampling))")
        #expect(fitted.trainLoss == Float(total / weight))
        let (t2, m2) = try trainer(dp: 2)
        try t2.fit(data, options: opts)
        expectSameBits(m2.parameters!.toArray(), m.parameters!.toArray(), "dp 2 vs serial")
        // Unweighted fit lands elsewhere.
        let (t3, m3) = try trainer(dp: 1)
        try t3.fit(base, options: opts)
        #expect(maxAbsDiff(m3.parameters!.toArray(), m.parameters!.toArray()) > 1e-4)
    }

    /// In fit a batch whose weights are all 0 adds nothing: with plain SGD
    /// (no momentum, no decay) fitting a dataset whose first batch weighs 0
    /// equals fitting the dataset without those rows, bit for bit.
    @Test func aBatchOfWeightZeroAddsNothingInFit() throws {
        let data = try blobs(30, seed: 4)
        let weighted = try data.withSampleWeights((0..<30).map { $0 < 8 ? 0 : 1 })
        let rest = try data.subset(Array(8..<30))
        var o = FitOptions()
        o.batchSize = 8
        o.shuffle = false
        func fit(_ d: Dataset) throws -> ([Float], Float) {
            let m = try classifier(seed: 6)
            let t = try Trainer(model: m, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: StrategyConfig())
            let r = try t.fit(d, options: o)
            return (m.parameters!.toArray(), r.trainLoss)
        }
        let (a, la) = try fit(weighted), (b, lb) = try fit(rest)
        expectSameBits(a, b, "a zero-weight batch changed the parameters")
        #expect(abs(la - lb) <= 1e-6 * lb, "epoch loss \(la) vs \(lb)")
    }

    /// evaluate's loss is Σ wᵢ·lᵢ / Σ wᵢ over the whole dataset, whatever the batch size.
    @Test func evaluateIsTheWeightedMean() throws {
        let model = try classifier(seed: 2)
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: StrategyConfig())
        let base = try blobs(30, seed: 5)
        let w = weights(30)
        let data = try base.withSampleWeights(w)
        let logits = try model.forward(base.inputs, PassContext(training: false)).toArray()
        var num = 0.0, den = 0.0
        for i in 0..<30 {
            let row = (0..<3).map { Double(logits[i * 3 + $0]) }, target = Int(base.targets.data[i])
            num += Double(w[i]) * (logSumExp(row[...]) - row[target])
            den += Double(w[i])
        }
        for size in [30, 7, 4] {
            let r = try t.evaluate(data, batchSize: size)
            #expect(abs(Double(r.loss) - num / den) <= 1e-6 * num / den, "batch \(size): \(r.loss) vs \(num / den)")
        }
        let plain = try t.evaluate(base, batchSize: 30)
        #expect(abs(Double(plain.loss) - num / den) > 1e-4)
    }

    /// A split keeps each sample's weight with it.
    @Test func splitsCarryTheWeights() throws {
        let base = try blobs(40, seed: 8)
        let w = (0..<40).map { Float($0) + 1 }
        let data = try base.withSampleWeights(w)
        let (train, validation) = try data.split(validationFraction: 0.25, seed: 3, stratified: true)
        for part in [train, validation] {
            for i in 0..<part.count {
                // Find the sample by its inputs: its weight came along.
                let j = (0..<40).first { base.inputs.data[2 * $0] == part.inputs.data[2 * i] && base.inputs.data[2 * $0 + 1] == part.inputs.data[2 * i + 1] }!
                #expect(part.sampleWeights![i] == w[j])
            }
        }
        #expect(train.count + validation.count == 40)
    }

    @Test func badWeightsAreRefused() throws {
        let data = try blobs(6, seed: 1)
        expectError(parmlError { _ = try data.withSampleWeights([1, 1, 1]) }, "invalidArgument", mentions: ["3 weights for 6 samples"])
        expectError(parmlError { _ = try data.withSampleWeights([1, 1, -1, 1, 1, 1]) }, "invalidArgument", mentions: ["weight 2", ">= 0"])
        expectError(parmlError { _ = try data.withSampleWeights([1, .nan, 1, 1, 1, 1]) }, "invalidArgument", mentions: ["weight 1", "finite"])
        expectError(parmlError { _ = try data.withSampleWeights([0, 0, 0, 0, 0, 0]) }, "invalidArgument", mentions: ["every weight is 0"])
        let t = try Trainer(model: try classifier(seed: 2), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: StrategyConfig())
        let x = data.inputs, y = data.targets
        expectError(parmlError { try t.step(inputs: x, targets: y, sampleWeights: try Tensor([1, 1], shape: Shape(2))) }, "shape", mentions: ["(6)"])
        expectError(
            parmlError { try t.step(inputs: x, targets: y, sampleWeights: try Tensor([1, 1, .infinity, 1, 1, 1], shape: Shape(6))) },
            "invalidArgument", mentions: ["row 2", "finite"])
        expectError(
            parmlError { try t.step(inputs: x, targets: y, sampleWeights: try Tensor(shape: Shape(6))) }, "invalidArgument",
            mentions: ["weight 0", "undefined"])
        #expect(t.stepCount == 0)
        // DP-SGD clips each example's gradient, which would undo its weight.
        try t.setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1, sampling: .shuffled))
        var o = FitOptions()
        o.batchSize = 3
        expectError(parmlError { try t.fit(try data.withSampleWeights([1, 2, 1, 1, 1, 1]), options: o) }, "invalidArgument", mentions: ["DP-SGD"])
        #expect(t.stepCount == 0)
    }
}
