import ParmlModel
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// ZeRO-3 under MPI gathers each top-level layer's parameters before use
// (ParameterGathering.swift), with tp > 1 too: then in each tp rank's
// rewritten arena. The gathering itself needs MPI processes
// (tests/mpi/py_zero3.py); its blocks and shards are built here from the
// ranks a threads trainer lays out alike.
@Suite struct ParameterGatheringTests {
    private func trainer(dp: Int, tp: Int) throws -> Trainer {
        var s = StrategyConfig()
        (s.dp, s.tp, s.zeroStage) = (dp, tp, 3)
        let m = try miniGPT(vocabulary: 11, width: 16, context: 8, blocks: 2, heads: 2, seed: 4)
        return try Trainer(model: m, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
    }

    /// MPI processes gather per layer whenever dp > 1, whatever tp; threads
    /// (one shared arena) and dp = 1 do not.
    @Test func appliesWithTensorParallelism() throws {
        for tp in [1, 2] {
            let layout = try trainer(dp: 2, tp: tp).layout
            #expect(ParameterGathering.applies(layout: layout, sharesParameters: false, processes: true), "tp \(tp)")
            #expect(!ParameterGathering.applies(layout: layout, sharesParameters: false, processes: false), "tp \(tp)")
            #expect(!ParameterGathering.applies(layout: layout, sharesParameters: true, processes: true), "tp \(tp)")
        }
        #expect(!ParameterGathering.applies(layout: try trainer(dp: 1, tp: 2).layout, sharesParameters: false, processes: true))
    }

    /// With tp = 2 every rank's blocks are its rewritten model's top-level
    /// layers, in its arena; the data ranks' parts of each block tile it,
    /// each part being that rank's shard there, and the resident figure is
    /// a layer's part outside the shard.
    @Test func blocksOfTensorParallelArenas() throws {
        let t = try trainer(dp: 2, tp: 2)
        let layout = t.layout
        for r in t.ranks {
            let g = ParameterGathering(runs: r.virtualStages, model: r.model, layout: layout, data: r.coordinate.data)
            let count = r.model.parameterCount
            #expect(r.model !== t.model && count < t.model.parameterCount, "rank \(r.rank) runs its tp slices")
            var covered = 0
            for (l, b) in g.blocks.sorted(by: { $0.key < $1.key }) {
                #expect(b.range == r.model.parameterRange(ofTopLevelLayers: l..<(l + 1)))
                #expect(b.range.lowerBound == covered, "rank \(r.rank) layer \(l)")
                covered = b.range.upperBound
                #expect(b.shards.count == 2)
                #expect(b.owned == r.ownedRanges[0])
                #expect(b.shards.reduce(0) { $0 + $1.count } == b.range.count, "rank \(r.rank) layer \(l)")
                for (d, part) in b.shards.enumerated() where !part.isEmpty {
                    let owned = VirtualStage.owned(r.virtualStages[0].range, layout: layout, data: d)
                    #expect(owned.contains(b.range.lowerBound + part.lowerBound) && owned.contains(b.range.lowerBound + part.upperBound - 1))
                }
            }
            #expect(covered == count)
            expectEqualElements(g.owned, r.ownedRanges)
            let outside = ParameterGathering.largestOutside(
                layers: r.virtualStages[0].layers, run: r.virtualStages[0].range, owned: r.virtualStages[0].owned, model: r.model)
            #expect(outside > 0 && outside <= count - r.ownedRanges[0].count)
        }
    }
}
