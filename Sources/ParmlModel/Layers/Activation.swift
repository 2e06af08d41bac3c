import ParmlTensor

/// Element-wise activation functions (the C API's PARML_ACTIVATION_* codes).
public enum ActivationKind: Int32, Sendable, CaseIterable {
    case relu = 1, gelu = 2, tanh = 3, sigmoid = 4

    /// The layer kind of this function: one registered kind each.
    public var descriptor: LayerKind {
        switch self {
        case .relu: Activation.relu
        case .gelu: Activation.gelu
        case .tanh: Activation.tanh
        case .sigmoid: Activation.sigmoid
        }
    }
}

/// y = f(x) element-wise. ReLU and GELU differentiate through the saved input;
/// Tanh and Sigmoid through the saved output, which is cheaper.
public final class Activation: ElementwiseLayer {
    public static let relu = LayerKind(name: "relu", className: "ReLU", doc: "max(x, 0)") { _ in Activation(.relu) }
    public static let gelu = LayerKind(name: "gelu", className: "GELU", doc: "the exact (erf) GELU, as torch.nn.GELU()") { _ in
        Activation(.gelu)
    }
    public static let tanh = LayerKind(name: "tanh", className: "Tanh", doc: "tanh(x)") { _ in Activation(.tanh) }
    public static let sigmoid = LayerKind(name: "sigmoid", className: "Sigmoid", doc: "1 / (1 + exp(-x))") { _ in
        Activation(.sigmoid)
    }

    public let function: ActivationKind
    public var descriptor: LayerKind? { function.descriptor }
    public var kind: String { function.descriptor.name }
    private var input: Tensor?
    private let output = Buffer()
    private let gradInput = Buffer()
    /// GELU in training: its derivative at the input, written by forward so
    /// that backward is one product instead of a second erf.
    private let derivative = Buffer()
    private var derivativeValid = false

    public init(_ function: ActivationKind) { self.function = function }

    public func replicate() throws -> Layer { Activation(function) }

    public func outputShape(for input: Shape) throws -> Shape { input }

    /// GELU as x·0.5·(1 + erf(x/√2)), exact as parml computes it (ONNX's own Gelu needs opset 20).
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        switch function {
        case .relu: return try g.node("Relu", [x])
        case .tanh: return try g.node("Tanh", [x])
        case .sigmoid: return try g.node("Sigmoid", [x])
        case .gelu:
            let e = try g.node("Erf", [try g.node("Mul", [x, try g.scalar(0.70710678118654752)])])
            let cdf = try g.node("Mul", [try g.node("Add", [e, try g.scalar(1)]), try g.scalar(0.5)])
            return try g.node("Mul", [x, cdf])
        }
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        let y = try output.shaped(x.shape)
        switch function {
        case .relu: Kernels.reluForward(x.data, y.data, count: x.count)
        case .gelu:
            if ctx.training {
                Kernels.geluForward(x.data, y.data, derivative: try derivative.shaped(x.shape).data, count: x.count)
            } else {
                Kernels.geluForward(x.data, y.data, count: x.count)
            }
            derivativeValid = ctx.training
        case .tanh: Kernels.tanhForward(x.data, y.data, count: x.count)
        case .sigmoid: Kernels.sigmoidForward(x.data, y.data, count: x.count)
        }
        input = x
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard needInputGradient else { return nil }
        guard let x = input else { throw ParmlError.state("\(kind) backward without forward") }
        let dx = try gradInput.shaped(x.shape)
        let y = output.tensor
        switch function {
        case .relu: Kernels.reluBackward(x.data, dy.data, dx.data, count: x.count)
        case .gelu:
            if derivativeValid {
                Kernels.geluBackward(derivative: derivative.tensor.data, dy.data, dx.data, count: x.count)
            } else {
                Kernels.geluBackward(x.data, dy.data, dx.data, count: x.count)
            }
        case .tanh: Kernels.tanhBackward(y.data, dy.data, dx.data, count: x.count)
        case .sigmoid: Kernels.sigmoidBackward(y.data, dy.data, dx.data, count: x.count)
        }
        return dx
    }
}

/// Generation decodes it with its forward: element-wise.
extension Activation: PositionwiseLayer {}

extension Activation: ArithmeticBoundLayer {
    /// Every function but ReLU is an arithmetic-bound kernel over each element.
    public func arithmeticWork(input: Shape) -> [ArithmeticKernel: Double] {
        let kernel: ArithmeticKernel? = switch function {
        case .relu: nil
        case .gelu: .gelu
        case .tanh: .tanh
        case .sigmoid: .sigmoid
        }
        return kernel.map { [$0: Double(input.count)] } ?? [:]
    }
}
