import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// batch_norm on one piece: finite differences, a naive Double reference of
/// the forward pass, evaluation with the running statistics, the running
/// update, and the running statistics kept away from the optimizer.
@Suite struct BatchNormTests {
    let training = PassContext(training: true, step: 1, sampleOffset: 0, seed: 5)

    /// (N, C), (N, C, L) and (N, C, H, W); 17 and 20 positions exercise the
    /// 16 lanes and the plane tails of the sums.
    static let shapes: [[Int]] = [[6, 3], [3, 2, 5], [2, 3, 4, 5], [2, 2, 17]]

    @Test(arguments: shapes, [true, false])
    func gradientsMatchFiniteDifferences(_ dims: [Int], affine: Bool) throws {
        let model = try makeModel([try BatchNorm(channels: dims[1], affine: affine)], seed: 21)
        // Normalised outputs depend on every value: a tight h keeps the
        // third-order term small.
        let x = try randomTensor(Shape(dims), seed: 22, stream: UInt64(dims.count), low: -2, high: 2)
        try gradientCheck(model: model, input: x, ctx: training, eps: 5e-3, atol: 1e-3, rtol: 5e-3)
    }

    /// y = (x − mean)/√(var + eps)·γ + β per channel with the biased
    /// variance, against a Double computation.
    @Test(arguments: shapes)
    func forwardMatchesNaiveReference(_ dims: [Int]) throws {
        let bn = try BatchNorm(channels: dims[1], eps: 1e-3)
        let model = try makeModel([bn], seed: 23)
        let x = try randomTensor(Shape(dims), seed: 24, low: -3, high: 5)
        let y = try model.forward(x, training).toArray()
        let p = model.parameters!.toArray()
        let c = dims[1], n = dims[0], s = x.count / (n * c)
        var worst = 0.0
        for ch in 0..<c {
            var values: [Double] = []
            for i in 0..<n { for q in 0..<s { values.append(Double(x.data[(i * c + ch) * s + q])) } }
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
            for i in 0..<n {
                for q in 0..<s {
                    let k = (i * c + ch) * s + q
                    let want = (Double(x.data[k]) - mean) / (variance + 1e-3).squareRoot() * Double(p[ch]) + Double(p[c + ch])
                    worst = max(worst, abs(want - Double(y[k])))
                }
            }
        }
        #expect(worst < 1e-5, "max |y − reference| = \(worst)")
    }

    /// Evaluation normalises with the running statistics, not the batch's.
    @Test func evaluationUsesRunningStatistics() throws {
        let model = try makeModel([try BatchNorm(channels: 2, eps: 0.5)], randomize: false)
        // weight, bias, running_mean, running_var
        try [Float(2), 3, 1, -1, 0.5, 4, 1.5, 0.5].withUnsafeBufferPointer { try model.setParameters(from: $0.baseAddress!) }
        let x = try Tensor([1, 2, 3, 4, 5, 6, 7, 8], shape: Shape(2, 2, 2))
        let y = try model.forward(x, PassContext(training: false)).toArray()
        // Channel 0: γ 2, β 1, mean 0.5, var 1.5; channel 1: γ 3, β −1, mean 4, var 0.5.
        let gamma: [Float] = [2, 3], beta: [Float] = [1, -1], mean: [Float] = [0.5, 4], variance: [Float] = [1.5, 0.5]
        var want: [Float] = []
        for k in 0..<8 {
            let ch = (k / 2) % 2
            let scaled: Float = (Float(k + 1) - mean[ch]) / (variance[ch] + 0.5).squareRoot()
            want.append(scaled * gamma[ch] + beta[ch])
        }
        #expect(maxAbsDiff(y, want) < 1e-6, "\(y) vs \(want)")
    }

    /// running = 0.9·running + 0.1·batch, the variance unbiased (n − 1), as PyTorch.
    @Test func runningUpdateIsPyTorchs() throws {
        let bn = try BatchNorm(channels: 1, momentum: 0.1)
        let model = try makeModel([bn], randomize: false)
        let mean: [Float] = [2], variance: [Float] = [3]
        bn.updateRunningStatistics(mean: mean, variance: variance, count: 4)
        let p = model.parameters!.toArray()  // weight, bias, running_mean, running_var
        #expect(abs(p[2] - 0.2) < 1e-7)
        #expect(abs(p[3] - (0.9 + 0.1 * 3 * 4 / 3)) < 1e-6)
    }

    /// The running statistics are parameters the optimizer never moves, even
    /// with weight decay, and their gradients stay zero.
    @Test func runningStatisticsAreFrozen() throws {
        let model = try makeModel([try BatchNorm(channels: 3)], seed: 8)
        #expect(model.frozenRanges == [6..<9, 9..<12])
        let x = try randomTensor(Shape(4, 3), seed: 9)
        _ = try model.forward(x, training)
        try model.backward(try randomTensor(Shape(4, 3), seed: 10), training)
        let g = model.gradients!.toArray()
        #expect(g[6..<12].allSatisfy { $0 == 0 })
        var config = OptimizerConfig()
        config.learningRate = 0.5
        config.weightDecay = 0.1
        let before = model.parameters!.toArray()
        let opt = try Optimizer(config: config, range: 0..<12, frozen: model.frozenRanges)
        opt.update(params: model.parameters!.data, grads: model.gradients!.data, lr: 0.5, t: 1)
        let after = model.parameters!.toArray()
        #expect(after[6..<12] == before[6..<12])
        #expect(after[0..<6] != before[0..<6])
        // A frozen range cut out of decaying and plain runs alike.
        let runs = Optimizer.removing([2..<4, 7..<12], from: [(0..<5, true), (5..<10, false)])
        #expect(runs.map(\.range) == [0..<2, 4..<5, 5..<7] && runs.map(\.decays) == [true, true, false])
    }

    @Test func refusesBadShapesAndAttributes() throws {
        let model = try makeModel([try BatchNorm(channels: 3)])
        expectError(parmlError { _ = try model.forward(try Tensor(shape: Shape(2, 4)), training) }, "shape")
        expectError(parmlError { _ = try model.forward(try Tensor(shape: Shape(6)), training) }, "shape")
        expectError(parmlError { _ = try BatchNorm(channels: 0) }, "invalidArgument")
        expectError(parmlError { _ = try BatchNorm(channels: 2, momentum: 1.5) }, "invalidArgument")
        expectError(parmlError { _ = try BatchNorm.descriptor.make(["num_features": .int(2), "statistics": .string("rank")]) }, "invalidArgument")
    }
}
