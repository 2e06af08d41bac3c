import ParmlModel
import ParmlSerialization
import ParmlTensor
import ParmlTraining
import Testing
import _ParmlTestSupport

// Promise 3 (layout-free files): a checkpoint written under one layout
// resumes under any other, and the resumed run is the uninterrupted run,
// bit for bit, in deterministic mode. Only data parallelism (dp, ZeRO 0-3)
// exists in this version; tp and pp chains wait for those layouts.

private func batch(step: Int) throws -> (Tensor, Tensor) {
    let n = 32
    let x = randomArray(n * 12, seed: 77, stream: UInt64(step))
    let y = (0..<n).map { Float(($0 * 7 + step) % 4) }
    return (try Tensor(x, shape: Shape(n, 12)), try Tensor(y, shape: Shape(n)))
}

private func optimizer(_ kind: OptimizerKind) -> OptimizerConfig {
    var c = OptimizerConfig()
    c.kind = kind
    c.schedule.kind = .cosine
    c.schedule.warmupSteps = 2
    c.schedule.totalSteps = 10
    if kind == .sgd {
        c.learningRate = 0.05
        c.momentum = 0.9
        c.weightDecay = 1e-4
    } else {
        c.learningRate = 0.01
        c.weightDecay = 0.01
        c.clipGradNorm = 0.5
    }
    return c
}

private func trainer(_ kind: OptimizerKind, dp: Int, zero: Int, modelSeed: UInt64) throws -> Trainer {
    var s = StrategyConfig()
    s.dp = dp
    s.zeroStage = zero
    s.deterministic = true
    s.gradientChunk = 8
    s.seed = 3
    s.watchdogSeconds = 20
    return try Trainer(model: try everyKindModel(seed: modelSeed), loss: .crossEntropy, optimizer: optimizer(kind), strategy: s)
}

private func steps(_ t: Trainer, _ range: Range<Int>) throws {
    for k in range {
        let (x, y) = try batch(step: k)
        try t.step(inputs: x, targets: y)
    }
}

@Suite struct ResumeTests {
    @Test(arguments: [OptimizerKind.sgd, .adamW])
    func chainOfLayoutsEqualsUninterruptedRun(kind: OptimizerKind) throws {
        let reference = try trainer(kind, dp: 1, zero: 0, modelSeed: 5)
        try steps(reference, 0..<8)

        // serial → dp2 ZeRO-1 → dp3 ZeRO-3 → dp2 ZeRO-0 → serial, two steps each
        let layouts = [(1, 0), (2, 1), (3, 3), (2, 0), (1, 0)]
        var saved: [UInt8] = []
        var step = 0
        var last: Trainer?
        for (i, (dp, zero)) in layouts.enumerated() {
            // A different initialisation: the checkpoint must overwrite it.
            let t = try trainer(kind, dp: dp, zero: zero, modelSeed: i == 0 ? 5 : 1000 + UInt64(i))
            if i > 0 {
                try saved.withUnsafeBytes { try CheckpointFile.restore($0, into: t) }
                #expect(t.stepCount == step)
            }
            let n = i == layouts.count - 1 ? 8 - step : 2
            try steps(t, step..<step + n)
            step += n
            saved = encodedArray(try CheckpointFile.encode(t))
            last = t
        }
        let t = try #require(last)
        #expect(t.stepCount == reference.stepCount)
        #expect(t.learningRate == reference.learningRate)
        let same = parameterBits(t.model) == parameterBits(reference.model)
        #expect(same, "\(kind): resumed parameters differ from the uninterrupted run")
        let a = try reference.captureState().optimizerState, b = try t.captureState().optimizerState
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) {
            let sameState = x.toArray().map(\.bitPattern) == y.toArray().map(\.bitPattern)
            #expect(sameState, "\(kind): optimizer state differs")
        }
    }

    @Test func aCheckpointGivesItsModel() throws {
        let t = try trainer(.adamW, dp: 2, zero: 1, modelSeed: 5)
        try steps(t, 0..<2)
        let bytes = encodedArray(try CheckpointFile.encode(t))
        let m = try bytes.withUnsafeBytes { try ModelFile.decode($0) }
        #expect(m.summary == t.model.summary)
        #expect(parameterBits(m) == parameterBits(t.model))
        // Damage inside the checkpoint is still caught.
        var bad = bytes
        bad[bad.count / 2] ^= 1
        expectError(modelError(bad), "format", mentions: ["checkpoint file is damaged"])
    }

    @Test func mismatchedTrainerIsRefusedAndUnchanged() throws {
        let src = try trainer(.adamW, dp: 1, zero: 0, modelSeed: 5)
        try steps(src, 0..<1)
        let bytes = encodedArray(try CheckpointFile.encode(src))

        let sgd = try trainer(.sgd, dp: 1, zero: 0, modelSeed: 9)
        let before = parameterBits(sgd.model)
        expectError(parmlError { try bytes.withUnsafeBytes { try CheckpointFile.restore($0, into: sgd) } }, "invalidArgument", mentions: ["adamW"])
        #expect(parameterBits(sgd.model) == before && sgd.stepCount == 0)

        let other = Model()
        try other.add(try Linear(inFeatures: 12, outFeatures: 4))
        try other.initialize(seed: 1)
        let small = try Trainer(model: other, loss: .crossEntropy, optimizer: optimizer(.adamW), strategy: StrategyConfig())
        expectError(parmlError { try bytes.withUnsafeBytes { try CheckpointFile.restore($0, into: small) } }, "invalidArgument", mentions: ["layer 0"])

        // A model file is not a checkpoint.
        let model = encodedArray(try ModelFile.encode(src.model))
        expectError(parmlError { try model.withUnsafeBytes { try CheckpointFile.restore($0, into: sgd) } }, "format")
    }
}
