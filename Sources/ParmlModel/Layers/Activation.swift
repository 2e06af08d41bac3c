import ParmlTensor

/// Element-wise activation functions.
public enum ActivationKind: Int32, Sendable, CaseIterable {
    case relu = 1, gelu = 2, tanh = 3, sigmoid = 4

    public var name: String {
        switch self {
        case .relu: "relu"
        case .gelu: "gelu"
        case .tanh: "tanh"
        case .sigmoid: "sigmoid"
        }
    }
}

/// y = f(x) element-wise. ReLU and GELU differentiate through the saved input;
/// Tanh and Sigmoid through the saved output, which is cheaper.
public final class Activation: Layer {
    public let function: ActivationKind
    public var kind: String { function.name }
    private var input: Tensor?
    private let output = Buffer()
    private let gradInput = Buffer()

    public init(_ function: ActivationKind) { self.function = function }

    public func replicate() throws -> Layer { Activation(function) }

    public func outputShape(for input: Shape) throws -> Shape { input }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        let y = try output.shaped(x.shape)
        switch function {
        case .relu: Kernels.reluForward(x.data, y.data, count: x.count)
        case .gelu: Kernels.geluForward(x.data, y.data, count: x.count)
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
        case .gelu: Kernels.geluBackward(x.data, dy.data, dx.data, count: x.count)
        case .tanh: Kernels.tanhBackward(y.data, dy.data, dx.data, count: x.count)
        case .sigmoid: Kernels.sigmoidBackward(y.data, dy.data, dx.data, count: x.count)
        }
        return dx
    }
}
