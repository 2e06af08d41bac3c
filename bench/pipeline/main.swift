// Pipeline benchmarks (make bench): one JSON object per line, merged into
// bench/results.json by tools/bench_report.py.
//
// - pipeline_bubble_p{2,4}_m{1,4,8,16}: the measured idle fraction of a
//   step's pipeline phase (first forward to last backward on any stage;
//   a stage is busy while it computes or sends), the mean over the stages,
//   for p balanced stages (a ReLU, then p identical residual blocks, one
//   per stage, 1024 wide, MSE loss, 1F1B, 64 rows per micro-batch). Baseline: (p−1)/(m+p−1).
//   This machine has 2 cores: with p = 4 the ranks share them, so a stage
//   that is ready also waits for a core and the figure mixes both.
// - pipeline_bubble_interleaved_p2_v2_m8: the same measure for interleaved
//   1F1B, p = 2 stages holding v = 2 runs each of p·v = 4 such blocks (so a
//   run's forward is one block, as a stage's is above). Baseline:
//   (p−1)/(v·m+p−1); 1F1B's p2_m8 above is the same run's figure without
//   interleaving.
// - gpipe_vs_1f1b_peak_activation_bytes: p = 4, m = 8, the largest
//   activation high-water mark over the stages (parml_memory_report's
//   activation_bytes), 1F1B; baseline: GPipe. The schedules promise p/m.
// - mlp_b512_pp2: 784-1024-1024-10 MLP, batch 512, pp = 2, m = 4, 1F1B,
//   samples/s; baseline: the same model serial on 1 BLAS thread, same run.
// - tp2_comm_bytes_per_step: bytes one rank all-reduces per step with tp = 2
//   on that MLP at batch 128 (its first two Linears form the one pair: one
//   all-reduce of the pair's 128×1024 output forward; the pair's input
//   gradient is not needed, the input being data). Baseline: that count.
// - mlp_b128_tp2: samples/s of the same; baseline: serial, 1 BLAS thread.
// - tp2_split_classifier_8192: samples/s at tp = 2 of 784-1024-1024-8192
//   (a classifier of 8192 classes, 78% of the parameters), batch 128, with
//   the classifier split by classes and the loss on sharded logits;
//   baseline: the same with the classifier whole on both tp ranks.

import ParmlBenchSupport
import ParmlModel
import ParmlTensor
import ParmlTraining

#if canImport(Glibc)
import Glibc
#endif




func batch(_ n: Int, _ features: Int, classes: Int?) throws -> (Tensor, Tensor) {
    let x = try Tensor(shape: Shape(n, features))
    for i in 0..<x.count { x.data[i] = Float((i * 7919) % 1000) / 1000 - 0.5 }
    if let classes {
        let y = try Tensor(shape: Shape(n))
        for i in 0..<n { y.data[i] = Float(i % classes) }
        return (x, y)
    }
    let y = try Tensor(shape: Shape(n, features))
    for i in 0..<y.count { y.data[i] = Float((i * 104_729) % 1000) / 1000 - 0.5 }
    return (x, y)
}

/// The balanced pipeline of the bubble formula: a ReLU, then p identical
/// residual blocks (Linear, ReLU), one per stage. The first block's Linear
/// computes an input gradient like every other stage's, since a residual
/// asks its body for one whatever its caller reads; the leading ReLU is kept
/// from the first recorded runs (the first block's own sum is skipped
/// either way: nothing before it trains parameters); ReLU rather than tanh because libm's
/// tanh costs as much as the GEMM at this size and would dominate the stage
/// that holds it.
/// (`leadingReLU: false`: the blocks alone, the model the peak-activation
/// figure has used since it was first recorded.)
func balancedModel(stages: Int, width: Int, leadingReLU: Bool = true) throws -> Model {
    let m = Model()
    if leadingReLU { try m.add(Activation(.relu)) }
    for s in 0..<stages {
        if s > 0 { try m.markStageBoundary() }
        try m.beginResidual()
        try m.add(try Linear(inFeatures: width, outFeatures: width))
        try m.add(Activation(.relu))
        try m.endResidual()
    }
    try m.initialize(seed: 1)
    return m
}

/// Mean over the stages of their idle fraction (Trainer.measuredBubble);
/// writes the recorded timeline to `trace` when given. `v` > 1: interleaved
/// 1F1B with v runs of one block per stage.
func bubble(p: Int, m: Int, v: Int = 1, trace: String? = nil) throws -> Double {
    var s = StrategyConfig()
    s.pp = p
    s.microBatches = m
    s.blasThreads = 1
    if v > 1 {
        s.pipelineSchedule = .interleaved
        s.virtualStages = v
    }
    // 1024 wide, 64 rows: a micro-batch's GEMMs take ~1 ms a stage, so the
    // per-message costs the formula ignores (copies, hand-overs) stay small.
    let width = 1024
    let t = try Trainer(model: try balancedModel(stages: p * v, width: width), loss: .meanSquaredError, optimizer: OptimizerConfig(), strategy: s)
    let (x, y) = try batch(64 * m, width, classes: nil)
    // Warm up for 0.3 s at least: OpenBLAS's idle pool threads spin for
    // ~0.1 s after it loads, taking a core from the ranks.
    let warm = Clock.now()
    repeat { try t.step(inputs: x, targets: y) } while Clock.now() - warm < 0.3
    t.setTracing(true)
    for _ in 0..<16 { try t.step(inputs: x, targets: y) }
    if let trace { try t.writeChromeTrace(to: trace) }
    return (0..<p).reduce(0.0) { $0 + t.measuredBubble(rank: $1) } / Double(p)
}


func samplesPerSecond(_ t: Trainer, _ x: Tensor, _ y: Tensor, steps: Int) throws -> Double {
    try t.step(inputs: x, targets: y)
    let t0 = Clock.now()
    for _ in 0..<steps { try t.step(inputs: x, targets: y) }
    return Double(steps * x.shape[0]) / (Clock.now() - t0)
}

/// Medians of 5 rounds of `steps` steps of `baseline`, then of `measured`,
/// alternating, so that both see the same moments of a noisy machine.
func alternatingMedians(_ baseline: Trainer, _ measured: Trainer, _ x: Tensor, _ y: Tensor, steps: Int) throws -> (baseline: Double, measured: Double) {
    var a: [Double] = [], b: [Double] = []
    for _ in 0..<5 {
        a.append(try samplesPerSecond(baseline, x, y, steps: steps))
        b.append(try samplesPerSecond(measured, x, y, steps: steps))
    }
    return (median(a), median(b))
}

func main() throws {
    for p in [2, 4] {
        for m in [1, 4, 8, 16] {
            let measured = try bubble(p: p, m: m)
            report("pipeline_bubble_p\(p)_m\(m)", measured, unit: "fraction", baseline: "(p-1)/(m+p-1), balanced stages, 1F1B", Double(p - 1) / Double(m + p - 1), digits: 3)
        }
    }
    let interleaved = try bubble(p: 2, m: 8, v: 2)
    report("pipeline_bubble_interleaved_p2_v2_m8", interleaved, unit: "fraction",
        baseline: "(p-1)/(v*m+p-1), balanced runs, interleaved 1F1B", 1.0 / 17.0, digits: 3)
    var peak: [PipelineSchedule: Int] = [:]
    for schedule in [PipelineSchedule.gpipe, .oneForwardOneBackward] {
        var s = StrategyConfig()
        s.pp = 4
        s.microBatches = 8
        s.pipelineSchedule = schedule
        s.blasThreads = 1
        let t = try Trainer(model: try balancedModel(stages: 4, width: 256, leadingReLU: false), loss: .meanSquaredError, optimizer: OptimizerConfig(), strategy: s)
        let (x, y) = try batch(256, 256, classes: nil)
        try t.step(inputs: x, targets: y)
        peak[schedule] = try (0..<4).map { try t.memory(rank: $0).activations }.max()!
    }
    report("gpipe_vs_1f1b_peak_activation_bytes", Double(peak[.oneForwardOneBackward]!), unit: "bytes",
        baseline: "GPipe, same model, p=4 m=8 (1F1B promise: p/m of it)", Double(peak[.gpipe]!), digits: 0)

    var o = OptimizerConfig()
    o.momentum = 0.9
    var serialStrategy = StrategyConfig()
    serialStrategy.blasThreads = 1
    var pipe = StrategyConfig()
    pipe.pp = 2
    pipe.microBatches = 4
    let serial = try Trainer(model: try benchmarkMLP(), loss: .crossEntropy, optimizer: o, strategy: serialStrategy)
    let piped = try Trainer(model: try benchmarkMLP(), loss: .crossEntropy, optimizer: o, strategy: pipe)
    let (x, y) = try batch(512, 784, classes: 10)
    let pp2 = try alternatingMedians(serial, piped, x, y, steps: 4)
    report("mlp_b512_pp2", pp2.measured, unit: "samples/s", baseline: "serial, 1 BLAS thread (same run); pp=2 m=4 1F1B", pp2.baseline)

    var tpStrategy = StrategyConfig()
    tpStrategy.tp = 2
    let tp = try Trainer(model: try benchmarkMLP(), loss: .crossEntropy, optimizer: o, strategy: tpStrategy)
    let (x128, y128) = try batch(128, 784, classes: 10)
    try tp.step(inputs: x128, targets: y128)
    let before = tp.tensorParallelBytes(rank: 0)
    try tp.step(inputs: x128, targets: y128)
    report("tp2_comm_bytes_per_step", Double(tp.tensorParallelBytes(rank: 0) - before), unit: "bytes",
        baseline: "theory: 128 x 1024 floats all-reduced forward", Double(128 * 1024 * 4), digits: 0)
    let tp2 = try alternatingMedians(serial, tp, x128, y128, steps: 8)
    report("mlp_b128_tp2", tp2.measured, unit: "samples/s", baseline: "serial, 1 BLAS thread (same run); tp=2", tp2.baseline)

    // A classifier the split pays for: 8192 classes.
    var split = tpStrategy
    split.splitClassifier = true
    let whole = try Trainer(model: try benchmarkMLP(classes: 8192), loss: .crossEntropy, optimizer: o, strategy: tpStrategy)
    let sharded = try Trainer(model: try benchmarkMLP(classes: 8192), loss: .crossEntropy, optimizer: o, strategy: split)
    let (xw, yw) = try batch(128, 784, classes: 8192)
    let classifier = try alternatingMedians(whole, sharded, xw, yw, steps: 3)
    report("tp2_split_classifier_8192", classifier.measured, unit: "samples/s", baseline: "tp=2, classifier whole on both ranks (same run)", classifier.baseline)
}

do {
    // `ParmlBenchPipeline bubble P M TRACE.json [V]`: one bubble figure and
    // its timeline (V > 1: interleaved 1F1B, V runs per stage).
    let args = CommandLine.arguments
    if args.count == 5 || args.count == 6, args[1] == "bubble", let p = Int(args[2]), let m = Int(args[3]),
        let v = args.count == 6 ? Int(args[5]) : 1
    {
        print(try bubble(p: p, m: m, v: v, trace: args[4]))
        exit(0)
    }
    try main()
} catch {
    print("bench pipeline: \(error)")
    exit(1)
}
