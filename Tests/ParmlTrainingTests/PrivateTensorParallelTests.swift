import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

// DP-SGD under tensor parallelism: the slices' per-example norms summed over
// the tp group, the replicated layers' added once (PrivateTensorParallel.swift),
// and the noise keyed by the serial element. tp splits sums, so it matches
// serial within tp's rounding bound (TensorParallelTests.tolerance per
// step), not bit for bit; pp × tp runs tp's norm pass stage by stage.

/// 12 → 16 → ReLU → residual[layer_norm → 16 → 32 → GELU → 32 → 16] → 4:
/// a replicated linear and layer_norm, and a column/row pair inside a
/// residual block whose bias the tp all-reduce adds (replicated).
private func residualPairMLP(seed: UInt64 = 8) throws -> Model {
    let m = Model()
    try m.add(try Linear(inFeatures: 12, outFeatures: 16))
    try m.add(Activation(.relu))
    try m.beginResidual()
    try m.add(try LayerNorm(features: 16))
    try m.add(try Linear(inFeatures: 16, outFeatures: 32))
    try m.add(Activation(.gelu))
    try m.add(try Linear(inFeatures: 32, outFeatures: 16))
    try m.endResidual()
    try m.add(try Linear(inFeatures: 16, outFeatures: 4))
    try m.initialize(seed: seed)
    return m
}

/// (N, 2, 6, 6) → conv(2→6, 3×3, pad 1) ReLU conv(6→4, 3×3, pad 1) ReLU
/// AvgPool3 Flatten Linear(16→3): a convolution pair, its bias per channel
/// after the all-reduce.
private func convPair(seed: UInt64 = 9) throws -> Model {
    let m = Model()
    try m.add(try Conv2d(inChannels: 2, outChannels: 6, kernel: (3, 3), padding: (1, 1)))
    try m.add(Activation(.relu))
    try m.add(try Conv2d(inChannels: 6, outChannels: 4, kernel: (3, 3), padding: (1, 1)))
    try m.add(Activation(.relu))
    try m.add(try AvgPool2d(kernel: (3, 3)))
    try m.add(Flatten())
    try m.add(try Linear(inFeatures: 16, outFeatures: 3))
    try m.initialize(seed: seed)
    return m
}

private func convBatch(_ k: Int) throws -> (Tensor, Tensor) {
    let n = 12
    let x = randomArray(n * 2 * 6 * 6, seed: 43, stream: UInt64(k))
    return (try Tensor(x, shape: Shape(n, 2, 6, 6)), try Tensor((0..<n).map { Float(($0 * 5 + k) % 3) }, shape: Shape(n)))
}

private func layout(dp: Int = 1, pp: Int = 1, tp: Int = 1, microBatches: Int = 1, deterministic: Bool = true) -> StrategyConfig {
    var s = StrategyConfig()
    (s.dp, s.pp, s.tp, s.microBatches, s.deterministic) = (dp, pp, tp, microBatches, deterministic)
    s.gradientChunk = 8
    s.seed = 11
    s.blasThreads = 1
    s.watchdogSeconds = 20
    return s
}

struct PrivateTensorParallelTests {
    /// 4 steps: tp's bound per step, times 4.
    static let tolerance = TensorParallelTests.tolerance * 4

    @Test func tensorParallelPrivateTrainingMatchesSerialWithinRounding() throws {
        let models: [(String, () throws -> Model, ((Int) throws -> (Tensor, Tensor))?)] = [
            ("MLP (a pair with dropout between)", { try privateMLP() }, nil),
            ("residual block holding a pair", { try residualPairMLP() }, nil),
            ("convolution pair", { try convPair() }, convBatch),
        ]
        for (name, make, batch) in models {
            func train(_ s: StrategyConfig) throws -> [Float] {
                if let batch { return try trainPrivately(s, try make(), batch: batch) }
                return try trainPrivately(s, try make())
            }
            for deterministic in [false, true] {
                let serial = try train(layout(deterministic: deterministic))
                let tp2 = try train(layout(tp: 2, deterministic: deterministic))
                let d = relativeDifference(tp2, serial)
                #expect(d <= Self.tolerance, "\(name), tp 2, deterministic \(deterministic): relative Δ \(d)")
                // Clipping and noise move the model far from ordinary training's: the match above is the private one's.
                let plain = try trainPlain(layout(deterministic: deterministic), try make(), batch: batch)
                #expect(relativeDifference(serial, plain) > 1e-3, "\(name)")
            }
        }
    }

    /// tp 2 combined with pp 2 (GPipe and 1F1B) and dp 2: pp passes tp's
    /// two running sums from stage to stage in tp's order, so pp 2 × tp 2
    /// is tp 2 bit for bit; dp 2 × tp 2 clips each data rank's examples
    /// alike, also bit for bit in deterministic mode.
    @Test func hybridsWithTensorParallelismEqualTensorParallelism() throws {
        let tp2 = try trainPrivately(layout(tp: 2), try privateMLP())
        for schedule in [PipelineSchedule.gpipe, .oneForwardOneBackward] {
            var s = layout(pp: 2, tp: 2, microBatches: 2)
            s.pipelineSchedule = schedule
            expectSameBits(try trainPrivately(s, try privateMLP()), tp2, "pp 2 × tp 2, \(schedule)")
        }
        expectSameBits(try trainPrivately(layout(dp: 2, tp: 2), try privateMLP()), tp2, "dp 2 × tp 2")
    }
}

/// The same steps without privacy.
private func trainPlain(_ s: StrategyConfig, _ model: Model, batch: ((Int) throws -> (Tensor, Tensor))?) throws -> [Float] {
    var c = OptimizerConfig()
    (c.kind, c.learningRate, c.momentum) = (.sgd, 0.1, 0.9)
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: c, strategy: s)
    for k in 0..<4 {
        let (x, y) = try batch?(k) ?? residualMLPBatch(20, step: k)
        try t.step(inputs: x, targets: y)
    }
    return model.parameters!.toArray()
}
