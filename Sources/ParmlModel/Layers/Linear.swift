import ParmlTensor

// Shapes: x (R, in) where R is the product of the leading dims, W (out, in)
// as PyTorch stores it, b (out), y (R, out).
// forward:  y = x·Wᵀ + b           (one sgemm)
// backward: dW = β·dW + dyᵀ·x, db = β·db + Σ_rows dy, dx = dy·W
public final class Linear: KindedLayer, MatrixLayer {
    public static let descriptor = LayerKind(
        name: "linear", className: "Linear",
        doc: "y = x W^T + b with W (out_features, in_features), as torch.nn.Linear; input (..., in_features) -> (..., out_features)",
        attributes: [
            .size("in_features", doc: "size of each input row"),
            .size("out_features", doc: "size of each output row"),
            .flag("bias", default: true, doc: "adds a learned bias b (out_features)"),
        ]
    ) { a in try Linear(inFeatures: a.int("in_features"), outFeatures: a.int("out_features"), bias: a.bool("bias")) }

    public let inFeatures: Int
    public let outFeatures: Int
    public let hasBias: Bool

    public private(set) var weight: Tensor?
    public private(set) var bias: Tensor?
    private var weightGrad: Tensor?
    private var biasGrad: Tensor?
    /// The last forward's input (read by the tied classifier's norm pass).
    private(set) var input: Tensor?
    private let output = Buffer()
    private let gradInput = Buffer()
    /// Private training's per-example norms: Gram matrices or one example's gradient.
    private let normScratch = Buffer()
    /// bf16 precision's operand copies and plans.
    private let bf16 = BF16Projection()

    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true) throws {
        guard inFeatures > 0, outFeatures > 0 else {
            throw ParmlError.invalidArgument("linear: features must be positive, got in=\(inFeatures) out=\(outFeatures)")
        }
        guard inFeatures <= Int(Int32.max), outFeatures <= Int(Int32.max),
            inFeatures.multipliedReportingOverflow(by: outFeatures).overflow == false,
            inFeatures * outFeatures <= Int(Int32.max)
        else {
            throw ParmlError.invalidArgument("linear: \(inFeatures)x\(outFeatures) weights are too large")
        }
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.hasBias = bias
    }

    public func replicate() throws -> Layer {
        try Linear(inFeatures: inFeatures, outFeatures: outFeatures, bias: hasBias)
    }

    public var attributes: Attributes {
        ["in_features": .int(Int64(inFeatures)), "out_features": .int(Int64(outFeatures)), "bias": .bool(hasBias)]
    }

    public var planLabel: String { "linear(\(inFeatures)→\(outFeatures))" }

    public func columnSlice(outFeatures: Int) throws -> Layer { try Linear(inFeatures: inFeatures, outFeatures: outFeatures, bias: hasBias) }

    public func rowSlice(inFeatures: Int) throws -> Layer { try Linear(inFeatures: inFeatures, outFeatures: outFeatures, bias: false) }

    /// Gemm on rank-2 inputs (transB = 1: W is (out, in) as parml keeps it);
    /// MatMul with Wᵀ (+ Add) on higher ranks, which Gemm refuses.
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        if shape.rank == 2 {
            let w = try g.parameter(0)
            return try g.node("Gemm", hasBias ? [x, w, try g.parameter(1)] : [x, w], [.int("transB", 1)])
        }
        let y = try g.node("MatMul", [x, try g.parameter(0, transposed: true)])
        return hasBias ? try g.node("Add", [y, try g.parameter(1)]) : y
    }

    public var parameterSpecs: [ParameterSpec] {
        ParameterSpec.weightAndBias(Shape(outFeatures, inFeatures), outputs: outFeatures, fanIn: inFeatures, bias: hasBias)
    }

    public func bind(values: [Tensor], gradients: [Tensor]) {
        weight = values[0]
        weightGrad = gradients[0]
        if hasBias {
            bias = values[1]
            biasGrad = gradients[1]
        }
    }

    public func outputShape(for input: Shape) throws -> Shape {
        guard input.rank >= 2, input[input.rank - 1] == inFeatures else {
            throw ParmlError.shape("linear(\(inFeatures)→\(outFeatures)) expects input (..., \(inFeatures)), got \(input)")
        }
        var s = input
        s[s.rank - 1] = outFeatures
        return s
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        guard let weight else { throw ParmlError.state("linear layer is not bound to parameters") }
        let rows = x.count / inFeatures
        var s = x.shape
        s[s.rank - 1] = outFeatures
        let y = try output.shaped(s)
        input = x
        if ctx.precision == .bf16 {  // bf16 products (BF16Projection.swift); oneDNN's kernel adds b
            try bf16.forward(
                x.data, weight: weight.data, rows: rows, inF: inFeatures, outF: outFeatures, beta: 0, into: y.data, ctx,
                bias: bias.map { UnsafePointer($0.data) })
            return y
        }
        if let bias {
            // Broadcast b into y, then accumulate the product on top (beta = 1):
            // one pass over y instead of a product pass plus a bias pass.
            Kernels.broadcastRows(bias.data, into: y.data, rows: rows, cols: outFeatures)
        }
        BLAS.gemm(
            transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures,
            x.data, lda: inFeatures, weight.data, ldb: inFeatures,
            beta: bias == nil ? 0 : 1, y.data, ldc: outFeatures)
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard let weight, let weightGrad, let x = input else {
            throw ParmlError.state("linear backward without forward")
        }
        let rows = dy.count / outFeatures
        let beta = ctx.gradientBeta(accumulate: accumulate)
        if ctx.precision == .bf16 {  // bf16 products (BF16Projection.swift); db stays float32
            let dx = needInputGradient ? try gradInput.shaped(x.shape) : nil
            try bf16.backward(
                dy.data, rows: rows, inF: inFeatures, outF: outFeatures, beta: beta, weightGradient: weightGrad.data,
                inputGradient: dx?.data)
            if let biasGrad { Kernels.sumRows(dy.data, rows: rows, cols: outFeatures, into: biasGrad.data, beta: beta) }
            return dx
        }
        BLAS.gemm(
            transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
            dy.data, lda: outFeatures, x.data, ldb: inFeatures,
            beta: beta, weightGrad.data, ldc: inFeatures)
        if let biasGrad {
            Kernels.sumRows(dy.data, rows: rows, cols: outFeatures, into: biasGrad.data, beta: beta)
        }
        guard needInputGradient else { return nil }
        return try inputGradient(dy, weight: weight, input: x)
    }
}

extension Linear {
    /// dx = dy·W into the layer's input-gradient buffer.
    fileprivate func inputGradient(_ dy: Tensor, weight: Tensor, input x: Tensor) throws -> Tensor {
        let dx = try gradInput.shaped(x.shape)
        BLAS.gemm(
            transA: false, transB: false, m: dy.count / outFeatures, n: inFeatures, k: outFeatures,
            dy.data, lda: outFeatures, weight.data, ldb: inFeatures,
            beta: 0, dx.data, ldc: inFeatures)
        return dx
    }
}

/// Generation decodes it with its forward: rows are independent.
extension Linear: PositionwiseLayer {}

/// Private training. Example i's weight gradient is Σ_t δ_it x_itᵀ over its
/// T positions (T = 1 for a rank-2 input): its squared norm by the ghost
/// norm, the Gram form or materialised (`PerExampleNorms.addProjectionNorms`).
extension Linear: PerExampleNormLayer {
    public func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        guard let weight, let x = input else { throw ParmlError.state("linear backward without forward") }
        let examples = dy.shape[0], rows = dy.count / outFeatures
        try PerExampleNorms.addProjectionNorms(
            input: x.data, inFeatures: inFeatures, outputGradient: dy.data, outFeatures: outFeatures, examples: examples,
            positions: examples > 0 ? rows / examples : 0, bias: hasBias, scratch: normScratch, into: squaredNorms)
        guard needInputGradient else { return nil }
        return try inputGradient(dy, weight: weight, input: x)
    }
}

extension Linear: WorkDescribingLayer {
    /// One (R × in)·(in × out) product; the bias is element-wise.
    public func forwardWork(input: Shape) throws -> LayerWork {
        let rows = input.count / max(inFeatures, 1)
        return LayerWork(products: [MatrixProduct(m: rows, n: outFeatures, k: inFeatures, timesWeights: true)], elementwiseFloats: Double(rows * outFeatures))
    }
}
