import ParmlTensor

/// y = x for x ≥ 0, slope·x otherwise, as torch.nn.LeakyReLU. Differentiates
/// through the saved input: dx = dy where x ≥ 0 (PyTorch's choice at 0), slope·dy elsewhere.
public final class LeakyReLU: KindedLayer, ElementwiseLayer {
    public static let descriptor = LayerKind(
        name: "leaky_relu", className: "LeakyReLU", doc: "x for x >= 0, negative_slope * x otherwise, as torch.nn.LeakyReLU",
        attributes: [
            .float("negative_slope", default: 0.01, doc: "the slope for x < 0 (PyTorch's default 0.01)", rule: "finite") { $0.isFinite }
        ]
    ) { a in LeakyReLU(slope: try a.float("negative_slope")) }

    public let slope: Float
    private var input: Tensor?
    private let output = Buffer()
    private let gradInput = Buffer()

    public init(slope: Float) { self.slope = slope }

    public var attributes: Attributes { ["negative_slope": .float(slope)] }

    public func replicate() throws -> Layer { LeakyReLU(slope: slope) }

    public func outputShape(for input: Shape) throws -> Shape { input }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        let y = try output.shaped(x.shape)
        let src = x.data, dst = y.data, a = slope
        for i in 0..<x.count {
            let v = src[i]
            dst[i] = v >= 0 ? v : a * v
        }
        input = x
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard needInputGradient else { return nil }
        guard let x = input else { throw ParmlError.state("leaky_relu backward without forward") }
        let dx = try gradInput.shaped(x.shape)
        let xs = x.data, g = dy.data, out = dx.data, a = slope
        for i in 0..<x.count { out[i] = xs[i] >= 0 ? g[i] : a * g[i] }
        return dx
    }

    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("LeakyRelu", [x], [.float("alpha", slope)])
    }
}

/// Generation decodes it with its forward: element-wise.
extension LeakyReLU: PositionwiseLayer {}
