import ParmlModel
import ParmlParallel
import ParmlTensor

/// ZeRO-2 and 3 in fast mode: a run's gradients are reduce-scattered bucket
/// by bucket while backward goes on, and the parts a rank does not own are
/// handed back to the operating system at once, so a rank holds about 1/dp
/// of the gradients (its shard) plus the bucket being filled. Only where
/// that lowers the data group's peak (`releasesPages`): else the pages
/// stay, as under ZeRO 1, and no step pays for faulting them back. With overlap
/// (Overlap.swift) every ZeRO stage has buckets: ZeRO 0 all-reduces each,
/// ZeRO 1 reduce-scatters it and keeps its pages, and a communication
/// thread reduces them while backward computes earlier layers.
///
/// A bucket is a run of consecutive top-level layers, taken from the run's
/// last layer backwards until it holds at least `bucketFloats` gradients
/// (layers without parameters join the bucket being filled). It is ready
/// when the step's last backward piece has passed its first layer (with
/// micro-batches and pages handed back: each piece's, `eachMicroBatch`);
/// buckets are reduced in that order, which the schedule fixes, never the
/// clock.
///
/// Each reduction keeps the arena's ZeRO shards (one contiguous shard per
/// run and data rank): a reduce-scatter whose shards are the bucket's parts
/// of the ranks' shards (empty for ranks it does not meet), so each owner
/// gets the rank-order sum of its part, the bits of reduce-scattering the
/// whole run after backward. Every rank of the data group enters every
/// bucket's collective, in the same order.
///
/// `reduce(_:of:)` is the one place a ready bucket is reduced; with overlap
/// `reduceBuckets` hands ready buckets to the rank's CommunicationThread,
/// which reduces them in the same order. Every element's sum is the same
/// rank-order sum whatever the cut, so buckets change no bits.
final class GradientBuckets {
    struct Bucket {
        /// Top-level layer indices whose gradients it holds.
        let layers: Range<Int>
        /// Its arena slice.
        let range: Range<Int>
        /// Each data rank's part of it (its shard ∩ the bucket), from the bucket's start.
        let shards: [Range<Int>]
    }

    /// In the order they become ready (the run's last layers first).
    let buckets: [Bucket]
    /// The next bucket to reduce this step.
    var next = 0
    /// ZeRO ≥ 2 where it lowers the data group's peak (`lowersPeak`):
    /// pages outside the owned shard go back once reduced.
    let releasesPages: Bool
    /// Releasing with micro-batches: each micro-batch's buckets are
    /// reduce-scattered as its backward passes them, and the rank's shard
    /// accumulates the micro-batches' sums (DeepSpeed's ZeRO-2), so the
    /// pages outside it need not hold the step's whole gradient.
    let reducesEachMicroBatch: Bool
    /// This step does so (`reducesEachMicroBatch`, and every data rank runs
    /// the same pieces in each micro-batch, so all enter the same
    /// collectives); else the buckets wait for the step's last piece.
    var eachMicroBatch = false
    /// Floats of the run (all resident when pages are kept).
    let runFloats: Int

    convenience init(run: VirtualStage, model: Model, layout: RankLayout, bucketFloats: Int) {
        self.init(layers: run.layers, range: run.range, model: model, layout: layout, bucketFloats: bucketFloats)
    }

    /// The buckets of the run of top-level `layers` whose arena slice is
    /// `range` (the strategy advisor builds them without a rank).
    init(layers: Range<Int>, range runRange: Range<Int>, model: Model, layout: RankLayout, bucketFloats: Int) {
        let counts = model.topLevelParameterCounts
        var out: [Bucket] = []
        var end = layers.upperBound, floats = 0
        for l in layers.reversed() {
            floats += counts[l]
            if floats >= bucketFloats || l == layers.lowerBound {
                let range = model.parameterRange(ofTopLevelLayers: l..<end)
                let shards = (0..<layout.mesh.dp).map { d -> Range<Int> in
                    let owned = VirtualStage.owned(runRange, layout: layout, data: d)
                    let lo = max(owned.lowerBound, range.lowerBound), hi = min(owned.upperBound, range.upperBound)
                    return lo < hi ? (lo - range.lowerBound)..<(hi - range.lowerBound) : 0..<0
                }
                out.append(Bucket(layers: l..<end, range: range, shards: shards))
                end = l
                floats = 0
            }
        }
        buckets = out
        runFloats = runRange.count
        // A run holding batch_norm reduces its buckets at the end of its
        // phases: by then every page was written, so releasing lowers no
        // peak there.
        let waits = layers.contains { model.root.layers[$0] is BatchStatisticsLayer }
        releasesPages = layout.zeroStage >= 2 && !waits && GradientBuckets.lowersPeak(out, run: runRange, layout: layout)
        reducesEachMicroBatch = releasesPages && layout.microBatches > 1
    }

    /// Whether handing back each bucket's pages outside the shard lowers
    /// the largest resident gradient figure of the data group, by a page or
    /// more. Where one bucket spans most of the run (a model of a few large
    /// layers), the rank owning the run's start still holds every page while
    /// that bucket fills, so releasing saves the group nothing: yet every
    /// rank would fault each released page back in, zeroed, on the next
    /// backward, and the ranks reduce in lockstep, so one rank's faults
    /// delay all. Decided once, from the layout, the same on every rank.
    private static func lowersPeak(_ buckets: [Bucket], run: Range<Int>, layout: RankLayout) -> Bool {
        let peak = (0..<layout.mesh.dp).map { d in
            released(buckets, owned: VirtualStage.owned(run, layout: layout, data: d))
        }.max() ?? run.count
        return run.count - peak >= Pages.size / MemoryLayout<Float>.stride
    }

    /// Floats resident at most when every bucket's pages outside `owned`
    /// go back once reduced: the shard, and the largest bucket's part
    /// outside it while that bucket fills.
    private static func released(_ buckets: [Bucket], owned: Range<Int>) -> Int {
        let outside = buckets.map { b in
            b.range.count - max(0, min(b.range.upperBound, owned.upperBound) - max(b.range.lowerBound, owned.lowerBound))
        }
        return owned.count + (outside.max() ?? 0)
    }

    /// Gradient floats resident at most: the whole run where pages are
    /// kept, else the owned shard and the largest bucket's part outside it.
    func residentGradients(owned: Range<Int>) -> Int {
        releasesPages ? GradientBuckets.released(buckets, owned: owned) : runFloats
    }
}

extension RankContext {
    /// Reduces the run's ready buckets whose first layer is `layer` or
    /// later (called after each layer's backward on the step's last piece,
    /// or on every piece when the step reduces each micro-batch).
    /// With a communication thread the bucket is handed over instead.
    func reduceBuckets(of vs: VirtualStage, through layer: Int) throws {
        guard let b = vs.buckets else { return }
        while b.next < b.buckets.count, b.buckets[b.next].layers.lowerBound >= layer {
            if let communication {
                try communication.submit(run: vs.index, bucket: b.next)
            } else {
                try reduce(b.buckets[b.next], of: vs)
            }
            b.next += 1
        }
    }

    /// Before backward of layer `l` on a reducing piece: if `l` opens the
    /// next bucket and its pages were handed back, they are made resident
    /// in one call (Pages.populate) instead of a fault per page as the
    /// layers write them (two where a micro-batch adds to them).
    func populateBucket(of vs: VirtualStage, startingAt l: Int) {
        guard let b = vs.buckets, b.releasesPages, b.next < b.buckets.count, b.buckets[b.next].layers.upperBound - 1 == l,
            let grads = model.gradients
        else { return }
        let range = b.buckets[b.next].range
        Pages.populate(grads.data + range.lowerBound, count: range.count)
    }

    /// Reduces the run's buckets still waiting: its first bucket after the
    /// last piece's input gradient went to the previous stage, or all of
    /// them on a rank whose replica had no rows this step.
    func flushBuckets(of vs: VirtualStage) throws {
        try reduceBuckets(of: vs, through: vs.layers.lowerBound)
    }

    /// One bucket: all-reduced (ZeRO 0), or its parts of the data ranks'
    /// shards reduce-scattered to their owners, then (ZeRO ≥ 2) the pages
    /// outside this rank's shard handed back.
    func reduce(_ bucket: GradientBuckets.Bucket, of vs: VirtualStage) throws {
        guard let comms, let grads = model.gradients, let b = vs.buckets else { return }
        let g = grads.data
        guard layout.shardsOverData else {
            return try comms.data.allReduce(g + bucket.range.lowerBound, count: bucket.range.count, op: .sum)
        }
        try comms.data.reduceScatter(g + bucket.range.lowerBound, count: bucket.range.count, shards: bucket.shards, op: .sum)
        guard b.releasesPages else { return }
        let lo = bucket.range.lowerBound, owned = vs.owned
        if b.eachMicroBatch {
            // The next micro-batch's backward adds to what is here: the
            // shard holds the sum so far, and the rest must read zero, the
            // partial pages at its ends too (the rank's part of the next
            // sum is then its own gradient alone).
            Pages.zero(g + lo, count: min(bucket.range.upperBound, owned.lowerBound) - lo)
            let from = max(lo, owned.upperBound)
            Pages.zero(g + from, count: bucket.range.upperBound - from)
        }
        // The buckets above this one are reduced already: reaching a page
        // into them frees the page a boundary between two buckets cuts.
        let hi = min(bucket.range.upperBound + Pages.size / 4, vs.range.upperBound)
        Pages.release(g + lo, count: min(hi, owned.lowerBound) - lo)  // below the shard (nothing when count ≤ 0)
        let above = max(lo, owned.upperBound)
        Pages.release(g + above, count: hi - above)
    }
}

extension RankContext {
    /// With overlap: the rank's communication thread, which reduces the
    /// buckets backward hands it (started when the rank is built).
    func startCommunicationThread() throws -> CommunicationThread? {
        guard layout.overlapsReduction, comms != nil else { return nil }
        let capacity = virtualStages.reduce(0) { $0 + ($1.buckets?.buckets.count ?? 0) }
        guard capacity > 0 else { return nil }
        return try CommunicationThread(capacity: capacity) { [unowned self] job in
            guard let vs = virtualStages.first(where: { $0.index == job.run }), let b = vs.buckets else {
                throw ParmlError.internal("overlap: no run \(job.run) with buckets on rank \(rank)")
            }
            try reduce(b.buckets[job.bucket], of: vs)
        }
    }

    /// Waits for the buckets handed to the communication thread: after it
    /// the step's gradients are reduced, as after synchronous buckets.
    func finishBuckets() throws {
        try communication?.finish()
    }

    /// A step that failed with buckets in flight: the world is aborted (as
    /// the rank's failure would abort it anyway), so the bucket's collective
    /// ends at once, and the thread is let go before the error leaves the
    /// rank, so it never touches gradients of a later step.
    func abandonBuckets(after error: any Error) {
        guard let communication else { return }
        if communication.busy { comms?.data.abort(reason: "rank \(rank) failed: \(error)") }
        communication.quiesce()
    }
}
