import ParmlModel
import ParmlParallel
import ParmlTensor

/// Forward and backward passes of a rank's stage, micro-batch by micro-batch.
///
/// Virtual stage c receives its input from the stage holding c − 1 and
/// sends its output to the one holding c + 1 (round the ring under
/// interleaved 1F1B: the last stage's run feeds stage 0's next one), over
/// the pp group; gradients go the other way over its backward twin.
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
            var sending = 0, sendWidth = 0, returning = 0, returnWidth = 0
            for vs in virtualStages {
                if !vs.isLast { (sending, sendWidth) = (sending + 1, max(sendWidth, vs.output.rowSize)) }
                if !vs.isFirst { (returning, returnWidth) = (returning + 1, max(returnWidth, vs.input.rowSize)) }
            }
            if sending > 0 {
                let next = layout.stage(holding: coordinate.stage + 1)
                try comms.pipe.reserveSends(to: next, messages: pieces * sending, floats: rows * sendWidth)
            }
            // A private step (PrivateStep.swift) sends each piece's norm-pass
            // gradient and running sums back too, and the first stage the
            // totals to the last (its "previous" round the ring).
            let isPrivate = work.step.privacy != nil
            let messages = returning * (isPrivate ? 3 : 1) + (isPrivate && coordinate.stage == 0 ? 1 : 0)
            if messages > 0 {
                let previous = layout.stage(holding: coordinate.stage + layout.mesh.pp - 1)
                try comms.pipeBackward.reserveSends(to: previous, messages: pieces * messages, floats: rows * max(returnWidth, 1))
            }
        }
        var i = 0
        while i < ops.count {
            switch ops[i] {
            case .forward(let j, let k):
                let vs = virtualStages[k]
                if !vs.statisticsLayers.isEmpty {
                    try forwardHolding(microBatch: j, vs, work: work)
                    i += 1
                    continue
                }
                // The last run goes from a forward straight into its backward
                // piece by piece: one slot of activations instead of many.
                if vs.isLast, i + 1 < ops.count, ops[i + 1] == .backward(j, k) {
                    for q in 0..<work.pieceCount(j) {
                        let slot = try self.slot(j, q, k, fused: true, work: work)
                        try forward(piece: work.piece(j, q), microBatch: j, vs, slot: slot, work: work)
                        try backward(piece: work.piece(j, q), microBatch: j, vs, slot: slot, work: &work)
                    }
                    i += 2
                    continue
                }
                for q in 0..<work.pieceCount(j) {
                    try forward(piece: work.piece(j, q), microBatch: j, vs, slot: try slot(j, q, k, fused: false, work: work), work: work)
                }
            case .backward(let j, let k):
                let vs = virtualStages[k]
                if !vs.statisticsLayers.isEmpty {
                    try backwardHolding(microBatch: j, vs, work: &work)
                    i += 1
                    continue
                }
                for q in 0..<work.pieceCount(j) {
                    try backward(piece: work.piece(j, q), microBatch: j, vs, slot: try slot(j, q, k, fused: false, work: work), work: &work)
                }
            }
            i += 1
        }
    }

    /// The slot holding piece q of micro-batch j on virtual stage k until
    /// its backward. A fused forward and backward takes the run's first
    /// slot: none of its micro-batches is alive then (each run's backwards
    /// follow its forwards' order).
    func slot(_ j: Int, _ q: Int, _ k: Int, fused: Bool, work: StepWork) throws -> PipelineSlot {
        let index = fused ? slotOffsets[k] * work.maxPieces : (slotOffsets[k] + j % schedule.live[k]) * work.maxPieces + q
        while slots.count <= index {
            let copy = try model.replicate(sharingParameters: true, sharingGradients: true)
            if tensorParallel != nil { TensorParallelSync.attach(comms?.tensor, to: copy) }
            slots.append(try PipelineSlot(model: copy))
        }
        return slots[index]
    }

    func context(_ piece: Piece, _ work: StepWork) -> PassContext {
        var ctx = PassContext(training: true, step: work.step.index, sampleOffset: piece.rows.lowerBound, seed: work.step.settings.seed)
        ctx.precision = work.step.settings.precision
        ctx.stepSerial = work.step.serial
        ctx.bf16Weights = work.bf16Weights
        ctx.threads = work.step.settings.threads
        return ctx
    }

    func forward(piece: Piece, microBatch j: Int, _ vs: VirtualStage, slot: PipelineSlot, work: StepWork) throws {
        let input = try stageInput(piece: piece, microBatch: j, vs, slot: slot, work: work)
        let t = trace.now()
        let h = try forward(layers: vs.layers, from: input, slot: slot, context(piece, work))
        slot.output = h
        trace.record(.forward, microBatch: j, run: vs.index, step: work.step.index, since: t)
        try sendForward(h, microBatch: j, vs, work: work)
    }

    /// The piece's input to the run: its rows of the host's batch on the
    /// first run, the previous run's activations otherwise.
    func stageInput(piece: Piece, microBatch j: Int, _ vs: VirtualStage, slot: PipelineSlot, work: StepWork) throws -> Tensor {
        let n = piece.rows.count
        if vs.isFirst {
            let x = work.step.x, first = piece.rows.lowerBound - work.step.plan.firstLocalRow
            try slot.batchView.retarget(x.data + first * x.shape.rowSize, shape: x.shape.withLeading(n))
            return slot.batchView
        }
        guard let comms else { throw ParmlError.internal("a pipeline stage without communicators") }
        let input = slot.received
        try input.resize(vs.input.withLeading(n))
        let t = trace.now()
        try comms.pipe.receive(input.data, count: input.count, from: layout.stage(holding: vs.index - 1))
        trace.record(.receive, microBatch: j, run: vs.index, step: work.step.index, since: t)
        return input
    }

    /// `layers` (top-level indices) of the slot's copy, in order.
    func forward(layers range: Range<Int>, from x: Tensor, slot: PipelineSlot, _ ctx: PassContext) throws -> Tensor {
        var h = x
        let layers = slot.model.root.layers
        for l in range {
            try comms?.world.throwIfAborted("forward of layer \(l)")
            try gatherBlock(of: l)
            h = try layers[l].forward(h, ctx)
        }
        return h
    }

    /// The run's output on to the stage holding the next run (none after the last).
    func sendForward(_ h: Tensor, microBatch j: Int, _ vs: VirtualStage, work: StepWork) throws {
        guard !vs.isLast, let comms else { return }
        let t = trace.now()
        try comms.pipe.send(h.data, count: h.count, to: layout.stage(holding: vs.index + 1))
        trace.record(.send, microBatch: j, run: vs.index, step: work.step.index, since: t)
    }

    func backward(piece: Piece, microBatch j: Int, _ vs: VirtualStage, slot: PipelineSlot, work: inout StepWork) throws {
        guard let grads = model.gradients else { throw ParmlError.internal("backward before forward") }
        var ctx = context(piece, work)
        let start = trace.now()
        var dy = try outputGradient(piece: piece, microBatch: j, vs, slot: slot, work: &work)
        // The loss belongs to the last stage's backward time.
        let t = vs.isLast ? start : trace.now()
        // The gradient arena is the momentum when it is folded: a loss or an
        // input that is not finite must not reach it (an infinite input can
        // saturate to a finite loss and still make a NaN weight gradient),
        // so backward stops here and the finite check skips the step with
        // the momentum as it was. One rank folds: its piece is the batch.
        if foldsMomentum && work.step.settings.skipNonFinite
            && (!work.lossSum.isFinite || !Kernels.allFinite(work.step.x.data, count: work.step.x.count))
        {
            vs.backwardPieces += 1  // counted, so the arena is not zeroed as a rank without work would be
            work.backwardRefused = true
            trace.record(.backward, microBatch: j, run: vs.index, step: work.step.index, since: t)
            return
        }
        // Fast mode accumulates the pieces with the GEMMs' beta (the first
        // overwrites, or folds momentum); deterministic mode keeps each
        // chunk's gradient apart for the ChunkTree.
        let accumulate = piece.chunk == nil && vs.backwardPieces > 0
        // DP-SGD's pass 1 (PrivateStep.swift); a run before the last then
        // receives the clipped output gradient of the ordinary backward.
        if try clipPerExample(dy, vs, slot: slot, ctx, work: work) {
            dy = try outputGradient(piece: piece, microBatch: j, vs, slot: slot, work: &work)
        }
        if foldsMomentum { ctx.gradientDecay = optimizer.config.momentum }
        // Buckets: the step's last piece reduces each once backward has
        // passed it, or every piece when the step reduces each micro-batch
        // (its backward adds to the shard's sum so far and zeros elsewhere).
        let each = vs.buckets?.eachMicroBatch == true
        let reducing = vs.buckets != nil && (each || vs.backwardPieces == work.totalPieces - 1)
        if each { vs.buckets?.next = 0 }
        // A chunk the tree keeps in a leaf: backward writes it there rather
        // than into the arena, whence it would be copied (same bits, one
        // read and one write of the gradient fewer). The slot's model runs
        // the piece, so its views are the ones moved.
        let leaf = try piece.chunk.flatMap { chunk in
            vs.backwardFillsLeaves && vs.accumulator.keepsLeaf(chunk: chunk) ? try vs.accumulator.leafBuffer() : nil
        }
        if let leaf { try slot.model.pointGradients(in: vs.range, at: leaf.data) }
        let g: Tensor
        do {
            g = try backward(layers: vs.layers, of: vs, from: dy, slot: slot, ctx, accumulate: accumulate, reducing: reducing)
        } catch {
            if let leaf {
                try? slot.model.pointGradients(in: vs.range, at: nil)
                vs.accumulator.recycle(leaf)
            }
            throw error
        }
        vs.backwardPieces += 1
        if let chunk = piece.chunk {
            if let leaf {
                try slot.model.pointGradients(in: vs.range, at: nil)
                vs.accumulator.push(chunk: chunk, buffer: leaf)
            } else {
                try vs.accumulator.push(chunk: chunk, from: grads.data + vs.range.lowerBound)
            }
        }
        trace.record(.backward, microBatch: j, run: vs.index, step: work.step.index, since: t)
        try sendBackward(g, microBatch: j, vs, work: work)
        if reducing {
            let t = trace.now()
            try flushBuckets(of: vs)
            // The next piece writes these buckets again: its backward waits
            // for the communication thread to be done with them.
            if each && vs.backwardPieces < work.totalPieces { try finishBuckets() }
            trace.record(.gradientReduction, step: work.step.index, since: t)
        }
    }

    /// dL/d(run's output) for the piece: the loss's gradient on the last
    /// run (adding the piece's loss and hits to `work`), the next run's
    /// input gradient otherwise.
    func outputGradient(piece: Piece, microBatch j: Int, _ vs: VirtualStage, slot: PipelineSlot, work: inout StepWork) throws -> Tensor {
        guard let out = slot.output else { throw ParmlError.internal("backward before forward") }
        let n = piece.rows.count
        let t = trace.now()
        if vs.isLast {
            let y = work.step.y, first = piece.rows.lowerBound - work.step.plan.firstLocalRow
            try slot.targetView.retarget(
                y.data + first * y.shape.rowSize * y.dtype.size / 4, shape: y.shape.withLeading(n), dtype: y.dtype)
            let w = work.step.w.map { UnsafePointer($0.data + first) }  // the piece's sample weights
            let r = try shardedLoss?.compute(
                output: out, targets: slot.targetView, scale: work.scale, options: loss.options, sampleWeights: w, wantGradient: true)
                ?? loss.compute(output: out, targets: slot.targetView, scale: work.scale, sampleWeights: w, wantGradient: true)
            work.lossSum += r.loss
            work.correct += r.correct
            if let c = piece.chunk { chunkLosses.data[1 + c] += r.loss }
            return shardedLoss?.gradient ?? loss.gradient
        }
        guard let comms else { throw ParmlError.internal("a pipeline stage without communicators") }
        try received.resize(vs.output.withLeading(n))
        try comms.pipeBackward.receive(received.data, count: received.count, from: layout.stage(holding: vs.index + 1))
        trace.record(.receive, microBatch: j, run: vs.index, step: work.step.index, since: t)
        return received
    }

    /// Backward through `layers` (top-level indices, a part of the run's)
    /// of the slot's copy, last first. On the first run, no layer up to the
    /// model's first that trains parameters computes an input gradient; a
    /// layer that returns none ends the pass.
    /// `reducing`: the step's last piece, after which gradient buckets whose
    /// layers are done are reduced (but the run's first, which waits until
    /// the input gradient has gone to the previous stage).
    func backward(
        layers range: Range<Int>, of vs: VirtualStage, from dy: Tensor, slot: PipelineSlot, _ ctx: PassContext, accumulate: Bool,
        reducing: Bool = false
    ) throws -> Tensor {
        var g = dy
        let layers = slot.model.root.layers
        // A layer computes its input gradient where something before it
        // reads one: the previous stage, or an earlier layer of the first
        // run that trains parameters (a flatten or an activation before the
        // model's first linear has none: the Fashion-MNIST example's).
        let firstTraining = slot.model.root.firstTrainingLayer
        for l in range.reversed() {
            try comms?.world.throwIfAborted("backward of layer \(l)")
            let need = !vs.isFirst || l > firstTraining
            try gatherBlock(of: l)
            if reducing { populateBucket(of: vs, startingAt: l) }
            let next = try layers[l].backward(g, ctx, needInputGradient: need, accumulate: accumulate)
            if reducing && l > vs.layers.lowerBound { try reduceBuckets(of: vs, through: l) }
            guard let next else { break }
            g = next
        }
        return g
    }

    /// The run's input gradient back to the stage holding the previous run (none from the first).
    func sendBackward(_ g: Tensor, microBatch j: Int, _ vs: VirtualStage, work: StepWork) throws {
        guard !vs.isFirst, let comms else { return }
        let t = trace.now()
        try comms.pipeBackward.send(g.data, count: g.count, to: layout.stage(holding: vs.index - 1))
        trace.record(.send, microBatch: j, run: vs.index, step: work.step.index, since: t)
    }
}
