import ParmlParallel
import ParmlTensor

/// Whether the data-parallel gradient sum runs on a communication thread
/// while backward computes earlier layers (PyTorch DDP's bucketing;
/// CommunicationThread.swift). The sums are the same, bit for bit, either way.
public enum OverlapSetting: Int32, Sendable {
    /// On under MPI when the processes run on more than one machine (at
    /// MPI_THREAD_SERIALIZED or above), off otherwise: what the quiet
    /// measurements in docs/communication.md found (a network to wait on
    /// pays; ranks that fill one machine's cores with compute, over shared
    /// memory or loopback, have no idle time to hide the sum in).
    case auto = 0
    case on = 1
    case off = 2

    var name: String {
        switch self {
        case .auto: "auto"
        case .on: "on"
        case .off: "off"
        }
    }
}

extension StrategyConfig {
    /// Why overlap cannot apply to this strategy (nil: it can): it overlaps
    /// the float32 sum of the default mode only.
    var overlapRefusal: String? {
        if deterministic { return "deterministic mode sums chunk gradients along its tree after backward" }
        if gradientCompression != .none { return "gradient_compression=\(gradientCompression.name) sums whole gradients in its own ring" }
        if localSteps > 1 { return "local SGD averages parameters, not gradients" }
        return nil
    }

    /// Whether this layout's gradient buckets go to a communication thread;
    /// `spansMachines`: the world's ranks run on more than one machine.
    func overlapsReduction(dp: Int, spansMachines: Bool) -> Bool {
        guard dp > 1, overlapRefusal == nil else { return false }
        switch overlap {
        case .on: return true
        case .off: return false
        case .auto: return backend == .mpi && spansMachines
        }
    }

    /// `overlap = on` where it cannot apply is refused; auto turns itself off there.
    func validateOverlap() throws {
        if overlap == .on, let why = overlapRefusal {
            throw ParmlError.invalidArgument("strategy: overlap=on: \(why); use overlap auto or off")
        }
    }

    /// Floats per gradient bucket when backward hands buckets over (ZeRO ≥ 2,
    /// or overlap at any stage where the world lets a second thread call
    /// its communicators), else nil.
    func gradientBucketFloats(dp: Int, spansMachines: Bool, threadsAllowed: Bool = true) -> Int? {
        bucketsGradients(dp: dp) || (overlapsReduction(dp: dp, spansMachines: spansMachines) && threadsAllowed)
            ? max(1, bucketBytes / MemoryLayout<Float>.stride) : nil
    }
}
