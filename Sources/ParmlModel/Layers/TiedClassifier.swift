import ParmlTensor

/// A language model's head tied to its token embedding, as nanoGPT's
/// `lm_head.weight = wte.weight`: logits (..., V) = x (..., C) · Wᵀ with W
/// the embedding's (V, C) weight. It is a bias-free Linear whose weight
/// slot is a tied copy (`ParameterSpec.tie`): the trainer sums the two
/// gradients into both before every update and keeps the values equal, and
/// files hold the matrix once.
public final class TiedClassifier: KindedLayer {
    public static let descriptor = LayerKind(
        name: "tied_classifier", className: "TiedClassifier",
        doc: "logits = x W^T with W the (num_embeddings, embedding_dim) weight of the model's embedding (one matrix, "
            + "both gradients summed), as nanoGPT's lm_head; input (..., embedding_dim) -> (..., num_embeddings)",
        attributes: [
            .size("num_embeddings", doc: "the vocabulary size of the embedding it is tied to"),
            .size("embedding_dim", doc: "the embedding size of the embedding it is tied to"),
        ],
        requires: "embedding"
    ) { a in try TiedClassifier(count: a.int("num_embeddings"), dim: a.int("embedding_dim")) }

    public let count: Int
    public let dim: Int
    /// The product itself: Linear's forward and backward on the tied slot.
    let product: Linear
    /// Private training: its input and output gradient from the norm pass,
    /// for its embedding's cross term (TiedClassifier+PerExampleNorms.swift).
    var pendingNormTerms: (input: Tensor, outputGradient: Tensor)?

    public init(count: Int, dim: Int) throws {
        self.count = count
        self.dim = dim
        product = try Linear(inFeatures: dim, outFeatures: count, bias: false)
    }

    public var attributes: Attributes { ["num_embeddings": .int(Int64(count)), "embedding_dim": .int(Int64(dim))] }

    public var planLabel: String { "tied_classifier(\(dim)→\(count))" }

    public func replicate() throws -> Layer { try TiedClassifier(count: count, dim: dim) }

    public var parameterSpecs: [ParameterSpec] {
        [
            ParameterSpec(
                name: "weight", shape: Shape(count, dim), initializer: .constant(0), decays: true,
                tie: ParameterTie(kind: Embedding.descriptor.name, parameter: "weight"))
        ]
    }

    public func bind(values: [Tensor], gradients: [Tensor]) { product.bind(values: values, gradients: gradients) }

    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank >= 2, input[input.rank - 1] == dim else {
            throw ParmlError.shape("tied_classifier(\(dim)→\(count)) expects input (..., \(dim)), got \(input)")
        }
        return try product.outputShape(for: input)
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { try product.forward(x, ctx) }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        try product.backward(dy, ctx, needInputGradient: needInputGradient, accumulate: accumulate)
    }

    /// MatMul with the transposed embedding initializer, so the exported
    /// graph holds the matrix once as well.
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("MatMul", [x, try g.node("Transpose", [try g.parameter(0)], [])], [])
    }
}

extension TiedClassifier: PositionwiseLayer {}

extension TiedClassifier: VocabularyParallelLayer {
    public var features: Int { dim }

    public var vocabulary: Int { count }

    /// The logits of rows rank·V/ranks..<(rank+1)·V/ranks, tied to the
    /// embedding's slice of the same rows (a column-parallel classifier).
    public func vocabularySlice(rank: Int, ranks: Int) throws -> Layer { try TiedClassifier(count: count / ranks, dim: dim) }
}

extension TiedClassifier: WorkDescribingLayer {
    /// The tied table's product: (R × dim)·(dim × count).
    public func forwardWork(input: Shape) throws -> LayerWork {
        let rows = input.count / max(dim, 1)
        return LayerWork(products: [MatrixProduct(m: rows, n: count, k: dim, timesWeights: true)], elementwiseFloats: Double(rows * count))
    }
}
