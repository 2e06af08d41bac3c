import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

// DP-SGD's pass 1 through causal self-attention and a tied classifier,
// against per-example gradients from a backward of one example at a time
// (naiveSquaredNorms, PerExampleNormTests.swift).

@Test(
    "per-example norms of causal_self_attention (1, 2 and 4 heads, with and without bias, Gram and materialised projections) match per-example gradients",
    arguments: [1, 2, 4])
func perExampleNormsAttention(heads: Int) throws {
    // C = 8: c_attn (8 → 24) takes the Gram form when T·32 ≤ 192 (T ≤ 6),
    // c_proj (8 → 8) when T·16 ≤ 64 (T ≤ 4).
    let expectedForms = [3: ("gram", "gram"), 5: ("gram", "materialised"), 9: ("materialised", "materialised")]
    for bias in [true, false] {
        for (t, forms) in expectedForms {
            let attention = try CausalSelfAttention(features: 8, heads: heads, bias: bias)
            let model = try makeModel([
                try Linear(inFeatures: 5, outFeatures: 8, bias: bias), attention, Activation(.tanh), try Linear(inFeatures: 8, outFeatures: 3),
            ])
            try PerExampleNorms.checkSupported(model)
            let x = try randomTensor(Shape(4, t, 5), seed: 50 + UInt64(t)), dy = try randomTensor(Shape(4, t, 3), seed: 60 + UInt64(t))
            let ghost = try ghostSquaredNorms(model, x: x, dy: dy)
            expectClose(ghost, try naiveSquaredNorms(model, x: x, dy: dy), "heads \(heads), bias \(bias), T = \(t)")
            let f = attention.perExampleNormForms(positions: t)
            #expect(f.attention == forms.0 && f.projection == forms.1, "T = \(t): \(f)")
        }
    }
}

@Test("attention's per-example norms: the causal mask (a later position's gradient leaves earlier outputs' norms alone) and dropout")
func perExampleNormsAttentionCausalAndDropout() throws {
    // An output gradient only at position 0 reaches position 0's input only:
    // the example's norm is that of a one-position sequence.
    let attention = try CausalSelfAttention(features: 6, heads: 3)
    let model = try makeModel([attention])
    let x = try randomTensor(Shape(3, 4, 6), seed: 70)
    var d = randomArray(3 * 4 * 6, seed: 71, stream: 1, low: -1, high: 1)
    for i in 0..<3 { for e in (i * 24 + 6)..<((i + 1) * 24) { d[e] = 0 } }
    let full = try ghostSquaredNorms(model, x: x, dy: try Tensor(d, shape: Shape(3, 4, 6)))
    let first = try ghostSquaredNorms(
        model, x: try Tensor((0..<3).flatMap { i in x.toArray()[(i * 24)..<(i * 24 + 6)] }, shape: Shape(3, 1, 6)),
        dy: try Tensor((0..<3).flatMap { i in d[(i * 24)..<(i * 24 + 6)] }, shape: Shape(3, 1, 6)))
    expectClose(full, first, "position 0 alone")
    // Dropout on the attention weights: the norm pass reads the forward's masks.
    let dropping = try makeModel([try CausalSelfAttention(features: 6, heads: 2, dropout: 0.3), try Linear(inFeatures: 6, outFeatures: 2)])
    let xd = try randomTensor(Shape(5, 6, 6), seed: 72), dyd = try randomTensor(Shape(5, 6, 2), seed: 73)
    expectClose(try ghostSquaredNorms(dropping, x: xd, dy: dyd), try naiveSquaredNorms(dropping, x: xd, dy: dyd), "dropout 0.3")
}

@Test("attention's norm pass returns the ordinary input gradient and leaves the parameter gradients alone")
func perExampleNormAttentionInputGradient() throws {
    let attention = try CausalSelfAttention(features: 8, heads: 2)
    let model = try makeModel([attention])
    let x = try randomTensor(Shape(3, 5, 8), seed: 80), dy = try randomTensor(Shape(3, 5, 8), seed: 81)
    let (dx, reference) = try normPassInputGradients(attention, model, x: x, dy: dy)
    expectEqualElements(dx, reference)
}

@Test("a tied classifier's per-example norm is that of the summed gradient: both uses and their cross term")
func perExampleNormsTiedClassifier() throws {
    // A small GPT: ids (N, T) → embedding + positions → attention block → tied head.
    let vocab = 7, dim = 6, t = 5
    try BLAS.ensureLoaded()
    let model = Model()
    try model.add(try Embedding(count: vocab, dim: dim, initStd: 1))
    try model.add(try PositionEmbedding(positions: t, dim: dim, initStd: 1))
    try model.beginResidual()
    try model.add(try LayerNorm(features: dim))
    try model.add(try CausalSelfAttention(features: dim, heads: 2))
    try model.endResidual()
    try model.add(try LayerNorm(features: dim))
    try model.add(try TiedClassifier(count: vocab, dim: dim))
    try model.initialize(seed: 4)
    let values = randomArray(model.parameters!.count, seed: 4, stream: 77, low: -1, high: 1)
    try values.withUnsafeBufferPointer { try model.setParameters(from: $0.baseAddress!) }
    try PerExampleNorms.checkSupported(model)
    let ids: [Float] = [1, 3, 1, 1, 6, 0, 2, 2, 2, 2, 5, 4, 0, 6, 0, 3, 3, 1, 4, 4]
    let x = try Tensor(ids, shape: Shape(4, t)), dy = try randomTensor(Shape(4, t, vocab), seed: 90)
    let ghost = try ghostSquaredNorms(model, x: x, dy: dy)
    let naive = try naiveSquaredNorms(model, x: x, dy: dy)
    expectClose(ghost, naive, "tied")
    // The cross term matters: the two uses' norms alone differ from the sum's.
    let separate = try (0..<4).map { i -> Double in
        let xi = try Tensor(Array(ids[(i * t)..<((i + 1) * t)]), shape: Shape(1, t))
        let di = try Tensor(Array(dy.toArray()[(i * t * vocab)..<((i + 1) * t * vocab)]), shape: Shape(1, t, vocab))
        _ = try model.forward(xi, PassContext(training: true, sampleOffset: i))
        try model.backward(di, PassContext(training: true, sampleOffset: i), accumulate: false)
        return Naive.sumOfSquares(model.gradients!.toArray())
    }
    #expect(zip(separate, naive).contains { abs($0 - $1) > 1e-2 * $1 }, "\(separate) vs \(naive)")
    // The embedding without its classifier's pass (as on another pipeline stage) is refused.
    _ = try model.forward(x, PassContext(training: true))
    let norms = try Tensor(shape: Shape(4))
    let e = parmlError {
        _ = try PerExampleNorms.backward(
            model.root.layers[0..<1], from: dy, PassContext(training: true), into: norms.data, needFirstInputGradient: false, firstTraining: model.root.firstTrainingLayer)
    }
    #expect(e?.message.contains("tied classifier") == true, "\(String(describing: e))")
}

/// y = w·x with one trained scalar and no per-example norm: what
/// checkSupported must refuse, naming the layer.
private final class ScaleLayer: Layer {
    var kind: String { "scale" }
    var planLabel: String { "scale" }
    private var w: Tensor?
    var parameterSpecs: [ParameterSpec] { [ParameterSpec(name: "w", shape: Shape(1), initializer: .constant(1), decays: false)] }
    func bind(values: [Tensor], gradients: [Tensor]) { w = values[0] }
    func outputShape(for input: Shape) throws -> Shape { input }
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { x }
    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? { dy }
    func replicate() throws -> Layer { ScaleLayer() }
}

@Test("private training accepts attention and tied classifiers, and refuses a parameter layer without per-example norms by name")
func perExampleNormSupportedKinds() throws {
    #expect(PerExampleNorms.supportedKinds.contains("causal_self_attention") && PerExampleNorms.supportedKinds.contains("tied_classifier"))
    try PerExampleNorms.checkSupported(try makeModel([try Linear(inFeatures: 4, outFeatures: 4), try CausalSelfAttention(features: 4, heads: 2)]))
    let odd = try makeModel([try Linear(inFeatures: 4, outFeatures: 4), ScaleLayer()])
    let e = parmlError { try PerExampleNorms.checkSupported(odd) }
    #expect(
        e?.message.contains("layer 1 (scale)") == true && e?.message.contains("causal_self_attention") == true, "\(String(describing: e))")
}
