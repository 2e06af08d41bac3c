import ParmlTensor

/// Token embedding, as torch.nn.Embedding: input (..., ) of token ids →
/// output (..., embedding_dim), row id of the (num_embeddings,
/// embedding_dim) weight. Ids arrive as floats (exact below 2^24); one
/// that is not an integer in 0..<num_embeddings is refused with its place.
/// The weight's gradient is a scatter-add in row order: several tokens with
/// one id add in a fixed order, so it is deterministic.
public final class Embedding: KindedLayer {
    public static let descriptor = LayerKind(
        name: "embedding", className: "Embedding",
        doc: "token embedding, as torch.nn.Embedding: token ids (...) -> rows of the weight (..., embedding_dim)",
        attributes: [
            AttributeSpec("num_embeddings", .int, doc: "the vocabulary size: ids are in 0 ..< num_embeddings", rule: "in 1...2^24") {
                if case .int(let v) = $0 { return v >= 1 && v <= 1 << 24 }
                return false
            },
            .size("embedding_dim", doc: "size of each embedding vector"),
            .float("init_std", default: 1, doc: "the weight is drawn from N(0, init_std^2) (PyTorch: 1; nanoGPT: 0.02)", rule: "positive and finite") {
                $0 > 0 && $0.isFinite
            },
        ],
        input: .tokenIDs(countAttribute: "num_embeddings")
    ) { a in try Embedding(count: a.int("num_embeddings"), dim: a.int("embedding_dim"), initStd: a.float("init_std")) }

    public let count: Int
    public let dim: Int
    public let initStd: Float
    /// A vocabulary slice (tensor parallelism) holds rows `firstID ..<
    /// firstID + count` of a `vocabulary`-row table: other ids give zeros.
    public let firstID: Int
    public let vocabulary: Int
    private var weight: Tensor?
    private var weightGrad: Tensor?
    private(set) var input: Tensor?
    private let output = Buffer()
    let gradInput = Buffer()
    let normScratch = Buffer()  // private training: one token's summed output gradient
    /// The classifier tied to this table, if any: private training adds the cross term of the two uses.
    weak var tiedClassifier: TiedClassifier?

    public convenience init(count: Int, dim: Int, initStd: Float) throws {
        try self.init(count: count, dim: dim, initStd: initStd, firstID: 0, vocabulary: count)
    }

    private init(count: Int, dim: Int, initStd: Float, firstID: Int, vocabulary: Int) throws {
        guard count.multipliedReportingOverflow(by: dim).overflow == false, count * dim <= Int(Int32.max) else {
            throw ParmlError.invalidArgument("embedding: \(count)x\(dim) weights are too large")
        }
        self.count = count
        self.dim = dim
        self.initStd = initStd
        self.firstID = firstID
        self.vocabulary = vocabulary
    }

    public var attributes: Attributes {
        ["num_embeddings": .int(Int64(count)), "embedding_dim": .int(Int64(dim)), "init_std": .float(initStd)]
    }

    public var planLabel: String {
        count == vocabulary ? "embedding(\(count)×\(dim))" : "embedding(ids \(firstID)..<\(firstID + count) of \(vocabulary)×\(dim))"
    }

    public func replicate() throws -> Layer {
        try Embedding(count: count, dim: dim, initStd: initStd, firstID: firstID, vocabulary: vocabulary)
    }

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(name: "weight", shape: Shape(count, dim), initializer: .normal(std: initStd), decays: true)]
    }

    public func bind(values: [Tensor], gradients: [Tensor]) {
        weight = values[0]
        weightGrad = gradients[0]
    }

    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank < Shape.maxRank else { throw ParmlError.shape("embedding: input \(input) has no room for a feature dimension") }
        var s = input
        s.append(dim)
        return s
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        guard let weight else { throw ParmlError.state("embedding is not bound to parameters") }
        let y = try output.shaped(try outputShape(for: x.shape))
        let ids = x.data, w = weight.data, out = y.data
        let lo = Float(firstID), hi = Float(firstID + count)
        for r in 0..<x.count {
            let v = ids[r]
            guard v >= 0, v < Float(vocabulary), v == v.rounded(.towardZero) else {
                throw ParmlError.invalidArgument("embedding: input element \(r) is \(v), not a token id in 0..<\(vocabulary)")
            }
            if v >= lo && v < hi {
                (out + r * dim).update(from: w + (Int(v) - firstID) * dim, count: dim)
            } else {
                (out + r * dim).update(repeating: 0, count: dim)
            }
        }
        input = x
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard let weightGrad, let x = input else { throw ParmlError.state("embedding backward without forward") }
        let beta = ctx.gradientBeta(accumulate: accumulate)
        weightGrad.decayGradient(by: beta)
        let g = weightGrad.data, d = dy.data
        for r in 0..<x.count {
            let id = Int(x.data[r]) - firstID
            guard id >= 0 && id < count else { continue }  // another vocabulary slice's row
            let row = g + id * dim, src = d + r * dim
            for c in 0..<dim { row[c] += src[c] }
        }
        guard needInputGradient else { return nil }
        // Ids are not differentiable: nothing flows back to them.
        let dx = try gradInput.shaped(x.shape)
        dx.fill(0)
        return dx
    }

    /// Gather(weight, ids): ONNX takes integer indices, so the float ids are cast first.
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("Gather", [g.parameter(0), g.node("Cast", [x], [.int("to", 7)])], [.int("axis", 0)])
    }
}

/// Generation decodes it with its forward: a position's row depends on its id alone.
extension Embedding: PositionwiseLayer {}

extension Embedding: VocabularyParallelLayer {
    public var features: Int { dim }

    public func vocabularySlice(rank: Int, ranks: Int) throws -> Layer {
        let rows = vocabulary / ranks
        return try Embedding(count: rows, dim: dim, initStd: initStd, firstID: rank * rows, vocabulary: vocabulary)
    }
}
