import ParmlTensor

// 2-D convolution, NCHW as torch.nn.Conv2d. Shapes: x (N, C, H, W),
// W (O, C/g, kh, kw) as PyTorch stores it, b (O), y (N, O, Ho, Wo); g groups
// of Cg = C/g input and Og = O/g output channels; K = Cg·kh·kw taps per
// output, P = Ho·Wo positions. Per sample n and group, samples in order:
// forward:  col (K, P) = im2col(x[n, group])            (one column buffer)
//           y[n, group] (Og, P) = b + W_group (Og, K) · col   (one sgemm)
// backward: col recomputed (memory stays one column buffer, not N of them)
//           dW_group = β·dW_group + Σ_n dy[n, group] · colᵀ
//           db = β·db + Σ_n Σ_P dy
//           dcol (K, P) = W_groupᵀ · dy[n, group];  dx[n, group] = col2im(dcol)
// A 1×1 kernel with stride 1 and no padding has col = x: no copy is made.
// With the oneDNN backend (the default) oneDNN's primitives do all three
// instead, per batch (ConvolutionPlans, pml_dnnl.h); the same β rule holds.
public final class Conv2d: KindedLayer, ChannelMatrixLayer {
    public static let descriptor = LayerKind(
        name: "conv2d", className: "Conv2d",
        doc: "2-D convolution (cross-correlation) as torch.nn.Conv2d, weight (out_channels, in_channels/groups, kh, kw); "
            + "input (N, in_channels, H, W) -> (N, out_channels, Ho, Wo)",
        attributes: [
            .size("in_channels", doc: "channels C of the input"),
            .size("out_channels", doc: "channels of the output (filters)"),
            .pair("kernel_size", minimum: 1, doc: "kernel height and width"),
            .pair("stride", default: [1, 1], minimum: 1, doc: "step between windows"),
            .pair("padding", default: [0, 0], minimum: 0, doc: "zeros added on each side"),
            .pair("dilation", default: [1, 1], minimum: 1, doc: "spacing of the kernel's taps"),
            .size("groups", default: 1, doc: "channel groups convolved apart (in_channels for depthwise); divides both channel counts"),
            .flag("bias", default: true, doc: "adds a learned bias b (out_channels)"),
        ]
    ) { a in
        try Conv2d(
            inChannels: a.int("in_channels"), outChannels: a.int("out_channels"), kernel: a.pair("kernel_size")!,
            stride: a.pair("stride")!, padding: a.pair("padding")!, dilation: a.pair("dilation")!, groups: a.int("groups"),
            bias: a.bool("bias"))
    }

    public let inChannels: Int
    public let outChannels: Int
    public let groups: Int
    public let window: Window2d
    public let hasBias: Bool
    /// oneDNN or im2col (ConvolutionBackend.configured when made); read at each forward.
    public var backend: ConvolutionBackend
    /// Taps per output (K = Cg·kh·kw): the weight's row length.
    let taps: Int
    let pointwise: Bool

    private(set) var weight: Tensor?
    private var bias: Tensor?
    private var weightGrad: Tensor?
    private var biasGrad: Tensor?
    private(set) var input: Tensor?
    private(set) var planes = PlaneSizes(height: 0, width: 0, outHeight: 0, outWidth: 0)
    private let output = Buffer()
    let gradInput = Buffer()
    let columns = Buffer()  // col or dcol (K, P), one sample's group at a time
    private let plans = ConvolutionPlans()
    private(set) var activePlan: ConvolutionPlan?  // the last forward's; nil when it ran im2col
    private let fresh = Buffer()  // oneDNN's dW and db before β·old + new
    let normScratch = Buffer()  // private training's per-example Gram matrices or gradients

    /// oneDNN's implementations in the last forward, nil when it ran im2col.
    public var oneDNNImplementation: String? { activePlan?.implementation }

    public init(
        inChannels: Int, outChannels: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
        dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true, backend: ConvolutionBackend = .configured
    ) throws {
        let label = "conv2d(\(inChannels)→\(outChannels))"
        guard inChannels > 0, outChannels > 0, groups > 0 else {
            throw ParmlError.invalidArgument("\(label): channels and groups must be positive, got groups=\(groups)")
        }
        guard inChannels % groups == 0, outChannels % groups == 0 else {
            throw ParmlError.invalidArgument(
                "\(label): groups (\(groups)) must divide in_channels (\(inChannels)) and out_channels (\(outChannels))")
        }
        let limit = Int(Int32.max)
        guard [kernel.0, kernel.1, stride.0, stride.1, dilation.0, dilation.1].allSatisfy({ $0 >= 1 && $0 <= limit }),
            [padding.0, padding.1].allSatisfy({ $0 >= 0 && $0 <= limit })
        else {
            throw ParmlError.invalidArgument("\(label): kernel, stride and dilation must be positive, padding not negative")
        }
        let (k, o1) = (inChannels / groups).multipliedReportingOverflow(by: kernel.0 * kernel.1)
        let (n, o2) = k.multipliedReportingOverflow(by: outChannels)
        guard !o1, !o2, n <= limit else { throw ParmlError.invalidArgument("\(label): its weights are too large") }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.groups = groups
        self.window = Window2d(kernel: kernel, stride: stride, padding: padding, dilation: dilation)
        self.hasBias = bias
        self.backend = backend
        self.taps = k
        self.pointwise = kernel == (1, 1) && stride == (1, 1) && padding == (0, 0)
    }

    public func replicate() throws -> Layer { try copy(inChannels: inChannels, outChannels: outChannels, groups: groups, bias: hasBias) }

    /// A layer with this one's window and backend over other channels.
    private func copy(inChannels: Int, outChannels: Int, groups: Int, bias: Bool) throws -> Conv2d {
        try Conv2d(
            inChannels: inChannels, outChannels: outChannels, kernel: (window.kernelH, window.kernelW),
            stride: (window.strideH, window.strideW), padding: (window.padH, window.padW),
            dilation: (window.dilationH, window.dilationW), groups: groups, bias: bias, backend: backend)
    }

    public var tapsPerChannel: Int { window.kernelH * window.kernelW }

    /// A group's output channels read only its input channels: a channel slice
    /// would have to follow the group boundaries, which this split does not do.
    public var channelSplitRefusal: String? { groups == 1 ? nil : "groups=\(groups) convolutions are not split" }

    public func outputChannelSlice(outChannels: Int) throws -> Layer { try sliced(inChannels: inChannels, outChannels: outChannels, bias: hasBias) }

    public func inputChannelSlice(inChannels: Int) throws -> Layer { try sliced(inChannels: inChannels, outChannels: outChannels, bias: false) }

    private func sliced(inChannels: Int, outChannels: Int, bias: Bool) throws -> Layer {
        guard groups == 1 else { throw ParmlError.internal("\(planLabel): \(channelSplitRefusal ?? "")") }
        return try copy(inChannels: inChannels, outChannels: outChannels, groups: 1, bias: bias)
    }

    public var attributes: Attributes {
        [
            "in_channels": .int(Int64(inChannels)), "out_channels": .int(Int64(outChannels)),
            "kernel_size": ImageShape.pair((window.kernelH, window.kernelW)), "stride": ImageShape.pair((window.strideH, window.strideW)),
            "padding": ImageShape.pair((window.padH, window.padW)), "dilation": ImageShape.pair((window.dilationH, window.dilationW)),
            "groups": .int(Int64(groups)), "bias": .bool(hasBias),
        ]
    }

    public var planLabel: String { "conv2d(\(inChannels)→\(outChannels), \(window.kernelH)x\(window.kernelW))" }

    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        let inputs = hasBias ? [x, try g.parameter(0), try g.parameter(1)] : [x, try g.parameter(0)]
        return try g.node("Conv", inputs, ImageShape.onnxAttributes(window, dilations: true) + [.int("group", Int64(groups))])
    }

    /// PyTorch's default (kaiming_uniform_ with a = √5): U(±1/√fan_in) with
    /// fan_in = K, for the weight and the bias alike.
    public var parameterSpecs: [ParameterSpec] {
        let shape = Shape(outChannels, inChannels / groups, window.kernelH, window.kernelW)
        return ParameterSpec.weightAndBias(shape, outputs: outChannels, fanIn: taps, bias: hasBias)
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
        let p = try ImageShape.planes(input, channels: inChannels, window: window, label: planLabel)
        return Shape(input[0], outChannels, p.outHeight, p.outWidth)
    }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        guard let weight else { throw ParmlError.state("conv2d layer is not bound to parameters") }
        let p = try ImageShape.planes(x.shape, channels: inChannels, window: window, label: planLabel)
        let n = x.shape[0], cg = inChannels / groups, og = outChannels / groups, positions = p.output
        let y = try output.shaped(Shape(n, outChannels, p.outHeight, p.outWidth))
        input = x
        planes = p
        activePlan = oneDNNPlan(batch: n, planes: p, bf16: ctx.precision == .bf16, threads: ctx.libraryThreads)
        if let plan = activePlan {
            try plan.forward(x.data, weight.data, bias?.data, y.data)
            return y
        }
        let col = pointwise ? nil : try columns.shaped(Shape(taps, positions))
        for s in 0..<n {
            let ys = y.data + s * outChannels * positions
            if let bias { Kernels.fillPlanes(bias.data, into: ys, planes: outChannels, size: positions) }
            for g in 0..<groups {
                let xs = x.data + (s * inChannels + g * cg) * p.input
                if let col { Kernels.im2col(xs, channels: cg, window, p, into: col.data) }
                BLAS.gemm(
                    transA: false, transB: false, m: og, n: positions, k: taps,
                    weight.data + g * og * taps, lda: taps, col?.data ?? xs, ldb: positions,
                    beta: bias == nil ? 0 : 1, ys + g * og * positions, ldc: positions)
            }
        }
        return y
    }

    /// The plan for this batch when the layer runs oneDNN and oneDNN takes
    /// the shape, for the pass's thread count (PassContext.libraryThreads).
    /// bf16 precision rounds x, w and dy to bf16 inside oneDNN (docs/precision.md).
    private func oneDNNPlan(batch n: Int, planes p: PlaneSizes, bf16: Bool, threads: Int) -> ConvolutionPlan? {
        guard backend == .onednn, n > 0, OneDNN.available else { return nil }
        let key = ConvolutionPlan.Key(batch: n, height: p.height, width: p.width, threads: threads, bf16: bf16)
        return plans.plan(for: key) {
            try ConvolutionPlan(
                key: $0, inChannels: inChannels, outChannels: outChannels, groups: groups, window: window, planes: p, bias: hasBias)
        }
    }

    /// oneDNN overwrites dW and db: with β = 0 it writes them in place,
    /// otherwise into `fresh`, then dW = β·dW + fresh (and db alike).
    private func backwardOneDNN(
        _ plan: ConvolutionPlan, x: Tensor, dy: Tensor, weight: Tensor, weightGrad: Tensor, beta: Float, dx: Tensor?
    ) throws {
        guard beta != 0 else {
            return try plan.backward(x.data, weight.data, dy.data, dw: weightGrad.data, db: biasGrad?.data, dx: dx?.data)
        }
        let w = weightGrad.count, b = biasGrad?.count ?? 0
        let f = try fresh.shaped(Shape(w + b))
        try plan.backward(x.data, weight.data, dy.data, dw: f.data, db: biasGrad == nil ? nil : f.data + w, dx: dx?.data)
        weightGrad.decayGradient(by: beta)
        Kernels.addInPlace(weightGrad.data, f.data, count: w)
        if let biasGrad {
            biasGrad.decayGradient(by: beta)
            Kernels.addInPlace(biasGrad.data, f.data + w, count: b)
        }
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard let weight, let weightGrad, let x = input else { throw ParmlError.state("conv2d backward without forward") }
        let p = planes, n = x.shape[0], cg = inChannels / groups, og = outChannels / groups, positions = p.output
        let beta = ctx.gradientBeta(accumulate: accumulate)
        if let plan = activePlan {
            let dx = needInputGradient ? try gradInput.shaped(x.shape) : nil
            try backwardOneDNN(plan, x: x, dy: dy, weight: weight, weightGrad: weightGrad, beta: beta, dx: dx)
            return dx
        }
        if let biasGrad {
            biasGrad.decayGradient(by: beta)
            for s in 0..<n { Kernels.addPlaneSums(dy.data + s * outChannels * positions, into: biasGrad.data, planes: outChannels, size: positions) }
        }
        let dx = needInputGradient ? try gradInput.shaped(x.shape) : nil
        if !pointwise { dx?.fill(0) }
        let col = pointwise ? nil : try columns.shaped(Shape(taps, positions))
        if n == 0 { weightGrad.decayGradient(by: beta) }
        for s in 0..<n {
            for g in 0..<groups {
                let xs = x.data + (s * inChannels + g * cg) * p.input
                let dys = dy.data + (s * outChannels + g * og) * positions
                let w = weight.data + g * og * taps
                if let col { Kernels.im2col(xs, channels: cg, window, p, into: col.data) }
                BLAS.gemm(
                    transA: false, transB: true, m: og, n: taps, k: positions, dys, lda: positions, col?.data ?? xs, ldb: positions,
                    beta: s == 0 ? beta : 1, weightGrad.data + g * og * taps, ldc: taps)
                guard let dx else { continue }
                let dxs = dx.data + (s * inChannels + g * cg) * p.input
                // The column buffer is free again once dW has read it: dcol goes there.
                BLAS.gemm(
                    transA: true, transB: false, m: taps, n: positions, k: og, w, lda: taps, dys, ldb: positions,
                    beta: 0, col?.data ?? dxs, ldc: positions)
                if let col { Kernels.col2im(col.data, channels: cg, window, p, into: dxs) }
            }
        }
        return dx
    }
}

extension Conv2d: WorkDescribingLayer {
    /// im2col form: per sample and group, (out/g × in/g·taps)·(in/g·taps × positions).
    public func forwardWork(input: Shape) throws -> LayerWork {
        let out = try outputShape(for: input)
        let positions = out[2] * out[3], n = input[0]
        let product = MatrixProduct(
            m: outChannels / groups, n: positions, k: inChannels / groups * tapsPerChannel, count: n * groups)
        return LayerWork(products: [product], elementwiseFloats: Double(input.count) * Double(tapsPerChannel) + Double(out.count))
    }
}
