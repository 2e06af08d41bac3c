import ParmlTensor

// Shapes: x (N, C), (N, C, L) or (N, C, H, W); channel c is the N·S values
// x[n, c, ...] (S = the positions after the channel dimension). γ, β,
// running mean and variance (C). Training normalises with the batch's
// biased variance and feeds the unbiased one to the running variance, as
// PyTorch's BatchNorm1d/2d do.

/// How a training forward gathers its statistics when a batch is spread
/// over pieces (deterministic chunks, micro-batches, data-parallel ranks).
public enum BatchStatisticsScope: String, Sendable {
    /// Over the whole global batch, whatever the layout (PyTorch's
    /// SyncBatchNorm): every layout normalises with serial training's numbers.
    case global
    /// Over the rows one forward call holds: a rank's micro-batch in the
    /// default mode (PyTorch's BatchNorm under DDP), one chunk in
    /// deterministic mode (so that layouts still agree with each other).
    case local
}

/// A layer whose training forward normalises with statistics over rows that
/// other pieces of the batch hold. The trainer runs it in phases around
/// collectives (BatchStatisticsExecution.swift); its own `forward` and
/// `backward` are the one-piece case, each phase in turn.
public protocol BatchStatisticsLayer: Layer {
    var channels: Int { get }
    var scope: BatchStatisticsScope { get }
    /// Values per channel in a piece shaped `x`: rows × positions.
    func valuesPerChannel(rows: Int, input x: Shape) -> Int
    /// Per channel, Σx over the piece into sum[0..<C] and Σ(x − x̄)² around
    /// the piece's own mean into m2[0..<C].
    func addMoments(_ x: Tensor, sum: UnsafeMutablePointer<Float>, m2: UnsafeMutablePointer<Float>) throws
    /// The training output for this piece with the given per-channel mean
    /// and biased variance; kept for `gradientSums` and `inputGradient`.
    func normalize(_ x: Tensor, mean: UnsafePointer<Float>, variance: UnsafePointer<Float>) throws -> Tensor
    /// running = (1 − momentum)·running + momentum·batch, with the unbiased
    /// variance of `count` values per channel. Called once per step.
    func updateRunningStatistics(mean: UnsafePointer<Float>, variance: UnsafePointer<Float>, count: Int)
    /// Writes dγ and dβ (g·β + new, `ctx.gradientBeta`) and the piece's
    /// Σdy into sums[0..<C] and Σdy·x̂ into sums[C..<2C].
    func gradientSums(_ dy: Tensor, _ ctx: PassContext, accumulate: Bool, into sums: UnsafeMutablePointer<Float>) throws
    /// dL/dx for this piece from the sums over `count` values per channel.
    func inputGradient(_ dy: Tensor, sums: UnsafePointer<Float>, count: Int) throws -> Tensor
}

public final class BatchNorm: KindedLayer, BatchStatisticsLayer {
    public static let descriptor = LayerKind(
        name: "batch_norm", className: "BatchNorm",
        doc: "batch normalisation over channels (dimension 1) of (N, C), (N, C, L) or (N, C, H, W) inputs, as "
            + "torch.nn.BatchNorm1d/2d: batch statistics in training, running statistics in evaluation",
        attributes: [
            .size("num_features", doc: "the channels C"),
            .float("eps", default: 1e-5, doc: "added to the variance (PyTorch's default 1e-5)", rule: "positive and finite") {
                $0 > 0 && $0.isFinite
            },
            .float("momentum", default: 0.1, doc: "weight of the batch in the running statistics (PyTorch's default 0.1)", rule: "in 0...1") {
                $0 >= 0 && $0 <= 1
            },
            .flag("affine", default: true, doc: "has a learned scale (init 1) and shift (init 0)"),
            AttributeSpec(
                "statistics", .string, default: .string("global"),
                doc: "'global': over the whole batch in every layout (SyncBatchNorm); 'local': over each forward call's rows",
                rule: "'global' or 'local'"
            ) {
                if case .string(let v) = $0 { return BatchStatisticsScope(rawValue: v) != nil }
                return false
            },
        ]
    ) { a in
        try BatchNorm(
            channels: a.int("num_features"), eps: a.float("eps"), momentum: a.float("momentum"), affine: a.bool("affine"),
            scope: BatchStatisticsScope(rawValue: a.string("statistics")) ?? .global)
    }

    public let channels: Int
    public let eps: Float
    public let momentum: Float
    public let affine: Bool
    public let scope: BatchStatisticsScope

    private var gamma: Tensor?
    private var beta: Tensor?
    private var gammaGrad: Tensor?
    private var betaGrad: Tensor?
    private var runningMean: Tensor?
    private var runningVariance: Tensor?
    private var runningGrads: [Tensor] = []
    private var input: Tensor?
    private let output = Buffer()
    private let gradInput = Buffer()
    /// Per channel: the mean and 1/√(var + eps) of the last training forward.
    private let mean = Buffer()
    private let rstd = Buffer()
    /// 6·C floats: [0, 2C) a piece's moments, then backward's a, mean dy and
    /// b in [0, 3C); [2C, 4C) the folded scale and shift; [4C, 6C) a piece's
    /// gradient sums.
    private let scratch = Buffer()
    /// Without affine: γ = 1, β = 0 and the gradients nobody reads.
    private let identity = Buffer()

    public init(channels: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true, scope: BatchStatisticsScope = .global) throws {
        guard channels > 0 else { throw ParmlError.invalidArgument("batch_norm: num_features must be positive, got \(channels)") }
        guard eps > 0, eps.isFinite else { throw ParmlError.invalidArgument("batch_norm: eps must be positive and finite, got \(eps)") }
        guard momentum >= 0, momentum <= 1 else { throw ParmlError.invalidArgument("batch_norm: momentum must be in 0...1, got \(momentum)") }
        self.channels = channels
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.scope = scope
        _ = try mean.shaped(Shape(channels))
        _ = try rstd.shaped(Shape(channels))
        _ = try scratch.shaped(Shape(6 * channels))
        if !affine {
            let t = try identity.shaped(Shape(4 * channels))
            (t.data).update(repeating: 1, count: channels)
            (t.data + channels).update(repeating: 0, count: 3 * channels)
        }
    }

    public func replicate() throws -> Layer {
        try BatchNorm(channels: channels, eps: eps, momentum: momentum, affine: affine, scope: scope)
    }

    public var attributes: Attributes {
        [
            "num_features": .int(Int64(channels)), "eps": .float(eps), "momentum": .float(momentum), "affine": .bool(affine),
            "statistics": .string(scope.rawValue),
        ]
    }

    public var planLabel: String { "batch_norm(\(channels)\(scope == .local ? ", local" : ""))" }

    public var parameterSpecs: [ParameterSpec] {
        let c = Shape(channels)
        var specs: [ParameterSpec] = []
        if affine {
            specs.append(ParameterSpec(name: "weight", shape: c, initializer: .constant(1), decays: false))
            specs.append(ParameterSpec(name: "bias", shape: c, initializer: .constant(0), decays: false))
        }
        specs.append(ParameterSpec(name: "running_mean", shape: c, initializer: .constant(0), decays: false, trained: false))
        specs.append(ParameterSpec(name: "running_var", shape: c, initializer: .constant(1), decays: false, trained: false))
        return specs
    }

    public func bind(values: [Tensor], gradients: [Tensor]) {
        let k = affine ? 2 : 0
        if affine {
            (gamma, beta, gammaGrad, betaGrad) = (values[0], values[1], gradients[0], gradients[1])
        } else {
            let t = identity.tensor
            gamma = Tensor(view: t.data, shape: Shape(channels), owner: t)
            beta = Tensor(view: t.data + channels, shape: Shape(channels), owner: t)
            gammaGrad = Tensor(view: t.data + 2 * channels, shape: Shape(channels), owner: t)
            betaGrad = Tensor(view: t.data + 3 * channels, shape: Shape(channels), owner: t)
        }
        runningMean = values[k]
        runningVariance = values[k + 1]
        runningGrads = [gradients[k], gradients[k + 1]]
    }

    public func outputShape(for input: Shape) throws -> Shape {
        guard (2...4).contains(input.rank), input[1] == channels else {
            throw ParmlError.shape("batch_norm(\(channels)) expects input (N, \(channels)), (N, \(channels), L) or (N, \(channels), H, W), got \(input)")
        }
        return input
    }

    /// ONNX's BatchNormalization in inference form reads the running statistics.
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String {
        let k = affine ? 2 : 0
        let scale = affine ? try g.parameter(0) : try g.constant([Float](repeating: 1, count: channels), dims: [channels])
        let shift = affine ? try g.parameter(1) : try g.constant([Float](repeating: 0, count: channels), dims: [channels])
        return try g.node(
            "BatchNormalization", [x, scale, shift, try g.parameter(k), try g.parameter(k + 1)],
            [.float("epsilon", eps), .float("momentum", 1 - momentum)])
    }

    private func positions(_ s: Shape) -> Int { s.count / max(1, s[0] * channels) }

    public func valuesPerChannel(rows: Int, input x: Shape) -> Int { rows * positions(x) }

    // MARK: - One piece (a model run outside the trainer, tests)

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        _ = try outputShape(for: x.shape)
        guard let runningMean, let runningVariance else { throw ParmlError.state("batch_norm is not bound to parameters") }
        guard ctx.training else { return try apply(x, mean: runningMean.data, variance: runningVariance.data) }
        let s = scratch.tensor.data
        try addMoments(x, sum: s, m2: s + channels)
        let n = Float(valuesPerChannel(rows: x.shape[0], input: x.shape))
        for c in 0..<channels {
            s[c] /= n
            s[channels + c] /= n
        }
        return try normalize(x, mean: s, variance: s + channels)
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        let sums = scratch.tensor.data + 4 * channels
        try gradientSums(dy, ctx, accumulate: accumulate, into: sums)
        guard needInputGradient, let x = input else { return nil }
        return try inputGradient(dy, sums: sums, count: valuesPerChannel(rows: x.shape[0], input: x.shape))
    }

    // MARK: - Phases (BatchStatisticsLayer)

    public func addMoments(_ x: Tensor, sum: UnsafeMutablePointer<Float>, m2: UnsafeMutablePointer<Float>) throws {
        _ = try outputShape(for: x.shape)
        Kernels.batchNormMoments(x.data, n: x.shape[0], c: channels, s: positions(x.shape), sum: sum, m2: m2)
    }

    public func normalize(_ x: Tensor, mean m: UnsafePointer<Float>, variance v: UnsafePointer<Float>) throws -> Tensor {
        let y = try apply(x, mean: m, variance: v)
        mean.tensor.data.update(from: m, count: channels)
        input = x
        return y
    }

    /// y = (x − mean)/√(variance + eps)·γ + β, as one scale and shift per channel.
    private func apply(_ x: Tensor, mean m: UnsafePointer<Float>, variance v: UnsafePointer<Float>) throws -> Tensor {
        guard let gamma, let beta else { throw ParmlError.state("batch_norm is not bound to parameters") }
        let y = try output.shaped(x.shape)
        let r = rstd.tensor.data, scale = scratch.tensor.data + 2 * channels, shift = scale + channels
        for c in 0..<channels {
            r[c] = 1 / (v[c] + eps).squareRoot()
            scale[c] = gamma.data[c] * r[c]
            shift[c] = beta.data[c] - m[c] * scale[c]
        }
        Kernels.batchNormApply(x.data, n: x.shape[0], c: channels, s: positions(x.shape), scale: scale, shift: shift, y.data)
        return y
    }

    public func updateRunningStatistics(mean m: UnsafePointer<Float>, variance v: UnsafePointer<Float>, count: Int) {
        guard let runningMean, let runningVariance else { return }
        let unbias = count > 1 ? Float(count) / Float(count - 1) : 1
        for c in 0..<channels {
            runningMean.data[c] = (1 - momentum) * runningMean.data[c] + momentum * m[c]
            runningVariance.data[c] = (1 - momentum) * runningVariance.data[c] + momentum * (v[c] * unbias)
        }
    }

    public func gradientSums(_ dy: Tensor, _ ctx: PassContext, accumulate: Bool, into sums: UnsafeMutablePointer<Float>) throws {
        guard let gammaGrad, let betaGrad, let x = input else { throw ParmlError.state("batch_norm backward without forward") }
        guard dy.shape == x.shape else { throw ParmlError.shape("batch_norm: gradient \(dy.shape) for output \(x.shape)") }
        Kernels.batchNormGradientSums(
            dy.data, x.data, n: x.shape[0], c: channels, s: positions(x.shape), mean: mean.tensor.data, sumDy: sums,
            sumDyX: sums + channels)
        let r = rstd.tensor.data
        for c in 0..<channels { sums[channels + c] *= r[c] }  // Σdy·(x − mean) → Σdy·x̂
        let beta = ctx.gradientBeta(accumulate: accumulate)
        gammaGrad.decayGradient(by: beta)
        betaGrad.decayGradient(by: beta)
        for t in runningGrads { t.decayGradient(by: beta) }
        for c in 0..<channels {
            gammaGrad.data[c] += sums[channels + c]
            betaGrad.data[c] += sums[c]
        }
    }

    public func inputGradient(_ dy: Tensor, sums: UnsafePointer<Float>, count: Int) throws -> Tensor {
        guard let gamma, let x = input else { throw ParmlError.state("batch_norm backward without forward") }
        let dx = try gradInput.shaped(x.shape)
        // dx = γ·r·(dy − Σdy/n − x̂·Σdy·x̂/n), with x̂ = (x − mean)·r.
        let r = rstd.tensor.data, a = scratch.tensor.data, meanDy = a + channels, b = a + 2 * channels
        let inv = 1 / Float(max(count, 1))
        for c in 0..<channels {
            a[c] = gamma.data[c] * r[c]
            meanDy[c] = sums[c] * inv
            b[c] = sums[channels + c] * inv * r[c]
        }
        Kernels.batchNormInputGradient(
            dy.data, x.data, n: x.shape[0], c: channels, s: positions(x.shape), mean: mean.tensor.data, a: a, meanDy: meanDy, b: b,
            dx.data)
        return dx
    }
}

/// Between a column/row pair of convolutions each tp rank normalises its own
/// channels: their statistics do not involve the others (ChannelwiseLayer).
extension BatchNorm: ChannelwiseLayer {
    public func channelSlice(start: Int, count: Int, of channels: Int) throws -> Layer {
        try BatchNorm(channels: count, eps: eps, momentum: momentum, affine: affine, scope: scope)
    }
}
