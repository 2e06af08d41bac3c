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
//
// Issue 20's modes (tools/bench_comm_tcp.sh, over `--mca btl tcp,self`):
//   mpirun -np 2 ParmlBenchMPITrain mpi BATCH MODE
// with ZeRO 0 and MODE one of fp32, bf16, fp16, localH (local SGD, H
// steps between averages) or nocomm (local SGD that never averages within
// the run: the step without communication, the bound).

import ParmlBenchSupport
import ParmlModel
import ParmlTensor
import ParmlTraining
import ParmlMPI

#if canImport(Glibc)
import Glibc
#endif


func run(mpi: Bool, batch n: Int, mode: String?) throws {
    var o = OptimizerConfig()
    o.momentum = 0.9
    var s = StrategyConfig()
    s.dp = 2
    s.zeroStage = mode == nil ? 1 : 0
    s.blasThreads = 1
    s.backend = mpi ? .mpi : .threads
    switch mode {
    case nil, "fp32": break
    case "bf16": s.gradientCompression = .bf16
    case "fp16": s.gradientCompression = .fp16
    case "nocomm": s.localSteps = 1 << 20
    case let m? where m.hasPrefix("local") && Int(m.dropFirst(5)) != nil: s.localSteps = Int(m.dropFirst(5))!
    case let m?: throw ParmlError.invalidArgument("unknown mode \(m)")
    }
    MPIBackend.register()
    let t = try Trainer(model: try benchmarkMLP(), loss: .crossEntropy, optimizer: o, strategy: s)
    let x = try Tensor(shape: Shape(n, 784)), y = try Tensor(shape: Shape(n))
    for i in 0..<x.count { x.data[i] = Float((i * 7919) % 1000) / 1000 - 0.5 }
    for i in 0..<n { y.data[i] = Float(i % 10) }
    try t.step(inputs: x, targets: y)
    var rates: [Double] = []
    // Blocks of 8 steps under a mode: each holds exactly one average of local SGD with H | 8.
    let block = mode == nil ? 4 : 8
    for _ in 0..<5 {
        let t0 = Clock.now()
        for _ in 0..<block { try t.step(inputs: x, targets: y) }
        rates.append(Double(block * n) / (Clock.now() - t0))
    }
    rates.sort()
    let rank = mpi ? try MPIRuntime.processRankAndSize().rank : 0
    if rank == 0 { print(rates[rates.count / 2]) }
    if mpi { _ = try MPIRuntime.finalize() }
}

do {
    let args = Array(CommandLine.arguments.dropFirst())
    try run(mpi: args.first == "mpi", batch: args.count > 1 ? Int(args[1]) ?? 512 : 512, mode: args.count > 2 ? args[2] : nil)
} catch {
    print("bench mpi train: \(error)")
    exit(1)
}
