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

    /// PowerSGD: the ranks apply the same sum; with error feedback the
    /// applied sums plus the errors held are the true sums; a sum of rank r
    /// is found almost exactly once the warm-started Q has converged; and
    /// the 784-1024-1024-10 MLP sends under 5 % of float32's floats at rank 4.
    @Test(arguments: [2, 3])
    func powerSGD(ranks p: Int) throws {
        try BLAS.ensureLoaded()  // the reducer's products; a trainer loads it otherwise
        let rows = 40, cols = 30, r = 3, steps = 12
        let layer = Model()
        try layer.add(try Linear(inFeatures: cols, outFeatures: rows))  // weight (rows, cols), bias (rows)
        try layer.initialize(seed: 1)
        let infos = layer.parameterInfo
        let n = rows * cols + rows
        // Rank k's gradient: a fixed rank-2 matrix times (k + 1), plus the bias.
        let u = randomArray(rows * 2, seed: 5), v = randomArray(cols * 2, seed: 6)
        func mine(_ k: Int, _ t: Int) -> [Float] {
            var g = [Float](repeating: 0, count: n)
            for i in 0..<rows { for j in 0..<cols { g[i * cols + j] = Float(k + 1) * (u[2 * i] * v[2 * j] + u[2 * i + 1] * v[2 * j + 1]) } }
            for i in 0..<rows { g[rows * cols + i] = Float(i + t) * 0.01 }
            return g
        }
        let world = try ThreadsWorld(size: p, timeout: 10, name: "dp")
        let pool = try RankPool(size: p)
        let results = RingResults(p, n)
        try pool.run(world: world) { k in
            let reducer = try PowerSGDReducer(run: 0..<n, infos: infos, rank: r, seed: 7)
            let g = try Tensor(shape: Shape(n))
            for t in 0..<steps {
                let values = mine(k, t)
                for i in 0..<n { g.data[i] = values[i] }
                try reducer.allReduce(g.data, comm: world.communicator(rank: k))
                for i in 0..<n { results.applied[k][i] += Double(g.data[i]) }
            }
            results.error[k] = reducer.error.toArray()
            results.last[k] = g.toArray()
        }
        for k in 1..<p { expectSameBits(results.last[k], results.last[0], "rank \(k)'s sum") }
        var worstSum = 0.0, worstLast = 0.0
        let total = Float(p * (p + 1) / 2)
        for i in 0..<n {
            var truth = 0.0
            for t in 0..<steps { for k in 0..<p { truth += Double(mine(k, t)[i]) } }
            let held = (0..<p).reduce(0.0) { $0 + Double(results.error[$1][i]) }
            worstSum = max(worstSum, abs(results.applied[0][i] + held - truth))
            if i < rows * cols { worstLast = max(worstLast, abs(Double(results.last[0][i]) - Double(mine(0, 0)[i] * total))) }
        }
        #expect(worstSum < 1e-3, "|Σ applied + errors − Σ true| = \(worstSum)")
        #expect(worstLast < 1e-4, "the rank-2 sum after \(steps) warm-started steps: \(worstLast)")
        let mlp = try benchmarkShapedInfos()
        let reducer = try PowerSGDReducer(run: 0..<mlp.count, infos: mlp.infos, rank: 4, seed: 1)
        let ratio = Double(reducer.floatsReduced) / Double(mlp.count)
        #expect(ratio < 0.05, "PowerSGD rank 4 reduces \(reducer.floatsReduced) of \(mlp.count) floats (\(ratio))")
    }

    /// The parameter list of the 784-1024-1024-10 MLP.
    private func benchmarkShapedInfos() throws -> (infos: [ParameterInfo], count: Int) {
        let m = try benchmarkMLP(seed: 1)
        return (m.parameterInfo, m.parameterCount)
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

    /// DiLoCo's outer step: at each average, Δ = θ_last − mean(θ),
    /// v = μ·v + Δ, θ = θ_last − lr·(Δ + μ·v), on two serial replicas by
    /// hand, bit for bit.
    @Test func outerNesterovStepIsDiLoCos() throws {
        let n = 24, steps = 6, h = 2
        let lr: Float = 0.7, mu: Float = 0.9
        var o = OptimizerConfig()
        o.kind = .adam
        o.learningRate = 0.01
        var s = StrategyConfig()
        s.dp = 2
        s.localSteps = h
        s.outerLearningRate = lr
        s.outerMomentum = mu
        s.blasThreads = 1
        let model = try mlp()
        let local = try Trainer(model: model, loss: .crossEntropy, optimizer: o, strategy: s)
        var one = StrategyConfig()
        one.blasThreads = 1
        let halves = try [mlp(), mlp()]
        let replicas = try halves.map { try Trainer(model: $0, loss: .crossEntropy, optimizer: o, strategy: one) }
        var anchor = halves[0].parameters!.toArray()
        var velocity = [Float](repeating: 0, count: anchor.count)
        for k in 0..<steps {
            let (x, y) = try residualMLPBatch(n, step: k)
            _ = try local.step(inputs: x, targets: y)
            for (i, t) in replicas.enumerated() {
                let rows = (i * n / 2)..<((i + 1) * n / 2)
                let xs = try Tensor(Array(x.toArray()[(rows.lowerBound * 12)..<(rows.upperBound * 12)]), shape: Shape(rows.count, 12))
                _ = try t.step(inputs: xs, targets: try Tensor(Array(y.toArray()[rows]), shape: Shape(rows.count)))
            }
            guard (k + 1) % h == 0 else { continue }
            let a = halves[0].parameters!, b = halves[1].parameters!
            for i in 0..<a.count {
                let mean = (a.data[i] + b.data[i]) * 0.5
                let delta = anchor[i] - mean
                velocity[i] = mu * velocity[i] + delta
                anchor[i] = anchor[i] - lr * (delta + mu * velocity[i])
                a.data[i] = anchor[i]
                b.data[i] = anchor[i]
            }
            expectSameBits(model.parameters!.toArray(), anchor, "after step \(k + 1)")
        }
        #expect(local.planDescription.contains("DiLoCo's outer Nesterov step (lr 0.7, momentum 0.9)"))
        s.outerMomentum = 1
        expectError(parmlError { try s.validate() }, "invalidArgument")
    }

    /// bf16 and fp16 dp 2 training follows float32 dp 2 closely and says
    /// what it sends; the replicas stay identical (one host model).
    @Test(arguments: [GradientCompression.bf16, .fp16, .powerSGD])
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
        #expect(d > 0 && d < (format == .powerSGD ? 0.1 : 2e-2), "\(format.name): max difference \(d)")
        #expect(
            plan.contains("ring reduce-scatter then all-gather in \(format.name) with error feedback")
                || plan.contains("PowerSGD rank 4 (one power iteration"), "\(plan)")
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
