import ParmlParallel
import ParmlTensor
import _CParmlMPI

#if canImport(Glibc)
import Glibc
#endif

/// One rank per process under Open MPI's mpirun, as a `WorldBackend`.
/// The training engine reaches MPI only through this; a program that
/// trains with `backend = .mpi` calls `MPIBackend.register()` once (the C
/// ABI does it before building a trainer).
public struct MPIBackend: WorldBackend {
    public init() {}

    /// Makes the MPI backend available to trainers (idempotent).
    public static func register() { WorldBackends.register(MPIBackend()) }

    public var name: String { "mpi" }
    public var ranksAreProcesses: Bool { true }

    /// Open MPI's count of the processes on this machine
    /// (OMPI_COMM_WORLD_LOCAL_SIZE), so that several machines each use all
    /// their cores; the whole world when mpirun did not say.
    public func localRanks(worldSize: Int) -> Int {
        guard let v = getenv("OMPI_COMM_WORLD_LOCAL_SIZE"), let n = Int(String(cString: v)), n > 0 else { return worldSize }
        return min(n, worldSize)
    }

    /// Checked before MPI starts, so that a host not launched by mpirun
    /// gets a message instead of a singleton world of 1.
    public func makeWorld(size: Int, layout: String, timeout: Double, name: String) throws -> any RankWorld {
        if !MPIRuntime.isActive {
            let launched = getenv("OMPI_COMM_WORLD_SIZE").flatMap { Int(String(cString: $0)) }
            if launched ?? 1 != size {
                throw ParmlError.invalidArgument(
                    "MPI: \(layout) ranks need \(size) processes; "
                        + (launched.map { "mpirun started \($0)" } ?? "this process was not started by mpirun"))
            }
        }
        let mpi = try MPIWorld(timeout: timeout, name: name)
        guard mpi.size == size else {
            throw ParmlError.invalidArgument("MPI: the job has \(mpi.size) process(es) but \(layout) ranks")
        }
        return mpi
    }
}

extension MPIWorld: RankWorld {
    public var localRanks: Range<Int> { rank..<(rank + 1) }

    public func communicator(rank: Int) -> Communicator {
        precondition(rank == self.rank, "MPIWorld.communicator: rank \(rank) runs in another process")
        return communicator
    }

    /// MPI_Abort (abortJob): a failed step may leave messages in flight and peers waiting.
    public func endJob(reason: String) { abortJob(reason: reason) }

    /// MPI_THREAD_SERIALIZED or above (parml asks for it; a host that
    /// initialised MPI at SINGLE or FUNNELED promised one thread only).
    public var allowsCommunicationThreads: Bool { (MPIRuntime.threadLevel ?? 0) >= Int(PML_MPI_THREAD_SERIALIZED) }
}
