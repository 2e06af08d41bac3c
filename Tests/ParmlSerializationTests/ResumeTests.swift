import ParmlModel
import ParmlSerialization
import ParmlTensor
import ParmlTraining
import Testing
import _ParmlTestSupport

// Promise 3 (layout-free files): a checkpoint written under one layout
// resumes under any other, and the resumed run is the uninterrupted run,
// bit for bit, in deterministic mode (within tensor parallelism's stated
// tolerance where tp is involved).

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
    try layoutTrainer(kind, Layout(dp: dp, zero: zero), model: try everyKindModel(seed: modelSeed))
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
        // serial → dp2 ZeRO-1 → dp3 ZeRO-3 → dp2 ZeRO-0 → serial, two steps each
        let layouts = [Layout(), Layout(dp: 2, zero: 1), Layout(dp: 3, zero: 3), Layout(dp: 2), Layout()]
        let (resumed, reference) = try chain(kind, layouts, model: { try everyKindModel(seed: $0) })
        let same = parameterBits(resumed.model) == parameterBits(reference.model)
        #expect(same, "\(kind): resumed parameters differ from the uninterrupted run")
        try expectSameState(resumed, reference, tolerance: 0)
    }

    @Test func aCheckpointGivesItsModel() throws {
        let t = try trainer(.adamW, dp: 2, zero: 1, modelSeed: 5)
        try steps(t, 0..<2)
        let bytes = encodedArray(try CheckpointFile.encode(t))
        let m = try bytes.withUnsafeBytes { try ModelFile.decode($0) }
        #expect(m.summary == t.model.summary)
        expectEqualElements(parameterBits(m), parameterBits(t.model))
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

    /// Pipelines and hybrids: serial → dp2×pp2 (1F1B) → ZeRO-3 dp2 → pp3
    /// (GPipe) → serial, bit for bit against the uninterrupted run.
    @Test(arguments: [OptimizerKind.sgd, .adamW])
    func pipelineChainEqualsUninterruptedRun(kind: OptimizerKind) throws {
        let layouts: [Layout] = [
            Layout(), Layout(dp: 2, pp: 2, m: 3), Layout(dp: 2, zero: 3), Layout(pp: 3, m: 2, gpipe: true), Layout(),
        ]
        let (resumed, reference) = try chain(kind, layouts, model: { try everyKindModel(seed: $0) })
        let same = parameterBits(resumed.model) == parameterBits(reference.model)
        #expect(same, "\(kind): resumed parameters differ from the uninterrupted run")
        try expectSameState(resumed, reference, tolerance: 0)
    }

    /// Tensor parallelism's stated tolerance over the 8 steps of a chain
    /// (TensorParallelTests: 2e-6 × steps, relative to the largest value),
    /// for the parameters and for each optimizer-state tensor alike. Measured
    /// (2026-12-04): parameters 5e-8 (SGD) and 1e-7 (AdamW), state at most
    /// 4.3e-7; a state restored at half precision is off by 2.1e-4 for SGD
    /// momentum while its parameters stay within 5e-6 (the 1e-3 this used to
    /// allow passed that), and a gradient off by 1 % moves momentum by ~1e-2.
    static let tpTolerance: Float = 2e-6 * 8

    /// Tensor parallelism in the chain: serial → dp2×pp2 → tp2 → serial on a
    /// model with a column/row pair. tp splits sums; the chain must stay
    /// inside tpTolerance.
    @Test(arguments: [OptimizerKind.sgd, .adamW])
    func tensorParallelChainStaysWithinTolerance(kind: OptimizerKind) throws {
        let layouts: [Layout] = [Layout(), Layout(dp: 2, pp: 2, m: 2), Layout(tp: 2), Layout(dp: 2, tp: 2, zero: 2), Layout()]
        let (resumed, reference) = try chain(kind, layouts, model: pairModel)
        let d = relativeParameterDifference(resumed, reference)
        #expect(d <= Self.tpTolerance, "\(kind): relative difference \(d) after a chain through tp")
        #expect(d > 0 || kind == .sgd, "tp changes rounding; identical bits would mean tp never ran")
        try expectSameState(resumed, reference, tolerance: Self.tpTolerance)
    }

    /// The classifier split by classes in the chain (its slices saved and
    /// restored like any column-parallel layer's), within the same bound.
    @Test(arguments: [OptimizerKind.sgd, .adamW])
    func splitClassifierChainStaysWithinTolerance(kind: OptimizerKind) throws {
        let layouts: [Layout] = [
            Layout(), Layout(tp: 2, splitClassifier: true), Layout(dp: 2, tp: 2, zero: 2, splitClassifier: true),
            Layout(tp: 2, pp: 2, m: 2, splitClassifier: true), Layout(),
        ]
        let (resumed, reference) = try chain(kind, layouts, model: pairModel)
        let d = relativeParameterDifference(resumed, reference)
        #expect(d <= Self.tpTolerance, "\(kind): relative difference \(d) after a chain through a split classifier")
        try expectSameState(resumed, reference, tolerance: Self.tpTolerance)
    }
}

struct Layout {
    var dp = 1
    var tp = 1
    var zero = 0
    var pp = 1
    var m = 1
    var gpipe = false
    var splitClassifier = false
}

/// 12 → [16 → ReLU → 16] → 4 with a Flatten first: one column/row pair.
private func pairModel(seed: UInt64) throws -> Model {
    let m = Model()
    try m.add(Flatten())
    try m.add(try Linear(inFeatures: 12, outFeatures: 16))
    try m.add(Activation(.relu))
    try m.add(try Linear(inFeatures: 16, outFeatures: 16))
    try m.add(Activation(.tanh))
    try m.add(try Linear(inFeatures: 16, outFeatures: 4))
    try m.initialize(seed: seed)
    return m
}

private func layoutTrainer(_ kind: OptimizerKind, _ l: Layout, model: Model) throws -> Trainer {
    var s = StrategyConfig()
    s.dp = l.dp
    s.tp = l.tp
    s.pp = l.pp
    s.microBatches = l.m
    s.pipelineSchedule = l.gpipe ? .gpipe : .oneForwardOneBackward
    s.zeroStage = l.zero
    s.splitClassifier = l.splitClassifier
    s.deterministic = true
    s.gradientChunk = 8
    s.seed = 3
    s.blasThreads = 1
    s.watchdogSeconds = 20
    return try Trainer(model: model, loss: .crossEntropy, optimizer: optimizer(kind), strategy: s)
}

/// Trains 8 steps through `layouts` (two steps each, a checkpoint between;
/// every trainer after the first starts from another initialisation, which
/// the checkpoint must overwrite), and 8 steps serially without interruption.
private func chain(_ kind: OptimizerKind, _ layouts: [Layout], model: (UInt64) throws -> Model) throws -> (Trainer, Trainer) {
    let reference = try layoutTrainer(kind, Layout(), model: try model(5))
    try steps(reference, 0..<8)
    var saved: [UInt8] = []
    var step = 0
    var last: Trainer?
    for (i, l) in layouts.enumerated() {
        let t = try layoutTrainer(kind, l, model: try model(i == 0 ? 5 : 1000 + UInt64(i)))
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
    return (try #require(last), reference)
}

/// Largest |a − b| over the parameters, relative to the largest |b|.
private func relativeParameterDifference(_ a: Trainer, _ b: Trainer) -> Float {
    let x = a.model.parameters!.toArray(), y = b.model.parameters!.toArray()
    let scale = y.reduce(Float(0)) { max($0, abs($1)) }
    return zip(x, y).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) } / scale
}

private func expectSameState(_ a: Trainer, _ b: Trainer, tolerance: Float) throws {
    #expect(a.stepCount == b.stepCount && a.learningRate == b.learningRate)
    let x = try a.captureState().optimizerState, y = try b.captureState().optimizerState
    #expect(x.count == y.count)
    for (p, q) in zip(x, y) {
        if tolerance == 0 {
            let same = p.toArray().map(\.bitPattern) == q.toArray().map(\.bitPattern)
            #expect(same, "optimizer state differs")
            continue
        }
        let pa = p.toArray(), qa = q.toArray()
        let scale = qa.reduce(Float(0)) { max($0, abs($1)) }
        let d = zip(pa, qa).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(d <= tolerance * max(scale, 1e-30), "optimizer state differs by \(d) (scale \(scale))")
    }
}

/// The factor set_learning_rate (or reduce-on-plateau) puts on the schedule
/// is training state: a checkpoint carries it, so the resumed run goes on at
/// the reduced rate, bit for bit as the uninterrupted one; a file without a
/// factor reads as 1.
@Suite struct LearningRateFactorResumeTests {
    @Test func aCheckpointCarriesTheFactor() throws {
        let reference = try trainer(.sgd, dp: 1, zero: 0, modelSeed: 5)
        try steps(reference, 0..<3)
        try reference.setLearningRate(reference.learningRate / 4)
        let rate = reference.learningRate
        let saved = encodedArray(try CheckpointFile.encode(reference))
        try steps(reference, 3..<6)
        let resumed = try trainer(.sgd, dp: 2, zero: 1, modelSeed: 6)
        try saved.withUnsafeBytes { try CheckpointFile.restore($0, into: resumed) }
        #expect(resumed.learningRate == rate && resumed.learningRateScale == reference.learningRateScale)
        try steps(resumed, 3..<6)
        expectEqualElements(parameterBits(resumed.model), parameterBits(reference.model))
        // Without a factor the field is left out (the bytes stay as before) and reads as 1.
        let plain = try trainer(.sgd, dp: 1, zero: 0, modelSeed: 5)
        let bytes = encodedArray(try CheckpointFile.encode(plain))
        try bytes.withUnsafeBytes { try CheckpointFile.restore($0, into: resumed) }
        #expect(resumed.learningRateScale == 1)
    }
}
