import Foundation
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// Promise 1 for batch_norm: with 'global' statistics every layout (dp,
// pp with any micro-batch count and either schedule, ZeRO 1–3, dp × pp)
// gives serial training's bits in deterministic mode, running statistics
// included; in the default mode they agree to rounding. 'local' statistics
// differ between layouts in the default mode (a rank's rows), and agree
// again in deterministic mode (a chunk's).

/// conv(1→4, 3×3, pad 1) → batch_norm(4) → relu → max_pool(2) → flatten →
/// linear(64→8) → batch_norm(8) → relu → linear(8→3): a 2-D and a 1-D
/// batch_norm, in different stages when pp = 2.
private func bnModel(scope: BatchStatisticsScope = .global, seed: UInt64 = 31) throws -> Model {
    let m = Model()
    try m.add(try Conv2d(inChannels: 1, outChannels: 4, kernel: (3, 3), padding: (1, 1)))
    try m.add(try BatchNorm(channels: 4, scope: scope))
    try m.add(Activation(.relu))
    try m.add(try MaxPool2d(kernel: (2, 2)))
    try m.add(Flatten())
    try m.add(try Linear(inFeatures: 64, outFeatures: 8))
    try m.add(try BatchNorm(channels: 8, momentum: 0.3, scope: scope))
    try m.add(Activation(.relu))
    try m.add(try Linear(inFeatures: 8, outFeatures: 3))
    try m.initialize(seed: seed)
    return m
}

private func bnBatch(_ n: Int, step: Int) throws -> (Tensor, Tensor) {
    let x = randomArray(n * 64, seed: 41, stream: UInt64(step), low: -1, high: 2)
    let y = (0..<n).map { Float(($0 * 7 + step) % 3) }
    return (try Tensor(x, shape: Shape(n, 1, 8, 8)), try Tensor(y, shape: Shape(n)))
}

/// Parameters (running statistics included) and losses after `steps` steps.
private func trainBN(
    _ l: Layout, deterministic: Bool, scope: BatchStatisticsScope = .global, n: Int = 22, steps: Int = 4, adam: Bool = false
) throws -> (params: [Float], losses: [Float], plan: String) {
    var s = StrategyConfig()
    s.dp = l.dp
    s.pp = l.pp
    s.microBatches = l.m
    s.pipelineSchedule = l.schedule
    s.zeroStage = l.zero
    s.deterministic = deterministic
    s.gradientChunk = 4
    s.seed = 4
    s.watchdogSeconds = 20
    s.blasThreads = 1
    var o = OptimizerConfig()
    if adam {
        o.kind = .adamW
        o.learningRate = 0.01
        o.weightDecay = 0.01
        o.clipGradNorm = 0.5
    } else {
        o.kind = .sgd
        o.learningRate = 0.1
        o.momentum = 0.9
        o.weightDecay = 1e-3
    }
    let model = try bnModel(scope: scope)
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: o, strategy: s)
    var losses: [Float] = []
    for k in 0..<steps {
        let (x, y) = try bnBatch(n, step: k)
        losses.append(try t.step(inputs: x, targets: y).loss)
    }
    return (model.parameters!.toArray(), losses, t.planDescription)
}

/// The running statistics of both batch_norm layers (arena offsets).
private func runningStatistics(_ p: [Float]) -> [Float] {
    // conv 4·9 + 4, bn 4 + 4 + (4 + 4), linear 64·8 + 8, bn 8 + 8 + (8 + 8), linear 8·3 + 3
    let bn1 = 40 + 8, bn2 = 40 + 16 + 520 + 16
    return Array(p[bn1..<(bn1 + 8)] + p[bn2..<(bn2 + 16)])
}

@Suite struct BatchNormTrainingTests {
    static let layouts: [Layout] = [
        Layout(dp: 2), Layout(dp: 3), Layout(dp: 2, zero: 1), Layout(dp: 2, zero: 2), Layout(dp: 3, zero: 3),
        Layout(pp: 2, m: 1), Layout(pp: 2, m: 2, schedule: .gpipe), Layout(pp: 2, m: 3),
        Layout(pp: 3, m: 4), Layout(dp: 2, pp: 2, m: 2), Layout(dp: 2, pp: 2, m: 3, zero: 1), Layout(m: 3),
    ]

    @Test(arguments: layouts)
    func deterministicLayoutsAreBitIdenticalToSerial(_ layout: Layout) throws {
        let serial = try trainBN(Layout(), deterministic: true)
        let other = try trainBN(layout, deterministic: true)
        expectSameBits(other.params, serial.params, "\(layout): parameters and running statistics")
        // The reported loss is a sum of the ranks' partial sums: rounding apart.
        #expect(maxAbsDiff(other.losses, serial.losses) < 1e-6, "\(layout): losses \(other.losses) vs \(serial.losses)")
    }

    @Test func deterministicAdamWithClippingMatchesAcrossLayouts() throws {
        let serial = try trainBN(Layout(), deterministic: true, adam: true)
        for layout in [Layout(dp: 2, zero: 2), Layout(dp: 2, pp: 2, m: 2)] {
            expectSameBits(try trainBN(layout, deterministic: true, adam: true).params, serial.params, "\(layout)")
        }
    }

    /// The chunks' moments combine to the whole batch's: deterministic
    /// training (six chunks) follows the default mode's single piece to
    /// rounding, and the running statistics moved.
    @Test func chunkedStatisticsAreTheWholeBatchs() throws {
        let whole = try trainBN(Layout(), deterministic: false)
        let chunked = try trainBN(Layout(), deterministic: true)
        #expect(maxAbsDiff(chunked.params, whole.params) < 2e-5)
        let fresh = runningStatistics(try bnModel().parameters!.toArray())
        #expect(maxAbsDiff(runningStatistics(whole.params), fresh) > 1e-2)
    }

    @Test(arguments: [Layout(dp: 2), Layout(pp: 2, m: 2), Layout(dp: 2, pp: 2, m: 2, zero: 2)])
    func defaultModeLayoutsAgreeWithSerialToRounding(_ layout: Layout) throws {
        let serial = try trainBN(Layout(), deterministic: false)
        let other = try trainBN(layout, deterministic: false)
        #expect(maxAbsDiff(other.params, serial.params) < 2e-5, "\(layout)")
    }

    /// 'local': a rank's rows in the default mode (dp 2 differs from
    /// serial), a chunk's in deterministic mode (layouts agree bit for bit).
    @Test func localStatistics() throws {
        let serial = try trainBN(Layout(), deterministic: false, scope: .local)
        let dp2 = try trainBN(Layout(dp: 2), deterministic: false, scope: .local)
        #expect(maxAbsDiff(dp2.params, serial.params) > 1e-3)
        let serialChunks = try trainBN(Layout(), deterministic: true, scope: .local)
        for layout in [Layout(dp: 2), Layout(pp: 2, m: 3)] {
            expectSameBits(try trainBN(layout, deterministic: true, scope: .local).params, serialChunks.params, "local \(layout)")
        }
        // The running statistics follow the global batch in both scopes: after
        // one step, the first batch_norm's (same input either way) are the same bits.
        let local = try trainBN(Layout(dp: 2), deterministic: true, scope: .local, steps: 1)
        let global = try trainBN(Layout(dp: 2), deterministic: true, steps: 1)
        expectSameBits(Array(runningStatistics(local.params)[..<8]), Array(runningStatistics(global.params)[..<8]), "first running statistics")
        #expect(local.params != global.params)
    }

    /// Between a tp-split convolution pair each rank normalises its own
    /// channels: tp 2 (and dp 2 × tp 2) follows serial training to rounding,
    /// running statistics included (gathered into the host's model).
    @Test func channelSplitBetweenConvolutionPairs() throws {
        func model() throws -> Model {
            let m = Model()
            try m.add(try Conv2d(inChannels: 1, outChannels: 4, kernel: (3, 3), padding: (1, 1)))
            try m.add(try BatchNorm(channels: 4))
            try m.add(Activation(.relu))
            try m.add(try MaxPool2d(kernel: (2, 2)))
            try m.add(try Conv2d(inChannels: 4, outChannels: 6, kernel: (3, 3), padding: (1, 1)))
            try m.add(try BatchNorm(channels: 6))
            try m.add(Activation(.relu))
            try m.add(GlobalAvgPool())
            try m.add(try Linear(inFeatures: 6, outFeatures: 3))
            try m.initialize(seed: 9)
            return m
        }
        func train(dp: Int, tp: Int) throws -> ([Float], String) {
            var s = StrategyConfig()
            (s.dp, s.tp, s.deterministic, s.gradientChunk, s.blasThreads) = (dp, tp, true, 4, 1)
            var o = OptimizerConfig()
            (o.learningRate, o.momentum) = (0.1, 0.9)
            let m = try model()
            let t = try Trainer(model: m, loss: .crossEntropy, optimizer: o, strategy: s)
            for k in 0..<4 {
                let (x, y) = try bnBatch(14, step: k)
                _ = try t.step(inputs: x, targets: y)
            }
            return (m.parameters!.toArray(), t.planDescription)
        }
        let (serial, _) = try train(dp: 1, tp: 1)
        for (dp, tp) in [(1, 2), (2, 2)] {
            let (split, plan) = try train(dp: dp, tp: tp)
            #expect(plan.contains("batch_norm on each rank's 2 of 4 channels"), "\(plan)")
            #expect(maxAbsDiff(split, serial) < 1e-4, "dp \(dp) tp \(tp): \(maxAbsDiff(split, serial))")
        }
    }

    @Test func planSaysWhatTheStatisticsAreOver() throws {
        let plan = try trainBN(Layout(dp: 2, pp: 2, m: 2), deterministic: true, steps: 1).plan
        #expect(plan.contains("batch_norm: each one waits for all of a step's micro-batches"))
        #expect(plan.contains("GPipe (batch_norm needs every forward before any backward)"))
    }

    @Test func interleavedAndNestedBatchNormAreRefused() throws {
        var s = StrategyConfig()
        s.pp = 2
        s.microBatches = 2
        s.pipelineSchedule = .interleaved
        s.virtualStages = 2
        let model = try bnModel()
        expectError(parmlError { _ = try Trainer(model: model, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s) }, "unsupported")
        let nested = Model()
        try nested.add(try Linear(inFeatures: 4, outFeatures: 4))
        try nested.beginResidual()
        try nested.add(try BatchNorm(channels: 4))
        try nested.endResidual()
        try nested.initialize(seed: 1)
        expectError(parmlError { _ = try Trainer(model: nested, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: StrategyConfig()) }, "unsupported")
    }
}
