#if canImport(Glibc)
import Glibc
#endif
import ParmlData
import ParmlModel
import ParmlParallel
import ParmlTensor

/// What a step or an evaluation measured.
public struct BatchResult: Sendable {
    /// Mean loss over the batch.
    public var loss: Float
    /// Predictions whose arg-max output is their target (cross-entropy only).
    public var correct: Int
    public var samples: Int
    /// Class predictions made: samples, or samples × positions for a
    /// sequence's logits (N, T, C). Accuracy is correct / predictions.
    public var predictions: Int
    /// What `loss` is a mean over, to average batches: the samples, or
    /// Σ class weight of the targets with class weights.
    public var lossWeight: Double
}

public struct FitOptions: Sendable {
    public var epochs = 1
    public var batchSize = 64
    public var shuffle = true
    public var dropLast = false
    /// Class-balanced sampling: one weight per class; each epoch draws its
    /// samples with replacement, sample i with probability ∝ weight[yᵢ]
    /// (PyTorch's WeightedRandomSampler). Nil: each sample once per epoch.
    public var classSamplingWeights: [Float]?
    public init() {}
}

/// What one epoch of `fit` measured. Values that do not apply are NaN.
public struct EpochMetrics: Sendable {
    public var epoch = 0
    public var epochs = 0
    public var steps = 0
    public var trainLoss = Float.nan
    public var trainAccuracy = Float.nan
    public var validationLoss = Float.nan
    public var validationAccuracy = Float.nan
    public var learningRate = Float.nan
    public var seconds = 0.0
    public var samplesPerSecond = 0.0
    /// Steps of this epoch done (all of them at its end).
    public var epochStep = 0
    /// False for a callback after a step inside the epoch (no validation then).
    public var endOfEpoch = false
    /// What the built-in callbacks did after this epoch.
    public var events: FitEvents = []
    /// Early stopping's best epoch so far (0: none, or no early stopping).
    public var bestEpoch = 0
    /// Private training: ε spent so far at the privacy config's δ.
    public var privacyEpsilon = Double.nan
}

/// Model + loss + optimizer + strategy: what trains.
///
/// A training step is forward → loss → backward → gradient reduction →
/// clip → optimizer update, with the learning rate taken from the schedule
/// at the step index. With dp > 1 each rank is a thread running a replica of
/// the model on its slice of the batch (rank 0's replica is the user's model)
/// and the ranks exchange gradients through a Communicator. Every buffer is
/// allocated on the first step and reused after it.
public final class Trainer {
    public let model: Model
    public let optimizerConfig: OptimizerConfig
    public let strategy: StrategyConfig
    /// Optimizer steps taken (set by restoring a checkpoint, Trainer+State).
    public internal(set) var stepCount = 0
    /// Epochs `fit` has completed, over all its calls (and checkpoints):
    /// the next epoch's data order is a function of (seed, epochCount), so
    /// fit(2) then fit(2) trains as fit(4) does.
    public internal(set) var epochCount = 0
    /// The factor `setLearningRate` puts on the schedule's rate (1: none).
    public internal(set) var learningRateScale: Double = 1
    /// Global gradient norm of the last step, before clipping (NaN without clipping).
    public private(set) var lastGradientNorm: Float = .nan
    /// Steps skipped because their loss or gradients were not finite
    /// (`OptimizerConfig.skipNonFinite`); they are not in `stepCount`.
    public private(set) var skippedSteps = 0
    /// Tests only: a fault to inject into a later step (set from
    /// PARML_TEST_FAULT when the trainer is built).
    @_spi(Testing) public var faultInjection: FaultInjection?
    /// DP-SGD settings (nil: ordinary training); set with `setPrivacy`.
    public internal(set) var privacy: PrivacyConfig?
    /// Private steps taken, as (q, σ, steps) runs for the accountant.
    var privacyLedger: [PrivacyLedgerEntry] = []
    /// While fit runs privately: its q, and its expected batch size under
    /// Poisson sampling (steps outside fit count with q = 1).
    var privateSamplingRate: Double?
    var privateExpectedBatch: Double?
    let ranks: [RankContext]
    let layout: RankLayout
    private let world: ThreadsWorld?
    private let pool: RankPool?
    /// One rank per process (MPI): this process's world (its one rank is `ranks[0]`).
    private(set) var processWorld: (any RankWorld)?
    private var syncedVersion: Int
    /// Unique to this trainer (`Model.lastTrainer`).
    private let identity = BF16Products.nextSerial()
    /// Set when a step (or a collective gather) failed on some rank: the replicas may disagree now.
    var poisoned: String?
    let batchInputs: Tensor
    let batchTargets: Tensor
    /// Room for a host's integer inputs as floats and int64 targets as
    /// int32 (the C layer converts into them), so such steps allocate
    /// nothing once sized.
    public let conversion: (inputs: Tensor, targets: Tensor)
    /// Local batches: the replicas' row counts and a verdict, exchanged per step.
    private let exchange = try! Tensor(shape: Shape(0))
    /// Sample weights: the global batch's per-sample denominators, and fit's batch of weights.
    let sampleDenominatorScratch = Buffer()
    let batchWeights = try! Tensor(shape: Shape(0))
    /// The host's weights of a C step (parml_trainer_step_weighted), copied here.
    public let stepWeights = try! Tensor(shape: Shape(0))
    /// What every step shares (seed, clipping, buckets, the finite check).
    private let stepSettings: StepSettings
    /// The current step, read by every rank; and the closure the pool runs,
    /// built once so that a step allocates nothing.
    private let job: RankJob
    private let rankBody: ((Int) throws -> Void)?
    private var traceOnExit: String?
    /// This trainer's OpenBLAS thread count. OpenBLAS has one setting per
    /// process: in deterministic mode each step sets it again, so that
    /// another trainer created since cannot change this one's sums (the
    /// strategy's count, or the default for this process: `threadsInThisProcess`).
    let blasThreads: Int

    public var loss: Loss { ranks[0].loss }
    public var optimizer: Optimizer { ranks[0].optimizer }

    public init(model: Model, loss: LossKind, optimizer: OptimizerConfig, strategy: StrategyConfig) throws {
        try optimizer.validate()
        try strategy.validate()
        guard model.isInitialized, model.parameters != nil else {
            throw ParmlError.state("the model is not initialised; initialise it before creating a trainer")
        }
        // Another trainer's ZeRO-3 shard (MPI) is not a model to start from.
        try model.requireWholeParameters("creating a trainer")
        try BLAS.ensureLoaded()
        blasThreads = strategy.threadsInThisProcess
        BLAS.threads = blasThreads
        self.model = model
        self.optimizerConfig = optimizer
        self.strategy = strategy
        let mesh = Mesh(dp: strategy.dp, pp: strategy.pp, tp: strategy.tp)
        // Boundaries the host marked decide the cut of a pipeline; otherwise
        // stages are balanced by the cost the layers state (LayerCost.swift).
        // Interleaved 1F1B cuts
        // pp × v runs (virtual stages), run c on stage c mod pp.
        let v = strategy.pipelineSchedule == .interleaved ? strategy.virtualStages : 1
        let batchStatistics = try Trainer.checkBatchStatistics(model, pp: mesh.pp, virtualStages: v)
        if strategy.localSteps > 1 && mesh.dp > 1 {
            // With pp or tp > 1 the norm and the tied sum run over the world,
            // which would mix the replicas; with one rank per replica each
            // rank's norm is its own replica's.
            if optimizer.clipGradNorm > 0 && (mesh.pp > 1 || mesh.tp > 1) {
                throw ParmlError.unsupported(
                    "local_steps > 1 with clip_grad_norm and pp or tp > 1: the norm would mix the replicas; clip with pp = tp = 1 only")
            }
            if !model.tiedParameters.isEmpty && mesh.pp > 1 {
                throw ParmlError.unsupported("local_steps > 1 with a tied classifier on another stage than its embedding (pp > 1)")
            }
        }
        let partition = mesh.pp > 1 && !model.stageStarts.isEmpty
            ? try StagePartition.marked(
                starts: model.stageStarts, layerCount: model.root.layers.count, stages: mesh.pp, virtualStages: v)
            : try StagePartition.balanced(costs: LayerCost.stageCosts(model).costs, stages: mesh.pp, virtualStages: v)
        // tp > 1: each tp rank runs a rewritten model holding its slices
        // (same layout on every tp rank, since tp divides the split widths).
        if strategy.splitClassifier && mesh.tp > 1 && loss != .crossEntropy {
            throw ParmlError.invalidArgument("split_classifier: the sharded loss is softmax cross-entropy; this trainer's loss is \(loss)")
        }
        let rewrites = mesh.tp > 1
            ? try (0..<mesh.tp).map { try TensorParallelRewrite(serial: model, rank: $0, ranks: mesh.tp, splitClassifier: strategy.splitClassifier) }
            : []
        let share = strategy.zeroStage >= 3
        let size = mesh.worldSize
        // Fold the momentum into the backward pass when nothing needs the raw
        // gradient between backward and update: one rank, no deterministic
        // chunking, no clipping (which reads the gradient's norm). The
        // non-finite check then looks at the loss before backward touches
        // the momentum (PipelineExecution.backward). Tied parameters need
        // their two raw gradients to sum them (TiedGradients.swift).
        let fold = size == 1 && strategy.backend == .threads && !strategy.deterministic
            && Optimizer.canFoldMomentum(optimizer) && optimizer.clipGradNorm == 0 && model.tiedParameters.isEmpty
            && !batchStatistics
        var ranks: [RankContext] = []
        var layout: RankLayout
        var world: ThreadsWorld?
        var pool: RankPool?
        func makeLayout(_ arenaModel: Model, threadsAllowed: Bool = true, spansMachines: Bool = false) -> RankLayout {
            RankLayout(
                mesh: mesh, partition: partition,
                stageRanges: partition.layers.map { arenaModel.parameterRange(ofTopLevelLayers: $0) }, virtualStages: v,
                schedule: strategy.pipelineSchedule, microBatches: strategy.microBatches, zeroStage: strategy.zeroStage,
                hasBatchStatistics: batchStatistics, compression: strategy.gradientCompression, compressionRank: strategy.compressionRank, seed: strategy.seed,
                localSteps: strategy.localSteps, outerLearningRate: strategy.outerLearningRate, outerMomentum: strategy.outerMomentum,
                gradientBucketFloats: strategy.gradientBucketFloats(
                    dp: mesh.dp, spansMachines: spansMachines, threadsAllowed: threadsAllowed),
                overlapsReduction: strategy.overlapsReduction(dp: mesh.dp, spansMachines: spansMachines) && threadsAllowed)
        }
        let backend = try strategy.worldBackend()
        if backend.ranksAreProcesses {
            // One rank per process: this process builds its own rank only.
            let processes = try backend.makeWorld(
                size: size, layout: "dp×pp×tp = \(mesh.dp)×\(mesh.pp)×\(mesh.tp) = \(size)", timeout: strategy.watchdogSeconds,
                name: "world")
            let r = processes.localRanks.lowerBound, c = mesh.coordinate(ofRank: r)
            let rankModel = rewrites.isEmpty ? model : try rewrites[c.tensor].makeModel(from: model)
            if strategy.overlap == .on && !processes.allowsCommunicationThreads {
                throw ParmlError.unsupported(
                    "overlap=on: the host initialised MPI below MPI_THREAD_SERIALIZED, so a communication thread may not call it")
            }
            layout = makeLayout(
                rankModel, threadsAllowed: processes.allowsCommunicationThreads, spansMachines: processes.spansMachines)
            // Processes share no memory: ZeRO-3 gathers each layer before use
            // (with tp > 1, of the rank's rewritten model; the host's model is
            // assembled when gathered).
            let gathers = ParameterGathering.applies(layout: layout, sharesParameters: false, processes: true)
            let comms = try Trainer.communicators(mesh: mesh, coordinate: c, world: processes.communicator(rank: r), gathers: gathers)
            ranks.append(
                try RankContext(
                    rank: r, layout: layout, model: rankModel, loss: loss, optimizer: optimizer, comms: comms,
                    foldMomentum: false, sharesParameters: false, gathersParameters: gathers,
                    tensorParallel: rewrites.isEmpty ? nil : TensorParallelSync(rewrite: rewrites[c.tensor], serial: model, peers: rewrites)))
            processWorld = processes
        } else {
            var bases: [[Model]] = []
            for d in 0..<mesh.dp {
                var row: [Model] = []
                for t in 0..<mesh.tp {
                    if rewrites.isEmpty {
                        row.append(d == 0 ? model : try model.replicate(sharingParameters: share))
                    } else {
                        row.append(d == 0 || !share ? try rewrites[t].makeModel(from: model) : try bases[0][t].replicate(sharingParameters: true))
                    }
                }
                bases.append(row)
            }
            layout = makeLayout(bases[0][0])
            world = size > 1 ? try ThreadsWorld(size: size, timeout: strategy.watchdogSeconds, name: "world") : nil
            pool = size > 1 ? try RankPool(size: size) : nil
            let comms = try Trainer.communicators(mesh: mesh, world: world)
            // One parameter arena per data-parallel replica (and tp rank), which
            // its pipeline stages share (each updates its own slice); ZeRO-3
            // shares one arena among the replicas too (each rank updates its
            // shard of its stage), so "gather before use" is a read of shared
            // memory. Gradient arenas are per replica, shared by its stages.
            for r in 0..<size {
                let c = mesh.coordinate(ofRank: r)
                let base = bases[c.data][c.tensor]
                ranks.append(
                    try RankContext(
                        rank: r, layout: layout,
                        model: c.stage == 0 ? base : try base.replicate(sharingParameters: true, sharingGradients: true),
                        loss: loss, optimizer: optimizer, comms: comms?[r], foldMomentum: fold,
                        sharesParameters: share && mesh.dp > 1,
                        tensorParallel: rewrites.isEmpty ? nil : TensorParallelSync(rewrite: rewrites[c.tensor], serial: model, peers: rewrites)))
            }
        }
        self.ranks = ranks
        self.layout = layout
        self.world = world
        self.pool = pool
        stepSettings = StepSettings(
            seed: strategy.seed, clipNorm: optimizer.clipGradNorm,
            bucketFloats: max(1, strategy.bucketBytes / MemoryLayout<Float>.stride), skipNonFinite: optimizer.skipNonFinite,
            precision: BF16.resolve(strategy.precision), threads: blasThreads)
        let job = RankJob(ranks: ranks)
        self.job = job
        rankBody = pool != nil ? { r in try job.run(rank: r) } : nil
        syncedVersion = model.parameterVersion
        batchInputs = try Tensor(shape: Shape(0))
        batchTargets = try Tensor(shape: Shape(0))
        conversion = (try Tensor(shape: Shape(0)), try Tensor(shape: Shape(0)))
        // PARML_TEST_FAULT: the fault injection of the Swift tests, for test
        // programs in other languages (docs/reliability.md).
        if let f = getenv("PARML_TEST_FAULT"), f.pointee != 0 {
            faultInjection = try FaultInjection(parsing: String(cString: f))
        }
        // PARML_TRACE=path: record every step and write the timeline there
        // when the trainer goes away, with no change to the host program.
        if let p = getenv("PARML_TRACE"), p.pointee != 0 {
            traceOnExit = String(cString: p)
            setTracing(true)
        }
    }

    deinit {
        if let traceOnExit { try? writeChromeTrace(to: traceOnExit) }
        // MPI: a failed step may leave messages in flight and peers waiting;
        // the job cannot go on, so freeing the trainer ends it (docs/mpi.md).
        if let processWorld, let poisoned { processWorld.endJob(reason: poisoned) }
    }

    /// This process's communicators on the MPI backend: splits of the world
    /// (collective over the processes, which all create the trainer alike).
    /// Whether the model normalises with batch statistics (batch_norm),
    /// refusing what its phased execution cannot run: a batch_norm inside a
    /// residual block, and interleaved 1F1B, whose order has backwards before
    /// the last forward.
    static func checkBatchStatistics(_ model: Model, pp: Int, virtualStages v: Int) throws -> Bool {
        let top = model.root.layers.filter { $0 is BatchStatisticsLayer }.count
        let all = model.allLayers.filter { $0 is BatchStatisticsLayer }.count
        guard top == all else {
            throw ParmlError.unsupported("batch_norm inside a residual block: the trainer runs batch_norm at the top level only")
        }
        if top > 0 && pp > 1 && v > 1 {
            throw ParmlError.unsupported(
                "batch_norm with interleaved 1F1B: its statistics need every micro-batch's forward before any backward; use GPipe or 1F1B "
                    + "(a model with batch_norm runs GPipe's order under either)")
        }
        return top > 0
    }

    private static func communicators(mesh: Mesh, coordinate c: MeshCoordinate, world: Communicator, gathers: Bool) throws -> RankComms {
        func group(_ g: Mesh.Group) throws -> Communicator {
            let (color, key) = mesh.split(g, of: c)
            return try world.split(color: color, key: key, name: g.name)
        }
        return RankComms(
            world: world, data: try group(.data), pipe: try group(.pipe), pipeBackward: try group(.pipe),
            tensor: try group(.tensor), replica: try group(.replica), gather: gathers ? try group(.data) : nil)
    }

    /// Each rank's world, data-parallel, pipeline and tensor communicators.
    private static func communicators(mesh: Mesh, world: ThreadsWorld?) throws -> [RankComms]? {
        guard let world else { return nil }
        let coords = (0..<mesh.worldSize).map { mesh.coordinate(ofRank: $0) }
        func group(_ g: Mesh.Group) throws -> [Communicator] {
            let splits = coords.map { mesh.split(g, of: $0) }
            return try world.split(colors: splits.map(\.color), keys: splits.map(\.key), name: g.name)
        }
        let data = try group(.data), pipe = try group(.pipe), pipeBackward = try group(.pipe), tensor = try group(.tensor)
        return (0..<mesh.worldSize).map {
            RankComms(world: world.communicator(rank: $0), data: data[$0], pipe: pipe[$0], pipeBackward: pipeBackward[$0], tensor: tensor[$0])
        }
    }

    /// The learning rate the next step will use: the schedule's, times
    /// the factor `setLearningRate` left (1 until it is called).
    public var learningRate: Float {
        let scheduled = optimizerConfig.schedule.learningRate(base: optimizerConfig.learningRate, step: stepCount)
        return learningRateScale == 1 ? scheduled : Float(Double(scheduled) * learningRateScale)
    }

    /// Makes the next step use `lr` and keeps the schedule's shape from
    /// there: later steps use lr × schedule(s) / schedule(now), as a
    /// PyTorch ReduceLROnPlateau chained after a scheduler would. The
    /// factor is a Double, so the next step's rate is `lr` exactly.
    public func setLearningRate(_ lr: Float) throws {
        guard lr.isFinite, lr > 0 else { throw ParmlError.invalidArgument("learning rate must be finite and > 0, got \(lr)") }
        let scheduled = optimizerConfig.schedule.learningRate(base: optimizerConfig.learningRate, step: stepCount)
        guard scheduled > 0 else {
            throw ParmlError.state(
                "the schedule's learning rate at step \(stepCount) is \(scheduled); a factor on it cannot make \(lr) (the cosine schedule ends at min_lr)")
        }
        learningRateScale = Double(lr) / Double(scheduled)
    }

    /// Bytes rank `rank` holds for parameters, gradients, optimizer state,
    /// scratch (deterministic mode, norms) and activations (high-water).
    public func memory(rank: Int) throws -> (parameters: Int, gradients: Int, optimizer: Int, scratch: Int, activations: Int) {
        guard rank >= 0, rank < layout.mesh.worldSize else {
            throw ParmlError.invalidArgument("rank \(rank) is outside 0..<\(layout.mesh.worldSize)")
        }
        guard let r = ranks.first(where: { $0.rank == rank }) else {
            throw ParmlError.invalidArgument("rank \(rank) runs in another process (MPI backend); ask that process")
        }
        return r.memory
    }

    /// One optimizer step on a batch. Nothing is updated when it throws
    /// before the ranks start (shapes and targets are checked first); a
    /// failure on a rank leaves the trainer unusable (the replicas may differ).
    /// `sampleWeights` (N, float32, finite, >= 0): each sample's loss
    /// weight (Trainer+SampleWeights.swift); all 0 is refused unless
    /// `zeroWeightsAllowed` (fit: such a batch adds loss 0 and no gradient).
    @discardableResult
    public func step(inputs: Tensor, targets: Tensor, sampleWeights: Tensor? = nil, zeroWeightsAllowed: Bool = false) throws -> BatchResult {
        if let poisoned { throw ParmlError.state("an earlier step failed (\(poisoned)); create a new trainer") }
        // Local data: a replica whose data ran out passes no rows (the model checks a row's shape).
        let outShape = localData && inputs.shape[0] == 0
            ? try model.outputShape(for: inputs.shape.withLeading(1)).withLeading(0) : try model.outputShape(for: inputs.shape)
        try loss.validate(output: outShape, targets: targets)
        let n = inputs.shape[0]
        if let sampleWeights { try checkStepWeights(sampleWeights, rows: n) }
        let chunk = strategy.deterministic ? strategy.gradientChunk : nil
        var plan = StepPlan(samples: n, ranks: layout.mesh.dp, deterministicChunk: chunk)
        if localBatches {
            // This process holds its replica's rows only: learn the global
            // batch from the replicas' counts, and check the rows are the
            // ones a global batch would give this replica.
            plan = try localPlan(rows: n, chunk: chunk, weighted: sampleWeights != nil)
        }
        // Class weights: the mean is over the global batch's target weight,
        // which local batches learn by summing the replicas' class counts.
        var lossScale = loss.meanScale(samples: plan.samples, output: outShape)
        var lossWeight = Double(plan.samples)
        if loss.options.classWeights != nil && sampleWeights == nil {  // with sample weights: their total includes the class weights
            let data = localBatches ? ranks.first?.comms?.data : nil
            let weight = try loss.targetWeight(targets, classes: outShape[outShape.rank - 1]) { counts, classes in
                try data?.allReduce(counts, count: classes, op: .sum)
            }
            lossScale = 1 / weight
            lossWeight = Double(weight)
        }
        if let sampleWeights {
            lossWeight = try sampleWeightTotal(
                sampleWeights, targets: targets, output: outShape, samples: plan.samples, firstRow: plan.firstLocalRow, gather: localBatches)
            guard lossWeight > 0 || zeroWeightsAllowed else {
                throw ParmlError.invalidArgument("sample weights: every prediction of the batch has weight 0, so the weighted mean is undefined")
            }
            lossScale = lossWeight > 0 ? Float(1 / lossWeight) : 0
        }
        try syncReplicas()
        // Another trainer stepped this model since: the ranks' bf16 copies
        // (of the arena they may share with it) are rounded again.
        if model.lastTrainer != identity {
            for r in ranks { r.bf16Copies?.invalidate() }
            model.lastTrainer = identity
        }
        useOwnBLASThreads()
        job.set(
            StepDescription(
                x: inputs, y: targets, w: sampleWeights, plan: plan, outputShape: outShape, lossScale: lossScale, index: stepCount,
                learningRate: learningRate, settings: stepSettings, fault: faultInjection,
                privacy: privacy.map { PrivateStepSettings(config: $0, expectedBatch: privateExpectedBatch ?? Double(plan.samples)) }))
        do {
            if let pool, let rankBody { try pool.run(world: world, rankBody) } else { try job.run(rank: 0) }
        } catch {
            // No job.clear() here: a rank the pool gave up on (stalled past
            // the watchdog) may still be reading the job on its thread, and
            // this trainer never steps again, so the job keeps the batch.
            poisoned = "\(error)"
            throw error
        }
        job.clear()
        let r = ranks[0].result
        if r.skipped {
            // Every rank agreed and updated nothing: the trainer stays usable.
            skippedSteps += 1
            let found = ranks.compactMap(\.result.nonFinite).min()
            // Every rank here and nothing found: the values are finite but
            // the clip's sum of their squares overflowed float32.
            let where_ = found.map { "\($0.text) on rank \($0.rank)" }
                ?? (processWorld == nil
                    ? "the global gradient norm overflowed (finite gradients whose squares sum past float32's range)"
                    : "another process's part of the step was not finite (its own error names where)")
            throw ParmlError.nonFinite(
                "step \(stepCount) was skipped: \(where_); nothing was updated "
                    + "(\(skippedSteps) step\(skippedSteps == 1 ? "" : "s") skipped so far)")
        }
        stepCount += 1
        lastGradientNorm = r.gradientNorm
        recordPrivateStep()
        return BatchResult(
            loss: r.loss, correct: r.correct, samples: plan.samples,
            predictions: plan.samples * loss.predictionsPerSample(output: outShape), lossWeight: lossWeight)
    }

    /// Sets the loss's class weights, label smoothing or pos_weight (for
    /// the next steps and evaluations; every rank's copy).
    public func setLossOptions(_ options: LossOptions) throws {
        try options.validate(for: loss.kind)
        // A split classifier's sharded loss reads the same options.
        for r in ranks { try r.loss.setOptions(options) }
    }

    /// MPI: every process passes only the rows of its data-parallel replica
    /// (the processes of one replica pass the same rows) instead of the
    /// global batch. The rows must be those `dataRows(globalSamples:)` gives.
    public private(set) var localBatches = false
    /// Local batches of uneven size: each process trains on its own data
    /// (Trainer+LocalData.swift); fit's epochs end together.
    public internal(set) var localData = false

    /// Turns local batches on or off (MPI backend only).
    public func setLocalBatches(_ on: Bool) throws {
        guard processWorld != nil || !on else {
            throw ParmlError.invalidArgument("local batches need the MPI backend: on threads every replica is in this process")
        }
        localBatches = on
        if !on { localData = false }
    }

    /// The rows of a global batch of `n` samples this process's replica
    /// takes: all of them on the threads backend (every replica is here).
    public func dataRows(globalSamples n: Int) throws -> Range<Int> {
        guard n >= 0 else { throw ParmlError.invalidArgument("global_samples must be >= 0, got \(n)") }
        guard processWorld != nil, let me = ranks.first else { return 0..<n }
        let plan = StepPlan(samples: n, ranks: layout.mesh.dp, deterministicChunk: strategy.deterministic ? strategy.gradientChunk : nil)
        return plan.rows(of: me.coordinate.data)
    }

    /// The step's plan when each replica passes its own rows: the counts of
    /// all replicas are summed over the data-parallel group (collective),
    /// then every process checks its rows and the group agrees on the verdict.
    private func localPlan(rows n: Int, chunk: Int?, weighted: Bool) throws -> StepPlan {
        guard let me = ranks.first, let data = me.comms?.data else { throw ParmlError.internal("no data-parallel group") }
        let dp = layout.mesh.dp
        try exchange.resize(Shape(dp + 2))
        exchange.fill(0)
        exchange.data[me.coordinate.data] = Float(n)
        exchange.data[dp + 1] = weighted ? 1 : 0  // the replicas must agree: weighted steps gather the weights
        try data.allReduce(exchange.data, count: dp + 2, op: .sum)
        let weightedReplicas = Int(exchange.data[dp + 1])
        guard weightedReplicas == 0 || weightedReplicas == dp else {
            throw ParmlError.invalidArgument(
                "local batches: \(weightedReplicas) of \(dp) replicas passed sample weights; all or none must")
        }
        var total = 0
        for d in 0..<dp { total += Int(exchange.data[d]) }
        var before = 0
        for d in 0..<me.coordinate.data { before += Int(exchange.data[d]) }
        if localData {
            // Uneven local data: every count is accepted, the global batch is their concatenation.
            return StepPlan(samples: total, ranks: dp, deterministicChunk: nil, firstLocalRow: before, counts: (0..<dp).map { Int(exchange.data[$0]) })
        }
        let plan = StepPlan(samples: total, ranks: dp, deterministicChunk: chunk)
        let want = plan.rows(of: me.coordinate.data)
        exchange.data[dp] = want.count == n && want.lowerBound == before ? 0 : 1
        try data.allReduce(exchange.data + dp, count: 1, op: .sum)
        guard exchange.data[dp] == 0 else {
            throw ParmlError.shape(
                "local batches: the replicas passed \((0..<dp).map { Int(exchange.data[$0]) }) rows (\(total) in all); "
                    + "a global batch of \(total) gives replica \(me.coordinate.data) rows \(want.lowerBound)..<\(want.upperBound) "
                    + "(the trainer's data rows for a global batch say which)")
        }
        return StepPlan(samples: total, ranks: dp, deterministicChunk: chunk, firstLocalRow: before)
    }

    /// Copies the user's model into the other replicas when its parameters
    /// were set from outside (init, set_params, a checkpoint) since the last
    /// step; local SGD's outer optimizer restarts from them.
    func syncReplicas() throws {
        guard model.parameterVersion != syncedVersion, let src = model.parameters else { return }
        // The ranks' bf16 copies round the new values at their next step.
        for r in ranks { r.bf16Copies?.invalidate() }
        // Pipeline stages of a replica share its arena: copy once per replica.
        for r in ranks where (r.coordinate.stage == 0 || processWorld != nil) && !r.model.sharesParameters(with: model) {
            if let tp = r.tensorParallel {
                // ZeRO-3 replicas read data rank 0's arena: it is filled once.
                if r.coordinate.data == 0 || !r.sharesParameters { try tp.load(into: r.model) }
            } else {
                try r.model.setParameters(from: src.data)
            }
        }
        if layout.hasOuterOptimizer { for r in ranks { r.resetOuterState() } }
        syncedVersion = model.parameterVersion
    }

    /// Deterministic mode: sets this trainer's thread count again (one
    /// setting per process, which another trainer may have changed).
    private func useOwnBLASThreads() {
        if strategy.deterministic && BLAS.threads != blasThreads { BLAS.threads = blasThreads }
    }

    /// Loss and accuracy over a dataset in inference mode (dropout off):
    /// epoch 0's samples in order (a token dataset's random windows of
    /// epoch 0, the same at every call). With class or sample weights the
    /// loss is the weighted mean over the whole dataset (accuracy is not weighted).
    public func evaluate(_ data: any BatchSource, batchSize: Int) throws -> BatchResult {
        try evaluationPass(data, batchSize: batchSize, visit: nil)
    }

    /// The loop of `evaluate`: `visit` sees each batch's outputs and
    /// (validated) targets.
    func evaluationPass(_ data: any BatchSource, batchSize: Int, visit: ((Tensor, Tensor) throws -> Void)?) throws -> BatchResult {
        var batcher = try Batcher(dataset: data, batchSize: batchSize, shuffle: false, dropLast: false, seed: 0)
        batcher.startEpoch(0)
        useOwnBLASThreads()
        var total: Double = 0
        var weight: Double = 0
        var correct = 0
        var predictions = 0
        for b in 0..<batcher.batchCount {
            let n = try batcher.fill(batch: b, inputs: batchInputs, targets: batchTargets)
            let outShape = try model.outputShape(for: batchInputs.shape)
            predictions += n * loss.predictionsPerSample(output: outShape)
            try loss.validate(output: outShape, targets: batchTargets)
            var ctx = PassContext(training: false)
            ctx.threads = blasThreads
            let y = try model.forward(batchInputs, ctx)
            var scale = loss.meanScale(samples: n, output: outShape)
            var w = Double(n)
            if let weighted = try evaluationWeights(batcher, batch: b, rows: n, targets: batchTargets, output: outShape) {
                (scale, w) = weighted
            } else if loss.options.classWeights != nil {
                let sum = try loss.targetWeight(batchTargets, classes: outShape[outShape.rank - 1])
                scale = 1 / sum
                w = Double(sum)
            }
            let r = try loss.compute(
                output: y, targets: batchTargets, scale: scale, sampleWeights: data.sampleWeights != nil ? UnsafePointer(batchWeights.data) : nil,
                wantGradient: false)
            total += Double(r.loss) * w
            weight += w
            correct += r.correct
            try visit?(y, batchTargets)
        }
        return BatchResult(
            loss: Float(total / weight), correct: correct, samples: data.count, predictions: predictions, lossWeight: weight)
    }

    /// Each sample's weight for class-balanced sampling: its class's.
    static func sampleWeights(_ data: any BatchSource, classWeights w: [Float]) throws -> [Double] {
        guard let d = data as? Dataset, d.targets.shape.rank == 1, d.numClasses != nil else {
            throw ParmlError.invalidArgument("class-balanced sampling needs a dataset in memory with one class index per sample")
        }
        if let k = w.firstIndex(where: { !($0.isFinite && $0 >= 0) }) {
            throw ParmlError.invalidArgument("class sampling weight \(k) is \(w[k]); weights must be finite and >= 0")
        }
        var out = [Double](repeating: 0, count: d.count)
        for i in 0..<d.count {
            let c = d.targets.dtype == .int32 ? Int(d.targets.int32s[i]) : Int(d.targets.data[i])
            guard c < w.count else {
                throw ParmlError.invalidArgument("class-balanced sampling: sample \(i) is of class \(c) but \(w.count) class weights were given")
            }
            out[i] = Double(w[c])
        }
        return out
    }

    private func checkFits(_ data: any BatchSource, name: String) throws {
        do {
            let probe = try data.fitProbe()
            let out = try model.outputShape(for: probe.inputShape)
            try loss.validate(output: out, targets: probe.targets)
        } catch let e as ParmlError {
            switch e {
            case .shape(let m): throw ParmlError.shape("\(name): \(m)")
            case .invalidArgument(let m): throw ParmlError.invalidArgument("\(name): \(m)")
            default: throw e
            }
        }
    }

    /// Trains for `options.epochs` more epochs, continuing the data order
    /// from `epochCount`. Training batches carry `train`'s augmentation
    /// (drawn from the strategy's seed, the epoch and the sample); the
    /// validation data is evaluated as it is. After each epoch the
    /// callbacks run (FitCallbacks says in which order); `progress`
    /// returning false stops fit, which then throws .cancelled (that epoch
    /// counts as completed; a stop after a step inside an epoch leaves the
    /// epoch uncounted, its steps applied). Early stopping ends fit
    /// normally. With restore_best_weights the best epoch's parameters are
    /// put back whenever fit ends without an error.
    @discardableResult
    public func fit(
        _ train: any BatchSource, options: FitOptions, validation: (any BatchSource)? = nil,
        callbacks: FitCallbacks = FitCallbacks()
    ) throws -> EpochMetrics {
        guard options.epochs >= 1 else { throw ParmlError.invalidArgument("fit: epochs must be >= 1, got \(options.epochs)") }
        try callbacks.validate(hasValidation: validation != nil, classifies: loss.classifies)
        var batcher = try Batcher(
            dataset: train, batchSize: options.batchSize, shuffle: options.shuffle, dropLast: options.dropLast,
            seed: strategy.seed, sampleWeights: try options.classSamplingWeights.map { try Trainer.sampleWeights(train, classWeights: $0) },
            augment: true)
        guard batcher.batchCount > 0 || localData else {
            throw ParmlError.invalidArgument("fit: \(train.count) samples make no batch of \(options.batchSize) with drop_last")
        }
        // Both datasets must fit the model and loss before the first update:
        // a mismatch found after an epoch would leave that epoch applied.
        try checkFits(train, name: "training data")
        if let validation { try checkFits(validation, name: "validation data") }
        try checkFitWeights(train)
        let classify = loss.classifies
        var state = FitCallbackState()
        let poisson = try beginPrivateFit(train, batchSize: options.batchSize, classSampling: options.classSamplingWeights != nil)
        defer { endPrivateFit() }
        var last = EpochMetrics()
        for epoch in 1...options.epochs {
            batcher.startEpoch(epochCount)
            let poissonBatches = poisson ? try poissonBatches(train, epoch: epochCount, batchSize: options.batchSize) : []
            // Local data: the longest replica's batch count; the others pass empty batches after their last.
            let batches = localData ? try agreedBatchCount(batcher.batchCount) : batcher.batchCount
            let t0 = Clock.now()
            var total: Double = 0
            var weight: Double = 0
            var correct = 0
            var samples = 0
            var predictions = 0
            func metrics(batches: Int) -> EpochMetrics {
                let seconds = Clock.now() - t0
                var m = EpochMetrics()
                m.epoch = epoch
                m.epochs = options.epochs
                m.steps = stepCount
                m.epochStep = batches
                m.trainLoss = Float(weight > 0 ? total / weight : 0)  // 0: sample weights left every batch at weight 0
                m.trainAccuracy = classify ? Float(correct) / Float(predictions) : .nan
                m.learningRate = learningRate
                m.seconds = seconds
                m.samplesPerSecond = Double(samples) / max(seconds, 1e-9)
                m.bestEpoch = state.bestEpoch
                return m
            }
            for b in 0..<(poisson ? poissonBatches.count : batches) {
                let n: Int
                if poisson {
                    n = try fillPoisson(train, samples: poissonBatches[b], epoch: epochCount)
                    if n == 0 { recordPrivateStep(); continue }  // an empty batch: no update, but the step counts
                } else if b >= batcher.batchCount {
                    n = try emptyBatch(like: train)
                } else {
                    n = try batcher.fill(batch: b, inputs: batchInputs, targets: batchTargets)
                }
                let weights = poisson ? nil : try fitBatchWeights(batcher, batch: b, rows: n)
                let r = try step(inputs: batchInputs, targets: batchTargets, sampleWeights: weights, zeroWeightsAllowed: true)
                total += Double(r.loss) * r.lossWeight
                weight += r.lossWeight
                correct += r.correct
                samples += n
                predictions += r.predictions
                if callbacks.everySteps > 0, stepCount % callbacks.everySteps == 0, let progress = callbacks.progress {
                    if try !progress(metrics(batches: b + 1)) {
                        throw ParmlError.cancelled("fit stopped by the progress callback after step \(stepCount) (epoch \(epoch), not completed)")
                    }
                }
            }
            epochCount += 1
            // Validation and the built-in callbacks read the whole model;
            // every process is here (ZeRO-3 under MPI, Trainer+Gathering.swift).
            try gatherParameters()
            var m = metrics(batches: poisson ? poissonBatches.count : batches)
            m.endOfEpoch = true
            if let privacy { m.privacyEpsilon = try privacySpent(delta: privacy.delta) }
            if let validation {
                let v = try evaluate(validation, batchSize: options.batchSize)
                m.validationLoss = v.loss
                m.validationAccuracy = classify ? Float(v.correct) / Float(v.predictions) : .nan
            }
            m.events = try runBuiltIns(callbacks, &state, m)
            m.bestEpoch = state.bestEpoch
            m.learningRate = learningRate
            last = m
            if let progress = callbacks.progress, try !progress(m) {
                try restoreBest(state)
                throw ParmlError.cancelled("fit stopped by the progress callback after epoch \(epoch)")
            }
            if m.events.contains(.stopping) { break }
        }
        try restoreBest(state)
        return last
    }
}
