import CParmlTypes
import ParmlData
import ParmlModel
import ParmlTensor
import ParmlTraining

// Parameter structs cross the ABI by pointer and carry their size, so a host
// compiled against an older (smaller) struct still works: the library reads
// only the bytes the host says it has, the rest keep their defaults.

/// Copies the caller's struct over `defaults`, reading at most `struct_size`
/// bytes: the whole struct, or an older one that ends at `minimum` or at
/// one of `older`.
func readSized<T>(_ p: UnsafePointer<T>, defaults: T, name: String, minimum: Int, older: [Int] = []) throws -> T {
    let size = UnsafeRawPointer(p).load(as: Int.self)  // struct_size is the first field of every params struct
    // An older struct ends exactly at one of its layouts' ends; a size
    // between them would cut a field in half.
    let layouts = [minimum] + older
    guard layouts.contains(size) || size >= MemoryLayout<T>.size else {
        let sizes = layouts.filter { $0 < MemoryLayout<T>.size }.map(String.init)
        let expected = sizes.isEmpty
            ? "at least \(MemoryLayout<T>.size)"
            : "\(sizes.joined(separator: ", ")) (an older layout) or at least \(MemoryLayout<T>.size)"
        throw ParmlError.invalidArgument(
            "\(name)->struct_size is \(size), \(expected) expected; fill the struct with its _params_init function")
    }
    var out = defaults
    withUnsafeMutableBytes(of: &out) { dst in
        dst.copyMemory(from: UnsafeRawBufferPointer(start: p, count: min(size, MemoryLayout<T>.size)))
    }
    return out
}

/// Writes `value` into a caller struct whose struct_size says how much room it has.
func writeSized<T>(_ value: T, to p: UnsafeMutablePointer<T>, name: String, minimum: Int) throws {
    let size = UnsafeRawPointer(p).load(as: Int.self)
    guard size >= minimum else {
        throw ParmlError.invalidArgument("\(name)->struct_size is \(size); set it to sizeof(*\(name)) first")
    }
    var v = value
    withUnsafeBytes(of: &v) { src in
        UnsafeMutableRawPointer(p).copyMemory(from: src.baseAddress!, byteCount: min(size, MemoryLayout<T>.size))
    }
    UnsafeMutableRawPointer(p).storeBytes(of: size, as: Int.self)
}

// The C defaults are the engine's: each struct is filled from a default
// engine configuration, so the two cannot drift apart.

func defaultOptimizerParams() -> parml_optimizer_params {
    let c = OptimizerConfig()
    var p = parml_optimizer_params()
    p.struct_size = MemoryLayout<parml_optimizer_params>.size
    p.kind = c.kind.rawValue
    p.learning_rate = c.learningRate
    p.momentum = c.momentum
    p.nesterov = c.nesterov ? 1 : 0
    p.weight_decay = c.weightDecay
    p.beta1 = c.beta1
    p.beta2 = c.beta2
    p.epsilon = c.epsilon
    p.schedule = c.schedule.kind.rawValue
    p.warmup_steps = Int64(c.schedule.warmupSteps)
    p.step_size = Int64(c.schedule.stepSize)
    p.gamma = c.schedule.gamma
    p.total_steps = Int64(c.schedule.totalSteps)
    p.min_lr = c.schedule.minLearningRate
    p.clip_grad_norm = c.clipGradNorm
    p.skip_nonfinite = c.skipNonFinite ? 1 : 0
    p.decay_by_kind = c.decayByKind ? 1 : 0
    return p
}

func defaultStrategyParams() -> parml_strategy_params { strategyParams(StrategyConfig()) }

/// PARML_LOSS_* as the engine's loss.
func lossKind(_ loss: Int32) throws -> LossKind {
    guard let kind = LossKind(rawValue: loss) else {
        throw ParmlError.invalidArgument("loss \(loss) is unknown (PARML_LOSS_CROSS_ENTROPY, _MSE or _BCE_WITH_LOGITS)")
    }
    return kind
}

/// A strategy as the C struct (the advisor's layouts, and the defaults).
func strategyParams(_ s: StrategyConfig) -> parml_strategy_params {
    var p = parml_strategy_params()
    p.struct_size = MemoryLayout<parml_strategy_params>.size
    p.dp = Int32(s.dp)
    p.tp = Int32(s.tp)
    p.pp = Int32(s.pp)
    p.micro_batches = Int32(s.microBatches)
    p.pipeline_schedule = s.pipelineSchedule.rawValue
    p.zero_stage = Int32(s.zeroStage)
    p.backend = s.backend.rawValue
    p.deterministic = s.deterministic ? 1 : 0
    p.blas_threads = Int32(s.blasThreads)
    p.seed = s.seed
    p.bucket_bytes = Int64(s.bucketBytes)
    p.watchdog_seconds = s.watchdogSeconds
    p.grad_chunk = Int32(s.gradientChunk)
    p.split_classifier = s.splitClassifier ? 1 : 0
    p.virtual_stages = Int64(s.virtualStages)
    p.gradient_compression = s.gradientCompression.rawValue
    p.local_steps = Int32(s.localSteps)
    p.compression_rank = Int32(s.compressionRank)
    p.outer_learning_rate = s.outerLearningRate
    p.outer_momentum = s.outerMomentum
    p.precision = s.precision.rawValue
    p.overlap = s.overlap.rawValue
    return p
}

func defaultFitParams() -> parml_fit_params {
    let f = FitOptions()
    var p = parml_fit_params()
    p.struct_size = MemoryLayout<parml_fit_params>.size
    p.epochs = Int64(f.epochs)
    p.batch_size = Int64(f.batchSize)
    p.shuffle = f.shuffle ? 1 : 0
    p.drop_last = f.dropLast ? 1 : 0
    p.validation = nil
    p.progress = nil
    p.user_data = nil
    p.class_sampling_weights = nil
    p.num_class_sampling_weights = 0
    p.callback_every_steps = 0
    p.callbacks = nil
    return p
}

func defaultTokenParams() -> parml_token_params {
    var p = parml_token_params()
    p.struct_size = MemoryLayout<parml_token_params>.size
    p.mode = TokenDataset.Mode.random.rawValue
    p.seed = 0
    p.windows_per_epoch = 0  // (N-1)/T
    return p
}

/// Fills *params with the defaults (SGD, lr 0.01, constant schedule, no
/// momentum, decay or clipping) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.1.
@c(parml_optimizer_params_init)
public func parmlOptimizerParamsInit(_ params: UnsafeMutablePointer<parml_optimizer_params>?) -> parml_status {
    guarded("parml_optimizer_params_init") { try nonNull(params, "params").pointee = defaultOptimizerParams() }
}

/// Fills *params with the serial layout (dp = tp = pp = 1, threads backend,
/// default (fast) mode, BLAS threads chosen from the cores, 4 MiB buckets,
/// 60 s watchdog, 32-sample chunks, seed 0) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.1.
@c(parml_strategy_params_init)
public func parmlStrategyParamsInit(_ params: UnsafeMutablePointer<parml_strategy_params>?) -> parml_status {
    guarded("parml_strategy_params_init") { try nonNull(params, "params").pointee = defaultStrategyParams() }
}

/// Fills *params with fit defaults (1 epoch, batch 64, shuffled, no
/// validation, no callback) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.1.
@c(parml_fit_params_init)
public func parmlFitParamsInit(_ params: UnsafeMutablePointer<parml_fit_params>?) -> parml_status {
    guarded("parml_fit_params_init") { try nonNull(params, "params").pointee = defaultFitParams() }
}

/// Fills *params with token dataset defaults (random windows, seed 0,
/// (N-1)/T windows per epoch) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_token_params_init)
public func parmlTokenParamsInit(_ params: UnsafeMutablePointer<parml_token_params>?) -> parml_status {
    guarded("parml_token_params_init") { try nonNull(params, "params").pointee = defaultTokenParams() }
}

// MARK: - C structs → engine configs

func optimizerConfig(from p: parml_optimizer_params) throws -> OptimizerConfig {
    var c = OptimizerConfig()
    guard let kind = OptimizerKind(rawValue: p.kind) else {
        throw ParmlError.invalidArgument("optimizer kind \(p.kind) is unknown (PARML_OPTIMIZER_SGD, _ADAM or _ADAMW)")
    }
    guard let schedule = ScheduleKind(rawValue: p.schedule) else {
        throw ParmlError.invalidArgument("schedule \(p.schedule) is unknown (PARML_SCHEDULE_CONSTANT, _STEP or _COSINE)")
    }
    c.kind = kind
    c.learningRate = p.learning_rate
    c.momentum = p.momentum
    c.nesterov = p.nesterov != 0
    c.weightDecay = p.weight_decay
    c.beta1 = p.beta1
    c.beta2 = p.beta2
    c.epsilon = p.epsilon
    c.clipGradNorm = p.clip_grad_norm
    guard p.skip_nonfinite == 0 || p.skip_nonfinite == 1 else {
        throw ParmlError.invalidArgument("skip_nonfinite must be 0 or 1, got \(p.skip_nonfinite)")
    }
    c.skipNonFinite = p.skip_nonfinite != 0
    guard p.decay_by_kind == 0 || p.decay_by_kind == 1 else {
        throw ParmlError.invalidArgument("decay_by_kind must be 0 or 1, got \(p.decay_by_kind)")
    }
    c.decayByKind = p.decay_by_kind != 0
    c.schedule.kind = schedule
    guard p.warmup_steps >= 0, p.step_size >= 0, p.total_steps >= 0,
        p.warmup_steps <= Int64(Int32.max), p.step_size <= Int64(Int32.max), p.total_steps <= Int64(Int32.max)
    else {
        throw ParmlError.invalidArgument(
            "warmup_steps (\(p.warmup_steps)), step_size (\(p.step_size)) and total_steps (\(p.total_steps)) must be in 0...2^31-1")
    }
    c.schedule.warmupSteps = Int(p.warmup_steps)
    c.schedule.stepSize = Int(p.step_size)
    c.schedule.gamma = p.gamma
    c.schedule.totalSteps = Int(p.total_steps)
    c.schedule.minLearningRate = p.min_lr
    try c.validate()
    return c
}

func strategyConfig(from p: parml_strategy_params) throws -> StrategyConfig {
    var s = StrategyConfig()
    guard let schedule = PipelineSchedule(rawValue: p.pipeline_schedule) else {
        throw ParmlError.invalidArgument(
            "pipeline_schedule \(p.pipeline_schedule) is unknown (PARML_PIPELINE_GPIPE, _1F1B or _INTERLEAVED_1F1B)")
    }
    guard let backend = Backend(rawValue: p.backend) else {
        throw ParmlError.invalidArgument("backend \(p.backend) is unknown (PARML_BACKEND_THREADS or _MPI)")
    }
    s.dp = Int(p.dp)
    s.tp = Int(p.tp)
    s.pp = Int(p.pp)
    s.microBatches = Int(p.micro_batches)
    s.pipelineSchedule = schedule
    s.zeroStage = Int(p.zero_stage)
    s.backend = backend
    s.deterministic = p.deterministic != 0
    s.blasThreads = Int(p.blas_threads)
    s.seed = p.seed
    guard p.bucket_bytes >= 4, p.bucket_bytes <= 1 << 40 else {
        throw ParmlError.invalidArgument("bucket_bytes must be in 4...2^40, got \(p.bucket_bytes)")
    }
    s.bucketBytes = Int(p.bucket_bytes)
    s.watchdogSeconds = p.watchdog_seconds
    s.gradientChunk = Int(p.grad_chunk)
    guard p.split_classifier == 0 || p.split_classifier == 1 else {
        throw ParmlError.invalidArgument("split_classifier must be 0 or 1, got \(p.split_classifier)")
    }
    s.splitClassifier = p.split_classifier != 0
    guard (1...1024).contains(p.virtual_stages) else {
        throw ParmlError.invalidArgument("virtual_stages must be in 1...1024, got \(p.virtual_stages)")
    }
    s.virtualStages = Int(p.virtual_stages)
    guard let compression = GradientCompression(rawValue: p.gradient_compression) else {
        throw ParmlError.invalidArgument(
            "gradient_compression \(p.gradient_compression) is unknown (PARML_COMPRESSION_NONE, _BF16, _FP16 or _POWERSGD)")
    }
    s.gradientCompression = compression
    s.localSteps = Int(p.local_steps)
    s.compressionRank = Int(p.compression_rank)
    s.outerLearningRate = p.outer_learning_rate
    s.outerMomentum = p.outer_momentum
    guard let precision = Precision(rawValue: p.precision) else {
        throw ParmlError.invalidArgument("precision \(p.precision) is unknown (PARML_PRECISION_FP32 or _BF16)")
    }
    s.precision = precision
    guard let overlap = OverlapSetting(rawValue: p.overlap) else {
        throw ParmlError.invalidArgument("overlap \(p.overlap) is unknown (PARML_OVERLAP_AUTO, _ON or _OFF)")
    }
    s.overlap = overlap
    try s.validate()
    return s
}
