import ParmlParallel
import ParmlTensor

extension RankContext {
    /// ‖g‖ over the whole model's gradients (the batch mean), on every
    /// rank; collective over the world.
    func globalGradientNorm(_ grads: UnsafePointer<Float>) throws -> Float {
        if tensorParallel != nil, let comms { return try tensorParallelNorm(grads, comm: comms.world) }
        return try norm.norm(grads, sums: blockSums.data, scratch: blockScratch.data, comm: comms?.world)
    }

    /// tp > 1: ‖g‖ as Σ over ranks of their share of squares. Sums split
    /// along tp differ from serial rounding, as tensor parallelism does anyway.
    func tensorParallelNorm(_ grads: UnsafePointer<Float>, comm: Communicator) throws -> Float {
        var local: Float = 0
        for r in normRanges { local += Kernels.sumOfSquares(grads + r.lowerBound, count: r.count) }
        stats.data[0] = local
        try comm.allReduce(stats.data, count: 1, op: .sum)
        return stats.data[0].squareRoot()
    }
}
