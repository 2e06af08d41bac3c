import ParmlParallel
import ParmlTensor

/// Deterministic mode's gradient reduction over the data-parallel ranks of the stage.
extension RankContext {
    /// Deterministic mode: the run's accumulator holds this rank's cover
    /// nodes; the ChunkTree sum over every data rank's nodes lands in
    /// `vs.owned` (ZeRO ≥ 1) or the run's whole slice (ZeRO 0).
    func combineChunkGradients(plan: StepPlan, of vs: VirtualStage) throws {
        guard let grads = model.gradients else { return }
        let tree = vs.accumulator.tree
        let mine = vs.accumulator.stack
        let width = vs.range.count
        let base = grads.data + vs.range.lowerBound
        let dp = layout.mesh.dp
        guard let comms, dp > 1 else {
            // One data rank: its cover is the root.
            guard mine.count == 1, mine[0].node == tree.root else { throw ParmlError.internal("chunk tree left \(mine.count) nodes") }
            // Where the accumulator wrote the root into the arena (Rank.swift's start), nothing is left to do.
            if let sum = mine[0].buffer { base.update(from: sum.data, count: width) }
            return
        }
        if coveredChunks != plan.chunkCount {
            covers = (0..<dp).map { tree.cover(plan.chunks(of: $0)) }
            coveredChunks = plan.chunkCount
        }
        // Send my nodes' slices to each shard owner, then combine my shard
        // from everyone's nodes along the tree.
        let d = coordinate.data
        for owner in 0..<dp where owner != d {
            let s = Sharding.range(count: width, parts: dp, index: owner)
            for i in mine.indices { try comms.data.send(vs.accumulator.values(at: i) + s.lowerBound, count: s.count, to: owner) }
        }
        let myShard = Sharding.range(count: width, parts: dp, index: d)
        have.removeAll(keepingCapacity: true)
        for (i, e) in mine.enumerated() { have[e.node] = vs.accumulator.values(at: i) + myShard.lowerBound }
        var k = 0
        for other in 0..<dp where other != d {
            let theirs = covers[other]
            try ensure(&receivedNodes, count: k + theirs.count, size: myShard.count)
            for node in theirs {
                try comms.data.receive(receivedNodes[k].data, count: myShard.count, from: other)
                have[node] = UnsafePointer(receivedNodes[k].data)
                k += 1
            }
        }
        try ensure(&shardLevelBuffers, count: tree.height + 1, size: myShard.count)
        combine(tree.root, into: base + myShard.lowerBound, count: myShard.count, tree: tree)
        if layout.zeroStage == 0 { try comms.data.allGather(base, count: width) }
    }

    /// value(node) over my shard, from the nodes ranks computed: a node
    /// someone holds is copied; an inner node is left + right (or left alone).
    func combine(_ node: ChunkTree.Node, into dst: UnsafeMutablePointer<Float>, count: Int, tree: ChunkTree) {
        if let src = have[node] {
            dst.update(from: src, count: count)
            return
        }
        let (left, right) = tree.children(node)
        combine(left, into: dst, count: count, tree: tree)
        if let right {
            let tmp = shardLevelBuffers[node.level].data
            combine(right, into: tmp, count: count, tree: tree)
            Kernels.addInPlace(dst, tmp, count: count)
        }
    }
}
