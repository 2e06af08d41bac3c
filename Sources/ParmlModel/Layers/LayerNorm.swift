import ParmlTensor

// Shapes: x (R, C) over the last dimension C = features; γ, β (C);
// mean, rstd (R) saved for backward.
public final class LayerNorm: KindedLayer {
    public static let descriptor = LayerKind(
        name: "layer_norm", className: "LayerNorm",
        doc: "layer normalisation over the last dimension, with a learned scale (init 1) and, unless bias is false, shift (init 0)",
        attributes: [
            .size("features", doc: "size of the last dimension"),
            .float("eps", default: 1e-5, doc: "added to the variance (PyTorch's default 1e-5)", rule: "positive and finite") {
                $0 > 0 && $0.isFinite
            },
            .flag("bias", default: true, doc: "has the learned shift (nanoGPT's LayerNorm(bias=False) has none)"),
        ]
    ) { a in try LayerNorm(features: a.int("features"), eps: a.float("eps"), bias: a.bool("bias")) }

    public let features: Int
    public let eps: Float
    public let hasBias: Bool

    private var gamma: Tensor?
    private var beta: Tensor?
    private var gammaGrad: Tensor?
    private var betaGrad: Tensor?
    private var input: Tensor?
    private let output = Buffer()
    private let gradInput = Buffer()
    private let mean = Buffer()
    private let rstd = Buffer()
    /// Without a bias: the zero shift and the unused shift gradient the kernels take.
    private let noBias = Buffer()
    private let noBiasGrad = Buffer()
    /// One example's dγ and dβ (private training's per-example norms).
    private let exampleGrad = Buffer()

    public init(features: Int, eps: Float = 1e-5, bias: Bool = true) throws {
        guard features > 0 else { throw ParmlError.invalidArgument("layer_norm: features must be positive, got \(features)") }
        guard eps > 0, eps.isFinite else { throw ParmlError.invalidArgument("layer_norm: eps must be positive and finite, got \(eps)") }
        self.features = features
        self.eps = eps
        self.hasBias = bias
        if !bias {
            try noBias.shaped(Shape(features)).fill(0)
            _ = try noBiasGrad.shaped(Shape(features))
        }
    }

    public func replicate() throws -> Layer { try LayerNorm(features: features, eps: eps, bias: hasBias) }

    public var attributes: Attributes { ["features": .int(Int64(features)), "eps": .float(eps), "bias": .bool(hasBias)] }

    /// ONNX's LayerNormalization takes the shift as an optional input.
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        let inputs = hasBias ? [x, try g.parameter(0), try g.parameter(1)] : [x, try g.parameter(0)]
        return try g.node("LayerNormalization", inputs, [.int("axis", -1), .float("epsilon", eps)])
    }

    public var parameterSpecs: [ParameterSpec] {
        var specs = [ParameterSpec(name: "weight", shape: Shape(features), initializer: .constant(1), decays: false)]
        if hasBias { specs.append(ParameterSpec(name: "bias", shape: Shape(features), initializer: .constant(0), decays: false)) }
        return specs
    }

    public func bind(values: [Tensor], gradients: [Tensor]) {
        gamma = values[0]
        gammaGrad = gradients[0]
        beta = hasBias ? values[1] : noBias.tensor
        betaGrad = hasBias ? gradients[1] : noBiasGrad.tensor
    }

    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank >= 2, input[input.rank - 1] == features else {
            throw ParmlError.shape("layer_norm(\(features)) expects input (..., \(features)), got \(input)")
        }
        return input
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        guard let gamma, let beta else { throw ParmlError.state("layer_norm is not bound to parameters") }
        let rows = x.count / features
        let y = try output.shaped(x.shape)
        let m = try mean.shaped(Shape(rows)), r = try rstd.shaped(Shape(rows))
        Kernels.layerNormForward(
            x.data, gamma: gamma.data, beta: beta.data, eps: eps, y.data, mean: m.data, rstd: r.data,
            rows: rows, cols: features)
        input = x
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard let gamma, let gammaGrad, let betaGrad, let x = input else {
            throw ParmlError.state("layer_norm backward without forward")
        }
        // The kernel adds into dγ, dβ: bring the old values to β·old first.
        let beta = ctx.gradientBeta(accumulate: accumulate)
        gammaGrad.decayGradient(by: beta)
        betaGrad.decayGradient(by: beta)
        let dx = try gradInput.shaped(x.shape)
        Kernels.layerNormBackward(
            dy.data, x.data, mean: mean.tensor.data, rstd: rstd.tensor.data, gamma: gamma.data, dx.data,
            dgamma: gammaGrad.data, dbeta: betaGrad.data, rows: x.count / features, cols: features)
        return needInputGradient ? dx : nil
    }
}

/// Generation decodes it with its forward: it normalises each position on its own.
extension LayerNorm: PositionwiseLayer {}

/// Private training: each example's dγ and dβ are materialised (2 ×
/// features floats) by the backward kernel run on that example's rows, so
/// the input gradient comes out of the same call.
extension LayerNorm: PerExampleNormLayer {
    public func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        guard let gamma, let x = input else { throw ParmlError.state("layer_norm backward without forward") }
        let examples = dy.shape[0], rows = x.count / features
        guard examples > 0 else { return needInputGradient ? try gradInput.shaped(x.shape) : nil }
        let perExample = rows / examples
        let dx = try gradInput.shaped(x.shape)
        let scratch = try exampleGrad.shaped(Shape(2 * features))
        for i in 0..<examples {
            scratch.fill(0)
            let r = i * perExample, offset = r * features
            Kernels.layerNormBackward(
                dy.data + offset, x.data + offset, mean: mean.tensor.data + r, rstd: rstd.tensor.data + r, gamma: gamma.data,
                dx.data + offset, dgamma: scratch.data, dbeta: scratch.data + features, rows: perExample, cols: features)
            squaredNorms[i] += Kernels.sumOfSquares(scratch.data, count: hasBias ? 2 * features : features)
        }
        return needInputGradient ? dx : nil
    }
}

extension LayerNorm: ArithmeticBoundLayer {
    /// The row statistics' arithmetic over each element.
    public func arithmeticWork(input: Shape) -> [ArithmeticKernel: Double] { [.layerNorm: Double(input.count)] }
}
