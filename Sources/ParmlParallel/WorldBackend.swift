import ParmlTensor
import Synchronization

/// How the ranks of a job start and reach each other. Two backends exist:
/// `ThreadsBackend` (every rank a thread of this process, built in) and
/// one rank per process under a launcher (`MPIBackend` in ParmlMPI). A
/// trainer looks its backend up by name in `WorldBackends`; the threads
/// backend is always there, MPI once a module that links ParmlMPI has
/// registered it (the C ABI does, before it builds a trainer). So the
/// training engine depends on this protocol only, never on MPI.
public protocol WorldBackend: Sendable {
    /// The name strategies choose it by ("threads", "mpi").
    var name: String { get }
    /// Each process runs one rank of the world (the launcher starts one
    /// process per rank); otherwise every rank runs in this process.
    var ranksAreProcesses: Bool { get }
    /// How many of a world of `worldSize` ranks run on this machine (they
    /// share its cores: the BLAS thread count divides by it).
    func localRanks(worldSize: Int) -> Int
    /// The world of `size` ranks, over which the job's communicators are
    /// split. Collective over the processes when `ranksAreProcesses`, and
    /// it throws `.invalidArgument` when the job does not hold `size`
    /// ranks; `layout` names them in that message ("dp×pp×tp = 2×1×1 = 2").
    func makeWorld(size: Int, layout: String, timeout: Double, name: String) throws -> any RankWorld
}

/// A world as one process sees it.
public protocol RankWorld: AnyObject, Sendable {
    /// Ranks in the world.
    var size: Int { get }
    /// The world ranks that run in this process: all of them, or this
    /// process's one.
    var localRanks: Range<Int> { get }
    /// The world communicator of `rank`, one of `localRanks`.
    func communicator(rank: Int) -> Communicator
    /// After a failure reached the host: makes every rank's current and
    /// later calls fail. With one rank per process the job cannot go on
    /// (messages may be in flight), so this ends it and does not return.
    func endJob(reason: String)
    /// Whether a rank may call its communicators from a thread of its own
    /// besides the one that runs its step (overlap's communication thread).
    var allowsCommunicationThreads: Bool { get }
    /// Whether the ranks run on more than one machine (the same answer in
    /// every process of the world).
    var spansMachines: Bool { get }
}

extension RankWorld {
    public var allowsCommunicationThreads: Bool { true }
    public var spansMachines: Bool { false }
}

/// The backends this process can build worlds with, by name.
public enum WorldBackends {
    private static let backends = Mutex<[String: any WorldBackend]>(["threads": ThreadsBackend()])

    /// Adds `backend` under its name (replacing one of the same name).
    public static func register(_ backend: any WorldBackend) {
        backends.withLock { $0[backend.name] = backend }
    }

    /// The backend called `name`, nil when none is registered.
    public static func named(_ name: String) -> (any WorldBackend)? {
        backends.withLock { $0[name] }
    }
}

/// Every rank a thread of this process, over shared memory (`ThreadsWorld`).
public struct ThreadsBackend: WorldBackend {
    public init() {}
    public var name: String { "threads" }
    public var ranksAreProcesses: Bool { false }
    public func localRanks(worldSize: Int) -> Int { worldSize }
    public func makeWorld(size: Int, layout: String, timeout: Double, name: String) throws -> any RankWorld {
        try ThreadsWorld(size: size, timeout: timeout, name: name)
    }
}

extension ThreadsWorld: RankWorld {
    public var localRanks: Range<Int> { 0..<size }
    public func endJob(reason: String) { abort(reason: reason) }
}
