import Foundation
import ParmlData
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining




/// `n` points in the plane from three Gaussian blobs (σ = 0.7) centred at
/// (0, 3), (3, −2), (−3, −2); the label is the blob. Box–Muller over Philox.
func blobs(_ n: Int, seed: UInt64) throws -> Dataset {
    let centres: [(Float, Float)] = [(0, 3), (3, -2), (-3, -2)]
    let u = randomArray(2 * n, seed: seed, stream: 1, low: 0, high: 1)
    var x = [Float](), y = [Float]()
    for i in 0..<n {
        let c = i % 3
        let r = (-2 * log(Double(1 - u[2 * i]))).squareRoot()  // 1 − u ∈ (0, 1]
        let a = 2 * Double.pi * Double(u[2 * i + 1])
        x.append(centres[c].0 + 0.7 * Float(r * cos(a)))
        x.append(centres[c].1 + 0.7 * Float(r * sin(a)))
        y.append(Float(c))
    }
    return try Dataset(inputs: try Tensor(x, shape: Shape(n, 2)), targets: try Tensor(y, shape: Shape(n)))
}

/// y = 2·x0 − 3·x1 + 0.5 on x ∈ U(−1, 1)²: a regression a Linear(2, 1) fits exactly.
func linearData(_ n: Int, seed: UInt64) throws -> Dataset {
    let x = randomArray(2 * n, seed: seed, stream: 2)
    var y = [Float](repeating: 0, count: n)
    for i in 0..<n {
        let a: Float = 2 * x[2 * i], b: Float = 3 * x[2 * i + 1]
        y[i] = a - b + 0.5
    }
    return try Dataset(inputs: try Tensor(x, shape: Shape(n, 2)), targets: try Tensor(y, shape: Shape(n, 1)))
}

/// A 2 → hidden → 3 classifier; `dropout` > 0 inserts a Dropout layer,
/// `layerNorm` a LayerNorm after the first Linear.
func classifier(seed: UInt64, hidden: Int = 16, dropout: Float = 0, layerNorm: Bool = false) throws -> Model {
    let m = Model()
    try m.add(try Linear(inFeatures: 2, outFeatures: hidden))
    if layerNorm { try m.add(try LayerNorm(features: hidden)) }
    try m.add(Activation(.tanh))
    if dropout > 0 { try m.add(try Dropout(probability: dropout)) }
    try m.add(try Linear(inFeatures: hidden, outFeatures: 3))
    try m.initialize(seed: seed)
    return m
}

func bits(_ t: Tensor?) -> [UInt32] { t?.toArray().map(\.bitPattern) ?? [] }

/// Stalls rank 1 of `t` for 4 s in its next step (watchdog 1 s): the step
/// must fail on every rank well before the stall ends, naming rank 1.
func expectStalledRankTimesOut(_ t: Trainer, x: Tensor, y: Tensor, sourceLocation: SourceLocation = #_sourceLocation) {
    // The property: the step returns with an error while the rank still
    // sleeps (about 2 watchdogs, 2 s here), not after it wakes (8 s).
    t.faultInjection = .stall(rank: 1, step: t.stepCount, seconds: 8)
    let start = Date()
    let e = parmlError { try t.step(inputs: x, targets: y) }
    let elapsed = Date().timeIntervalSince(start)
    #expect(elapsed < 7, "took \(elapsed) s", sourceLocation: sourceLocation)
    #expect(e?.message.contains("rank 1") == true, "\(String(describing: e))", sourceLocation: sourceLocation)
}

/// 12 → w → ReLU → `blocks` × residual(LayerNorm, w → w, GELU, Dropout) →
/// 4: blocks + 3 top-level layers, the pipeline tests' model. With marks,
/// a stage (or run of layers) starts at each of those top-level layers
/// (2 + b for block b).
func residualMLP(width w: Int, blocks: Int = 1, marks: Set<Int> = [], seed: UInt64) throws -> Model {
    let m = Model()
    try m.add(try Linear(inFeatures: 12, outFeatures: w))
    try m.add(Activation(.relu))
    for b in 0..<blocks {
        if marks.contains(2 + b) { try m.markStageBoundary() }
        try m.beginResidual()
        try m.add(try LayerNorm(features: w))
        try m.add(try Linear(inFeatures: w, outFeatures: w))
        try m.add(Activation(.gelu))
        try m.add(try Dropout(probability: 0.2))
        try m.endResidual()
    }
    try m.add(try Linear(inFeatures: w, outFeatures: 4))
    try m.initialize(seed: seed)
    return m
}

/// Step `step`'s batch of `n` rows for `residualMLP`: 12 features, 4 classes.
func residualMLPBatch(_ n: Int, step: Int, seed: UInt64 = 21) throws -> (Tensor, Tensor) {
    let x = randomArray(n * 12, seed: seed, stream: UInt64(step))
    let y = (0..<n).map { Float(($0 * 5 + step) % 4) }
    return (try Tensor(x, shape: Shape(n, 12)), try Tensor(y, shape: Shape(n)))
}

/// Largest |a − b| over the parameters, relative to the largest |b|.
func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    let scale = b.reduce(0) { max($0, Double(abs($1))) }
    return maxAbsDiff(a, b) / max(scale, 1e-30)
}

/// nanoGPT's shape in miniature: token and position embeddings, `blocks`
/// pre-LayerNorm blocks (attention, MLP of `hidden` units, 4·width by
/// default), a final norm and a tied head (or, `tiedHead` false, a linear
/// classifier without bias).
func miniGPT(
    vocabulary v: Int, width c: Int, context t: Int, blocks: Int, heads: Int, seed: UInt64, hidden: Int? = nil,
    tiedHead: Bool = true
) throws -> Model {
    let h = hidden ?? 4 * c
    let m = Model()
    try m.add(try Embedding(count: v, dim: c, initStd: 0.02))
    try m.add(try PositionEmbedding(positions: t, dim: c, initStd: 0.02))
    for _ in 0..<blocks {
        try m.beginResidual()
        try m.add(try LayerNorm(features: c))
        try m.add(try CausalSelfAttention(features: c, heads: heads))
        try m.endResidual()
        try m.beginResidual()
        try m.add(try LayerNorm(features: c))
        try m.add(try Linear(inFeatures: c, outFeatures: h))
        try m.add(Activation(.gelu))
        try m.add(try Linear(inFeatures: h, outFeatures: c))
        try m.endResidual()
    }
    try m.add(try LayerNorm(features: c))
    if tiedHead {
        try m.add(try TiedClassifier(count: v, dim: c))
    } else {
        try m.add(try Linear(inFeatures: c, outFeatures: v, bias: false))
    }
    try m.initialize(seed: seed)
    return m
}

/// The 784-1024-1024-10 ReLU MLP of the benchmarks, initialised.
func benchmarkMLP(seed: UInt64) throws -> Model {
    let m = Model()
    try m.add(try Linear(inFeatures: 784, outFeatures: 1024))
    try m.add(Activation(.relu))
    try m.add(try Linear(inFeatures: 1024, outFeatures: 1024))
    try m.add(Activation(.relu))
    try m.add(try Linear(inFeatures: 1024, outFeatures: 10))
    try m.initialize(seed: seed)
    return m
}
