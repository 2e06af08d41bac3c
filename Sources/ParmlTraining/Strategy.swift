import ParmlParallel
import ParmlTensor

public enum PipelineSchedule: Int32, Sendable {
    case gpipe = 1, oneForwardOneBackward = 2
    /// Megatron-LM's interleaved 1F1B: `StrategyConfig.virtualStages` runs of layers per stage.
    case interleaved = 3
}
public enum Backend: Int32, Sendable {
    case threads = 1, mpi = 2

    /// Its name in `WorldBackends` (ParmlParallel).
    public var name: String {
        switch self {
        case .threads: "threads"
        case .mpi: "mpi"
        }
    }
}

/// How training is laid out on a dp × pp × tp mesh of ranks: data, pipeline
/// and tensor parallelism and their products (any dp, pp, tp, micro-batch
/// count and ZeRO stage), with ranks as threads of this process or, with
/// `backend = .mpi`, one rank per process under mpirun.
public struct StrategyConfig: Sendable, Equatable {
    public var dp = 1
    public var tp = 1
    public var pp = 1
    public var microBatches = 1
    public var pipelineSchedule: PipelineSchedule = .oneForwardOneBackward
    /// Interleaved 1F1B: the runs of layers (virtual stages, Megatron-LM's
    /// model chunks) each stage holds; the model is cut into pp × this.
    /// 1 for the other schedules.
    public var virtualStages = 1
    public var zeroStage = 0
    public var backend: Backend = .threads
    /// Layout-invariant mode: gradients summed over fixed chunks of
    /// `gradientChunk` samples in a fixed tree order (ChunkTree), so every dp,
    /// pp, micro-batch count and ZeRO stage, on either backend, gives the bits
    /// serial training gives (tp > 1 splits inner sums: within rounding). Off:
    /// one GEMM per layer per rank; reproducible for a layout, within rounding
    /// of others.
    public var deterministic = false
    /// Samples per chunk in deterministic mode.
    public var gradientChunk = 32
    /// Threads per rank for its products and element-wise work (parml's own
    /// WorkerPool; OpenBLAS runs single-threaded inside each) and for oneDNN's
    /// convolutions; 0 chooses: 1 in deterministic mode, else cores / ranks.
    /// parml's own work gives the same bits on any count (each piece is cut
    /// by its shape, ProductThreads.swift); oneDNN's convolutions do not, so
    /// deterministic mode keeps every rank of every layout at one count.
    public var blasThreads = 0
    /// Gradient all-reduce bucket size in bytes (data parallelism).
    public var bucketBytes = 4 << 20
    /// How long a rank waits for the others in a collective before the step fails.
    public var watchdogSeconds = 60.0
    public var seed: UInt64 = 0
    /// tp > 1: split the classifier (the model's last Linear) by classes
    /// and compute the cross-entropy on the sharded logits, instead of
    /// running it whole on every tp rank. Pays for many classes (it adds an
    /// all-reduce of the classifier's input gradient); no effect at tp = 1.
    public var splitClassifier = false
    /// The data-parallel gradient sum in a 16-bit wire format with error
    /// feedback (CompressedReduction.swift); default mode, ZeRO 0 only.
    public var gradientCompression: GradientCompression = .none
    /// Local SGD: each data-parallel replica takes this many steps on its
    /// own rows, then the replicas' parameters are averaged. 1 (default) is
    /// ordinary data parallelism (gradients summed every step).
    public var localSteps = 1
    /// Local SGD's outer optimizer (DiLoCo, Douillard et al. 2023): at each
    /// average, the outer gradient Δ = θ_last − mean(θ) takes a Nesterov
    /// SGD step θ = θ_last − lr·(Δ + μ·v), v = μ·v + Δ. lr 1, μ 0 (the
    /// defaults) is plain averaging.
    public var outerLearningRate: Float = 1
    public var outerMomentum: Float = 0
    /// PowerSGD's rank r (matrices travel as rows·r + cols·r floats).
    public var compressionRank = 4
    /// Why the strategy advisor chose this layout (set by `StrategyAdvisor.choose`; nil: the host chose it).
    public var choice: String?
    /// Linear, attention-projection and oneDNN convolution products in bf16
    /// with float32 accumulation (docs/precision.md);
    /// where this host cannot, the trainer runs float32 and its plan says why.
    public var precision: Precision = .float32
    /// Data-parallel gradient buckets reduced on a communication thread
    /// while backward goes on (Overlap.swift); auto: on for MPI processes on more than one machine.
    public var overlap: OverlapSetting = .auto

    public init() {}

    public var worldSize: Int { dp * tp * pp }

    /// Checks that every value is in range. Whether the layout fits the model
    /// (pp, tp against its layers) and, under MPI, the job's process count is
    /// checked when the trainer is built.
    public func validate() throws {
        for (name, v) in [("dp", dp), ("tp", tp), ("pp", pp), ("micro_batches", microBatches)] where v < 1 {
            throw ParmlError.invalidArgument("strategy: \(name) must be >= 1, got \(v)")
        }
        // Each stage lists its schedule's 2·m operations up front.
        guard microBatches <= 1 << 16 else {
            throw ParmlError.invalidArgument("strategy: micro_batches must be at most 65536, got \(microBatches)")
        }
        try validatePipeline()
        guard (0...3).contains(zeroStage) else {
            throw ParmlError.invalidArgument("strategy: zero_stage must be 0, 1, 2 or 3, got \(zeroStage)")
        }
        guard blasThreads >= 0, blasThreads <= 1024 else {
            throw ParmlError.invalidArgument("strategy: blas_threads must be in 0...1024, got \(blasThreads)")
        }
        guard gradientChunk >= 1, gradientChunk <= 1 << 24 else {
            throw ParmlError.invalidArgument("strategy: grad_chunk must be in 1...2^24, got \(gradientChunk)")
        }
        guard bucketBytes >= 4, bucketBytes <= 1 << 40 else {
            throw ParmlError.invalidArgument("strategy: bucket_bytes must be in 4...2^40, got \(bucketBytes)")
        }
        guard watchdogSeconds.isFinite, watchdogSeconds > 0, watchdogSeconds <= 86_400 else {
            throw ParmlError.invalidArgument("strategy: watchdog_seconds must be in (0, 86400], got \(watchdogSeconds)")
        }
        try validateCommunication()
        try validateOverlap()
        guard dp.multipliedReportingOverflow(by: tp).overflow == false,
            (dp * tp).multipliedReportingOverflow(by: pp).overflow == false, worldSize <= 4096
        else {
            throw ParmlError.invalidArgument("strategy: dp×tp×pp = \(dp)×\(tp)×\(pp) is too many ranks (4096 at most)")
        }
    }

    /// Whether gradients are reduce-scattered in buckets during backward
    /// (GradientBuckets.swift): ZeRO ≥ 2 over dp > 1 replicas in the default
    /// mode. Deterministic mode sums chunk gradients along its tree instead,
    /// and compression and local SGD run with ZeRO 0 only.
    func bucketsGradients(dp: Int) -> Bool {
        zeroStage >= 2 && dp > 1 && !deterministic && gradientCompression == .none && localSteps == 1
    }

    /// Compression and local SGD change what is summed, so deterministic
    /// mode (serial training's bits) refuses them; both need every replica
    /// to hold whole gradients and optimizer state (ZeRO 0).
    private func validateCommunication() throws {
        guard compressionRank >= 1, compressionRank <= 1024 else {
            throw ParmlError.invalidArgument("strategy: compression_rank must be in 1...1024, got \(compressionRank)")
        }
        guard outerLearningRate.isFinite, outerLearningRate > 0, outerMomentum.isFinite, outerMomentum >= 0, outerMomentum < 1 else {
            throw ParmlError.invalidArgument(
                "strategy: outer_learning_rate must be positive and finite and outer_momentum in [0, 1), got \(outerLearningRate), \(outerMomentum)")
        }
        guard localSteps >= 1, localSteps <= 1 << 20 else {
            throw ParmlError.invalidArgument("strategy: local_steps must be in 1...2^20, got \(localSteps)")
        }
        let modes = [
            gradientCompression != .none ? "gradient_compression=\(gradientCompression.name)" : nil,
            localSteps > 1 ? "local_steps=\(localSteps)" : nil,
        ].compactMap { $0 }
        guard !modes.isEmpty else { return }
        let what = modes.joined(separator: " with ")
        if modes.count > 1 {
            throw ParmlError.invalidArgument("strategy: \(what): local SGD averages parameters, not gradients; choose one")
        }
        if deterministic {
            throw ParmlError.invalidArgument(
                "strategy: \(what) is not equivalent to serial training, and deterministic mode promises serial training's bits; "
                    + "use the default mode")
        }
        if zeroStage != 0 {
            throw ParmlError.invalidArgument(
                "strategy: \(what) needs zero_stage 0 (every replica keeps whole gradients and optimizer state), got \(zeroStage)")
        }
    }

    /// Interleaved 1F1B's numbers: v ≥ 2 virtual stages on pp ≥ 2 stages,
    /// and micro-batches going round the ring in groups of pp (Megatron-LM's
    /// rule), so m must be a multiple of pp.
    private func validatePipeline() throws {
        guard virtualStages >= 1, virtualStages <= 1024 else {
            throw ParmlError.invalidArgument("strategy: virtual_stages must be in 1...1024, got \(virtualStages)")
        }
        guard pipelineSchedule == .interleaved else {
            guard virtualStages == 1 else {
                throw ParmlError.invalidArgument(
                    "strategy: virtual_stages=\(virtualStages) needs the interleaved 1F1B schedule; "
                        + "the other schedules run one run of layers per stage")
            }
            return
        }
        guard pp >= 2 else {
            throw ParmlError.invalidArgument("strategy: interleaved 1F1B needs pp >= 2, got pp=\(pp)")
        }
        guard virtualStages >= 2 else {
            throw ParmlError.invalidArgument(
                "strategy: interleaved 1F1B needs virtual_stages >= 2, got \(virtualStages) (with one it is plain 1F1B)")
        }
        // Each stage lists its schedule's 2·m·v operations up front.
        guard microBatches * virtualStages <= 1 << 16 else {
            throw ParmlError.invalidArgument(
                "strategy: micro_batches × virtual_stages must be at most 65536, got \(microBatches) × \(virtualStages)")
        }
        guard microBatches % pp == 0 else {
            throw ParmlError.invalidArgument(
                "strategy: interleaved 1F1B needs micro_batches to be a multiple of pp (micro-batches go round the ring "
                    + "of stages in groups of pp); got micro_batches=\(microBatches), pp=\(pp)")
        }
    }

    /// The OpenBLAS thread count this layout uses on a machine with `cores`
    /// that runs `localRanks` of its ranks (all of them on the threads
    /// backend; under MPI, the processes mpirun put on this machine).
    /// Deterministic mode chooses 1 whatever the layout: oneDNN's
    /// convolutions add in an order that depends on their thread count.
    public func resolvedBLASThreads(cores: Int, localRanks: Int? = nil) -> Int {
        if blasThreads > 0 { return blasThreads }
        if deterministic { return 1 }
        return max(1, cores / max(localRanks ?? worldSize, 1))
    }

    /// Threads per rank for a trainer in this process: `resolvedBLASThreads`
    /// over the cores this process may run on. MPI processes that mpirun
    /// bound to fewer cores than the machine has (its default in jobs of 1
    /// or 2 processes: a core each) had the cores divided among them
    /// already, and each takes its own: a job of one process, bound to one
    /// core, had run 2 threads time-slicing it.
    public var threadsInThisProcess: Int {
        let allowed = Clock.allowedCores
        let processes = WorldBackends.named(backend.name)?.ranksAreProcesses ?? false
        if processes && allowed < Clock.onlineCores { return resolvedBLASThreads(cores: allowed, localRanks: 1) }
        return resolvedBLASThreads(cores: allowed, localRanks: localRanks)
    }

    /// The ranks this process's machine runs, as the backend counts them:
    /// under MPI, Open MPI's count of this machine's processes (so that
    /// several machines each use all their cores); otherwise every rank.
    public var localRanks: Int {
        WorldBackends.named(backend.name)?.localRanks(worldSize: worldSize) ?? worldSize
    }

    /// The backend that builds this layout's world.
    func worldBackend() throws -> any WorldBackend {
        guard let b = WorldBackends.named(backend.name) else {
            throw ParmlError.unsupported(
                "the \(backend.name) backend is not part of this program (a program that links ParmlMPI calls MPIBackend.register())")
        }
        return b
    }
}
