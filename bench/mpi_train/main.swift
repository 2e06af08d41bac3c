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
// vocabulary 65, tied head, AdamW with clipping), BATCH windows per step.
// `ParmlBenchMPITrain threads BATCH MODE [MODEL]` runs the same with dp = 2
// rank threads in one process (tools/bench_overlap.sh).

import ParmlBenchSupport
import ParmlModel
import ParmlTensor
import ParmlTraining
import ParmlMPI

#if canImport(Glibc)
import Glibc
#endif


/// nanoGPT's character model as bench/gpt builds it (GPTConfig.char), with dropout 0.
func charGPT() throws -> Model {
    let (layers, embd, context, vocab) = (4, 128, 64, 65)
    let m = Model()
    try m.add(try Embedding(count: vocab, dim: embd, initStd: 0.02))
    try m.add(try PositionEmbedding(positions: context, dim: embd, initStd: 0.02))
    for _ in 0..<layers {
        try m.add(Residual(Sequential([try LayerNorm(features: embd), try CausalSelfAttention(features: embd, heads: 4)])))
        try m.add(
            Residual(
                Sequential([
                    try LayerNorm(features: embd), try Linear(inFeatures: embd, outFeatures: 4 * embd), Activation(.gelu),
                    try Linear(inFeatures: 4 * embd, outFeatures: embd),
                ])))
    }
    try m.add(try LayerNorm(features: embd))
    try m.add(try TiedClassifier(count: vocab, dim: embd))
    try m.initialize(seed: 1)
    return m
}

func run(mpi: Bool, batch n: Int, mode: String?, model: String) throws {
    let gpt = model == "gpt"
    var o = OptimizerConfig()
    if gpt {
        (o.kind, o.learningRate, o.beta2, o.weightDecay, o.decayByKind, o.clipGradNorm) = (.adamW, 1e-3, 0.99, 0.1, true, 1)
    } else {
        o.momentum = 0.9
    }
    var s = StrategyConfig()
    s.dp = 2
    s.zeroStage = mode == nil ? 1 : 0
    s.blasThreads = 1
    s.backend = mpi ? .mpi : .threads
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
    let t = try Trainer(model: gpt ? try charGPT() : try benchmarkMLP(), loss: .crossEntropy, optimizer: o, strategy: s)
    let x = try Tensor(shape: gpt ? Shape(n, 64) : Shape(n, 784)), y = try Tensor(shape: gpt ? Shape(n, 64) : Shape(n))
    for i in 0..<x.count { x.data[i] = gpt ? Float((i * 7919) % 65) : Float((i * 7919) % 1000) / 1000 - 0.5 }
    for i in 0..<y.count { y.data[i] = gpt ? Float((i * 104_729) % 65) : Float(i % 10) }
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
    try run(
        mpi: args.first == "mpi", batch: args.count > 1 ? Int(args[1]) ?? 512 : 512, mode: args.count > 2 ? args[2] : nil,
        model: args.count > 3 ? args[3] : "mlp")
} catch {
    print("bench mpi train: \(error)")
    exit(1)
}
