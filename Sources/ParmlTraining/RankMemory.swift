extension RankContext {
    /// Bytes this rank holds for parameters, gradients, optimizer state and scratch.
    var memory: (parameters: Int, gradients: Int, optimizer: Int, scratch: Int, activations: Int) {
        let f = MemoryLayout<Float>.stride
        // Ranks of one process share arenas: each is charged the slices it
        // owns (its stage's runs; its shards of those under ZeRO-3).
        // Gradients reduced in buckets (ZeRO ≥ 2, fast mode): the owned shard
        // stays, and the pages of the rest are handed back once each bucket
        // is reduced, so at most the largest bucket's are resident besides.
        // With micro-batches a bucket waits for the step's last one: every
        // page is written by the first, and the whole slice is resident; so
        // it is in a run holding batch_norm, whose buckets wait for the schedule.
        var slices = 0, owned = 0, state = 0, accumulators = 0, gradients = 0
        for vs in virtualStages {
            slices += vs.range.count
            owned += vs.owned.count
            state += foldsMomentum ? 0 : vs.optimizer.stateTensors.reduce(0) { $0 + $1.count }
            accumulators += vs.accumulator.bytes
            let bucketed = layout.microBatches == 1 && vs.statisticsLayers.isEmpty ? vs.buckets : nil
            gradients += bucketed?.residentGradients(owned: vs.owned) ?? vs.range.count
        }
        let ownParameters = sharesParameters ? owned : slices
        let scratch = (receivedNodes + shardLevelBuffers).reduce(0) { $0 + $1.capacity } * f + accumulators
        return (ownParameters * f, gradients * f, state * f, scratch, activationBytes)
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
