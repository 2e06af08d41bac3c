import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

/// A transformer block stack wide enough that every kind of work the rank's
/// threads take is split: products above ProductThreads.minimumVolume, GELU,
/// LayerNorm rows and columns, (sample, head) pairs and the AdamW update.
private func blocks(seed: UInt64) throws -> Model {
    let c = 128
    var layers: [Layer] = [try Linear(inFeatures: 16, outFeatures: c)]
    for _ in 0..<2 {
        layers.append(Residual(Sequential([try LayerNorm(features: c), try CausalSelfAttention(features: c, heads: 4)])))
        layers.append(
            Residual(
                Sequential([
                    try LayerNorm(features: c), try Linear(inFeatures: c, outFeatures: 4 * c), Activation(.gelu),
                    try Linear(inFeatures: 4 * c, outFeatures: c),
                ])))
    }
    layers += [try LayerNorm(features: c), try Linear(inFeatures: c, outFeatures: 16)]
    let m = Model()
    for l in layers { try m.add(l) }
    try m.initialize(seed: seed)
    return m
}

/// Trains `steps` AdamW steps on fixed batches (B 8, T 32) and returns the parameters' bits.
private func trainedBits(_ configure: (inout StrategyConfig) -> Void, steps: Int = 2) throws -> [UInt32] {
    let model = try blocks(seed: 5)
    var o = OptimizerConfig()
    o.kind = .adamW
    o.learningRate = 1e-3
    o.weightDecay = 0.1
    var s = StrategyConfig()
    configure(&s)
    let t = try Trainer(model: model, loss: .meanSquaredError, optimizer: o, strategy: s)
    for step in 0..<steps {
        let x = try Tensor(randomArray(8 * 32 * 16, seed: 40 + UInt64(step)), shape: Shape(8, 32, 16))
        let y = try Tensor(randomArray(8 * 32 * 16, seed: 60 + UInt64(step)), shape: Shape(8, 32, 16))
        _ = try t.step(inputs: x, targets: y)
    }
    return model.parameters!.toArray().map(\.bitPattern)
}

/// parml's own threads (WorkerPool) cut every piece of work by its shape into
/// parts whose arithmetic does not depend on the thread that runs them, so the
/// thread count changes no bit (docs/parallel.md, "Threads inside a rank").
@Suite(.serialized) struct WorkerThreadsTests {
    @Test func threadCountChangesNoBit() throws {
        let one = try trainedBits { $0.blasThreads = 1 }
        for threads in [2, 3] {
            let many = try trainedBits { $0.blasThreads = threads }
            let differ = zip(one, many).filter { $0 != $1 }.count
            #expect(differ == 0, "\(threads) threads: \(differ) of \(one.count) parameters differ from 1 thread")
        }
    }

    /// Deterministic mode, serial training on 2 threads against dp 2 and
    /// pp 2 with 1 thread per rank: parml's threads keep the layouts
    /// bit-identical across thread counts (the default gives every rank 1
    /// because oneDNN's convolutions would not).
    @Test func deterministicLayoutsAgreeAcrossThreadCounts() throws {
        let serial = try trainedBits {
            $0.deterministic = true
            $0.blasThreads = 2
        }
        for (dp, pp) in [(2, 1), (1, 2)] {
            let other = try trainedBits {
                $0.deterministic = true
                $0.blasThreads = 1
                $0.dp = dp
                $0.pp = pp
                $0.microBatches = pp
            }
            let differ = zip(serial, other).filter { $0 != $1 }.count
            #expect(differ == 0, "dp \(dp) pp \(pp): \(differ) of \(serial.count) parameters differ from serial")
        }
    }
}
