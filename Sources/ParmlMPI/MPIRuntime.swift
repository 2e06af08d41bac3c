import ParmlTensor
import Synchronization
import _CParmlMPI

/// The process's MPI library: loading it, initialising and finalising MPI,
/// and the communicator parml works in.
///
/// Rules (docs/mpi.md):
/// - Nothing here loads libmpi or initialises MPI until the MPI backend is
///   asked for (`initialize`, `useCommunicator`, `MPIWorld.init`). Rank and
///   size queries answer 0 and 1 without MPI and never initialise it.
/// - If the host initialised MPI, parml uses it (with the host's
///   communicator when it gave one, else MPI_COMM_WORLD) and never
///   finalises it. Otherwise `initialize` calls
///   `MPI_Init_thread(MPI_THREAD_SERIALIZED)`, and `finalize` (the
///   documented point) calls `MPI_Finalize`.
/// - MPI cannot be initialised again after it was finalised (MPI standard),
///   so after `finalize` every MPI entry point fails with `.state`.
///
/// Thread safety: every member may be called from any thread.
public enum MPIRuntime {
    struct State {
        var initializedByParml = false
        var finalizedByParml = false
        /// The host's communicator (parml_mpi_use_comm) as an address, 0 for
        /// MPI_COMM_WORLD (an address, so that the state is Sendable).
        var hostCommunicator: UInt = 0
        var threadLevel: Int32 = -1
    }

    private static let state = Mutex(State())

    /// Loads libmpi (dlopen, once) or throws `.unsupported` saying how to install it.
    public static func load() throws {
        var buffer = [CChar](repeating: 0, count: 512)
        if pml_mpi_load(&buffer, buffer.count) != 0 {
            throw ParmlError.unsupported(text(of: buffer))
        }
    }

    /// Whether MPI is initialised and not finalised in this process (by
    /// anyone). Never maps libmpi: false when neither parml nor the host loaded it.
    public static var isActive: Bool {
        guard pml_mpi_present() != 0 else { return false }
        var initialized: Int32 = 0, finalized: Int32 = 0
        pml_mpi_initialized(&initialized)
        pml_mpi_finalized(&finalized)
        return initialized != 0 && finalized == 0
    }

    /// Whether parml called MPI_Init_thread in this process.
    public static var initializedByParml: Bool { state.withLock { $0.initializedByParml } }

    /// The thread level MPI runs at (MPI_THREAD_SINGLE = 0 ... MULTIPLE = 3),
    /// nil before initialisation.
    public static var threadLevel: Int? {
        let level = state.withLock { $0.threadLevel }
        return level >= 0 ? Int(level) : nil
    }

    /// Loads libmpi and initialises MPI unless it already is (by the host
    /// or an earlier call). Idempotent. Throws `.unsupported` without
    /// libmpi, `.state` after MPI was finalised, `.communication` when
    /// MPI_Init_thread fails.
    public static func initialize() throws {
        try load()
        try state.withLock { s in
            var initialized: Int32 = 0, finalized: Int32 = 0
            try check(pml_mpi_finalized(&finalized), "MPI_Finalized")
            if finalized != 0 { throw ParmlError.state("MPI was finalized in this process; it cannot be initialized again") }
            try check(pml_mpi_initialized(&initialized), "MPI_Initialized")
            if initialized == 0 {
                var provided: Int32 = 0
                try check(pml_mpi_init_serialized(&provided), "MPI_Init_thread")
                s.initializedByParml = true
            }
            var provided: Int32 = 0
            try check(pml_mpi_query_thread(&provided), "MPI_Query_thread")
            s.threadLevel = provided
        }
    }

    /// Makes parml's worlds created from now on work inside `communicator`
    /// (an Open MPI `MPI_Comm`, which is a pointer) instead of
    /// MPI_COMM_WORLD. MPI must already be initialised (by the host); the
    /// communicator must stay valid while parml's worlds exist. parml works
    /// on duplicates of it (MPI_Comm_dup), so its traffic never matches
    /// the host's messages. nil returns to MPI_COMM_WORLD.
    public static func useCommunicator(_ communicator: UnsafeMutableRawPointer?) throws {
        // isActive maps no library: a host without MPI gets `.state`, and
        // libmpi stays unloaded.
        guard isActive else {
            throw ParmlError.state("MPI is not initialized: initialize it (MPI_Init_thread) before handing parml a communicator")
        }
        if let communicator, pml_mpi_comm_check(communicator) == 0 {
            throw ParmlError.invalidArgument("the communicator is MPI_COMM_NULL or an intercommunicator")
        }
        try initialize()  // records the thread level; initialises nothing here
        state.withLock { $0.hostCommunicator = UInt(bitPattern: communicator) }
    }

    /// The communicator new worlds duplicate: the host's, else MPI_COMM_WORLD.
    static var baseCommunicator: pml_mpi_comm {
        UnsafeMutableRawPointer(bitPattern: state.withLock { $0.hostCommunicator }) ?? pml_mpi_comm_world()
    }

    /// This process's rank and the number of processes in the communicator
    /// parml uses; (0, 1) when MPI is not active. Never initialises MPI.
    public static func processRankAndSize() throws -> (rank: Int, size: Int) {
        guard isActive else { return (0, 1) }
        let comm = baseCommunicator
        var rank: Int32 = 0, size: Int32 = 0
        try check(pml_mpi_comm_rank(comm, &rank), "MPI_Comm_rank")
        try check(pml_mpi_comm_size(comm, &size), "MPI_Comm_size")
        return (Int(rank), Int(size))
    }

    /// Finalises MPI if parml initialised it (and returns true); does
    /// nothing when the host did, or when MPI was never initialised.
    /// MPI_Finalize is collective: every process must call it, after its
    /// last parml call. Worlds still alive must not be used afterwards.
    @discardableResult
    public static func finalize() throws -> Bool {
        guard pml_mpi_loaded() != 0 else { return false }
        return try state.withLock { s in
            guard s.initializedByParml && !s.finalizedByParml else { return false }
            try check(pml_mpi_finalize(), "MPI_Finalize")
            s.finalizedByParml = true
            s.hostCommunicator = 0
            return true
        }
    }

    /// Throws `.communication` naming the MPI call and MPI's own message.
    static func check(_ code: Int32, _ call: String) throws {
        if code != 0 { throw ParmlError.communication("\(call) failed: \(errorText(code))") }
    }

    static func errorText(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        pml_mpi_error_string(code, &buffer, buffer.count)
        return text(of: buffer)
    }

    /// The NUL-terminated text a C call wrote into `buffer`.
    static func text(of buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
