import Foundation
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

// Tensor parallelism over convolutions: a conv2d split by output channels
// feeds one split by input channels, with element-wise and per-channel
// layers (ReLU, max pooling, dropout) on each rank's channels between them.
// The row half's partial outputs are summed over the tp group, as a Linear
// pair's are, so the same rounding bound holds (TensorParallelTests.tolerance).

/// (N, 2, 8, 8) → conv(2→8, 3×3, pad 1) ReLU MaxPool2 Dropout(0.2)
/// conv(8→6, 3×3, pad 1) ReLU AvgPool2 Flatten Linear(24→16) ReLU
/// Linear(16→3): a convolution pair with a pooling and a dropout between
/// its halves, then a Linear pair. With 2 `stages`, the second starts at
/// the max pooling (between the halves of the convolution pair); with 3,
/// the third at the average pooling.
private func tpCNN(backend: ConvolutionBackend, groups: Int = 1, stages: Int = 1, seed: UInt64 = 17) throws -> Model {
    let m = Model()
    try m.add(try Conv2d(inChannels: 2, outChannels: 8, kernel: (3, 3), padding: (1, 1), backend: backend))
    try m.add(Activation(.relu))
    if stages >= 2 { try m.markStageBoundary() }
    try m.add(try MaxPool2d(kernel: (2, 2)))
    try m.add(try Dropout(probability: 0.2))
    try m.add(try Conv2d(inChannels: 8, outChannels: 6, kernel: (3, 3), padding: (1, 1), groups: groups, backend: backend))
    try m.add(Activation(.relu))
    if stages >= 3 { try m.markStageBoundary() }
    try m.add(try AvgPool2d(kernel: (2, 2)))
    try m.add(Flatten())
    try m.add(try Linear(inFeatures: 24, outFeatures: 16))
    try m.add(Activation(.relu))
    try m.add(try Linear(inFeatures: 16, outFeatures: 3))
    try m.initialize(seed: seed)
    return m
}

private func cnnBatch(_ n: Int, step: Int) throws -> (Tensor, Tensor) {
    let x = randomArray(n * 2 * 8 * 8, seed: 41, stream: UInt64(step))
    let y = (0..<n).map { Float(($0 * 7 + step) % 3) }
    return (try Tensor(x, shape: Shape(n, 2, 8, 8)), try Tensor(y, shape: Shape(n)))
}

/// Parameters after each of `steps` steps, and the losses.
private func trainCNN(
    backend: ConvolutionBackend, dp: Int = 1, pp: Int = 1, tp: Int = 1, m: Int = 1, zero: Int = 0, deterministic: Bool = false,
    optimizer: DPOptimizer, steps: Int = 5
) throws -> (params: [[Float]], losses: [Float]) {
    var s = StrategyConfig()
    (s.dp, s.pp, s.tp, s.microBatches, s.zeroStage, s.deterministic) = (dp, pp, tp, m, zero, deterministic)
    s.gradientChunk = 8
    s.seed = 6
    s.blasThreads = 1
    s.watchdogSeconds = 30
    let model = try tpCNN(backend: backend, stages: pp)
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: optimizer.config, strategy: s)
    var params: [[Float]] = []
    var losses: [Float] = []
    for k in 0..<steps {
        let (x, y) = try cnnBatch(32, step: k)
        losses.append(try t.step(inputs: x, targets: y).loss)
        params.append(model.parameters!.toArray())
    }
    return (params, losses)
}

struct ConvolutionTensorParallelTests {
    /// The relative bound after step k + 1. SGD: TensorParallelTests.tolerance
    /// per step (measured here: at most 6.4e-8 over the matrix). AdamW
    /// divides each gradient by its own magnitude, so a gradient that sums
    /// to almost nothing keeps its rounding at full size: one weight of the
    /// row half with |g| ≈ 18·ε (ε = 1e-8) moves 6.6e-7 apart after the first
    /// step, 2.7e-6 of the largest parameter (oneDNN), and the difference
    /// then stays level (2.4e-6 after step 5). 1e-5 per step leaves 3.7× at
    /// step 1 and is still 100× below other dropout masks.
    static func tolerance(_ optimizer: DPOptimizer, step k: Int) -> Double {
        (optimizer == .adamW ? 1e-5 : TensorParallelTests.tolerance) * Double(k + 1)
    }

    private static func expectNearSerial(
        _ got: (params: [[Float]], losses: [Float]), _ serial: (params: [[Float]], losses: [Float]), _ what: String,
        optimizer: DPOptimizer, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for k in 0..<got.params.count {
            let d = relativeDifference(got.params[k], serial.params[k])
            #expect(d <= tolerance(optimizer, step: k), "\(what) step \(k): relative Δ = \(d)", sourceLocation: sourceLocation)
            #expect(abs(got.losses[k] - serial.losses[k]) <= 1e-4 * max(1, abs(serial.losses[k])), sourceLocation: sourceLocation)
        }
    }

    /// tp 2 and 4 (each divides the 8 channels between the convolutions),
    /// both modes, both convolution backends, both optimizers.
    @Test(arguments: [ConvolutionBackend.onednn, .im2col], DPOptimizer.allCases)
    func convolutionPairsMatchSerialWithinRounding(backend: ConvolutionBackend, optimizer: DPOptimizer) throws {
        for deterministic in [false, true] {
            let serial = try trainCNN(backend: backend, deterministic: deterministic, optimizer: optimizer)
            for tp in [2, 4] {
                let got = try trainCNN(backend: backend, tp: tp, deterministic: deterministic, optimizer: optimizer)
                Self.expectNearSerial(got, serial, "tp=\(tp) \(backend) \(optimizer) det=\(deterministic)", optimizer: optimizer)
            }
        }
    }

    /// dp × tp (ZeRO 0, 2 and 3), pp × tp with a stage boundary between the
    /// convolution pair's halves, and dp × pp × tp, in deterministic mode.
    @Test(arguments: [ConvolutionBackend.onednn, .im2col])
    func hybridsMatchSerialWithinRounding(backend: ConvolutionBackend) throws {
        let serial = try trainCNN(backend: backend, deterministic: true, optimizer: .sgdMomentum)
        let layouts: [(dp: Int, pp: Int, m: Int, zero: Int)] = [(2, 1, 1, 0), (2, 1, 1, 2), (2, 1, 1, 3), (1, 2, 2, 0), (1, 3, 2, 0), (2, 2, 2, 1)]
        for l in layouts {
            let got = try trainCNN(backend: backend, dp: l.dp, pp: l.pp, tp: 2, m: l.m, zero: l.zero, deterministic: true, optimizer: .sgdMomentum)
            Self.expectNearSerial(got, serial, "dp=\(l.dp) pp=\(l.pp) m=\(l.m) tp=2 zero=\(l.zero) \(backend)", optimizer: .sgdMomentum)
        }
    }

    /// The plan names the split convolutions and what runs on channel slices;
    /// each rank's slices cover its arena once and, over the ranks, the serial
    /// arena once (the replicated biases on rank 0).
    @Test(arguments: [2, 4])
    func planAndSlicesCoverTheModel(tp: Int) throws {
        let model = try tpCNN(backend: .im2col)
        var s = StrategyConfig()
        s.tp = tp
        let plan = try Trainer(model: model, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s).planDescription
        let n = 8 / tp
        for part in [
            "0: column-parallel conv2d(2→8, 3x3), \(n) output channels per rank; all-reduce of dx backward",
            "1: relu on each rank's \(n) of 8 channels", "2: max_pool2d on each rank's \(n) of 8 channels",
            "3: dropout on each rank's \(n) of 8 channels",
            "4: row-parallel conv2d(8→6, 3x3), \(n) input channels per rank; all-reduce of y forward, bias after it",
            "5: relu replicated", "8: column-parallel linear(24→16)", "10: row-parallel linear(16→3)",
        ] {
            #expect(plan.contains(part), "\(part) missing from:\n\(plan)")
        }
        var serialCover = [Int](repeating: 0, count: model.parameterCount)
        for r in 0..<tp {
            let rewrite = try TensorParallelRewrite(serial: model, rank: r, ranks: tp)
            let m = try rewrite.makeModel(from: model)
            let conv = try #require(m.allLayers.compactMap { $0 as? Conv2d }.first)
            #expect(conv.outChannels == n && conv.inChannels == 2 && conv.hasBias)
            let row = try #require(m.allLayers.compactMap { $0 as? Conv2d }.last)
            #expect(row.inChannels == n && row.outChannels == 6 && !row.hasBias)
            let d = try #require(m.allLayers.compactMap { $0 as? Dropout }.first)
            #expect(d.channelWindow?.start == r * n && d.channelWindow?.channels == 8)
            var localCover = [Int](repeating: 0, count: m.parameterCount)
            rewrite.forEachRun(in: 0..<m.parameterCount, model: m) { l, _, k in
                for i in l..<(l + k) { localCover[i] += 1 }
            }
            #expect(localCover.allSatisfy { $0 == 1 }, "rank \(r): its arena is not covered once")
            rewrite.forEachRun(in: 0..<m.parameterCount, model: m, replicated: r == 0) { _, s, k in
                for i in s..<(s + k) { serialCover[i] += 1 }
            }
            // Rank r's first conv holds output channels r·n..<(r+1)·n: weight rows of 2·3·3.
            let wantW = Array(model.parameters!.toArray()[(r * n * 18)..<((r + 1) * n * 18)])
            let info = try m.parameter(named: "0.weight")
            expectEqualElements(Array(m.parameters!.toArray()[info.offset..<(info.offset + info.count)]), wantW)
        }
        #expect(serialCover.allSatisfy { $0 == 1 }, "the serial arena is not covered once")
    }

    /// A channel slice's dropout draws its window of the serial mask: the
    /// ranks' outputs, stacked by channel, are the serial layer's output.
    @Test func dropoutOnChannelSlicesKeepsTheSerialMask() throws {
        let whole = try Dropout(probability: 0.3)
        whole.layerID = 5
        let ctx = PassContext(training: true, step: 2, sampleOffset: 9, seed: 4)
        let (n, c, h, w) = (3, 8, 2, 3)
        let x = try Tensor(randomArray(n * c * h * w, seed: 3, low: 0.5, high: 1), shape: Shape(n, c, h, w))
        let want = try whole.forward(x, ctx).toArray()
        for tp in [2, 4] {
            let k = c / tp
            for r in 0..<tp {
                let slice = try #require(try whole.channelSlice(start: r * k, count: k, of: c) as? Dropout)
                slice.layerID = try #require(slice.pinnedLayerID)  // as a model holding it would
                var part = [Float]()
                for s in 0..<n { part += Array(x.toArray()[((s * c + r * k) * h * w)..<((s * c + (r + 1) * k) * h * w)]) }
                let y = try slice.forward(try Tensor(part, shape: Shape(n, k, h, w)), ctx).toArray()
                for s in 0..<n {
                    let got = Array(y[(s * k * h * w)..<((s + 1) * k * h * w)])
                    let ref = Array(want[((s * c + r * k) * h * w)..<((s * c + (r + 1) * k) * h * w)])
                    expectSameBits(got, ref, "tp=\(tp) rank \(r) sample \(s)")
                }
            }
        }
        #expect(want.contains(0) && want.contains { $0 != 0 }, "the mask drops some and keeps some")
    }

    /// A grouped convolution is replicated and the plan says why; the
    /// convolution before it then has no partner and is replicated too.
    @Test func groupedConvolutionsAreReplicated() throws {
        var s = StrategyConfig()
        s.tp = 2
        s.blasThreads = 1
        let model = try tpCNN(backend: .im2col, groups: 2)
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        let plan = t.planDescription
        for part in ["0: conv2d(2→8, 3x3) replicated (whole on every tp rank)",
            "4: conv2d(8→6, 3x3) replicated (whole on every tp rank): groups=2 convolutions are not split"] {
            #expect(plan.contains(part), "\(part) missing from:\n\(plan)")
        }
    }

    /// The bounds are meaningful: other dropout masks (another seed) move
    /// the parameters far outside them.
    @Test(arguments: DPOptimizer.allCases)
    func toleranceSeesOtherMasks(optimizer: DPOptimizer) throws {
        let serial = try trainCNN(backend: .im2col, optimizer: optimizer, steps: 3)
        var s = StrategyConfig()
        s.seed = 99
        s.blasThreads = 1
        let m2 = try tpCNN(backend: .im2col)
        let t2 = try Trainer(model: m2, loss: .crossEntropy, optimizer: optimizer.config, strategy: s)
        for k in 0..<3 {
            let (x, y) = try cnnBatch(32, step: k)
            try t2.step(inputs: x, targets: y)
        }
        let d = relativeDifference(m2.parameters!.toArray(), serial.params.last!)
        #expect(d > 100 * Self.tolerance(optimizer, step: 2), "other masks moved parameters by only \(d)")
    }

    @Test func tpMustDivideTheChannels() throws {
        var s = StrategyConfig()
        s.tp = 3
        let e = parmlError { _ = try Trainer(model: try tpCNN(backend: .im2col), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s) }
        #expect(e?.message.contains("tp=3") == true && e?.message.contains("the 8 channels") == true
            && e?.message.contains("layer 0 conv2d(2→8, 3x3)") == true, "\(String(describing: e))")
    }
}
