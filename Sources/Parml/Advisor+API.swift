#if canImport(Glibc)
import Glibc
#endif
import CParmlTypes
import ParmlMPI
import ParmlModel
import ParmlTensor
import ParmlTraining

/// What a parml_advice handle holds: the advice, and its texts as C strings
/// that live as long as the handle (the borrowed pointers the accessors give).
final class AdviceObject {
    let advice: Advice
    let reasons: [UnsafeMutablePointer<CChar>]
    let whys: [UnsafeMutablePointer<CChar>]

    init(_ advice: Advice) {
        self.advice = advice
        reasons = advice.ranked.map { strdup($0.reason)! }
        whys = advice.excluded.map { strdup($0.why)! }
    }

    deinit {
        for p in reasons + whys { free(p) }
    }

    func ranked(_ index: Int) throws -> LayoutPrediction {
        guard index >= 0, index < advice.ranked.count else {
            throw ParmlError.invalidArgument("index \(index) is outside the \(advice.ranked.count) ranked layouts")
        }
        return advice.ranked[index]
    }
}

func adviceObject(_ a: parml_advice?) throws -> AdviceObject {
    try HandleRegistry.shared.object(a, .advice, as: AdviceObject.self, name: "advice")
}

func defaultAdviceParams() -> parml_advice_params {
    let r = AdviceRequest(sampleShape: Shape(1), batch: 1)
    var p = parml_advice_params()
    p.struct_size = MemoryLayout<parml_advice_params>.size
    p.sample_dims = nil
    p.sample_rank = 0
    p.batch = 0
    p.cores = Int32(r.cores)
    p.max_ranks = Int32(r.maxRanks)
    p.memory_budget = Int64(r.memoryBudget)
    p.deterministic = r.deterministic ? 1 : 0
    p.backend = r.backend.rawValue
    p.cache_dir = nil
    let m = MachineDescription(nodes: 1, ranksPerNode: 1, coresPerNode: 1, interNodeBandwidth: 12.5e9, interNodeLatency: 5e-6)
    p.nodes = 0
    p.ranks_per_node = 0
    p.cores_per_node = 0
    p.inter_node_bandwidth = m.interNodeBandwidth
    p.inter_node_latency = m.interNodeLatency
    return p
}

/// The engine's request from the C struct (and the loss and optimizer the trainer would get).
func adviceRequest(
    _ params: UnsafePointer<parml_advice_params>?, loss: Int32, optimizer: UnsafePointer<parml_optimizer_params>?
) throws -> (AdviceRequest, cacheDirectory: String?) {
    let p = try readSized(
        try nonNull(params, "params"), defaults: defaultAdviceParams(), name: "params", minimum: MemoryLayout<parml_advice_params>.size)
    guard p.sample_dims != nil else { throw ParmlError.invalidArgument("params->sample_dims is NULL: give one sample's input shape") }
    let sample = try shape(p.sample_dims, Int(clamping: p.sample_rank), name: "params->sample_dims")
    guard p.batch >= 1, p.batch <= 1 << 24 else { throw ParmlError.invalidArgument("advise: batch must be in 1...2^24, got \(p.batch)") }
    var r = AdviceRequest(sampleShape: sample, batch: Int(p.batch))
    r.loss = try lossKind(loss)
    let o = try optimizer.map {
        try readSized(
            $0, defaults: defaultOptimizerParams(), name: "optimizer", minimum: MemoryLayout<parml_optimizer_params>.offset(of: \.skip_nonfinite)!)
    } ?? defaultOptimizerParams()
    r.optimizer = try optimizerConfig(from: o)
    r.cores = Int(p.cores)
    r.maxRanks = Int(p.max_ranks)
    r.memoryBudget = Int(p.memory_budget)
    guard p.deterministic == 0 || p.deterministic == 1 else {
        throw ParmlError.invalidArgument("params->deterministic must be 0 or 1, got \(p.deterministic)")
    }
    r.deterministic = p.deterministic != 0
    guard let backend = Backend(rawValue: p.backend) else {
        throw ParmlError.invalidArgument("params->backend \(p.backend) is unknown (PARML_BACKEND_THREADS or _MPI)")
    }
    r.backend = backend
    guard p.nodes >= 0 else { throw ParmlError.invalidArgument("params->nodes must be >= 0 (0: this machine), got \(p.nodes)") }
    if p.nodes > 0 {
        r.machine = MachineDescription(
            nodes: Int(p.nodes), ranksPerNode: Int(p.ranks_per_node), coresPerNode: Int(p.cores_per_node),
            interNodeBandwidth: p.inter_node_bandwidth, interNodeLatency: p.inter_node_latency)
    }
    return (r, p.cache_dir.map { String(cString: $0) })
}

/// Runs the advisor for a C call: the model, the request, then the
/// calibration from the cache (measured, a few seconds, when missing or
/// stale) and every layout.
func runAdvisor(
    _ model: parml_model?, _ loss: Int32, _ optimizer: UnsafePointer<parml_optimizer_params>?,
    _ params: UnsafePointer<parml_advice_params>?
) throws -> (Model, AdviceRequest, Advice) {
    let m = try modelObject(model)
    var (r, dir) = try adviceRequest(params, loss: loss, optimizer: optimizer)
    if r.backend == .mpi && r.machine == nil {
        // Inside the job: every process calibrates and advises together.
        // A host mpirun did not start has no job (MPI would make it a
        // singleton world of 1, a job no one asked about).
        guard MPIRuntime.isActive || getenv("OMPI_COMM_WORLD_SIZE") != nil else {
            throw ParmlError.unsupported(
                "advise: backend mpi on this machine is measured inside the MPI job, and this process was not started by mpirun: "
                    + "start every process of the job with mpirun, ask for threads, or describe the machines")
        }
        let world = try MPIWorld(timeout: adviceWatchdogSeconds, name: "advice")
        guard !world.spansMachines else {
            throw ParmlError.unsupported(
                "advise: the MPI job spans several machines, whose links this machine cannot measure; describe them (params->nodes and the rest)")
        }
        r.processes = world.size
        if r.cores == 0 { r.cores = try MachineCalibration.jobCores(world: world.communicator) }
        let (calibration, origin) = try CalibrationCache.loadShared(
            directory: dir, libraryVersion: PARML_VERSION_STRING, world: world.communicator)
        return (m, r, try StrategyAdvisor.advise(model: m, request: r, calibration: calibration, origin: origin))
    }
    let (calibration, origin) = try CalibrationCache.load(directory: dir, libraryVersion: PARML_VERSION_STRING)
    return (m, r, try StrategyAdvisor.advise(model: m, request: r, calibration: calibration, origin: origin))
}

/// How long a process of an MPI job waits for the others during advice:
/// rank 0 may measure the machine meanwhile (under 10 s).
let adviceWatchdogSeconds = 120.0

/// Fills *params with the advisor's defaults (no shape, batch 0: both must
/// be set; this machine's cores, 4 ranks at most, no memory budget, threads
/// backend, default mode, the default cache directory) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_advice_params_init)
public func parmlAdviceParamsInit(_ params: UnsafeMutablePointer<parml_advice_params>?) -> parml_status {
    guarded("parml_advice_params_init") { try nonNull(params, "params").pointee = defaultAdviceParams() }
}

/// Predicts step time and peak memory per rank of every dp x pp x tp layout
/// (micro-batches, ZeRO stage) of an initialised model for params->batch
/// samples shaped params->sample_dims, with `loss` (PARML_LOSS_*) and
/// `optimizer` (NULL = defaults), and ranks those that fit the constraints
/// fastest first (docs/advisor.md). The first call on a machine measures it
/// (a few seconds) and caches the figures in params->cache_dir; later calls
/// reuse them until the CPU, core count or library version changes (a
/// corrupt or foreign file is measured again). The model is read, not
/// changed (a copy runs a probe of 2 and 4 rows). The caller owns *out
/// (parml_advice_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL, small struct_size, no
/// sample shape, batch < 1, negative budget, cores or ranks, a bad machine
/// description), PARML_ERR_SHAPE (the model does not take such samples),
/// PARML_ERR_STATE (model not initialised), PARML_ERR_UNSUPPORTED (backend
/// MPI on this machine outside an MPI job, or in a job spanning machines:
/// describe them), PARML_ERR_COMMUNICATION (another process of the job
/// failed or did not call), PARML_ERR_BLAS, PARML_ERR_OUT_OF_MEMORY.
/// Backend MPI on this machine (params->nodes 0) is collective: every
/// process of the job calls it; the processes measure their collectives
/// together the first time (a second; rank 0 caches them), get rank 0's
/// calibration, and rank the same layouts: those of exactly the job's
/// processes (params->max_ranks 0 or that count). Since: 0.3.
@c(parml_strategy_advise)
public func parmlStrategyAdvise(
    _ model: parml_model?, _ loss: Int32, _ optimizer: UnsafePointer<parml_optimizer_params>?,
    _ params: UnsafePointer<parml_advice_params>?, _ out: UnsafeMutablePointer<parml_advice?>?
) -> parml_status {
    guarded("parml_strategy_advise") {
        let out = try nonNull(out, "out")
        let (_, _, advice) = try runAdvisor(model, loss, optimizer, params)
        out.pointee = HandleRegistry.shared.register(AdviceObject(advice), as: .advice)
    }
}

/// Releases an advice and the texts it lent. NULL is a no-op. Since: 0.3.
@c(parml_advice_free)
public func parmlAdviceFree(_ advice: parml_advice?) {
    HandleRegistry.shared.release(advice, .advice)
}

/// The number of ranked (feasible) layouts in *ranked_out and of excluded
/// ones in *excluded_out (either may be NULL).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle). Since: 0.3.
@c(parml_advice_count)
public func parmlAdviceCount(
    _ advice: parml_advice?, _ ranked_out: UnsafeMutablePointer<Int>?, _ excluded_out: UnsafeMutablePointer<Int>?
) -> parml_status {
    guarded("parml_advice_count") {
        let a = try adviceObject(advice).advice
        ranked_out?.pointee = a.ranked.count
        excluded_out?.pointee = a.excluded.count
    }
}

/// Ranked layout `index` (0 = the advisor's choice): its prediction in *out
/// (set out->struct_size first) and, when reason_out is not NULL, a
/// one-line reason in *reason_out, borrowed: valid until the advice is freed.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, small struct_size,
/// index out of range). Since: 0.3.
@c(parml_advice_layout)
public func parmlAdviceLayout(
    _ advice: parml_advice?, _ index: Int, _ out: UnsafeMutablePointer<parml_layout_prediction>?,
    _ reason_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> parml_status {
    guarded("parml_advice_layout") {
        let o = try adviceObject(advice)
        let out = try nonNull(out, "out")
        let p = try o.ranked(index), s = p.strategy
        var r = parml_layout_prediction()
        r.struct_size = MemoryLayout<parml_layout_prediction>.size
        (r.dp, r.pp, r.tp) = (Int32(s.dp), Int32(s.pp), Int32(s.tp))
        (r.micro_batches, r.zero_stage, r.blas_threads) = (Int32(s.microBatches), Int32(s.zeroStage), Int32(p.blasThreads))
        r.step_seconds = p.stepSeconds
        (r.compute_seconds, r.communication_seconds, r.bubble_seconds) = (p.compute, p.communication, p.bubble)
        (r.optimizer_seconds, r.overhead_seconds) = (p.optimizer, p.overhead)
        let m = p.memory
        (r.parameter_bytes, r.gradient_bytes, r.optimizer_bytes) = (Int64(m.parameters), Int64(m.gradients), Int64(m.optimizer))
        (r.scratch_bytes, r.activation_bytes, r.peak_bytes) = (Int64(m.scratch), Int64(m.activations), Int64(p.peakBytes))
        r.peak_stage = Int32(p.peakStage)
        try writeSized(r, to: out, name: "out", minimum: MemoryLayout<parml_layout_prediction>.size)
        reason_out?.pointee = UnsafePointer(o.reasons[index])
    }
}

/// Ranked layout `index` as strategy params for parml_trainer_create (set
/// out->struct_size first, e.g. with parml_strategy_params_init).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL, small struct_size,
/// index out of range). Since: 0.3.
@c(parml_advice_strategy)
public func parmlAdviceStrategy(_ advice: parml_advice?, _ index: Int, _ out: UnsafeMutablePointer<parml_strategy_params>?) -> parml_status {
    guarded("parml_advice_strategy") {
        let out = try nonNull(out, "out")
        try writeSized(
            strategyParams(try adviceObject(advice).ranked(index).strategy), to: out, name: "out",
            minimum: MemoryLayout<parml_strategy_params>.offset(of: \.split_classifier)!)
    }
}

/// Excluded layout `index`: its dp, pp, tp, micro-batches and ZeRO stage in
/// *strategy_out (may be NULL; set struct_size first) and why it was left
/// out in *why_out, borrowed: valid until the advice is freed.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL why_out, index out of
/// range, small struct_size). Since: 0.3.
@c(parml_advice_excluded)
public func parmlAdviceExcluded(
    _ advice: parml_advice?, _ index: Int, _ strategy_out: UnsafeMutablePointer<parml_strategy_params>?,
    _ why_out: UnsafeMutablePointer<UnsafePointer<CChar>?>?
) -> parml_status {
    guarded("parml_advice_excluded") {
        let o = try adviceObject(advice)
        let why = try nonNull(why_out, "why_out")
        guard index >= 0, index < o.advice.excluded.count else {
            throw ParmlError.invalidArgument("index \(index) is outside the \(o.advice.excluded.count) excluded layouts")
        }
        if let strategy_out {
            try writeSized(
                strategyParams(o.advice.excluded[index].strategy), to: strategy_out, name: "strategy_out",
                minimum: MemoryLayout<parml_strategy_params>.offset(of: \.split_classifier)!)
        }
        why.pointee = UnsafePointer(o.whys[index])
    }
}

/// The advice as a table for people in *text_out (NUL-terminated): the
/// calibration used, every ranked layout with its predicted terms, peak
/// memory and reason, then the excluded ones and why. The caller frees it
/// with parml_buffer_free. The wording may change; do not parse it.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_advice_text)
public func parmlAdviceText(_ advice: parml_advice?, _ text_out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> parml_status {
    guarded("parml_advice_text") {
        let o = try adviceObject(advice)
        let out = try nonNull(text_out, "text_out")
        out.pointee = try cString(o.advice.table)
    }
}

/// Strategy "auto": runs parml_strategy_advise with `params` and creates a
/// trainer (as parml_trainer_create) with the first ranked layout;
/// parml_trainer_plan then says the advisor chose it and why. The caller
/// owns *out (parml_trainer_free). On this machine only (params->nodes 0);
/// with backend MPI every process of the job calls it, and the layout
/// takes all of the job's processes.
/// Errors: those of parml_strategy_advise and parml_trainer_create, and
/// PARML_ERR_INVALID_ARGUMENT when no layout fits the constraints (the
/// message gives the first reasons). Since: 0.3.
@c(parml_trainer_create_auto)
public func parmlTrainerCreateAuto(
    _ model: parml_model?, _ loss: Int32, _ optimizer: UnsafePointer<parml_optimizer_params>?,
    _ params: UnsafePointer<parml_advice_params>?, _ out: UnsafeMutablePointer<parml_trainer?>?
) -> parml_status {
    guarded("parml_trainer_create_auto") {
        let out = try nonNull(out, "out")
        let (m, r, advice) = try runAdvisor(model, loss, optimizer, params)
        guard r.machine == nil else {
            throw ParmlError.invalidArgument("strategy auto builds a trainer on this machine: leave params->nodes at 0")
        }
        let strategy = try StrategyAdvisor.choose(advice)
        _ = mpiBackendRegistered
        let t = try Trainer(model: m, loss: r.loss, optimizer: r.optimizer, strategy: strategy)
        out.pointee = HandleRegistry.shared.register(t, as: .trainer)
    }
}
