import ParmlModel
import ParmlParallel
import ParmlTensor

/// The global gradient norm (GradientClipping's blockwise definition) when
/// the gradient arena is spread over ranks: pipeline stages own slices of
/// it, and ZeRO ranks shards of those.
///
/// The arena is cut into segments, one per owning rank and run of layers
/// (interleaved 1F1B gives a rank several), in arena order. A
/// block of `GradientClipping.blockSize` elements is summed by the segment
/// holding its last element; segments holding its earlier elements send
/// them there, so the block's sum of squares runs over the same contiguous
/// values as in serial training and gives the same bits. Block sums then
/// meet in one all-reduce (each block is non-zero on one rank only, and
/// adding zeros is exact). Where every rank holds the whole gradient (one
/// stage, no sharding) each rank sums all blocks itself without messages.
struct DistributedNorm {
    struct Segment {
        let range: Range<Int>
        let owner: Int
    }

    let total: Int
    let segments: [Segment]
    /// Indices in `segments` of this rank's segments, in arena order.
    let mine: [Int]
    /// Every rank holds the whole gradient: no communication.
    let local: Bool

    /// `stageRanges`: every run's slice, run c held by stage c mod pp.
    init(stageRanges: [Range<Int>], total: Int, mesh: Mesh, sharded: Bool, rank: Int) {
        self.total = total
        var segments: [Segment] = []
        for (c, r) in stageRanges.enumerated() {
            let s = c % mesh.pp
            if sharded {
                for d in 0..<mesh.dp {
                    let sh = Sharding.range(count: r.count, parts: mesh.dp, index: d)
                    segments.append(Segment(range: (r.lowerBound + sh.lowerBound)..<(r.lowerBound + sh.upperBound), owner: mesh.rank(data: d, stage: s)))
                }
            } else {
                segments.append(Segment(range: r, owner: mesh.rank(data: 0, stage: s)))
            }
        }
        let kept = segments.filter { !$0.range.isEmpty }
        self.segments = kept
        mine = kept.indices.filter { kept[$0].owner == rank }
        local = !sharded && stageRanges.count == 1
    }

    /// ‖g‖ over the whole arena. `sums` holds blockCount(total) floats and
    /// `scratch` blockSize floats; `comm` is the world's communicator.
    func norm(
        _ grads: UnsafePointer<Float>, sums: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
        comm: Communicator?
    ) throws -> Float {
        let blocks = GradientClipping.blockCount(total)
        if local {
            GradientClipping.blockSquares(grads, range: 0..<total, count: total, into: sums)
            return GradientClipping.norm(blockSums: sums, blocks: blocks)
        }
        guard let comm else { throw ParmlError.internal("a distributed gradient norm needs a communicator") }
        sums.update(repeating: 0, count: blocks)
        // Every send first: a rank waiting on a block's earlier part has
        // already sent what its own segments owe others.
        for i in mine { try sendTail(segments[i].range, grads, comm: comm) }
        for i in mine { try sumBlocks(segments[i].range, grads, sums: sums, scratch: scratch, comm: comm) }
        try comm.allReduce(sums, count: blocks, op: .sum)
        return GradientClipping.norm(blockSums: sums, blocks: blocks)
    }

    private func finisher(ofElement i: Int) -> Segment? { segments.first { $0.range.contains(i) } }

    /// A segment whose last block goes on past its end: that block's
    /// finisher gets the segment's part of it (unless the finisher is this
    /// rank, which reads it in place).
    private func sendTail(_ r: Range<Int>, _ grads: UnsafePointer<Float>, comm: Communicator) throws {
        let b = GradientClipping.blockSize
        let lastBlock = (r.upperBound - 1) / b
        let lastEnd = min((lastBlock + 1) * b, total)
        if lastEnd > r.upperBound, let f = finisher(ofElement: lastEnd - 1), f.owner != comm.rank {
            let from = max(r.lowerBound, lastBlock * b)
            try comm.send(grads + from, count: r.upperBound - from, to: f.owner)
        }
    }

    /// The sums of the blocks ending in segment `r`.
    private func sumBlocks(
        _ r: Range<Int>, _ grads: UnsafePointer<Float>, sums: UnsafeMutablePointer<Float>,
        scratch: UnsafeMutablePointer<Float>, comm: Communicator
    ) throws {
        let b = GradientClipping.blockSize
        let lastBlock = (r.upperBound - 1) / b
        for block in (r.lowerBound / b)...lastBlock {
            let start = block * b
            let end = min(start + b, total)
            guard r.contains(end - 1) else { continue }
            if start >= r.lowerBound {
                sums[block] = Kernels.sumOfSquares(grads + start, count: end - start)
                continue
            }
            // The block began in earlier segments: gather it in order.
            for s in segments where s.range.lowerBound < r.lowerBound && s.range.upperBound > start {
                let lo = max(s.range.lowerBound, start)
                if s.owner == comm.rank {
                    (scratch + (lo - start)).update(from: grads + lo, count: s.range.upperBound - lo)
                } else {
                    try comm.receive(scratch + (lo - start), count: s.range.upperBound - lo, from: s.owner)
                }
            }
            (scratch + (r.lowerBound - start)).update(from: grads + r.lowerBound, count: end - r.lowerBound)
            sums[block] = Kernels.sumOfSquares(scratch, count: end - start)
        }
    }
}
