import ParmlModel
import ParmlParallel
import ParmlTensor

/// ZeRO-3 under MPI: between steps a process keeps only its ZeRO shard of
/// the parameters; each top-level layer's parameters are all-gathered into
/// their place in the arena just before the layer runs, forward and again
/// backward (as DeepSpeed does), and handed back to the operating system
/// when another layer's are needed. A process so holds its shard plus one
/// layer's parameters. The arena keeps its addresses (the layers' views stay
/// bound); a page handed back reads as zero until it is gathered again
/// (Pages.swift). The gathered values are the owners' bits, so training
/// gives the same numbers as gathering everything after the update.
///
/// Every data rank of a stage must gather the same blocks in the same order,
/// interleaved the same way with the gradient buckets' reduce-scatters. That
/// holds when the ranks run the same pieces per micro-batch; a step where
/// they do not (a batch smaller than dp × micro-batches, uneven
/// deterministic chunks), a run holding batch_norm (phased execution) and a
/// private step (per-example norms through the whole run) gather the rank's
/// whole runs up front instead, as ZeRO-1 and 2 hold them. Either way only
/// the shard stays after the step.
///
/// The gathers run on a communicator of their own (`RankComms.gather`, the
/// data group again): with overlap the communication thread reduces the
/// gradient buckets on the data communicator while backward gathers.
///
/// With tp > 1 the rank's model is its tensor-parallel rewrite, an arena of
/// its own: that arena is what is sharded and gathered per layer (each tp
/// rank within its data group), and the host's serial model, another
/// arena, is dropped after the step too and assembled from the tp ranks'
/// slices only when gathered (`gatherWholeParameters`).
///
/// The threads backend needs none of this: its ranks read one shared arena.
final class ParameterGathering {
    struct Block {
        /// The block's arena slice (one top-level layer's parameters).
        let range: Range<Int>
        /// Each data rank's part of it (its shard ∩ the block), from the block's start.
        let shards: [Range<Int>]
        /// This rank's shard of the run holding the block (absolute).
        let owned: Range<Int>
    }

    /// By top-level layer index: the rank's layers that hold parameters.
    let blocks: [Int: Block]
    /// The rank's ZeRO shards, in arena order: all that stays between steps.
    let owned: [Range<Int>]
    /// The layer whose block is resident besides the shards.
    var resident: Int?
    /// This step gathered the rank's whole runs up front.
    var wholeRuns = false
    /// The step being run (for the trace).
    var step = -1

    init(runs: [VirtualStage], model: Model, layout: RankLayout, data d: Int) {
        var blocks: [Int: Block] = [:]
        for vs in runs {
            for l in vs.layers {
                let range = model.parameterRange(ofTopLevelLayers: l..<(l + 1))
                guard !range.isEmpty else { continue }
                blocks[l] = Block(range: range, shards: ParameterGathering.parts(of: range, run: vs.range, layout: layout), owned: vs.owned)
            }
        }
        self.blocks = blocks
        owned = runs.map(\.owned)
    }

    /// Each data rank's part of `range` (inside the run `run`), from its start.
    static func parts(of range: Range<Int>, run: Range<Int>, layout: RankLayout) -> [Range<Int>] {
        (0..<layout.mesh.dp).map { d -> Range<Int> in
            let owned = VirtualStage.owned(run, layout: layout, data: d)
            let lo = max(owned.lowerBound, range.lowerBound), hi = min(owned.upperBound, range.upperBound)
            return lo < hi ? (lo - range.lowerBound)..<(hi - range.lowerBound) : 0..<0
        }
    }

    /// Parameter floats resident beyond the shards at most: the largest
    /// top-level layer's part outside the shard of its run (the strategy
    /// advisor asks without a rank).
    static func largestOutside(layers: Range<Int>, run: Range<Int>, owned: Range<Int>, model: Model) -> Int {
        layers.map { l -> Int in
            let r = model.parameterRange(ofTopLevelLayers: l..<(l + 1))
            return r.count - max(0, min(r.upperBound, owned.upperBound) - max(r.lowerBound, owned.lowerBound))
        }.max() ?? 0
    }

    /// Whether ZeRO-3 gathers per layer for this layout: MPI processes
    /// (no shared arena) with dp > 1, any tp.
    static func applies(layout: RankLayout, sharesParameters: Bool, processes: Bool) -> Bool {
        processes && layout.zeroStage >= 3 && layout.mesh.dp > 1 && !sharesParameters
    }

    /// What a read of the whole model is told between steps.
    static let notice =
        "ZeRO-3 under MPI keeps only this process's shard of the parameters between steps; "
        + "call parml_trainer_gather_params on every process first (a collective; the next step drops them again)"
}

extension RankContext {
    /// Before the schedule: gather per layer if every data rank runs the
    /// same pieces this step, else the rank's whole runs now.
    func beginGathering(_ step: StepDescription, work: StepWork) throws {
        guard let g = gathering, let gather = comms?.gather, let params = model.parameters else { return }
        g.resident = nil
        g.step = step.index
        g.wholeRuns = step.privacy != nil || virtualStages.contains { !$0.statisticsLayers.isEmpty } || !piecesAgree(work)
        guard g.wholeRuns else { return }
        let t = trace.now()
        for vs in virtualStages { try gather.allGather(params.data + vs.range.lowerBound, count: vs.range.count) }
        trace.record(.gather, step: step.index, since: t)
    }

    /// Every data rank runs as many pieces in each micro-batch as this one
    /// (also what gradient buckets per micro-batch need).
    func piecesAgree(_ work: StepWork) -> Bool {
        for d in 0..<layout.mesh.dp where d != coordinate.data {
            let other = StepWork(work.step, scale: work.scale, microBatches: layout.microBatches, data: d)
            for j in 0..<layout.microBatches where other.pieceCount(j) != work.pieceCount(j) { return false }
        }
        return true
    }

    /// Makes top-level layer `l`'s parameters resident (called before its
    /// forward and its backward), handing back the block resident before.
    func gatherBlock(of l: Int) throws {
        guard let g = gathering, !g.wholeRuns, g.resident != l, let gather = comms?.gather, let params = model.parameters else { return }
        if let r = g.resident, let b = g.blocks[r] { release(b, params.data) }
        g.resident = nil
        guard let b = g.blocks[l] else { return }
        let t = trace.now()
        try gather.allGather(params.data + b.range.lowerBound, count: b.range.count, shards: b.shards)
        trace.record(.gather, step: g.step, since: t)
        g.resident = l
    }

    /// The block's pages outside this rank's shard go back to the system.
    private func release(_ b: ParameterGathering.Block, _ p: UnsafeMutablePointer<Float>) {
        let lo = b.range.lowerBound, hi = b.range.upperBound
        Pages.release(p + lo, count: min(hi, b.owned.lowerBound) - lo)
        let above = max(lo, b.owned.upperBound)
        Pages.release(p + above, count: hi - above)
    }

    /// After the step: only the shards stay (every other page of the arena,
    /// other stages' included, is handed back); the host's model is partial.
    /// With tp > 1 the host's model is another arena, which goes back whole
    /// (it is assembled again when gathered).
    func releaseParameters() {
        guard let g = gathering, let params = model.parameters else { return }
        var start = 0
        for r in g.owned.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            Pages.release(params.data + start, count: r.lowerBound - start)
            start = max(start, r.upperBound)
        }
        Pages.release(params.data + start, count: params.count - start)
        g.resident = nil
        g.wholeRuns = false
        model.partialParameters = ParameterGathering.notice
        if let host = tensorParallel?.serial, let whole = host.parameters {
            Pages.release(whole.data, count: whole.count)
            host.partialParameters = ParameterGathering.notice
        }
    }

    /// The host's model made whole (collective over the replica's processes):
    /// each run all-gathered over its data group, then, with pp or tp > 1,
    /// every stage's (and tp rank's) slices broadcast within the replica
    /// into the host's model (HostModelAssembly.swift).
    func gatherWholeParameters() throws {
        guard let g = gathering, let comms, let gather = comms.gather, let params = model.parameters else { return }
        let t = trace.now()
        for vs in virtualStages { try gather.allGather(params.data + vs.range.lowerBound, count: vs.range.count) }
        try updateHostModel()
        // tp > 1: the assembly's scratch is not kept between steps either.
        for a in assembly { Pages.release(a.data, count: a.count) }
        trace.record(.gather, step: g.step, since: t)
        model.partialParameters = nil
        tensorParallel?.serial.partialParameters = nil
    }
}
