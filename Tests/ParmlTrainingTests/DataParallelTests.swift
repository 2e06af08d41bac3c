import Foundation
import ParmlData
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// Promise 1 for data parallelism: a layout is an execution plan, never a
// different model. In deterministic mode every dp and ZeRO stage must give
// the parameters serial deterministic training gives, bit for bit; in the
// default mode they agree within float rounding.

/// 12 → 16 → ReLU → residual(LayerNorm, 16 → 16, GELU, Dropout) → 4: an MLP
/// with a residual block, a LayerNorm and dropout (masks keyed on the global
/// sample index, so they too must match across layouts).
private func mlp(seed: UInt64 = 5) throws -> Model {
    let m = Model()
    try m.add(try Linear(inFeatures: 12, outFeatures: 16))
    try m.add(Activation(.relu))
    try m.beginResidual()
    try m.add(try LayerNorm(features: 16))
    try m.add(try Linear(inFeatures: 16, outFeatures: 16))
    try m.add(Activation(.gelu))
    try m.add(try Dropout(probability: 0.2))
    try m.endResidual()
    try m.add(try Linear(inFeatures: 16, outFeatures: 4))
    try m.initialize(seed: seed)
    return m
}

private func batch(_ n: Int, step: Int) throws -> (Tensor, Tensor) {
    let x = randomArray(n * 12, seed: 77, stream: UInt64(step))
    let y = (0..<n).map { Float(($0 * 7 + step) % 4) }
    return (try Tensor(x, shape: Shape(n, 12)), try Tensor(y, shape: Shape(n)))
}

enum DPOptimizer: String, CaseIterable, Sendable {
    case sgdMomentum, adamW

    var config: OptimizerConfig {
        var c = OptimizerConfig()
        switch self {
        case .sgdMomentum:
            c.kind = .sgd
            c.learningRate = 0.05
            c.momentum = 0.9
            c.weightDecay = 1e-4
        case .adamW:
            c.kind = .adamW
            c.learningRate = 0.01
            c.weightDecay = 0.01
            c.clipGradNorm = 0.5  // exercises the blockwise norm under ZeRO-2
        }
        return c
    }
}

/// Parameters after `steps` steps of the given layout on batches of `n`.
private func train(
    dp: Int, zero: Int, deterministic: Bool, optimizer: DPOptimizer, n: Int, steps: Int = 6
) throws -> [Float] {
    try trainWithLosses(dp: dp, zero: zero, deterministic: deterministic, optimizer: optimizer, n: n, steps: steps).parameters
}

/// The same, with each step's reported loss.
private func trainWithLosses(
    dp: Int, zero: Int, deterministic: Bool, optimizer: DPOptimizer, n: Int, steps: Int = 6
) throws -> (parameters: [Float], losses: [Float]) {
    var s = StrategyConfig()
    s.dp = dp
    s.zeroStage = zero
    s.deterministic = deterministic
    s.gradientChunk = 8
    s.seed = 3
    s.bucketBytes = 1000 * 4  // several buckets over the 1,000-odd parameters
    s.watchdogSeconds = 20
    let model = try mlp()
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: optimizer.config, strategy: s)
    var losses: [Float] = []
    for k in 0..<steps {
        let (x, y) = try batch(n, step: k)
        let r = try t.step(inputs: x, targets: y)
        #expect(r.loss.isFinite)
        losses.append(r.loss)
    }
    // Every replica holds the same parameters after the all-gather.
    for r in t.ranks.dropFirst() {
        expectEqualElements(bits(r.model.parameters), bits(model.parameters), "rank \(r.rank) replica differs")
    }
    return (model.parameters!.toArray(), losses)
}

struct DataParallelTests {
    static let layouts: [(Int, Int)] = [2, 3, 4].flatMap { dp in [0, 1, 2, 3].map { (dp, $0) } }

    @Test(arguments: DPOptimizer.allCases, [40, 37])
    func deterministicModeIsBitIdenticalToSerial(optimizer: DPOptimizer, n: Int) throws {
        let serial = try trainWithLosses(dp: 1, zero: 0, deterministic: true, optimizer: optimizer, n: n)
        for (dp, zero) in Self.layouts {
            let (p, losses) = try trainWithLosses(dp: dp, zero: zero, deterministic: true, optimizer: optimizer, n: n)
            expectEqualElements(
                p.map(\.bitPattern), serial.parameters.map(\.bitPattern),
                "dp=\(dp) zero=\(zero) \(optimizer) n=\(n): max |Δ| = \(maxAbsDiff(p, serial.parameters))")
            // The reported loss too: the chunks' losses summed in chunk order, not by rank.
            expectEqualElements(losses.map(\.bitPattern), serial.losses.map(\.bitPattern), "dp=\(dp) zero=\(zero) \(optimizer) n=\(n): \(losses) against \(serial.losses)")
        }
    }

    /// Deterministic mode sums the same chunk gradients as default mode's
    /// one product, in its tree's order: within rounding of it. The
    /// comparisons of layouts cannot see a chunk lost or counted twice
    /// when every layout shares the fault (a chunk's gradient written
    /// where its tree leaf is not); this test does. Measured: max |Δ|
    /// 3e-8 to 8e-8 after 6 steps; 0.1 to 0.2 with the leaf left unwritten.
    @Test(arguments: DPOptimizer.allCases, [40, 37])
    func deterministicModeIsWithinRoundingOfDefaultMode(optimizer: DPOptimizer, n: Int) throws {
        let fast = try train(dp: 1, zero: 0, deterministic: false, optimizer: optimizer, n: n)
        let chunked = try train(dp: 1, zero: 0, deterministic: true, optimizer: optimizer, n: n)
        let d = maxAbsDiff(chunked, fast)
        #expect(d <= 1e-6, "\(optimizer) n=\(n): max |Δ| = \(d)")
    }

    /// Default mode: one GEMM per rank changes only the order of float sums.
    /// Measured over this matrix after 6 steps: max |Δ| = 6.5e-8 on
    /// parameters of size ≲ 1 (about one float32 ulp). The bound, 1e-6, leaves
    /// room for rounding to grow over steps; `toleranceSeesOneSample` shows
    /// that training without one sample of 37 lands far outside it.
    @Test(arguments: DPOptimizer.allCases, [40, 37])
    func defaultModeIsWithinRoundingOfSerial(optimizer: DPOptimizer, n: Int) throws {
        let serial = try train(dp: 1, zero: 0, deterministic: false, optimizer: optimizer, n: n)
        for (dp, zero) in Self.layouts {
            let p = try train(dp: dp, zero: zero, deterministic: false, optimizer: optimizer, n: n)
            let d = maxAbsDiff(p, serial)
            #expect(d <= 1e-6, "dp=\(dp) zero=\(zero) \(optimizer) n=\(n): max |Δ| = \(d)")
        }
    }

    @Test func toleranceSeesOneSample() throws {
        let all = try train(dp: 1, zero: 0, deterministic: false, optimizer: .sgdMomentum, n: 37)
        let fewer = try train(dp: 1, zero: 0, deterministic: false, optimizer: .sgdMomentum, n: 36)
        let d = maxAbsDiff(all, fewer)
        #expect(d > 1e-4, "one sample fewer moved parameters by only \(d)")
    }

    /// ZeRO changes where the update runs, not what it computes: within one
    /// dp, every stage gives the bits of ZeRO-0 in the default mode too.
    @Test func zeroStagesAreBitIdenticalForOneDp() throws {
        for opt in DPOptimizer.allCases {
            let z0 = try train(dp: 3, zero: 0, deterministic: false, optimizer: opt, n: 37)
            for zero in [1, 2, 3] {
                let p = try train(dp: 3, zero: zero, deterministic: false, optimizer: opt, n: 37)
                expectEqualElements(p.map(\.bitPattern), z0.map(\.bitPattern), "zero=\(zero) \(opt)")
            }
        }
    }

    @Test(arguments: [false, true])
    func sameLayoutTwiceIsBitIdentical(deterministic: Bool) throws {
        let a = try train(dp: 2, zero: 1, deterministic: deterministic, optimizer: .adamW, n: 37)
        let b = try train(dp: 2, zero: 1, deterministic: deterministic, optimizer: .adamW, n: 37)
        expectEqualElements(a.map(\.bitPattern), b.map(\.bitPattern))
    }

    /// More ranks than chunks: some ranks get no samples and still take part.
    @Test func ranksWithoutSamples() throws {
        let serial = try train(dp: 1, zero: 0, deterministic: true, optimizer: .sgdMomentum, n: 10, steps: 3)
        let p = try train(dp: 4, zero: 2, deterministic: true, optimizer: .sgdMomentum, n: 10, steps: 3)
        expectEqualElements(p.map(\.bitPattern), serial.map(\.bitPattern))
        let fast = try train(dp: 4, zero: 0, deterministic: false, optimizer: .sgdMomentum, n: 3, steps: 3)
        #expect(fast.allSatisfy { $0.isFinite })
    }

    /// ZeRO-3: no rank keeps a private copy of the parameters; each owns a shard.
    @Test func zeroThreeShardsParameters() throws {
        var s = StrategyConfig()
        s.dp = 3
        s.zeroStage = 3
        let model = try mlp()
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: s)
        let owned = try (0..<3).map { try t.memory(rank: $0).parameters }
        #expect(owned.reduce(0, +) == model.parameterCount * 4, "the shards add up to one copy: \(owned)")
        for r in t.ranks.dropFirst() { #expect(r.model.sharesParameters(with: model)) }
    }

    @Test func zeroOneShardsOptimizerState() throws {
        func bytes(_ zero: Int) throws -> [Int] {
            var s = StrategyConfig()
            s.dp = 4
            s.zeroStage = zero
            var o = OptimizerConfig()
            o.kind = .adam
            let t = try Trainer(model: try mlp(), loss: .crossEntropy, optimizer: o, strategy: s)
            return try (0..<4).map { try t.memory(rank: $0).optimizer }
        }
        let full = try bytes(0)
        let sharded = try bytes(1)
        let total = sharded.reduce(0, +)
        #expect(total == full[0], "the shards add up to one whole state")
        for b in sharded { #expect(b <= full[0] / 4 + 2 * 1024 * 2 * 4, "shard of \(b) bytes vs whole \(full[0])") }
    }

    @Test func userModelChangesReachTheReplicas() throws {
        var s = StrategyConfig()
        s.dp = 2
        let model = try mlp()
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: s)
        let (x, y) = try batch(16, step: 0)
        try t.step(inputs: x, targets: y)
        try model.initialize(seed: 99)
        try t.step(inputs: x, targets: y)
        expectEqualElements(bits(t.ranks[1].model.parameters), bits(model.parameters))
    }
}

struct DataParallelFailureTests {
    private func trainer(dp: Int, watchdog: Double) throws -> Trainer {
        var s = StrategyConfig()
        s.dp = dp
        s.watchdogSeconds = watchdog
        return try Trainer(model: try mlp(), loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: s)
    }

    @Test(arguments: [2, 3])
    func aFailingRankFailsTheStepOnEveryRank(dp: Int) throws {
        let t = try trainer(dp: dp, watchdog: 2)
        let (x, y) = try batch(24, step: 0)
        try t.step(inputs: x, targets: y)
        t.faultInjection = .fail(rank: dp - 1, step: 1)
        let start = Date()
        let e = parmlError { try t.step(inputs: x, targets: y) }
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(e?.message.contains("rank \(dp - 1)") == true, "\(String(describing: e))")
        // Every rank left its collectives with an error, none hangs.
        #expect(t.stepCount == 1)
        let again = parmlError { try t.step(inputs: x, targets: y) }
        #expect(again?.message.contains("earlier step failed") == true)
    }

    @Test func aStalledRankTimesOut() throws {
        let t = try trainer(dp: 2, watchdog: 1)
        let (x, y) = try batch(24, step: 0)
        expectStalledRankTimesOut(t, x: x, y: y)
    }
}
