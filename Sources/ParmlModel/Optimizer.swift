import ParmlTensor

public enum OptimizerKind: Int32, Sendable {
    case sgd = 1, adam = 2, adamW = 3
}

public struct OptimizerConfig: Sendable, Equatable {
    public var kind: OptimizerKind = .sgd
    public var learningRate: Float = 0.01
    public var momentum: Float = 0
    public var nesterov = false
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public var schedule = ScheduleConfig()
    /// Clip gradients to this global L2 norm; 0 = off.
    public var clipGradNorm: Float = 0

    public init() {}

    public func validate() throws {
        func check(_ ok: Bool, _ msg: @autoclosure () -> String) throws {
            if !ok { throw ParmlError.invalidArgument(msg()) }
        }
        try check(learningRate.isFinite && learningRate >= 0, "learning_rate must be finite and >= 0, got \(learningRate)")
        try check(momentum.isFinite && momentum >= 0 && momentum < 1, "momentum must be in [0, 1), got \(momentum)")
        try check(!nesterov || momentum > 0, "Nesterov momentum needs momentum > 0")
        try check(weightDecay.isFinite && weightDecay >= 0, "weight_decay must be finite and >= 0, got \(weightDecay)")
        try check(beta1 >= 0 && beta1 < 1, "beta1 must be in [0, 1), got \(beta1)")
        try check(beta2 >= 0 && beta2 < 1, "beta2 must be in [0, 1), got \(beta2)")
        try check(epsilon.isFinite && epsilon > 0, "epsilon must be finite and > 0, got \(epsilon)")
        try check(clipGradNorm.isFinite && clipGradNorm >= 0, "clip_grad_norm must be finite and >= 0, got \(clipGradNorm)")
        try schedule.validate()
    }
}

/// Updates parameters from gradients with PyTorch's semantics for
/// torch.optim.SGD, Adam and AdamW. Works on a range of the flat arena, so a
/// ZeRO rank can update only its shard; state is kept for that range.
public final class Optimizer {
    public let config: OptimizerConfig
    public let range: Range<Int>
    /// SGD: momentum buffer; Adam: first moment.
    private var state1: Tensor?
    /// Adam: second moment.
    private var state2: Tensor?

    public init(config: OptimizerConfig, range: Range<Int>) throws {
        try config.validate()
        self.config = config
        self.range = range
        let n = range.count
        switch config.kind {
        case .sgd:
            if config.momentum > 0 { state1 = try Tensor(shape: Shape(n)) }
        case .adam, .adamW:
            state1 = try Tensor(shape: Shape(n))
            state2 = try Tensor(shape: Shape(n))
        }
    }

    /// Optimizer state tensors (for checkpoints), in a fixed order.
    public var stateTensors: [Tensor] { [state1, state2].compactMap { $0 } }

    /// One update of `params[range]` from `grads[range]` at learning rate `lr`;
    /// `t` is the 1-based step number (Adam's bias correction).
    public func update(params: UnsafeMutablePointer<Float>, grads: UnsafePointer<Float>, lr: Float, t: Int) {
        let p = params + range.lowerBound
        let g = grads + range.lowerBound
        let n = range.count
        let wd = config.weightDecay
        switch config.kind {
        case .sgd:
            guard let buf = state1?.data else {
                for i in 0..<n { p[i] -= lr * (g[i] + wd * p[i]) }
                return
            }
            let mu = config.momentum
            if config.nesterov {
                for i in 0..<n {
                    let gi = g[i] + wd * p[i]
                    let b = mu * buf[i] + gi
                    buf[i] = b
                    p[i] -= lr * (gi + mu * b)
                }
            } else {
                for i in 0..<n {
                    let b = mu * buf[i] + (g[i] + wd * p[i])
                    buf[i] = b
                    p[i] -= lr * b
                }
            }
        case .adam, .adamW:
            guard let m = state1?.data, let v = state2?.data else { return }
            let b1 = config.beta1, b2 = config.beta2, eps = config.epsilon
            let bc1 = 1 - powf(b1, Float(t))
            let bc2 = 1 - powf(b2, Float(t))
            let stepSize = lr / bc1
            let rbc2 = 1 / bc2.squareRoot()
            let decoupled = config.kind == .adamW
            let l2: Float = decoupled ? 0 : wd
            let shrink: Float = decoupled ? 1 - lr * wd : 1
            for i in 0..<n {
                let gi = g[i] + l2 * p[i]
                let mi = b1 * m[i] + (1 - b1) * gi
                let vi = b2 * v[i] + (1 - b2) * gi * gi
                m[i] = mi
                v[i] = vi
                // As torch.optim.Adam: p -= (lr/bc1) · m / (√v/√bc2 + eps)
                p[i] = p[i] * shrink - stepSize * mi / (vi.squareRoot() * rbc2 + eps)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
