import ParmlTensor
import Testing

@testable import ParmlParallel

/// Collectives against the definition, bit for bit, on every size and a
/// range of counts (empty, tiny, unaligned, several pieces).
extension ParallelTests {
@Suite("collectives")
struct CollectiveTests {
    @Test(arguments: [1, 2, 3, 4], [0, 1, 7, 1000, 1025, 300_000])
    func collectivesMatchTheDefinition(size: Int, count: Int) throws {
        let world = try ThreadsWorld(size: size, timeout: 10, name: "t")
        let pool = try RankPool(size: size)
        let inputs = (0..<size).map { rankValues(rank: $0, count: count) }
        let sum = referenceReduce(inputs, mean: false)
        let mean = referenceReduce(inputs, mean: true)
        let problems = PerRank<[String]>(size)
        // Small chunks too, so that 300_000 runs through many pieces.
        try pool.run(world: world) { r in
            let comm = world.communicator(rank: r)
            var found: [String] = []
            func check(_ got: [Float], _ want: [Float], _ what: String) {
                if let d = bitwiseDifference(got, want, "rank \(r) \(what)") { found.append(d) }
            }
            let buf = FloatBuffer(inputs[r])
            try comm.allReduce(buf.pointer, count: count, op: .sum)
            check(buf.array, sum, "allReduce sum")
            buf.set(inputs[r])
            try comm.allReduce(buf.pointer, count: count, op: .mean)
            check(buf.array, mean, "allReduce mean")

            let shard = Sharding.range(count: count, parts: size, index: r)
            for (op, want) in [(ReduceOp.sum, sum), (.mean, mean)] {
                buf.set(inputs[r])
                try comm.reduceScatter(buf.pointer, count: count, op: op)
                var expected = inputs[r]
                expected.replaceSubrange(shard, with: want[shard])
                check(buf.array, expected, "reduceScatter \(op)")
            }

            // allGather: shard r holds this rank's values, the rest is junk.
            var start = [Float](repeating: .nan, count: count)
            start.replaceSubrange(shard, with: inputs[r][shard])
            buf.set(start)
            try comm.allGather(buf.pointer, count: count)
            var gathered = [Float](repeating: 0, count: count)
            for j in 0..<size {
                let s = Sharding.range(count: count, parts: size, index: j)
                gathered.replaceSubrange(s, with: inputs[j][s])
            }
            check(buf.array, gathered, "allGather")

            for root in 0..<size {
                buf.set(inputs[r])
                try comm.broadcast(buf.pointer, count: count, root: root)
                check(buf.array, inputs[root], "broadcast from \(root)")
            }
            try comm.barrier()
            problems[r] = found
        }
        for r in 0..<size {
            #expect(problems[r] == [], "size \(size), count \(count)")
        }
    }

    @Test(arguments: [2, 3, 4])
    func smallChunksPipelineManyPieces(size: Int) throws {
        let count = 100_003
        let world = try ThreadsWorld(size: size, timeout: 10, chunkBytes: 4096)
        let pool = try RankPool(size: size)
        let inputs = (0..<size).map { rankValues(rank: $0, count: count, seed: 9) }
        let sum = referenceReduce(inputs, mean: false)
        let problems = PerRank<String>(size)
        try pool.run(world: world) { r in
            let buf = FloatBuffer(inputs[r])
            try world.communicator(rank: r).allReduce(buf.pointer, count: count, op: .sum)
            problems[r] = bitwiseDifference(buf.array, sum, "rank \(r)")
        }
        for r in 0..<size { #expect(problems[r] == nil) }
    }

    /// Same inputs, random delays before every call: the same bits every time.
    @Test(arguments: [3, 4])
    func deterministicUnderRandomTiming(size: Int) throws {
        let count = 20_000
        let world = try ThreadsWorld(size: size, timeout: 10)
        let pool = try RankPool(size: size)
        let inputs = (0..<size).map { rankValues(rank: $0, count: count, seed: 3) }
        let sum = referenceReduce(inputs, mean: false)
        let mean = referenceReduce(inputs, mean: true)
        let problems = PerRank<[String]>(size)
        for r in 0..<size { problems[r] = [] }
        for rep in 0..<100 {
            try pool.run(world: world) { r in
                var g = SplitMix(state: UInt64(rep * 31 + r))
                let comm = world.communicator(rank: r)
                let buf = FloatBuffer(inputs[r])
                sleepMicroseconds(Int(g.next() % 300))
                try comm.allReduce(buf.pointer, count: count, op: .sum)
                if let d = bitwiseDifference(buf.array, sum, "rep \(rep) rank \(r) sum") { problems[r]!.append(d) }
                buf.set(inputs[r])
                sleepMicroseconds(Int(g.next() % 300))
                try comm.allReduce(buf.pointer, count: count, op: .mean)
                if let d = bitwiseDifference(buf.array, mean, "rep \(rep) rank \(r) mean") { problems[r]!.append(d) }
            }
        }
        for r in 0..<size { #expect(problems[r]! == []) }
    }

    @Test func shardingCoversTheBufferWithAlignedBoundaries() {
        for count in [0, 1, 7, 1000, 1023, 1024, 1025, 4096, 300_000, 1_048_577] {
            for parts in 1...9 {
                for alignment in [1, 3, 1024] {
                    var next = 0
                    var sizes: [Int] = []
                    for index in 0..<parts {
                        let r = Sharding.range(count: count, parts: parts, index: index, alignment: alignment)
                        #expect(r.lowerBound == next, "count \(count) parts \(parts) index \(index)")
                        #expect(r.lowerBound % alignment == 0 || r.lowerBound == count)
                        next = r.upperBound
                        sizes.append(r.count)
                    }
                    #expect(next == count)
                    // Balanced: block counts differ by at most one (the last block may be partial).
                    let blocks = sizes.map { ($0 + alignment - 1) / alignment }
                    #expect((blocks.max() ?? 0) - (blocks.min() ?? 0) <= 1)
                }
            }
        }
    }

    /// Given shards (a gradient bucket meeting some ranks' ZeRO shards):
    /// each rank's shard gets the rank-order sum, empty shards take
    /// nothing, the rest of every buffer stays; bad shards are refused.
    @Test(arguments: [2, 3, 4], [10, 300_000])
    func reduceScatterWithGivenShards(size: Int, count: Int) throws {
        let world = try ThreadsWorld(size: size, timeout: 10, name: "t")
        let pool = try RankPool(size: size)
        let inputs = (0..<size).map { rankValues(rank: $0, count: count) }
        let sum = referenceReduce(inputs, mean: false)
        let shards = unevenShards(size: size, count: count)
        let problems = PerRank<[String]>(size)
        try pool.run(world: world) { r in
            let comm = world.communicator(rank: r)
            let buf = FloatBuffer(inputs[r])
            try comm.reduceScatter(buf.pointer, count: count, shards: shards, op: .sum)
            var expected = inputs[r]
            expected.replaceSubrange(shards[r], with: sum[shards[r]])
            problems[r] = bitwiseDifference(buf.array, expected, "rank \(r)").map { [$0] } ?? []
            if r == 0 {
                #expect(throws: ParmlError.self) { try comm.reduceScatter(buf.pointer, count: count, shards: [0..<1], op: .sum) }
                let overlapping = [0..<2] + (1..<size).map { _ in 1..<3 }
                #expect(throws: ParmlError.self) { try comm.reduceScatter(buf.pointer, count: count, shards: overlapping, op: .sum) }
            }
        }
        for r in 0..<size { #expect(problems[r] == [], "size \(size), count \(count)") }
    }

    /// Given shards for an all-gather (one layer's parameters meeting some
    /// ranks' ZeRO-3 shards): each shard is copied to every rank, the rest
    /// of every buffer stays; bad shards are refused.
    @Test(arguments: [2, 3, 4], [10, 300_000])
    func allGatherWithGivenShards(size: Int, count: Int) throws {
        let world = try ThreadsWorld(size: size, timeout: 10, name: "t")
        let pool = try RankPool(size: size)
        let inputs = (0..<size).map { rankValues(rank: $0, count: count) }
        let shards = unevenShards(size: size, count: count)
        let problems = PerRank<[String]>(size)
        try pool.run(world: world) { r in
            let comm = world.communicator(rank: r)
            let buf = FloatBuffer(inputs[r])
            try comm.allGather(buf.pointer, count: count, shards: shards)
            var expected = inputs[r]
            for s in 0..<size { expected.replaceSubrange(shards[s], with: inputs[s][shards[s]]) }
            problems[r] = bitwiseDifference(buf.array, expected, "rank \(r)").map { [$0] } ?? []
            if r == 0 {
                #expect(throws: ParmlError.self) { try comm.allGather(buf.pointer, count: count, shards: [0..<1]) }
            }
        }
        for r in 0..<size { #expect(problems[r] == [], "size \(size), count \(count)") }
    }

    /// Rank 0 gets nothing; the others split [count/5, count) unevenly, with a gap.
    private func unevenShards(size: Int, count: Int) -> [Range<Int>] {
        var shards = [0..<0]
        let lo = count / 5, step = (count - lo) / (size - 1)
        for r in 1..<size { shards.append((lo + (r - 1) * step + (r == 1 ? 1 : 0))..<(r == size - 1 ? count : lo + r * step)) }
        return shards
    }

    @Test func barriersAndSequenceNumbersOnOneRank() throws {
        let world = try ThreadsWorld(size: 1, timeout: 1)
        let comm = world.communicator(rank: 0)
        let buf = FloatBuffer([1, 2, 3])
        try comm.barrier()
        try comm.allReduce(buf.pointer, count: 3, op: .mean)
        #expect(buf.array == [1, 2, 3])
        let sub = try comm.split(color: 5, key: 0, name: "solo")
        #expect(sub.rank == 0 && sub.size == 1 && sub.name == "solo")
        world.abort(reason: "stop here")
        #expect(throws: ParmlError.communication("rank 0 of world: barrier #3 failed: stop here")) { try comm.barrier() }
    }
}
}
