import ParmlModel
import ParmlParallel
import ParmlTensor

/// One run of consecutive top-level layers a rank runs and updates, with
/// the slice of the arena it owns: the rank's whole stage, or under
/// interleaved 1F1B one of its v virtual stages (Megatron-LM's model
/// chunks). Every per-rank concern (reduction, ZeRO shards, norm, update,
/// assembly) loops over a rank's runs in arena order.
final class VirtualStage {
    /// Position in the pipeline: the micro-batch flows 0, 1, ..., p·v − 1.
    let index: Int
    /// Holds the model's input (index 0) or computes the loss (the last).
    let isFirst: Bool
    let isLast: Bool
    let layers: Range<Int>
    /// The arena slice of `layers`.
    let range: Range<Int>
    /// The part of `range` this rank reduces and updates: its ZeRO shard
    /// (dp > 1, ZeRO ≥ 1), or all of it.
    let owned: Range<Int>
    /// ZeRO 1 and 2: optimizer state for the owned shard only.
    let optimizer: Optimizer
    /// Deterministic mode: this run's chunk gradients along the ChunkTree.
    let accumulator = TreeAccumulator()
    /// Whether backward may write a chunk's gradient straight into a tree
    /// leaf: it writes every gradient of the run, so no leaf keeps stale
    /// values, except state the optimizer does not train (batch_norm's
    /// running statistics), which backward leaves as it is.
    let backwardFillsLeaves: Bool
    /// Top-level indices of the run's layers that normalise with batch
    /// statistics (batch_norm), ascending; the run then executes in phases
    /// (BatchStatisticsExecution.swift).
    var statisticsLayers: [Int] = []
    /// Fast mode with ZeRO ≥ 2 or overlap: the run's gradient buckets (GradientBuckets.swift).
    var buckets: GradientBuckets?
    /// Gradient compression (dp > 1): the ring and this run's carried errors.
    var compressedRing: CompressedRing?
    /// PowerSGD (dp > 1): its factors, warm start and errors for this run.
    var powerSGD: PowerSGDReducer?
    /// Local SGD's outer optimizer: the parameters after the last average
    /// and the outer momentum, this run's slice each.
    var outerAnchor: Tensor?
    var outerVelocity: Tensor?
    /// This step: the shapes entering and leaving the run (leading
    /// dimension the batch's), and pieces whose backward ran.
    var input = Shape(0)
    var output = Shape(0)
    var backwardPieces = 0

    /// Run `index` of `layout` as data rank `d` holds it; `foldedMomentum`
    /// and `decaying` as `Optimizer` takes them.
    init(
        index: Int, layout: RankLayout, data d: Int, optimizer: OptimizerConfig, foldedMomentum: Tensor?, decaying: [Range<Int>],
        frozen: [Range<Int>]
    ) throws {
        self.index = index
        isFirst = index == 0
        isLast = index == layout.stageRanges.count - 1
        layers = layout.partition.layers[index]
        let range = layout.stageRanges[index]
        self.range = range
        owned = VirtualStage.owned(range, layout: layout, data: d)
        backwardFillsLeaves = !frozen.contains { $0.overlaps(range) }
        self.optimizer = try Optimizer(config: optimizer, range: owned, foldedMomentum: foldedMomentum, decaying: decaying, frozen: frozen)
    }

    /// The part of `range` data rank `d` owns.
    static func owned(_ range: Range<Int>, layout: RankLayout, data d: Int) -> Range<Int> {
        guard layout.shardsOverData else { return range }
        let sh = Sharding.range(count: range.count, parts: layout.mesh.dp, index: d)
        return (range.lowerBound + sh.lowerBound)..<(range.lowerBound + sh.upperBound)
    }

    /// The shapes at this run's ends for a batch of inputs shaped `x`.
    func computeShapes(model: Model, input x: Shape) throws {
        let all = model.root.layers
        var s = x
        for l in 0..<layers.lowerBound { s = try all[l].outputShape(for: s) }
        input = s
        for l in layers { s = try all[l].outputShape(for: s) }
        output = s
    }
}

extension RankLayout {
    /// The pipeline stage holding virtual stage `c` (c mod pp).
    func stage(holding c: Int) -> Int { c % mesh.pp }

    /// Virtual stages of stage `s`, in pipeline (and arena) order.
    func virtualStages(of s: Int) -> StrideTo<Int> { stride(from: s, to: stageRanges.count, by: mesh.pp) }
}
