import ParmlTensor

// Max pooling, NCHW as torch.nn.MaxPool2d (no dilation, floor mode).
// Shapes: x (N, C, H, W), y (N, C, Ho, Wo), argmax (N, C, Ho, Wo) int32:
// the index in its plane of the cell each output took (the first largest in
// scan order; padding is never taken). backward: dx = 0, then
// dx[argmax] += dy in output order (overlapping windows add up).
public final class MaxPool2d: KindedLayer {
    public static let descriptor = LayerKind(
        name: "max_pool2d", className: "MaxPool2d",
        doc: "the largest value of each window as torch.nn.MaxPool2d; input (N, C, H, W) -> (N, C, Ho, Wo)",
        attributes: PoolWindow.attributes
    ) { a in MaxPool2d(window: try PoolWindow.make(a, kind: "max_pool2d")) }

    public let window: Window2d
    private var inputShape = Shape(0)
    private var planes = PlaneSizes(height: 0, width: 0, outHeight: 0, outWidth: 0)
    private let output = Buffer()
    private let argmax = Buffer()
    private let gradInput = Buffer()

    init(window: Window2d) { self.window = window }

    public convenience init(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) throws {
        self.init(window: try PoolWindow.make(kernel: kernel, stride: stride ?? kernel, padding: padding, kind: "max_pool2d"))
    }

    public func replicate() throws -> Layer { MaxPool2d(window: window) }

    public var attributes: Attributes { Attributes(PoolWindow.attributes(window)) }

    public var planLabel: String { "max_pool2d(\(window.kernelH)x\(window.kernelW))" }

    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("MaxPool", [x], ImageShape.onnxAttributes(window, dilations: false))
    }

    public func outputShape(for input: Shape) throws -> Shape { try ImageShape.pooled(input, window: window, label: planLabel).0 }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        let (s, p) = try ImageShape.pooled(x.shape, window: window, label: planLabel)
        let y = try output.shaped(s)
        let arg = try argmax.shaped(s, dtype: .int32)
        Kernels.maxPoolForward(x.data, planes: s[0] * s[1], window, p, y.data, argmax: arg.int32s)
        inputShape = x.shape
        planes = p
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard needInputGradient else { return nil }
        guard inputShape.rank == 4 else { throw ParmlError.state("max_pool2d backward without forward") }
        let dx = try gradInput.shaped(inputShape)
        dx.fill(0)
        Kernels.maxPoolBackward(dy.data, argmax: argmax.tensor.int32s, planes: inputShape[0] * inputShape[1], window, planes, dx.data)
        return dx
    }
}

/// Each channel's planes are pooled on their own: tensor parallelism runs it
/// on a rank's channels between a conv2d column/row pair.
extension MaxPool2d: ChannelwiseLayer {}
