import CParmlTypes
import ParmlMPI
import ParmlTensor

// MPI: one rank per process under mpirun (docs/mpi.md). libparml.so does
// not link libmpi: Open MPI is loaded (dlopen) by the first call that needs
// it, so hosts that never use MPI load and initialise nothing of it.

/// The training engine reaches MPI only through the WorldBackend registry
/// (ParmlParallel): the C ABI registers the MPI backend once, before it
/// builds its first trainer. Registering loads nothing of Open MPI.
let mpiBackendRegistered: Void = MPIBackend.register()

/// This process's rank in parml's MPI world (the communicator given to
/// parml_mpi_use_comm, else MPI_COMM_WORLD) in *rank_out; 0 when MPI is not
/// initialised. Never initialises MPI nor loads Open MPI.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL), PARML_ERR_COMMUNICATION.
/// Thread-safe. Since: 0.2.
@c(parml_mpi_rank)
public func parmlMpiRank(_ rank_out: UnsafeMutablePointer<Int32>?) -> parml_status {
    guarded("parml_mpi_rank") {
        let out = try nonNull(rank_out, "rank_out")
        out.pointee = Int32(try MPIRuntime.processRankAndSize().rank)
    }
}

/// The number of processes in parml's MPI world in *size_out; 1 when MPI is
/// not initialised. Never initialises MPI nor loads Open MPI.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL), PARML_ERR_COMMUNICATION.
/// Thread-safe. Since: 0.2.
@c(parml_mpi_world_size)
public func parmlMpiWorldSize(_ size_out: UnsafeMutablePointer<Int32>?) -> parml_status {
    guarded("parml_mpi_world_size") {
        let out = try nonNull(size_out, "size_out")
        out.pointee = Int32(try MPIRuntime.processRankAndSize().size)
    }
}

/// Loads Open MPI (libmpi.so.40, or $PARML_MPI_LIBRARY) and initialises MPI
/// with MPI_Init_thread(MPI_THREAD_SERIALIZED) unless the host or an earlier
/// call already did; idempotent. Collective when it initialises: every
/// process of the job calls it. A host that initialised MPI itself need not
/// call it. Errors: PARML_ERR_UNSUPPORTED (Open MPI not installed),
/// PARML_ERR_STATE (MPI was finalized), PARML_ERR_COMMUNICATION.
/// Thread-safe. Since: 0.2.
@c(parml_mpi_init)
public func parmlMpiInit() -> parml_status {
    guarded("parml_mpi_init") { try MPIRuntime.initialize() }
}

/// Makes parml work inside the host's communicator instead of
/// MPI_COMM_WORLD. mpi_comm is an Open MPI MPI_Comm, which is a pointer
/// (struct ompi_communicator_t *): pass it cast to void *. MPI must be
/// initialised (by the host); the communicator must stay valid until
/// parml's MPI work ends (parml duplicates it when it builds a world, so
/// its messages never mix with the host's). Takes effect for worlds built
/// afterwards. Errors: PARML_ERR_INVALID_ARGUMENT (NULL, MPI_COMM_NULL or
/// an intercommunicator), PARML_ERR_STATE (MPI not initialised).
/// Thread-safe. Since: 0.2.
@c(parml_mpi_use_comm)
public func parmlMpiUseComm(_ mpi_comm: UnsafeMutableRawPointer?) -> parml_status {
    guarded("parml_mpi_use_comm") {
        let comm = try nonNull(mpi_comm, "mpi_comm")
        try MPIRuntime.useCommunicator(comm)
    }
}

/// Finalises MPI if parml_mpi_init (or the MPI backend) initialised it; does
/// nothing and returns PARML_OK when the host initialised MPI or nobody did.
/// This is the one point where parml finalises: call it on every process
/// after the last parml call that uses MPI (MPI_Finalize is collective);
/// MPI cannot be used, nor initialised again, afterwards.
/// Errors: PARML_ERR_COMMUNICATION. Thread-safe. Since: 0.2.
@c(parml_mpi_finalize)
public func parmlMpiFinalize() -> parml_status {
    guarded("parml_mpi_finalize") { try MPIRuntime.finalize() }
}
