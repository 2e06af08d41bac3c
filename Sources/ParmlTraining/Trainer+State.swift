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

    /// The training state with whole optimizer tensors, gathered from the
    /// ranks: each optimizer of a rank (one per run of layers it holds) owns
    /// `optimizer.range` of the arena and its state tensors cover that range. The union of the ranges must
    /// cover the arena; where replicated ranks overlap, they hold the same
    /// values and any one serves.
    public func captureState() throws -> TrainingState {
        let n = model.parameterCount
        let names = optimizerStateNames
        if processWorld != nil { return try captureStateAcrossProcesses(names: names) }
        var whole: [Tensor] = []
        for k in names.indices {
            let t = try Tensor(shape: Shape(n))
            var covered = [Range<Int>]()
            for r in ranks {
                for opt in r.virtualStages.map(\.optimizer) {
                    let states = opt.stateTensors
                    guard states.count == names.count, states[k].count >= opt.range.count else {
                        throw ParmlError.internal("rank \(r.rank) keeps \(states.count) optimizer state tensors, expected \(names.count)")
                    }
                    if let tp = r.tensorParallel {
                        // A tp rank's arena is its slices: map them to the serial layout.
                        tp.rewrite.forEachRun(in: opt.range, model: r.model) { local, serial, count in
                            (t.data + serial).update(from: states[k].data + (local - opt.range.lowerBound), count: count)
                            covered.append(serial..<(serial + count))
                        }
                    } else {
                        (t.data + opt.range.lowerBound).update(from: states[k].data, count: opt.range.count)
                        covered.append(opt.range)
                    }
                }
            }
            try Trainer.checkCovers(covered, count: n)
            whole.append(t)
        }
        var state = TrainingState(
            step: stepCount, seed: strategy.seed, optimizer: optimizerConfig, strategy: strategy, optimizerState: whole)
        state.epoch = epochCount
        state.learningRateScale = learningRateScale
        return state
    }

    /// Restores the step and epoch counts, the learning-rate factor and
    /// whole optimizer state (scattered to each rank's range). The
    /// parameters are the model's business (set them on `model` first).
    /// Nothing changes when it throws.
    public func restoreState(
        step: Int, epoch: Int = 0, optimizerKind: OptimizerKind, optimizerState: [Tensor], learningRateScale: Double = 1
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
        for r in ranks {
            for opt in r.virtualStages.map(\.optimizer) {
                for (k, state) in opt.stateTensors.enumerated() {
                    if let tp = r.tensorParallel {
                        tp.rewrite.forEachRun(in: opt.range, model: r.model) { local, serial, count in
                            (state.data + (local - opt.range.lowerBound)).update(from: optimizerState[k].data + serial, count: count)
                        }
                    } else {
                        state.data.update(from: optimizerState[k].data + opt.range.lowerBound, count: opt.range.count)
                    }
                }
            }
        }
        stepCount = step
        epochCount = epoch
        self.learningRateScale = learningRateScale
    }

    /// MPI: each process holds its rank's state only. Every rank that owns
    /// a part nobody else does (its ZeRO shard; with whole gradients on
    /// every data rank, data rank 0's copy) broadcasts it in turn and every
    /// process places it, so all of them end with the whole state. Collective:
    /// every process must call it (saving a checkpoint does).
    private func captureStateAcrossProcesses(names: [String]) throws -> TrainingState {
        guard let me = ranks.first, let world = me.comms?.world else {
            throw ParmlError.internal("an MPI trainer without its world communicator")
        }
        let n = model.parameterCount
        let mesh = layout.mesh
        let sharded = layout.shardsOverData
        let scratch = try Tensor(shape: Shape(0))
        var whole: [Tensor] = []
        for k in names.indices {
            let t = try Tensor(shape: Shape(n))
            for root in 0..<mesh.worldSize {
                let c = mesh.coordinate(ofRank: root)
                guard sharded || c.data == 0 else { continue }
                // One broadcast per run of layers the root holds (its v
                // virtual stages under interleaved 1F1B).
                for (i, owned) in RankContext.ownedRanges(layout: layout, coordinate: c).enumerated() {
                    try scratch.resize(Shape(owned.count))
                    if root == me.rank {
                        let states = me.virtualStages[i].optimizer.stateTensors
                        guard states.count == names.count else {
                            throw ParmlError.internal("rank \(me.rank) keeps \(states.count) optimizer state tensors, expected \(names.count)")
                        }
                        scratch.data.update(from: states[k].data, count: owned.count)
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
        var state = TrainingState(
            step: stepCount, seed: strategy.seed, optimizer: optimizerConfig, strategy: strategy, optimizerState: whole)
        state.epoch = epochCount
        state.learningRateScale = learningRateScale
        return state
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
