import ParmlModel
import ParmlParallel
import ParmlTensor

/// A copy of a stage's layers with its own activation buffers (the
/// parameters and gradients are the rank's), holding one piece of a
/// micro-batch on one virtual stage from its forward until its backward.
final class PipelineSlot {
    let model: Model
    /// First stage: this piece's rows of the host's batch (read only).
    let batchView: Tensor
    /// Later stages: the activations received from the previous stage.
    let received: Tensor
    /// Last stage: the piece's rows of the targets.
    let targetView: Tensor
    /// The stage's output of the last forward.
    var output: Tensor?
    /// A run holding batch_norm (BatchStatisticsExecution.swift): the
    /// activation or gradient where the piece waits for the others, and its
    /// chunk's gradient leaf (deterministic mode) filled part by part.
    var held: Tensor?
    var heldGradient: Tensor?
    var leaf: Tensor?

    /// What views point at before their first use (never read).
    nonisolated(unsafe) private static let nowhere = UnsafeMutablePointer<Float>.allocate(capacity: 1)

    init(model: Model) throws {
        self.model = model
        batchView = Tensor(view: PipelineSlot.nowhere, shape: Shape(0), owner: nil)
        targetView = Tensor(view: PipelineSlot.nowhere, shape: Shape(0), owner: nil)
        received = try Tensor(shape: Shape(0))
    }
}

/// Rows of a batch that run through the layers as one forward and one
/// backward: a whole micro-batch (fast mode) or one chunk of it
/// (deterministic mode, where every chunk's weight gradient is kept apart).
struct Piece {
    let rows: Range<Int>
    /// The chunk index in deterministic mode.
    let chunk: Int?
}

/// One step as a rank sees it: its data rank's rows cut into micro-batches
/// and pieces, and what it measured.
struct StepWork {
    /// The step as the host asked for it.
    let step: StepDescription
    /// The loss's mean scale (StepDescription.lossScale).
    let scale: Float
    let microBatches: Int
    /// This data rank's rows (fast mode) or chunks (deterministic mode).
    let rows: Range<Int>
    let chunks: Range<Int>
    /// Most pieces in one micro-batch.
    let maxPieces: Int
    var lossSum: Float = 0
    var correct = 0
    /// Backward stopped before the folded momentum saw a loss or input
    /// that is not finite: the finite check must skip the step.
    var backwardRefused = false
    /// bf16: the rank's current copies of its parameters, which the passes
    /// read and the update keeps (nil: each layer rounds its own).
    var bf16Weights: BF16ParameterCopies?

    init(_ step: StepDescription, scale: Float, microBatches: Int, data: Int) {
        self.step = step
        self.scale = scale
        self.microBatches = microBatches
        let plan = step.plan
        rows = plan.rows(of: data)
        chunks = plan.chunk != nil ? plan.chunks(of: data) : 0..<0
        maxPieces = plan.chunk != nil ? max(1, (chunks.count + microBatches - 1) / microBatches) : 1
    }

    /// Rows of the largest piece.
    var maxPieceRows: Int {
        let plan = step.plan
        if let c = plan.chunk { return min(c, plan.samples) }
        return (rows.count + microBatches - 1) / microBatches
    }

    /// Pieces over all micro-batches.
    var totalPieces: Int { (0..<microBatches).reduce(0) { $0 + pieceCount($1) } }

    func pieceCount(_ j: Int) -> Int {
        if step.plan.chunk != nil {
            return Sharding.range(count: chunks.count, parts: microBatches, index: j, alignment: 1).count
        }
        return Sharding.range(count: rows.count, parts: microBatches, index: j, alignment: 1).isEmpty ? 0 : 1
    }

    func piece(_ j: Int, _ q: Int) -> Piece {
        let plan = step.plan
        if plan.chunk != nil {
            let c = chunks.lowerBound + Sharding.range(count: chunks.count, parts: microBatches, index: j, alignment: 1).lowerBound + q
            return Piece(rows: plan.rows(ofChunk: c), chunk: c)
        }
        let r = Sharding.range(count: rows.count, parts: microBatches, index: j, alignment: 1)
        return Piece(rows: (rows.lowerBound + r.lowerBound)..<(rows.lowerBound + r.upperBound), chunk: nil)
    }
}
