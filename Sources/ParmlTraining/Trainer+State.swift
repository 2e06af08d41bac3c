import ParmlModel
import ParmlTensor

/// What a checkpoint holds beyond the model: whole (unsharded) optimizer
/// state, the step count (which is also the schedule position and, with the
/// seed, the random state: dropout masks are keyed on seed and step), the
/// epochs `fit` completed (with the seed, the next epoch's data order), and
/// the configuration it was trained with.
public struct TrainingState {
    public var step: Int
    public var epoch: Int = 0
    public var seed: UInt64
    public var optimizer: OptimizerConfig
    public var strategy: StrategyConfig
    /// One tensor per optimizer state buffer (`Trainer.optimizerStateNames`),
    /// each covering the whole parameter arena.
    public var optimizerState: [Tensor]
    /// The factor `setLearningRate` put on the schedule (1: none).
    public var learningRateScale: Double = 1
    /// Local SGD's outer optimizer (`Trainer.outerStateNames`), each
    /// covering the whole arena; empty without one.
    public var outerState: [Tensor] = []

    public init(step: Int, seed: UInt64, optimizer: OptimizerConfig, strategy: StrategyConfig, optimizerState: [Tensor]) {
        self.step = step
        self.seed = seed
        self.optimizer = optimizer
        self.strategy = strategy
        self.optimizerState = optimizerState
    }
}

extension Trainer {
    /// Names of the optimizer's state buffers, as PyTorch's state_dict calls them.
    public var optimizerStateNames: [String] {
        switch optimizerConfig.kind {
        case .sgd: optimizerConfig.momentum > 0 ? ["momentum_buffer"] : []
        case .adam, .adamW: ["exp_avg", "exp_avg_sq"]
        }
    }

    /// Names of local SGD's outer-optimizer state (the parameters after the
    /// last average, and the outer momentum); empty without an outer optimizer.
    public var outerStateNames: [String] { layout.hasOuterOptimizer ? ["outer_anchor", "outer_velocity"] : [] }

    /// Where per-run state lives, for gathering it whole and scattering it
    /// back: a run's tensors, the arena slice they cover, that slice for
    /// each run of a rank at a mesh coordinate, and whether data ranks hold
    /// different parts (ZeRO shards) or the same.
    private struct RunState {
        let tensors: (VirtualStage) -> [Tensor]
        let span: (VirtualStage) -> Range<Int>
        let spans: (MeshCoordinate) -> [Range<Int>]
        let sharded: Bool
    }

    private var optimizerRuns: RunState {
        let layout = layout
        return RunState(
            tensors: { $0.optimizer.stateTensors }, span: { $0.optimizer.range },
            spans: { RankContext.ownedRanges(layout: layout, coordinate: $0) }, sharded: layout.shardsOverData)
    }

    private var outerRuns: RunState {
        let layout = layout
        return RunState(
            tensors: { vs in [vs.outerAnchor, vs.outerVelocity].compactMap { $0 } }, span: { $0.range },
            spans: { c in layout.virtualStages(of: c.stage).map { layout.stageRanges[$0] } }, sharded: false)
    }

    /// The training state with whole optimizer tensors, gathered from the
    /// ranks: each optimizer of a rank (one per run of layers it holds) owns
    /// `optimizer.range` of the arena and its state tensors cover that range. The union of the ranges must
    /// cover the arena; where replicated ranks overlap, they hold the same
    /// values and any one serves. Local SGD's outer state comes along.
    public func captureState() throws -> TrainingState {
        try gatherParameters()  // the model goes into the checkpoint whole (collective, as the state's gathering is)
        var state = TrainingState(
            step: stepCount, seed: strategy.seed, optimizer: optimizerConfig, strategy: strategy,
            optimizerState: try gatherWhole(optimizerStateNames, optimizerRuns))
        state.outerState = try gatherWhole(outerStateNames, outerRuns)
        state.epoch = epochCount
        state.learningRateScale = learningRateScale
        return state
    }

    /// One whole-arena tensor per name from every run's parts.
    private func gatherWhole(_ names: [String], _ runs: RunState) throws -> [Tensor] {
        if processWorld != nil { return try gatherAcrossProcesses(names, runs) }
        let n = model.parameterCount
        var whole: [Tensor] = []
        for k in names.indices {
            let t = try Tensor(shape: Shape(n))
            var covered = [Range<Int>]()
            for r in ranks {
                for vs in r.virtualStages {
                    let parts = runs.tensors(vs), span = runs.span(vs)
                    guard parts.count == names.count, parts[k].count >= span.count else {
                        throw ParmlError.internal("rank \(r.rank) keeps \(parts.count) tensors of \(names.joined(separator: ", ")), expected \(names.count)")
                    }
                    if let tp = r.tensorParallel {
                        // A tp rank's arena is its slices: map them to the serial layout.
                        tp.rewrite.forEachRun(in: span, model: r.model) { local, serial, count in
                            (t.data + serial).update(from: parts[k].data + (local - span.lowerBound), count: count)
                            covered.append(serial..<(serial + count))
                        }
                    } else {
                        (t.data + span.lowerBound).update(from: parts[k].data, count: span.count)
                        covered.append(span)
                    }
                }
            }
            try Trainer.checkCovers(covered, count: n)
            whole.append(t)
        }
        return whole
    }

    /// Places whole-arena tensors into every run's parts (the inverse of `gatherWhole`).
    private func scatterWhole(_ whole: [Tensor], _ runs: RunState) {
        for r in ranks {
            for vs in r.virtualStages {
                let span = runs.span(vs)
                for (k, part) in runs.tensors(vs).enumerated() {
                    if let tp = r.tensorParallel {
                        tp.rewrite.forEachRun(in: span, model: r.model) { local, serial, count in
                            (part.data + (local - span.lowerBound)).update(from: whole[k].data + serial, count: count)
                        }
                    } else {
                        part.data.update(from: whole[k].data + span.lowerBound, count: span.count)
                    }
                }
            }
        }
    }

    /// Restores the step and epoch counts, the learning-rate factor and
    /// whole optimizer state (scattered to each rank's range), and checks
    /// `outerState` for `placeOuterState`. The parameters are the model's
    /// business (set them on `model` first). Nothing changes when it throws.
    public func restoreState(
        step: Int, epoch: Int = 0, optimizerKind: OptimizerKind, optimizerState: [Tensor], learningRateScale: Double = 1,
        outerState: [Tensor] = []
    ) throws {
        guard step >= 0 else { throw ParmlError.format("the checkpoint's step count \(step) is negative") }
        guard learningRateScale.isFinite, learningRateScale > 0 else {
            throw ParmlError.format("the checkpoint's learning-rate factor \(learningRateScale) is not a finite positive number")
        }
        guard epoch >= 0 else { throw ParmlError.format("the checkpoint's epoch count \(epoch) is negative") }
        guard optimizerKind == optimizerConfig.kind else {
            throw ParmlError.invalidArgument(
                "the checkpoint was written by a \(optimizerKind) optimizer, this trainer uses \(optimizerConfig.kind)")
        }
        let names = optimizerStateNames
        guard optimizerState.count == names.count else {
            throw ParmlError.invalidArgument(
                "the checkpoint holds \(optimizerState.count) optimizer state tensors; this trainer's optimizer keeps \(names.count) (\(names.joined(separator: ", ")))")
        }
        let n = model.parameterCount
        for (t, name) in zip(optimizerState, names) where t.count != n {
            throw ParmlError.shape("optimizer state '\(name)' holds \(t.count) values; the model has \(n) parameters")
        }
        guard outerState.isEmpty || outerState.count == 2 else {
            throw ParmlError.format("the checkpoint holds \(outerState.count) outer-optimizer tensors, not 2 (outer_anchor, outer_velocity)")
        }
        for t in outerState where t.count != n {
            throw ParmlError.shape("outer-optimizer state holds \(t.count) values; the model has \(n) parameters")
        }
        scatterWhole(optimizerState, optimizerRuns)
        stepCount = step
        epochCount = epoch
        self.learningRateScale = learningRateScale
    }

    /// After a checkpoint's parameters are in `model`: the replicas take
    /// them, and local SGD's outer optimizer continues from the checkpoint's
    /// state (checked by `restoreState`), or restarts from the parameters
    /// when the checkpoint has none. A trainer without an outer optimizer
    /// ignores it.
    public func placeOuterState(_ outerState: [Tensor]) throws {
        guard layout.hasOuterOptimizer else { return }
        try syncReplicas()
        if !outerState.isEmpty { scatterWhole(outerState, outerRuns) }
    }

    /// MPI: each process holds its rank's state only. Every rank that owns
    /// a part nobody else does (its ZeRO shard; with whole gradients on
    /// every data rank, data rank 0's copy) broadcasts it in turn and every
    /// process places it, so all of them end with the whole state. Collective:
    /// every process must call it (saving a checkpoint does).
    private func gatherAcrossProcesses(_ names: [String], _ runs: RunState) throws -> [Tensor] {
        guard let me = ranks.first, let world = me.comms?.world else {
            throw ParmlError.internal("an MPI trainer without its world communicator")
        }
        let n = model.parameterCount
        let mesh = layout.mesh
        let scratch = try Tensor(shape: Shape(0))
        var whole: [Tensor] = []
        for k in names.indices {
            let t = try Tensor(shape: Shape(n))
            for root in 0..<mesh.worldSize {
                let c = mesh.coordinate(ofRank: root)
                guard runs.sharded || c.data == 0 else { continue }
                // One broadcast per run of layers the root holds (its v
                // virtual stages under interleaved 1F1B).
                for (i, owned) in runs.spans(c).enumerated() {
                    try scratch.resize(Shape(owned.count))
                    if root == me.rank {
                        let parts = runs.tensors(me.virtualStages[i])
                        guard parts.count == names.count else {
                            throw ParmlError.internal("rank \(me.rank) keeps \(parts.count) tensors of \(names.joined(separator: ", ")), expected \(names.count)")
                        }
                        scratch.data.update(from: parts[k].data, count: owned.count)
                    }
                    try world.broadcast(scratch.data, count: owned.count, root: root)
                    if let tp = me.tensorParallel {
                        // Replicated parameters come from tp rank 0 only.
                        let peer = tp.peers[c.tensor]
                        peer.forEachRun(in: owned, model: me.model, replicated: c.tensor == 0) { local, serial, count in
                            (t.data + serial).update(from: scratch.data + (local - owned.lowerBound), count: count)
                        }
                    } else {
                        (t.data + owned.lowerBound).update(from: scratch.data, count: owned.count)
                    }
                }
            }
            whole.append(t)
        }
        return whole
    }

    /// Whether this process writes files the trainer saves: on the MPI
    /// backend only world rank 0 does (every process gathers alike).
    public var writesCheckpointFiles: Bool { processWorld.map { $0.localRanks.contains(0) } ?? true }

    /// Ranges that together must be exactly 0..<count (overlaps allowed).
    private static func checkCovers(_ ranges: [Range<Int>], count: Int) throws {
        var end = 0
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            guard r.lowerBound <= end else { break }
            end = max(end, r.upperBound)
        }
        guard end >= count else {
            throw ParmlError.internal("the ranks' optimizer ranges cover only 0..<\(end) of \(count) parameters")
        }
    }
}
