import ParmlTensor

// Average pooling, NCHW as torch.nn.AvgPool2d (floor mode). Shapes:
// x (N, C, H, W), y (N, C, Ho, Wo); each output is its window's sum over
// kh·kw (count_include_pad, PyTorch's default: padding counts as zeros) or
// over the window's cells inside the input. backward: dx = 0, then each
// output's dy / count added to its window's cells, in output order.
public final class AvgPool2d: KindedLayer {
    public static let descriptor = LayerKind(
        name: "avg_pool2d", className: "AvgPool2d",
        doc: "the mean of each window as torch.nn.AvgPool2d; input (N, C, H, W) -> (N, C, Ho, Wo)",
        attributes: PoolWindow.attributes + [
            .flag("count_include_pad", default: true, doc: "padding cells count in the mean (as zeros); false: only the input's cells do")
        ]
    ) { a in AvgPool2d(window: try PoolWindow.make(a, kind: "avg_pool2d"), countIncludePad: try a.bool("count_include_pad")) }

    public let window: Window2d
    public let countIncludePad: Bool
    private var inputShape = Shape(0)
    private var planes = PlaneSizes(height: 0, width: 0, outHeight: 0, outWidth: 0)
    private let output = Buffer()
    private let gradInput = Buffer()

    init(window: Window2d, countIncludePad: Bool) {
        self.window = window
        self.countIncludePad = countIncludePad
    }

    public convenience init(kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0), countIncludePad: Bool = true) throws {
        let w = try PoolWindow.make(kernel: kernel, stride: stride ?? kernel, padding: padding, kind: "avg_pool2d")
        self.init(window: w, countIncludePad: countIncludePad)
    }

    public func replicate() throws -> Layer { AvgPool2d(window: window, countIncludePad: countIncludePad) }

    public var attributes: Attributes {
        Attributes(PoolWindow.attributes(window) + [Attributes.Entry(name: "count_include_pad", value: .bool(countIncludePad))])
    }

    public var planLabel: String { "avg_pool2d(\(window.kernelH)x\(window.kernelW))" }

    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("AveragePool", [x], ImageShape.onnxAttributes(window, dilations: false) + [.int("count_include_pad", countIncludePad ? 1 : 0)])
    }

    public func outputShape(for input: Shape) throws -> Shape { try ImageShape.pooled(input, window: window, label: planLabel).0 }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        let (s, p) = try ImageShape.pooled(x.shape, window: window, label: planLabel)
        let y = try output.shaped(s)
        Kernels.avgPoolForward(x.data, planes: x.shape[0] * x.shape[1], window, p, countIncludePad: countIncludePad, y.data)
        inputShape = x.shape
        planes = p
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard needInputGradient else { return nil }
        guard inputShape.rank == 4 else { throw ParmlError.state("avg_pool2d backward without forward") }
        let dx = try gradInput.shaped(inputShape)
        dx.fill(0)
        Kernels.avgPoolBackward(dy.data, planes: inputShape[0] * inputShape[1], window, planes, countIncludePad: countIncludePad, dx.data)
        return dx
    }
}

/// Each channel's planes are pooled on their own: tensor parallelism runs it
/// on a rank's channels between a conv2d column/row pair.
extension AvgPool2d: ChannelwiseLayer {}
