import ParmlTensor

/// (N, d1, d2, ...) → (N, d1·d2·...). Copies nothing: the output is a view
/// of the input's storage with another shape.
public final class Flatten: KindedLayer {
    public static let descriptor = LayerKind(
        name: "flatten", className: "Flatten", doc: "(N, d1, d2, ...) -> (N, d1*d2*...)"
    ) { _ in Flatten() }

    private var outputView: Tensor?
    private var inputShape = Shape(0)
    private var gradView: Tensor?

    public init() {}

    public func replicate() throws -> Layer { Flatten() }

    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("Flatten", [x], [.int("axis", 1)])
    }

    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank >= 1 else { throw ParmlError.shape("flatten needs a batch dimension") }
        return Shape(input[0], input.rowSize)
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        inputShape = x.shape
        let s = Shape(x.shape[0], x.shape.rowSize)
        outputView = reuse(outputView, pointer: x.data, shape: s, owner: x)
        return outputView!
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard needInputGradient else { return nil }
        gradView = reuse(gradView, pointer: dy.data, shape: inputShape, owner: dy)
        return gradView!
    }

    /// Keeps the previous view object when it already describes this memory,
    /// so steady-state steps allocate nothing.
    private func reuse(_ view: Tensor?, pointer: UnsafeMutablePointer<Float>, shape: Shape, owner: Tensor) -> Tensor {
        if let view, view.data == pointer, view.shape == shape { return view }
        return Tensor(view: pointer, shape: shape, owner: owner)
    }
}
