import ParmlTensor

/// What every step of a trainer shares (fixed when the trainer is built).
struct StepSettings {
    let seed: UInt64
    /// Clip the global gradient norm to this (0: no clipping).
    let clipNorm: Float
    /// Floats per all-reduce bucket (fast mode, ZeRO-0).
    let bucketFloats: Int
    /// Check the loss and gradients before the update, and skip the update
    /// on every rank when one of them is not finite.
    let skipNonFinite: Bool
    /// The arithmetic of matrix products: the strategy's precision where it
    /// can run here, else float32 (BF16.resolve).
    var precision: Precision = .float32
    /// The trainer's thread count, handed to oneDNN with each pass (PassContext.threads).
    var threads = 0
}

/// One optimizer step as the host asked for it. `Trainer.step` builds it
/// once; `RankJob` hands the same value to every rank, and each rank's
/// `StepWork` keeps it for the step's phases.
struct StepDescription {
    /// The batch: the global batch, or with local batches (MPI) this
    /// replica's rows (`plan.firstLocalRow` says where they start).
    let x: Tensor
    let y: Tensor
    /// Per-sample loss weights, rows as `y`'s; nil: none (Trainer+SampleWeights.swift).
    var w: Tensor? = nil
    /// Which rows and chunks each data-parallel replica takes.
    let plan: StepPlan
    /// The model's output shape for `x`.
    let outputShape: Shape
    /// The loss's mean scale: 1 / (global predictions or elements), or
    /// 1 / (Σ class weight of the global batch's targets), or with sample
    /// weights 1 / Σ of their denominators (0 for a batch of weight 0).
    let lossScale: Float
    /// Optimizer steps taken before this one.
    let index: Int
    let learningRate: Float
    let settings: StepSettings
    /// Tests only: a rank to fail or stall at this step.
    let fault: FaultInjection?
    /// DP-SGD: clip per example and add noise (PrivateStep.swift).
    var privacy: PrivateStepSettings? = nil
    /// Unique to this step in the process (PassContext.stepSerial).
    let serial = BF16Products.nextSerial()
}

/// The step the ranks run, shared by them (read-only while they run).
final class RankJob: @unchecked Sendable {
    // @unchecked: written by the host thread before RankPool.run starts the
    // ranks and after it returns; ranks only read it in between.
    let ranks: [RankContext]
    private var step: StepDescription?

    init(ranks: [RankContext]) {
        self.ranks = ranks
    }

    func set(_ step: StepDescription) {
        self.step = step
    }

    /// Drops the step, so the job does not keep the host's batch tensors alive.
    func clear() {
        step = nil
    }

    func run(rank r: Int) throws {
        guard let step else { throw ParmlError.internal("rank job without a step") }
        try ranks[r].step(step)
    }
}
