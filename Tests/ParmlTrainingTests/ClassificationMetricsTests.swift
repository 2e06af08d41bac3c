import Foundation
import ParmlData
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

struct ClassificationMetricsTests {
    /// 6 predictions of 3 classes, worked by hand:
    /// targets 0 0 1 1 2 2, arg-max 0 1 1 1 0 2 (row 3 ties classes 1 and 2:
    /// the first wins); class 2 is the target's rank 2 in row 4.
    @Test func countsAndRatiosWorkedByHand() throws {
        let logits = try Tensor(
            [
                3, 1, 0,  // t 0 → 0
                1, 2, 0,  // t 0 → 1
                0, 5, 1,  // t 1 → 1
                0, 4, 4,  // t 1 → 1 (tie)
                3, 2, 1,  // t 2 → 0, target ranked third
                0, 1, 2,  // t 2 → 2
            ], shape: Shape(6, 3))
        let targets: [Int32] = [0, 0, 1, 1, 2, 2]
        var m = try ClassificationMetrics(classes: 3, topK: 2)
        targets.withUnsafeBufferPointer { m.add(logits: logits, targets: $0.baseAddress!) }
        #expect(m.confusion == [1, 1, 0, 0, 2, 0, 1, 0, 1])
        #expect(m.predictions == 6 && m.correct == 4)
        // Top-2 misses row 4 only.
        #expect(m.topKCorrect == 5)
        // Class 0: tp 1, predicted 2, support 2; class 1: tp 2, predicted 3; class 2: tp 1, predicted 1.
        #expect(m.precision(0) == 0.5 && m.recall(0) == 0.5 && m.f1(0) == 0.5)
        #expect(m.precision(1) == 2.0 / 3 && m.recall(1) == 1 && abs(m.f1(1) - 0.8) < 1e-15)
        #expect(m.precision(2) == 1 && m.recall(2) == 0.5 && abs(m.f1(2) - 2.0 / 3) < 1e-15)
        #expect(abs(m.macro.precision - (0.5 + 2.0 / 3 + 1) / 3) < 1e-15)
        #expect(abs(m.weighted.f1 - (0.5 + 0.8 + 2.0 / 3) / 3) < 1e-15)
    }

    /// A class never seen (neither target nor prediction) stays out of the
    /// macro mean, as scikit-learn's default labels leave it out.
    @Test func unseenClassesLeaveTheMacroMean() throws {
        let logits = try Tensor([2, 0, 0, 0, 0, 2, 0, 0], shape: Shape(2, 4))
        var m = try ClassificationMetrics(classes: 4, topK: 1)
        [Int32(0), 1].withUnsafeBufferPointer { m.add(logits: logits, targets: $0.baseAddress!) }
        #expect(m.macro.recall == 1 && m.macro.precision == 1)
        #expect(m.precision(2) == 0 && m.recall(3) == 0)
        expectError(parmlError { _ = try ClassificationMetrics(classes: 3, topK: 0) }, "invalidArgument", mentions: ["top_k"])
    }

    /// Over a dataset: the confusion matrix agrees with evaluate's hits and
    /// loss, and any batch size counts the same.
    @Test func evaluateMetricsAgreesWithEvaluate() throws {
        let model = try classifier(seed: 3)
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: StrategyConfig())
        let data = try blobs(60, seed: 4)
        for _ in 0..<3 { try t.step(inputs: data.inputs, targets: data.targets) }
        let e = try t.evaluate(data, batchSize: 64)
        let m = try t.evaluateMetrics(data, batchSize: 64, topK: 2)
        let small = try t.evaluateMetrics(data, batchSize: 7, topK: 2)
        #expect(m.correct == e.correct && m.predictions == 60 && m.loss == e.loss)
        #expect(small.confusion == m.confusion && small.topKCorrect == m.topKCorrect)
        #expect(m.topKCorrect >= m.correct && m.correct > 20)
        let mse = try Trainer(model: try classifier(seed: 3), loss: .meanSquaredError, optimizer: OptimizerConfig(), strategy: StrategyConfig())
        expectError(parmlError { _ = try mse.evaluateMetrics(data, batchSize: 8, topK: 1) }, "invalidArgument", mentions: ["cross-entropy"])
    }
}
