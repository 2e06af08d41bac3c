import ParmlTensor

/// Layers applied one after another.
public final class Sequential: Layer {
    public private(set) var layers: [Layer] = []
    public var kind: String { "sequential" }
    public var children: [Layer] { layers }

    public init(_ layers: [Layer] = []) { self.layers = layers }

    public func append(_ layer: Layer) {
        layers.append(layer)
        firstTrainingCache = nil
    }

    /// The index of the first layer that trains parameters (`layers.count`
    /// when none does): backward asks no layer up to it for an input
    /// gradient unless the caller reads one. Kept, since a layer's
    /// parameter specs are built anew on every read.
    public var firstTrainingLayer: Int {
        if let f = firstTrainingCache { return f }
        let f = layers.firstIndex { $0.trainsParameters } ?? layers.count
        firstTrainingCache = f
        return f
    }

    private var firstTrainingCache: Int?

    public func replicate() throws -> Layer { Sequential(try layers.map { try $0.replicate() }) }

    public func outputShape(for input: Shape) throws -> Shape {
        var s = input
        for l in layers { s = try l.outputShape(for: s) }
        return s
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        var h = x
        for l in layers { h = try l.forward(h, ctx) }
        return h
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        var g = dy
        var i = layers.count - 1
        // A layer computes its input gradient only where something before
        // it reads one: our caller, or an earlier layer that trains
        // parameters. tp's rewrite puts its f operator before a model's
        // first projection (tp_enter, linear), whose input gradient nothing
        // reads: the 784-4096-10 MLP's tp ranks had run three products of
        // their first layer a step where two were read, a convolution its
        // col2im besides.
        let firstTraining = firstTrainingLayer
        while i >= 0 {
            let need = needInputGradient || i > firstTraining
            guard let next = try layers[i].backward(g, ctx, needInputGradient: need, accumulate: accumulate) else {
                return nil
            }
            g = next
            i -= 1
        }
        return g
    }
}

/// A layer that holds a body of layers (files list the body after it, one
/// level deeper; a model opens and closes one with begin/end calls).
public protocol BlockLayer: Layer {
    var body: Sequential { get }
    /// The same kind of block around another body (a rewritten model's).
    func withBody(_ body: Sequential) -> Layer
}

/// y = x + f(x) where f is a sequence of layers whose output shape equals
/// its input shape.
public final class Residual: BlockLayer {
    public static let kindName = "residual"
    public let body: Sequential
    public var kind: String { Residual.kindName }
    public var children: [Layer] { [body] }
    public var planLabel: String { "residual[" + body.layers.map(\.planLabel).joined(separator: ", ") + "]" }
    private let output = Buffer()
    private let gradInput = Buffer()

    public init(_ body: Sequential) { self.body = body }

    public func withBody(_ body: Sequential) -> Layer { Residual(body) }

    public func replicate() throws -> Layer {
        guard let b = try body.replicate() as? Sequential else { throw ParmlError.internal("residual body replica") }
        return Residual(b)
    }

    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        try g.node("Add", [x, g.layers(body.layers, input: x, shape: shape)])
    }

    public func outputShape(for input: Shape) throws -> Shape {
        let s = try body.outputShape(for: input)
        guard s == input else {
            throw ParmlError.shape("residual block maps \(input) to \(s); its body must keep the shape")
        }
        return s
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        try join(x, body.forward(x, ctx))
    }

    /// y = x + f into the block's output buffer (forward and decode).
    func join(_ x: Tensor, _ f: Tensor) throws -> Tensor {
        // Model.outputShape checks this before any step; this guard keeps a
        // direct caller from reading past f.
        guard f.shape == x.shape else {
            throw ParmlError.shape("residual block maps \(x.shape) to \(f.shape); its body must keep the shape")
        }
        let y = try output.shaped(x.shape)
        Kernels.add(x.data, f.data, y.data, count: x.count)
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        // The body's input gradient joins the skip path's, so it is needed
        // exactly when the block's is (a model that opens with a residual
        // block reads neither).
        let df = try body.backward(dy, ctx, needInputGradient: needInputGradient, accumulate: accumulate)
        guard needInputGradient else { return nil }
        guard let df else { throw ParmlError.internal("residual body returned no input gradient") }
        let dx = try gradInput.shaped(dy.shape)
        Kernels.add(dy.data, df.data, dx.data, count: dy.count)
        return dx
    }
}

/// Private training: the body's per-example norms; the input gradient is
/// the skip path's dy plus the body's, as in `backward`.
extension Residual: PerExampleNormLayer {
    public func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        let df = try body.addPerExampleSquaredNorms(dy, ctx, into: squaredNorms, needInputGradient: needInputGradient)
        guard needInputGradient else { return nil }
        guard let df else { throw ParmlError.internal("residual body returned no input gradient") }
        let dx = try gradInput.shaped(dy.shape)
        Kernels.add(dy.data, df.data, dx.data, count: dy.count)
        return dx
    }
}
