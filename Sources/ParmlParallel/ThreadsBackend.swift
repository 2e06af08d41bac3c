import ParmlTensor

/// The threads backend: `size` ranks that are threads of this process and
/// exchange data through shared memory.
///
/// ```swift
/// let world = try ThreadsWorld(size: 4, timeout: 30, name: "dp")
/// let pool = try RankPool(size: 4)
/// try pool.run(world: world) { rank in
///     let comm = world.communicator(rank: rank)
///     try comm.allReduce(grads, count: n, op: .mean)
/// }
/// ```
///
/// - Collectives work on peers' buffers directly (no staging copies): ranks
///   publish their buffer pointers and synchronise; rank r then reduces
///   shard r (`Sharding.range`) by reading every rank's values, adding them
///   in rank order, and writes the result into every rank's buffer, in
///   pieces of `chunkBytes` that stay in cache. Sums therefore do not depend
///   on timing: the same inputs give the same bits on every run.
///   `.mean` is that sum times `1 / Float(size)`.
/// - Every rank must make the same calls in the same order; a rank whose call
///   differs (kind, count, op, root) makes every rank throw instead of
///   reading a buffer of the wrong length.
/// - Waits spin briefly, then sleep on a condition variable. Each wait has
///   the watchdog deadline `timeout` (seconds from the start of that wait);
///   when it passes, the waiting rank aborts the world, naming the ranks that
///   did not arrive. After an abort (from a timeout, a mismatch, `abort` on
///   any communicator of any group of this world, or `ThreadsWorld.abort`),
///   every rank's current and later collective throws
///   `ParmlError.communication` with the original reason, the local rank, the
///   collective and its sequence number. An aborted world stays aborted:
///   create a new one.
///
/// Thread safety: `communicator(rank:)` and `abort` may be called from any
/// thread; a communicator is used by its rank's thread only.
public final class ThreadsWorld: @unchecked Sendable {
    // @unchecked Sendable: all stored properties are immutable after init;
    // the shared mutable state lives in WorldCore / GroupState, which
    // synchronise it themselves.

    /// Bytes of a rank's shard reduced and copied as one piece: 256 KiB
    /// measured best on a 2-core Xeon (bench/collectives --sweep: 32–256
    /// KiB are alike at 4 MiB, 256–512 KiB best at 64 MiB, 1 MiB and up
    /// fall out of L2 and lose 30–50%).
    public static let defaultChunkBytes = 256 * 1024

    public let size: Int
    /// The watchdog deadline of every wait, in seconds.
    public let timeout: Double
    public let name: String
    let core: WorldCore
    private let communicators: [ThreadsCommunicator]

    /// - Parameters:
    ///   - size: number of ranks, 1...4096.
    ///   - timeout: seconds a rank waits for its peers before it aborts the world (> 0).
    ///   - name: the label that error messages use ("dp", "world", ...).
    ///   - chunkBytes: bytes of a rank's shard reduced and copied as one piece (>= 4096).
    public init(size: Int, timeout: Double, name: String = "world", chunkBytes: Int = ThreadsWorld.defaultChunkBytes) throws {
        guard size >= 1 && size <= 4096 else {
            throw ParmlError.invalidArgument("ThreadsWorld: size must be in 1...4096, got \(size)")
        }
        guard timeout > 0 && timeout.isFinite else {
            throw ParmlError.invalidArgument("ThreadsWorld: timeout must be a positive number of seconds, got \(timeout)")
        }
        guard chunkBytes >= 4096 else {
            throw ParmlError.invalidArgument("ThreadsWorld: chunkBytes must be >= 4096, got \(chunkBytes)")
        }
        self.size = size
        self.timeout = timeout
        self.name = name
        core = WorldCore(name: name, size: size, timeout: timeout, pieceElements: chunkBytes / MemoryLayout<Float>.stride)
        let group = GroupState(world: core, name: name, worldRanks: Array(0..<size), isWorld: true)
        communicators = (0..<size).map { ThreadsCommunicator(group: group, rank: $0) }
    }

    /// The communicator of rank `rank` (the same object on every call), for
    /// that rank's thread only. `rank` must be in 0..<size.
    public func communicator(rank: Int) -> Communicator {
        precondition(rank >= 0 && rank < size, "ThreadsWorld.communicator: rank \(rank) is outside 0..<\(size)")
        return communicators[rank]
    }

    /// Sub-group communicators for every rank at once, made on the calling
    /// thread: ranks with equal `colors[r]` form a group, ordered by
    /// (`keys[r]`, r). What `Communicator.split` gives, without a collective
    /// (the ranks are threads of this process, so one thread can build every
    /// group before they start). Element r is world rank r's communicator.
    public func split(colors: [Int], keys: [Int], name: String) throws -> [Communicator] {
        guard colors.count == size, keys.count == size else {
            throw ParmlError.invalidArgument("ThreadsWorld.split: \(colors.count) colors and \(keys.count) keys for \(size) ranks")
        }
        var out = [Communicator?](repeating: nil, count: size)
        for color in Set(colors) {
            let members = (0..<size).filter { colors[$0] == color }.sorted { (keys[$0], $0) < (keys[$1], $1) }
            let group = GroupState(world: core, name: name, worldRanks: members, isWorld: false)
            for (i, r) in members.enumerated() { out[r] = ThreadsCommunicator(group: group, rank: i) }
        }
        return out.map { $0! }
    }

    /// Marks the world failed: every rank's current and later collectives
    /// throw `ParmlError.communication` including `reason` (the first reason
    /// given is kept). Safe from any thread, more than once.
    public func abort(reason: String) {
        core.abort(reason: reason)
    }

    public var isAborted: Bool { core.isAborted }

    /// The reason of the first abort, nil while the world is healthy.
    public var abortReason: String? { core.abortReason }
}
