import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

@Suite struct LossTests {
    @Test(arguments: [2, 3, 10, 1000])
    func crossEntropyOfUniformLogitsIsLogC(_ classes: Int) throws {
        let loss = Loss(.crossEntropy)
        let n = 4
        let logits = try Tensor(shape: Shape(n, classes))  // all zero: softmax is uniform
        let targets = try Tensor((0..<n).map { Float($0 % classes) }, shape: Shape(n))
        try loss.validate(output: logits.shape, targets: targets)
        let scale = loss.meanScale(samples: n, output: logits.shape)
        #expect(scale == 0.25)
        let r = try loss.compute(output: logits, targets: targets, scale: scale, wantGradient: true)
        #expect(abs(Double(r.loss) - log(Double(classes))) <= 1e-6 * log(Double(classes)), "loss \(r.loss), log C = \(log(Double(classes)))")
        // d/dlogit = (1/C − onehot)/N.
        let g = loss.gradient.toArray()
        var want = [Float](repeating: Float(1 / Double(classes) / Double(n)), count: n * classes)
        for i in 0..<n { want[i * classes + i % classes] -= 0.25 }
        #expect(loss.gradient.shape == logits.shape)
        #expect(maxAbsDiff(g, want) <= 1e-7, "gradient max abs diff \(maxAbsDiff(g, want))")
        // All logits tie: arg-max is class 0, so only targets equal to 0 count.
        #expect(r.correct == (0..<n).filter { $0 % classes == 0 }.count)
    }

    @Test func crossEntropyKnownValue() throws {
        let loss = Loss(.crossEntropy)
        let logits = try Tensor([2, 0, 0, 0, 0, 3], shape: Shape(2, 3))
        let targets = try Tensor([0, 1], shape: Shape(2))
        let r = try loss.compute(output: logits, targets: targets, scale: 0.5, wantGradient: false)
        // Row 0: log(e² + 2) − 2; row 1: log(2 + e³) − 0.
        let want = (log(exp(2.0) + 2) - 2 + log(2 + exp(3.0))) / 2
        #expect(abs(Double(r.loss) - want) <= 1e-6, "loss \(r.loss) vs \(want)")
        #expect(r.correct == 1)
    }

    @Test func crossEntropyValidation() throws {
        let loss = Loss(.crossEntropy)
        let out = Shape(3, 4)
        try loss.validate(output: out, targets: try Tensor([0, 3, 2], shape: Shape(3)))
        for bad: Float in [1.5, -1, 4, 100, .nan, .infinity, -0.5] {
            let e = parmlError { try loss.validate(output: out, targets: try Tensor([0, bad, 1], shape: Shape(3))) }
            expectError(e, "invalidArgument", mentions: ["sample 1", "[0, 4)"])
        }
        expectError(parmlError { try loss.validate(output: out, targets: try Tensor([0, 1], shape: Shape(2))) }, "shape", mentions: ["3"])
        expectError(parmlError { try loss.validate(output: out, targets: try Tensor([0, 1, 2, 3], shape: Shape(4))) }, "shape")
        expectError(parmlError { try loss.validate(output: out, targets: try Tensor(shape: Shape(3, 2))) }, "shape")
        expectError(parmlError { try loss.validate(output: Shape(3, 2, 2), targets: try Tensor(shape: Shape(3))) }, "shape")
    }

    @Test func meanSquaredErrorKnownValue() throws {
        let loss = Loss(.meanSquaredError)
        let out = try Tensor([1, 2, 3, 4], shape: Shape(2, 2))
        let targets = try Tensor([0, 2, 5, 4], shape: Shape(2, 2))
        try loss.validate(output: out.shape, targets: targets)
        let scale = loss.meanScale(samples: 2, output: out.shape)
        #expect(scale == 0.25)  // mean over all 4 elements, as torch.nn.MSELoss
        let r = try loss.compute(output: out, targets: targets, scale: scale, wantGradient: true)
        // (1 + 0 + 4 + 0)/4
        #expect(abs(r.loss - 1.25) <= 1e-7, "loss \(r.loss)")
        #expect(r.correct == 0)
        // 2(p − t)/4
        let want: [Float] = [0.5, 0, -1, 0]
        #expect(maxAbsDiff(loss.gradient.toArray(), want) <= 1e-7, "gradient max abs diff \(maxAbsDiff(loss.gradient.toArray(), want))")
    }

    @Test func meanSquaredErrorValidation() throws {
        let loss = Loss(.meanSquaredError)
        let out = Shape(2, 3)
        try loss.validate(output: out, targets: try Tensor(shape: Shape(2, 3)))
        expectError(parmlError { try loss.validate(output: out, targets: try Tensor(shape: Shape(2, 2))) }, "shape")
        expectError(parmlError { try loss.validate(output: out, targets: try Tensor(shape: Shape(3, 2))) }, "shape")
        expectError(parmlError { try loss.validate(output: out, targets: try Tensor([0, 1, .nan, 0, 0, 0], shape: Shape(2, 3))) }, "invalidArgument", mentions: ["2"])
        expectError(parmlError { try loss.validate(output: out, targets: try Tensor([0, 1, 0, 0, 0, -.infinity], shape: Shape(2, 3))) }, "invalidArgument")
    }

    /// A slice of the batch scaled by the global batch size contributes
    /// exactly its share: two halves add up to the whole.
    @Test func slicesAddUpToTheBatchMean() throws {
        let loss = Loss(.crossEntropy)
        let logits = randomArray(8 * 5, seed: 3, low: -3, high: 3)
        let t: [Float] = [0, 4, 2, 1, 3, 3, 0, 2]
        let scale = loss.meanScale(samples: 8, output: Shape(8, 5))
        let whole = try loss.compute(output: try Tensor(logits, shape: Shape(8, 5)), targets: try Tensor(t, shape: Shape(8)), scale: scale, wantGradient: false)
        let a = try loss.compute(output: try Tensor(Array(logits[0..<20]), shape: Shape(4, 5)), targets: try Tensor(Array(t[0..<4]), shape: Shape(4)), scale: scale, wantGradient: false)
        let b = try loss.compute(output: try Tensor(Array(logits[20...]), shape: Shape(4, 5)), targets: try Tensor(Array(t[4...]), shape: Shape(4)), scale: scale, wantGradient: false)
        #expect(abs(Double(a.loss + b.loss) - Double(whole.loss)) <= 1e-6, "halves \(a.loss) + \(b.loss) vs \(whole.loss)")
        #expect(a.correct + b.correct == whole.correct)
    }
}

/// Class indices as int32: exact past 2^24, where float labels round.
@Suite struct IntegerLabelTests {
    @Test func labelPastTwoToThe24() throws {
        let classes = (1 << 24) + 2, label = (1 << 24) + 1
        // Most logits far below the rest: a float32 sum of 2^24 ones would stall at 2^24.
        let logits = try Tensor(shape: Shape(1, classes))
        logits.fill(-30)
        logits.data[label] = 10
        for k in [0, 5, label - 1] { logits.data[k] = 0 }
        let targets = try Tensor(shape: Shape(1), dtype: .int32)
        targets.int32s[0] = Int32(label)
        let loss = Loss(.crossEntropy)
        try loss.validate(output: logits.shape, targets: targets)
        let r = try loss.compute(output: logits, targets: targets, scale: 1, wantGradient: true)
        // log(Σ e^z) − z_label: z = 10 at the label, 0 at three others, −30 elsewhere.
        let want = log(exp(10.0) + 3 + Double(classes - 4) * exp(-30.0)) - 10
        #expect(abs(Double(r.loss) - want) < 1e-6)
        #expect(r.correct == 1)
        #expect(loss.gradient.data[label] < 0 && loss.gradient.data[label - 1] > 0)
        // The same label as a float is 2^24 + 1, which float32 rounds to 2^24: another class.
        #expect(Float(label) == Float(1 << 24))
    }

    @Test func intAndFloatLabelsGiveTheSameLossAndGradient() throws {
        let logits = try Tensor(randomArray(5 * 7, seed: 3), shape: Shape(5, 7))
        let f = try Tensor([0, 6, 3, 3, 1], shape: Shape(5))
        let i = try Tensor(shape: Shape(5), dtype: .int32)
        try i.convert(from: f, to: .int32, what: "labels")
        let a = Loss(.crossEntropy), b = Loss(.crossEntropy)
        let ra = try a.compute(output: logits, targets: f, scale: 0.2, wantGradient: true)
        let rb = try b.compute(output: logits, targets: i, scale: 0.2, wantGradient: true)
        #expect(ra.loss.bitPattern == rb.loss.bitPattern && ra.correct == rb.correct)
        expectEqualElements(a.gradient.toArray().map(\.bitPattern), b.gradient.toArray().map(\.bitPattern))
        expectError(parmlError { try Loss(.crossEntropy).validate(output: Shape(5, 7), targets: try Tensor(shape: Shape(5), dtype: .int32).filledInt(9)) }, "invalidArgument", mentions: ["target 9"])
    }
}

extension Tensor {
    fileprivate func filledInt(_ v: Int32) -> Tensor {
        for k in 0..<count { int32s[k] = v }
        return self
    }
}
