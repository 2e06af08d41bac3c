import ParmlTensor

// What a layer's forward pass costs, as each kind declares it: the matrix
// products it runs and the floats its element-wise work touches. The
// strategy advisor (ParmlTraining/Advisor) turns these into seconds with
// the machine's measured rates; nothing here runs a kernel.

/// One matrix product (m × k)·(k × n), run `count` times.
public struct MatrixProduct: Sendable, Equatable {
    public let m: Int
    public let n: Int
    public let k: Int
    public let count: Int
    /// Whether it is an input times a weight matrix transposed (x·Wᵀ) run
    /// as one `BLAS.gemm`, so its backward is dy·W and dyᵀ·x: the advisor
    /// then knows which of them OpenBLAS runs on its small-matrix kernels.
    /// False where the kernel is another (convolutions, attention's per-head products).
    public let timesWeights: Bool

    public init(m: Int, n: Int, k: Int, count: Int = 1, timesWeights: Bool = false) {
        (self.m, self.n, self.k, self.count, self.timesWeights) = (m, n, k, count, timesWeights)
    }

    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(count) }
}

/// Element-wise kernels whose arithmetic, not their memory traffic, sets
/// their pace: GELU's erf and exp, tanh's and sigmoid's exp, LayerNorm's row
/// statistics (the kernels `Kernels` cuts at its costly grain). On the Zen 3
/// host GELU's training forward and backward took 3.6–4.0 ns an element and
/// LayerNorm's 1.9–2.0, where their traffic at the caches' rate says about 0.4.
/// The strategy advisor's calibration times each on one layer of its kind
/// (`makeLayer`), per element of a training forward and backward.
public enum ArithmeticKernel: String, Sendable, CaseIterable {
    case gelu, tanh, sigmoid
    case layerNorm = "layer_norm"

    /// A layer that runs this kernel over `features` per row.
    public func makeLayer(features: Int) throws -> Layer {
        switch self {
        case .gelu: return Activation(.gelu)
        case .tanh: return Activation(.tanh)
        case .sigmoid: return Activation(.sigmoid)
        case .layerNorm: return try LayerNorm(features: features)
        }
    }
}

/// A forward pass's work. Backward is modelled as two products per forward
/// product (input and weight gradients, the same FLOPs each) and twice the
/// element-wise traffic.
public struct LayerWork: Sendable {
    public var products: [MatrixProduct] = []
    /// Floats read or written by element-wise work (activations, norms, softmax).
    public var elementwiseFloats: Double = 0
    /// Elements each arithmetic-bound kernel runs over, forward and backward
    /// (`ArithmeticBoundLayer`; its traffic is in `elementwiseFloats` as well).
    public var arithmetic: [ArithmeticKernel: Double] = [:]

    public init(products: [MatrixProduct] = [], elementwiseFloats: Double = 0, arithmetic: [ArithmeticKernel: Double] = [:]) {
        self.products = products
        self.elementwiseFloats = elementwiseFloats
        self.arithmetic = arithmetic
    }

    public var productFLOPs: Double { products.reduce(0) { $0 + $1.flops } }

    public static func + (a: LayerWork, b: LayerWork) -> LayerWork {
        LayerWork(
            products: a.products + b.products, elementwiseFloats: a.elementwiseFloats + b.elementwiseFloats,
            arithmetic: a.arithmetic.merging(b.arithmetic, uniquingKeysWith: +))
    }
}

/// A kind that runs matrix products declares them; every other kind is
/// element-wise work over its input and output.
public protocol WorkDescribingLayer: Layer {
    func forwardWork(input: Shape) throws -> LayerWork
}

/// A kind whose element-wise work is arithmetic-bound (its traffic is
/// still its input and output) declares the elements each kernel runs over.
public protocol ArithmeticBoundLayer: Layer {
    func arithmeticWork(input: Shape) -> [ArithmeticKernel: Double]
}

extension Layer {
    /// This layer's forward work for `input`: its own declaration, or one
    /// read of the input and one write of the output (with an
    /// arithmetic-bound kind's kernel elements), and its children's
    /// in order for a container. A sequence moves no data of its own (each
    /// layer hands its output to the next), and a residual block's sum
    /// reads x and the body's output and writes y. (Counted as a pass over
    /// input and output, the sequences a tensor-parallel rewrite nests in
    /// each block had charged the GPT's tp 2 ranks 2.1 M floats in its MLP
    /// block, where the one rank, with twice their columns, moves 1.9 M.)
    public func work(input: Shape) throws -> LayerWork {
        if let w = self as? WorkDescribingLayer { return try w.forwardWork(input: input) }
        let out = try outputShape(for: input)
        let own: Double = self is Sequential ? 0 : self is Residual ? 3 * Double(input.count) : Double(input.count + out.count)
        var total = LayerWork(elementwiseFloats: own, arithmetic: (self as? ArithmeticBoundLayer)?.arithmeticWork(input: input) ?? [:])
        var s = input
        for c in children {
            total = total + (try c.work(input: s))
            s = try c.outputShape(for: s)
        }
        return total
    }
}
