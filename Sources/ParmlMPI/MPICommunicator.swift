import ParmlParallel
import ParmlTensor
import _CParmlMPI

#if canImport(Glibc)
import Glibc
#endif

/// One process's handle on a group of the MPI backend (see MPIWorld). Used
/// by one thread at a time.
///
/// Same contract as the threads backend (`Communicator`): reductions add
/// the ranks' values in rank order for every element (`.mean` multiplies
/// that sum by `1 / Float(size)`), so the result is bitwise the threads
/// backend's for the same inputs. `MPI_Allreduce` is not used: it picks its
/// own summation order by message size and process count.
///
/// Every wait polls its requests (MPI_Test) against the watchdog: when no
/// request of the call completes for `timeout` seconds, the rank aborts the
/// world naming the peers it waited for, and every rank's current and later
/// calls throw `ParmlError.communication` (see WorldState for how the
/// reason reaches the other processes).
///
/// After a communication error MPI may still write into the buffer of the
/// failed call (a receive that had started cannot be cancelled): end the
/// job (`MPIWorld.abortJob`) rather than reuse it.
final class MPICommunicator: Communicator {
    let world: WorldState
    let comm: pml_mpi_comm
    private let ownsComm: Bool
    let rank: Int
    let size: Int
    let name: String
    /// World rank of each member, in group order.
    let worldRanks: [Int]
    private let isWorld: Bool
    /// Collectives started on this communicator (the "#n" of messages).
    private var seq = 0
    private var sent: [Int]
    private var received: [Int]
    /// Buffered sends not yet completed: their requests and private copies.
    private var pendingSends: [(request: pml_mpi_request?, buffer: UnsafeMutablePointer<Float>)] = []
    /// Receive slots (window × size pieces) and two piece accumulators.
    private var scratch: UnsafeMutablePointer<Float>?
    private var scratchCapacity = 0

    init(world: WorldState, comm: pml_mpi_comm, ownsComm: Bool, name: String, worldRanks: [Int], isWorld: Bool) throws {
        var r: Int32 = 0, n: Int32 = 0
        try MPIRuntime.check(pml_mpi_comm_rank(comm, &r), "MPI_Comm_rank")
        try MPIRuntime.check(pml_mpi_comm_size(comm, &n), "MPI_Comm_size")
        self.world = world
        self.comm = comm
        self.ownsComm = ownsComm
        self.name = name
        rank = Int(r)
        size = Int(n)
        self.worldRanks = worldRanks
        self.isWorld = isWorld
        sent = [Int](repeating: 0, count: size)
        received = [Int](repeating: 0, count: size)
    }

    deinit {
        if MPIRuntime.isActive {
            for i in pendingSends.indices {
                var done: Int32 = 0
                pml_mpi_test(&pendingSends[i].request, &done, nil, nil)
                // A send still in flight may read its copy later: leak it.
                if done != 0 { pendingSends[i].buffer.deallocate() }
            }
            if ownsComm {
                var c: pml_mpi_comm? = comm
                pml_mpi_comm_free(&c)
            }
        }
        if let scratch { UnsafeMutableRawPointer(scratch).deallocate() }
    }

    // MARK: - Messages

    private var me: String { describe(rank: rank) }

    func describe(rank: Int) -> String {
        isWorld ? "rank \(rank) of \(name)" : "rank \(rank) of \(name) (world rank \(worldRanks[rank]))"
    }

    func describe(peers: [Int]) -> String {
        let list = peers.map { isWorld ? "\($0)" : "\($0) (world rank \(worldRanks[$0]))" }.joined(separator: ", ")
        return (peers.count == 1 ? "rank " : "ranks ") + list
    }

    func throwIfAborted(_ what: @autoclosure () -> String) throws {
        if world.isAborted { throw abortedError(what()) }
    }

    private func abortedError(_ what: String) -> ParmlError {
        .communication("\(me): \(what) failed: \(world.abortReason ?? "the world was aborted")")
    }

    /// Aborts the world for a timeout and returns the error to throw.
    private func timeoutError(_ what: String, missing: [Int]) -> ParmlError {
        let message = "\(me): \(what) timed out after \(world.timeout) s waiting for \(describe(peers: missing))"
        return world.abort(reason: message) ? .communication(message) : abortedError(what)
    }

    /// An MPI call that failed inside `what`: aborts the world with MPI's message.
    private func mpiError(_ what: String, _ call: String, _ code: Int32) -> ParmlError {
        let message = "\(me): \(what): \(call) failed: \(MPIRuntime.errorText(code))"
        return world.abort(reason: message) ? .communication(message) : abortedError(what)
    }

    private func mismatch(_ what: String, peer: Int, bytes: Int32, expected: Int) -> ParmlError {
        let message =
            "\(me): \(what): \(describe(peers: [peer])) sent \(Int(bytes) / 4) floats where \(expected) were expected "
            + "(the ranks made different calls)"
        return world.abort(reason: message) ? .communication(message) : abortedError(what)
    }

    // MARK: - Waiting

    enum Progress { case done, progressed, idle }

    /// Calls `step` until it returns `.done`. Spins first (MPI progresses
    /// inside MPI_Test), then yields, then sleeps in 50 µs naps; checks for
    /// aborts from other processes, and fails when nothing has completed
    /// for `timeout` seconds, naming `waitingFor()`.
    private func drive(_ what: () -> String, waitingFor: () -> [Int], _ step: () throws -> Progress) throws {
        var spins = 0
        var idleSince = 0
        while true {
            switch try step() {
            case .done: return
            case .progressed:
                spins = 0
                idleSince = 0
            case .idle:
                spins += 1
                if spins < 64 && !world.oversubscribed { continue }
                if world.pollNotices() { throw abortedError(what()) }
                let now = monotonicNanoseconds()
                if idleSince == 0 { idleSince = now }
                let idle = now - idleSince
                if idle >= world.timeoutNanos { throw timeoutError(what(), missing: waitingFor()) }
                if idle > 1_000_000 { usleep(50) } else if world.oversubscribed || idle > 200_000 { sched_yield() }
            }
        }
    }

    /// Completes what it can of the buffered sends (freeing their copies).
    private func progressSends() throws {
        var i = 0
        while i < pendingSends.count {
            var done: Int32 = 0
            let rc = pml_mpi_test(&pendingSends[i].request, &done, nil, nil)
            if rc != 0 { throw mpiError("send", "MPI_Test", rc) }
            if done != 0 {
                pendingSends[i].buffer.deallocate()
                pendingSends.swapAt(i, pendingSends.count - 1)
                pendingSends.removeLast()
            } else {
                i += 1
            }
        }
    }

    /// Numbers a collective and fails at once when the world is aborted.
    private func begin(_ kind: MPICollective, count: Int = 0) throws -> Int {
        let s = seq
        seq += 1
        guard count >= 0 else {
            throw ParmlError.invalidArgument("\(me): \(kind.label): count must be >= 0, got \(count)")
        }
        if world.pollNotices() { throw abortedError("\(kind.label) #\(s)") }
        try progressSends()
        return s
    }

    // MARK: - Communicator

    func barrier() throws {
        let s = try begin(.barrier)
        guard size > 1 else { return }
        // Dissemination: round d sends to rank + d and hears from rank − d;
        // after log2(size) rounds every rank has heard from all.
        let tag = Tag.collective(.barrier, phase: 0, seq: s)
        var token: UInt8 = 0
        var d = 1
        while d < size {
            let to = (rank + d) % size, from = (rank - d + size) % size
            var requests: [pml_mpi_request?] = [nil, nil]
            var rc = pml_mpi_isend_bytes(&token, 0, Int32(to), tag, comm, &requests[0])
            if rc == 0 { rc = pml_mpi_irecv_bytes(&token, 0, Int32(from), tag, comm, &requests[1]) }
            if rc != 0 { throw mpiError("barrier #\(s)", "MPI_Isend/MPI_Irecv", rc) }
            try waitAll(&requests, peers: [to, from], what: { "barrier #\(s)" })
            d *= 2
        }
    }

    /// Waits for every request of `requests` (peers[i] is request i's peer).
    /// On failure the requests still open are cancelled (receives stop
    /// writing into the caller's buffer where MPI can still stop them).
    private func waitAll(_ requests: inout [pml_mpi_request?], peers: [Int], what: () -> String) throws {
        do {
            try waitAllOrThrow(&requests, peers: peers, what: what)
        } catch {
            for i in requests.indices { pml_mpi_cancel(&requests[i]) }
            throw error
        }
    }

    private func waitAllOrThrow(_ requests: inout [pml_mpi_request?], peers: [Int], what: () -> String) throws {
        try drive(what, waitingFor: { peers.indices.filter { requests[$0] != nil }.map { peers[$0] } }) {
            var open = false, progressed = false
            for i in requests.indices where requests[i] != nil {
                var done: Int32 = 0
                let rc = pml_mpi_test(&requests[i], &done, nil, nil)
                if rc != 0 { throw mpiError(what(), "MPI_Test", rc) }
                if done != 0 { progressed = true } else { open = true }
            }
            return !open ? .done : progressed ? .progressed : .idle
        }
    }

    func allReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp) throws {
        let s = try begin(.allReduce, count: count)
        guard size > 1 else { return }
        try pipelined(.allReduce, s, buffer, count: count, reduce: true, gather: true, mean: op == .mean)
    }

    func reduceScatter(_ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp) throws {
        let s = try begin(.reduceScatter, count: count)
        guard size > 1 else { return }
        try pipelined(.reduceScatter, s, buffer, count: count, reduce: true, gather: false, mean: op == .mean)
    }

    func reduceScatter(_ buffer: UnsafeMutablePointer<Float>, count: Int, shards: [Range<Int>], op: ReduceOp) throws {
        try checkShards(shards, count: count, what: "reduceScatter")
        let s = try begin(.reduceScatter, count: count)
        guard size > 1 else { return }
        try pipelined(.reduceScatter, s, buffer, count: count, reduce: true, gather: false, mean: op == .mean, shards: shards)
    }

    func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        let s = try begin(.allGather, count: count)
        guard size > 1 else { return }
        try pipelined(.allGather, s, buffer, count: count, reduce: false, gather: true, mean: false)
    }

    func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, shards: [Range<Int>]) throws {
        try checkShards(shards, count: count, what: "allGather")
        let s = try begin(.allGather, count: count)
        guard size > 1 else { return }
        try pipelined(.allGather, s, buffer, count: count, reduce: false, gather: true, mean: false, shards: shards)
    }

    func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {
        guard root >= 0 && root < size else {
            throw ParmlError.invalidArgument("\(me): broadcast: root \(root) is outside 0..<\(size)")
        }
        let s = try begin(.broadcast, count: count)
        guard size > 1 else { return }
        let what = { "broadcast #\(s) (count \(count), root \(root))" }
        let tag = Tag.collective(.broadcast, phase: 0, seq: s)
        let piece = world.pieceElements
        var requests: [pml_mpi_request?] = []
        // On failure, cancels what is still open (completed entries are nil).
        defer { for i in requests.indices { pml_mpi_cancel(&requests[i]) } }
        var peers: [Int] = []
        var expected: [Int] = []
        var lo = 0
        // The root sends each piece to every rank; the others receive them in place.
        while lo < count {
            let n = min(piece, count - lo)
            for j in 0..<size where j != rank && (rank == root || j == root) {
                var request: pml_mpi_request? = nil
                let rc =
                    rank == root
                    ? pml_mpi_isend_floats(buffer + lo, Int32(n), Int32(j), tag, comm, &request)
                    : pml_mpi_irecv_floats(buffer + lo, Int32(n), Int32(j), tag, comm, &request)
                if rc != 0 { throw mpiError(what(), "MPI_Isend/MPI_Irecv", rc) }
                requests.append(request)
                peers.append(j)
                expected.append(n)
            }
            lo += n
        }
        try drive(what, waitingFor: { Array(Set(peers.indices.filter { requests[$0] != nil }.map { peers[$0] })).sorted() }) {
            var open = false, progressed = false
            for i in requests.indices where requests[i] != nil {
                var done: Int32 = 0, bytes: Int32 = 0
                let rc = pml_mpi_test(&requests[i], &done, nil, &bytes)
                if rc != 0 { throw mismatchOrError(what(), rc, peer: peers[i], expected: expected[i]) }
                if done == 0 {
                    open = true
                    continue
                }
                progressed = true
                if rank != root && Int(bytes) != 4 * expected[i] {
                    throw mismatch(what(), peer: peers[i], bytes: bytes, expected: expected[i])
                }
            }
            return !open ? .done : progressed ? .progressed : .idle
        }
    }

    /// MPI_ERR_TRUNCATE (a longer message than posted) is a call mismatch.
    func mismatchOrError(_ what: String, _ rc: Int32, peer: Int, expected: Int) -> ParmlError {
        if rc == Int32(PML_MPI_ERR_TRUNCATE) {
            let message = "\(me): \(what): \(describe(peers: [peer])) sent more than the \(expected) floats expected (the ranks made different calls)"
            return world.abort(reason: message) ? .communication(message) : abortedError(what)
        }
        return mpiError(what, "MPI_Test", rc)
    }

    func send(_ buffer: UnsafePointer<Float>, count: Int, to peer: Int) throws {
        guard peer >= 0 && peer < size else {
            throw ParmlError.invalidArgument("\(me): send: peer \(peer) is outside 0..<\(size)")
        }
        guard count >= 0 && count <= Int(Int32.max) else {
            throw ParmlError.invalidArgument("\(me): send: count must be in 0...\(Int32.max), got \(count)")
        }
        let n = sent[peer]
        sent[peer] += 1
        let what = "send #\(n) to \(describe(peers: [peer]))"
        if world.pollNotices() { throw abortedError(what) }
        try progressSends()
        // Buffered like the threads backend: the caller may reuse `buffer`
        // at once, and a send never waits for its receive (pipeline
        // schedules send before they receive).
        let copy = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        copy.update(from: buffer, count: count)
        var request: pml_mpi_request? = nil
        let rc = pml_mpi_isend_floats(copy, Int32(count), Int32(peer), Tag.message, comm, &request)
        if rc != 0 {
            copy.deallocate()
            throw mpiError(what, "MPI_Isend", rc)
        }
        pendingSends.append((request, copy))
    }

    func receive(_ buffer: UnsafeMutablePointer<Float>, count: Int, from peer: Int) throws {
        guard peer >= 0 && peer < size else {
            throw ParmlError.invalidArgument("\(me): receive: peer \(peer) is outside 0..<\(size)")
        }
        guard count >= 0 else { throw ParmlError.invalidArgument("\(me): receive: count must be >= 0, got \(count)") }
        let n = received[peer]
        received[peer] += 1
        let what = { "receive #\(n) from \(self.describe(peers: [peer]))" }
        if world.pollNotices() { throw abortedError(what()) }
        var length: Int32 = -1
        try drive(what, waitingFor: { [peer] }) {
            try progressSends()
            var found: Int32 = 0
            let rc = pml_mpi_iprobe(Int32(peer), Tag.message, comm, &found, nil, &length)
            if rc != 0 { throw mpiError(what(), "MPI_Iprobe", rc) }
            return found != 0 ? .done : .idle
        }
        // Messages from one peer on one tag match in the order they were
        // sent (MPI's non-overtaking rule): the probed one is received next.
        let matches = Int(length) == 4 * count
        let target = matches ? UnsafeMutableRawPointer(buffer) : .allocate(byteCount: max(Int(length), 1), alignment: 64)
        defer { if !matches { target.deallocate() } }
        var request: pml_mpi_request? = nil
        let rc = pml_mpi_irecv_bytes(target, length, Int32(peer), Tag.message, comm, &request)
        if rc != 0 { throw mpiError(what(), "MPI_Irecv", rc) }
        var requests = [request]
        try waitAll(&requests, peers: [peer], what: what)
        if !matches {
            throw ParmlError.communication(
                "\(me): \(what()): the message has \(Int(length) / 4) floats but the receive expects \(count) (message dropped)")
        }
    }

    func split(color: Int, key: Int, name: String) throws -> Communicator {
        let s = try begin(.split)
        let what = { "split #\(s)" }
        // Everyone's (color, key, world rank), exchanged point to point under
        // the watchdog; MPI_Comm_split itself cannot be timed out, so it runs
        // only once every rank has arrived.
        let mine: [Int64] = [Int64(color), Int64(key), Int64(worldRanks[rank])]
        var all = [Int64](repeating: 0, count: 3 * size)
        for i in 0..<3 { all[3 * rank + i] = mine[i] }
        if size > 1 {
            let tag = Tag.collective(.split, phase: 0, seq: s)
            var requests: [pml_mpi_request?] = []
            var peers: [Int] = []
            try mine.withUnsafeBytes { out in
                try all.withUnsafeMutableBytes { into in
                    for j in 0..<size where j != rank {
                        var sendRequest: pml_mpi_request? = nil, receiveRequest: pml_mpi_request? = nil
                        var rc = pml_mpi_isend_bytes(out.baseAddress, 24, Int32(j), tag, comm, &sendRequest)
                        if rc == 0 { rc = pml_mpi_irecv_bytes(into.baseAddress! + 24 * j, 24, Int32(j), tag, comm, &receiveRequest) }
                        if rc != 0 { throw mpiError(what(), "MPI_Isend/MPI_Irecv", rc) }
                        requests += [sendRequest, receiveRequest]
                        peers += [j, j]
                    }
                    try waitAll(&requests, peers: peers, what: what)
                }
            }
        }
        // Members of this rank's color, ordered by (key, rank in this group).
        let colors = Array(Set((0..<size).map { all[3 * $0] })).sorted()
        let members = (0..<size).filter { all[3 * $0] == Int64(color) }.sorted { (all[3 * $0 + 1], $0) < (all[3 * $1 + 1], $1) }
        let newRank = members.firstIndex(of: rank)!
        var newComm: pml_mpi_comm? = nil
        let rc = pml_mpi_comm_split(comm, Int32(colors.firstIndex(of: Int64(color))!), Int32(newRank), &newComm)
        if rc != 0 { throw mpiError(what(), "MPI_Comm_split", rc) }
        return try MPICommunicator(
            world: world, comm: newComm!, ownsComm: true, name: name, worldRanks: members.map { Int(all[3 * $0 + 2]) },
            isWorld: false)
    }

    func abort(reason: String) {
        world.abort(reason: reason)
    }

    // MARK: - Reductions

    /// Receive slots for `window` rounds of every peer, then two accumulators.
    func ensureScratch() -> UnsafeMutablePointer<Float> {
        let n = (world.window(forSize: size) * size + 2) * world.pieceElements
        if scratchCapacity < n {
            if let scratch { UnsafeMutableRawPointer(scratch).deallocate() }
            scratch = UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<Float>.stride, alignment: 64)
                .bindMemory(to: Float.self, capacity: n)
            scratchCapacity = n
        }
        return scratch!
    }

    private func pipelined(
        _ kind: MPICollective, _ s: Int, _ buffer: UnsafeMutablePointer<Float>, count: Int, reduce: Bool, gather: Bool,
        mean: Bool, shards: [Range<Int>]? = nil
    ) throws {
        var run = PipelinedReduction(
            communicator: self, kind: kind, seq: s, buffer: buffer, count: count, reduce: reduce, gather: gather,
            mean: mean, shards: shards)
        let what = {
            kind == .allGather
                ? "\(kind.label) #\(s) (count \(count))" : "\(kind.label) #\(s) (count \(count), \(mean ? "mean" : "sum"))"
        }
        do {
            try run.start()
            try drive(what, waitingFor: { run.waitingFor() }) { try run.step() }
        } catch let error as PipelinedReduction.Failure {
            run.cancelAll()
            switch error {
            case .mpi(let call, let rc): throw mpiError(what(), call, rc)
            case .length(let peer, let bytes, let expected): throw mismatch(what(), peer: peer, bytes: bytes, expected: expected)
            case .truncated(let peer, let expected): throw mismatchOrError(what(), Int32(PML_MPI_ERR_TRUNCATE), peer: peer, expected: expected)
            }
        } catch {
            run.cancelAll()
            throw error
        }
    }
}
