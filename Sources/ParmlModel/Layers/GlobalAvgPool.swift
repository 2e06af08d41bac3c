import ParmlTensor

// Global average pooling: x (N, C, H, W) → y (N, C), each output the mean
// of its plane (summed in order, then divided by H·W); backward spreads
// dy / (H·W) over the plane. PyTorch writes it AdaptiveAvgPool2d(1) then
// flatten; ONNX GlobalAveragePool then Flatten.
public final class GlobalAvgPool: KindedLayer {
    public static let descriptor = LayerKind(
        name: "global_avg_pool", className: "GlobalAvgPool2d",
        doc: "the mean of each channel's plane, as torch.nn.AdaptiveAvgPool2d(1) followed by flatten; input (N, C, H, W) -> (N, C)"
    ) { _ in GlobalAvgPool() }

    private var inputShape = Shape(0)
    private let output = Buffer()
    private let gradInput = Buffer()

    public init() {}

    public func replicate() throws -> Layer { GlobalAvgPool() }

    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("Flatten", [try g.node("GlobalAveragePool", [x])], [.int("axis", 1)])
    }

    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank == 4, input[2] > 0, input[3] > 0 else {
            throw ParmlError.shape("global_avg_pool expects input (N, C, H, W) with H, W ≥ 1, got \(input)")
        }
        return Shape(input[0], input[1])
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        let s = try outputShape(for: x.shape)
        let y = try output.shaped(s)
        Kernels.planeMeans(x.data, into: y.data, planes: s[0] * s[1], size: x.shape[2] * x.shape[3])
        inputShape = x.shape
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard needInputGradient else { return nil }
        guard inputShape.rank == 4 else { throw ParmlError.state("global_avg_pool backward without forward") }
        let dx = try gradInput.shaped(inputShape)
        Kernels.spreadPlaneMeans(dy.data, into: dx.data, planes: inputShape[0] * inputShape[1], size: inputShape[2] * inputShape[3])
        return dx
    }
}
