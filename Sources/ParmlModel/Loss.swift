import ParmlTensor

public enum LossKind: Int32, Sendable {
    case crossEntropy = 1, meanSquaredError = 2
    /// Sigmoid + binary cross-entropy per output (torch's
    /// BCEWithLogitsLoss): multi-label targets in [0, 1] of the output's shape.
    case binaryCrossEntropy = 3
}

/// What a loss weighs, with PyTorch's meanings (its arguments of the same
/// names). The defaults leave the loss plain.
public struct LossOptions: Sendable, Equatable {
    /// Cross-entropy: one weight per class (torch's `weight=`). The loss is
    /// Σ w[y]·lᵢ / Σ w[y] over the global batch: a weighted mean.
    public var classWeights: [Float]?
    /// Cross-entropy: ε of torch's `label_smoothing=`: the target is
    /// (1 − ε)·one-hot + ε/C.
    public var labelSmoothing: Float = 0
    /// Binary cross-entropy: one weight per output (the last dimension),
    /// multiplying the positive term (torch's `pos_weight=`).
    public var positiveWeights: [Float]?

    public init() {}

    /// Checks the values and that they apply to `kind`.
    public func validate(for kind: LossKind) throws {
        if let w = classWeights {
            guard kind == .crossEntropy else { throw ParmlError.invalidArgument("class weights apply to cross-entropy only; this loss is \(kind)") }
            guard !w.isEmpty else { throw ParmlError.invalidArgument("class weights: none given (pass nil for no weights)") }
            if let i = w.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
                throw ParmlError.invalidArgument("class weight \(i) is \(w[i]); weights must be finite and >= 0")
            }
        }
        if labelSmoothing != 0 {
            guard kind == .crossEntropy else { throw ParmlError.invalidArgument("label smoothing applies to cross-entropy only; this loss is \(kind)") }
        }
        guard labelSmoothing >= 0, labelSmoothing <= 1 else {
            throw ParmlError.invalidArgument("label smoothing must be in [0, 1], got \(labelSmoothing)")
        }
        if let p = positiveWeights {
            guard kind == .binaryCrossEntropy else {
                throw ParmlError.invalidArgument("pos_weight applies to binary cross-entropy only; this loss is \(kind)")
            }
            guard !p.isEmpty else { throw ParmlError.invalidArgument("pos_weight: none given (pass nil for no weights)") }
            if let i = p.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
                throw ParmlError.invalidArgument("pos_weight \(i) is \(p[i]); weights must be finite and >= 0")
            }
        }
    }
}

/// A loss over a batch, reduced as a mean. `scale` is 1/(predictions in the
/// global batch) for cross-entropy (samples, or samples × positions for
/// logits (N, T, classes) of a sequence), 1/(Σ class weight of the global
/// batch's targets) for class-weighted cross-entropy, and 1/(elements in the
/// global batch) for MSE and binary cross-entropy, so a slice of the batch
/// contributes exactly its share of the mean.
public final class Loss {
    public let kind: LossKind
    /// Weights and smoothing (validated; set between steps).
    public private(set) var options = LossOptions()
    private let grad = Buffer()
    /// Float class indices narrowed to int32 for the kernel.
    private let labels = Buffer()
    /// Integer regression targets as floats.
    private let floatTargets = Buffer()

    /// Class counts of a batch's targets (class weights).
    private let counts = Buffer()

    public init(_ kind: LossKind) { self.kind = kind }

    public func setOptions(_ o: LossOptions) throws {
        try o.validate(for: kind)
        options = o
    }

    /// Checks that targets fit outputs: class indices in [0, C) of the
    /// logits' shape without its last dimension for cross-entropy ((N) for
    /// (N, C), (N, T) for a sequence's (N, T, C)), the same element count
    /// for MSE.
    public func validate(output: Shape, targets: Tensor) throws {
        let n = output[0]
        switch kind {
        case .crossEntropy:
            guard output.rank >= 2 else {
                throw ParmlError.shape("cross-entropy needs logits (N, classes) or (N, ..., classes), got \(output)")
            }
            var want = Shape(n)
            for i in 1..<(output.rank - 1) { want.append(output[i]) }
            guard targets.shape == want else {
                throw ParmlError.shape("cross-entropy: outputs \(output) but targets of shape \(targets.shape); expected \(want) class indices")
            }
            let classes = output[output.rank - 1]
            if let w = options.classWeights, w.count != classes {
                throw ParmlError.shape("cross-entropy: \(w.count) class weights for \(classes) classes (outputs \(output))")
            }
            func refuse(_ i: Int, _ t: String) -> ParmlError {
                let at = want.rank == 1 ? "sample \(i)" : "element \(i) (sample \(i / (targets.count / n)))"
                return ParmlError.invalidArgument("cross-entropy: target \(t) of \(at) is not a class index in [0, \(classes))")
            }
            // Integer labels are exact at any size; float ones are integers below 2^24 (Dataset.isClassIndex).
            switch targets.dtype {
            case .float32:
                for i in 0..<targets.count {
                    let t = targets.data[i]
                    guard t >= 0, t < Float(classes), t == t.rounded(.towardZero) else { throw refuse(i, "\(t)") }
                }
            case .int32:
                for i in 0..<targets.count where targets.int32s[i] < 0 || Int(targets.int32s[i]) >= classes {
                    throw refuse(i, "\(targets.int32s[i])")
                }
            case .int64:
                for i in 0..<targets.count where targets.int64s[i] < 0 || targets.int64s[i] >= Int64(classes) {
                    throw refuse(i, "\(targets.int64s[i])")
                }
            }
        case .meanSquaredError, .binaryCrossEntropy:
            let name = kind == .meanSquaredError ? "mse" : "binary cross-entropy"
            guard targets.count == output.count, targets.shape[0] == n else {
                throw ParmlError.shape("\(name): outputs \(output) and targets \(targets.shape) differ in size")
            }
            if targets.dtype == .float32 {
                for i in 0..<targets.count where !targets.data[i].isFinite {
                    throw ParmlError.invalidArgument("\(name): target element \(i) is not finite")
                }
            } else {
                // Integer targets are compared as floats: they must be exact in float32.
                try floatTargets.tensor.convert(from: targets, to: .float32, what: "\(name) targets")
            }
            guard kind == .binaryCrossEntropy else { return }
            let t = targets.dtype == .float32 ? targets : floatTargets.tensor
            for i in 0..<t.count where !(t.data[i] >= 0 && t.data[i] <= 1) {
                throw ParmlError.invalidArgument("binary cross-entropy: target element \(i) is \(t.data[i]), not in [0, 1]")
            }
            let outputs = output[output.rank - 1]
            if let p = options.positiveWeights, p.count != outputs {
                throw ParmlError.shape("binary cross-entropy: \(p.count) pos_weight values for \(outputs) outputs (outputs \(output))")
            }
        }
    }

    /// Class weights: Σ w[y] over `targets` (validated), from the class
    /// counts, which `reduce` may sum over the ranks holding other rows
    /// before they are weighed. Counts (exact in float32 below 2^24 per class)
    /// weighed in a fixed class order give every layout serial's sum.
    public func targetWeight(_ targets: Tensor, classes: Int, reduce: ((UnsafeMutablePointer<Float>, Int) throws -> Void)? = nil) throws -> Float {
        guard let w = options.classWeights else { return Float(targets.count) }
        let c = try counts.shaped(Shape(classes))
        c.fill(0)
        let y = try classIndices(targets, into: labels)
        for i in 0..<targets.count { c.data[Int(y[i])] += 1 }
        try reduce?(c.data, classes)
        var sum = 0.0
        for k in 0..<classes { sum += Double(c.data[k]) * Double(w[k]) }
        guard sum > 0 else {
            throw ParmlError.invalidArgument("class weights: every target of the batch has weight 0, so the weighted mean is undefined")
        }
        return Float(sum)
    }

    /// Per-sample weights: each sample's part of the weighted mean's
    /// denominator, into `into` (one float per sample of `targets`):
    /// sᵢ × (Σ over its targets of w[y] with class weights, else the
    /// predictions (cross-entropy) or elements (MSE, binary) of one
    /// sample). Every prediction's weight is its sample's weight times its
    /// class's, so the mean is Σ weight·loss / Σ weight over the batch.
    public func sampleDenominators(
        targets: Tensor, weights s: UnsafePointer<Float>, output: Shape, into d: UnsafeMutablePointer<Float>
    ) throws {
        let n = targets.shape[0]
        guard kind == .crossEntropy, let w = options.classWeights else {
            let per = Float(kind == .crossEntropy ? predictionsPerSample(output: output) : output.rowSize)
            for i in 0..<n { d[i] = s[i] * per }
            return
        }
        let y = try classIndices(targets, into: labels)
        let per = targets.count / max(n, 1)
        for i in 0..<n {
            var sum: Float = 0
            for t in 0..<per { sum += w[Int(y[i * per + t])] }
            d[i] = s[i] * sum
        }
    }

    /// The scale that makes a batch of `samples` rows of `output` a mean.
    public func meanScale(samples: Int, output: Shape) -> Float {
        switch kind {
        case .crossEntropy: return 1 / Float(samples * predictionsPerSample(output: output))
        case .meanSquaredError, .binaryCrossEntropy: return 1 / Float(samples * output.rowSize)
        }
    }

    /// Predictions one sample makes: cross-entropy 1 for logits (N, C), T
    /// for a sequence's (N, T, C); binary cross-entropy one per output (each
    /// label is a yes/no prediction). Accuracy is over these.
    public func predictionsPerSample(output: Shape) -> Int {
        if kind == .binaryCrossEntropy { return output.rowSize }
        guard kind == .crossEntropy, output.rank >= 2, output[output.rank - 1] > 0 else { return 1 }
        return output.rowSize / output[output.rank - 1]
    }

    /// Whether the loss counts correct predictions (accuracy applies).
    public var classifies: Bool { kind != .meanSquaredError }

    /// Loss (scaled sum), hits (cross-entropy: arg-max is the target;
    /// binary: the logit's sign agrees with the target's side of 0.5), and, when
    /// `wantGradient`, dL/doutput in `gradient`. Targets must be validated.
    /// `sampleWeights` (one per row of `output`, validated) multiply each
    /// sample's terms; `scale` is then 1 / Σ of `sampleDenominators`.
    public func compute(
        output: Tensor, targets: Tensor, scale: Float, sampleWeights: UnsafePointer<Float>? = nil, wantGradient: Bool
    ) throws -> (loss: Float, correct: Int) {
        var correct = 0
        let g = wantGradient ? try grad.shaped(output.shape) : nil
        let n = max(output.shape[0], 1)
        switch kind {
        case .crossEntropy:
            let classes = output.shape[output.shape.rank - 1], rows = output.count / max(classes, 1)
            let loss = Kernels.softmaxCrossEntropy(
                output.data, targets: try classIndices(targets, into: labels), rows: rows, cols: classes,
                scale: scale, classWeights: options.classWeights, smoothing: options.labelSmoothing,
                rowWeights: sampleWeights, rowsPerWeight: max(rows / n, 1), dlogits: g?.data, correct: &correct)
            return (loss, correct)
        case .meanSquaredError, .binaryCrossEntropy:
            var t = targets
            if targets.dtype != .float32 {
                t = floatTargets.tensor
                try t.convert(from: targets, to: .float32, what: "targets")
            }
            if kind == .meanSquaredError {
                return (
                    Kernels.meanSquaredError(
                        output.data, targets: t.data, count: output.count, scale: scale, rowWeights: sampleWeights,
                        elementsPerWeight: max(output.count / n, 1), dp: g?.data), 0
                )
            }
            let loss = Kernels.binaryCrossEntropyWithLogits(
                output.data, targets: t.data, count: output.count, outputs: output.shape[output.shape.rank - 1],
                positiveWeights: options.positiveWeights, scale: scale, rowWeights: sampleWeights,
                elementsPerWeight: max(output.count / n, 1), dx: g?.data, correct: &correct)
            return (loss, correct)
        }
    }

    /// The gradient written by the last `compute(wantGradient: true)`.
    public var gradient: Tensor { grad.tensor }
}

/// Validated class indices as int32: int32 targets as they are, others
/// narrowed into `scratch` (allocates only when it must grow).
public func classIndices(_ targets: Tensor, into scratch: Buffer) throws -> UnsafePointer<Int32> {
    if targets.dtype == .int32 { return UnsafePointer(targets.int32s) }
    let t = try scratch.shaped(targets.shape, dtype: .int32)
    try t.convert(from: targets, to: .int32, what: "targets")
    return UnsafePointer(t.int32s)
}
