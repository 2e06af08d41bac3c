import ParmlModel
import ParmlParallel
import ParmlTensor

// Tied parameters (a classifier tied to the token embedding) have two arena
// slots, the source and a copy, as Megatron-LM keeps the word embedding on
// the first and the last pipeline stage. Every layout uses one definition,
// so they all give serial training's bits:
//   1. after the gradient reduction, g = (g_source + 0) + (g_copy + 0),
//      element by element (adding +0 makes a −0 the +0 a sum over ranks
//      gives);
//   2. the source slot holds g and the copy slot holds 0 while the norm is
//      taken, so the matrix counts once in clipping, as in PyTorch;
//   3. after clipping the copy slot gets the source's clipped g, so the
//      optimizer moves both slots alike and their values stay equal.
// When one rank holds both whole slots (one stage, no ZeRO shards), all of
// this is local. Otherwise the slots' owned parts meet in one all-reduce
// over the world, where each element comes from exactly one rank (data rank
// 0 unless ZeRO shards the stage; tp rank 0 for a replicated pair, each tp
// rank in its own segment for a pair split by vocabulary rows), so the sum
// is exact.

/// A rank's buffers for the tied slots: the pairs, and each pair's summed
/// gradient kept for the copy's owned part until the clip factor is known.
final class TiedGradients {
    let pairs: [(source: Range<Int>, copy: Range<Int>)]
    /// Per pair: tp ranks hold different rows of it (a vocabulary split).
    let split: [Bool]
    /// 2n floats per pair, the pairs one after another: one segment.
    let segment: Int
    /// One segment per tp rank when a pair is split, else one: each pair's
    /// source gradient then its copy's (collective mode).
    let exchange: Tensor
    /// n floats per pair: g for the copy's owned part.
    let sums: Tensor

    init(model: Model, tensorParallel: TensorParallelSync?, tp: Int) throws {
        pairs = model.tiedParameters
        let copies = model.parameterInfo.indices.filter { model.parameterInfo[$0].tiedTo != nil }
        split = copies.map { j in tensorParallel.map { !$0.rewrite.sources[j].replicated } ?? false }
        let n = pairs.reduce(0) { $0 + $1.source.count }
        segment = 2 * n
        exchange = try Tensor(shape: Shape((split.contains(true) ? tp : 1) * segment))
        sums = try Tensor(shape: Shape(n))
    }
}

extension RankContext {
    /// Whether this rank holds both slots of every pair whole after the reduction.
    private var tiesAreLocal: Bool {
        comms == nil || (layout.mesh.pp == 1 && !layout.shardsOverData)
    }

    /// Step 1 and 2 above, on this rank's owned ranges.
    func sumTiedGradients(_ grads: UnsafeMutablePointer<Float>) throws {
        guard let tied, !tied.pairs.isEmpty else { return }
        let x = tied.exchange.data
        // In collective mode tp rank t writes a split pair into segment t,
        // and only tp rank 0 writes a replicated one (into segment 0).
        let local = tiesAreLocal
        func at(_ split: Bool) -> Int { local || !split ? 0 : coordinate.tensor * tied.segment }
        if local {
            var base = 0
            for p in tied.pairs {
                (x + base).update(from: grads + p.source.lowerBound, count: p.source.count)
                (x + base + p.source.count).update(from: grads + p.copy.lowerBound, count: p.copy.count)
                base += 2 * p.source.count
            }
        } else {
            guard let comms else { throw ParmlError.internal("tied gradients across ranks need a communicator") }
            let contributes = layout.shardsOverData || coordinate.data == 0
            tied.exchange.fill(0)
            var base = 0
            for (p, split) in zip(tied.pairs, tied.split) {
                if contributes && (split || coordinate.tensor == 0) {
                    copyOwned(p.source, from: grads, to: x + at(split) + base)
                    copyOwned(p.copy, from: grads, to: x + at(split) + base + p.source.count)
                }
                base += 2 * p.source.count
            }
            try comms.world.allReduce(x, count: tied.exchange.count, op: .sum)
        }
        var base = 0, sumBase = 0
        for (p, split) in zip(tied.pairs, tied.split) {
            let n = p.source.count
            let s = tied.sums.data + sumBase, g = x + at(split) + base
            for i in 0..<n { s[i] = (g[i] + 0) + (g[n + i] + 0) }
            forEachOwnedPart(of: p.source) { lo, hi in (grads + lo).update(from: s + (lo - p.source.lowerBound), count: hi - lo) }
            forEachOwnedPart(of: p.copy) { lo, hi in (grads + lo).update(repeating: 0, count: hi - lo) }
            base += 2 * n
            sumBase += n
        }
    }

    /// Step 3: the copy's owned part gets the summed gradient, clipped by `factor` as the source was.
    func fillTiedCopies(_ grads: UnsafeMutablePointer<Float>, clipFactor factor: Float) {
        guard let tied else { return }
        var sumBase = 0
        for p in tied.pairs {
            forEachOwnedPart(of: p.copy) { lo, hi in
                (grads + lo).update(from: tied.sums.data + sumBase + (lo - p.copy.lowerBound), count: hi - lo)
                if factor != 1 { Kernels.scale(grads + lo, by: factor, count: hi - lo) }
            }
            sumBase += p.source.count
        }
    }

    /// The owned parts of `slot` into `out` (indexed from the slot's start).
    private func copyOwned(_ slot: Range<Int>, from grads: UnsafePointer<Float>, to out: UnsafeMutablePointer<Float>) {
        forEachOwnedPart(of: slot) { lo, hi in (out + (lo - slot.lowerBound)).update(from: grads + lo, count: hi - lo) }
    }

    /// Calls `body(lo, hi)` for each part lo..<hi of `slot` this rank owns.
    private func forEachOwnedPart(of slot: Range<Int>, _ body: (Int, Int) -> Void) {
        for owned in ownedRanges {
            let lo = max(slot.lowerBound, owned.lowerBound), hi = min(slot.upperBound, owned.upperBound)
            if lo < hi { body(lo, hi) }
        }
    }
}
