import ParmlTensor

/// Learned absolute positions, as GPT-2 and nanoGPT add them: input
/// (B, T, C) → x + W[t] at position t, for a (max_positions, C) weight.
/// (nanoGPT's wpe is an nn.Embedding looked up with arange(T); adding it
/// here keeps the model a sequence of layers.)
public final class PositionEmbedding: KindedLayer {
    public static let descriptor = LayerKind(
        name: "position_embedding", className: "PositionEmbedding",
        doc: "adds a learned vector per position: (B, T, C) -> x + weight[t] with T <= max_positions",
        attributes: [
            .size("max_positions", doc: "the longest sequence (nanoGPT's block_size)"),
            .size("embedding_dim", doc: "C, the size of each vector"),
            .float("init_std", default: 1, doc: "the weight is drawn from N(0, init_std^2) (PyTorch: 1; nanoGPT: 0.02)", rule: "positive and finite") {
                $0 > 0 && $0.isFinite
            },
        ]
    ) { a in try PositionEmbedding(positions: a.int("max_positions"), dim: a.int("embedding_dim"), initStd: a.float("init_std")) }

    public let positions: Int
    public let dim: Int
    public let initStd: Float
    private var weight: Tensor?
    private var weightGrad: Tensor?
    private let output = Buffer()

    public init(positions: Int, dim: Int, initStd: Float) throws {
        guard positions.multipliedReportingOverflow(by: dim).overflow == false, positions * dim <= Int(Int32.max) else {
            throw ParmlError.invalidArgument("position_embedding: \(positions)x\(dim) weights are too large")
        }
        self.positions = positions
        self.dim = dim
        self.initStd = initStd
    }

    public var attributes: Attributes {
        ["max_positions": .int(Int64(positions)), "embedding_dim": .int(Int64(dim)), "init_std": .float(initStd)]
    }

    public func replicate() throws -> Layer { try PositionEmbedding(positions: positions, dim: dim, initStd: initStd) }

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(name: "weight", shape: Shape(positions, dim), initializer: .normal(std: initStd), decays: true)]
    }

    public func bind(values: [Tensor], gradients: [Tensor]) {
        weight = values[0]
        weightGrad = gradients[0]
    }

    /// (..., T, C): the second-to-last dimension is the position.
    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank >= 2, input[input.rank - 1] == dim, input[input.rank - 2] <= positions else {
            throw ParmlError.shape("position_embedding(\(positions)×\(dim)) expects input (..., T ≤ \(positions), \(dim)), got \(input)")
        }
        return input
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        guard let weight else { throw ParmlError.state("position_embedding is not bound to parameters") }
        _ = try outputShape(for: x.shape)
        let y = try output.shaped(x.shape)
        let span = x.shape[x.shape.rank - 2] * dim
        for s in stride(from: 0, to: x.count, by: span) {
            Kernels.add(x.data + s, weight.data, y.data + s, count: span)
        }
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard let weightGrad else { throw ParmlError.state("position_embedding backward without forward") }
        let span = dy.shape[dy.shape.rank - 2] * dim
        let beta = ctx.gradientBeta(accumulate: accumulate)
        // Only the first T rows have a gradient; the rest keep β·old (0 when overwriting).
        weightGrad.decayGradient(by: beta)
        // Sequences in batch order: a fixed order of additions.
        for s in stride(from: 0, to: dy.count, by: span) {
            Kernels.add(weightGrad.data, dy.data + s, weightGrad.data, count: span)
        }
        return needInputGradient ? dy : nil
    }
}

extension PositionEmbedding {
    /// x + weight[0..<T]: T is fixed by the export's input shape.
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("Add", [x, g.parameter(0, rows: 0..<shape[shape.rank - 2])])
    }
}

extension PositionEmbedding: SequenceLimitedLayer {
    public var maxPositions: Int { positions }
}

extension PositionEmbedding: IncrementalLayer {
    public func beginSequence(capacity: Int) throws {}

    /// x + weight[offset..<offset + T]: the rows a whole-sequence forward adds there.
    public func decode(_ x: Tensor, at offset: Int) throws -> Tensor {
        guard let weight else { throw ParmlError.state("position_embedding is not bound to parameters") }
        guard x.shape.rank == 3, x.shape[0] == 1, x.shape[2] == dim, offset >= 0, offset + x.shape[1] <= positions else {
            throw ParmlError.shape(
                "position_embedding(\(positions)×\(dim)) cannot decode \(x.shape) at position \(offset): it needs (1, T, \(dim)) "
                    + "within its \(positions) positions")
        }
        let y = try output.shaped(x.shape)
        Kernels.add(x.data, weight.data + offset * dim, y.data, count: x.count)
        return y
    }
}
