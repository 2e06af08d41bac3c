// All-reduce bandwidth of the MPI backend against raw MPI_Allreduce of the
// same size, measured in the same run (DESIGN.md: ratios, not bare times).
//
//   swift build -c release --product ParmlBenchMPI
//   mpirun -np 2 .build/release/ParmlBenchMPI            # the recorded figures (make bench)
//   mpirun -np 2 .build/release/ParmlBenchMPI --sweep    # chunk sizes and windows, for tuning
//
// allReduce(sum) between the job's processes; bus bandwidth = 2(n−1)/n ×
// bytes / time (the NCCL convention, as bench/collectives). Each figure is
// the median of 11 repetitions, each averaging several calls after warm-up;
// parml's call and MPI_Allreduce alternate repetition by repetition, so both
// medians sample the same moments of this shared machine. Rank 0 prints one
// JSON line per size in the format of bench/collectives.
//
// ## Recorded (2 vCPU Xeon VM, Debian 12, Open MPI 4.1.4, np 2, defaults:
// 256 KiB pieces, window 4; four runs while other builds, tests and a
// fuzzer shared the machine, load average 1.3–3)
//
// | figure | parml GB/s | MPI_Allreduce GB/s | ratio |
// | --- | --- | --- | --- |
// | 4 MiB | 1.4–4.3 | 1.4–4.7 | 0.90–1.17 |
// | 64 MiB | 1.2–2.5 | 0.7–1.3 | 1.72–2.05 |
//
// On a quiet machine MPI_Allreduce reaches 6–6.4 GB/s at 4 MiB (DESIGN.md);
// the absolute figures here move 3× with the neighbours' load, the ratios
// less. The sweep and what it taught: docs/mpi.md.

import ParmlBenchSupport
import ParmlMPI
import ParmlParallel

#if canImport(Glibc)
import Glibc
#endif




let repetitions = 11

/// Seconds per call of `body`, averaged over `calls` after 2 warm-up calls,
/// started together on every rank (barrier) and timed on rank 0.
func timed(_ world: MPIWorld, calls: Int, _ body: () throws -> Void) throws -> Double {
    for _ in 0..<2 { try body() }
    try world.rawBarrier()
    let t0 = seconds()
    for _ in 0..<calls { try body() }
    return (seconds() - t0) / Double(calls)
}

/// Medians of (parml, MPI_Allreduce) seconds per call for `bytes`.
func measure(_ world: MPIWorld, bytes: Int) throws -> (parml: Double, raw: Double) {
    let n = bytes / MemoryLayout<Float>.stride
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64).bindMemory(to: Float.self, capacity: n)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 0, count: n)  // zeros stay zeros: no overflow over many calls
    let comm = world.communicator
    let calls = max(3, 400_000_000 / 2 / bytes)
    var ours: [Double] = [], raw: [Double] = []
    for _ in 0..<repetitions {
        ours.append(try timed(world, calls: calls) { try comm.allReduce(buffer, count: n, op: .sum) })
        raw.append(try timed(world, calls: calls) { try world.rawAllReduceSum(buffer, count: n) })
    }
    return (median(ours), median(raw))
}


let sizes = [4 << 20, 64 << 20]
let sweep = CommandLine.arguments.contains("--sweep")
let configurations: [(chunk: Int, window: Int)] =
    sweep
    ? [(256 << 10, 4), (256 << 10, 8), (512 << 10, 4), (512 << 10, 8), (1 << 20, 8)]
    : [(MPIWorld.defaultChunkBytes, MPIWorld.defaultWindow)]
for (chunk, window) in configurations {
    let world = try MPIWorld(timeout: 120, name: "bench", chunkBytes: chunk, window: window)
    for bytes in sizes {
        let (t, raw) = try measure(world, bytes: bytes)
        guard world.rank == 0 else { continue }
        let value = busBandwidth(bytes: bytes, ranks: world.size, seconds: t)
        let baseline = busBandwidth(bytes: bytes, ranks: world.size, seconds: raw)
        let name = "allreduce_mpi_\(bytes >> 20)MiB" + (sweep ? "_chunk\(chunk >> 10)KiB_window\(window)" : "")
        report(
            name, value, unit: "GB/s", baseline: "MPI_Allreduce \(bytes >> 20)MiB, \(world.size) processes, same run",
            baseline, ratioDigits: 2)
    }
}
try MPIRuntime.finalize()
