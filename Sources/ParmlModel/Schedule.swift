#if canImport(Glibc)
import Glibc
#endif
import ParmlTensor

public enum ScheduleKind: Int32, Sendable {
    case constant = 1, step = 2, cosine = 3
}

/// Learning rate as a function of the step index s (0 for the first update):
///   warmup (s < W):  lr · (s+1)/W
///   then with u = s − W:
///   constant:        lr
///   step:            lr · γ^⌊u / step_size⌋
///   cosine:          min + (lr − min)·(1 + cos(π·u/(T − W)))/2 for u < T − W, min after
public struct ScheduleConfig: Sendable, Equatable {
    public var kind: ScheduleKind = .constant
    public var warmupSteps = 0
    public var stepSize = 1
    public var gamma: Float = 0.1
    public var totalSteps = 0
    public var minLearningRate: Float = 0

    public init() {}

    public func validate() throws {
        guard warmupSteps >= 0 else { throw ParmlError.invalidArgument("warmup_steps must be >= 0, got \(warmupSteps)") }
        switch kind {
        case .constant: break
        case .step:
            guard stepSize >= 1 else { throw ParmlError.invalidArgument("step schedule: step_size must be >= 1, got \(stepSize)") }
            guard gamma.isFinite, gamma > 0 else { throw ParmlError.invalidArgument("step schedule: gamma must be > 0, got \(gamma)") }
        case .cosine:
            guard totalSteps > warmupSteps else {
                throw ParmlError.invalidArgument("cosine schedule: total_steps (\(totalSteps)) must exceed warmup_steps (\(warmupSteps))")
            }
            guard minLearningRate.isFinite, minLearningRate >= 0 else {
                throw ParmlError.invalidArgument("cosine schedule: min_lr must be >= 0, got \(minLearningRate)")
            }
        }
    }

    public func learningRate(base lr: Float, step s: Int) -> Float {
        if s < warmupSteps { return lr * Float(s + 1) / Float(warmupSteps) }
        let u = s - warmupSteps
        switch kind {
        case .constant:
            return lr
        case .step:
            return lr * powf(gamma, Float(u / stepSize))
        case .cosine:
            let span = totalSteps - warmupSteps
            if u >= span { return minLearningRate }
            let c = Float((1 + cos(Double.pi * Double(u) / Double(span))) / 2)
            return minLearningRate + (lr - minLearningRate) * c
        }
    }
}

/// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_:
/// if ‖g‖ > max, g ← g · max/(‖g‖ + 1e-6).
///
/// ‖g‖² is defined blockwise so that sharded gradients (ZeRO) give the same
/// bits as whole ones: the arena is cut into fixed blocks of `blockSize`
/// elements, each block's sum of squares is taken on its own (16 fixed
/// lanes), and the block sums are added in block order. Shard boundaries fall
/// on block boundaries (Sharding), so a block never spans two ranks.
public enum GradientClipping {
    public static let blockSize = 1024

    public static func blockCount(_ count: Int) -> Int { (count + blockSize - 1) / blockSize }

    /// Writes the sum of squares of every block that starts in `range`
    /// (which must start on a block boundary) to `sums[block]`.
    public static func blockSquares(_ grads: UnsafePointer<Float>, range: Range<Int>, count: Int, into sums: UnsafeMutablePointer<Float>) {
        var start = range.lowerBound
        while start < range.upperBound {
            let end = min(start + blockSize, count)
            sums[start / blockSize] = Kernels.sumOfSquares(grads + start, count: end - start)
            start += blockSize
        }
    }

    /// ‖g‖ from block sums, added in block order.
    public static func norm(blockSums: UnsafePointer<Float>, blocks: Int) -> Float {
        var s: Float = 0
        for b in 0..<blocks { s += blockSums[b] }
        return s.squareRoot()
    }

    /// The factor to multiply gradients by (1 when no clipping is needed).
    public static func factor(norm: Float, maxNorm: Float) -> Float {
        maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1
    }

    /// Clips a whole gradient arena in place; `scratch` holds blockCount(count)
    /// floats. Returns ‖g‖ before clipping.
    @discardableResult
    public static func clip(
        _ grads: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float, scratch: UnsafeMutablePointer<Float>
    ) -> Float {
        let blocks = blockCount(count)
        blockSquares(grads, range: 0..<count, count: count, into: scratch)
        let n = norm(blockSums: scratch, blocks: blocks)
        let f = factor(norm: n, maxNorm: maxNorm)
        if f != 1 { Kernels.scale(grads, by: f, count: count) }
        return n
    }
}
