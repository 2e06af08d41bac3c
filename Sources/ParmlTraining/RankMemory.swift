/// The accounting behind `Trainer.memory`, from counts: a live rank fills it
/// from what it allocated (below), the strategy advisor from what a layout
/// would allocate (Advisor/MemoryPrediction.swift), so both say the same.
struct MemoryAccount: Sendable, Equatable {
    /// Floats of the rank's runs of the arena, and its ZeRO shards of them.
    var sliceFloats = 0
    var ownedFloats = 0
    /// ZeRO-3 on threads: the rank reads an arena its data peers share, and
    /// is charged only its shard.
    var sharesParameters = false
    /// ZeRO-3 under MPI: the rank keeps its shard and gathers one layer at a
    /// time, whose part outside the shard is `gatheredFloats` at most.
    var gathersParameters = false
    var gatheredFloats = 0
    var optimizerFloats = 0
    /// Gradients resident at most: the slices, or with buckets that hand
    /// pages back (ZeRO ≥ 2, fast mode, where that lowers the peak) the
    /// shards and the largest bucket's part outside them.
    var gradientFloats = 0
    /// Deterministic mode's tree-reduction buffers (floats) and leaf accumulators (bytes).
    var scratchFloats = 0
    var accumulatorBytes = 0
    var activationBytes = 0

    typealias Report = (parameters: Int, gradients: Int, optimizer: Int, scratch: Int, activations: Int)

    var report: Report {
        let f = MemoryLayout<Float>.stride
        let ownParameters = sharesParameters ? ownedFloats : gathersParameters ? ownedFloats + gatheredFloats : sliceFloats
        return (ownParameters * f, gradientFloats * f, optimizerFloats * f, scratchFloats * f + accumulatorBytes, activationBytes)
    }

    var total: Int {
        let r = report
        return r.parameters + r.gradients + r.optimizer + r.scratch + r.activations
    }
}

extension RankContext {
    /// Bytes this rank holds for parameters, gradients, optimizer state and scratch.
    var memory: MemoryAccount.Report {
        // Ranks of one process share arenas: each is charged the slices it
        // owns (its stage's runs; its shards of those under ZeRO-3).
        // Gradients reduced in buckets that hand pages back (ZeRO ≥ 2, fast
        // mode, where that lowers the peak: GradientBuckets.releasesPages):
        // the owned shard stays, and the pages of the rest are handed back
        // once each bucket is reduced (each micro-batch's, with several),
        // so at most the largest bucket's are resident besides. Elsewhere
        // the whole slice is (and in a step whose data ranks run different
        // pieces, whose buckets wait for the last).
        var a = MemoryAccount(sharesParameters: sharesParameters, activationBytes: activationBytes)
        // ZeRO-3 under MPI: a run holding batch_norm is gathered whole for its step.
        a.gathersParameters = gathering != nil && virtualStages.allSatisfy { $0.statisticsLayers.isEmpty }
        for vs in virtualStages {
            if a.gathersParameters {
                a.gatheredFloats = max(
                    a.gatheredFloats, ParameterGathering.largestOutside(layers: vs.layers, run: vs.range, owned: vs.owned, model: model))
            }
            a.sliceFloats += vs.range.count
            a.ownedFloats += vs.owned.count
            a.optimizerFloats += foldsMomentum ? 0 : vs.optimizer.stateTensors.reduce(0) { $0 + $1.count }
            a.accumulatorBytes += vs.accumulator.bytes
            a.gradientFloats += vs.buckets?.residentGradients(owned: vs.owned) ?? vs.range.count
        }
        a.scratchFloats = (receivedNodes + shardLevelBuffers).reduce(0) { $0 + $1.capacity }
        return a.report
    }

    /// Activations alive at once on this rank, at most (micro-batch pieces).
    var activationSlots: Int { slots.count }

    /// Bytes of activation buffers this rank has allocated (high-water):
    /// every slot's received input and its stage layers' buffers, and the
    /// buffer gradients arrive in.
    var activationBytes: Int {
        let f = MemoryLayout<Float>.stride
        var bytes = received.capacity * f
        for slot in slots {
            bytes += slot.received.capacity * f
            let layers = slot.model.root.layers
            for vs in virtualStages {
                for l in vs.layers { bytes += layers[l].bufferBytes }
            }
        }
        return bytes
    }
}
