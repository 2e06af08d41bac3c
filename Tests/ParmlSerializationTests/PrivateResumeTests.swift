import ParmlData
import ParmlModel
import ParmlSerialization
import ParmlTensor
import ParmlTraining
import Testing
import _ParmlTestSupport

// A checkpoint of a private run carries the accountant's record (private
// steps in runs of equal q and σ): a resumed run reports the ε the
// uninterrupted run does and trains the same model, bit for bit in
// deterministic mode (Poisson batches keyed by epoch, noise by step).

private func privateTrainer(modelSeed: UInt64) throws -> Trainer {
    let m = Model()
    try m.add(try Linear(inFeatures: 6, outFeatures: 12))
    try m.add(Activation(.tanh))
    try m.add(try Linear(inFeatures: 12, outFeatures: 3))
    try m.initialize(seed: modelSeed)
    var o = OptimizerConfig()
    o.kind = .sgd
    o.learningRate = 0.2
    o.momentum = 0.9
    var s = StrategyConfig()
    s.deterministic = true
    s.seed = 3
    s.blasThreads = 1
    let t = try Trainer(model: m, loss: .crossEntropy, optimizer: o, strategy: s)
    try t.setPrivacy(PrivacyConfig(noiseMultiplier: 1.1, maxGradNorm: 0.5))
    return t
}

private func data() throws -> Dataset {
    let n = 120
    let x = randomArray(n * 6, seed: 9, stream: 1)
    let y = (0..<n).map { Float(($0 * 5) % 3) }
    return try Dataset(inputs: try Tensor(x, shape: Shape(n, 6)), targets: try Tensor(y, shape: Shape(n)))
}

private func fit(_ t: Trainer, epochs: Int) throws {
    var o = FitOptions()
    o.epochs = epochs
    o.batchSize = 20
    _ = try t.fit(try data(), options: o)
}

@Suite struct PrivateResumeTests {
    @Test func aResumedPrivateRunKeepsItsAccountingAndModel() throws {
        let reference = try privateTrainer(modelSeed: 5)
        try fit(reference, epochs: 3)
        let first = try privateTrainer(modelSeed: 5)
        try fit(first, epochs: 2)
        let saved = encodedArray(try CheckpointFile.encode(first))
        let resumed = try privateTrainer(modelSeed: 77)
        try saved.withUnsafeBytes { try CheckpointFile.restore($0, into: resumed) }
        #expect(resumed.privacyRecord == [PrivacyLedgerEntry(samplingRate: 20.0 / 120, noiseMultiplier: 1.1, steps: 12)])
        #expect(try resumed.privacySpent(delta: 1e-5) == first.privacySpent(delta: 1e-5))
        try fit(resumed, epochs: 1)
        #expect(resumed.privateSteps == 18)
        #expect(try resumed.privacySpent(delta: 1e-5) == reference.privacySpent(delta: 1e-5))
        expectEqualElements(parameterBits(resumed.model), parameterBits(reference.model))
    }

    @Test func aCheckpointWithoutPrivateStepsClearsTheRecord() throws {
        let priv = try privateTrainer(modelSeed: 5)
        try fit(priv, epochs: 1)
        let plain = try privateTrainer(modelSeed: 5)
        try plain.setPrivacy(nil)
        let saved = encodedArray(try CheckpointFile.encode(plain))
        #expect(priv.privateSteps == 6)
        try saved.withUnsafeBytes { try CheckpointFile.restore($0, into: priv) }
        #expect(priv.privacyRecord.isEmpty && priv.privateSteps == 0)
        #expect(try priv.privacySpent(delta: 1e-5) == 0)
    }

    @Test func aDamagedRecordIsRefused() throws {
        let t = try privateTrainer(modelSeed: 5)
        for bad in [
            PrivacyLedgerEntry(samplingRate: 0, noiseMultiplier: 1, steps: 1),
            PrivacyLedgerEntry(samplingRate: 0.5, noiseMultiplier: -.infinity, steps: 1),
            PrivacyLedgerEntry(samplingRate: 0.5, noiseMultiplier: 1, steps: -3),
        ] {
            expectError(parmlError { try t.restorePrivacyRecord([bad]) }, "format", mentions: ["privacy record"])
        }
        #expect(t.privacyRecord.isEmpty)
    }
}
