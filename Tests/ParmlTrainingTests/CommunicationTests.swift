import Foundation
import ParmlModel
import ParmlParallel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// Issue 20: the 16-bit gradient ring with error feedback, and local SGD.

private final class RingResults: @unchecked Sendable {
    var applied: [[Double]]
    var error: [[Float]]
    var last: [[Float]]
    var bytes: [Int]
    init(_ p: Int, _ n: Int) {
        applied = Array(repeating: Array(repeating: 0, count: n), count: p)
        error = Array(repeating: [], count: p)
        last = Array(repeating: [], count: p)
        bytes = Array(repeating: 0, count: p)
    }
}

/// Rank r's gradient at step t: values of mixed magnitude, so that bf16
/// and fp16 round most of them.
private func gradient(rank r: Int, step t: Int, count n: Int) -> [Float] {
    randomArray(n, seed: UInt64(100 + t), stream: UInt64(r), low: -1, high: 1).enumerated().map { i, v in v * Float(1 + i % 7) * 0.37 }
}

struct CommunicationTests {
    @Test(arguments: [GradientCompression.bf16, .fp16], [2, 3, 4])
    func errorFeedbackKeepsTheLongRunSum(_ format: GradientCompression, ranks p: Int) throws {
        let n = 1001, steps = 40
        let world = try ThreadsWorld(size: p, timeout: 10, name: "dp")
        let pool = try RankPool(size: p)
        let results = RingResults(p, n)
        try pool.run(world: world) { r in
            let ring = try CompressedRing(format: format, count: n)
            let comm = world.communicator(rank: r)
            let g = try Tensor(shape: Shape(n))
            for t in 0..<steps {
                let mine = gradient(rank: r, step: t, count: n)
                for i in 0..<n { g.data[i] = mine[i] }
                try ring.allReduce(g.data, count: n, comm: comm)
                for i in 0..<n { results.applied[r][i] += Double(g.data[i]) }
            }
            results.error[r] = ring.error.toArray()
            results.last[r] = g.toArray()
            results.bytes[r] = ring.bytesSent
        }
        // Every rank applies the same values.
        for r in 1..<p { expectSameBits(results.last[r], results.last[0], "rank \(r)'s sum") }
        // Σ applied = Σ true − Σ errors still held, up to float32 additions.
        var truths = [Double](repeating: 0, count: n)
        for t in 0..<steps {
            for r in 0..<p { for (i, v) in gradient(rank: r, step: t, count: n).enumerated() { truths[i] += Double(v) } }
        }
        var worst = 0.0, held = 0.0
        for i in 0..<n {
            let truth = truths[i]
            var errors = 0.0
            for r in 0..<p { errors += Double(results.error[r][i]) }
            worst = max(worst, abs(results.applied[0][i] + errors - truth))
            held = max(held, abs(errors))
        }
        #expect(worst < 2e-4, "\(format.name), \(p) ranks: |Σ applied + errors − Σ true| = \(worst)")
        // The errors held are a few roundings, not a drift.
        let ulp = format == .bf16 ? 1.0 / 128 : 1.0 / 1024
        #expect(held < Double(p) * 4 * ulp * 2.6 * Double(p), "held error \(held)")
        #expect(held > 0, "nothing was rounded: the test would prove nothing")
        // Half a float32 ring's bytes.
        let sent = results.bytes.reduce(0, +)
        #expect(abs(Double(sent) - Double(p * CompressedRing.ringBytes(count: n, ranks: p, bytesPerValue: 2))) <= Double(4 * p * p))
    }

    @Test func encodingRoundsToNearestEven() {
        let bf16 = GradientCompression.bf16
        #expect(bf16.decode(bf16.encode(1 + 1.0 / 256)) == 1)  // a tie: to the even mantissa
        #expect(bf16.decode(bf16.encode(1 + 3.0 / 256)) == 1 + 4.0 / 256)
        #expect(bf16.decode(bf16.encode(3e38)).isFinite && bf16.decode(bf16.encode(-.infinity)) == -.infinity)
        #expect(bf16.decode(bf16.encode(.nan)).isNaN)
        let fp16 = GradientCompression.fp16
        #expect(fp16.decode(fp16.encode(70000)) == .infinity)
        #expect(fp16.decode(fp16.encode(0.1)) == Float(Float16(0.1)))
    }

    /// 12 → 16 → ReLU → 4, without dropout (whose masks follow the rows'
    /// place in the global batch, which a replica's own trainer cannot know).
    private func mlp() throws -> Model {
        let m = Model()
        try m.add(try Linear(inFeatures: 12, outFeatures: 16))
        try m.add(Activation(.relu))
        try m.add(try Linear(inFeatures: 16, outFeatures: 4))
        try m.initialize(seed: 3)
        return m
    }

    /// Local SGD with H steps on dp 2 equals two serial trainers on the two
    /// halves of each batch whose parameters are averaged every H steps,
    /// bit for bit; H = 1 is ordinary data parallelism.
    @Test func localSGDIsReplicasAveragedEveryHSteps() throws {
        let n = 24, steps = 6, h = 3
        // Adam: each replica's moments stay its own (and a lone SGD-momentum
        // trainer would fold its momentum into the gradients, rounding otherwise).
        var o = OptimizerConfig()
        o.kind = .adam
        o.learningRate = 0.01
        func strategy(dp: Int, localSteps: Int) -> StrategyConfig {
            var s = StrategyConfig()
            s.dp = dp
            s.localSteps = localSteps
            s.blasThreads = 1
            s.watchdogSeconds = 20
            return s
        }
        let model = try mlp()
        let local = try Trainer(model: model, loss: .crossEntropy, optimizer: o, strategy: strategy(dp: 2, localSteps: h))
        let halves = try [mlp(), mlp()]
        let replicas = try halves.map { try Trainer(model: $0, loss: .crossEntropy, optimizer: o, strategy: strategy(dp: 1, localSteps: 1)) }
        for k in 0..<steps {
            let (x, y) = try residualMLPBatch(n, step: k)
            _ = try local.step(inputs: x, targets: y)
            for (i, t) in replicas.enumerated() {
                let rows = (i * n / 2)..<((i + 1) * n / 2)
                let xs = try Tensor(Array(x.toArray()[(rows.lowerBound * 12)..<(rows.upperBound * 12)]), shape: Shape(rows.count, 12))
                let ys = try Tensor(Array(y.toArray()[rows]), shape: Shape(rows.count))
                _ = try t.step(inputs: xs, targets: ys)
            }
            if (k + 1) % h == 0 {
                let a = halves[0].parameters!, b = halves[1].parameters!
                for i in 0..<a.count {
                    let mean = (a.data[i] + b.data[i]) * 0.5
                    a.data[i] = mean
                    b.data[i] = mean
                }
                expectSameBits(model.parameters!.toArray(), a.toArray(), "after step \(k + 1)")
            }
        }
        let plain = try residualMLP(width: 16, seed: 3), one = try residualMLP(width: 16, seed: 3)
        let dp = try Trainer(model: plain, loss: .crossEntropy, optimizer: o, strategy: strategy(dp: 2, localSteps: 1))
        let h1 = try Trainer(model: one, loss: .crossEntropy, optimizer: o, strategy: strategy(dp: 2, localSteps: 1))
        for k in 0..<3 {
            let (x, y) = try residualMLPBatch(n, step: k)
            _ = try dp.step(inputs: x, targets: y)
            _ = try h1.step(inputs: x, targets: y)
        }
        expectSameBits(one.parameters!.toArray(), plain.parameters!.toArray(), "local_steps 1")
        #expect(local.planDescription.contains("local SGD, each replica steps on its own rows"))
    }

    /// bf16 and fp16 dp 2 training follows float32 dp 2 closely and says
    /// what it sends; the replicas stay identical (one host model).
    @Test(arguments: [GradientCompression.bf16, .fp16])
    func compressedTrainingFollowsFloat32(_ format: GradientCompression) throws {
        var o = OptimizerConfig()
        o.learningRate = 0.05
        o.momentum = 0.9
        func run(_ c: GradientCompression) throws -> ([Float], String) {
            var s = StrategyConfig()
            s.dp = 2
            s.gradientCompression = c
            s.blasThreads = 1
            let model = try residualMLP(width: 16, seed: 3)
            let t = try Trainer(model: model, loss: .crossEntropy, optimizer: o, strategy: s)
            for k in 0..<8 {
                let (x, y) = try residualMLPBatch(32, step: k)
                _ = try t.step(inputs: x, targets: y)
            }
            return (model.parameters!.toArray(), t.planDescription)
        }
        let (exact, _) = try run(.none)
        let (compressed, plan) = try run(format)
        let d = maxAbsDiff(compressed, exact)
        #expect(d > 0 && d < 2e-2, "\(format.name): max difference \(d)")
        #expect(plan.contains("ring reduce-scatter then all-gather in \(format.name) with error feedback"))
    }

    @Test func badCombinationsAreRefused() throws {
        var s = StrategyConfig()
        s.dp = 2
        s.gradientCompression = .bf16
        s.deterministic = true
        expectError(parmlError { try s.validate() }, "invalidArgument")
        s.deterministic = false
        s.zeroStage = 1
        expectError(parmlError { try s.validate() }, "invalidArgument")
        s.zeroStage = 0
        s.localSteps = 4
        expectError(parmlError { try s.validate() }, "invalidArgument")
        s.gradientCompression = .none
        s.localSteps = 0
        expectError(parmlError { try s.validate() }, "invalidArgument")
        s.localSteps = 4
        s.pp = 2
        var o = OptimizerConfig()
        o.clipGradNorm = 1
        expectError(
            parmlError { _ = try Trainer(model: try residualMLP(width: 8, seed: 1), loss: .crossEntropy, optimizer: o, strategy: s) },
            "unsupported")
    }
}
