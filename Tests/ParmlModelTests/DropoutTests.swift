import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

@Suite struct DropoutTests {
    @Test func inferenceIsIdentity() throws {
        let d = try Dropout(probability: 0.5)
        let x = try randomTensor(Shape(4, 6), seed: 1)
        let y = try d.forward(x, PassContext(training: false, step: 7, seed: 3))
        expectEqualElements(y.toArray(), x.toArray())
        let dy = try randomTensor(Shape(4, 6), seed: 2)
        let dx = try d.backward(dy, PassContext(training: false), needInputGradient: true, accumulate: false)
        #expect(dx?.toArray() == dy.toArray())
        // p = 0 in training is the identity as well.
        let none = try Dropout(probability: 0)
        expectEqualElements(try none.forward(x, PassContext(training: true, seed: 3)).toArray(), x.toArray())
    }

    @Test(arguments: [Float(0.1), 0.3, 0.5, 0.9])
    func dropsAboutPInTraining(_ p: Float) throws {
        let d = try Dropout(probability: p)
        let x = try Tensor(shape: Shape(1000, 100))
        x.fill(1)
        let y = try d.forward(x, PassContext(training: true, step: 5, sampleOffset: 0, seed: 11)).toArray()
        let keep = 1 / (1 - p)
        let zeros = y.filter { $0 == 0 }.count
        let kept = y.filter { $0 == keep }.count
        #expect(zeros + kept == y.count, "values other than 0 and 1/(1−p) = \(keep)")
        // 1e5 Bernoulli(p) draws: σ of the fraction ≤ 0.0016, so 0.01 is > 6σ.
        let fraction = Double(zeros) / Double(y.count)
        #expect(abs(fraction - Double(p)) < 0.01, "dropped fraction \(fraction), p = \(p)")
        // Backward applies the same mask (inverted scaling included).
        let dy = try Tensor(shape: x.shape)
        dy.fill(2)
        let dx = try d.backward(dy, PassContext(training: true, step: 5, seed: 11), needInputGradient: true, accumulate: false)!.toArray()
        expectEqualElements(dx, y.map { 2 * $0 })
    }

    @Test func invalidProbability() {
        expectError(parmlError { _ = try Dropout(probability: 1) }, "invalidArgument")
        expectError(parmlError { _ = try Dropout(probability: -0.1) }, "invalidArgument")
        expectError(parmlError { _ = try Dropout(probability: .nan) }, "invalidArgument")
    }

    /// A sample's mask depends on its global index only: rows 4..<8 of a
    /// batch of 8 get the mask they get when run alone at sampleOffset 4.
    @Test(arguments: [Shape(8, 5), Shape(8, 3, 3)])
    func maskIsKeyedOnGlobalSampleIndex(_ shape: Shape) throws {
        let d = try Dropout(probability: 0.5)
        let row = shape.rowSize
        let xv = randomArray(shape.count, seed: 12, low: 0.5, high: 1.5)  // non-zero inputs
        let full = try d.forward(try Tensor(xv, shape: shape), PassContext(training: true, step: 2, sampleOffset: 0, seed: 42)).toArray()
        let tail = try d.forward(
            try Tensor(Array(xv[(4 * row)...]), shape: shape.withLeading(4)),
            PassContext(training: true, step: 2, sampleOffset: 4, seed: 42)
        ).toArray()
        expectEqualElements(Array(full[(4 * row)...]).map(\.bitPattern), tail.map(\.bitPattern), "max abs diff \(maxAbsDiff(Array(full[(4 * row)...]), tail))")
        // Split in uneven pieces: 0..<3, 3..<4, 4..<8.
        var pieces: [Float] = []
        for (lo, hi) in [(0, 3), (3, 4), (4, 8)] {
            let part = try d.forward(
                try Tensor(Array(xv[(lo * row)..<(hi * row)]), shape: shape.withLeading(hi - lo)),
                PassContext(training: true, step: 2, sampleOffset: lo, seed: 42))
            pieces += part.toArray()
        }
        expectEqualElements(pieces.map(\.bitPattern), full.map(\.bitPattern))
        // Another step, seed or offset draws another mask.
        let otherStep = try d.forward(try Tensor(xv, shape: shape), PassContext(training: true, step: 3, sampleOffset: 0, seed: 42)).toArray()
        let otherSeed = try d.forward(try Tensor(xv, shape: shape), PassContext(training: true, step: 2, sampleOffset: 0, seed: 43)).toArray()
        let shifted = try d.forward(try Tensor(xv, shape: shape), PassContext(training: true, step: 2, sampleOffset: 1, seed: 42)).toArray()
        #expect(otherStep != full && otherSeed != full && shifted != full)
    }

    /// Two dropout layers of one model draw different masks (their layer ids differ).
    @Test func layersInAModelDrawDifferentMasks() throws {
        let a = try Dropout(probability: 0.5), b = try Dropout(probability: 0.5)
        let model = try makeModel([a, Activation(.relu), b])
        #expect(a.layerID != b.layerID)
        let x = try Tensor(shape: Shape(16, 16))
        x.fill(1)
        let ctx = PassContext(training: true, step: 1, seed: 5)
        let ya = try a.forward(x, ctx).toArray()
        let yb = try b.forward(x, ctx).toArray()
        #expect(ya != yb)
        _ = model
    }
}
