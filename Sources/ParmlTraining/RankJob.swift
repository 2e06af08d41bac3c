import ParmlTensor

/// One step's arguments, shared by the ranks (read-only while they run).
final class RankJob: @unchecked Sendable {
    // @unchecked: written by the host thread before RankPool.run starts the
    // ranks and after it returns; ranks only read it in between.
    let ranks: [RankContext]
    let seed: UInt64
    let clipNorm: Float
    let bucketFloats: Int
    /// Check the loss and gradients before the update, and skip the update
    /// on every rank when one of them is not finite.
    let skipNonFinite: Bool
    private var x: Tensor?
    private var y: Tensor?
    private var plan = StepPlan(samples: 0, ranks: 1, deterministicChunk: nil)
    private var outShape = Shape(0)
    private var stepIndex = 0
    private var lr: Float = 0
    private var fault: FaultInjection?

    init(ranks: [RankContext], seed: UInt64, clipNorm: Float, bucketFloats: Int, skipNonFinite: Bool) {
        self.ranks = ranks
        self.seed = seed
        self.clipNorm = clipNorm
        self.bucketFloats = bucketFloats
        self.skipNonFinite = skipNonFinite
    }

    func set(x: Tensor, y: Tensor, plan: StepPlan, outShape: Shape, stepIndex: Int, lr: Float, fault: FaultInjection?) {
        self.x = x
        self.y = y
        self.plan = plan
        self.outShape = outShape
        self.stepIndex = stepIndex
        self.lr = lr
        self.fault = fault
    }

    /// Drops the batch tensors, so the job does not keep the host's alive.
    func clear() {
        x = nil
        y = nil
    }

    func run(rank r: Int) throws {
        guard let x, let y else { throw ParmlError.internal("rank job without a batch") }
        try ranks[r].step(
            x: x, y: y, plan: plan, outShape: outShape, stepIndex: stepIndex, lr: lr, seed: seed, clipNorm: clipNorm,
            bucketFloats: bucketFloats, skipNonFinite: skipNonFinite, fault: fault)
    }
}
