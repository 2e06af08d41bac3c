import ParmlModel
import ParmlParallel
import ParmlTensor

/// What a host asks the advisor.
public struct AdviceRequest: Sendable {
    /// One sample's input shape (no batch dimension): (784), (1, 28, 28), (T).
    public var sampleShape: Shape
    public var batch: Int
    public var loss: LossKind = .crossEntropy
    public var optimizer = OptimizerConfig()
    /// Cores the ranks may use and ranks (threads or processes) at most; 0:
    /// the cores this process may run on (in an MPI job: those of all its
    /// processes), and 4 ranks.
    public var cores = 0
    public var maxRanks = 0
    /// Peak bytes a rank may hold (as `Trainer.memory` counts them); 0: no limit.
    public var memoryBudget = 0
    /// Only layouts in deterministic mode (serial training's bits).
    public var deterministic = false
    /// The backend the layouts must use.
    public var backend: Backend = .threads
    /// Backend MPI on this machine: the job's process count. Advice then
    /// runs inside the job (`CalibrationCache.loadShared`), and ranks the
    /// layouts of exactly that many ranks, the ones a trainer of the job
    /// can take. 0: not in a job.
    public var processes = 0
    /// Predict for these machines instead of this one.
    public var machine: MachineDescription?

    public init(sampleShape: Shape, batch: Int) {
        self.sampleShape = sampleShape
        self.batch = batch
    }

    /// Whether the advice is for the MPI job it runs in.
    var inJob: Bool { backend == .mpi && machine == nil && processes > 0 }

    func validate() throws {
        guard batch >= 1, batch <= 1 << 24 else { throw ParmlError.invalidArgument("advise: batch must be in 1...2^24, got \(batch)") }
        guard sampleShape.rank >= 1, sampleShape.rank < Shape.maxRank, sampleShape.dims.allSatisfy({ $0 >= 1 }) else {
            throw ParmlError.invalidArgument("advise: the sample shape \(sampleShape) needs 1 to \(Shape.maxRank - 1) dimensions, each >= 1")
        }
        guard cores >= 0, cores <= 1 << 16 else { throw ParmlError.invalidArgument("advise: cores must be in 0...65536, got \(cores)") }
        guard maxRanks >= 0, maxRanks <= 4096 else { throw ParmlError.invalidArgument("advise: max_ranks must be in 0...4096, got \(maxRanks)") }
        guard memoryBudget >= 0 else { throw ParmlError.invalidArgument("advise: memory_budget must be >= 0 bytes, got \(memoryBudget)") }
        try optimizer.validate()
        try machine?.validate()
        guard processes >= 0, processes <= 4096 else { throw ParmlError.invalidArgument("advise: processes must be in 0...4096, got \(processes)") }
        if backend == .mpi && machine == nil {
            guard processes > 0 else {
                throw ParmlError.unsupported(
                    "advise: backend mpi on this machine is measured inside the MPI job (every process asks for the advice under mpirun); "
                        + "ask for threads, or describe the machines with a machine description")
            }
            guard maxRanks == 0 || maxRanks == processes else {
                throw ParmlError.invalidArgument(
                    "advise: max_ranks is \(maxRanks) but the MPI job has \(processes) process(es), and a trainer of the job takes them all; "
                        + "leave max_ranks at 0 or launch mpirun -np \(maxRanks)")
            }
        }
    }
}

/// A layout the advisor left out, and why.
public struct ExcludedLayout: Sendable {
    public var strategy: StrategyConfig
    public var why: String
}

/// The advisor's answer: feasible layouts fastest first, then the rest.
public struct Advice: Sendable {
    public var ranked: [LayoutPrediction] = []
    public var excluded: [ExcludedLayout] = []
    public var calibration: MachineCalibration
    public var calibrationOrigin: CalibrationCache.Origin
}

/// Picks a dp × pp × tp layout (micro-batches, ZeRO stage, BLAS threads)
/// for a model from a cost model calibrated on this machine
/// (docs/advisor.md says how it works and where it is wrong).
public enum StrategyAdvisor {
    /// Every layout with at most `maxRanks` ranks: each factorisation dp·pp·tp,
    /// micro-batches 1 (pp = 1) or pp, 2pp, 4pp, ZeRO 0–3 (dp > 1), 1F1B,
    /// and interleaved 1F1B with 2 runs per stage where the model has the
    /// top-level layers for it (2·pp at least).
    static func layouts(_ r: AdviceRequest, ranks: Int, topLevelLayers: Int) -> [StrategyConfig] {
        var out: [StrategyConfig] = []
        for world in 1...ranks where !r.inJob || world == r.processes {
            for dp in 1...world where world % dp == 0 {
                for pp in 1...(world / dp) where (world / dp) % pp == 0 {
                    let tp = world / dp / pp
                    for m in pp == 1 ? [1] : [pp, 2 * pp, 4 * pp] {
                        for zero in dp > 1 ? [0, 1, 2, 3] : [0] {
                            var s = StrategyConfig()
                            (s.dp, s.pp, s.tp, s.microBatches, s.zeroStage) = (dp, pp, tp, m, zero)
                            s.deterministic = r.deterministic
                            s.backend = r.backend
                            out.append(s)
                            if pp > 1 && topLevelLayers >= 2 * pp {
                                s.pipelineSchedule = .interleaved
                                s.virtualStages = 2
                                out.append(s)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Predicts `strategy` for `model` on this machine (or `request.machine`).
    public static func predict(
        model: Model, strategy: StrategyConfig, request: AdviceRequest, calibration: MachineCalibration
    ) throws -> LayoutPrediction {
        try request.validate()
        var profiles: [Int: ModelProfile] = [:]
        let cost = costModel(request, calibration)
        return try cost.predict(try candidate(model: model, strategy: strategy, request: request, profiles: &profiles))
    }

    static func costModel(_ r: AdviceRequest, _ c: MachineCalibration) -> CostModel {
        let cores = r.machine?.coresPerNode ?? (r.cores > 0 ? r.cores : Clock.allowedCores)
        return CostModel(
            calibration: c, coresPerNode: cores, machine: r.machine, smallKernels: BLAS.hasSmallMatrixKernels, processes: r.inJob)
    }

    /// The trainer's view of `strategy` for `model`, or the error the trainer would give.
    static func candidate(
        model: Model, strategy st: StrategyConfig, request r: AdviceRequest, profiles: inout [Int: ModelProfile]
    ) throws -> LayoutCandidate {
        try st.validate()
        guard model.isInitialized, model.parameters != nil else {
            throw ParmlError.state("the model is not initialised; initialise it before asking for advice")
        }
        let mesh = Mesh(dp: st.dp, pp: st.pp, tp: st.tp)
        let v = st.pipelineSchedule == .interleaved ? st.virtualStages : 1
        let batchStatistics = try Trainer.checkBatchStatistics(model, pp: mesh.pp, virtualStages: v)
        guard r.batch >= mesh.dp * st.microBatches else {
            throw ParmlError.invalidArgument(
                "a batch of \(r.batch) gives dp × micro_batches = \(mesh.dp) × \(st.microBatches) pieces fewer than one row each")
        }
        if st.deterministic {
            let chunks = (r.batch + st.gradientChunk - 1) / st.gradientChunk
            guard chunks >= mesh.dp * st.microBatches else {
                throw ParmlError.invalidArgument(
                    "deterministic mode: \(chunks) chunk(s) of \(st.gradientChunk) rows leave some of dp × micro_batches = "
                        + "\(mesh.dp) × \(st.microBatches) pieces without work")
            }
        }
        let partition = mesh.pp > 1 && !model.stageStarts.isEmpty
            ? try StagePartition.marked(starts: model.stageStarts, layerCount: model.root.layers.count, stages: mesh.pp, virtualStages: v)
            : try StagePartition.balanced(costs: LayerCost.stageCosts(model).costs, stages: mesh.pp, virtualStages: v)
        let profile: ModelProfile
        if let p = profiles[mesh.tp] {
            profile = p
        } else {
            // Probed on one thread, as most layouts' ranks run here: a rank of
            // more threads holds one more per-thread scratch slice (the GPT's
            // attention: 7 KB of its 3 MB).
            profile = try ModelProfile(serial: model, tp: mesh.tp, sampleShape: r.sampleShape, threads: 1)
            profiles[mesh.tp] = profile
        }
        let out = try model.outputShape(for: r.sampleShape.withLeadingOne)
        _ = out
        let layout = RankLayout(
            mesh: mesh, partition: partition,
            stageRanges: partition.layers.map { profile.model.parameterRange(ofTopLevelLayers: $0) }, virtualStages: v,
            schedule: st.pipelineSchedule, microBatches: st.microBatches, zeroStage: st.zeroStage, hasBatchStatistics: batchStatistics,
            gradientBucketFloats: st.bucketsGradients(dp: mesh.dp) ? max(1, st.bucketBytes / MemoryLayout<Float>.stride) : nil)
        let o = r.optimizer
        let folds = mesh.worldSize == 1 && st.backend == .threads && !st.deterministic && Optimizer.canFoldMomentum(o)
            && o.clipGradNorm == 0 && model.tiedParameters.isEmpty && !batchStatistics
        let copies = o.kind == .sgd ? (o.momentum > 0 ? 1 : 0) : 2
        return LayoutCandidate(
            strategy: st, profile: profile, layout: layout, batch: r.batch, hasBatchStatistics: batchStatistics, folds: folds,
            optimizerStateCopies: copies, readsGradientsFirst: o.skipNonFinite || o.clipGradNorm > 0)
    }

    /// Whether tp rank 0's rewrite of `model` keeps every parameter whole
    /// (no column/row pair, head or channel split); false where the rewrite
    /// fails, whose error the candidate then reports.
    static func splitsNothing(_ model: Model, tp: Int) -> Bool {
        guard let rewrite = try? TensorParallelRewrite(serial: model, rank: 0, ranks: tp) else { return false }
        return rewrite.sources.allSatisfy(\.replicated)
    }

    /// Every layout the constraints allow, predicted and ranked by step
    /// time (ties: fewer ranks, then lower ZeRO stage, then fewer
    /// micro-batches), and the others with the reason each was left out.
    public static func advise(model: Model, request r: AdviceRequest, calibration: MachineCalibration, origin: CalibrationCache.Origin) throws -> Advice {
        try r.validate()
        guard model.isInitialized, model.parameters != nil else {
            throw ParmlError.state("the model is not initialised; initialise it before asking for advice")
        }
        do {
            _ = try model.outputShape(for: r.sampleShape.withLeadingOne)
        } catch let e as ParmlError {
            throw ParmlError.shape("advise: the model does not take samples shaped \(r.sampleShape): \(e)")
        }
        let ranks = r.machine?.ranks ?? (r.inJob ? r.processes : r.maxRanks > 0 ? r.maxRanks : 4)
        if r.inJob && !calibration.hasProcessRates(job: r.processes) {
            throw ParmlError.state("advise: the calibration holds no collectives of a job of \(r.processes) MPI processes (CalibrationCache.loadShared measures them)")
        }
        let cost = costModel(r, calibration)
        var advice = Advice(calibration: calibration, calibrationOrigin: origin)
        var profiles: [Int: ModelProfile] = [:]
        var failedTP: [Int: String] = [:]
        for st in layouts(r, ranks: ranks, topLevelLayers: model.root.layers.count) {
            if st.tp > 1, profiles[st.tp] == nil, failedTP[st.tp] == nil, splitsNothing(model, tp: st.tp) {
                // Every tp rank would hold the whole model and repeat its work:
                // fewer ranks do the same. (Left in, each such degree cost a
                // probe of another whole copy of the model: a one-Linear
                // stand-in of 44.5 M parameters asked about 512 ranks took 10
                // minutes and 15 GB.) The trainer still builds such a layout.
                failedTP[st.tp] = "tensor parallelism: tp=\(st.tp) splits no layer of this model (every parameter would be whole on every tp rank)"
            }
            if let why = failedTP[st.tp] {
                advice.excluded.append(ExcludedLayout(strategy: st, why: why))
                continue
            }
            do {
                let c = try candidate(model: model, strategy: st, request: r, profiles: &profiles)
                let p = try cost.predict(c)
                if r.memoryBudget > 0 && p.peakBytes > r.memoryBudget {
                    advice.excluded.append(
                        ExcludedLayout(
                            strategy: st,
                            why: "needs \(Bytes.text(Double(p.peakBytes))) on its fullest rank (stage \(p.peakStage)); "
                                + "the budget is \(Bytes.text(Double(r.memoryBudget))) per rank"))
                    continue
                }
                advice.ranked.append(p)
            } catch let e as ParmlError {
                let why = e.message
                if st.tp > 1 && profiles[st.tp] == nil && why.contains("tensor") { failedTP[st.tp] = why }
                advice.excluded.append(ExcludedLayout(strategy: st, why: why))
            }
        }
        advice.ranked.sort { a, b in
            if a.stepSeconds != b.stepSeconds { return a.stepSeconds < b.stepSeconds }
            let (x, y) = (a.strategy, b.strategy)
            return (x.worldSize, x.zeroStage, x.microBatches, x.pp, x.tp, x.virtualStages)
                < (y.worldSize, y.zeroStage, y.microBatches, y.pp, y.tp, y.virtualStages)
        }
        return advice
    }
}
