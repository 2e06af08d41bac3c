import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

// DP-SGD on a GPT (attention's per-example norms, a tied or untied
// classifier) under the layouts private training allows: pp gives serial's
// model bit for bit in deterministic mode, tp within its rounding bound
// (attention's heads are a sliced layer, its output bias replicated), and a
// tied classifier on another stage than its embedding is refused up front.

/// miniGPT with the tied head replaced by an untied linear classifier.
private func untiedGPT(seed: UInt64 = 6) throws -> Model {
    try miniGPT(vocabulary: 16, width: 16, context: 8, blocks: 2, heads: 2, seed: seed, hidden: 32, tiedHead: false)
}

/// 12 sequences of 8 tokens and their next tokens (ids as floats, as the
/// token layers take them).
private func tokens(_ k: Int) throws -> (Tensor, Tensor) {
    let n = 12, t = 8
    let ids = (0..<(n * (t + 1))).map { Float(($0 * 7 + k * 3 + ($0 / 5)) % 16) }
    var x: [Float] = [], y: [Float] = []
    for i in 0..<n {
        x += ids[(i * (t + 1))..<(i * (t + 1) + t)]
        y += ids[(i * (t + 1) + 1)..<((i + 1) * (t + 1))]
    }
    return (try Tensor(x, shape: Shape(n, t)), try Tensor(y, shape: Shape(n, t)))
}

private func layout(pp: Int = 1, tp: Int = 1, microBatches: Int = 1) -> StrategyConfig {
    privateLayout(pp: pp, tp: tp, microBatches: microBatches, chunk: 4, seed: 13)
}

struct PrivateGPTLayoutTests {
    @Test func pipelinedPrivateGPTIsBitIdenticalToSerial() throws {
        let serial = try trainPrivately(layout(), try untiedGPT(), batch: tokens)
        for (pp, m) in [(2, 1), (2, 3)] {
            let piped = try trainPrivately(layout(pp: pp, microBatches: m), try untiedGPT(), batch: tokens)
            expectSameBits(piped, serial, "private GPT pp \(pp) m \(m) vs serial")
        }
    }

    @Test func tensorParallelPrivateGPTMatchesSerialWithinRounding() throws {
        for make in [{ try untiedGPT() }, { try miniGPT(vocabulary: 16, width: 16, context: 8, blocks: 2, heads: 2, seed: 6) }] {
            let serial = try trainPrivately(layout(), try make(), batch: tokens)
            let split = try trainPrivately(layout(tp: 2), try make(), batch: tokens)
            let d = relativeDifference(split, serial)
            #expect(d <= PrivateTensorParallelTests.tolerance, "tp 2 differs from serial by \(d) of the largest parameter")
            // The private step moved the model: the comparison is not of two untrained models.
            #expect(relativeDifference(serial, try make().parameters!.toArray()) > 1e-4)
        }
    }

    @Test func tiedClassifierAcrossStagesIsRefused() throws {
        let model = try miniGPT(vocabulary: 16, width: 16, context: 8, blocks: 2, heads: 2, seed: 6)
        var o = OptimizerConfig()
        o.kind = .sgd
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: o, strategy: layout(pp: 2, microBatches: 2))
        expectError(
            parmlError { try t.setPrivacy(PrivacyConfig(noiseMultiplier: 1, maxGradNorm: 1)) }, "unsupported",
            mentions: ["tied", "pp = 2", "untied"])
    }
}
