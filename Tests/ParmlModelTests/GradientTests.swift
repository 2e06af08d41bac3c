import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// Finite-difference checks of every layer's backward pass: parameter
/// gradients (the model's gradient arena) and the input gradient.
/// Tolerances are explained at `gradientCheck` in Support.swift.
@Suite struct GradientTests {
    let training = PassContext(training: true, step: 3, sampleOffset: 0, seed: 99)

    @Test(arguments: [true, false])
    func linearRank2(_ bias: Bool) throws {
        let model = try makeModel([try Linear(inFeatures: 5, outFeatures: 3, bias: bias)], seed: 2)
        #expect(model.parameterCount == 15 + (bias ? 3 : 0))
        // Linear in both x and W: central differences are exact but for rounding,
        // so a larger step (0.1) shrinks the rounding noise of the quotient.
        try gradientCheck(model: model, input: try randomTensor(Shape(4, 5), seed: 3), ctx: training, eps: 0.1, atol: 1e-4, rtol: 1e-4)
    }

    @Test(arguments: [true, false])
    func linearRank3(_ bias: Bool) throws {
        let model = try makeModel([try Linear(inFeatures: 4, outFeatures: 6, bias: bias)], seed: 4)
        let x = try randomTensor(Shape(2, 3, 4), seed: 5)
        #expect(try model.outputShape(for: x.shape) == Shape(2, 3, 6))
        try gradientCheck(model: model, input: x, ctx: training, eps: 0.1, atol: 1e-4, rtol: 1e-4)
    }

    /// Linear gradients against the closed forms dW = dyᵀx, db = Σ dy, dx = dy·W.
    @Test func linearClosedForm() throws {
        let layer = try Linear(inFeatures: 3, outFeatures: 2)
        let model = try makeModel([layer], seed: 6)
        let x = try randomTensor(Shape(4, 3), seed: 7)
        let w = layer.weight!.toArray(), b = layer.bias!.toArray()
        let y = try model.forward(x, training).toArray()
        let dyv = randomArray(8, seed: 8)
        let dx = try model.root.backward(try Tensor(dyv, shape: Shape(4, 2)), training, needInputGradient: true, accumulate: false)!.toArray()
        let g = model.gradients!.toArray()
        let xv = x.toArray()
        var wantY = [Float](), wantDW = [Float](repeating: 0, count: 6), wantDB = [Float](repeating: 0, count: 2)
        var wantDX = [Float](repeating: 0, count: 12)
        for n in 0..<4 {
            for o in 0..<2 {
                var s = Double(b[o])
                for i in 0..<3 { s += Double(xv[n * 3 + i]) * Double(w[o * 3 + i]) }
                wantY.append(Float(s))
                wantDB[o] += dyv[n * 2 + o]
                for i in 0..<3 {
                    wantDW[o * 3 + i] += dyv[n * 2 + o] * xv[n * 3 + i]
                    wantDX[n * 3 + i] += dyv[n * 2 + o] * w[o * 3 + i]
                }
            }
        }
        #expect(maxAbsDiff(y, wantY) <= 1e-6, "y: max abs diff \(maxAbsDiff(y, wantY))")
        #expect(maxAbsDiff(Array(g[0..<6]), wantDW) <= 1e-6, "dW: max abs diff \(maxAbsDiff(Array(g[0..<6]), wantDW))")
        #expect(maxAbsDiff(Array(g[6..<8]), wantDB) <= 1e-6, "db: max abs diff \(maxAbsDiff(Array(g[6..<8]), wantDB))")
        #expect(maxAbsDiff(dx, wantDX) <= 1e-6, "dx: max abs diff \(maxAbsDiff(dx, wantDX))")
    }

    @Test(arguments: ActivationKind.allCases)
    func activation(_ kind: ActivationKind) throws {
        let model = try makeModel([Activation(kind)])
        var x = randomArray(3 * 7, seed: 9, stream: UInt64(kind.rawValue), low: -3, high: 3)
        // Keep ReLU inputs at least 2·eps from its kink at 0.
        if kind == .relu { x = x.map { $0 >= 0 ? $0 + 0.05 : $0 - 0.05 } }
        try gradientCheck(model: model, input: try Tensor(x, shape: Shape(3, 7)), ctx: training)
    }

    @Test func layerNormWithoutBias() throws {
        let model = try makeModel([try LayerNorm(features: 5, bias: false)], seed: 13)
        #expect(model.parameterCount == 5)
        try gradientCheck(model: model, input: try randomTensor(Shape(3, 5), seed: 14, low: -2, high: 2), ctx: training)
    }

    @Test func layerNorm() throws {
        let model = try makeModel([try LayerNorm(features: 6)], seed: 10)
        // Rank 3 input: normalisation over the last dimension of every (i, j) row.
        let x = try randomTensor(Shape(2, 3, 6), seed: 11, low: -2, high: 2)
        try gradientCheck(model: model, input: x, ctx: training)
    }

    /// LayerNorm's γ/β gradients, by the closed forms dβ = Σ dy and dγ = Σ dy·x̂.
    @Test func layerNormParameterGradientsClosedForm() throws {
        let model = try makeModel([try LayerNorm(features: 4)], seed: 12, randomize: false)
        let xv = randomArray(12, seed: 13, low: -2, high: 2)
        let dyv = randomArray(12, seed: 14)
        _ = try model.forward(try Tensor(xv, shape: Shape(3, 4)), training)
        try model.backward(try Tensor(dyv, shape: Shape(3, 4)), training)
        let g = model.gradients!.toArray()
        var dgamma = [Double](repeating: 0, count: 4), dbeta = [Double](repeating: 0, count: 4)
        for r in 0..<3 {
            let row = xv[(r * 4)..<(r * 4 + 4)].map(Double.init)
            let m = row.reduce(0, +) / 4
            let v = row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 4
            for c in 0..<4 {
                dgamma[c] += Double(dyv[r * 4 + c]) * (row[c] - m) / (v + 1e-5).squareRoot()
                dbeta[c] += Double(dyv[r * 4 + c])
            }
        }
        let want = (dgamma + dbeta).map { Float($0) }
        #expect(maxAbsDiff(g, want) <= 1e-5, "max abs diff \(maxAbsDiff(g, want))")
    }

    @Test func dropoutInTraining() throws {
        // With a fixed seed and step the mask is fixed: y = x·m is linear in x.
        let model = try makeModel([try Dropout(probability: 0.4)])
        try gradientCheck(model: model, input: try randomTensor(Shape(5, 8), seed: 15), ctx: training, eps: 0.1, atol: 1e-5, rtol: 1e-5)
    }

    @Test func dropoutInInference() throws {
        let model = try makeModel([try Dropout(probability: 0.4)])
        try gradientCheck(model: model, input: try randomTensor(Shape(5, 8), seed: 15), ctx: PassContext(training: false), eps: 0.1, atol: 1e-5, rtol: 1e-5)
    }

    @Test func flatten() throws {
        let alone = try makeModel([Flatten()])
        try gradientCheck(model: alone, input: try randomTensor(Shape(2, 3, 4), seed: 16), ctx: training, eps: 0.1, atol: 1e-5, rtol: 1e-5)
        let model = try makeModel([Flatten(), try Linear(inFeatures: 12, outFeatures: 3)], seed: 17)
        let x = try randomTensor(Shape(2, 3, 4), seed: 18)
        #expect(try model.outputShape(for: x.shape) == Shape(2, 3))
        try gradientCheck(model: model, input: x, ctx: training, eps: 0.1, atol: 1e-4, rtol: 1e-4)
    }

    @Test func residual() throws {
        let model = Model()
        try model.add(try Linear(inFeatures: 4, outFeatures: 5))
        try model.beginResidual()
        try model.add(try Linear(inFeatures: 5, outFeatures: 5))
        try model.add(Activation(.tanh))
        try model.endResidual()
        try BLAS.ensureLoaded()
        try model.initialize(seed: 19)
        let x = try randomTensor(Shape(3, 4), seed: 20)
        try gradientCheck(model: model, input: x, ctx: training)
        // A residual as the very first layer: its input gradient is the model's.
        let first = Model()
        try first.beginResidual()
        try first.add(try Linear(inFeatures: 4, outFeatures: 4))
        try first.add(Activation(.tanh))
        try first.endResidual()
        try first.initialize(seed: 21)
        try gradientCheck(model: first, input: x, ctx: training)
    }

    @Test func nestedResiduals() throws {
        let model = Model()
        try model.beginResidual()
        try model.add(try LayerNorm(features: 4))
        try model.beginResidual()
        try model.add(try Linear(inFeatures: 4, outFeatures: 4))
        try model.add(Activation(.gelu))
        try model.endResidual()
        try model.add(try Linear(inFeatures: 4, outFeatures: 4))
        try model.endResidual()
        try BLAS.ensureLoaded()
        try model.initialize(seed: 22)
        try gradientCheck(model: model, input: try randomTensor(Shape(3, 4), seed: 23), ctx: training)
    }

    /// A model like the ones users build, every layer kind in it.
    private func smallModel(outputs: Int) throws -> Model {
        try makeModel(
            [
                Flatten(),
                try Linear(inFeatures: 6, outFeatures: 8), Activation(.gelu),
                try LayerNorm(features: 8),
                Residual(Sequential([try Linear(inFeatures: 8, outFeatures: 8), Activation(.tanh)])),
                try Dropout(probability: 0.25),
                try Linear(inFeatures: 8, outFeatures: 5), Activation(.sigmoid), Activation(.relu),
                try Linear(inFeatures: 5, outFeatures: outputs, bias: false),
            ], seed: 24, randomize: false)
    }

    /// The losses `wholeModel` checks: plain cross-entropy and MSE, and the
    /// weighted forms (class weights with label smoothing; binary
    /// cross-entropy with pos_weight).
    enum CheckedLoss: String, CaseIterable, CustomTestStringConvertible {
        case crossEntropy, meanSquaredError, weightedSmoothedCrossEntropy, binaryWithPositiveWeights
        var testDescription: String { rawValue }
        var kind: LossKind {
            switch self {
            case .crossEntropy, .weightedSmoothedCrossEntropy: .crossEntropy
            case .meanSquaredError: .meanSquaredError
            case .binaryWithPositiveWeights: .binaryCrossEntropy
            }
        }
    }

    /// Whole model, real losses: gradients of the mean cross-entropy (plain,
    /// and class-weighted with label smoothing), of the mean squared error
    /// and of binary cross-entropy with pos_weight, with the loss recomputed
    /// in Double for the finite differences (Naive.softmaxCrossEntropy and
    /// the torch formulas written out).
    @Test(arguments: CheckedLoss.allCases)
    func wholeModel(_ checked: CheckedLoss) throws {
        let kind = checked.kind
        let classes = 3
        let model = try smallModel(outputs: classes)
        let n = 4
        let x = try randomTensor(Shape(n, 2, 3), seed: 25, low: -2, high: 2)
        let targets: Tensor
        if kind == .crossEntropy {
            targets = try Tensor([0, 2, 1, 2], shape: Shape(n))
        } else if kind == .binaryCrossEntropy {
            targets = try Tensor([1, 0, 0.25, 0, 1, 1, 0.5, 0, 1, 0.75, 0, 0], shape: Shape(n, classes))
        } else {
            targets = try randomTensor(Shape(n, classes), seed: 26)
        }
        let loss = Loss(kind)
        var options = LossOptions()
        let classWeights: [Double] = [0.5, 2, 1.25], positiveWeights: [Double] = [3, 0.5, 1]
        let smoothing = 0.2
        if checked == .weightedSmoothedCrossEntropy {
            options.classWeights = classWeights.map { Float($0) }
            options.labelSmoothing = Float(smoothing)
        }
        if checked == .binaryWithPositiveWeights { options.positiveWeights = positiveWeights.map { Float($0) } }
        try loss.setOptions(options)
        let outShape = try model.outputShape(for: x.shape)
        try loss.validate(output: outShape, targets: targets)
        let y = try model.forward(x, training)
        let scale = checked == .weightedSmoothedCrossEntropy
            ? 1 / (try loss.targetWeight(targets, classes: classes)) : loss.meanScale(samples: n, output: outShape)
        let computed = try loss.compute(output: y, targets: targets, scale: scale, wantGradient: true)
        guard let dx = try model.root.backward(loss.gradient, training, needInputGradient: true, accumulate: false) else {
            Issue.record("no input gradient")
            return
        }
        let inputGrad = dx.toArray()
        let paramGrad = model.gradients!.toArray()
        let t = targets.toArray()

        func doubleLoss() throws -> Double {
            let out = try model.forward(x, training).toArray()
            switch checked {
            case .crossEntropy:
                return Naive.softmaxCrossEntropy(logits: out, targets: t.map { Int($0) }, rows: n, cols: classes).loss
            case .meanSquaredError:
                return zip(out, t).reduce(0.0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) } / Double(out.count)
            case .weightedSmoothedCrossEntropy:
                // torch: ((1−ε)·Σ w[y]·nll + ε/C·Σ_i Σ_c w[c]·(−log p_c)) / Σ w[y].
                var total = 0.0, weight = 0.0
                for i in 0..<n {
                    let z = (0..<classes).map { Double(out[i * classes + $0]) }
                    let lse = log(z.map { exp($0) }.reduce(0, +))
                    let yi = Int(t[i])
                    total += (1 - smoothing) * classWeights[yi] * (lse - z[yi])
                    total += smoothing / Double(classes) * (0..<classes).reduce(0.0) { $0 + classWeights[$1] * (lse - z[$1]) }
                    weight += classWeights[yi]
                }
                return total / weight
            case .binaryWithPositiveWeights:
                // torch: −(p·y·log σ(x) + (1−y)·log(1−σ(x))), mean over elements.
                var total = 0.0
                for i in 0..<out.count {
                    let xi = Double(out[i]), yi = Double(t[i]), sig = 1 / (1 + exp(-xi))
                    total -= positiveWeights[i % classes] * yi * log(sig) + (1 - yi) * log(1 - sig)
                }
                return total / Double(out.count)
            }
        }
        let reference = try doubleLoss()
        #expect(abs(Double(computed.loss) - reference) <= 1e-6 * max(1, reference), "loss \(computed.loss) vs \(reference)")

        // The loss is a mean (scale 1/4 or 1/12), so gradients are ~0.1 and the
        // float noise of the quotient is ~10x smaller than for Σ r·y: 1e-4
        // absolute + 1e-3 relative at h = 1e-2 (truncation ≲ 1e-5). Measured
        // worst: 3.4e-5 absolute (MSE) and 1.4e-5 (cross-entropy).
        var params = GradCheckResult(), inputs = GradCheckResult()
        let p = model.parameters!
        for j in 0..<p.count {
            params.add(index: j, analytic: Double(paramGrad[j]), numeric: try centralDifference(p.data, j, eps: 1e-2, doubleLoss), atol: 1e-4, rtol: 1e-3)
        }
        for j in 0..<x.count {
            inputs.add(index: j, analytic: Double(inputGrad[j]), numeric: try centralDifference(x.data, j, eps: 1e-2, doubleLoss), atol: 1e-4, rtol: 1e-3)
        }
        #expect(params.worstRatio <= 1, "\(checked) parameter gradient: \(params)")
        #expect(inputs.worstRatio <= 1, "\(checked) input gradient: \(inputs)")
        #expect(params.checked == model.parameterCount && params.checked == 6 * 8 + 8 + 16 + 72 + 45 + 5 * classes)
        // Gradients are not trivially zero.
        #expect(paramGrad.contains { abs($0) > 1e-3 })
    }

    /// `accumulate: true` adds to the gradient arena; `false` overwrites it.
    @Test func accumulateAddsToExistingGradients() throws {
        let model = try smallModel(outputs: 3)
        let x = try randomTensor(Shape(4, 2, 3), seed: 27)
        let y = try model.forward(x, training)
        let dy = try Tensor(randomArray(y.count, seed: 28), shape: y.shape)
        try model.backward(dy, training, accumulate: false)
        let once = model.gradients!.toArray()
        #expect(once.contains { $0 != 0 })
        try model.backward(dy, training, accumulate: true)
        let twice = model.gradients!.toArray()
        let doubled = once.map { 2 * $0 }
        // a + a = 2a exactly in float; sgemm with beta = 1 adds its product to C.
        #expect(maxAbsDiff(twice, doubled) <= 1e-6, "max abs diff \(maxAbsDiff(twice, doubled))")
        try model.backward(dy, training, accumulate: false)
        let again = model.gradients!.toArray()
        expectEqualElements(again, once, "accumulate: false must overwrite: max abs diff \(maxAbsDiff(again, once))")
        // Stale garbage in the arena is overwritten too.
        model.gradients!.fill(.nan)
        try model.backward(dy, training, accumulate: false)
        expectEqualElements(model.gradients!.toArray(), once)
    }

    /// With ctx.gradientDecay = μ (the trainer's folded SGD momentum), a
    /// non-accumulating backward writes μ·old + new into every parameter
    /// gradient (Linear weight via the GEMM's beta, bias via sumRows,
    /// LayerNorm γ/β via a scale); accumulating ignores μ and adds.
    @Test func gradientDecayFoldsIntoEveryParameter() throws {
        let model = try smallModel(outputs: 3)
        let x = try randomTensor(Shape(4, 2, 3), seed: 29)
        let y = try model.forward(x, training)
        let dy = try Tensor(randomArray(y.count, seed: 30), shape: y.shape)
        try model.backward(dy, training)
        let fresh = model.gradients!.toArray()
        let old = randomArray(fresh.count, seed: 31, low: -5, high: 5)
        old.withUnsafeBufferPointer { p in
            model.gradients!.data.update(from: p.baseAddress!, count: fresh.count)
        }
        var decayed = training
        decayed.gradientDecay = 0.9
        #expect(decayed.gradientBeta(accumulate: false) == 0.9 && decayed.gradientBeta(accumulate: true) == 1)
        try model.backward(dy, decayed, accumulate: false)
        let got = model.gradients!.toArray()
        let want = zip(old, fresh).map { 0.9 * $0 + $1 }
        // One rounding of μ·old and one of the sum: ≤ 2 ulps of |old| ≤ 5.
        #expect(maxAbsDiff(got, want) <= 2e-6, "max abs diff \(maxAbsDiff(got, want))")
        // Every parameter tensor took part (none was overwritten instead).
        for info in model.parameterInfo {
            let r = info.offset..<(info.offset + info.count)
            let d = maxAbsDiff(Array(got[r]), Array(fresh[r]))
            #expect(d > 1e-3, "\(info.name) ignores gradientDecay")
        }
        try model.backward(dy, decayed, accumulate: true)
        let added = model.gradients!.toArray()
        let wantAdded = zip(got, fresh).map { $0 + $1 }
        #expect(maxAbsDiff(added, wantAdded) <= 2e-6, "accumulate with decay set: max abs diff \(maxAbsDiff(added, wantAdded))")
    }
}
