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
    /// Skip (update nothing, report) a step whose loss or gradients are
    /// not finite. Off: such a step updates with the non-finite values.
    public var skipNonFinite = true
    /// Weight decay only on the parameters whose kind decays them
    /// (`ParameterSpec.decays`: linear weights, not biases or layer_norm);
    /// off, as torch.optim: on every parameter.
    public var decayByKind = false

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
///
/// Folded momentum: for SGD with momentum (no Nesterov) the backward pass can
/// write buf = μ·buf + g itself (PassContext.gradientDecay = μ, the GEMM's
/// beta), when the gradient arena *is* the momentum buffer. The update then
/// reads two arrays instead of three and writes one instead of two.
public final class Optimizer {
    public let config: OptimizerConfig
    public let range: Range<Int>
    /// Whether the gradients handed to `update` already hold the momentum buffer.
    public let foldsMomentum: Bool
    /// Consecutive runs of `range` (offsets from its start) and whether weight decay applies on each.
    private let runs: [(range: Range<Int>, decays: Bool)]
    /// SGD: momentum buffer; Adam: first moment.
    private var state1: Tensor?
    /// Adam: second moment.
    private var state2: Tensor?

    /// SGD with momentum and without Nesterov: the case `foldedMomentum` accepts.
    public static func canFoldMomentum(_ config: OptimizerConfig) -> Bool {
        config.kind == .sgd && config.momentum > 0 && !config.nesterov
    }

    /// `foldedMomentum`: the gradient arena (range.count floats) that the
    /// backward pass folds momentum into; it then serves as the momentum state.
    /// `decaying`: the arena ranges weight decay applies to with `decayByKind`
    /// (`Model.decayingRanges`); ignored otherwise. `frozen`: ranges never
    /// updated (`Model.frozenRanges`).
    public init(
        config: OptimizerConfig, range: Range<Int>, foldedMomentum: Tensor? = nil, decaying: [Range<Int>] = [],
        frozen: [Range<Int>] = []
    ) throws {
        try config.validate()
        self.config = config
        self.range = range
        let n = range.count
        let all = config.decayByKind ? Optimizer.runs(of: range, decaying: decaying) : [(0..<n, true)]
        runs = Optimizer.removing(frozen.map { ($0.lowerBound - range.lowerBound)..<($0.upperBound - range.lowerBound) }, from: all)
        if let foldedMomentum {
            guard Optimizer.canFoldMomentum(config), foldedMomentum.count == n else {
                throw ParmlError.internal("momentum folding needs SGD with momentum and a matching buffer")
            }
            state1 = foldedMomentum
            foldsMomentum = true
            return
        }
        foldsMomentum = false
        switch config.kind {
        case .sgd:
            if config.momentum > 0 { state1 = try Tensor(shape: Shape(n)) }
        case .adam, .adamW:
            state1 = try Tensor(shape: Shape(n))
            state2 = try Tensor(shape: Shape(n))
        }
    }

    /// `range` cut where decay starts or stops, as offsets from its start.
    static func runs(of range: Range<Int>, decaying: [Range<Int>]) -> [(range: Range<Int>, decays: Bool)] {
        var out: [(range: Range<Int>, decays: Bool)] = []
        var at = range.lowerBound
        func add(_ r: Range<Int>, _ decays: Bool) {
            if !r.isEmpty { out.append(((r.lowerBound - range.lowerBound)..<(r.upperBound - range.lowerBound), decays)) }
        }
        for d in decaying.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            let lo = max(d.lowerBound, at), hi = min(d.upperBound, range.upperBound)
            guard lo < hi else { continue }
            add(at..<lo, false)
            add(lo..<hi, true)
            at = hi
        }
        add(at..<range.upperBound, false)
        return out
    }

    /// `runs` without the offsets in `frozen` (offsets from the range's start).
    static func removing(_ frozen: [Range<Int>], from runs: [(range: Range<Int>, decays: Bool)]) -> [(range: Range<Int>, decays: Bool)] {
        guard !frozen.isEmpty else { return runs }
        let cuts = frozen.sorted { $0.lowerBound < $1.lowerBound }
        var out: [(range: Range<Int>, decays: Bool)] = []
        for run in runs {
            var at = run.range.lowerBound
            for f in cuts where f.upperBound > at && f.lowerBound < run.range.upperBound {
                if f.lowerBound > at { out.append((at..<f.lowerBound, run.decays)) }
                at = max(at, f.upperBound)
            }
            if at < run.range.upperBound { out.append((at..<run.range.upperBound, run.decays)) }
        }
        return out
    }

    /// Optimizer state tensors (for checkpoints), in a fixed order.
    public var stateTensors: [Tensor] { [state1, state2].compactMap { $0 } }

    /// One update of `params[range]` from `grads[range]` at learning rate `lr`;
    /// `t` is the 1-based step number (Adam's bias correction). With folded
    /// momentum, `grads` is the momentum buffer the backward pass wrote.
    /// `rounding`, when given, is the bf16 copy of `params[range]`
    /// (BF16ParameterCopies): each updated value is rounded into it too.
    public func update(
        params: UnsafeMutablePointer<Float>, grads: UnsafeMutablePointer<Float>, lr: Float, t: Int,
        rounding: UnsafeMutablePointer<UInt16>? = nil
    ) {
        let base = range.lowerBound
        // Element-wise updates: a run without decay is the same update with wd = 0.
        for run in runs {
            update(
                params + base + run.range.lowerBound, grads + base + run.range.lowerBound, state: run.range.lowerBound,
                count: run.range.count, wd: run.decays ? config.weightDecay : 0, lr: lr, t: t,
                rounding: rounding.map { $0 + run.range.lowerBound })
        }
    }

    /// Element-wise, so split over the rank's threads (WorkerPool) in ranges
    /// that change no bit; below 16k values one thread is faster.
    private func update(
        _ p: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, state o: Int, count n: Int, wd: Float, lr: Float, t: Int,
        rounding: UnsafeMutablePointer<UInt16>?
    ) {
        WorkerPool.forRanges(count: n, grain: 16_384, UpdateTask(optimizer: self, p: p, g: g, state: o, wd: wd, lr: lr, t: t, rounded: rounding))
    }

    fileprivate func updateSlice(_ p: UnsafeMutablePointer<Float>, _ g: UnsafeMutablePointer<Float>, state o: Int, count n: Int, wd: Float, lr: Float, t: Int) {
        switch config.kind {
        case .sgd:
            if foldsMomentum {
                pml_sgd_folded_update(p, g, n, lr, wd)
            } else {
                pml_sgd_update(p, g, state1.map { $0.data + o }, n, lr, config.momentum, wd, config.nesterov ? 1 : 0)
            }
        case .adam, .adamW:
            guard let m = state1?.data, let v = state2?.data else { return }
            let b1 = config.beta1, b2 = config.beta2
            // As torch.optim.Adam: p -= (lr/bc1) · m / (√v/√bc2 + eps)
            let bc1 = 1 - powf(b1, Float(t))
            let bc2 = 1 - powf(b2, Float(t))
            let decoupled = config.kind == .adamW
            pml_adam_update(
                p, g, m + o, v + o, n, b1, b2, config.epsilon, lr / bc1, 1 / bc2.squareRoot(),
                decoupled ? 0 : wd, decoupled ? 1 - lr * wd : 1)
        }
    }
}

/// One range of an element-wise update (`Optimizer.update`), on any thread.
private struct UpdateTask: RangeTask {
    unowned(unsafe) let optimizer: Optimizer
    let p, g: UnsafeMutablePointer<Float>
    let state: Int
    let wd, lr: Float
    let t: Int
    /// bf16 copies of p to write, or nil.
    let rounded: UnsafeMutablePointer<UInt16>?

    /// Values rounded per piece: 16 KiB of updated floats, still in L1.
    private static let piece = 4096

    func run(_ r: Range<Int>, part: Int) {
        guard let rounded else {
            optimizer.updateSlice(p + r.lowerBound, g + r.lowerBound, state: state + r.lowerBound, count: r.count, wd: wd, lr: lr, t: t)
            return
        }
        var i = r.lowerBound
        while i < r.upperBound {
            let n = min(Self.piece, r.upperBound - i)
            optimizer.updateSlice(p + i, g + i, state: state + i, count: n, wd: wd, lr: lr, t: t)
            BF16.roundOnThisThread(p + i, into: rounded + i, count: n)
            i += n
        }
    }
}

import _CParmlKernels

#if canImport(Glibc)
import Glibc
#endif
