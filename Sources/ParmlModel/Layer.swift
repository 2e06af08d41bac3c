import ParmlTensor

/// Where a forward or backward pass runs: training or inference, which
/// optimizer step, and the global index of the batch's first sample. Dropout
/// keys its mask on these, so a sample gets the same mask however the batch
/// is split across ranks or micro-batches.
public struct PassContext: Sendable {
    public var training: Bool
    public var step: Int
    public var sampleOffset: Int
    public var seed: UInt64
    /// When a backward pass does not accumulate, parameter gradients become
    /// decay·old + new instead of new. 0 is plain overwriting; the trainer
    /// sets the SGD momentum here so that the backward pass writes the
    /// momentum buffer directly (one pass over the parameters saved).
    public var gradientDecay: Float = 0
    /// The arithmetic of matrix products (the trainer's resolved
    /// precision; passes outside training run float32).
    public var precision: Precision = .float32
    /// Unique to one optimizer step (BF16Products.nextSerial; 0 outside
    /// training): layers keep their bf16 weight copies for that step.
    public var stepSerial: UInt64 = 0
    /// A training step's bf16 copies of the rank's parameters, where it
    /// keeps them (BF16Projection.swift); nil: layers round their own.
    public var bf16Weights: BF16ParameterCopies?
    /// Threads for work that takes a count per call (oneDNN's convolutions;
    /// bf16 products, cut over parml's threads when it is above 1): the
    /// trainer's own, so that another trainer's setting in the process
    /// cannot change this one's bits (the sums depend on it); 0: the
    /// process's `BLAS.threads`.
    public var threads = 0

    /// The thread count a oneDNN plan for this pass is made for.
    public var libraryThreads: Int { threads > 0 ? threads : max(1, BLAS.threads) }

    /// The factor old gradients are kept with: 1 when accumulating.
    @inline(__always)
    public func gradientBeta(accumulate: Bool) -> Float { accumulate ? 1 : gradientDecay }

    public init(training: Bool, step: Int = 0, sampleOffset: Int = 0, seed: UInt64 = 0) {
        self.training = training
        self.step = step
        self.sampleOffset = sampleOffset
        self.seed = seed
    }
}

/// How a parameter tensor starts out.
public enum Initializer: Sendable, Equatable {
    /// U(−bound, bound), as PyTorch's default for Linear weights and biases (bound = 1/√fan_in).
    case uniform(bound: Float)
    case constant(Float)
    /// N(0, std²), as torch.nn.init.normal_ (nanoGPT draws embeddings with std 0.02).
    case normal(std: Float)
}

/// Which earlier parameter a tied parameter is the same matrix as: the
/// parameter `parameter` of the first layer of kind `kind` whose shape
/// matches (a classifier tied to the token embedding: ("embedding", "weight")).
public struct ParameterTie: Sendable, Equatable {
    public let kind: String
    public let parameter: String

    public init(kind: String, parameter: String) {
        self.kind = kind
        self.parameter = parameter
    }
}

public struct ParameterSpec: Sendable {
    public let name: String
    public let shape: Shape
    public let initializer: Initializer
    /// Whether weight decay applies to it when the optimizer decays by kind
    /// (`OptimizerConfig.decayByKind`): matrices yes; biases and
    /// normalisation scales no, as nanoGPT and Megatron-LM group them.
    public let decays: Bool
    /// Set for a parameter that is another one (see `Model.tiedParameters`):
    /// it gets its own slot in the arena, as Megatron-LM keeps the tied
    /// embedding on the first and the last pipeline stage, but files, counts
    /// and names hold the matrix once.
    public let tie: ParameterTie?
    /// False for state the layer updates itself rather than by gradient
    /// (batch_norm's running statistics, PyTorch's buffers): it lives in the
    /// arena so files, stages, shards and replicas carry it, but the
    /// optimizer never touches it and its gradient stays zero.
    public let trained: Bool

    public init(name: String, shape: Shape, initializer: Initializer, decays: Bool, tie: ParameterTie? = nil, trained: Bool = true) {
        self.name = name
        self.shape = shape
        self.initializer = initializer
        self.decays = decays
        self.tie = tie
        self.trained = trained
    }
}

extension ParameterSpec {
    /// A weight of `shape` and, with `bias`, a bias of `outputs`, both drawn
    /// as PyTorch draws Linear's and Conv2d's: U(±1/√fan_in). The weight
    /// decays, the bias does not.
    public static func weightAndBias(_ shape: Shape, outputs: Int, fanIn: Int, bias: Bool) -> [ParameterSpec] {
        let bound = 1 / Float(fanIn).squareRoot()
        let weight = ParameterSpec(name: "weight", shape: shape, initializer: .uniform(bound: bound), decays: true)
        guard bias else { return [weight] }
        return [weight, ParameterSpec(name: "bias", shape: Shape(outputs), initializer: .uniform(bound: bound), decays: false)]
    }
}

/// One layer: forward and backward over tensors it owns.
///
/// A layer owns its output and input-gradient buffers and reuses them from
/// step to step. `forward` may keep a reference to its input: the caller
/// must not change that tensor before the matching `backward`.
public protocol Layer: AnyObject {
    /// A short name ("linear", "relu", ...), used in plans and errors.
    var kind: String { get }
    /// The registered kind this layer is, or nil for a layer the engine
    /// makes itself (a container, a tensor-parallel collective).
    var descriptor: LayerKind? { get }
    /// Its attribute values, complete, as `descriptor.make` takes them back.
    var attributes: Attributes { get }
    /// How plans name it ("linear(784→10)"); the kind name by default.
    var planLabel: String { get }
    /// Adds the layer's inference graph to an ONNX export and returns the
    /// name of its output; `shape` is its input's.
    func lowerToOnnx(_ graph: OnnxLowering, input: String, shape: Shape) throws -> String
    /// The parameters this layer needs, in the order `bind` receives them.
    var parameterSpecs: [ParameterSpec] { get }
    /// Gives the layer views of its parameters and gradients in the model's arena.
    func bind(values: [Tensor], gradients: [Tensor])
    /// The output shape for an input shape, or a `.shape` error naming the problem.
    func outputShape(for input: Shape) throws -> Shape
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor
    /// Parameter gradients become g·β + new with β = `ctx.gradientBeta(accumulate:)`
    /// (overwrite, accumulate, or fold momentum); returns dL/dx when `needInputGradient`.
    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor?
    /// Nested layers (residual bodies), for traversal.
    var children: [Layer] { get }
    /// A new, unbound layer with the same configuration: what another rank
    /// of a data-parallel job runs (its buffers and parameter views are its own).
    func replicate() throws -> Layer
}

extension Layer {
    public var parameterSpecs: [ParameterSpec] { [] }
    public func bind(values: [Tensor], gradients: [Tensor]) {}
    public var children: [Layer] { [] }
    public var descriptor: LayerKind? { nil }
    public var attributes: Attributes { Attributes() }
    public var planLabel: String { kind }
    public func lowerToOnnx(_ graph: OnnxLowering, input: String, shape: Shape) throws -> String {
        throw ParmlError.unsupported("layer kind '\(kind)' has no ONNX export yet")
    }

    /// Whether this layer or one inside it trains parameters: its backward
    /// writes their gradients, so it needs its output's gradient.
    public var trainsParameters: Bool {
        parameterSpecs.contains(where: \.trained) || children.contains { $0.trainsParameters }
    }
}

/// A registered layer kind whose descriptor is fixed by its class: the kind
/// name comes from it.
public protocol KindedLayer: Layer {
    static var descriptor: LayerKind { get }
}

extension KindedLayer {
    public var descriptor: LayerKind? { Self.descriptor }
    public var kind: String { Self.descriptor.name }
}

extension Tensor {
    /// Brings a parameter gradient to β·old before a backward pass adds into
    /// it (`ctx.gradientBeta(accumulate:)`): β = 0 fills with zeros rather
    /// than scaling, which would keep a NaN of an earlier step.
    public func decayGradient(by beta: Float) {
        if beta == 0 { fill(0) } else if beta != 1 { Kernels.scale(data, by: beta, count: count) }
    }
}

/// A reusable buffer shaped on demand (allocates only when it must grow):
/// a layer's activations, input gradients and scratch.
public final class Buffer {
    public let tensor: Tensor
    public init() { tensor = try! Tensor(shape: Shape(0)) }  // zero elements: cannot fail
    @inline(__always) public func shaped(_ s: Shape) throws -> Tensor {
        try tensor.resize(s)
        return tensor
    }

    public func shaped(_ s: Shape, dtype: DType) throws -> Tensor {
        try tensor.resize(s, dtype: dtype)
        return tensor
    }
}

extension Layer {
    /// Bytes held by this layer's buffers and its children's (activations,
    /// input gradients, scratch; never parameters). Buffers only grow, so
    /// this is the high-water mark. Found by reflection: for reports only.
    public var bufferBytes: Int {
        var bytes = 0
        for c in Mirror(reflecting: self).children {
            if let b = c.value as? Buffer { bytes += b.tensor.capacity * 4 }  // capacity counts 4-byte words
        }
        return children.reduce(bytes) { $0 + $1.bufferBytes }
    }
}
