import ParmlTensor

#if canImport(Glibc)
import Glibc
#endif

/// The collectives a group runs; the raw value travels in slots.
enum CollectiveKind: Int {
    case barrier = 1, allReduce, reduceScatter, allGather, broadcast, split

    var label: String {
        switch self {
        case .barrier: return "barrier"
        case .allReduce: return "allReduce"
        case .reduceScatter: return "reduceScatter"
        case .allGather: return "allGather"
        case .broadcast: return "broadcast"
        case .split: return "split"
        }
    }
}

extension ReduceOp {
    var code: Int { self == .sum ? 0 : 1 }
}

/// One rank's handle on a group of the threads backend (see ThreadsWorld).
/// Used by that rank's thread only.
///
/// A collective: publish (call, buffer) in this rank's slot, advance the
/// phase, wait for every peer's phase, check that all ranks made the same
/// call, then work on peers' buffers directly, and end with a barrier that
/// keeps every buffer valid until no peer touches it.
///
/// allReduce: rank r owns shard r (`Sharding.range`). Piece by piece (so the
/// piece stays in cache), it adds every rank's values of that piece in rank
/// order into a scratch accumulator, then copies the result into every
/// rank's buffer ("push"). Shard r of every buffer is read and written by
/// rank r alone, so the only synchronisations are the entry and exit
/// barriers. Measured on the 2-core Xeon (bench/collectives): push 13–16
/// GB/s bus bandwidth at 4 MiB and 11–13 at 64 MiB, against 6–9 and 5–7 for
/// "pull" (reduce, barrier per piece, then copy the other shards from their
/// owners), whose second half re-reads lines the owner has just written.
/// reduceScatter is the first half (result into the own buffer only),
/// allGather the second (push the own shard); broadcast pulls from the root
/// (the copies run in parallel on the receivers).
final class ThreadsCommunicator: Communicator {
    let group: GroupState
    let rank: Int
    var size: Int { group.size }
    var name: String { group.name }

    private let world: WorldCore
    /// This rank's phase (mirrors group.phases[rank]).
    private var phase = 0
    /// Collectives started on this communicator (the "#n" of messages).
    private var seq = 0
    /// Per collective: every rank's buffer, and the shard bounds.
    private let peers: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    private let shardLo: UnsafeMutablePointer<Int>
    private let shardHi: UnsafeMutablePointer<Int>
    /// Two piece-sized accumulators (allocated on first use, then reused).
    private var scratch: UnsafeMutablePointer<Float>?
    private var scratchCapacity = 0

    init(group: GroupState, rank: Int) {
        self.group = group
        self.rank = rank
        world = group.world
        peers = .allocate(capacity: group.size)
        peers.initialize(repeating: UnsafeMutablePointer(bitPattern: 16)!, count: group.size)
        shardLo = .allocate(capacity: group.size)
        shardLo.initialize(repeating: 0, count: group.size)
        shardHi = .allocate(capacity: group.size)
        shardHi.initialize(repeating: 0, count: group.size)
    }

    deinit {
        peers.deallocate()
        shardLo.deallocate()
        shardHi.deallocate()
        if let scratch { UnsafeMutableRawPointer(scratch).deallocate() }
    }

    // MARK: - Messages

    private var me: String { group.describe(rank: rank) }

    private func call(_ kind: CollectiveKind, _ s: Int) -> String { "\(kind.label) #\(s)" }

    /// The error a rank throws when the world was aborted (by anyone).
    func throwIfAborted(_ what: @autoclosure () -> String) throws {
        if world.isAborted { throw abortedError(what()) }
    }

    private func abortedError(_ what: String) -> ParmlError {
        .communication("\(me): \(what) failed: \(world.abortReason ?? "the world was aborted")")
    }

    /// Aborts the world for a timeout and returns the error to throw.
    private func timeoutError(_ what: String, missing: [Int]) -> ParmlError {
        let message = "\(me): \(what) timed out after \(world.timeoutSeconds) s waiting for \(group.describe(peers: missing))"
        return world.abort(reason: message) ? .communication(message) : abortedError(what)
    }

    private func describe(_ s: Slot) -> String {
        guard let kind = CollectiveKind(rawValue: s.kind) else { return "nothing" }
        switch kind {
        case .barrier, .split: return "\(kind.label) #\(s.seq)"
        case .allReduce, .reduceScatter:
            return "\(kind.label) #\(s.seq) (count \(s.count), \(s.arg == 0 ? "sum" : "mean"))"
        case .allGather: return "\(kind.label) #\(s.seq) (count \(s.count))"
        case .broadcast: return "\(kind.label) #\(s.seq) (count \(s.count), root \(s.arg))"
        }
    }

    // MARK: - Synchronisation

    @inline(__always)
    private func advance() {
        phase += 1
        group.phases.store(rank, phase)
        world.lot.wakeIfWaiting()
    }

    /// Waits until every rank's phase reaches `target`.
    @inline(__always)
    private func waitAll(_ target: Int, _ kind: CollectiveKind, _ s: Int) throws {
        let phases = group.phases, n = group.size
        let outcome = world.wait {
            for j in 0..<n where phases.load(j) < target { return false }
            return true
        }
        if outcome == .ready { return }
        let what = call(kind, s)
        if outcome == .timedOut {
            throw timeoutError(what, missing: (0..<n).filter { phases.load($0) < target })
        }
        throw abortedError(what)
    }

    /// Leaving collective `s` early (abort, timeout, mismatch): peers may be
    /// reading or writing this rank's buffer right now; they stop at their
    /// next abort check (every piece, every wait). Returning before that
    /// would hand the buffer back to a caller that may free it.
    private func leaveAfterAbort(_ s: Int) {
        group.active.store(rank, 0)
        var spins = 0
        for j in 0..<group.size where j != rank {
            while group.active.load(j) == s + 1 {
                spins += 1
                if spins < 1000 { sched_yield() } else { usleep(100) }
            }
        }
    }

    private func checkArguments(_ kind: CollectiveKind, count: Int) throws {
        guard count >= 0 else {
            throw ParmlError.invalidArgument("\(me): \(kind.label): count must be >= 0, got \(count)")
        }
    }

    /// Enters collective number `seq` (returned): publishes the call, waits for
    /// every rank, and checks that they all made the same call. On return the
    /// peers' buffers are in `peers`.
    private func begin(
        _ kind: CollectiveKind, count: Int = 0, arg: Int = 0, pointer: UnsafeMutableRawPointer? = nil,
        color: Int = 0, key: Int = 0
    ) throws -> Int {
        let s = seq
        seq += 1
        if world.isAborted { throw abortedError(call(kind, s)) }
        group.slot(rank, s).pointee = Slot(
            seq: s, kind: kind.rawValue, count: count, arg: arg, color: color, key: key, pointer: pointer, object: nil)
        advance()
        do {
            try waitAll(phase, kind, s)
        } catch {
            leaveAfterAbort(s)
            throw error
        }
        let mine = group.slot(rank, s).pointee
        for j in 0..<group.size where j != rank {
            let other = group.slot(j, s).pointee
            if other.seq != s || other.kind != mine.kind || other.count != count || other.arg != arg {
                let message = "\(me): \(describe(mine)) does not match \(group.describe(peers: [j])): \(describe(other))"
                world.abort(reason: message)
                leaveAfterAbort(s)
                throw ParmlError.communication(message)
            }
            if let p = other.pointer { peers[j] = p.assumingMemoryBound(to: Float.self) }
        }
        if let p = pointer { peers[rank] = p.assumingMemoryBound(to: Float.self) }
        return s
    }

    /// Runs `body` (which reads or writes peers' buffers) with this rank marked active
    /// in collective `s`.
    @inline(__always)
    private func reading(_ kind: CollectiveKind, _ s: Int, _ body: () throws -> Void) throws {
        group.active.store(rank, s + 1)
        // SC: either a rank leaving after an abort sees `active`, or we see the abort.
        if world.isAborted {
            leaveAfterAbort(s)
            throw abortedError(call(kind, s))
        }
        do {
            try body()
        } catch {
            leaveAfterAbort(s)
            throw error
        }
        group.active.store(rank, 0)
    }

    /// A one-rank group: nothing to exchange, but aborts and numbering still apply.
    private func single(_ kind: CollectiveKind) throws {
        let s = seq
        seq += 1
        if world.isAborted { throw abortedError(call(kind, s)) }
    }

    private func computeShards(_ count: Int) {
        for j in 0..<group.size {
            let r = Sharding.range(count: count, parts: group.size, index: j)
            shardLo[j] = r.lowerBound
            shardHi[j] = r.upperBound
        }
    }

    /// The shards given (reduceScatter with shards).
    private func setShards(_ shards: [Range<Int>]) {
        for j in 0..<group.size {
            shardLo[j] = shards[j].lowerBound
            shardHi[j] = shards[j].upperBound
        }
    }

    /// Pieces in the longest shard.
    private var pieceCount: Int {
        var longest = 0
        for j in 0..<group.size { longest = max(longest, shardHi[j] - shardLo[j]) }
        return (longest + world.pieceElements - 1) / world.pieceElements
    }

    /// Two piece-sized accumulators (ping-pong), allocated on first use.
    private func ensureScratch() {
        let n = world.pieceElements
        if scratchCapacity < n {
            if let scratch { UnsafeMutableRawPointer(scratch).deallocate() }
            scratch = UnsafeMutableRawPointer.allocate(byteCount: 2 * n * MemoryLayout<Float>.stride, alignment: 64)
                .bindMemory(to: Float.self, capacity: 2 * n)
            scratchCapacity = n
        }
    }

    /// Reduces piece k of this rank's shard, Σ_j peers[j][range] in rank
    /// order (× 1/size for mean), into scratch; returns the range and where
    /// the result is (nil for an empty piece).
    ///
    /// The output never aliases an input: Kernels.add's C loop vectorises
    /// only when y overlaps neither a nor b (clang's runtime alias check;
    /// with y == a it runs scalar, ~8× slower). Hence the two accumulators.
    @inline(__always)
    private func reducePiece(_ k: Int, mean: Bool) -> (lo: Int, n: Int, result: UnsafeMutablePointer<Float>)? {
        let lo = shardLo[rank] + k * world.pieceElements
        let hi = min(shardHi[rank], lo + world.pieceElements)
        guard lo < hi else { return nil }
        let n = hi - lo, size = group.size
        ensureScratch()
        var acc = scratch!, other = scratch! + world.pieceElements
        Kernels.add(peers[0] + lo, peers[1] + lo, acc, count: n)  // acc = x0 + x1
        for j in 2..<max(2, size) {  // acc += xj, in rank order
            Kernels.add(acc, peers[j] + lo, other, count: n)
            swap(&acc, &other)
        }
        if mean { Kernels.scale(acc, by: 1 / Float(size), count: n) }
        return (lo, n, acc)
    }

    // MARK: - Communicator

    func barrier() throws {
        if group.size == 1 { return try single(.barrier) }
        _ = try begin(.barrier)
    }

    func allReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp) throws {
        try checkArguments(.allReduce, count: count)
        if group.size == 1 { return try single(.allReduce) }
        let s = try begin(.allReduce, count: count, arg: op.code, pointer: UnsafeMutableRawPointer(buffer))
        computeShards(count)
        let pieces = pieceCount, mean = op == .mean
        try reading(.allReduce, s) {
            // Shard r of every buffer is touched by rank r alone until the
            // final barrier, so no synchronisation is needed in between.
            for k in 0..<pieces {
                if world.isAborted { throw abortedError(call(.allReduce, s)) }
                guard let piece = reducePiece(k, mean: mean) else { continue }
                for j in 0..<group.size { (peers[j] + piece.lo).update(from: piece.result, count: piece.n) }
            }
            advance()
            try waitAll(phase, .allReduce, s)
        }
    }

    func reduceScatter(_ buffer: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp) throws {
        try reduceScatter(buffer, count: count, shards: nil, op: op)
    }

    func reduceScatter(_ buffer: UnsafeMutablePointer<Float>, count: Int, shards: [Range<Int>], op: ReduceOp) throws {
        try checkShards(shards, count: count, what: "reduceScatter")
        try reduceScatter(buffer, count: count, shards: Optional(shards), op: op)
    }

    private func reduceScatter(_ buffer: UnsafeMutablePointer<Float>, count: Int, shards: [Range<Int>]?, op: ReduceOp) throws {
        try checkArguments(.reduceScatter, count: count)
        if group.size == 1 { return try single(.reduceScatter) }
        let s = try begin(.reduceScatter, count: count, arg: op.code, pointer: UnsafeMutableRawPointer(buffer))
        if let shards { setShards(shards) } else { computeShards(count) }
        let pieces = pieceCount, mean = op == .mean
        try reading(.reduceScatter, s) {
            for k in 0..<pieces {
                if world.isAborted { throw abortedError(call(.reduceScatter, s)) }
                guard let piece = reducePiece(k, mean: mean) else { continue }
                (buffer + piece.lo).update(from: piece.result, count: piece.n)
            }
            advance()
            try waitAll(phase, .reduceScatter, s)
        }
    }

    func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        try allGather(buffer, count: count, shards: nil)
    }

    func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, shards: [Range<Int>]) throws {
        try checkShards(shards, count: count, what: "allGather")
        try allGather(buffer, count: count, shards: Optional(shards))
    }

    private func allGather(_ buffer: UnsafeMutablePointer<Float>, count: Int, shards: [Range<Int>]?) throws {
        try checkArguments(.allGather, count: count)
        if group.size == 1 { return try single(.allGather) }
        let s = try begin(.allGather, count: count, pointer: UnsafeMutableRawPointer(buffer))
        if let shards { setShards(shards) } else { computeShards(count) }
        try reading(.allGather, s) {
            // Push this rank's shard into every other buffer (writes to
            // shard r come from rank r alone).
            let lo = shardLo[rank], n = shardHi[rank] - lo
            if n > 0 {
                for j in 0..<group.size where j != rank { (peers[j] + lo).update(from: buffer + lo, count: n) }
            }
            advance()
            try waitAll(phase, .allGather, s)
        }
    }

    func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) throws {
        try checkArguments(.broadcast, count: count)
        guard root >= 0 && root < group.size else {
            throw ParmlError.invalidArgument("\(me): broadcast: root \(root) is outside 0..<\(group.size)")
        }
        if group.size == 1 { return try single(.broadcast) }
        let s = try begin(.broadcast, count: count, arg: root, pointer: UnsafeMutableRawPointer(buffer))
        try reading(.broadcast, s) {
            if rank != root && count > 0 { buffer.update(from: peers[root], count: count) }
            advance()
            try waitAll(phase, .broadcast, s)
        }
    }

    func send(_ buffer: UnsafePointer<Float>, count: Int, to peer: Int) throws {
        guard peer >= 0 && peer < group.size else {
            throw ParmlError.invalidArgument("\(me): send: peer \(peer) is outside 0..<\(group.size)")
        }
        guard count >= 0 else { throw ParmlError.invalidArgument("\(me): send: count must be >= 0, got \(count)") }
        let box = group.mailbox(from: rank, to: peer)
        let n = box.sentByOwner
        box.sentByOwner += 1
        if world.isAborted { throw abortedError("send #\(n) to rank \(peer)") }
        box.post(buffer, count: count)
        world.lot.wakeIfWaiting()
    }

    func reserveSends(to peer: Int, messages: Int, floats: Int) throws {
        guard peer >= 0 && peer < group.size, messages >= 0, floats >= 0 else {
            throw ParmlError.invalidArgument("\(me): reserveSends: peer \(peer), \(messages) messages of \(floats) floats")
        }
        group.mailbox(from: rank, to: peer).reserve(messages: messages, floats: floats)
    }

    func receive(_ buffer: UnsafeMutablePointer<Float>, count: Int, from peer: Int) throws {
        guard peer >= 0 && peer < group.size else {
            throw ParmlError.invalidArgument("\(me): receive: peer \(peer) is outside 0..<\(group.size)")
        }
        guard count >= 0 else { throw ParmlError.invalidArgument("\(me): receive: count must be >= 0, got \(count)") }
        let box = group.mailbox(from: peer, to: rank)
        let n = box.received
        // Built only on failure: a steady exchange allocates nothing.
        func what() -> String { "receive #\(n) from \(group.describe(peers: [peer]))" }
        if world.isAborted { throw abortedError(what()) }
        let outcome = world.wait { box.sent.load(ordering: .sequentiallyConsistent) > n }
        switch outcome {
        case .ready: break
        case .aborted: throw abortedError(what())
        case .timedOut: throw timeoutError(what(), missing: [peer])
        }
        let length = box.take(into: buffer, count: count)
        if length != count {
            throw ParmlError.communication(
                "\(me): \(what()): the message has \(length) floats but the receive expects \(count) (message dropped)")
        }
    }

    func split(color: Int, key: Int, name: String) throws -> Communicator {
        if group.size == 1 {
            try single(.split)
            return ThreadsCommunicator(
                group: GroupState(world: world, name: name, worldRanks: group.worldRanks, isWorld: false), rank: 0)
        }
        let s = try begin(.split, color: color, key: key)
        var newGroup: GroupState?
        var newRank = 0
        try reading(.split, s) {
            // Members of this rank's color, ordered by (key, rank in this group).
            var members: [(key: Int, rank: Int)] = []
            for j in 0..<group.size {
                let sl = group.slot(j, s).pointee
                if sl.color == color { members.append((sl.key, j)) }
            }
            members.sort { $0.key != $1.key ? $0.key < $1.key : $0.rank < $1.rank }
            newRank = members.firstIndex { $0.rank == rank }!
            let leader = members[0].rank
            if leader == rank {
                let g = GroupState(
                    world: world, name: name, worldRanks: members.map { group.worldRanks[$0.rank] }, isWorld: false)
                newGroup = g
                group.slot(rank, s).pointee.object = Unmanaged.passUnretained(g).toOpaque()
            }
            advance()
            try waitAll(phase, .split, s)
            if leader != rank {
                // The leader keeps its reference until the barrier below.
                newGroup = Unmanaged<GroupState>.fromOpaque(group.slot(leader, s).pointee.object!).takeUnretainedValue()
            }
            advance()
            try waitAll(phase, .split, s)
        }
        return ThreadsCommunicator(group: newGroup!, rank: newRank)
    }

    func abort(reason: String) {
        world.abort(reason: reason)
    }
}
