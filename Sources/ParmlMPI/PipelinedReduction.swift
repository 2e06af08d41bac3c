import ParmlParallel
import ParmlTensor
import _CParmlMPI

/// One reduce-scatter and/or all-gather over point-to-point messages, cut
/// into pieces and pipelined.
///
/// Rank r owns shard r (`Sharding.range`, the threads backend's cut, or
/// the shards the caller gives; some may be empty). Each
/// shard is cut into pieces of `pieceElements`; round k moves piece k of
/// every shard:
/// - reduce (phase 0): every rank sends piece k of shard r to its owner r;
///   the owner, once all peers' pieces of round k are in, adds the ranks'
///   values in rank order ((x0 + x1) + x2 ...), times 1/size for a mean,
///   exactly as ThreadsCommunicator does, and writes the result into its
///   own buffer;
/// - gather (phase 1): the owner sends its piece k to every rank, which
///   receives it in place. In an all-reduce a rank posts that receive only
///   once its own send of the same piece has completed (MPI forbids
///   writing a buffer that an unfinished send still reads).
///
/// At most `window` rounds of phase 0 are in flight: they bound the
/// receive slots (window × size pieces) and keep the messages of round
/// k + 1 travelling while round k is being added. One 64 MiB MPI_Allreduce
/// reaches only 1.8–2.0 GB/s here (DESIGN.md); pieces keep every message
/// in the range where Open MPI's shared-memory transport is fast.
struct PipelinedReduction {
    enum Failure: Error {
        case mpi(String, Int32)
        case length(peer: Int, bytes: Int32, expected: Int)
        case truncated(peer: Int, expected: Int)
    }

    private enum Role { case receivePiece, sendPiece, sendResult, receiveResult }

    private struct Pending {
        var request: pml_mpi_request?
        let role: Role
        let round: Int
        let peer: Int
        let elements: Int
    }

    private unowned let communicator: MPICommunicator
    private let comm: pml_mpi_comm
    private let rank: Int
    private let size: Int
    private let buffer: UnsafeMutablePointer<Float>
    private let reduce: Bool
    private let gather: Bool
    private let mean: Bool
    private let piece: Int
    private let window: Int
    private let shardLo: [Int]
    private let shardHi: [Int]
    /// Rounds: pieces in the longest shard.
    private let rounds: Int
    private let reduceTag: Int32
    private let gatherTag: Int32
    private let scratch: UnsafeMutablePointer<Float>
    private var pending: [Pending] = []
    /// Phase-0 receives still open, per round.
    private var openReceives: [Int]
    private var posted = 0
    private var reduced = 0
    /// All-reduce: per owner, the next round whose result receive is not
    /// posted yet, and which of my sends to it have completed. Receives
    /// from one peer must be posted in round order (MPI matches messages
    /// of one tag in posting order), though sends complete in any order.
    private var nextResult: [Int]
    private var sendDone: [Bool]

    init(
        communicator: MPICommunicator, kind: MPICollective, seq: Int, buffer: UnsafeMutablePointer<Float>, count: Int,
        reduce: Bool, gather: Bool, mean: Bool, shards given: [Range<Int>]? = nil
    ) {
        self.communicator = communicator
        comm = communicator.comm
        rank = communicator.rank
        size = communicator.size
        self.buffer = buffer
        self.reduce = reduce
        self.gather = gather
        self.mean = mean
        piece = communicator.world.pieceElements
        window = communicator.world.window(forSize: communicator.size)
        let shards = given ?? (0..<size).map { Sharding.range(count: count, parts: communicator.size, index: $0) }
        shardLo = shards.map(\.lowerBound)
        shardHi = shards.map(\.upperBound)
        rounds = ((shards.map(\.count).max() ?? 0) + piece - 1) / piece
        reduceTag = Tag.collective(kind, phase: 0, seq: seq)
        gatherTag = Tag.collective(kind, phase: 1, seq: seq)
        scratch = reduce ? communicator.ensureScratch() : buffer
        openReceives = [Int](repeating: 0, count: rounds)
        nextResult = [Int](repeating: 0, count: size)
        sendDone = [Bool](repeating: false, count: reduce && gather ? rounds * size : 0)
    }

    /// Piece k of shard r: its first element and length (0 when the shard is shorter).
    private func span(_ r: Int, _ k: Int) -> (lo: Int, n: Int) {
        let lo = shardLo[r] + k * piece
        return (lo, max(0, min(shardHi[r], lo + piece) - lo))
    }

    private func slot(_ k: Int, _ j: Int) -> UnsafeMutablePointer<Float> { scratch + ((k % window) * size + j) * piece }

    private mutating func post(_ role: Role, round k: Int, peer j: Int, at p: UnsafeMutablePointer<Float>, elements n: Int) throws {
        var request: pml_mpi_request? = nil
        let rc: Int32
        switch role {
        case .receivePiece: rc = pml_mpi_irecv_floats(p, Int32(n), Int32(j), reduceTag, comm, &request)
        case .sendPiece: rc = pml_mpi_isend_floats(p, Int32(n), Int32(j), reduceTag, comm, &request)
        case .sendResult: rc = pml_mpi_isend_floats(p, Int32(n), Int32(j), gatherTag, comm, &request)
        case .receiveResult: rc = pml_mpi_irecv_floats(p, Int32(n), Int32(j), gatherTag, comm, &request)
        }
        if rc != 0 { throw Failure.mpi("MPI_Isend/MPI_Irecv", rc) }
        pending.append(Pending(request: request, role: role, round: k, peer: j, elements: n))
    }

    /// Phase 0 of round k: receives of my piece from every peer, sends of
    /// every other owner's piece.
    private mutating func postRound(_ k: Int) throws {
        let mine = span(rank, k)
        for j in 0..<size where j != rank {
            if mine.n > 0 {
                try post(.receivePiece, round: k, peer: j, at: slot(k, j), elements: mine.n)
                openReceives[k] += 1
            }
            let theirs = span(j, k)
            if theirs.n > 0 { try post(.sendPiece, round: k, peer: j, at: buffer + theirs.lo, elements: theirs.n) }
        }
    }

    /// Sends my piece k (reduced, or my own data in an all-gather) to every peer.
    private mutating func sendResult(_ k: Int) throws {
        let mine = span(rank, k)
        guard mine.n > 0 else { return }
        for j in 0..<size where j != rank {
            try post(.sendResult, round: k, peer: j, at: buffer + mine.lo, elements: mine.n)
        }
    }

    mutating func start() throws {
        if reduce { return try fill() }
        // All-gather alone: nothing to wait for before moving the pieces.
        for k in 0..<rounds {
            try sendResult(k)
            for r in 0..<size where r != rank {
                let theirs = span(r, k)
                if theirs.n > 0 { try post(.receiveResult, round: k, peer: r, at: buffer + theirs.lo, elements: theirs.n) }
            }
        }
    }

    private mutating func fill() throws {
        while posted < rounds && posted < reduced + window {
            try postRound(posted)
            posted += 1
        }
    }

    /// Rank-order sum of piece k of my shard (× 1/size for a mean) into my buffer.
    private func add(_ k: Int) {
        let mine = span(rank, k)
        guard mine.n > 0 else { return }
        let out = buffer + mine.lo
        func value(_ j: Int) -> UnsafeMutablePointer<Float> { j == rank ? out : slot(k, j) }
        if rank < 2 {
            // My values are the first or second term, and v0 + v1 == v1 + v0
            // bit for bit (IEEE addition is commutative), so the sum can
            // grow in place: out += the other of ranks 0 and 1, then
            // out += v2, v3, ... (no copy; Kernels.addInPlace vectorises,
            // as its output never overlaps its input).
            Kernels.addInPlace(out, value(1 - rank), count: mine.n)
            for j in 2..<max(2, size) { Kernels.addInPlace(out, value(j), count: mine.n) }
        } else {
            // Two accumulators in turn: Kernels.add vectorises only when its
            // output overlaps neither input (see ThreadsCommunicator).
            var acc = scratch + window * size * piece, other = acc + piece
            Kernels.add(value(0), value(1), acc, count: mine.n)
            for j in 2..<size {
                Kernels.add(acc, value(j), other, count: mine.n)
                swap(&acc, &other)
            }
            out.update(from: acc, count: mine.n)
        }
        if mean { Kernels.scale(out, by: 1 / Float(size), count: mine.n) }
    }

    /// Tests every open request once, reacts to completions, and reduces
    /// the rounds whose pieces are all in.
    mutating func step() throws -> MPICommunicator.Progress {
        var progressed = false
        var i = 0
        while i < pending.count {
            var done: Int32 = 0, bytes: Int32 = 0
            let rc = pml_mpi_test(&pending[i].request, &done, nil, &bytes)
            let p = pending[i]
            if rc == Int32(PML_MPI_ERR_TRUNCATE) { throw Failure.truncated(peer: p.peer, expected: p.elements) }
            if rc != 0 { throw Failure.mpi("MPI_Test", rc) }
            guard done != 0 else {
                i += 1
                continue
            }
            progressed = true
            pending.swapAt(i, pending.count - 1)
            pending.removeLast()
            switch p.role {
            case .receivePiece, .receiveResult:
                if Int(bytes) != 4 * p.elements { throw Failure.length(peer: p.peer, bytes: bytes, expected: p.elements) }
                if p.role == .receivePiece { openReceives[p.round] -= 1 }
            case .sendPiece:
                if gather { sendDone[p.round * size + p.peer] = true }
            case .sendResult:
                break
            }
        }
        if reduce && gather { try postResultReceives() }
        if reduce {
            while reduced < posted && openReceives[reduced] == 0 {
                add(reduced)
                if gather { try sendResult(reduced) }
                reduced += 1
                progressed = true
            }
            try fill()
        }
        let resultsPosted = !(reduce && gather) || (0..<size).allSatisfy { $0 == rank || nextResult[$0] == rounds }
        if pending.isEmpty && (!reduce || reduced == rounds) && resultsPosted { return .done }
        return progressed ? .progressed : .idle
    }

    /// The pieces I sent to their owners come back reduced, in place: post
    /// those receives once the sends are done, in round order per owner.
    private mutating func postResultReceives() throws {
        for r in 0..<size where r != rank {
            while nextResult[r] < posted {
                let k = nextResult[r], theirs = span(r, k)
                if theirs.n > 0 {
                    guard sendDone[k * size + r] else { break }
                    try post(.receiveResult, round: k, peer: r, at: buffer + theirs.lo, elements: theirs.n)
                }
                nextResult[r] += 1
            }
        }
    }

    /// The peers this rank still waits for (for the watchdog's message):
    /// those whose pieces have not arrived, else those whose results have
    /// not, else those its sends wait on. A stalled rank holds up its
    /// peers' results too; naming only the missing inputs blames it alone.
    func waitingFor() -> [Int] {
        for roles in [[Role.receivePiece], [.receiveResult], [.sendPiece, .sendResult]] {
            let peers = Set(pending.filter { roles.contains($0.role) }.map(\.peer))
            if !peers.isEmpty { return peers.sorted() }
        }
        return []
    }

    /// Leaving after a failure: cancels what is still open.
    mutating func cancelAll() {
        for i in pending.indices { pml_mpi_cancel(&pending[i].request) }
        pending.removeAll()
    }
}
