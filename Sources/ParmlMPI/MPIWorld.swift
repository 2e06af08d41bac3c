import ParmlParallel
import ParmlTensor
import _CParmlMPI

#if canImport(Glibc)
import Glibc
#endif

/// The MPI backend: one rank per process, every process of the job (the
/// host's communicator, else MPI_COMM_WORLD) in one world.
///
/// ```swift
/// // every process (mpirun -np 4 ./host):
/// let world = try MPIWorld(timeout: 60)        // initialises MPI if needed
/// let comm = world.communicator                // rank world.rank of world.size
/// do {
///     try comm.allReduce(grads, count: n, op: .mean)
/// } catch {
///     world.abortJob(reason: "\(error)")         // reports, then MPI_Abort
/// }
/// try MPIRuntime.finalize()                    // only if parml initialised MPI
/// ```
///
/// - Same semantics as the threads backend (`ThreadsWorld`): collectives
///   add in rank order (bitwise the threads result), send is buffered and
///   FIFO per pair, sub-groups come from `split`, and failures are shared:
///   an abort or a timeout on any communicator of the world makes every
///   rank's current and later calls throw `ParmlError.communication`.
/// - Watchdog: every wait polls its MPI requests; when none completes for
///   `timeout` seconds the rank aborts the world, naming the rank, the
///   peers it waited for and the call with its sequence number, and tells
///   the other processes. Open MPI itself never reports a dead or stuck
///   peer to the survivors, hence the polling.
/// - After an error, end the job with `abortJob` (MPI_Abort): a failed
///   collective may leave messages in flight, so the world stays aborted.
///
/// Creating a world is collective over the processes (MPI_Comm_dup).
/// Thread safety: `abort`, `isAborted`, `abortReason` and `abortJob` from
/// any thread; a communicator is used by one thread at a time.
public final class MPIWorld: @unchecked Sendable {
    // @unchecked Sendable: immutable after init; shared state is in WorldState.

    /// Bytes of a shard moved and added as one piece, and rounds of pieces
    /// in flight per collective: the best pair of `ParmlBenchMPI --sweep`
    /// on a quiet machine (bench/mpi/main.swift, docs/mpi.md).
    public static let defaultChunkBytes = 512 << 10
    public static let defaultWindow = 8

    /// This process's rank in the world, and the number of processes.
    public let rank: Int
    public let size: Int
    /// The watchdog deadline, in seconds without progress.
    public let timeout: Double
    public let name: String
    /// Whether the processes run on more than one machine (host names
    /// compared once, collectively, when the world is made, so every
    /// process holds the same answer): overlap's default follows it.
    public let spansMachines: Bool
    let state: WorldState
    private let world: MPICommunicator

    /// Initialises MPI if nobody did (MPIRuntime.initialize) and builds the
    /// world over the host's communicator (`MPIRuntime.useCommunicator`) or
    /// MPI_COMM_WORLD.
    /// - Parameters:
    ///   - timeout: seconds a wait may go without progress before the rank aborts the world (> 0).
    ///   - name: the label error messages use.
    ///   - chunkBytes: bytes of a shard moved as one message (>= 4096).
    ///   - window: rounds of pieces in flight (1...64; fewer in groups of more than 8 processes).
    public init(
        timeout: Double, name: String = "world", chunkBytes: Int = MPIWorld.defaultChunkBytes,
        window: Int = MPIWorld.defaultWindow
    ) throws {
        guard timeout > 0 && timeout.isFinite else {
            throw ParmlError.invalidArgument("MPIWorld: timeout must be a positive number of seconds, got \(timeout)")
        }
        guard chunkBytes >= 4096 && chunkBytes <= 1 << 30 else {
            throw ParmlError.invalidArgument("MPIWorld: chunkBytes must be in 4096...\(1 << 30), got \(chunkBytes)")
        }
        guard window >= 1 && window <= 64 else {
            throw ParmlError.invalidArgument("MPIWorld: window must be in 1...64, got \(window)")
        }
        try MPIRuntime.initialize()
        let state = try WorldState(name: name, timeout: timeout, chunkBytes: chunkBytes, window: window)
        self.state = state
        rank = state.rank
        size = state.size
        self.timeout = timeout
        self.name = name
        world = try MPICommunicator(
            world: state, comm: state.dataComm, ownsComm: false, name: name, worldRanks: Array(0..<state.size),
            isWorld: true)
        spansMachines = try MPIWorld.hostsDiffer(state: state)
    }

    /// Each process writes its host name's 32-bit FNV-1a hash, as two exact
    /// 16-bit halves, into its own slots; a sum over the world then hands
    /// every process the whole table. A plain MPI_Allreduce, part of making
    /// the world as MPI_Comm_dup is, so the host's collectives keep their
    /// numbers in the watchdog's messages.
    static func hostsDiffer(state: WorldState) throws -> Bool {
        var table = [Float](repeating: 0, count: 2 * state.size)
        let h = hostNameHash()
        table[2 * state.rank] = Float(h >> 16)
        table[2 * state.rank + 1] = Float(h & 0xffff)
        let n = Int32(table.count)
        try table.withUnsafeMutableBufferPointer {
            try MPIRuntime.check(pml_mpi_allreduce_sum($0.baseAddress!, n, state.dataComm), "MPI_Allreduce")
        }
        return differ(hostTable: table)
    }

    /// Whether the (high, low) pairs of a host table name more than one host.
    static func differ(hostTable table: [Float]) -> Bool {
        stride(from: 2, to: table.count, by: 2).contains { table[$0] != table[0] || table[$0 + 1] != table[1] }
    }

    static func hostNameHash() -> UInt32 {
        var name = [CChar](repeating: 0, count: 256)
        if gethostname(&name, name.count - 1) != 0 { return 0 }
        var h: UInt32 = 2_166_136_261
        for c in name.prefix(while: { $0 != 0 }) {
            h = (h ^ UInt32(UInt8(bitPattern: c))) &* 16_777_619
        }
        return h
    }

    /// This process's communicator over the whole world (the same object on every call).
    public var communicator: Communicator { world }

    /// Marks the world failed: this process's current and later calls throw
    /// with `reason`, and so do the other processes' once the notice
    /// reaches them (their next poll). The first reason is kept.
    public func abort(reason: String) {
        state.abort(reason: reason)
    }

    /// Whether this world was aborted, here or (as far as this process has
    /// heard) in another process.
    public var isAborted: Bool { state.pollNotices() }

    /// The reason of the first abort this process knows of.
    public var abortReason: String? {
        _ = state.pollNotices()
        return state.abortReason
    }

    /// Ends the whole job: tells the other processes `reason`, writes
    /// "parml: rank R of <name>: aborting the MPI job: <reason>" to stderr,
    /// and calls MPI_Abort on the world's base communicator (mpirun then
    /// stops every process). Call it once the error has reached the host.
    public func abortJob(reason: String, exitCode: Int32 = 1) -> Never {
        state.abort(reason: reason)
        let line = "parml: rank \(rank) of \(name): aborting the MPI job: \(reason)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        pml_mpi_abort(state.baseComm, exitCode)
        _exit(exitCode)  // MPI_Abort returned: MPI is not usable any more
    }

    /// Raw MPI_Allreduce (sum, in place) over the world: the benchmark's
    /// baseline. No watchdog, no fixed order: not for training.
    public func rawAllReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try MPIRuntime.check(pml_mpi_allreduce_sum(buffer, Int32(count), state.dataComm), "MPI_Allreduce")
    }

    /// A plain MPI_Barrier over the world (no watchdog): benchmarks and tests.
    public func rawBarrier() throws {
        try MPIRuntime.check(pml_mpi_barrier(state.dataComm), "MPI_Barrier")
    }
}
