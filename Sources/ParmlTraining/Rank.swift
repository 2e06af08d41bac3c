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

/// One step's arguments, shared by the ranks (read-only while they run).
final class RankJob: @unchecked Sendable {
    // @unchecked: written by the host thread before RankPool.run starts the
    // ranks and after it returns; ranks only read it in between.
    let ranks: [RankContext]
    let seed: UInt64
    let clipNorm: Float
    let bucketFloats: Int
    private var x: Tensor?
    private var y: Tensor?
    private var plan = StepPlan(samples: 0, ranks: 1, deterministicChunk: nil)
    private var outShape = Shape(0)
    private var stepIndex = 0
    private var lr: Float = 0
    private var fault: FaultInjection?

    init(ranks: [RankContext], seed: UInt64, clipNorm: Float, bucketFloats: Int) {
        self.ranks = ranks
        self.seed = seed
        self.clipNorm = clipNorm
        self.bucketFloats = bucketFloats
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
            bucketFloats: bucketFloats, fault: fault)
    }
}

/// What one rank contributes to a step.
struct RankResult {
    /// Σ over its samples of the per-sample loss × mean scale (after the
    /// step's all-reduce of statistics: the whole batch's mean loss).
    var loss: Float = 0
    var correct = 0
    var gradientNorm: Float = .nan
}

/// One data-parallel rank: a model replica (rank 0's is the user's model),
/// its loss and optimizer, its slice of each batch, and its communicator.
/// Everything here is touched by this rank's thread only during a step.
final class RankContext {
    let rank: Int
    let ranks: Int
    let model: Model
    let loss: Loss
    let optimizer: Optimizer
    let comm: Communicator?
    let zeroStage: Int
    let foldsMomentum: Bool
    /// Set by the trainer: this rank reads the same parameter arena as rank 0.
    var sharesParameters = false
    /// This rank's rows of the batch: views into the host's batch tensors
    /// (ranks only read them), retargeted each step.
    private let inputs: Tensor
    private let targets: Tensor
    /// What the views point at before the first step (never read).
    nonisolated(unsafe) private static let nowhere = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    /// Deterministic mode: one buffer per cover node, and one per tree level
    /// for right children (full arena size), plus shard-sized ones for the
    /// cross-rank combination.
    private var nodeBuffers: [Tensor] = []
    private var levelBuffers: [Tensor] = []
    private var received: [Tensor] = []
    private var shardLevelBuffers: [Tensor] = []
    private var have: [ChunkTree.Node: UnsafeMutablePointer<Float>] = [:]
    /// Every rank's cover for the last chunk count seen (batches rarely
    /// change size, so steps reuse it instead of rebuilding arrays).
    private var coveredChunks = -1
    private var covers: [[ChunkTree.Node]] = []
    private let blockSums: Tensor
    private let stats: Tensor
    var result = RankResult()

    init(
        rank: Int, ranks: Int, model: Model, loss: LossKind, optimizer: OptimizerConfig, zeroStage: Int,
        comm: Communicator?, foldMomentum: Bool
    ) throws {
        guard let params = model.parameters, let grads = model.gradients else {
            throw ParmlError.state("the model is not initialised")
        }
        self.rank = rank
        self.ranks = ranks
        self.model = model
        self.loss = Loss(loss)
        self.comm = comm
        self.zeroStage = zeroStage
        self.foldsMomentum = foldMomentum
        // ZeRO 1 and 2: this rank keeps optimizer state for its shard only.
        let range = zeroStage >= 1 ? Sharding.range(count: params.count, parts: ranks, index: rank) : 0..<params.count
        self.optimizer = try Optimizer(config: optimizer, range: range, foldedMomentum: foldMomentum ? grads : nil)
        if foldMomentum { grads.fill(0) }
        inputs = Tensor(view: RankContext.nowhere, shape: Shape(0), owner: nil)
        targets = Tensor(view: RankContext.nowhere, shape: Shape(0), owner: nil)
        blockSums = try Tensor(shape: Shape(GradientClipping.blockCount(params.count)))
        stats = try Tensor(shape: Shape(2))
    }

    var parameterCount: Int { model.parameters?.count ?? 0 }
    /// The shard of the arena this rank owns (ZeRO, reduce-scatter).
    var shard: Range<Int> { Sharding.range(count: parameterCount, parts: ranks, index: rank) }

    /// Bytes this rank holds for parameters, gradients, optimizer state and
    /// deterministic-mode scratch.
    var memory: (parameters: Int, gradients: Int, optimizer: Int, scratch: Int) {
        let f = MemoryLayout<Float>.stride
        // A shared arena (ZeRO-3) is split among its owners, shard by shard.
        let ownParameters = sharesParameters ? shard.count : parameterCount
        let state = foldsMomentum ? 0 : optimizer.stateTensors.reduce(0) { $0 + $1.count }
        let scratch = (nodeBuffers + levelBuffers + received + shardLevelBuffers).reduce(0) { $0 + $1.capacity }
        return (ownParameters * f, parameterCount * f, state * f, scratch * f)
    }

    // MARK: - The step

    /// This rank's part of one optimizer step on the global batch (x, y).
    func step(
        x: Tensor, y: Tensor, plan: StepPlan, outShape: Shape, stepIndex: Int, lr: Float, seed: UInt64,
        clipNorm: Float, bucketFloats: Int, fault: FaultInjection?
    ) throws {
        switch fault {
        case .fail(let r, let s) where r == rank && s == stepIndex:
            throw ParmlError.internal("injected failure on rank \(rank) at step \(stepIndex)")
        case .stall(let r, let s, let seconds) where r == rank && s == stepIndex:
            usleep(UInt32(min(seconds, 3600) * 1e6))
        default: break
        }
        guard let params = model.parameters, let grads = model.gradients else {
            throw ParmlError.internal("rank \(rank) has no parameter arena")
        }
        let scale = loss.meanScale(samples: plan.samples, output: outShape)
        var lossSum: Float = 0
        var correct = 0

        if plan.chunk != nil {
            try deterministicGradients(x: x, y: y, plan: plan, scale: scale, step: stepIndex, seed: seed, loss: &lossSum, correct: &correct)
        } else {
            let rows = plan.rows(of: rank)
            if rows.isEmpty {
                grads.fill(0)
            } else {
                try selectRows(rows, from: x, y)
                var ctx = PassContext(training: true, step: stepIndex, sampleOffset: rows.lowerBound, seed: seed)
                if foldsMomentum { ctx.gradientDecay = optimizer.config.momentum }
                let out = try model.forward(inputs, ctx)
                let r = try loss.compute(output: out, targets: targets, scale: scale, wantGradient: true)
                try model.backward(loss.gradient, ctx)
                lossSum = r.loss
                correct = r.correct
            }
            if let comm, ranks > 1 {
                // ZeRO ≥ 1 updates only this rank's shard, so only the shard
                // needs reducing: a reduce-scatter, half an all-reduce.
                if zeroStage >= 1 {
                    try comm.reduceScatter(grads.data, count: grads.count, op: .sum)
                } else {
                    var start = 0
                    while start < grads.count {
                        let n = min(bucketFloats, grads.count - start)
                        try comm.allReduce(grads.data + start, count: n, op: .sum)
                        start += n
                    }
                }
            }
        }

        // Gradients are now the batch mean: whole on every rank (ZeRO 0), or
        // this rank's shard only (ZeRO 1, 2).
        let sharded = zeroStage >= 1 && ranks > 1
        let owned = sharded ? shard : 0..<grads.count
        var norm = Float.nan
        if clipNorm > 0 {
            let blocks = blockSums.count
            // Every rank takes the same branch: collectives must match.
            if sharded, let comm {
                blockSums.fill(0)
                GradientClipping.blockSquares(grads.data, range: owned, count: grads.count, into: blockSums.data)
                try comm.allReduce(blockSums.data, count: blocks, op: .sum)
            } else {
                GradientClipping.blockSquares(grads.data, range: 0..<grads.count, count: grads.count, into: blockSums.data)
            }
            norm = GradientClipping.norm(blockSums: blockSums.data, blocks: blocks)
            let f = GradientClipping.factor(norm: norm, maxNorm: clipNorm)
            if f != 1 { Kernels.scale(grads.data + owned.lowerBound, by: f, count: owned.count) }
        }
        optimizer.update(params: params.data, grads: grads.data, lr: lr, t: stepIndex + 1)
        if let comm, ranks > 1 {
            // Ranks sharing one arena (ZeRO-3) see every shard's update already.
            if zeroStage >= 1 && !sharesParameters { try comm.allGather(params.data, count: params.count) }
            stats.data[0] = lossSum
            stats.data[1] = Float(correct)
            try comm.allReduce(stats.data, count: 2, op: .sum)
            lossSum = stats.data[0]
            correct = Int(stats.data[1])
        }
        result = RankResult(loss: lossSum, correct: correct, gradientNorm: norm)
    }

    /// Points this rank's input and target views at `rows` of the batch.
    private func selectRows(_ rows: Range<Int>, from x: Tensor, _ y: Tensor) throws {
        try inputs.retarget(x.data + rows.lowerBound * x.shape.rowSize, shape: x.shape.withLeading(rows.count))
        try targets.retarget(y.data + rows.lowerBound * y.shape.rowSize, shape: y.shape.withLeading(rows.count))
    }

    // MARK: - Deterministic mode

    /// Leaves the batch-mean gradient in the arena: whole (ZeRO 0) or this
    /// rank's shard (ZeRO 1, 2), summed along the ChunkTree.
    private func deterministicGradients(
        x: Tensor, y: Tensor, plan: StepPlan, scale: Float, step: Int, seed: UInt64, loss lossSum: inout Float,
        correct: inout Int
    ) throws {
        guard let grads = model.gradients else { return }
        let tree = ChunkTree(chunks: plan.chunkCount)
        if coveredChunks != plan.chunkCount {
            covers = (0..<ranks).map { tree.cover(plan.chunks(of: $0)) }
            coveredChunks = plan.chunkCount
        }
        let mine = covers[rank]
        try ensure(&nodeBuffers, count: mine.count, size: grads.count)
        try ensure(&levelBuffers, count: tree.height + 1, size: grads.count)
        for (i, node) in mine.enumerated() {
            try computeNode(node, into: nodeBuffers[i].data, tree: tree, plan: plan, x: x, y: y, scale: scale, step: step, seed: seed, loss: &lossSum, correct: &correct)
        }
        guard let comm, ranks > 1 else {
            // One rank: its cover is the root.
            if let first = nodeBuffers.first, !mine.isEmpty { grads.data.update(from: first.data, count: grads.count) }
            return
        }
        // Send my nodes' slices to each shard owner, then combine my shard
        // from everyone's nodes along the tree.
        let n = grads.count
        for owner in 0..<ranks where owner != rank {
            let s = Sharding.range(count: n, parts: ranks, index: owner)
            for i in 0..<mine.count { try comm.send(nodeBuffers[i].data + s.lowerBound, count: s.count, to: owner) }
        }
        let myShard = shard
        have.removeAll(keepingCapacity: true)
        for (i, node) in mine.enumerated() { have[node] = nodeBuffers[i].data + myShard.lowerBound }
        var k = 0
        for other in 0..<ranks where other != rank {
            let theirs = covers[other]
            try ensure(&received, count: k + theirs.count, size: myShard.count)
            for node in theirs {
                try comm.receive(received[k].data, count: myShard.count, from: other)
                have[node] = received[k].data
                k += 1
            }
        }
        try ensure(&shardLevelBuffers, count: tree.height + 1, size: myShard.count)
        combine(tree.root, into: grads.data + myShard.lowerBound, count: myShard.count, tree: tree)
        if zeroStage == 0 { try comm.allGather(grads.data, count: n) }
    }

    /// value(node) into dst: a leaf is its chunk's gradient; an inner node is
    /// left + right (or left alone when the right half is empty).
    private func computeNode(
        _ node: ChunkTree.Node, into dst: UnsafeMutablePointer<Float>, tree: ChunkTree, plan: StepPlan, x: Tensor,
        y: Tensor, scale: Float, step: Int, seed: UInt64, loss lossSum: inout Float, correct: inout Int
    ) throws {
        guard let grads = model.gradients else { return }
        if node.level == 0 {
            let rows = plan.rows(ofChunk: node.index)
            try selectRows(rows, from: x, y)
            let ctx = PassContext(training: true, step: step, sampleOffset: rows.lowerBound, seed: seed)
            let out = try model.forward(inputs, ctx)
            let r = try loss.compute(output: out, targets: targets, scale: scale, wantGradient: true)
            try model.backward(loss.gradient, ctx)
            lossSum += r.loss
            correct += r.correct
            dst.update(from: grads.data, count: grads.count)
            return
        }
        let (left, right) = tree.children(node)
        try computeNode(left, into: dst, tree: tree, plan: plan, x: x, y: y, scale: scale, step: step, seed: seed, loss: &lossSum, correct: &correct)
        if let right {
            let tmp = levelBuffers[node.level].data
            try computeNode(right, into: tmp, tree: tree, plan: plan, x: x, y: y, scale: scale, step: step, seed: seed, loss: &lossSum, correct: &correct)
            Kernels.addInPlace(dst, tmp, count: grads.count)
        }
    }

    /// The same tree evaluated over this rank's shard, from the nodes ranks computed.
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
