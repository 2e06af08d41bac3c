// The MPI backend under mpirun (tests/mpi/run_mpi_tests.sh launches it).
//
//   ParmlMPISelfTest collectives       every collective against a reference
//                                      computed here, bitwise, and against
//                                      the threads backend on the same inputs
//   ParmlMPISelfTest exit|exit0|kill|stall|abort|abort-group|mismatch
//                                      failure injection: the last rank exits
//                                      (status 3, or 0 without MPI_Finalize),
//                                      is killed (SIGKILL), stalls past the
//                                      watchdog, aborts with a reason (on the
//                                      world or on a sub-group), or
//                                      calls allReduce with another count,
//                                      while the others wait in an allReduce
//   ParmlMPISelfTest loaded            MPI is not touched before it is asked for
//
// Every rank prints "rank R: ..." lines; a failed check exits 1 through
// MPI_Abort, so mpirun's exit status is the verdict.

import ParmlMPI
import ParmlParallel
import ParmlTensor

#if canImport(Glibc)
import Glibc
#endif

/// One line on stdout, unbuffered (MPI_Abort may follow at once).
func say(_ text: String) {
    let line = text + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}

func fail(_ world: MPIWorld?, _ message: String) -> Never {
    let line = "rank \(world?.rank ?? -1): FAILED: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    if let world { world.abortJob(reason: message) }
    exit(1)
}

/// Rank r's input: values of many magnitudes, so that another summation
/// order gives other bits.
func input(rank: Int, count: Int, seed: Int) -> [Float] {
    var x = UInt64(truncatingIfNeeded: seed &* 7919 &+ rank &* 104_729 &+ 1)
    return (0..<count).map { _ in
        x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let mantissa = Float(Int64(bitPattern: x >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        let exponent = Int((x >> 3) % 24) - 12
        return mantissa * Float(sign: .plus, exponent: exponent, significand: 1)
    }
}

/// ((v0 + v1) + v2) + ... element-wise, then × (1/size) for a mean.
func rankOrderSum(_ inputs: [[Float]], mean: Bool) -> [Float] {
    var acc = inputs[0]
    for r in 1..<inputs.count { for i in acc.indices { acc[i] = acc[i] + inputs[r][i] } }
    if mean {
        let s = 1 / Float(inputs.count)
        for i in acc.indices { acc[i] *= s }
    }
    return acc
}

func sameBits(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// The threads backend's allReduce on the same inputs, in this process.
func threadsAllReduce(_ inputs: [[Float]], op: ReduceOp) throws -> [Float] {
    let size = inputs.count
    let world = try ThreadsWorld(size: size, timeout: 30, name: "threads")
    let pool = try RankPool(size: size)
    let buffers = inputs.map { v -> UnsafeMutablePointer<Float> in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(v.count, 1))
        p.initialize(from: v, count: v.count)
        return p
    }
    defer { for b in buffers { b.deallocate() } }
    try pool.run(world: world) { r in
        try world.communicator(rank: r).allReduce(buffers[r], count: inputs[r].count, op: op)
    }
    return Array(UnsafeBufferPointer(start: buffers[0], count: inputs[0].count))
}

func checkCollectives(_ world: MPIWorld) throws {
    let comm = world.communicator
    let (rank, size) = (world.rank, world.size)
    // 0 and odd sizes, one block, several pieces of a 64 KiB chunk, and a
    // shard boundary off the piece grid.
    let counts = [0, 1, 5, 1023, 1024, 4097, 40_000, 100_003]
    var seed = 0
    for count in counts {
        for op in [ReduceOp.sum, .mean] {
            seed += 1
            let inputs = (0..<size).map { input(rank: $0, count: count, seed: seed) }
            let reference = rankOrderSum(inputs, mean: op == .mean)
            var buffer = inputs[rank]
            try buffer.withUnsafeMutableBufferPointer { try comm.allReduce($0.baseAddress!, count: count, op: op) }
            guard sameBits(buffer[...], reference[...]) else { fail(world, "allReduce count \(count) \(op) differs from the rank-order sum") }
            if rank == 0 && count > 0 {
                let threads = try threadsAllReduce(inputs, op: op)
                guard sameBits(buffer[...], threads[...]) else { fail(world, "allReduce count \(count) \(op) differs from the threads backend") }
            }

            var scattered = inputs[rank]
            try scattered.withUnsafeMutableBufferPointer { try comm.reduceScatter($0.baseAddress!, count: count, op: op) }
            let mine = Sharding.range(count: count, parts: size, index: rank)
            guard sameBits(scattered[mine], reference[mine]) else { fail(world, "reduceScatter count \(count) \(op): own shard") }
            var others = scattered, original = inputs[rank]
            others.removeSubrange(mine)
            original.removeSubrange(mine)
            guard sameBits(others[...], original[...]) else { fail(world, "reduceScatter count \(count): other shards changed") }

            // Given shards (a gradient bucket meeting some ranks' ZeRO shards):
            // rank 0's empty, the others splitting [count/5, count) unevenly.
            guard size > 1, op == .sum else { continue }
            let lo = count / 5, step = (count - lo) / (size - 1)
            let shards = [0..<0] + (1..<size).map { r -> Range<Int> in
                let first = min(lo + (r - 1) * step + (r == 1 ? 1 : 0), count)
                return first..<max(first, r == size - 1 ? count : lo + r * step)
            }
            var bucket = inputs[rank]
            try bucket.withUnsafeMutableBufferPointer { try comm.reduceScatter($0.baseAddress!, count: count, shards: shards, op: .sum) }
            var want = inputs[rank]
            want.replaceSubrange(shards[rank], with: reference[shards[rank]])
            guard sameBits(bucket[...], want[...]) else { fail(world, "reduceScatter with given shards, count \(count)") }
        }
        // allGather: each rank contributes its shard of its own input.
        seed += 1
        let inputs = (0..<size).map { input(rank: $0, count: count, seed: seed) }
        var expected = [Float](repeating: 0, count: count)
        for r in 0..<size { let s = Sharding.range(count: count, parts: size, index: r); expected[s] = inputs[r][s] }
        var gathered = inputs[rank]
        try gathered.withUnsafeMutableBufferPointer { try comm.allGather($0.baseAddress!, count: count) }
        guard sameBits(gathered[...], expected[...]) else { fail(world, "allGather count \(count)") }
        // Given shards (one layer's parameters meeting some ranks' ZeRO-3
        // shards): rank 0's empty, the others [count/5, count) unevenly;
        // each shard lands everywhere, the rest of every buffer stays.
        if size > 1 {
            let lo = count / 5, step = (count - lo) / (size - 1)
            let shards = [0..<0] + (1..<size).map { r -> Range<Int> in
                let first = min(lo + (r - 1) * step + (r == 1 ? 1 : 0), count)
                return first..<max(first, r == size - 1 ? count : lo + r * step)
            }
            var block = inputs[rank], want = inputs[rank]
            for r in 0..<size { want.replaceSubrange(shards[r], with: inputs[r][shards[r]]) }
            try block.withUnsafeMutableBufferPointer { try comm.allGather($0.baseAddress!, count: count, shards: shards) }
            guard sameBits(block[...], want[...]) else { fail(world, "allGather with given shards, count \(count)") }
        }
        for root in 0..<size {
            var b = inputs[rank]
            try b.withUnsafeMutableBufferPointer { try comm.broadcast($0.baseAddress!, count: count, root: root) }
            guard sameBits(b[...], inputs[root][...]) else { fail(world, "broadcast count \(count) root \(root)") }
        }
    }
    try comm.barrier()
    say("rank \(rank): collectives (reduce-scatter and all-gather with given shards too) bitwise equal to the rank-order sum and to the threads backend (\(counts.count) sizes)")
}

func checkSendReceive(_ world: MPIWorld) throws {
    let comm = world.communicator
    let (rank, size) = (world.rank, world.size)
    let next = (rank + 1) % size, previous = (rank - 1 + size) % size
    // Three messages of different lengths; FIFO per pair.
    let lengths = [3, 70_000, 0, 17]
    for (i, n) in lengths.enumerated() {
        let payload = input(rank: rank, count: n, seed: 1000 + i)
        try payload.withUnsafeBufferPointer { try comm.send($0.baseAddress!, count: n, to: next) }
    }
    for (i, n) in lengths.enumerated() {
        var got = [Float](repeating: -1, count: n)
        try got.withUnsafeMutableBufferPointer { try comm.receive($0.baseAddress!, count: n, from: previous) }
        guard sameBits(got[...], input(rank: previous, count: n, seed: 1000 + i)[...]) else { fail(world, "message \(i) from rank \(previous)") }
    }
    // A length mismatch is an error for that message only.
    var five: [Float] = [1, 2, 3, 4, 5]
    try five.withUnsafeBufferPointer { try comm.send($0.baseAddress!, count: 5, to: next) }
    try five.withUnsafeBufferPointer { try comm.send($0.baseAddress!, count: 2, to: next) }
    do {
        try five.withUnsafeMutableBufferPointer { try comm.receive($0.baseAddress!, count: 4, from: previous) }
        fail(world, "a 5-float message received as 4 floats")
    } catch let e as ParmlError {
        guard e.kind == "communication", e.message.contains("has 5 floats but the receive expects 4") else { fail(world, "mismatch error: \(e)") }
    }
    try five.withUnsafeMutableBufferPointer { try comm.receive($0.baseAddress!, count: 2, from: previous) }
    guard five[0] == 1 && five[1] == 2 else { fail(world, "message after a mismatch") }
    try comm.barrier()
    say("rank \(rank): send/receive FIFO per pair, length mismatch reported and dropped")
}

func checkSplit(_ world: MPIWorld) throws {
    let comm = world.communicator
    let (rank, size) = (world.rank, world.size)
    // Two colors, keys reversing the order inside each.
    let sub = try comm.split(color: rank % 2, key: -rank, name: "half")
    let members = (0..<size).filter { $0 % 2 == rank % 2 }.sorted { $0 > $1 }
    guard sub.size == members.count, sub.rank == members.firstIndex(of: rank)! else {
        fail(world, "split: rank \(sub.rank) of \(sub.size), expected \(members.firstIndex(of: rank)!) of \(members.count)")
    }
    let count = 9000
    let inputs = members.map { input(rank: $0, count: count, seed: 77) }
    var buffer = input(rank: rank, count: count, seed: 77)
    try buffer.withUnsafeMutableBufferPointer { try sub.allReduce($0.baseAddress!, count: count, op: .mean) }
    guard sameBits(buffer[...], rankOrderSum(inputs, mean: true)[...]) else { fail(world, "allReduce in a split group") }
    // A split of the split: every rank alone.
    let single = try sub.split(color: sub.rank, key: 0, name: "single")
    guard single.size == 1 && single.rank == 0 else { fail(world, "split into singletons") }
    try single.allReduce(&buffer, count: count, op: .sum)
    // Send/receive inside the group (group ranks, not world ranks).
    if sub.size > 1 {
        let to = (sub.rank + 1) % sub.size, from = (sub.rank - 1 + sub.size) % sub.size
        var v = [Float(rank)]
        try sub.send(&v, count: 1, to: to)
        try sub.receive(&v, count: 1, from: from)
        guard Int(v[0]) == members[from] else { fail(world, "group message from group rank \(from)") }
    }
    try comm.barrier()
    say("rank \(rank): split groups ordered by (key, rank); collectives and messages inside them")
}

/// One failure: the last rank misbehaves while the others wait in an allReduce.
func injectFailure(_ mode: String, _ world: MPIWorld) -> Never {
    let comm = world.communicator
    let victim = world.size - 1
    var buffer = [Float](repeating: 1, count: 300_000)
    // A sub-group, made by every rank (split is collective).
    let half = try? comm.split(color: world.rank % 2, key: world.rank, name: "half")
    try? comm.barrier()
    let start = nowSeconds()
    if world.rank == victim {
        switch mode {
        case "exit": exit(3)
        case "exit0": exit(0)  // without MPI_Finalize
        case "kill": raise(SIGKILL)
        case "stall": sleep(30)
        case "mismatch": break
        // An abort in a sub-group reaches every group of the world.
        case "abort-group": half?.abort(reason: "rank \(victim) failed in group half: injected failure")
        default: world.abort(reason: "rank \(victim) failed: injected failure")
        }
    }
    // mismatch: the victim's call has another count than its peers'.
    let count = mode == "mismatch" && world.rank == victim ? buffer.count / 3 : buffer.count
    do {
        for _ in 0..<3 { try comm.allReduce(&buffer, count: count, op: .sum) }
        fail(world, "the allReduce returned although rank \(victim) \(mode == "abort" ? "aborted" : "is gone")")
    } catch {
        let elapsed = nowSeconds() - start
        say("rank \(world.rank): error after \(format2(elapsed)) s: \(error)")
        world.abortJob(reason: "\(error)")
    }
}

func nowSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func format2(_ x: Double) -> String { "\((x * 100).rounded() / 100)" }

let mode = CommandLine.arguments.dropFirst().first ?? "collectives"
if mode == "loaded" {
    // Asking for the rank must not initialise MPI.
    let (r, n) = try MPIRuntime.processRankAndSize()
    guard !MPIRuntime.isActive, r == 0, n == 1 else { fail(nil, "rank query touched MPI: \(r) of \(n)") }
    say("MPI untouched: rank 0 of 1 before initialisation")
    exit(0)
}
let timeout = mode == "collectives" ? 60.0 : 2.0
let world: MPIWorld
do {
    // Small pieces, so that the test sizes run through several rounds.
    world = try MPIWorld(timeout: timeout, name: "world", chunkBytes: 64 << 10, window: 2)
} catch {
    fail(nil, "MPIWorld: \(error)")
}
if mode == "collectives" {
    do {
        let (r, n) = try MPIRuntime.processRankAndSize()
        guard r == world.rank, n == world.size, world.size >= 2 else { fail(world, "rank \(r) of \(n)") }
        try checkCollectives(world)
        try checkSendReceive(world)
        try checkSplit(world)
    } catch {
        fail(world, "\(error)")
    }
    withExtendedLifetime(world) {}
    guard (try? MPIRuntime.finalize()) == true else { fail(nil, "MPIRuntime.finalize did not finalize") }
    say("rank \(world.rank): ok")
} else {
    injectFailure(mode, world)
}
