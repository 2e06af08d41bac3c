import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

// DP-SGD's pass 1: per-example squared gradient norms from activations and
// output gradients (ghost norm, Gram form, materialised) must equal the
// norms of per-example gradients formed the naive way: a backward of one
// example at a time, its parameter gradients read from the arena.

/// Naive oracle: ‖example i's parameter gradient‖² for each i, from a
/// forward and backward of example i alone with output gradient row i of `dy`
/// (at sample offset i, so dropout draws the batch's mask). A tied copy's
/// gradient is added to its source's first: one matrix, used twice.
func naiveSquaredNorms(_ model: Model, x: Tensor, dy: Tensor) throws -> [Double] {
    let n = x.shape[0], xRow = x.count / n, dyRow = dy.count / n
    let xs = x.toArray(), dys = dy.toArray()
    return try (0..<n).map { i in
        let xi = try Tensor(Array(xs[i * xRow..<(i + 1) * xRow]), shape: x.shape.withLeading(1))
        let di = try Tensor(Array(dys[i * dyRow..<(i + 1) * dyRow]), shape: dy.shape.withLeading(1))
        _ = try model.forward(xi, PassContext(training: true, sampleOffset: i))
        try model.backward(di, PassContext(training: true, sampleOffset: i), accumulate: false)
        var g = model.gradients!.toArray()
        for t in model.tiedParameters {
            for k in 0..<t.copy.count {
                g[t.source.lowerBound + k] += g[t.copy.lowerBound + k]
                g[t.copy.lowerBound + k] = 0
            }
        }
        return Naive.sumOfSquares(g)
    }
}

func ghostSquaredNorms(_ model: Model, x: Tensor, dy: Tensor) throws -> [Double] {
    let n = x.shape[0]
    _ = try model.forward(x, PassContext(training: true))
    let norms = try Tensor(shape: Shape(n))
    norms.fill(0)
    _ = try PerExampleNorms.backward(
        model.root.layers[...], from: dy, PassContext(training: true), into: norms.data, needFirstInputGradient: true, firstTraining: model.root.firstTrainingLayer)
    return norms.toArray().map(Double.init)
}

/// The input gradient of `layer`'s norm pass and of its ordinary backward
/// (it is `model`'s only layer), after checking that the pass wrote no
/// parameter gradient.
func normPassInputGradients(_ layer: PerExampleNormLayer, _ model: Model, x: Tensor, dy: Tensor) throws -> (pass: [Float], backward: [Float]) {
    _ = try model.forward(x, PassContext(training: true))
    model.gradients!.fill(7)
    let norms = try Tensor(shape: Shape(x.shape[0]))
    norms.fill(0)
    let dx = try layer.addPerExampleSquaredNorms(dy, PassContext(training: true), into: norms.data, needInputGradient: true)!.toArray()
    #expect(model.gradients!.toArray().allSatisfy { $0 == 7 })
    let reference = try layer.backward(dy, PassContext(training: true), needInputGradient: true, accumulate: false)!.toArray()
    return (dx, reference)
}

func expectClose(_ a: [Double], _ b: [Double], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == b.count, sourceLocation: sourceLocation)
    for (u, v) in zip(a, b) {
        #expect(abs(u - v) <= 2e-5 * max(abs(v), 1e-3), "\(what): \(u) vs \(v)", sourceLocation: sourceLocation)
    }
}

@Test("per-example norms of Linear, LayerNorm and a tanh on rank-2 inputs (ghost norm) match per-example gradients")
func perExampleNormsRank2() throws {
    for bias in [true, false] {
        let model = try makeModel([
            try Linear(inFeatures: 7, outFeatures: 9, bias: bias), Activation(.tanh), try LayerNorm(features: 9),
            try Linear(inFeatures: 9, outFeatures: 4, bias: bias),
        ])
        let x = try randomTensor(Shape(6, 7), seed: 3)
        let dy = try randomTensor(Shape(6, 4), seed: 4)
        let ghost = try ghostSquaredNorms(model, x: x, dy: dy)
        expectClose(ghost, try naiveSquaredNorms(model, x: x, dy: dy), "bias \(bias)")
        #expect(ghost.allSatisfy { $0 > 0 })
    }
}

@Test("per-example norms on sequences (N, T, features): the Gram form and the materialised form both match")
func perExampleNormsSequences() throws {
    // T = 3 with 8×8 weights: Gram (3·16 ≤ 64); T = 12: materialised (12·16 > 64).
    for positions in [3, 12] {
        let model = try makeModel([
            try Linear(inFeatures: 8, outFeatures: 8), Activation(.gelu), try LayerNorm(features: 8), try Linear(inFeatures: 8, outFeatures: 8),
        ])
        let x = try randomTensor(Shape(5, positions, 8), seed: 5)
        let dy = try randomTensor(Shape(5, positions, 8), seed: 6)
        expectClose(try ghostSquaredNorms(model, x: x, dy: dy), try naiveSquaredNorms(model, x: x, dy: dy), "T = \(positions)")
    }
}

@Test("per-example norms through a residual block (layer_norm, linear, gelu inside) match per-example gradients")
func perExampleNormsResidual() throws {
    try BLAS.ensureLoaded()
    let model = Model()
    try model.add(try Linear(inFeatures: 6, outFeatures: 10))
    try model.beginResidual()
    try model.add(try LayerNorm(features: 10))
    try model.add(try Linear(inFeatures: 10, outFeatures: 10))
    try model.add(Activation(.gelu))
    try model.endResidual()
    try model.add(try Linear(inFeatures: 10, outFeatures: 3))
    try model.initialize(seed: 2)
    let values = randomArray(model.parameters!.count, seed: 2, stream: 77, low: -1, high: 1)
    try values.withUnsafeBufferPointer { try model.setParameters(from: $0.baseAddress!) }
    try PerExampleNorms.checkSupported(model)
    let x = try randomTensor(Shape(5, 6), seed: 12), dy = try randomTensor(Shape(5, 3), seed: 13)
    expectClose(try ghostSquaredNorms(model, x: x, dy: dy), try naiveSquaredNorms(model, x: x, dy: dy), "residual")
}

@Test(
    "per-example norms of conv2d (Gram and materialised forms, groups, 1x1, stride and padding; im2col and oneDNN) match per-example gradients",
    arguments: [ConvolutionBackend.im2col, .onednn])
func perExampleNormsConv2d(backend: ConvolutionBackend) throws {
    // conv1: P = 36, K = 18, Og = 4 → materialised (36·22 > 72); conv2: P = 4,
    // K = 72, Og = 6 → Gram (4·78 ≤ 432); conv3 (groups 2, K = 6·4, Og = 4): P = 1 → Gram;
    // the 1×1 layer: pointwise (col = x), P = 1, K = 8, Og = 3 → Gram.
    #expect(!Conv2d.usesGramNorm(positions: 36, taps: 18, outputs: 4))
    #expect(Conv2d.usesGramNorm(positions: 4, taps: 72, outputs: 6))
    for bias in [true, false] {
        let layers: [Layer] = [
            try Conv2d(inChannels: 2, outChannels: 4, kernel: (3, 3), stride: (1, 1), padding: (1, 1), bias: bias, backend: backend),
            Activation(.tanh),
            try Conv2d(inChannels: 4, outChannels: 8, kernel: (3, 3), stride: (2, 2), padding: (0, 0), bias: bias, backend: backend),
            Activation(.tanh),
            try Conv2d(inChannels: 8, outChannels: 8, kernel: (2, 2), groups: 2, bias: bias, backend: backend),
            try Conv2d(inChannels: 8, outChannels: 3, kernel: (1, 1), bias: bias, backend: backend),
            Flatten(),
            try Linear(inFeatures: 3, outFeatures: 2, bias: bias),
        ]
        let model = try makeModel(layers)
        try PerExampleNorms.checkSupported(model)
        let x = try randomTensor(Shape(5, 2, 6, 6), seed: 21)
        let dy = try randomTensor(Shape(5, 2), seed: 22)
        let ghost = try ghostSquaredNorms(model, x: x, dy: dy)
        expectClose(ghost, try naiveSquaredNorms(model, x: x, dy: dy), "\(backend), bias \(bias)")
        #expect((layers[0] as! Conv2d).perExampleNormForm == "materialised")
        #expect((layers[2] as! Conv2d).perExampleNormForm == "gram")
    }
}

@Test("the conv2d norm pass returns conv2d's ordinary input gradient (im2col and oneDNN) and leaves its gradients alone")
func perExampleNormConvInputGradient() throws {
    for backend in [ConvolutionBackend.im2col, .onednn] {
        let conv = try Conv2d(inChannels: 3, outChannels: 5, kernel: (3, 3), stride: (2, 2), padding: (1, 1), backend: backend)
        let model = try makeModel([conv])
        let x = try randomTensor(Shape(4, 3, 7, 7), seed: 31), dy = try randomTensor(Shape(4, 5, 4, 4), seed: 32)
        let (dx, reference) = try normPassInputGradients(conv, model, x: x, dy: dy)
        #expect(zip(dx, reference).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }, "\(backend)")
    }
}

@Test("per-example norms of embedding (repeated ids, rank 1 and 2 ids) and position_embedding match per-example gradients")
func perExampleNormsEmbeddings() throws {
    // (N, T) ids with repeats within an example: rows summed before squaring.
    let model = try makeModel([
        try Embedding(count: 7, dim: 5, initStd: 1), try PositionEmbedding(positions: 6, dim: 5, initStd: 1), Activation(.tanh),
        try Linear(inFeatures: 5, outFeatures: 3),
    ])
    try PerExampleNorms.checkSupported(model)
    let ids: [Float] = [1, 3, 1, 1, 6, 0, 2, 2, 2, 2, 5, 4, 0, 6, 0, 3, 3, 1, 4, 4]
    let x = try Tensor(ids, shape: Shape(4, 5)), dy = try randomTensor(Shape(4, 5, 3), seed: 41)
    expectClose(try ghostSquaredNorms(model, x: x, dy: dy), try naiveSquaredNorms(model, x: x, dy: dy), "sequences")
    // (N,) ids: one position per example.
    let flat = try makeModel([try Embedding(count: 4, dim: 6, initStd: 1), try Linear(inFeatures: 6, outFeatures: 2)])
    let x1 = try Tensor([3, 0, 3, 2, 1], shape: Shape(5)), dy1 = try randomTensor(Shape(5, 2), seed: 42)
    expectClose(try ghostSquaredNorms(flat, x: x1, dy: dy1), try naiveSquaredNorms(flat, x: x1, dy: dy1), "single ids")
}

@Test("the norm pass returns the ordinary input gradient and leaves parameter gradients alone")
func perExampleNormPassLeavesGradients() throws {
    let model = try makeModel([try Linear(inFeatures: 5, outFeatures: 6), Activation(.relu), try Linear(inFeatures: 6, outFeatures: 3)])
    let x = try randomTensor(Shape(4, 5), seed: 8), dy = try randomTensor(Shape(4, 3), seed: 9)
    _ = try model.forward(x, PassContext(training: true))
    model.gradients!.fill(7)
    let norms = try Tensor(shape: Shape(4))
    norms.fill(0)
    let dx = try PerExampleNorms.backward(
        model.root.layers[...], from: dy, PassContext(training: true), into: norms.data, needFirstInputGradient: true, firstTraining: model.root.firstTrainingLayer)!.toArray()
    #expect(model.gradients!.toArray().allSatisfy { $0 == 7 })
    // The ordinary backward's input gradient, from the first layer.
    try model.backward(dy, PassContext(training: true), accumulate: false)
    let reference = try model.root.layers[0].backward(
        try model.root.layers[1].backward(
            try model.root.layers[2].backward(dy, PassContext(training: true), needInputGradient: true, accumulate: false)!,
            PassContext(training: true), needInputGradient: true, accumulate: false)!,
        PassContext(training: true), needInputGradient: true, accumulate: false)!.toArray()
    expectEqualElements(dx, reference)
}

@Test("private training refuses batch_norm (naming layer_norm) and parameter layers without per-example norms")
func perExampleNormRefusals() throws {
    let bn = try makeModel([try Linear(inFeatures: 4, outFeatures: 4), try BatchNorm(channels: 4)])
    let e = parmlError { try PerExampleNorms.checkSupported(bn) }
    #expect(e?.message.contains("layer 1") == true && e?.message.contains("layer_norm") == true, "\(String(describing: e))")
    try PerExampleNorms.checkSupported(try makeModel([try Linear(inFeatures: 4, outFeatures: 4), Activation(.relu), try LayerNorm(features: 4)]))
}
