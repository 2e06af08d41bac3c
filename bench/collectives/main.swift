// Collective bandwidth of the threads backend, against memcpy measured in
// the same run (DESIGN.md: benchmarks report ratios, never bare times).
//
//   swift build -c release --product ParmlBenchCollectives
//   .build/release/ParmlBenchCollectives            # the recorded figures
//   .build/release/ParmlBenchCollectives --verbose  # also every repetition
//   .build/release/ParmlBenchCollectives --sweep    # chunk sizes, for tuning
//   .build/release/ParmlBenchCollectives --latency  # small calls, in µs
//
// allReduce(sum) between 2 ranks (threads); bus bandwidth = 2(n−1)/n ×
// bytes / time (the NCCL convention: what each rank moves over the "bus").
// Each figure is the median of 11 repetitions, each averaging several calls
// after warm-up. Baseline: `update(from:count:)` (memcpy) of the same size
// on one thread, bytes / time, measured in the same repetitions.
//
// ## Recorded (2 vCPU Xeon VM, Debian 12, Swift 6.3.1, default 256 KiB chunks)
//
// | figure | allReduce bus GB/s | memcpy GB/s | ratio |
// | --- | --- | --- | --- |
// | 4 MiB, quiet machine | 13.3–15.6 | 12.2–14.2 | 1.02–1.17 |
// | 4 MiB, busy host | 12.0–13.7 | 10.9–11.8 | 1.09–1.17 |
// | 64 MiB, quiet machine | 10.0–12.5 | 6.0–10.2 | 1.1–1.6 |
// | 64 MiB, busy host | 8.1–9.2 | 5.3–5.8 | 1.5–1.6 |
//
// Latency (`--latency`, 2 ranks): barrier 0.6–0.7 µs, allReduce of 1 KiB
// 1.3–1.5 µs, one 1 KiB message 1.1–1.4 µs, empty `RankPool.run` 1.0–1.2 µs.
//
// This VM's memory bandwidth moves with its neighbours (memcpy of 64 MiB
// ranged 3.3–10 GB/s in one afternoon), hence the ranges; single runs during a
// burst of host load fall below them. Compare ratios, not bare figures.
//
// ## What the figures taught
//
// - **Push, not pull.** Rank r reduces shard r (adding all ranks' values in
//   rank order) and writes the result into every rank's buffer. Shard r of
//   every buffer is then touched by rank r alone, so the only
//   synchronisations are the entry and exit barriers. The textbook "pull"
//   (reduce own shard, barrier per piece, copy the other shards from their
//   owners) reached 6–9 GB/s at 4 MiB and 5–7 at 64 MiB (a plain C version
//   of it: 7–11 and 5.5–7): its second half re-reads lines the owner has just
//   written.
// - **Never let `Kernels.add` write over an input.** `pml_add`'s loop
//   vectorises only when `y` overlaps neither `a` nor `b` (clang's runtime
//   alias check); with `y == a` it runs the scalar loop, ~8× slower (45% of
//   the profile before the fix). The reduction uses two piece-sized
//   accumulators in turn.
// - **Aligned buffers.** Large buffers from `UnsafeMutablePointer.allocate`
//   start 16 bytes into a page, so every AVX-512 load straddles two lines
//   (5–20% slower here). `Tensor` allocates 64-byte aligned, and so does
//   this benchmark.
// - **Chunk size.** 32–256 KiB pieces are alike at 4 MiB; 256–512 KiB are best
//   at 64 MiB; 1 MiB and more fall out of L2 and lose 30–50%. Default 256 KiB.
// - **Spinning.** With two synchronisations per call, the spin budget before
//   sleeping (20 µs spin + 50 µs yield) changes nothing measurable here; it
//   matters for the µs-scale calls of `--latency`.

import ParmlBenchSupport
import ParmlParallel

#if canImport(Glibc)
import Glibc
#endif


/// 64-byte aligned, as Tensor allocates (AVX-512 loads must not straddle lines).
func allocateFloats(_ n: Int) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<Float>.stride, alignment: 64)
        .bindMemory(to: Float.self, capacity: n)
}



let repetitions = 11
let verbose = CommandLine.arguments.contains("--verbose")

/// Calls per repetition: about 20 ms of work at ~10 GB/s.
func callsPerRepetition(bytes: Int) -> Int { max(3, 200_000_000 / 10 / bytes) }

/// Seconds per memcpy of `bytes` on this thread, averaged over `calls` after warm-up.
func memcpySeconds(bytes: Int) -> Double {
    let n = bytes / MemoryLayout<Float>.stride
    let src = allocateFloats(n)
    let dst = allocateFloats(n)
    defer {
        src.deallocate()
        dst.deallocate()
    }
    src.initialize(repeating: 1, count: n)
    dst.initialize(repeating: 0, count: n)
    let calls = callsPerRepetition(bytes: bytes)
    for _ in 0..<3 { dst.update(from: src, count: n) }
    let t0 = seconds()
    for _ in 0..<calls { dst.update(from: src, count: n) }
    return (seconds() - t0) / Double(calls)
}

/// Medians over `repetitions` of (memcpy seconds, allReduce seconds) for
/// `bytes`. The two are measured back to back in every repetition, so that
/// both medians sample the same moments of this (shared, noisy) machine.
/// Each repetition allocates fresh buffers: which physical pages a buffer
/// gets moves the 4 MiB figure by up to ±25% (cache-set conflicts; no
/// transparent huge pages here), so the median is over placements too.
func measure(bytes: Int, ranks: Int, chunkBytes: Int) throws -> (memcpy: Double, allReduce: Double) {
    let n = bytes / MemoryLayout<Float>.stride
    let world = try ThreadsWorld(size: ranks, timeout: 60, name: "bench", chunkBytes: chunkBytes)
    let pool = try RankPool(size: ranks)
    let calls = callsPerRepetition(bytes: bytes)
    var copyTimes: [Double] = []
    var times: [Double] = []
    for _ in 0..<repetitions {
        copyTimes.append(memcpySeconds(bytes: bytes))
        let buffers = (0..<ranks).map { _ in allocateFloats(n) }
        let elapsed = UnsafeMutablePointer<Double>.allocate(capacity: 1)  // rank 0 writes, the host reads after run
        try pool.run(world: world) { r in
            let comm = world.communicator(rank: r)
            let buf = buffers[r]
            buf.initialize(repeating: 0, count: n)  // first touch by the owning thread; zeros stay zeros
            for _ in 0..<3 { try comm.allReduce(buf, count: n, op: .sum) }
            try comm.barrier()
            let t0 = seconds()
            for _ in 0..<calls { try comm.allReduce(buf, count: n, op: .sum) }
            if r == 0 { elapsed.pointee = (seconds() - t0) / Double(calls) }
        }
        times.append(elapsed.pointee)
        elapsed.deallocate()
        for b in buffers { b.deallocate() }
    }
    if verbose {
        print("  \(bytes >> 20) MiB, chunk \(chunkBytes >> 10) KiB, allReduce:", times.map { rounded(Double(bytes) / $0 / 1e9, 1) })
        print("  \(bytes >> 20) MiB, memcpy:", copyTimes.map { rounded(Double(bytes) / $0 / 1e9, 1) })
    }
    return (median(copyTimes), median(times))
}

func label(_ bytes: Int) -> String { "\(bytes >> 20)MiB" }


func report(name: String, value: Double, baselineName: String, baseline: Double) {
    report(name, value, unit: "GB/s", baseline: baselineName, baseline, ratioDigits: 2)
}

let sizes = [4 << 20, 64 << 20]
let ranks = 2

/// Median µs per call of `op` on 2 ranks (after warm-up), and of an empty RankPool.run.
func latencies() throws {
    let world = try ThreadsWorld(size: ranks, timeout: 60, name: "bench")
    let pool = try RankPool(size: ranks)
    let n = 256
    let buffers = (0..<ranks).map { _ in allocateFloats(n) }
    for b in buffers { b.initialize(repeating: 0, count: n) }
    let calls = 2000
    let kinds = ["barrier", "allreduce_1KiB", "send_receive_1KiB"]
    let times = UnsafeMutablePointer<Double>.allocate(capacity: kinds.count * repetitions)
    try pool.run(world: world) { r in
        let comm = world.communicator(rank: r)
        let b = buffers[r]
        for (k, kind) in kinds.enumerated() {
            for rep in -1..<repetitions {
                try comm.barrier()
                let t0 = seconds()
                for _ in 0..<calls {
                    switch kind {
                    case "barrier": try comm.barrier()
                    case "allreduce_1KiB": try comm.allReduce(b, count: n, op: .sum)
                    default:  // a round trip, counted as two messages
                        if r == 0 {
                            try comm.send(b, count: n, to: 1)
                            try comm.receive(b, count: n, from: 1)
                        } else {
                            try comm.receive(b, count: n, from: 0)
                            try comm.send(b, count: n, to: 0)
                        }
                    }
                }
                let per = (seconds() - t0) / Double(calls) * (kind == "send_receive_1KiB" ? 0.5 : 1)
                if r == 0 && rep >= 0 { times[k * repetitions + rep] = per }
            }
        }
    }
    for (k, kind) in kinds.enumerated() {
        let m = median(Array(UnsafeBufferPointer(start: times + k * repetitions, count: repetitions)))
        print("{\"name\": \"\(kind)_threads_latency\", \"value\": \(rounded(m * 1e6, 2)), \"unit\": \"us\"}")
    }
    times.deallocate()
    let step: (Int) throws -> Void = { _ in }
    var runTimes: [Double] = []
    for _ in 0..<repetitions {
        let t0 = seconds()
        for _ in 0..<calls { try pool.run(world: world, step) }
        runTimes.append((seconds() - t0) / Double(calls))
    }
    print("{\"name\": \"rankpool_run_empty_latency\", \"value\": \(rounded(median(runTimes) * 1e6, 2)), \"unit\": \"us\"}")
}

if CommandLine.arguments.contains("--latency") {
    try latencies()
} else if CommandLine.arguments.contains("--sweep") {
    for bytes in sizes {
        for chunk in [32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 4 << 20] {
            let (copy, t) = try measure(bytes: bytes, ranks: ranks, chunkBytes: chunk)
            report(
                name: "allreduce_threads_\(label(bytes))_chunk\(chunk >> 10)KiB",
                value: busBandwidth(bytes: bytes, ranks: ranks, seconds: t),
                baselineName: "memcpy \(label(bytes)), 1 thread, same run", baseline: Double(bytes) / copy / 1e9)
        }
    }
} else {
    for bytes in sizes {
        let (copy, t) = try measure(bytes: bytes, ranks: ranks, chunkBytes: ThreadsWorld.defaultChunkBytes)
        report(
            name: "allreduce_threads_\(label(bytes))", value: busBandwidth(bytes: bytes, ranks: ranks, seconds: t),
            baselineName: "memcpy \(label(bytes)), 1 thread, same run", baseline: Double(bytes) / copy / 1e9)
    }
}
