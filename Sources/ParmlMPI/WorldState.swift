import ParmlParallel
import ParmlTensor
import Synchronization
import _CParmlMPI

#if canImport(Glibc)
import Glibc
#endif

/// Tags: the collective's kind and phase in the high bits, the low bits of
/// its sequence number below, so that messages of different collectives
/// never match each other's receives (a rank ahead of its peers cannot be
/// mistaken for the current call). Every tag stays <= 32767, the smallest
/// MPI_TAG_UB the standard allows.
enum Tag {
    static let message: Int32 = 1  // send/receive
    static let abort: Int32 = 2  // control communicator: an abort's reason
    static func collective(_ kind: MPICollective, phase: Int, seq: Int) -> Int32 {
        Int32(kind.rawValue * 4096 + phase * 2048 + (seq & 2047))
    }
}

/// The collectives, for tags and messages.
enum MPICollective: Int {
    case barrier = 1, allReduce, reduceScatter, allGather, broadcast, split

    var label: String {
        switch self {
        case .barrier: "barrier"
        case .allReduce: "allReduce"
        case .reduceScatter: "reduceScatter"
        case .allGather: "allGather"
        case .broadcast: "broadcast"
        case .split: "split"
        }
    }
}

/// What every communicator of one MPI world shares: the watchdog deadline,
/// the tuning, and the abort state. An abort's reason travels to every
/// other process of the world on a control communicator of its own
/// (tag `Tag.abort`), where each process keeps one receive posted; every
/// wait tests it, so a failure anywhere reaches every rank's current and
/// later calls within one poll, not at the deadline.
///
/// `@unchecked Sendable`: the abort state is behind `abortState`'s mutex;
/// the MPI calls are serialised by the shim's lock; the rest is immutable.
final class WorldState: @unchecked Sendable {
    let name: String
    let rank: Int
    let size: Int
    let timeout: Double
    let timeoutNanos: Int
    let pieceElements: Int
    /// Rounds of pieces in flight per collective (receive buffers per peer),
    /// as asked for; `window(forSize:)` caps it for large groups.
    let window: Int
    /// More processes than CPUs on this machine is likely (tests run 4 on 2
    /// cores): a spinning rank then steals the CPU its peer needs.
    let oversubscribed: Bool
    /// What `abortJob` aborts: the host's communicator or MPI_COMM_WORLD.
    let baseComm: pml_mpi_comm
    /// Duplicates of baseComm: one for the world communicator's traffic,
    /// one for abort notices.
    let dataComm: pml_mpi_comm
    private let controlComm: pml_mpi_comm

    private struct AbortState {
        var reason: String?
        var receive: pml_mpi_request?
        var notices: [(request: pml_mpi_request?, bytes: [UInt8])] = []
    }
    private let abortState: Mutex<AbortState>
    private let flag = Atomic<Bool>(false)
    private let noticeBuffer: UnsafeMutablePointer<UInt8>
    static let noticeCapacity = 4096

    init(name: String, timeout: Double, chunkBytes: Int, window: Int) throws {
        let base = MPIRuntime.baseCommunicator
        var data: pml_mpi_comm? = nil, control: pml_mpi_comm? = nil
        try MPIRuntime.check(pml_mpi_comm_dup(base, &data), "MPI_Comm_dup")
        do {
            try MPIRuntime.check(pml_mpi_comm_dup(base, &control), "MPI_Comm_dup")
        } catch {
            pml_mpi_comm_free(&data)
            throw error
        }
        var r: Int32 = 0, n: Int32 = 0
        pml_mpi_comm_rank(data, &r)
        pml_mpi_comm_size(data, &n)
        self.name = name
        rank = Int(r)
        size = Int(n)
        self.timeout = timeout
        timeoutNanos = Int(min(timeout, 1e9) * 1e9)
        pieceElements = max(1024, chunkBytes / MemoryLayout<Float>.stride)
        self.window = window
        oversubscribed = size > onlineCPUs
        baseComm = base
        dataComm = data!
        controlComm = control!
        noticeBuffer = .allocate(capacity: Self.noticeCapacity)
        var state = AbortState()
        if size > 1 {
            var request: pml_mpi_request? = nil
            try MPIRuntime.check(
                pml_mpi_irecv_bytes(noticeBuffer, Int32(Self.noticeCapacity), -1, Tag.abort, control, &request),
                "MPI_Irecv")
            state.receive = request
        }
        abortState = Mutex(state)
    }

    deinit {
        // After MPI_Finalize no MPI call is allowed; the handles die with MPI.
        if MPIRuntime.isActive {
            abortState.withLock { s in
                pml_mpi_cancel(&s.receive)
                for i in s.notices.indices { pml_mpi_cancel(&s.notices[i].request) }
            }
            var data: pml_mpi_comm? = dataComm, control: pml_mpi_comm? = controlComm
            pml_mpi_comm_free(&data)
            pml_mpi_comm_free(&control)
        }
        noticeBuffer.deallocate()
    }

    /// The rounds in flight for a group of `size`: the receive slots
    /// (window × size pieces) stay within 32 pieces (8 MiB at the default
    /// 256 KiB), so large groups do not pin memory per communicator.
    func window(forSize size: Int) -> Int {
        max(1, min(window, 32 / max(1, size)))
    }

    @inline(__always)
    var isAborted: Bool { flag.load(ordering: .acquiring) }

    var abortReason: String? { abortState.withLock { $0.reason } }

    /// Marks the world failed and sends `reason` to every other process.
    /// The first reason is kept; returns whether this call was the first.
    @discardableResult
    func abort(reason: String) -> Bool {
        abortState.withLock { s in
            guard s.reason == nil else { return false }
            s.reason = reason
            flag.store(true, ordering: .releasing)
            let bytes = Array(reason.utf8.prefix(Self.noticeCapacity - 1))
            for peer in 0..<size where peer != rank {
                // Never waited for: a notice to a dead process stays pending.
                // The array's storage (the send buffer) lives in `notices`.
                var entry: (request: pml_mpi_request?, bytes: [UInt8]) = (nil, bytes)
                let rc = entry.bytes.withUnsafeBufferPointer {
                    pml_mpi_isend_bytes($0.baseAddress, Int32($0.count), Int32(peer), Tag.abort, controlComm, &entry.request)
                }
                if rc == 0 { s.notices.append(entry) }
            }
            return true
        }
    }

    /// Tests the posted notice receive: a peer's abort becomes this world's
    /// abort (without echoing it back). Returns whether the world is aborted.
    func pollNotices() -> Bool {
        if isAborted { return true }
        return abortState.withLock { s in
            guard s.receive != nil else { return false }
            var done: Int32 = 0, bytes: Int32 = 0, source: Int32 = 0
            let rc = pml_mpi_test(&s.receive, &done, &source, &bytes)
            guard rc == 0, done != 0, s.reason == nil else { return s.reason != nil }
            let text = String(decoding: UnsafeBufferPointer(start: noticeBuffer, count: Int(bytes)), as: UTF8.self)
            s.reason = text
            flag.store(true, ordering: .releasing)
            return true
        }
    }
}
