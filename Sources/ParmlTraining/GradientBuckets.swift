import ParmlModel
import ParmlParallel
import ParmlTensor

/// ZeRO-2 and 3 in fast mode: a run's gradients are reduce-scattered bucket
/// by bucket while backward goes on, and the parts a rank does not own are
/// handed back to the operating system at once, so a rank holds about 1/dp
/// of the gradients (its shard) plus the bucket being filled.
///
/// A bucket is a run of consecutive top-level layers, taken from the run's
/// last layer backwards until it holds at least `bucketFloats` gradients
/// (layers without parameters join the bucket being filled). It is ready
/// when the step's last backward piece has passed its first layer; buckets
/// are reduced in that order, which the schedule fixes, never the clock.
///
/// Each reduction keeps the arena's ZeRO shards (one contiguous shard per
/// run and data rank): for every owner whose shard the bucket meets, the
/// other ranks send it their part, and the owner adds the dp parts in rank
/// order (the sum `Communicator.reduceScatter` defines), so the result is
/// the same bits as reduce-scattering the whole run after backward.
///
/// `reduce(_:of:)` is the one place a ready bucket is handled: work that
/// overlaps communication with backward (a communication thread) attaches
/// there, taking ready buckets in the same order.
final class GradientBuckets {
    struct Bucket {
        /// Top-level layer indices whose gradients it holds.
        let layers: Range<Int>
        /// Its arena slice.
        let range: Range<Int>
    }

    /// In the order they become ready (the run's last layers first).
    let buckets: [Bucket]
    /// The next bucket to reduce this step.
    var next = 0
    /// An owner's running sum, and a peer's part as it arrives.
    let sum: Tensor
    let incoming: Tensor

    init(run: VirtualStage, model: Model, bucketFloats: Int) throws {
        let counts = model.topLevelParameterCounts
        var out: [Bucket] = []
        var end = run.layers.upperBound, floats = 0
        for l in run.layers.reversed() {
            floats += counts[l]
            if floats >= bucketFloats || l == run.layers.lowerBound {
                out.append(Bucket(layers: l..<end, range: model.parameterRange(ofTopLevelLayers: l..<end)))
                end = l
                floats = 0
            }
        }
        buckets = out
        let largest = out.map(\.range.count).max() ?? 0
        sum = try Tensor(shape: Shape(max(largest, 1)))
        incoming = try Tensor(shape: Shape(max(largest, 1)))
    }

    /// Floats of the largest bucket.
    var largest: Int { buckets.map(\.range.count).max() ?? 0 }

    /// Gradient floats resident at most: the owned shard, and the largest
    /// bucket's part outside it while that bucket fills.
    func residentGradients(owned: Range<Int>) -> Int {
        let outside = buckets.map { b in
            b.range.count - max(0, min(b.range.upperBound, owned.upperBound) - max(b.range.lowerBound, owned.lowerBound))
        }
        return owned.count + (outside.max() ?? 0)
    }

    /// Scratch bytes: the two bucket buffers.
    var scratchBytes: Int { (sum.capacity + incoming.capacity) * MemoryLayout<Float>.stride }
}

extension RankContext {
    /// Reduces the run's ready buckets whose first layer is `layer` or
    /// later (called after each layer's backward on the step's last piece).
    func reduceBuckets(of vs: VirtualStage, through layer: Int) throws {
        guard let b = vs.buckets else { return }
        while b.next < b.buckets.count, b.buckets[b.next].layers.lowerBound >= layer {
            try reduce(b.buckets[b.next], of: vs)
            b.next += 1
        }
    }

    /// Reduces the run's buckets still waiting: its first bucket after the
    /// last piece's input gradient went to the previous stage, or all of
    /// them on a rank whose replica had no rows this step.
    func flushBuckets(of vs: VirtualStage) throws {
        try reduceBuckets(of: vs, through: vs.layers.lowerBound)
    }

    /// One bucket: its parts of the data ranks' shards summed on their
    /// owners in rank order, then the pages outside this rank's shard handed back.
    func reduce(_ bucket: GradientBuckets.Bucket, of vs: VirtualStage) throws {
        guard let comms, let grads = model.gradients, let b = vs.buckets else { return }
        let dp = layout.mesh.dp, me = coordinate.data
        let g = grads.data
        func part(of owner: Int) -> Range<Int> {
            let s = VirtualStage.owned(vs.range, layout: layout, data: owner)
            let lo = max(s.lowerBound, bucket.range.lowerBound), hi = min(s.upperBound, bucket.range.upperBound)
            return lo < hi ? lo..<hi : lo..<lo
        }
        // Every pair exchanges a message per bucket, empty where a part is:
        // each rank waits for all its peers, so a rank that stalls is the
        // one every other rank's timeout names.
        for owner in 0..<dp where owner != me {
            let p = part(of: owner)
            try comms.data.send(g + p.lowerBound, count: p.count, to: owner)
        }
        let mine = part(of: me)
        if mine.isEmpty {
            for r in 0..<dp where r != me { try comms.data.receive(b.incoming.data, count: 0, from: r) }
        } else {
            let n = mine.count, own = g + mine.lowerBound
            // Σ over data ranks 0, 1, ..., dp−1, one addition at a time.
            let acc = me == 0 ? own : b.sum.data
            if me != 0 { try comms.data.receive(acc, count: n, from: 0) }
            for r in 1..<dp {
                if r == me {
                    Kernels.addInPlace(acc, own, count: n)
                } else {
                    try comms.data.receive(b.incoming.data, count: n, from: r)
                    Kernels.addInPlace(acc, b.incoming.data, count: n)
                }
            }
            if me != 0 { own.update(from: acc, count: n) }
        }
        // The buckets above this one are reduced already: reaching a page
        // into them frees the page a boundary between two buckets cuts.
        let lo = bucket.range.lowerBound, hi = min(bucket.range.upperBound + Pages.size / 4, vs.range.upperBound)
        let owned = vs.owned
        Pages.release(g + lo, count: min(hi, owned.lowerBound) - lo)  // below the shard (nothing when count ≤ 0)
        let above = max(lo, owned.upperBound)
        Pages.release(g + above, count: hi - above)
    }
}
