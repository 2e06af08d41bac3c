extension RankContext {
    /// Bytes this rank holds for parameters, gradients, optimizer state and scratch.
    var memory: (parameters: Int, gradients: Int, optimizer: Int, scratch: Int, activations: Int) {
        let f = MemoryLayout<Float>.stride
        // Ranks of one process share arenas: each is charged the slice it
        // owns (its stage; its shard of that under ZeRO-3).
        let ownParameters = sharesParameters ? ownedRange.count : stageRange.count
        let state = foldsMomentum ? 0 : optimizer.stateTensors.reduce(0) { $0 + $1.count }
        let scratch = (receivedNodes + shardLevelBuffers).reduce(0) { $0 + $1.capacity } * f + accumulator.bytes
        return (ownParameters * f, stageRange.count * f, state * f, scratch, activationBytes)
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
            for l in stageLayers { bytes += layers[l].bufferBytes }
        }
        return bytes
    }
}
