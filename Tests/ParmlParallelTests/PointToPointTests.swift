import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlParallel

extension ParallelTests {
@Suite("send/receive and groups")
struct PointToPointTests {
    /// Every rank sends first (buffered), then receives: a ring that would
    /// deadlock with unbuffered sends. Several messages per pair, FIFO.
    @Test(arguments: [2, 3, 4])
    func ringOfBufferedSendsKeepsOrder(size: Int) throws {
        let world = try ThreadsWorld(size: size, timeout: 5)
        let pool = try RankPool(size: size)
        let problems = PerRank<[String]>(size)
        let lengths = [5, 0, 1000, 3, 70_000, 5]
        for _ in 0..<3 {  // again: the mailbox buffers are reused
            try pool.run(world: world) { r in
                let comm = world.communicator(rank: r)
                let next = (r + 1) % size, prev = (r + size - 1) % size
                for (m, n) in lengths.enumerated() {
                    let b = FloatBuffer(rankValues(rank: r * 100 + m, count: n))
                    try comm.send(b.pointer, count: n, to: next)
                    b.set([Float](repeating: -1, count: n))  // the send copied already
                }
                var found: [String] = []
                for (m, n) in lengths.enumerated() {
                    let b = FloatBuffer(count: n, value: 0)
                    try comm.receive(b.pointer, count: n, from: prev)
                    if let d = bitwiseDifference(b.array, rankValues(rank: prev * 100 + m, count: n), "message \(m)") {
                        found.append(d)
                    }
                }
                problems[r] = found
            }
        }
        for r in 0..<size { #expect(problems[r] == []) }
    }

    @Test func bothRanksSendToEachOtherFirst() throws {
        let world = try ThreadsWorld(size: 2, timeout: 5)
        let pool = try RankPool(size: 2)
        let got = PerRank<[Float]>(2)
        try pool.run(world: world) { r in
            let comm = world.communicator(rank: r)
            let mine = FloatBuffer([Float(r), Float(r) + 0.5])
            try comm.send(mine.pointer, count: 2, to: 1 - r)
            let theirs = FloatBuffer(count: 2, value: 0)
            try comm.receive(theirs.pointer, count: 2, from: 1 - r)
            got[r] = theirs.array
        }
        #expect(got[0] == [1, 1.5])
        #expect(got[1] == [0, 0.5])
    }

    @Test func lengthMismatchNamesBothLengths() throws {
        let world = try ThreadsWorld(size: 2, timeout: 5)
        let pool = try RankPool(size: 2)
        #expect(throws: ParmlError.communication(
            "rank 1 of world: receive #0 from rank 0: the message has 10 floats but the receive expects 12 (message dropped)"
        )) {
            try pool.run(world: world) { r in
                let comm = world.communicator(rank: r)
                let b = FloatBuffer(count: 12, value: 1)
                if r == 0 { try comm.send(b.pointer, count: 10, to: 1) } else { try comm.receive(b.pointer, count: 12, from: 0) }
            }
        }
    }

    /// The host-side split builds the same groups as the collective one,
    /// before any rank runs; collectives and messages stay inside each group.
    @Test func hostSideSplitMakesTheSameGroups() throws {
        let size = 6
        let count = 3000
        let world = try ThreadsWorld(size: size, timeout: 5)
        let colors = (0..<size).map { $0 % 3 }
        let keys = (0..<size).map { -$0 }
        let subs = try world.split(colors: colors, keys: keys, name: "mod3")
        expectEqualElements(subs.map(\.size), Array(repeating: 2, count: size))
        // Each pair is ordered by key (descending world rank here).
        #expect(subs.map(\.rank) == [1, 1, 1, 0, 0, 0])
        let pool = try RankPool(size: size)
        let inputs = (0..<size).map { rankValues(rank: $0, count: count, seed: 9) }
        let problems = PerRank<[String]>(size)
        try pool.run(world: world) { r in
            let sub = subs[r]
            let buf = FloatBuffer(inputs[r])
            try sub.allReduce(buf.pointer, count: count, op: .sum)
            let members = [r % 3 + 3, r % 3]  // key order: the larger world rank first
            var found: [String] = []
            if let d = bitwiseDifference(buf.array, referenceReduce(members.map { inputs[$0] }, mean: false), "allReduce") {
                found.append(d)
            }
            let peer = 1 - sub.rank
            buf.set(inputs[r])
            try sub.send(buf.pointer, count: count, to: peer)
            try sub.receive(buf.pointer, count: count, from: peer)
            if let d = bitwiseDifference(buf.array, inputs[members[peer]], "send/receive") { found.append(d) }
            problems[r] = found
        }
        for r in 0..<size { #expect(problems[r] == []) }
        #expect(throws: ParmlError.self) { _ = try world.split(colors: [0], keys: [0], name: "short") }
    }

    /// Odd and even ranks form groups (keys reverse the order in one of
    /// them); collectives inside each group involve only its members.
    @Test(arguments: [3, 4])
    func splitIntoOddAndEvenGroups(size: Int) throws {
        let count = 5000
        let world = try ThreadsWorld(size: size, timeout: 5)
        let pool = try RankPool(size: size)
        let inputs = (0..<size).map { rankValues(rank: $0, count: count, seed: 5) }
        let problems = PerRank<[String]>(size)
        try pool.run(world: world) { r in
            let comm = world.communicator(rank: r)
            let color = r % 2
            // Even group ordered by world rank, odd group reversed.
            let sub = try comm.split(color: color, key: color == 0 ? r : -r, name: color == 0 ? "even" : "odd")
            var members = Array(stride(from: color, to: size, by: 2))
            if color == 1 { members.reverse() }
            var found: [String] = []
            if sub.size != members.count { found.append("size \(sub.size), expected \(members.count)") }
            if sub.rank != members.firstIndex(of: r)! { found.append("rank \(sub.rank)") }
            if sub.name != (color == 0 ? "even" : "odd") { found.append("name \(sub.name)") }
            let buf = FloatBuffer(inputs[r])
            try sub.allReduce(buf.pointer, count: count, op: .sum)
            let want = referenceReduce(members.map { inputs[$0] }, mean: false)
            if let d = bitwiseDifference(buf.array, want, "group allReduce") { found.append(d) }
            buf.set(inputs[r])
            try sub.broadcast(buf.pointer, count: count, root: 0)
            if let d = bitwiseDifference(buf.array, inputs[members[0]], "group broadcast") { found.append(d) }
            try sub.barrier()
            try comm.barrier()  // the parent group still works
            // Groups inside groups.
            let single = try sub.split(color: sub.rank, key: 0, name: "single")
            if single.size != 1 { found.append("nested size \(single.size)") }
            problems[r] = found
        }
        for r in 0..<size { #expect(problems[r] == []) }
    }
}
}
