// Training throughput on the MPI backend against the threads backend
// (issue 7: mlp_b512_dp2_mpi ≥ 0.9 of dp2 on threads).
//
//   ParmlBenchMPITrain threads            one process, dp = 2 rank threads
//   mpirun -np 2 ParmlBenchMPITrain mpi   two processes, one rank each
//
// Both train the 784-1024-1024-10 MLP (ReLU, SGD momentum 0.9, batch 512)
// with dp = 2, ZeRO-1, one OpenBLAS thread per rank, and print the median
// samples/s of 5 blocks of 4 steps (rank 0 prints). tools/bench_mpi_train.sh
// alternates the two and writes the JSON line for bench/results.json.

import ParmlBenchSupport
import ParmlModel
import ParmlTensor
import ParmlTraining
import ParmlMPI

#if canImport(Glibc)
import Glibc
#endif


func run(mpi: Bool) throws {
    var o = OptimizerConfig()
    o.momentum = 0.9
    var s = StrategyConfig()
    s.dp = 2
    s.zeroStage = 1
    s.blasThreads = 1
    s.backend = mpi ? .mpi : .threads
    MPIBackend.register()
    let t = try Trainer(model: try benchmarkMLP(), loss: .crossEntropy, optimizer: o, strategy: s)
    let n = 512
    let x = try Tensor(shape: Shape(n, 784)), y = try Tensor(shape: Shape(n))
    for i in 0..<x.count { x.data[i] = Float((i * 7919) % 1000) / 1000 - 0.5 }
    for i in 0..<n { y.data[i] = Float(i % 10) }
    try t.step(inputs: x, targets: y)
    var rates: [Double] = []
    for _ in 0..<5 {
        let t0 = Clock.now()
        for _ in 0..<4 { try t.step(inputs: x, targets: y) }
        rates.append(Double(4 * n) / (Clock.now() - t0))
    }
    rates.sort()
    let rank = mpi ? try MPIRuntime.processRankAndSize().rank : 0
    if rank == 0 { print(rates[rates.count / 2]) }
    if mpi { _ = try MPIRuntime.finalize() }
}

do {
    try run(mpi: CommandLine.arguments.dropFirst().first == "mpi")
} catch {
    print("bench mpi train: \(error)")
    exit(1)
}
