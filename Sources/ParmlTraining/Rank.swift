import ParmlModel
import ParmlParallel
import ParmlTensor

// A rank's part of a training step. This file holds the rank's state and
// the step in order; each concern of the step lives in its own file, as an
// extension of RankContext:
//   VirtualStage.swift        a run of layers the rank holds (v of them under interleaved 1F1B)
//   PipelineExecution.swift   forward and backward per micro-batch (the stage schedule)
//   BatchStatisticsExecution.swift  a run holding batch_norm: phases around its statistics
//   GradientReduction.swift   fast mode: bucketed all-reduce, or reduce-scatter under ZeRO;
//                             local SGD's parameter average
//   GradientBuckets.swift     fast mode, ZeRO ≥ 2 or overlap: buckets reduced during backward
//   CommunicationThread.swift overlap: the thread that reduces them while backward goes on
//   CompressedReduction.swift, PowerSGD.swift  the compressed data-parallel sums
//   ChunkTreeReduction.swift  deterministic mode: chunk gradients combined along the ChunkTree
//   TiedGradients.swift       tied parameters (a tied classifier): their two gradients summed
//   GradientNorm.swift        the global gradient norm for clipping (tp > 1: each rank's share)
//   NonFinite.swift           the skip check before the update and where a value went bad
//   HostModelAssembly.swift   after the update: the host's model made whole (MPI, tp)
//   ParameterGathering.swift  ZeRO-3 under MPI: each layer's parameters gathered before use
//   RankMemory.swift          bytes a rank holds (Trainer.memory)
//   FaultInjection.swift      test hook: a rank that fails or stalls at a step

/// What one rank contributes to a step.
struct RankResult {
    /// Σ over its samples of the per-sample loss × mean scale (after the
    /// step's all-reduce of statistics: the whole batch's mean loss).
    var loss: Float = 0
    var correct = 0
    var gradientNorm: Float = .nan
    /// The step was skipped: some rank's loss or gradients were not finite.
    var skipped = false
    /// Where this rank first saw a non-finite value (skipped steps only).
    var nonFinite: NonFiniteFinding?
}

/// The communicators of one rank of a mesh.
struct RankComms {
    /// Every rank: statistics and the gradient norm.
    let world: Communicator
    /// Ranks holding the same stage: gradient reduction, ZeRO.
    let data: Communicator
    /// Ranks of the same pipeline (same data index): activations forward.
    let pipe: Communicator
    /// The same ranks: activation gradients backward. A queue of their own,
    /// so that they never interleave with activations where the next stage
    /// is also the previous one (interleaved 1F1B with pp = 2).
    let pipeBackward: Communicator
    /// Ranks holding slices of the same layers (same data index and stage).
    let tensor: Communicator
    /// MPI only: the ranks of one data-parallel replica (every stage and tp
    /// rank), which share their parameters after each step so that every
    /// process's host model is whole.
    var replica: Communicator? = nil
    /// MPI ZeRO-3: the data group again, for the per-layer parameter
    /// gathers of the rank's thread, so that they never share a
    /// communicator with the buckets of the communication thread (overlap).
    var gather: Communicator? = nil
}

/// How the layers are laid out, as every rank sees it.
struct RankLayout {
    let mesh: Mesh
    /// The pp × v runs of layers (v = 1 but for interleaved 1F1B); run c
    /// is held by stage c mod pp.
    let partition: StagePartition
    /// Arena slice of every run.
    let stageRanges: [Range<Int>]
    let virtualStages: Int
    let schedule: PipelineSchedule
    let microBatches: Int
    let zeroStage: Int

    /// ZeRO ≥ 1 with dp > 1: each data rank owns a shard of every slice.
    var shardsOverData: Bool { zeroStage >= 1 && mesh.dp > 1 }
    /// The model has batch_norm layers (top level): the schedule is GPipe.
    var hasBatchStatistics = false
    /// The order each stage runs: with one stage the order of forwards and
    /// backwards does not matter, and 1F1B lets each piece's backward
    /// follow its forward at once; a model with batch_norm needs every
    /// micro-batch's forward before any backward: GPipe (Trainer refuses
    /// interleaved 1F1B for it).
    var stageScheduleKind: PipelineSchedule {
        hasBatchStatistics ? .gpipe : mesh.pp == 1 ? .oneForwardOneBackward : schedule
    }
    /// The data-parallel gradient sum's wire format, and local SGD's steps
    /// between parameter averages (1: gradients summed every step).
    var compression: GradientCompression = .none
    var compressionRank = 4
    var seed: UInt64 = 0
    var localSteps = 1
    var outerLearningRate: Float = 1
    var outerMomentum: Float = 0
    /// Fast mode with dp > 1 and ZeRO ≥ 2 or overlap: floats per gradient
    /// bucket, which is reduced during backward (GradientBuckets.swift); nil otherwise.
    var gradientBucketFloats: Int? = nil
    /// Buckets go to each rank's communication thread (Overlap.swift).
    var overlapsReduction = false
    /// Local SGD with an outer optimizer other than plain averaging.
    var hasOuterOptimizer: Bool { averagesParameters && (outerLearningRate != 1 || outerMomentum != 0) }
    /// Local SGD: replicas step on their own rows between averages.
    var averagesParameters: Bool { localSteps > 1 && mesh.dp > 1 }
}

/// One rank: pipeline stage `coordinate.stage` of data-parallel replica
/// `coordinate.data`. It runs its stage's top-level layers (one run, or v
/// under interleaved 1F1B) on its replica's
/// slice of each batch, micro-batch by micro-batch in the stage's schedule,
/// exchanges activations with its pipeline neighbours, reduces its stage's
/// gradients with the ranks holding the same stage, and updates its part of
/// the arena. Everything here is touched by this rank's thread only during a
/// step (with overlap, its communication thread also reduces gradient buckets).
final class RankContext {
    let rank: Int
    let coordinate: MeshCoordinate
    let layout: RankLayout
    let model: Model
    let loss: Loss
    let comms: RankComms?
    let foldsMomentum: Bool
    /// This rank reads a parameter arena other ranks of its stage update too (ZeRO-3).
    let sharesParameters: Bool
    /// ZeRO-3 under MPI: the shard kept between steps, layers gathered before use.
    let gathering: ParameterGathering?
    /// The runs of top-level layers this rank runs, in arena order, each
    /// with its arena slice and the part of it the rank updates.
    let virtualStages: [VirtualStage]
    /// Their owned parts (ZeRO shards, or the whole slices), in arena order.
    let ownedRanges: [Range<Int>]
    let schedule: StageSchedule
    /// Copies of the stage's layers (sharing this rank's arenas), one per
    /// piece of work whose activations must stay alive until its backward;
    /// virtual stage k's start at slotOffsets[k] × pieces.
    var slots: [PipelineSlot] = []
    let slotOffsets: [Int]
    let received: Tensor
    let norm: DistributedNorm
    let blockSums: Tensor
    let blockScratch: Tensor
    let stats: Tensor
    /// Deterministic mode: the step's accuracy count, then each chunk's loss
    /// at its global index (0 where another rank computed it), so every
    /// layout sums the losses in chunk order (grown with the batch, kept).
    var chunkLosses: Tensor
    /// Deterministic mode, cross-rank combination: other ranks' nodes of my
    /// shard, and one buffer per tree level.
    var receivedNodes: [Tensor] = []
    /// MPI with tp > 1: where a peer's broadcast slice lands.
    var assembly: [Tensor] = []
    var shardLevelBuffers: [Tensor] = []
    var have: [ChunkTree.Node: UnsafePointer<Float>] = [:]
    /// Every data rank's cover for the last chunk count seen.
    var coveredChunks = -1
    var covers: [[ChunkTree.Node]] = []
    var result = RankResult()
    /// This rank's timeline (recorded only when tracing is on).
    let trace = TraceRecorder()
    /// tp > 1: how this rank's rewritten model maps to the host's model.
    let tensorParallel: TensorParallelSync?
    /// The last stage of a split classifier: the loss on its sharded logits.
    let shardedLoss: ShardedCrossEntropy?
    /// tp > 1: the arena ranges whose squares this rank adds to the global
    /// gradient norm (each parameter counted once across the mesh).
    var normRanges: [Range<Int>] = []
    /// The model's tied parameters, or nil when it has none.
    let tied: TiedGradients?
    /// Runs holding batch_norm: the statistics table and its scratch, and
    /// the samples behind each row (BatchStatisticsExecution.swift).
    let statistics: BatchStatisticsScratch
    var rowCounts: [Int] = []
    /// Private training's per-example norms and noise (PrivateStep.swift).
    let privateScratch = PrivateStepScratch()
    /// Overlap: reduces gradient buckets while backward goes on (GradientBuckets.swift).
    private(set) var communication: CommunicationThread?
    /// bf16 training: the runs' parameters rounded to bf16, kept by the
    /// update (BF16ParameterCopies), made at the first bf16 step.
    private(set) var bf16Copies: BF16ParameterCopies?

    /// Whether this rank can keep bf16 copies of its runs: it updates every
    /// parameter it computes with, and nothing but its update writes them
    /// during a step. Not with ZeRO shards over data (owned ⊂ range: the
    /// peers' updates arrive by all-gather, a shared arena or per-layer
    /// gathering), nor with local SGD's average.
    var keepsBF16Copies: Bool { !layout.shardsOverData && !layout.averagesParameters }

    /// The bf16 copies this step's passes read, current, or nil where the
    /// layers round their own weights.
    func bf16CopiesForStep(_ settings: StepSettings) -> BF16ParameterCopies? {
        guard settings.precision == .bf16, keepsBF16Copies, let params = model.parameters else { return nil }
        let copies = bf16Copies ?? BF16ParameterCopies(arena: params.data, ranges: virtualStages.map(\.range))
        bf16Copies = copies
        copies.makeCurrent()
        return copies
    }

    init(
        rank: Int, layout: RankLayout, model: Model, loss: LossKind, optimizer: OptimizerConfig, comms: RankComms?,
        foldMomentum: Bool, sharesParameters: Bool, gathersParameters: Bool = false, tensorParallel: TensorParallelSync? = nil
    ) throws {
        guard let params = model.parameters, let grads = model.gradients else {
            throw ParmlError.state("the model is not initialised")
        }
        self.rank = rank
        self.layout = layout
        let c = layout.mesh.coordinate(ofRank: rank)
        coordinate = c
        self.model = model
        self.loss = Loss(loss)
        self.comms = comms
        self.foldsMomentum = foldMomentum
        self.sharesParameters = sharesParameters
        self.tensorParallel = tensorParallel
        let sharded = layout.shardsOverData
        virtualStages = try layout.virtualStages(of: c.stage).map {
            try VirtualStage(
                index: $0, layout: layout, data: c.data, optimizer: optimizer, foldedMomentum: foldMomentum ? grads : nil,
                decaying: model.decayingRanges, frozen: model.frozenRanges)
        }
        ownedRanges = virtualStages.map(\.owned)
        gathering = gathersParameters ? ParameterGathering(runs: virtualStages, model: model, layout: layout, data: c.data) : nil
        if layout.hasOuterOptimizer {
            for vs in virtualStages {
                (vs.outerAnchor, vs.outerVelocity) = (try Tensor(shape: Shape(max(vs.range.count, 1))), try Tensor(shape: Shape(max(vs.range.count, 1))))
                RankContext.restartOuterState(vs, from: params)
            }
        }
        if layout.compression != .none && layout.mesh.dp > 1 {
            for vs in virtualStages {
                if layout.compression == .powerSGD {
                    vs.powerSGD = try PowerSGDReducer(
                        run: vs.range, infos: model.parameterInfo, rank: layout.compressionRank, seed: layout.seed)
                } else {
                    vs.compressedRing = try CompressedRing(format: layout.compression, count: vs.range.count)
                }
            }
        }
        for vs in virtualStages { vs.statisticsLayers = vs.layers.filter { model.root.layers[$0] is BatchStatisticsLayer } }
        if let floats = layout.gradientBucketFloats, comms != nil {
            // Runs holding batch_norm run backward in phases: their gradients reduce after the schedule.
            for vs in virtualStages { vs.buckets = GradientBuckets(run: vs, model: model, layout: layout, bucketFloats: floats) }
        }
        statistics = try BatchStatisticsScratch(model: model)
        if foldMomentum { grads.fill(0) }
        schedule = StageSchedule(
            kind: layout.stageScheduleKind, stage: c.stage, stages: layout.mesh.pp, microBatches: layout.microBatches, virtualStages: layout.virtualStages)
        let live = schedule.live
        slotOffsets = live.indices.map { k in live[..<k].reduce(0, +) }
        received = try Tensor(shape: Shape(0))
        norm = DistributedNorm(stageRanges: layout.stageRanges, total: params.count, mesh: layout.mesh, sharded: sharded, rank: rank)
        blockSums = try Tensor(shape: Shape(GradientClipping.blockCount(params.count)))
        blockScratch = try Tensor(shape: Shape(GradientClipping.blockSize))
        stats = try Tensor(shape: Shape(3))
        chunkLosses = try Tensor(shape: Shape(1))
        tied = model.tiedParameters.isEmpty ? nil : try TiedGradients(model: model, tensorParallel: tensorParallel, tp: layout.mesh.tp)
        if let offset = tensorParallel?.rewrite.classifierOffset, c.stage == layout.mesh.pp - 1, let tensor = comms?.tensor {
            shardedLoss = ShardedCrossEntropy(classOffset: offset, comm: tensor)
        } else {
            shardedLoss = nil
        }
        if let tensorParallel {
            TensorParallelSync.attach(comms?.tensor, to: model)
            // Replicated parameters count on tp rank 0 only; with whole
            // gradients on every data rank (ZeRO-0), on data rank 0 only.
            if !sharded && c.data != 0 {
                normRanges = []
            } else if c.tensor == 0 {
                normRanges = ownedRanges
            } else {
                let split = tensorParallel.rewrite.shardedRanges(model: model)
                normRanges = ownedRanges.flatMap { owned in
                    split.compactMap { r in
                        let lo = max(r.lowerBound, owned.lowerBound), hi = min(r.upperBound, owned.upperBound)
                        return lo < hi ? lo..<hi : nil
                    }
                }
            }
        }
        slots.append(try PipelineSlot(model: model))
        communication = try startCommunicationThread()
    }

    /// The parts of its stage's slices the rank at `c` reduces and
    /// updates: its ZeRO shards (dp > 1, ZeRO >= 1), or the whole slices.
    static func ownedRanges(layout: RankLayout, coordinate c: MeshCoordinate) -> [Range<Int>] {
        layout.virtualStages(of: c.stage).map { VirtualStage.owned(layout.stageRanges[$0], layout: layout, data: c.data) }
    }

    /// Local SGD's outer optimizer starts again from the rank's parameters
    /// as they are (the anchor) with no momentum: at creation, and whenever
    /// the host sets parameters from outside (an anchor left behind would
    /// make the next average a step towards the old parameters).
    func resetOuterState() {
        guard let params = model.parameters else { return }
        for vs in virtualStages { RankContext.restartOuterState(vs, from: params) }
    }

    private static func restartOuterState(_ vs: VirtualStage, from params: Tensor) {
        guard let anchor = vs.outerAnchor, let velocity = vs.outerVelocity else { return }
        anchor.data.update(from: params.data + vs.range.lowerBound, count: vs.range.count)
        velocity.fill(0)
    }

    /// The optimizer of the rank's first run (the only one but under interleaved 1F1B).
    var optimizer: Optimizer { virtualStages[0].optimizer }

    /// Whether the rank reads the batch's inputs (virtual stage 0) or computes the loss (the last).
    var holdsInput: Bool { virtualStages.first?.isFirst == true }
    var holdsLoss: Bool { virtualStages.last?.isLast == true }


    /// Floats all-reduced by this rank's tensor-parallel layers so far.
    var tensorParallelFloats: Int {
        slots.reduce(shardedLoss?.floatsReduced ?? 0) { total, slot in
            total + slot.model.allLayers.reduce(0) { $0 + (($1 as? TensorParallelLayer)?.floatsReduced ?? 0) }
        }
    }

    // MARK: - The step

    /// This rank's part of one optimizer step, phase by phase. Every rank
    /// runs the same phases in the same order, so their collectives match.
    func step(_ step: StepDescription) throws {
        if let fault = step.fault { try inject(fault, stepIndex: step.index) }
        guard let params = model.parameters, let grads = model.gradients else {
            throw ParmlError.internal("rank \(rank) has no parameter arena")
        }
        let settings = step.settings
        // Local SGD: each replica's gradient is the mean over its own rows
        // (with class or sample weights: the global scale, rescaled to its share).
        let ownRows = step.plan.rows(of: coordinate.data).count
        var scale = step.lossScale
        if layout.averagesParameters {
            scale = loss.options.classWeights == nil && step.w == nil
                ? loss.meanScale(samples: max(ownRows, 1), output: step.outputShape)
                : step.lossScale * Float(step.plan.samples) / Float(max(ownRows, 1))
        }
        var work = StepWork(step, scale: scale, microBatches: layout.microBatches, data: coordinate.data)
        if step.plan.chunk != nil {
            if chunkLosses.count < 1 + step.plan.chunkCount { chunkLosses = try Tensor(shape: Shape(1 + step.plan.chunkCount)) }
            chunkLosses.data.update(repeating: 0, count: 1 + step.plan.chunkCount)
        }
        // Buckets per micro-batch need every data rank in each micro-batch's
        // collectives; a private step clips per example through whole runs.
        let eachMicroBatch = virtualStages.contains { $0.buckets?.reducesEachMicroBatch == true } && step.privacy == nil
            && !foldsMomentum && piecesAgree(work)
        for vs in virtualStages {
            try vs.computeShapes(model: model, input: step.x.shape)
            vs.backwardPieces = 0
            vs.buckets?.next = 0
            vs.buckets?.eachMicroBatch = vs.buckets?.reducesEachMicroBatch == true && eachMicroBatch
        }
        work.bf16Weights = bf16CopiesForStep(settings)
        // ZeRO-3 under MPI: layers gathered as they run; only the shard stays after (ParameterGathering.swift).
        try beginGathering(step, work: work)
        defer { releaseParameters() }

        // 1. Forward and backward of this rank's micro-batches, in the
        //    stage's schedule (PipelineExecution.swift).
        if step.plan.chunk != nil {
            for vs in virtualStages {
                // One data rank: the root's sum goes straight into the arena (TreeAccumulator).
                try vs.accumulator.start(
                    tree: ChunkTree(chunks: step.plan.chunkCount), owned: step.plan.chunks(of: coordinate.data), width: vs.range.count,
                    root: layout.mesh.dp == 1 ? grads.data + vs.range.lowerBound : nil)
            }
        }
        // 2. Gradients become the batch mean over the owned ranges
        //    (ChunkTreeReduction.swift, GradientReduction.swift); with
        //    overlap, buckets in flight since backward are waited for.
        var t: Double
        do {
            try runSchedule(&work)
            t = trace.now()
            for vs in virtualStages {
                if step.plan.chunk != nil {
                    try combineChunkGradients(plan: step.plan, of: vs)
                } else {
                    if vs.backwardPieces == 0 { (grads.data + vs.range.lowerBound).update(repeating: 0, count: vs.range.count) }
                    if vs.buckets != nil {
                        try flushBuckets(of: vs)  // buckets backward did not reduce (all of them on a rank without rows)
                    } else if !layout.averagesParameters {
                        try reduceGradients(of: vs, bucketFloats: settings.bucketFloats)
                    }
                }
            }
            try finishBuckets()
        } catch {
            abandonBuckets(after: error)
            throw error
        }
        try sumTiedGradients(grads.data)
        try addPrivacyNoise(grads, step: step)  // DP-SGD, after the sum (PrivateStep.swift)
        trace.record(.gradientReduction, step: step.index, since: t)

        // 3. The global gradient norm, when clipping needs it. Every rank
        //    takes this branch: the norm's collectives must match.
        var gradientNorm = Float.nan
        if settings.clipNorm > 0 {
            t = trace.now()
            gradientNorm = try globalGradientNorm(grads.data)
            trace.record(.clip, step: step.index, since: t)
        }

        // 4. Skip the update on every rank when any rank's loss or
        //    gradients are not finite (NonFinite.swift).
        if settings.skipNonFinite {
            t = trace.now()
            let finite = try agreeFinite(
                lossSum: work.backwardRefused ? .nan : work.lossSum, gradientNorm: settings.clipNorm > 0 ? gradientNorm : nil)
            trace.record(.finiteCheck, step: step.index, since: t)
            if !finite {
                var finding = findNonFinite(x: step.x, lossSum: work.lossSum)
                // Folded momentum with a finite loss: backward already wrote
                // the non-finite gradient into the momentum, which cannot be
                // recovered; it restarts from zero (the parameters stay).
                if foldsMomentum && !work.backwardRefused {
                    for r in ownedRanges { (grads.data + r.lowerBound).update(repeating: 0, count: r.count) }
                    finding = finding.map {
                        NonFiniteFinding(
                            stage: $0.stage, position: $0.position, rank: $0.rank,
                            text: $0.text + " (with a finite loss; the folded momentum restarts from zero)")
                    }
                }
                result = RankResult(loss: .nan, correct: 0, gradientNorm: gradientNorm, skipped: true, nonFinite: finding)
                return
            }
        }

        // 5. Clip and update this rank's owned range.
        var clipFactor: Float = 1
        if settings.clipNorm > 0 {
            clipFactor = GradientClipping.factor(norm: gradientNorm, maxNorm: settings.clipNorm)
            if clipFactor != 1 {
                for r in ownedRanges { Kernels.scale(grads.data + r.lowerBound, by: clipFactor, count: r.count) }
            }
        }
        fillTiedCopies(grads.data, clipFactor: clipFactor)
        t = trace.now()
        // bf16: the update rounds what it writes into the copies the next step reads.
        for vs in virtualStages {
            vs.optimizer.update(
                params: params.data, grads: grads.data, lr: step.learningRate, t: step.index + 1,
                rounding: work.bf16Weights?.copy(ofElement: vs.owned.lowerBound))
        }
        trace.record(.optimizer, step: step.index, since: t)

        // Local SGD: every localSteps steps the replicas' parameters become their mean.
        if layout.averagesParameters && (step.index + 1) % layout.localSteps == 0 {
            t = trace.now()
            try averageParameters(params, bucketFloats: settings.bucketFloats)
            trace.record(.gradientReduction, step: step.index, since: t)
        }

        // 6. Share the updated shards (ZeRO) and the step's loss and accuracy.
        // Local SGD's losses are means over each replica's rows: weighted back.
        var lossSum = layout.averagesParameters ? work.lossSum * Float(ownRows) / Float(max(step.plan.samples, 1)) : work.lossSum
        // Deterministic mode reports the loss summed in chunk order, as
        // serial training sums it, not each rank's partial sum added across
        // ranks (dp 2 had differed from serial in the loss's last bit).
        let chunkOrderedLoss = step.plan.chunk != nil && !layout.averagesParameters
        var correct = work.correct
        if let comms {
            // Ranks sharing one arena (ZeRO-3) see every shard's update
            // already; under MPI ZeRO-3 gathers each layer before use.
            if layout.shardsOverData && !sharesParameters && gathering == nil {
                t = trace.now()
                for vs in virtualStages { try comms.data.allGather(params.data + vs.range.lowerBound, count: vs.range.count) }
                trace.record(.gather, step: step.index, since: t)
            }
            // Only last stages computed a loss (tp rank 0's counts; its peers
            // computed the same); zeros from the others add exactly.
            t = trace.now()
            let counts = coordinate.tensor == 0
            if chunkOrderedLoss {
                // Each chunk's loss reaches every rank as computed (adding
                // zeros is exact); the sum below is then serial training's.
                let k = step.plan.chunkCount
                chunkLosses.data[0] = Float(correct)
                if !counts { chunkLosses.data.update(repeating: 0, count: 1 + k) }
                try comms.world.allReduce(chunkLosses.data, count: 1 + k, op: .sum)
                correct = Int(chunkLosses.data[0])
            } else {
                stats.data[0] = counts ? lossSum : 0
                stats.data[1] = counts ? Float(correct) : 0
                try comms.world.allReduce(stats.data, count: 2, op: .sum)
                lossSum = stats.data[0]
                correct = Int(stats.data[1])
            }
            trace.record(.statistics, step: step.index, since: t)
        }
        if chunkOrderedLoss {
            lossSum = 0
            for c in 0..<step.plan.chunkCount { lossSum += chunkLosses.data[1 + c] }
        }

        // 7. The host's model holds the new parameters (HostModelAssembly.swift),
        //    but under MPI ZeRO-3, where it is partial until gathered.
        if gathering == nil { try updateHostModel() }
        result = RankResult(loss: lossSum, correct: correct, gradientNorm: gradientNorm)
    }

    /// Grows `list` to `count` tensors of at least `size` floats (allocates
    /// on the first steps only).
    func ensure(_ list: inout [Tensor], count: Int, size: Int) throws {
        while list.count < count { list.append(try Tensor(shape: Shape(size))) }
        for t in list where t.count < size { try t.resize(Shape(size)) }
    }
}
