import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlTraining

/// Pipeline stages balance the flops layers state (LayerCost.swift).
struct StageCostTests {
    let e = LayerCost.elementFlops

    @Test func productsCostSixFlopsPerMultiplyAddPlusTheirElements() throws {
        let linear = try Linear(inFeatures: 10, outFeatures: 20)
        #expect(try LayerCost.of(linear, input: Shape(3, 10)) == 6 * 3 * 10 * 20 + e * (30 + 60))
        // (B, T, C) = (2, 8, 16), 2 heads of 8: projections 6·16·16·(3·16 + 16),
        // scores and their sum 12·16·8·16, softmax 2 passes over 16·8·2 scores.
        let attention = try CausalSelfAttention(features: 16, heads: 2)
        let rows = 16.0
        let want = 6 * rows * 16 * 48 + 6 * rows * 16 * 16 + 12 * rows * 8 * 16 + e * 2 * rows * 8 * 2 + e * 2 * 256
        #expect(try LayerCost.of(attention, input: Shape(2, 8, 16)) == want)
        let head = try TiedClassifier(count: 50, dim: 16)
        #expect(try LayerCost.of(head, input: Shape(1, 8, 16)) == 6 * 8 * 16 * 50 + e * (128 + 400))
        // A residual block: its body's layers, and its own sum's elements.
        let m = Model()
        try m.beginResidual()
        try m.add(try Linear(inFeatures: 4, outFeatures: 4))
        try m.add(Activation(.relu))
        try m.endResidual()
        try m.initialize(seed: 1)
        let block = m.root.layers[0]
        #expect(try LayerCost.of(block, input: Shape(2, 4)) == e * 16 + (6 * 2 * 16 + e * 16) + e * 16)
    }

    @Test func theSampleIsWhatTheModelImplies() throws {
        let gpt = try Self.gpt(vocabulary: 50)
        #expect(LayerCost.sampleInput(gpt) == Shape(1, 16))
        let mlp = Model()
        try mlp.add(try Linear(inFeatures: 7, outFeatures: 3))
        try mlp.initialize(seed: 1)
        #expect(LayerCost.sampleInput(mlp) == Shape(1, 7))
        #expect(LayerCost.stageCosts(mlp).costs == [Int(6 * 7 * 3 + e * 10)])
    }

    /// With a large vocabulary the embedding and the tied head hold the
    /// same many parameters, but the embedding does little work and the
    /// head much: counting parameters splits the blocks evenly around them;
    /// counting flops moves blocks to the embedding's stage.
    @Test func aLargeVocabularyGPTBalancesByWork() throws {
        let m = try Self.gpt(vocabulary: 4000)
        let costs = LayerCost.stageCosts(m).costs
        let byCost = try StagePartition.balanced(costs: costs, stages: 2)
        let byParameters = try StagePartition.balanced(costs: m.topLevelParameterCounts, stages: 2)
        func largest(_ p: StagePartition) -> Int { p.layers.map { r in r.reduce(0) { $0 + costs[$1] + 1 } }.max()! }
        #expect(byCost.layers[0].count > byParameters.layers[0].count, "flops: \(byCost.layers)")
        #expect(largest(byCost) < largest(byParameters), "\(largest(byCost)) vs \(largest(byParameters))")
        var s = StrategyConfig()
        s.pp = 2
        let t = try Trainer(model: m, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        #expect(t.layout.partition == byCost)
        #expect(t.planDescription.contains("balanced by each layer's flops per sample"), "\(t.planDescription)")
    }

    static func gpt(vocabulary v: Int) throws -> Model {
        try miniGPT(vocabulary: v, width: 32, context: 16, blocks: 4, heads: 4, seed: 3)
    }
}
