import ParmlTensor

public enum PipelineSchedule: Int32, Sendable { case gpipe = 1, oneForwardOneBackward = 2 }
public enum Backend: Int32, Sendable { case threads = 1, mpi = 2 }

/// How training is laid out on a dp × pp × tp mesh of ranks. This version
/// executes the serial layout; the fields are here so hosts can state a
/// layout now and the check below can say precisely what is not yet possible.
public struct StrategyConfig: Sendable, Equatable {
    public var dp = 1
    public var tp = 1
    public var pp = 1
    public var microBatches = 1
    public var pipelineSchedule: PipelineSchedule = .oneForwardOneBackward
    public var zeroStage = 0
    public var backend: Backend = .threads
    public var deterministic = true
    /// OpenBLAS threads per rank; 0 chooses cores / ranks.
    public var blasThreads = 0
    public var seed: UInt64 = 0

    public init() {}

    public var worldSize: Int { dp * tp * pp }

    /// Checks the values, then whether this build can run the layout.
    public func validate() throws {
        for (name, v) in [("dp", dp), ("tp", tp), ("pp", pp), ("micro_batches", microBatches)] where v < 1 {
            throw ParmlError.invalidArgument("strategy: \(name) must be >= 1, got \(v)")
        }
        guard (0...3).contains(zeroStage) else {
            throw ParmlError.invalidArgument("strategy: zero_stage must be 0, 1, 2 or 3, got \(zeroStage)")
        }
        guard blasThreads >= 0, blasThreads <= 1024 else {
            throw ParmlError.invalidArgument("strategy: blas_threads must be in 0...1024, got \(blasThreads)")
        }
        guard dp.multipliedReportingOverflow(by: tp).overflow == false,
            (dp * tp).multipliedReportingOverflow(by: pp).overflow == false, worldSize <= 65536
        else {
            throw ParmlError.invalidArgument("strategy: dp×tp×pp = \(dp)×\(tp)×\(pp) is too many ranks")
        }
        var missing: [String] = []
        if dp > 1 { missing.append("data parallelism (dp=\(dp))") }
        if tp > 1 { missing.append("tensor parallelism (tp=\(tp))") }
        if pp > 1 { missing.append("pipeline parallelism (pp=\(pp))") }
        if microBatches > 1 { missing.append("micro-batching (micro_batches=\(microBatches))") }
        if zeroStage > 0 { missing.append("ZeRO (zero_stage=\(zeroStage))") }
        if backend == .mpi { missing.append("the MPI backend") }
        if !missing.isEmpty {
            throw ParmlError.unsupported(
                "this build of parml trains the serial layout only (dp=tp=pp=1, micro_batches=1, zero_stage=0, threads backend); not yet available: "
                    + missing.joined(separator: ", "))
        }
    }

    /// The OpenBLAS thread count this layout uses on a machine with `cores`.
    public func resolvedBLASThreads(cores: Int) -> Int {
        blasThreads > 0 ? blasThreads : max(1, cores / max(worldSize, 1))
    }
}
