import ParmlData
import ParmlModel
import ParmlSerialization
import ParmlTensor
import ParmlTraining
import Testing
import _ParmlTestSupport

// Resume in default (fast) mode, where one layout is reproducible run after
// run, so a resumed serial run must give the uninterrupted run's bits. The
// deterministic-mode chains (ResumeTests) never cross the paths only
// default mode takes: SGD with momentum folded into the backward pass's
// GEMMs (the gradient arena is the momentum then), and fit's data order.

private func data(_ n: Int, seed: UInt64) throws -> Dataset {
    let x = randomArray(n * 12, seed: seed)
    let y = (0..<n).map { Float(($0 * 5 + $0 / 3) % 4) }
    return try Dataset(inputs: Tensor(x, shape: Shape(n, 3, 4)), targets: Tensor(y, shape: Shape(n)))
}

/// Each optimizer's own path: SGD with momentum folded into the backward
/// GEMMs (serial default mode) and not (a clip it never reaches stops the
/// fold), Nesterov, Adam with clipping, AdamW.
enum ResumeOptimizer: String, CaseIterable, CustomTestStringConvertible {
    case sgdMomentumFolded, sgdMomentumUnfolded, sgdNesterov, adamClipped, adamW
    var testDescription: String { rawValue }

    var config: OptimizerConfig {
        var c = OptimizerConfig()
        c.schedule.kind = .cosine
        c.schedule.warmupSteps = 2
        c.schedule.totalSteps = 20
        switch self {
        case .sgdMomentumFolded, .sgdMomentumUnfolded, .sgdNesterov:
            c.kind = .sgd
            c.learningRate = 0.05
            c.momentum = 0.9
            c.weightDecay = 1e-4
            c.nesterov = self == .sgdNesterov
            if self == .sgdMomentumUnfolded { c.clipGradNorm = 1e30 }
        case .adamClipped:
            c.kind = .adam
            c.learningRate = 0.01
            c.clipGradNorm = 0.5
        case .adamW:
            c.kind = .adamW
            c.learningRate = 0.01
            c.weightDecay = 0.01
        }
        return c
    }
}

private func fastTrainer(_ o: ResumeOptimizer, modelSeed: UInt64) throws -> Trainer {
    var s = StrategyConfig()
    s.seed = 9
    s.blasThreads = 1
    return try Trainer(model: try everyKindModel(seed: modelSeed), loss: .crossEntropy, optimizer: o.config, strategy: s)
}

private func fitOptions(_ epochs: Int) -> FitOptions {
    var f = FitOptions()
    f.epochs = epochs
    f.batchSize = 8
    return f
}

@Suite struct DefaultModeResumeTests {
    /// fit(4 epochs) against fit(2), checkpoint, a new trainer from another
    /// initialisation, fit(2): parameters and optimizer state, bit for bit.
    @Test(arguments: ResumeOptimizer.allCases)
    func fitResumedFromACheckpointEqualsTheUninterruptedFit(optimizer: ResumeOptimizer) throws {
        let train = try data(44, seed: 3)
        let whole = try fastTrainer(optimizer, modelSeed: 5)
        #expect(whole.optimizer.foldsMomentum == (optimizer == .sgdMomentumFolded))
        try whole.fit(train, options: fitOptions(4))

        let first = try fastTrainer(optimizer, modelSeed: 5)
        try first.fit(train, options: fitOptions(2))
        let saved = encodedArray(try CheckpointFile.encode(first))
        let resumed = try fastTrainer(optimizer, modelSeed: 77)
        try saved.withUnsafeBytes { try CheckpointFile.restore($0, into: resumed) }
        #expect(resumed.epochCount == 2 && resumed.stepCount == first.stepCount)
        try resumed.fit(train, options: fitOptions(2))

        expectEqualElements(parameterBits(resumed.model), parameterBits(whole.model), "\(optimizer): resumed fit differs")
        let a = try resumed.captureState().optimizerState, b = try whole.captureState().optimizerState
        #expect(a.count == b.count && a.count == (optimizer == .adamClipped || optimizer == .adamW ? 2 : 1))
        for (p, q) in zip(a, b) {
            expectEqualElements(p.toArray().map(\.bitPattern), q.toArray().map(\.bitPattern), "\(optimizer): optimizer state differs")
        }
    }

    /// The same two trainers must differ when the checkpoint is not loaded
    /// (the test above would pass vacuously if fit ignored the model), and
    /// a resume that restarts the data order at epoch 0 must differ too.
    @Test func theComparisonCanFail() throws {
        let train = try data(44, seed: 3)
        let whole = try fastTrainer(.sgdMomentumFolded, modelSeed: 5)
        try whole.fit(train, options: fitOptions(4))
        let restarted = try fastTrainer(.sgdMomentumFolded, modelSeed: 5)
        try restarted.fit(train, options: fitOptions(2))
        let saved = encodedArray(try CheckpointFile.encode(restarted))
        let fresh = try fastTrainer(.sgdMomentumFolded, modelSeed: 5)
        try saved.withUnsafeBytes { try CheckpointFile.restore($0, into: fresh) }
        // Rewind the epoch count: the data order of epochs 0 and 1 again.
        try fresh.restoreState(
            step: fresh.stepCount, epoch: 0, optimizerKind: .sgd, optimizerState: try fresh.captureState().optimizerState)
        try fresh.fit(train, options: fitOptions(2))
        #expect(parameterBits(fresh.model) != parameterBits(whole.model))
    }
}
