// The Fashion-MNIST CNN of issue 18 against its own bounds (make bench):
// one JSON object per line, merged into bench/results.json by
// tools/bench_report.py. bench/cnn_fmnist.py measures the same step against
// PyTorch.
//
// The network: Conv(1→16, 3×3, pad 1) BN ReLU MaxPool2 · Conv(16→32, 3×3,
// pad 1) BN ReLU MaxPool2 · Flatten · Linear(1568→10), cross-entropy, SGD
// with momentum 0.9, batch 128: the issue's. Inputs (128, 1, 28, 28) of
// fixed pseudo-random values.
//
// - cnn_fmnist_b128_t{1,2}_of_conv_bound: samples/s of the whole step on 1
//   and 2 OpenBLAS threads; baseline: the same step's two convolutions
//   alone (conv1 forward and weight gradients, conv2 forward, weight and
//   input gradients, momentum folded into the gradients as the trainer
//   does), timed through the Conv2d layers on their own tensors. The ratio
//   is the share of the step the convolutions are.
// - cnn_fmnist_b128_dp2: dp = 2 (threads, 1 OpenBLAS thread per rank);
//   baseline: serial on 1 thread.
// - cnn_fmnist_b128_dp2_of_bound: the same dp = 2; baseline: two serial
//   trainers stepped at once on two threads, half the batch each, no
//   communication (bench.c's mlp_b128_dp2_of_bound for this network).
// Each pair alternates in blocks, medians of `rounds` blocks.

import ParmlBenchSupport
import ParmlModel
import ParmlParallel
import ParmlTensor
import ParmlTraining

#if canImport(Glibc)
import Glibc
#endif

let batchSize = 128
let rounds = 7

func cnn() throws -> Model {
    let m = Model()
    try m.add(try Conv2d(inChannels: 1, outChannels: 16, kernel: (3, 3), padding: (1, 1)))
    try m.add(try BatchNorm(channels: 16))
    try m.add(Activation(.relu))
    try m.add(try MaxPool2d(kernel: (2, 2)))
    try m.add(try Conv2d(inChannels: 16, outChannels: 32, kernel: (3, 3), padding: (1, 1)))
    try m.add(try BatchNorm(channels: 32))
    try m.add(Activation(.relu))
    try m.add(try MaxPool2d(kernel: (2, 2)))
    try m.add(Flatten())
    try m.add(try Linear(inFeatures: 32 * 7 * 7, outFeatures: 10))
    try m.initialize(seed: 2)
    return m
}

/// A tensor of `shape` holding values in [-0.5, 0.5) from a fixed sequence.
func filled(_ shape: Shape, _ salt: Int) throws -> Tensor {
    let t = try Tensor(shape: shape)
    for i in 0..<t.count { t.data[i] = Float((i * 7919 + salt) % 1000) / 1000 - 0.5 }
    return t
}

func images(_ n: Int) throws -> (Tensor, Tensor) {
    let y = try Tensor(shape: Shape(n))
    for i in 0..<n { y.data[i] = Float(i % 10) }
    return (try filled(Shape(n, 1, 28, 28), 1), y)
}

func trainer(dp: Int = 1, blasThreads: Int) throws -> Trainer {
    var o = OptimizerConfig()
    o.momentum = 0.9
    var s = StrategyConfig()
    s.dp = dp
    s.blasThreads = blasThreads
    return try Trainer(model: try cnn(), loss: .crossEntropy, optimizer: o, strategy: s)
}

/// One convolution of the step with its own parameters, input and output gradient.
struct ConvWork {
    let layer: Conv2d
    let x: Tensor
    let dy: Tensor
    let inputGradient: Bool

    init(_ inC: Int, _ outC: Int, side: Int, inputGradient: Bool) throws {
        layer = try Conv2d(inChannels: inC, outChannels: outC, kernel: (3, 3), padding: (1, 1))
        let specs = layer.parameterSpecs
        layer.bind(
            values: try specs.enumerated().map { try filled($0.element.shape, 3 + $0.offset) },
            gradients: try specs.map { try Tensor(shape: $0.shape) })
        x = try filled(Shape(batchSize, inC, side, side), 5)
        dy = try filled(Shape(batchSize, outC, side, side), 7)
        self.inputGradient = inputGradient
    }

    func run(_ ctx: PassContext) throws {
        _ = try layer.forward(x, ctx)
        _ = try layer.backward(dy, ctx, needInputGradient: inputGradient, accumulate: false)
    }
}

/// Samples/s of `steps` calls of `body` after one untimed call.
func rate(samples: Int, steps: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    let t0 = Clock.now()
    for _ in 0..<steps { try body() }
    return Double(samples * steps) / (Clock.now() - t0)
}

/// Medians over `rounds` alternating blocks of `measured` and `baseline`.
func alternating(_ measured: () throws -> Double, _ baseline: () throws -> Double) rethrows -> (Double, Double, [Double]) {
    var a: [Double] = [], b: [Double] = [], ratios: [Double] = []
    for _ in 0..<rounds {
        a.append(try measured())
        b.append(try baseline())
        ratios.append(a.last! / b.last!)
    }
    return (median(a), median(b), ratios)
}

func spread(_ ratios: [Double]) -> String {
    "ratio per round \(rounded(ratios.min()!, 3))-\(rounded(ratios.max()!, 3))"
}

func main() throws {
    let (x, y) = try images(batchSize)
    // The step's convolutions: conv1 is the first layer (no input gradient), conv2 is not.
    let convs = [try ConvWork(1, 16, side: 28, inputGradient: false), try ConvWork(16, 32, side: 14, inputGradient: true)]
    var ctx = PassContext(training: true)
    ctx.gradientDecay = 0.9  // SGD momentum folded into the gradients, as the trainer's step does
    for threads in [1, 2] {
        let t = try trainer(blasThreads: threads)
        let (step, conv, ratios) = try alternating(
            { try rate(samples: batchSize, steps: 10) { _ = try t.step(inputs: x, targets: y) } },
            {
                BLAS.threads = threads
                return try rate(samples: batchSize, steps: 10) { for c in convs { try c.run(ctx) } }
            })
        report(
            "cnn_fmnist_b128_t\(threads)_of_conv_bound", step, unit: "samples/s",
            baseline: "its two convolutions alone, forward and backward, \(threads) thread(s), same run; \(spread(ratios))", conv)
    }

    let serial = try trainer(blasThreads: 1)
    let parallel = try trainer(dp: 2, blasThreads: 1)
    let halves = [try trainer(blasThreads: 1), try trainer(blasThreads: 1)]
    let (hx, hy) = try images(batchSize / 2)
    let pool = try RankPool(size: 2)
    let dpRate = { try rate(samples: batchSize, steps: 10) { _ = try parallel.step(inputs: x, targets: y) } }
    let (dp, one, dpRatios) = try alternating(dpRate) {
        try rate(samples: batchSize, steps: 10) { _ = try serial.step(inputs: x, targets: y) }
    }
    report("cnn_fmnist_b128_dp2", dp, unit: "samples/s", baseline: "serial, 1 BLAS thread (same run); \(spread(dpRatios))", one)
    // Each half trainer takes its 10 steps without waiting for the other (bench.c's pair does the same).
    let (dp2, pair, pairRatios) = try alternating(dpRate) {
        try pool.run(world: nil) { rank in _ = try halves[rank].step(inputs: hx, targets: hy) }
        let t0 = Clock.now()
        try pool.run(world: nil) { rank in for _ in 0..<10 { _ = try halves[rank].step(inputs: hx, targets: hy) } }
        return Double(batchSize * 10) / (Clock.now() - t0)
    }
    report(
        "cnn_fmnist_b128_dp2_of_bound", dp2, unit: "samples/s",
        baseline: "2 serial trainers, half batch each, at once (no communication); \(spread(pairRatios))", pair)
}

do {
    try main()
} catch {
    print("bench cnn: \(error)")
    exit(1)
}
