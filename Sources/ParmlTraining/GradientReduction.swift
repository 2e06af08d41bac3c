import ParmlParallel
import ParmlTensor

/// Gradient reduction over the data-parallel ranks of the stage (fast mode).
extension RankContext {
    /// Fast mode: the batch mean over `vs.owned`, summed in rank order.
    func reduceGradients(of vs: VirtualStage, bucketFloats: Int) throws {
        guard let comms, layout.mesh.dp > 1, let grads = model.gradients else { return }
        let stageRange = vs.range
        let base = grads.data + stageRange.lowerBound
        if let ring = vs.compressedRing {
            try ring.allReduce(base, count: stageRange.count, comm: comms.data)
            return
        }
        // ZeRO ≥ 1 updates only the owned shard, so only it needs reducing:
        // a reduce-scatter, half an all-reduce.
        if layout.zeroStage >= 1 {
            try comms.data.reduceScatter(base, count: stageRange.count, op: .sum)
            return
        }
        var start = 0
        while start < stageRange.count {
            let n = min(bucketFloats, stageRange.count - start)
            try comms.data.allReduce(base + start, count: n, op: .sum)
            start += n
        }
    }

    /// Local SGD: each run's parameters become the mean over the data-parallel
    /// replicas (summed in rank order, then scaled by 1/dp), in buckets.
    func averageParameters(_ params: Tensor, bucketFloats: Int) throws {
        guard let comms, layout.mesh.dp > 1 else { return }
        for vs in virtualStages {
            var start = 0
            while start < vs.range.count {
                let n = min(bucketFloats, vs.range.count - start)
                try comms.data.allReduce(params.data + vs.range.lowerBound + start, count: n, op: .mean)
                start += n
            }
        }
    }
}
