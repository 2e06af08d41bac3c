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
//   mpirun -np 2 ParmlBenchMPITrain mpi BATCH MODE [MODEL]
// with ZeRO 0 and MODE one of fp32 (float32 all-reduce after backward),
// overlap (the same buckets all-reduced on a communication thread while
// backward goes on), bf16, fp16, powersgd4, localH (local SGD, H steps
// between averages) or nocomm (local SGD that never averages within the
// run: the step without communication, the bound). MODEL is mlp (default)
// or gpt: nanoGPT's character model (4 layers, n_embd 128, context 64,
// vocabulary 65, tied head, AdamW with clipping), BATCH windows per step,
// with 1 MiB buckets.
// `ParmlBenchMPITrain threads BATCH MODE [MODEL]` runs the same with dp = 2
// rank threads in one process. `... BATCH compare MODE,MODE,... [MODEL]`
// trains one trainer per mode in the same processes, block by block in turn
// (tools/bench_overlap.sh: ratios that a shared machine's load moves alike).

import ParmlBenchSupport
import ParmlModel
import ParmlTensor
import ParmlTraining
import ParmlMPI

#if canImport(Glibc)
import Glibc
#endif


/// A dp = 2 trainer of `model` (mlp or gpt) under `mode` (see the top).
func trainer(mpi: Bool, mode: String?, model: String) throws -> Trainer {
    var o = OptimizerConfig()
    if model == "gpt" {
        (o.kind, o.learningRate, o.beta2, o.weightDecay, o.decayByKind, o.clipGradNorm) = (.adamW, 1e-3, 0.99, 0.1, true, 1)
    } else {
        o.momentum = 0.9
    }
    var s = StrategyConfig()
    s.dp = 2
    s.zeroStage = mode == nil ? 1 : 0
    s.blasThreads = 1
    s.backend = mpi ? .mpi : .threads
    // The GPT's 0.8 M parameters would make one 4 MiB bucket, ready only when
    // backward ends; 1 MiB cuts them into 4 (every mode gets the same cut).
    if model == "gpt" { s.bucketBytes = 1 << 20 }
    switch mode {
    case nil: break
    case "fp32": s.overlap = .off
    case "overlap": s.overlap = .on
    case "bf16": s.gradientCompression = .bf16
    case "fp16": s.gradientCompression = .fp16
    case "powersgd4": s.gradientCompression = .powerSGD
    case "nocomm": s.localSteps = 1 << 20
    case let m? where m.hasPrefix("local") && Int(m.dropFirst(5)) != nil: s.localSteps = Int(m.dropFirst(5))!
    case let m?: throw ParmlError.invalidArgument("unknown mode \(m)")
    }
    MPIBackend.register()
    let m = model == "gpt"
        ? try benchmarkGPT(layers: 4, heads: 4, width: 128, context: 64, vocabulary: 65, tiedHead: true) : try benchmarkMLP()
    return try Trainer(model: m, loss: .crossEntropy, optimizer: o, strategy: s)
}

/// A fixed batch of n rows for `model`.
func batch(_ n: Int, model: String) throws -> (Tensor, Tensor) {
    let gpt = model == "gpt"
    let x = try Tensor(shape: gpt ? Shape(n, 64) : Shape(n, 784)), y = try Tensor(shape: gpt ? Shape(n, 64) : Shape(n))
    for i in 0..<x.count { x.data[i] = gpt ? Float((i * 7919) % 65) : Float((i * 7919) % 1000) / 1000 - 0.5 }
    for i in 0..<y.count { y.data[i] = gpt ? Float((i * 104_729) % 65) : Float(i % 10) }
    return (x, y)
}

/// Rows per second over `steps` steps.
func rate(_ t: Trainer, _ x: Tensor, _ y: Tensor, steps: Int) throws -> Double {
    let t0 = Clock.now()
    for _ in 0..<steps { try t.step(inputs: x, targets: y) }
    return Double(steps * x.shape[0]) / (Clock.now() - t0)
}

func run(mpi: Bool, batch n: Int, mode: String?, model: String) throws {
    let t = try trainer(mpi: mpi, mode: mode, model: model)
    let (x, y) = try batch(n, model: model)
    try t.step(inputs: x, targets: y)
    // Blocks of 8 steps under a mode: each holds exactly one average of local SGD with H | 8.
    var rates = try (0..<5).map { _ in try rate(t, x, y, steps: mode == nil ? 4 : 8) }
    rates.sort()
    let rank = mpi ? try MPIRuntime.processRankAndSize().rank : 0
    if rank == 0 { print(rates[rates.count / 2]) }
    if mpi { _ = try MPIRuntime.finalize() }
}

/// `compare MODE,MODE,...`: one trainer per mode in the same processes,
/// taking 4-step blocks in turn (the first mode's block first in even
/// rounds, last in odd ones) for 15 rounds, so that a shared machine's load
/// falls on all of them alike. Prints per mode: the median rate and the
/// median over rounds of its rate over the first mode's in the same round.
func compare(mpi: Bool, batch n: Int, modes: [String], model: String) throws {
    let trainers = try modes.map { try trainer(mpi: mpi, mode: $0, model: model) }
    let (x, y) = try batch(n, model: model)
    for t in trainers { _ = try rate(t, x, y, steps: 2) }
    var rates = [[Double]](repeating: [], count: modes.count)
    for round in 0..<15 {
        let order = round % 2 == 0 ? Array(modes.indices) : modes.indices.reversed()
        for k in order { rates[k].append(try rate(trainers[k], x, y, steps: 4)) }
    }
    let rank = mpi ? try MPIRuntime.processRankAndSize().rank : 0
    if rank == 0 {
        for k in modes.indices {
            let ratios = zip(rates[k], rates[0]).map { $0 / $1 }
            print("\(modes[k]) \(median(rates[k])) \(median(ratios))")
        }
    }
    if mpi { _ = try MPIRuntime.finalize() }
}

do {
    let args = Array(CommandLine.arguments.dropFirst())
    if args.count > 3 && args[2] == "compare" {
        try compare(
            mpi: args.first == "mpi", batch: Int(args[1]) ?? 128, modes: args[3].split(separator: ",").map(String.init),
            model: args.count > 4 ? args[4] : "mlp")
        exit(0)
    }
    try run(
        mpi: args.first == "mpi", batch: args.count > 1 ? Int(args[1]) ?? 512 : 512, mode: args.count > 2 ? args[2] : nil,
        model: args.count > 3 ? args[3] : "mlp")
} catch {
    print("bench mpi train: \(error)")
    exit(1)
}
