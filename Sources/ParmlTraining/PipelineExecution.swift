import ParmlModel
import ParmlParallel
import ParmlTensor

/// Forward and backward passes of a rank's stage, micro-batch by micro-batch.
extension RankContext {
    func runSchedule(_ work: inout StepWork) throws {
        let ops = schedule.ops
        if let comms, layout.mesh.pp > 1 {
            // Every piece's activations may be in flight to the next stage at
            // once (and its gradients to the previous one): room for all of
            // them up front, so that no timing makes a send allocate.
            var pieces = 0
            for j in 0..<layout.microBatches { pieces += work.pieceCount(j) }
            let rows = work.maxPieceRows
            if !isLastStage {
                try comms.pipe.reserveSends(to: coordinate.stage + 1, messages: pieces, floats: rows * work.stageOutput.rowSize)
            }
            if !isFirstStage {
                try comms.pipe.reserveSends(to: coordinate.stage - 1, messages: pieces, floats: rows * work.stageInput.rowSize)
            }
        }
        var i = 0
        while i < ops.count {
            switch ops[i] {
            case .forward(let j):
                // The last stage runs a forward straight into its backward
                // piece by piece: one slot of activations instead of many.
                if isLastStage, i + 1 < ops.count, ops[i + 1] == .backward(j) {
                    for q in 0..<work.pieceCount(j) {
                        let slot = try self.slot(j, q, fused: true, work: work)
                        try forward(piece: work.piece(j, q), microBatch: j, slot: slot, work: work)
                        try backward(piece: work.piece(j, q), microBatch: j, slot: slot, work: &work)
                    }
                    i += 2
                    continue
                }
                for q in 0..<work.pieceCount(j) {
                    try forward(piece: work.piece(j, q), microBatch: j, slot: try slot(j, q, fused: false, work: work), work: work)
                }
            case .backward(let j):
                for q in 0..<work.pieceCount(j) {
                    try backward(piece: work.piece(j, q), microBatch: j, slot: try slot(j, q, fused: false, work: work), work: &work)
                }
            }
            i += 1
        }
    }

    /// The slot holding piece q of micro-batch j until its backward.
    func slot(_ j: Int, _ q: Int, fused: Bool, work: StepWork) throws -> PipelineSlot {
        let k = fused ? 0 : (j % schedule.inFlight) * work.maxPieces + q
        while slots.count <= k {
            let copy = try model.replicate(sharingParameters: true, sharingGradients: true)
            if tensorParallel != nil { TensorParallelSync.attach(comms?.tensor, to: copy) }
            slots.append(try PipelineSlot(model: copy))
        }
        return slots[k]
    }

    func context(_ piece: Piece, _ work: StepWork) -> PassContext {
        PassContext(training: true, step: work.step.index, sampleOffset: piece.rows.lowerBound, seed: work.step.settings.seed)
    }

    func forward(piece: Piece, microBatch j: Int, slot: PipelineSlot, work: StepWork) throws {
        let n = piece.rows.count
        let input: Tensor
        if isFirstStage {
            input = slot.batchView
            let x = work.step.x, first = piece.rows.lowerBound - work.step.plan.firstLocalRow
            try input.retarget(x.data + first * x.shape.rowSize, shape: x.shape.withLeading(n))
        } else {
            guard let comms else { throw ParmlError.internal("a pipeline stage without communicators") }
            input = slot.received
            try input.resize(work.stageInput.withLeading(n))
            let t = trace.now()
            try comms.pipe.receive(input.data, count: input.count, from: coordinate.stage - 1)
            trace.record(.receive, microBatch: j, step: work.step.index, since: t)
        }
        let ctx = context(piece, work)
        var t = trace.now()
        var h = input
        let layers = slot.model.root.layers
        for l in stageLayers {
            try comms?.world.throwIfAborted("forward of layer \(l)")
            h = try layers[l].forward(h, ctx)
        }
        slot.output = h
        trace.record(.forward, microBatch: j, step: work.step.index, since: t)
        if !isLastStage, let comms {
            t = trace.now()
            try comms.pipe.send(h.data, count: h.count, to: coordinate.stage + 1)
            trace.record(.send, microBatch: j, step: work.step.index, since: t)
        }
    }

    func backward(piece: Piece, microBatch j: Int, slot: PipelineSlot, work: inout StepWork) throws {
        guard let grads = model.gradients, let out = slot.output else { throw ParmlError.internal("backward before forward") }
        let n = piece.rows.count
        var ctx = context(piece, work)
        let dy: Tensor
        // The loss belongs to the last stage's backward time.
        var t = trace.now()
        if isLastStage {
            let y = work.step.y, first = piece.rows.lowerBound - work.step.plan.firstLocalRow
            try slot.targetView.retarget(
                y.data + first * y.shape.rowSize * y.dtype.size / 4, shape: y.shape.withLeading(n), dtype: y.dtype)
            let r = try shardedLoss?.compute(output: out, targets: slot.targetView, scale: work.scale, wantGradient: true)
                ?? loss.compute(output: out, targets: slot.targetView, scale: work.scale, wantGradient: true)
            work.lossSum += r.loss
            work.correct += r.correct
            dy = shardedLoss?.gradient ?? loss.gradient
        } else {
            guard let comms else { throw ParmlError.internal("a pipeline stage without communicators") }
            try received.resize(work.stageOutput.withLeading(n))
            try comms.pipe.receive(received.data, count: received.count, from: coordinate.stage + 1)
            trace.record(.receive, microBatch: j, step: work.step.index, since: t)
            dy = received
            t = trace.now()
        }
        // The gradient arena is the momentum when it is folded: a loss or an
        // input that is not finite must not reach it (an infinite input can
        // saturate to a finite loss and still make a NaN weight gradient),
        // so backward stops here and the finite check skips the step with
        // the momentum as it was. One rank folds: its piece is the batch.
        if foldsMomentum && work.step.settings.skipNonFinite
            && (!work.lossSum.isFinite || !Kernels.allFinite(work.step.x.data, count: work.step.x.count))
        {
            work.backwardPieces += 1  // counted, so the arena is not zeroed as a rank without work would be
            work.backwardRefused = true
            trace.record(.backward, microBatch: j, step: work.step.index, since: t)
            return
        }
        // Fast mode accumulates the pieces with the GEMMs' beta (the first
        // overwrites, or folds momentum); deterministic mode keeps each
        // chunk's gradient apart for the ChunkTree.
        let accumulate = piece.chunk == nil && work.backwardPieces > 0
        if foldsMomentum { ctx.gradientDecay = optimizer.config.momentum }
        var g = dy
        let layers = slot.model.root.layers
        for l in stageLayers.reversed() {
            try comms?.world.throwIfAborted("backward of layer \(l)")
            let need = l > stageLayers.lowerBound || !isFirstStage
            guard let next = try layers[l].backward(g, ctx, needInputGradient: need, accumulate: accumulate) else { break }
            g = next
        }
        work.backwardPieces += 1
        if let chunk = piece.chunk {
            let leaf = try accumulator.leafBuffer()
            leaf.data.update(from: grads.data + stageRange.lowerBound, count: stageRange.count)
            accumulator.push(chunk: chunk, buffer: leaf)
        }
        trace.record(.backward, microBatch: j, step: work.step.index, since: t)
        if !isFirstStage, let comms {
            t = trace.now()
            try comms.pipe.send(g.data, count: g.count, to: coordinate.stage - 1)
            trace.record(.send, microBatch: j, step: work.step.index, since: t)
        }
    }
}
