// GPT benchmarks (make bench; issue 17): one JSON object per line, merged
// into bench/results.json by tools/bench_report.py.
//
// - gpt_char_t1_of_gemm_bound, gpt_char_t2_of_gemm_bound: tokens/s of one
//   training step of nanoGPT's character model at its CPU configuration
//   (4 layers, 4 heads, n_embd 128, context 64, batch 12, vocabulary 65,
//   head tied to the token embedding, AdamW with clipping) on 1 and 2
//   OpenBLAS threads, against the same step's matrix products alone: the
//   sgemm calls of one step, recorded, then replayed on buffers of their
//   own (one per operand, as the step's are), in the same run. Target:
//   ≥ 0.80 of that bound.
// - gpt_base_dp2, gpt_base_tp2, gpt_base_pp2: tokens/s of nanoGPT's default
//   Shakespeare model (6 layers, 6 heads, n_embd 384, context 256, batch
//   16) with dp = 2, tp = 2 or pp = 2 (4 micro-batches, 1F1B) on the two
//   cores, against serial training on 2 OpenBLAS threads (same run); and
//   gpt_base_two_halves: the bound the machine allows, two serial trainers
//   at once, each on half the batch with 1 thread (no communication), as
//   mlp_b128_dp2_of_bound is defined.
// Rounds alternate between the compared configurations; figures are medians.
// - `shapes [ROWS]` (not in make bench): each product of a one-thread step
//   at ROWS samples (default 12), alone and in the step's order, against
//   the advisor's prediction for it (calibration from PARML_CACHE_DIR or
//   the default cache); `shapes ROWS mlp 128,512,16` the same for a ReLU
//   MLP of those widths with SGD momentum; `shapes ROWS tp N` for tp rank
//   0's shard of one block, laid out flat.
// - `layers [ROWS]` (not in make bench): each kind of layer of one block,
//   laid out flat, forward and backward on one thread at ROWS samples
//   (default 12), against what the advisor's calibration charges it alone;
//   `layers ROWS tp N` the same for tp rank 0's shard of each (its heads,
//   its share of the MLP's width).

import ParmlBenchSupport
import ParmlModel
import ParmlParallel
import ParmlTensor
import ParmlTraining

#if canImport(Glibc)
import Glibc
#endif

struct GPTConfig {
    let layers, heads, embd, context, batch, vocab: Int
    static let char = GPTConfig(layers: 4, heads: 4, embd: 128, context: 64, batch: 12, vocab: 65)
    static let base = GPTConfig(layers: 6, heads: 6, embd: 384, context: 256, batch: 16, vocab: 65)
    var tokens: Int { batch * context }
}

/// nanoGPT's GPT: embeddings, pre-LayerNorm blocks, a final LayerNorm and
/// a head tied to the token embedding; dropout 0.
func gpt(_ c: GPTConfig) throws -> Model {
    try benchmarkGPT(layers: c.layers, heads: c.heads, width: c.embd, context: c.context, vocabulary: c.vocab, tiedHead: true)
}

/// nanoGPT's optimizer at its CPU settings (constant learning rate: the
/// schedule does not change the work).
func adamW() -> OptimizerConfig {
    var o = OptimizerConfig()
    o.kind = .adamW
    o.learningRate = 1e-3
    o.beta2 = 0.99
    o.weightDecay = 0.1
    o.decayByKind = true
    o.clipGradNorm = 1
    return o
}

func trainer(_ c: GPTConfig, _ configure: (inout StrategyConfig) -> Void) throws -> Trainer {
    var s = StrategyConfig()
    configure(&s)
    return try Trainer(model: try gpt(c), loss: .crossEntropy, optimizer: adamW(), strategy: s)
}

/// Random token windows: inputs (B, T) as the float ids the engine reads,
/// targets (B, T) int32.
func tokens(_ c: GPTConfig, rows: Int? = nil, seed: Int = 0) throws -> (Tensor, Tensor) {
    let b = rows ?? c.batch
    let x = try Tensor(shape: Shape(b, c.context))
    let y = try Tensor(shape: Shape(b, c.context), dtype: .int32)
    for i in 0..<x.count {
        x.data[i] = Float((i * 7919 + seed) % c.vocab)
        y.int32s[i] = Int32((i * 104_729 + seed) % c.vocab)
    }
    return (x, y)
}

/// Seconds per step, median of `steps` steps.
func stepTime(_ t: Trainer, _ x: Tensor, _ y: Tensor, steps: Int) throws -> Double {
    var times: [Double] = []
    for _ in 0..<steps {
        let t0 = seconds()
        _ = try t.step(inputs: x, targets: y)
        times.append(seconds() - t0)
    }
    return median(times)
}

/// The recorded products on buffers of their own, as the step's operands
/// are: one set of three per call.
final class GemmReplay {
    let calls: [GemmShape]
    let buffers: [(Tensor, Tensor, Tensor)]

    init(_ calls: [GemmShape]) throws {
        self.calls = calls
        buffers = try calls.map { c in
            let a = try Tensor(shape: Shape(c.aCount)), b = try Tensor(shape: Shape(c.bCount)), d = try Tensor(shape: Shape(c.cCount))
            for t in [a, b, d] { for i in 0..<t.count { t.data[i] = Float(i % 17) * 0.01 - 0.08 } }
            return (a, b, d)
        }
    }

    /// Seconds for all the calls once.
    func run() -> Double {
        let t0 = seconds()
        for i in calls.indices { run(call: i) }
        return seconds() - t0
    }

    /// Call `i` once, on its own buffers.
    func run(call i: Int) {
        let (c, (a, b, d)) = (calls[i], buffers[i])
        BLAS.gemm(
            transA: c.transA, transB: c.transB, m: c.m, n: c.n, k: c.k, alpha: c.alpha, a.data, lda: c.lda, b.data, ldb: c.ldb,
            beta: c.beta, d.data, ldc: c.ldc)
    }
}

func gemmBound(threads: Int) throws {
    let c = GPTConfig.char
    let t = try trainer(c) { $0.blasThreads = threads }
    let (x, y) = try tokens(c)
    for _ in 0..<5 { _ = try t.step(inputs: x, targets: y) }
    let calls = try BLAS.recordingGemms { _ = try t.step(inputs: x, targets: y) }
    let replay = try GemmReplay(calls)
    for _ in 0..<5 { _ = replay.run() }
    var step: [Double] = [], bound: [Double] = []
    for _ in 0..<5 {
        step.append(try stepTime(t, x, y, steps: 10))
        var r: [Double] = []
        for _ in 0..<10 { r.append(replay.run()) }
        bound.append(median(r))
    }
    let tokens = Double(c.tokens)
    report(
        "gpt_char_t\(threads)_of_gemm_bound", tokens / median(step), unit: "tokens/s",
        baseline: "the step's \(calls.count) sgemm calls alone, replayed one after another (same run); \(threads) thread(s)",
        tokens / median(bound))
}

/// Two serial trainers at once, each on half the batch with one thread
/// (rank 0 of the pool runs one, rank 1 the other).
func twoHalves(_ pool: RankPool, _ body: @escaping (Int) throws -> Void) throws -> Double {
    let t0 = seconds()
    try pool.run(world: nil, body)
    return seconds() - t0
}

func baseLayouts() throws {
    let c = GPTConfig.base
    let (x, y) = try tokens(c)
    let (xa, ya) = try tokens(c, rows: c.batch / 2, seed: 1)
    let (xb, yb) = try tokens(c, rows: c.batch / 2, seed: 2)
    let serial = try trainer(c) { $0.blasThreads = 2 }
    let layouts: [(String, Trainer, String)] = [
        ("gpt_base_dp2", try trainer(c) { $0.dp = 2 }, "dp=2"),
        ("gpt_base_tp2", try trainer(c) { $0.tp = 2 }, "tp=2"),
        ("gpt_base_pp2", try trainer(c) { $0.pp = 2; $0.microBatches = 4 }, "pp=2, 4 micro-batches, 1F1B"),
    ]
    let halves = [try trainer(c) { $0.blasThreads = 1 }, try trainer(c) { $0.blasThreads = 1 }]
    let halfInputs = [(xa, ya), (xb, yb)]
    let pool = try RankPool(size: 2)
    let both: (Int) throws -> Void = { r in _ = try halves[r].step(inputs: halfInputs[r].0, targets: halfInputs[r].1) }
    _ = try serial.step(inputs: x, targets: y)
    for (_, t, _) in layouts { _ = try t.step(inputs: x, targets: y) }
    _ = try twoHalves(pool, both)
    var serialTimes: [Double] = [], layoutTimes = [[Double]](repeating: [], count: layouts.count), halfTimes: [Double] = []
    for _ in 0..<3 {
        serialTimes.append(try stepTime(serial, x, y, steps: 2))
        for (i, (_, t, _)) in layouts.enumerated() { layoutTimes[i].append(try stepTime(t, x, y, steps: 2)) }
        var h: [Double] = []
        for _ in 0..<2 { h.append(try twoHalves(pool, both)) }
        halfTimes.append(median(h))
    }
    let tokens = Double(c.tokens)
    for (i, (name, _, what)) in layouts.enumerated() {
        report(name, tokens / median(layoutTimes[i]), unit: "tokens/s", baseline: "serial, 2 OpenBLAS threads (same run); \(what)", tokens / median(serialTimes))
    }
    report(
        "gpt_base_two_halves", tokens / median(halfTimes), unit: "tokens/s",
        baseline: "serial, 2 OpenBLAS threads (same run); the bound: 2 serial trainers at once, half the batch each, 1 thread each",
        tokens / median(serialTimes))
}

/// `shapes ROWS`: each sgemm of one one-thread step of the character model
/// at ROWS samples, timed alone and repeated (as the advisor's calibration
/// times a product), and in the step's order among the others (as the step
/// runs it), against the advisor's predicted seconds for that product.
func productShapes(rows: Int, mlp widths: [Int]? = nil, tp: Int? = nil) throws {
    let c = GPTConfig.char
    let calls: [GemmShape]
    if let tp {
        // tp rank 0's shard laid out flat, one training forward and backward.
        let m = try flatBlock(tp: tp)
        BLAS.threads = 1
        let (x, _) = try tokens(c, rows: rows)
        var ctx = PassContext(training: true)
        ctx.threads = 1
        func pass() throws {
            var h = x
            for l in m.root.layers { h = try l.forward(h, ctx) }
            var g = try Tensor(shape: h.shape)
            g.fill(1e-3)
            for (i, l) in m.root.layers.enumerated().reversed() {
                guard let next = try l.backward(g, ctx, needInputGradient: i > 0, accumulate: false) else { break }
                g = next
            }
        }
        for _ in 0..<3 { try pass() }
        calls = try BLAS.recordingGemms { try pass() }
    } else {
        let t: Trainer, x: Tensor, y: Tensor
        if let widths {
            guard widths.count >= 2, widths.allSatisfy({ $0 > 0 }) else {
                print("shapes ROWS mlp IN,HIDDEN,...,CLASSES: at least two positive widths")
                exit(2)
            }
            // A ReLU MLP with SGD momentum, on random rows and classes.
            var s = StrategyConfig()
            s.blasThreads = 1
            var o = OptimizerConfig()
            o.momentum = 0.9
            t = try Trainer(model: try benchmarkMLP(widths: widths), loss: .crossEntropy, optimizer: o, strategy: s)
            x = try Tensor(shape: Shape(rows, widths[0]))
            y = try Tensor(shape: Shape(rows), dtype: .int32)
            for i in 0..<x.count { x.data[i] = Float((i * 7919) % 101) / 101 - 0.5 }
            for i in 0..<rows { y.int32s[i] = Int32(i % widths[widths.count - 1]) }
        } else {
            t = try trainer(c) { $0.blasThreads = 1 }
            (x, y) = try tokens(c, rows: rows)
        }
        for _ in 0..<3 { _ = try t.step(inputs: x, targets: y) }
        calls = try BLAS.recordingGemms { _ = try t.step(inputs: x, targets: y) }
    }
    let replay = try GemmReplay(calls)
    // The library's version keys the cache: a file of another is measured again.
    let (cal, _) = try CalibrationCache.load(directory: CalibrationCache.defaultDirectory(), libraryVersion: "0.3.0")
    var inOrder = [[Double]](repeating: [], count: calls.count)
    for _ in 0..<20 {
        for i in calls.indices {
            let t0 = seconds()
            replay.run(call: i)
            inOrder[i].append(seconds() - t0)
        }
    }
    var sums = (alone: 0.0, order: 0.0, predicted: 0.0)
    for (i, g) in calls.enumerated() {
        var alone: [Double] = []
        for _ in 0..<20 {
            let t0 = seconds()
            replay.run(call: i)
            alone.append(seconds() - t0)
        }
        // Timed as the advisor times it: among the calibrated small-kernel
        // products where OpenBLAS runs this call on its small-matrix kernels.
        let small = BLAS.hasSmallMatrixKernels && BLAS.smallMatrixKernel(transA: g.transA, transB: g.transB, m: g.m, n: g.n, k: g.k)
        // In its own form where the calibration has it (a layer's x·Wᵀ is
        // NT, its weight gradient TN); attention's heads at NN's, as the cost model times them.
        let form: MachineCalibration.ProductForm = g.transB ? .nt : g.transA ? .tn : .nn
        let p = cal.productSeconds(MatrixProduct(m: g.m, n: g.n, k: g.k), threads: 1, smallKernel: small, form: form)
        let (al, io) = (median(alone), median(inOrder[i]))
        sums = (sums.alone + al, sums.order + io, sums.predicted + p)
        print("\(g.transA ? "T" : "N")\(g.transB ? "T" : "N") m \(g.m) n \(g.n) k \(g.k) beta \(g.beta) ld \(g.lda),\(g.ldb),\(g.ldc): alone \(Int(al * 1e6)) us, in order \(Int(io * 1e6)) us, predicted \(Int(p * 1e6)) us")
    }
    print("sum: alone \(sums.alone * 1e3) ms, in order \(sums.order * 1e3) ms, predicted \(sums.predicted * 1e3) ms (\(calls.count) calls)")
}

/// The char GPT's layers laid out flat (embeddings, LayerNorm, attention,
/// LayerNorm, the MLP's linears and GELU, LayerNorm, the tied head), or
/// with `tp` > 1 tp rank 0's shard of them: its heads and its share of the
/// MLP's width (the f/g all-reduces, no-ops on one rank, left out).
func flatBlock(tp: Int) throws -> Model {
    let c = GPTConfig.char
    guard tp >= 1, c.heads % tp == 0 else {
        print("tp N: N must divide the \(c.heads) heads")
        exit(2)
    }
    let m = Model()
    try m.add(try Embedding(count: c.vocab, dim: c.embd, initStd: 0.02))
    try m.add(try PositionEmbedding(positions: c.context, dim: c.embd, initStd: 0.02))
    try m.add(try LayerNorm(features: c.embd))
    let attention = try CausalSelfAttention(features: c.embd, heads: c.heads)
    try m.add(tp > 1 ? try attention.headSlice(rank: 0, ranks: tp).layer : attention)
    try m.add(try LayerNorm(features: c.embd))
    try m.add(try Linear(inFeatures: c.embd, outFeatures: 4 * c.embd / tp))
    try m.add(Activation(.gelu))
    try m.add(try Linear(inFeatures: 4 * c.embd / tp, outFeatures: c.embd))
    try m.add(try LayerNorm(features: c.embd))
    try m.add(try TiedClassifier(count: c.vocab, dim: c.embd))
    try m.initialize(seed: 1)
    return m
}

/// Each layer of `flatBlock(tp:)` (embeddings, LayerNorm, attention,
/// LayerNorm, the MLP's linears and GELU, LayerNorm, the tied head), each
/// a training forward and backward on one thread at `rows` samples, the
/// median of 41 in the thread's CPU time, against the calibration's
/// charge for it alone: its products at their forms' rates, its
/// element-wise traffic (forward once, backward twice) at the rate of its
/// own working set, and its arithmetic-bound kernels past that traffic.
/// "traffic only" is the charge without the kernels (the model before
/// 2026-12-07). The cost model's in-step terms (operands re-read, held
/// activations, threads) are left out: this compares the layers alone.
func layerTimes(rows: Int, tp: Int = 1) throws {
    let c = GPTConfig.char
    let m = try flatBlock(tp: tp)
    BLAS.threads = 1
    let (cal, _) = try CalibrationCache.load(directory: CalibrationCache.defaultDirectory(), libraryVersion: "0.3.0")
    let (x, _) = try tokens(c, rows: rows)
    var ctx = PassContext(training: true)
    ctx.threads = 1
    let layers = m.root.layers
    var times = [[Double]](repeating: [], count: layers.count)
    for _ in 0..<41 {
        var h = x
        var forward = [Double](repeating: 0, count: layers.count)
        for (i, l) in layers.enumerated() {
            let t0 = Clock.threadCPU()
            h = try l.forward(h, ctx)
            forward[i] = Clock.threadCPU() - t0
        }
        var g = try Tensor(shape: h.shape)
        g.fill(1e-3)
        for (i, l) in layers.enumerated().reversed() {
            let t0 = Clock.threadCPU()
            let next = try l.backward(g, ctx, needInputGradient: i > 0, accumulate: false)
            times[i].append(forward[i] + Clock.threadCPU() - t0)
            guard let next else { break }
            g = next
        }
    }
    var shape = x.shape
    var sums = (measured: 0.0, charged: 0.0, traffic: 0.0)
    for (i, l) in layers.enumerated() {
        let w = try l.work(input: shape)
        var products = 0.0
        for p in w.products {
            let backward = [MatrixProduct(m: p.n, n: p.k, k: p.m, count: p.count), MatrixProduct(m: p.m, n: p.k, k: p.n, count: p.count)]
            let forms: [MachineCalibration.ProductForm] = p.timesWeights ? [.nt, .tn, .nn] : [.nn, .nn, .nn]
            for (q, form) in zip([p] + backward, forms) { products += cal.productSeconds(q, threads: 1, form: form) }
        }
        let pass = 4 * w.elementwiseFloats
        let traffic = products + cal.elementwiseSeconds(bytes: pass) + cal.elementwiseSeconds(bytes: 2 * pass, workingSet: pass)
        let charged = ArithmeticKernel.allCases.reduce(traffic) { $0 + cal.arithmeticSeconds($1, elements: w.arithmetic[$1] ?? 0) }
        let measured = median(times[i])
        sums = (sums.measured + measured, sums.charged + charged, sums.traffic + traffic)
        func us(_ s: Double) -> String { String(Int((s * 1e6).rounded())) }
        let ratio = { (s: Double) in String(Int((s / measured * 100).rounded())) }
        print("\(i) \(type(of: l)): measured \(us(measured)) us, charged \(us(charged)) us (\(ratio(charged)) %), traffic only \(us(traffic)) us (\(ratio(traffic)) %)")
        shape = try l.outputShape(for: shape)
    }
    print("sum: measured \(sums.measured * 1e3) ms, charged \(sums.charged * 1e3) ms, traffic only \(sums.traffic * 1e3) ms")
}

do {
    let args = CommandLine.arguments.dropFirst()
    /// The word after `word` on the command line, if any.
    func argument(after word: String) -> String? {
        args.firstIndex(of: word).flatMap { j in args.index(after: j) < args.endIndex ? args[args.index(after: j)] : nil }
    }
    if args.contains("layers") {
        let r = argument(after: "layers").flatMap { Int($0) }
        // `layers ROWS tp N`: tp rank 0's shard of each layer instead.
        try layerTimes(rows: r ?? GPTConfig.char.batch, tp: argument(after: "tp").flatMap { Int($0) } ?? 1)
        exit(0)
    }
    if args.contains("shapes") {
        let r = argument(after: "shapes").flatMap { Int($0) }
        // `shapes ROWS mlp 128,512,16`: the products of an MLP's step instead of the GPT's.
        let mlp = argument(after: "mlp")
        // `shapes ROWS tp N`: the products of tp rank 0's shard, laid out flat.
        let tp = argument(after: "tp").flatMap { Int($0) }
        try productShapes(rows: r ?? GPTConfig.char.batch, mlp: mlp.map { $0.split(separator: ",").compactMap { Int($0) } }, tp: tp)
        exit(0)
    }
    if args.isEmpty || args.contains("char") {
        try gemmBound(threads: 1)
        try gemmBound(threads: 2)
    }
    if args.isEmpty || args.contains("base") { try baseLayouts() }
} catch {
    print("bench gpt: \(error)")
    exit(1)
}
