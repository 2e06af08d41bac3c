import ParmlTensor

public enum LossKind: Int32, Sendable {
    case crossEntropy = 1, meanSquaredError = 2
}

/// A loss over a batch, reduced as a mean. `scale` is 1/(predictions in the
/// global batch) for cross-entropy (samples, or samples × positions for
/// logits (N, T, classes) of a sequence) and 1/(elements in the global
/// batch) for MSE, so a slice of the batch contributes exactly its share of
/// the mean.
public final class Loss {
    public let kind: LossKind
    private let grad = Buffer()
    /// Float class indices narrowed to int32 for the kernel.
    private let labels = Buffer()
    /// Integer regression targets as floats.
    private let floatTargets = Buffer()

    public init(_ kind: LossKind) { self.kind = kind }

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
        case .meanSquaredError:
            guard targets.count == output.count, targets.shape[0] == n else {
                throw ParmlError.shape("mse: outputs \(output) and targets \(targets.shape) differ in size")
            }
            if targets.dtype == .float32 {
                for i in 0..<targets.count where !targets.data[i].isFinite {
                    throw ParmlError.invalidArgument("mse: target element \(i) is not finite")
                }
            } else {
                // Integer targets are compared as floats: they must be exact in float32.
                try floatTargets.tensor.convert(from: targets, to: .float32, what: "mse targets")
            }
        }
    }

    /// The scale that makes a batch of `samples` rows of `output` a mean.
    public func meanScale(samples: Int, output: Shape) -> Float {
        switch kind {
        case .crossEntropy: return 1 / Float(samples * predictionsPerSample(output: output))
        case .meanSquaredError: return 1 / Float(samples * output.rowSize)
        }
    }

    /// Class predictions one sample makes (cross-entropy): 1 for logits
    /// (N, C), T for a sequence's (N, T, C). Accuracy is over these.
    public func predictionsPerSample(output: Shape) -> Int {
        guard kind == .crossEntropy, output.rank >= 2, output[output.rank - 1] > 0 else { return 1 }
        return output.rowSize / output[output.rank - 1]
    }

    /// Loss (scaled sum), arg-max hits (cross-entropy), and, when
    /// `wantGradient`, dL/doutput in `gradient`. Targets must be validated.
    public func compute(output: Tensor, targets: Tensor, scale: Float, wantGradient: Bool) throws -> (loss: Float, correct: Int) {
        var correct = 0
        let g = wantGradient ? try grad.shaped(output.shape) : nil
        switch kind {
        case .crossEntropy:
            let classes = output.shape[output.shape.rank - 1]
            let loss = Kernels.softmaxCrossEntropy(
                output.data, targets: try classIndices(targets, into: labels), rows: output.count / max(classes, 1), cols: classes,
                scale: scale, dlogits: g?.data, correct: &correct)
            return (loss, correct)
        case .meanSquaredError:
            var t = targets
            if targets.dtype != .float32 {
                t = floatTargets.tensor
                try t.convert(from: targets, to: .float32, what: "mse targets")
            }
            let loss = Kernels.meanSquaredError(output.data, targets: t.data, count: output.count, scale: scale, dp: g?.data)
            return (loss, 0)
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
