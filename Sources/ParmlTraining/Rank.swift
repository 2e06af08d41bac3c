#if canImport(Glibc)
import Glibc
#endif
import ParmlModel
import ParmlParallel
import ParmlTensor

/// A fault to inject into a data-parallel step, for tests of promise 4 (a
/// failing or stalled rank makes every rank return an error, never a hang).
public enum FaultInjection: Sendable {
    /// Rank `rank` throws at optimizer step `step`.
    case fail(rank: Int, step: Int)
    /// Rank `rank` sleeps `seconds` at optimizer step `step` before its work.
    case stall(rank: Int, step: Int, seconds: Double)
}

extension FaultInjection {
    /// "stall:RANK:STEP:SECONDS" or "fail:RANK:STEP" (PARML_TEST_FAULT).
    init(parsing text: String) throws {
        let parts = text.split(separator: ":").map(String.init)
        let numbers = parts.dropFirst().map { Double($0) }
        func int(_ i: Int) -> Int? { numbers[i].flatMap { $0 >= 0 && $0 == $0.rounded() && $0 < 1e9 ? Int($0) : nil } }
        switch parts.first {
        case "stall" where parts.count == 4:
            if let r = int(0), let s = int(1), let seconds = numbers[2], seconds >= 0, seconds <= 3600 {
                self = .stall(rank: r, step: s, seconds: seconds)
                return
            }
        case "fail" where parts.count == 3:
            if let r = int(0), let s = int(1) {
                self = .fail(rank: r, step: s)
                return
            }
        default: break
        }
        throw ParmlError.invalidArgument("PARML_TEST_FAULT='\(text)': expected stall:RANK:STEP:SECONDS or fail:RANK:STEP")
    }
}

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

/// Where a skipped step's non-finite values showed up on one rank, in the
/// order a value travels through a step: the inputs, then parameters (a
/// model already poisoned), the loss (an activation overflowed), then the
/// gradients from the last layer back.
struct NonFiniteFinding: Comparable {
    /// 0 inputs, 1 parameters, 2 loss, 3 gradients.
    let stage: Int
    /// Ordering within a stage: a sample or layer index.
    let position: Int
    let rank: Int
    let text: String

    static func < (a: NonFiniteFinding, b: NonFiniteFinding) -> Bool {
        (a.stage, a.position, a.rank) < (b.stage, b.position, b.rank)
    }

    static func == (a: NonFiniteFinding, b: NonFiniteFinding) -> Bool {
        (a.stage, a.position, a.rank) == (b.stage, b.position, b.rank)
    }
}

/// The communicators of one rank of a mesh.
struct RankComms {
    /// Every rank: statistics and the gradient norm.
    let world: Communicator
    /// Ranks holding the same stage: gradient reduction, ZeRO.
    let data: Communicator
    /// Ranks of the same pipeline (same data index): activations and their gradients.
    let pipe: Communicator
    /// Ranks holding slices of the same layers (same data index and stage).
    let tensor: Communicator
    /// MPI only: the ranks of one data-parallel replica (every stage and tp
    /// rank), which share their parameters after each step so that every
    /// process's host model is whole.
    var replica: Communicator? = nil
}

/// How the layers are laid out, as every rank sees it.
struct RankLayout {
    let mesh: Mesh
    let partition: StagePartition
    /// Arena slice of every stage.
    let stageRanges: [Range<Int>]
    let schedule: PipelineSchedule
    let microBatches: Int
    let zeroStage: Int
}

/// One rank: pipeline stage `coordinate.stage` of data-parallel replica
/// `coordinate.data`. It runs its stage's top-level layers on its replica's
/// slice of each batch, micro-batch by micro-batch in the stage's schedule,
/// exchanges activations with its pipeline neighbours, reduces its stage's
/// gradients with the ranks holding the same stage, and updates its part of
/// the arena. Everything here is touched by this rank's thread only during a step.
final class RankContext {
    let rank: Int
    let coordinate: MeshCoordinate
    let layout: RankLayout
    let model: Model
    let loss: Loss
    let optimizer: Optimizer
    let comms: RankComms?
    let foldsMomentum: Bool
    /// This rank reads a parameter arena other ranks of its stage update too (ZeRO-3).
    let sharesParameters: Bool
    /// Top-level layers this rank runs, and the arena slice they own.
    let stageLayers: Range<Int>
    let stageRange: Range<Int>
    /// The part of `stageRange` this rank reduces and updates (ZeRO ≥ 1), or all of it.
    let ownedRange: Range<Int>
    private let schedule: StageSchedule
    /// Copies of the stage's layers (sharing this rank's arenas), one per
    /// piece of work whose activations must stay alive until its backward.
    private var slots: [PipelineSlot] = []
    private let received: Tensor
    private let accumulator = TreeAccumulator()
    private let norm: DistributedNorm
    private let blockSums: Tensor
    private let blockScratch: Tensor
    private let stats: Tensor
    /// Deterministic mode, cross-rank combination: other ranks' nodes of my
    /// shard, and one buffer per tree level.
    private var receivedNodes: [Tensor] = []
    /// MPI with tp > 1: where a peer's broadcast slice lands.
    private var assembly: [Tensor] = []
    private var shardLevelBuffers: [Tensor] = []
    private var have: [ChunkTree.Node: UnsafeMutablePointer<Float>] = [:]
    /// Every data rank's cover for the last chunk count seen.
    private var coveredChunks = -1
    private var covers: [[ChunkTree.Node]] = []
    var result = RankResult()
    /// This rank's timeline (recorded only when tracing is on).
    let trace = TraceRecorder()
    /// tp > 1: how this rank's rewritten model maps to the host's model.
    let tensorParallel: TensorParallelSync?
    /// The last stage of a split classifier: the loss on its sharded logits.
    private let shardedLoss: ShardedCrossEntropy?
    /// tp > 1: the arena ranges whose squares this rank adds to the global
    /// gradient norm (each parameter counted once across the mesh).
    private var normRanges: [Range<Int>] = []

    init(
        rank: Int, layout: RankLayout, model: Model, loss: LossKind, optimizer: OptimizerConfig, comms: RankComms?,
        foldMomentum: Bool, sharesParameters: Bool, tensorParallel: TensorParallelSync? = nil
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
        stageLayers = layout.partition.layers[c.stage]
        stageRange = layout.stageRanges[c.stage]
        let sharded = layout.zeroStage >= 1 && layout.mesh.dp > 1
        ownedRange = RankContext.ownedRange(layout: layout, coordinate: c)
        // ZeRO 1 and 2: optimizer state for the owned shard only.
        self.optimizer = try Optimizer(config: optimizer, range: ownedRange, foldedMomentum: foldMomentum ? grads : nil)
        if foldMomentum { grads.fill(0) }
        // With one stage the order of forwards and backwards does not matter;
        // 1F1B lets each piece's backward follow its forward at once.
        let kind = layout.mesh.pp == 1 ? .oneForwardOneBackward : layout.schedule
        schedule = StageSchedule(kind: kind, stage: c.stage, stages: layout.mesh.pp, microBatches: layout.microBatches)
        received = try Tensor(shape: Shape(0))
        norm = DistributedNorm(stageRanges: layout.stageRanges, total: params.count, mesh: layout.mesh, sharded: sharded, rank: rank)
        blockSums = try Tensor(shape: Shape(GradientClipping.blockCount(params.count)))
        blockScratch = try Tensor(shape: Shape(GradientClipping.blockSize))
        stats = try Tensor(shape: Shape(3))
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
                normRanges = [ownedRange]
            } else {
                normRanges = tensorParallel.rewrite.shardedRanges(model: model).compactMap { r in
                    let lo = max(r.lowerBound, ownedRange.lowerBound), hi = min(r.upperBound, ownedRange.upperBound)
                    return lo < hi ? lo..<hi : nil
                }
            }
        }
        slots.append(try PipelineSlot(model: model))
    }

    /// The part of its stage's slice the rank at `c` reduces and updates:
    /// its ZeRO shard (dp > 1, ZeRO >= 1), or the whole slice.
    static func ownedRange(layout: RankLayout, coordinate c: MeshCoordinate) -> Range<Int> {
        let stageRange = layout.stageRanges[c.stage]
        guard layout.zeroStage >= 1 && layout.mesh.dp > 1 else { return stageRange }
        let sh = Sharding.range(count: stageRange.count, parts: layout.mesh.dp, index: c.data)
        return (stageRange.lowerBound + sh.lowerBound)..<(stageRange.lowerBound + sh.upperBound)
    }

    private var isFirstStage: Bool { coordinate.stage == 0 }
    private var isLastStage: Bool { coordinate.stage == layout.mesh.pp - 1 }

    /// Bytes this rank holds for parameters, gradients, optimizer state and scratch.
    var memory: (parameters: Int, gradients: Int, optimizer: Int, scratch: Int, activations: Int) {
        let f = MemoryLayout<Float>.stride
        // Ranks of one process share arenas: each is charged the slice it
        // owns (its stage; its shard of that under ZeRO-3).
        let ownParameters = sharesParameters ? ownedRange.count : stageRange.count
        let state = foldsMomentum ? 0 : optimizer.stateTensors.reduce(0) { $0 + $1.count }
        let scratch = (receivedNodes + shardLevelBuffers).reduce(0) { $0 + $1.capacity } * f + accumulator.bytes
        return (ownParameters * f, stageRange.count * f, state * f, scratch, activationBytes)
    }

    /// Activations alive at once on this rank, at most (micro-batch pieces).
    var activationSlots: Int { slots.count }

    /// Bytes of activation buffers this rank has allocated (high-water):
    /// every slot's received input and its stage layers' buffers, and the
    /// buffer gradients arrive in.
    var activationBytes: Int {
        let f = MemoryLayout<Float>.stride
        var bytes = received.capacity * f
        for slot in slots {
            bytes += slot.received.capacity * f
            let layers = slot.model.root.layers
            for l in stageLayers { bytes += layers[l].bufferBytes }
        }
        return bytes
    }

    /// Floats all-reduced by this rank's tensor-parallel layers so far.
    var tensorParallelFloats: Int {
        slots.reduce(shardedLoss?.floatsReduced ?? 0) { total, slot in
            total + slot.model.allLayers.reduce(0) { $0 + (($1 as? TensorParallelLayer)?.floatsReduced ?? 0) }
        }
    }

    // MARK: - The step

    /// This rank's part of one optimizer step on the global batch (x, y).
    func step(
        x: Tensor, y: Tensor, plan: StepPlan, outShape: Shape, stepIndex: Int, lr: Float, seed: UInt64,
        clipNorm: Float, bucketFloats: Int, skipNonFinite: Bool, fault: FaultInjection?
    ) throws {
        switch fault {
        case .fail(let r, let s) where r == rank && s == stepIndex:
            throw ParmlError.internal("injected failure on rank \(rank) at step \(stepIndex)")
        case .stall(let r, let s, let seconds) where r == rank && s == stepIndex:
            usleep(UInt32(min(seconds, 3600) * 1e6))
            try comms?.world.throwIfAborted("step \(stepIndex) (after stalling)")
        default: break
        }
        guard let params = model.parameters, let grads = model.gradients else {
            throw ParmlError.internal("rank \(rank) has no parameter arena")
        }
        var work = StepWork(
            x: x, y: y, plan: plan, scale: loss.meanScale(samples: plan.samples, output: outShape), step: stepIndex,
            seed: seed, microBatches: layout.microBatches, data: coordinate.data)
        try work.shapes(model: model, stageLayers: stageLayers)
        if plan.chunk != nil {
            try accumulator.start(tree: ChunkTree(chunks: plan.chunkCount), owned: plan.chunks(of: coordinate.data), width: stageRange.count)
        }
        try runSchedule(&work)
        var t = trace.now()
        if plan.chunk != nil {
            try combineChunkGradients(plan: plan)
        } else {
            if work.backwardPieces == 0 { (grads.data + stageRange.lowerBound).update(repeating: 0, count: stageRange.count) }
            try reduceGradients(bucketFloats: bucketFloats)
        }
        trace.record(.gradientReduction, step: stepIndex, since: t)

        // Gradients are now the batch mean over ownedRange.
        var gradientNorm = Float.nan
        if clipNorm > 0 {
            // Every rank takes this branch: the norm's collectives must match.
            t = trace.now()
            if tensorParallel != nil, let comms {
                gradientNorm = try tensorParallelNorm(grads.data, comm: comms.world)
            } else {
                gradientNorm = try norm.norm(grads.data, sums: blockSums.data, scratch: blockScratch.data, comm: comms?.world)
            }
            trace.record(.clip, step: stepIndex, since: t)
        }
        // Before the update reads them (and before clipping spreads a NaN
        // over every gradient), the ranks agree whether the step's loss and
        // gradients are finite: a sum over ranks of 0 (finite) or NaN, so
        // all take the same branch. The global norm, when clipping computed
        // it, already answers for the gradients.
        if skipNonFinite {
            t = trace.now()
            let gradients = clipNorm > 0 ? gradientNorm * 0
                : Kernels.nonFiniteProbe(grads.data + ownedRange.lowerBound, count: ownedRange.count)
            var probe = gradients + work.lossSum * 0
            if let comms {
                stats.data[2] = probe
                try comms.world.allReduce(stats.data + 2, count: 1, op: .sum)
                probe = stats.data[2]
            }
            trace.record(.finiteCheck, step: stepIndex, since: t)
            if probe != 0 {
                result = RankResult(
                    loss: .nan, correct: 0, gradientNorm: gradientNorm, skipped: true, nonFinite: findNonFinite(x: x, lossSum: work.lossSum))
                return
            }
        }
        if clipNorm > 0 {
            let f = GradientClipping.factor(norm: gradientNorm, maxNorm: clipNorm)
            if f != 1 { Kernels.scale(grads.data + ownedRange.lowerBound, by: f, count: ownedRange.count) }
        }
        t = trace.now()
        optimizer.update(params: params.data, grads: grads.data, lr: lr, t: stepIndex + 1)
        trace.record(.optimizer, step: stepIndex, since: t)
        var lossSum = work.lossSum
        var correct = work.correct
        if let comms {
            // Ranks sharing one arena (ZeRO-3) see every shard's update already.
            if layout.zeroStage >= 1 && layout.mesh.dp > 1 && !sharesParameters {
                t = trace.now()
                try comms.data.allGather(params.data + stageRange.lowerBound, count: stageRange.count)
                trace.record(.gather, step: stepIndex, since: t)
            }
            // Only last stages computed a loss (tp rank 0's counts; its peers
            // computed the same); zeros from the others add exactly.
            t = trace.now()
            let counts = coordinate.tensor == 0
            stats.data[0] = counts ? lossSum : 0
            stats.data[1] = counts ? Float(correct) : 0
            try comms.world.allReduce(stats.data, count: 2, op: .sum)
            lossSum = stats.data[0]
            correct = Int(stats.data[1])
            trace.record(.statistics, step: stepIndex, since: t)
        }
        if let replica = comms?.replica {
            if layout.mesh.pp > 1 || layout.mesh.tp > 1 { try assembleHostModel(over: replica) }
        } else if let tensorParallel, coordinate.data == 0 {
            try tensorParallel.store(from: model, range: stageRange, replicated: coordinate.tensor == 0)
        }
        result = RankResult(loss: lossSum, correct: correct, gradientNorm: gradientNorm)
    }

    /// MPI: every process of this replica gets every stage's (and tp
    /// rank's) parameters into its host model, by broadcasts from each
    /// member in turn: copies, so the values are the bits their owners hold.
    /// A skipped step's slow path: where this rank's inputs, parameters,
    /// loss or gradients stopped being finite, or nil when its part was.
    private func findNonFinite(x: Tensor, lossSum: Float) -> NonFiniteFinding? {
        let layers = model.root.layers
        func layerName(_ l: Int) -> String { "layer \(l) (\(layers[l].kind))" }
        if isFirstStage, !Kernels.allFinite(x.data, count: x.count) {
            let row = x.shape.rowSize
            let sample = (0..<x.shape[0]).first { !Kernels.allFinite(x.data + $0 * row, count: row) } ?? 0
            return NonFiniteFinding(stage: 0, position: sample, rank: rank, text: "the inputs hold a NaN or an infinity (sample \(sample) of the batch)")
        }
        guard let params = model.parameters, let grads = model.gradients else { return nil }
        for l in stageLayers {
            let r = model.parameterRange(ofTopLevelLayers: l..<(l + 1))
            if !Kernels.allFinite(params.data + r.lowerBound, count: r.count) {
                return NonFiniteFinding(stage: 1, position: l, rank: rank, text: "the parameters of \(layerName(l)) hold a NaN or an infinity")
            }
        }
        if isLastStage, !lossSum.isFinite {
            return NonFiniteFinding(
                stage: 2, position: 0, rank: rank,
                text: "the loss is \(lossSum) with finite inputs and parameters (an activation or the loss overflowed)")
        }
        for l in stageLayers.reversed() {
            let r = model.parameterRange(ofTopLevelLayers: l..<(l + 1)).clamped(to: ownedRange)
            if !r.isEmpty, !Kernels.allFinite(grads.data + r.lowerBound, count: r.count) {
                return NonFiniteFinding(
                    stage: 3, position: layers.count - l, rank: rank, text: "the gradient of \(layerName(l)) holds a NaN or an infinity")
            }
        }
        return nil
    }

    private func assembleHostModel(over replica: Communicator) throws {
        guard let params = model.parameters else { return }
        let tp = layout.mesh.tp
        guard let tensorParallel else {
            // tp = 1: this rank's model is the host's; stage s is member s.
            for (s, r) in layout.stageRanges.enumerated() {
                try replica.broadcast(params.data + r.lowerBound, count: r.count, root: s)
            }
            return
        }
        let widest = layout.stageRanges.map(\.count).max() ?? 0
        try ensure(&assembly, count: 1, size: widest)
        let scratch = assembly[0].data
        for (s, r) in layout.stageRanges.enumerated() {
            for t in 0..<tp {
                let root = s * tp + t
                if root == replica.rank { scratch.update(from: params.data + r.lowerBound, count: r.count) }
                try replica.broadcast(scratch, count: r.count, root: root)
                try tensorParallel.store(peer: t, from: scratch, origin: r.lowerBound, model: model, range: r, replicated: t == 0)
            }
        }
    }

    /// tp > 1: ‖g‖ as Σ over ranks of their share of squares. Sums split
    /// along tp differ from serial rounding, as tensor parallelism does anyway.
    private func tensorParallelNorm(_ grads: UnsafePointer<Float>, comm: Communicator) throws -> Float {
        var local: Float = 0
        for r in normRanges { local += Kernels.sumOfSquares(grads + r.lowerBound, count: r.count) }
        stats.data[0] = local
        try comm.allReduce(stats.data, count: 1, op: .sum)
        return stats.data[0].squareRoot()
    }

    // MARK: - Forward and backward passes of the stage

    private func runSchedule(_ work: inout StepWork) throws {
        let ops = schedule.ops
        if let comms, layout.mesh.pp > 1 {
            // Every piece's activations may be in flight to the next stage at
            // once (and its gradients to the previous one): room for all of
            // them up front, so that no timing makes a send allocate.
            var pieces = 0
            for j in 0..<layout.microBatches { pieces += work.pieceCount(j) }
            let rows = work.maxPieceRows
            if !isLastStage {
                try comms.pipe.reserveSends(to: coordinate.stage + 1, messages: pieces, floats: rows * work.stageOutput.rowSize)
            }
            if !isFirstStage {
                try comms.pipe.reserveSends(to: coordinate.stage - 1, messages: pieces, floats: rows * work.stageInput.rowSize)
            }
        }
        var i = 0
        while i < ops.count {
            switch ops[i] {
            case .forward(let j):
                // The last stage runs a forward straight into its backward
                // piece by piece: one slot of activations instead of many.
                if isLastStage, i + 1 < ops.count, ops[i + 1] == .backward(j) {
                    for q in 0..<work.pieceCount(j) {
                        let slot = try self.slot(j, q, fused: true, work: work)
                        try forward(piece: work.piece(j, q), microBatch: j, slot: slot, work: work)
                        try backward(piece: work.piece(j, q), microBatch: j, slot: slot, work: &work)
                    }
                    i += 2
                    continue
                }
                for q in 0..<work.pieceCount(j) {
                    try forward(piece: work.piece(j, q), microBatch: j, slot: try slot(j, q, fused: false, work: work), work: work)
                }
            case .backward(let j):
                for q in 0..<work.pieceCount(j) {
                    try backward(piece: work.piece(j, q), microBatch: j, slot: try slot(j, q, fused: false, work: work), work: &work)
                }
            }
            i += 1
        }
    }

    /// The slot holding piece q of micro-batch j until its backward.
    private func slot(_ j: Int, _ q: Int, fused: Bool, work: StepWork) throws -> PipelineSlot {
        let k = fused ? 0 : (j % schedule.inFlight) * work.maxPieces + q
        while slots.count <= k {
            let copy = try model.replicate(sharingParameters: true, sharingGradients: true)
            if tensorParallel != nil { TensorParallelSync.attach(comms?.tensor, to: copy) }
            slots.append(try PipelineSlot(model: copy))
        }
        return slots[k]
    }

    private func context(_ piece: Piece, _ work: StepWork) -> PassContext {
        PassContext(training: true, step: work.step, sampleOffset: piece.rows.lowerBound, seed: work.seed)
    }

    private func forward(piece: Piece, microBatch j: Int, slot: PipelineSlot, work: StepWork) throws {
        let n = piece.rows.count
        let input: Tensor
        if isFirstStage {
            input = slot.batchView
            try input.retarget(work.x.data + (piece.rows.lowerBound - work.plan.firstLocalRow) * work.x.shape.rowSize, shape: work.x.shape.withLeading(n))
        } else {
            guard let comms else { throw ParmlError.internal("a pipeline stage without communicators") }
            input = slot.received
            try input.resize(work.stageInput.withLeading(n))
            let t = trace.now()
            try comms.pipe.receive(input.data, count: input.count, from: coordinate.stage - 1)
            trace.record(.receive, microBatch: j, step: work.step, since: t)
        }
        let ctx = context(piece, work)
        var t = trace.now()
        var h = input
        let layers = slot.model.root.layers
        for l in stageLayers {
            try comms?.world.throwIfAborted("forward of layer \(l)")
            h = try layers[l].forward(h, ctx)
        }
        slot.output = h
        trace.record(.forward, microBatch: j, step: work.step, since: t)
        if !isLastStage, let comms {
            t = trace.now()
            try comms.pipe.send(h.data, count: h.count, to: coordinate.stage + 1)
            trace.record(.send, microBatch: j, step: work.step, since: t)
        }
    }

    private func backward(piece: Piece, microBatch j: Int, slot: PipelineSlot, work: inout StepWork) throws {
        guard let grads = model.gradients, let out = slot.output else { throw ParmlError.internal("backward before forward") }
        let n = piece.rows.count
        var ctx = context(piece, work)
        let dy: Tensor
        // The loss belongs to the last stage's backward time.
        var t = trace.now()
        if isLastStage {
            try slot.targetView.retarget(work.y.data + (piece.rows.lowerBound - work.plan.firstLocalRow) * work.y.shape.rowSize, shape: work.y.shape.withLeading(n))
            let r = try shardedLoss?.compute(output: out, targets: slot.targetView, scale: work.scale, wantGradient: true)
                ?? loss.compute(output: out, targets: slot.targetView, scale: work.scale, wantGradient: true)
            work.lossSum += r.loss
            work.correct += r.correct
            dy = shardedLoss?.gradient ?? loss.gradient
        } else {
            guard let comms else { throw ParmlError.internal("a pipeline stage without communicators") }
            try received.resize(work.stageOutput.withLeading(n))
            try comms.pipe.receive(received.data, count: received.count, from: coordinate.stage + 1)
            trace.record(.receive, microBatch: j, step: work.step, since: t)
            dy = received
            t = trace.now()
        }
        // Fast mode accumulates the pieces with the GEMMs' beta (the first
        // overwrites, or folds momentum); deterministic mode keeps each
        // chunk's gradient apart for the ChunkTree.
        let accumulate = piece.chunk == nil && work.backwardPieces > 0
        if foldsMomentum { ctx.gradientDecay = optimizer.config.momentum }
        var g = dy
        let layers = slot.model.root.layers
        for l in stageLayers.reversed() {
            try comms?.world.throwIfAborted("backward of layer \(l)")
            let need = l > stageLayers.lowerBound || !isFirstStage
            guard let next = try layers[l].backward(g, ctx, needInputGradient: need, accumulate: accumulate) else { break }
            g = next
        }
        work.backwardPieces += 1
        if let chunk = piece.chunk {
            let leaf = try accumulator.leafBuffer()
            leaf.data.update(from: grads.data + stageRange.lowerBound, count: stageRange.count)
            accumulator.push(chunk: chunk, buffer: leaf)
        }
        trace.record(.backward, microBatch: j, step: work.step, since: t)
        if !isFirstStage, let comms {
            t = trace.now()
            try comms.pipe.send(g.data, count: g.count, to: coordinate.stage - 1)
            trace.record(.send, microBatch: j, step: work.step, since: t)
        }
    }

    // MARK: - Gradient reduction over the data-parallel ranks of the stage

    /// Fast mode: the batch mean over ownedRange, summed in rank order.
    private func reduceGradients(bucketFloats: Int) throws {
        guard let comms, layout.mesh.dp > 1, let grads = model.gradients else { return }
        let base = grads.data + stageRange.lowerBound
        // ZeRO ≥ 1 updates only the owned shard, so only it needs reducing:
        // a reduce-scatter, half an all-reduce.
        if layout.zeroStage >= 1 {
            try comms.data.reduceScatter(base, count: stageRange.count, op: .sum)
            return
        }
        var start = 0
        while start < stageRange.count {
            let n = min(bucketFloats, stageRange.count - start)
            try comms.data.allReduce(base + start, count: n, op: .sum)
            start += n
        }
    }

    /// Deterministic mode: the accumulator holds this rank's cover nodes;
    /// the ChunkTree sum over every data rank's nodes lands in ownedRange
    /// (ZeRO ≥ 1) or the whole stage slice (ZeRO 0).
    private func combineChunkGradients(plan: StepPlan) throws {
        guard let grads = model.gradients else { return }
        let tree = accumulator.tree
        let mine = accumulator.stack
        let width = stageRange.count
        let base = grads.data + stageRange.lowerBound
        let dp = layout.mesh.dp
        guard let comms, dp > 1 else {
            // One data rank: its cover is the root.
            guard mine.count == 1, mine[0].node == tree.root else { throw ParmlError.internal("chunk tree left \(mine.count) nodes") }
            base.update(from: mine[0].buffer.data, count: width)
            return
        }
        if coveredChunks != plan.chunkCount {
            covers = (0..<dp).map { tree.cover(plan.chunks(of: $0)) }
            coveredChunks = plan.chunkCount
        }
        // Send my nodes' slices to each shard owner, then combine my shard
        // from everyone's nodes along the tree.
        let d = coordinate.data
        for owner in 0..<dp where owner != d {
            let s = Sharding.range(count: width, parts: dp, index: owner)
            for e in mine { try comms.data.send(e.buffer.data + s.lowerBound, count: s.count, to: owner) }
        }
        let myShard = Sharding.range(count: width, parts: dp, index: d)
        have.removeAll(keepingCapacity: true)
        for e in mine { have[e.node] = e.buffer.data + myShard.lowerBound }
        var k = 0
        for other in 0..<dp where other != d {
            let theirs = covers[other]
            try ensure(&receivedNodes, count: k + theirs.count, size: myShard.count)
            for node in theirs {
                try comms.data.receive(receivedNodes[k].data, count: myShard.count, from: other)
                have[node] = receivedNodes[k].data
                k += 1
            }
        }
        try ensure(&shardLevelBuffers, count: tree.height + 1, size: myShard.count)
        combine(tree.root, into: base + myShard.lowerBound, count: myShard.count, tree: tree)
        if layout.zeroStage == 0 { try comms.data.allGather(base, count: width) }
    }

    /// value(node) over my shard, from the nodes ranks computed: a node
    /// someone holds is copied; an inner node is left + right (or left alone).
    private func combine(_ node: ChunkTree.Node, into dst: UnsafeMutablePointer<Float>, count: Int, tree: ChunkTree) {
        if let src = have[node] {
            dst.update(from: src, count: count)
            return
        }
        let (left, right) = tree.children(node)
        combine(left, into: dst, count: count, tree: tree)
        if let right {
            let tmp = shardLevelBuffers[node.level].data
            combine(right, into: tmp, count: count, tree: tree)
            Kernels.addInPlace(dst, tmp, count: count)
        }
    }

    /// Grows `list` to `count` tensors of at least `size` floats (allocates
    /// on the first steps only).
    private func ensure(_ list: inout [Tensor], count: Int, size: Int) throws {
        while list.count < count { list.append(try Tensor(shape: Shape(size))) }
        for t in list where t.count < size { try t.resize(Shape(size)) }
    }
}
