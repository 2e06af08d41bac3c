import ParmlModel
import ParmlParallel
import ParmlTensor

/// A run holding batch_norm layers, executed in phases so that each one
/// normalises with statistics over the global batch.
///
/// The run's layers are cut at every batch_norm. Each forward op takes its
/// micro-batch's pieces up to the first cut and holds them; the last
/// forward (the schedule is GPipe: every forward comes before any backward)
/// then, cut by cut, gathers each piece's per-channel moments into a row of
/// a table, all-reduces the table over the data-parallel group, combines
/// the rows in a fixed order, normalises every held piece and runs it on to
/// the next cut. Backward mirrors it with the sums Σdy and Σdy·x̂.
///
/// A table row is one chunk (deterministic mode) or one rank's micro-batch
/// (default mode), and only its owner writes it: the all-reduce adds exact
/// zeros elsewhere, so every rank holds the same table, and combining it row
/// by row gives serial training's numbers whatever the layout.
extension RankContext {
    /// The forward op (j, k) of a run holding batch_norm.
    func forwardHolding(microBatch j: Int, _ vs: VirtualStage, work: StepWork) throws {
        let first = vs.statisticsLayers[0]
        for q in 0..<work.pieceCount(j) {
            let piece = work.piece(j, q)
            let slot = try self.slot(j, q, localIndex(vs), fused: false, work: work)
            let input = try stageInput(piece: piece, microBatch: j, vs, slot: slot, work: work)
            let t = trace.now()
            slot.held = try forward(layers: vs.layers.lowerBound..<first, from: input, slot: slot, context(piece, work))
            trace.record(.forward, microBatch: j, run: vs.index, step: work.step.index, since: t)
        }
        if j == layout.microBatches - 1 { try finishForward(vs, work: work) }
    }

    /// The backward op (j, k) of a run holding batch_norm.
    func backwardHolding(microBatch j: Int, _ vs: VirtualStage, work: inout StepWork) throws {
        guard let grads = model.gradients else { throw ParmlError.internal("backward before forward") }
        let last = vs.statisticsLayers[vs.statisticsLayers.count - 1]
        let k = localIndex(vs)
        for q in 0..<work.pieceCount(j) {
            let piece = work.piece(j, q)
            let slot = try self.slot(j, q, k, fused: false, work: work)
            let start = trace.now()
            let dy = try outputGradient(piece: piece, microBatch: j, vs, slot: slot, work: &work)
            let t = vs.isLast ? start : trace.now()
            let tail = (last + 1)..<vs.layers.upperBound
            slot.heldGradient = try backward(
                layers: tail, of: vs, from: dy, slot: slot, context(piece, work), accumulate: accumulates(piece, work: work))
            if piece.chunk != nil {
                slot.leaf = try vs.accumulator.leafBuffer()
                copyGradients(of: tail, from: grads, into: slot.leaf, vs)
            }
            trace.record(.backward, microBatch: j, run: vs.index, step: work.step.index, since: t)
        }
        if j == layout.microBatches - 1 { try finishBackward(vs, work: &work) }
    }

    // MARK: - Phases

    private func finishForward(_ vs: VirtualStage, work: StepWork) throws {
        let pieces = try heldPieces(vs, work: work)
        let t = trace.now()
        for (n, b) in vs.statisticsLayers.enumerated() {
            let channels = try statisticsLayer(b, of: model).channels
            let perRow = try positions(before: b, work: work)
            let table = try statisticsTable(rows: tableRows(work), width: 2 * channels)
            for p in pieces {
                let row = table.data + tableRow(p.piece, p.microBatch, work: work) * 2 * channels
                try statisticsLayer(b, of: p.slot.model).addMoments(try held(p.slot), sum: row, m2: row + channels)
            }
            try shareTable(table, work: work)
            let global = try combineMoments(table, channels: channels, perRow: perRow, work: work)
            // Ranks sharing one arena (ZeRO-3 threads) would all write the
            // same values to it: the first data rank does.
            if !sharesParameters || coordinate.data == 0 {
                try statisticsLayer(b, of: model).updateRunningStatistics(
                    mean: global.data, variance: global.data + channels, count: rowCounts.reduce(0, +) * perRow)
            }
            let next = n + 1 < vs.statisticsLayers.count ? vs.statisticsLayers[n + 1] : vs.layers.upperBound
            for p in pieces {
                let layer = try statisticsLayer(b, of: p.slot.model)
                var moments = global.data
                if layer.scope == .local {
                    moments = try localMoments(table, row: tableRow(p.piece, p.microBatch, work: work), channels: channels, perRow: perRow, work: work)
                }
                let h = try layer.normalize(try held(p.slot), mean: moments, variance: moments + channels)
                p.slot.held = try forward(layers: (b + 1)..<next, from: h, slot: p.slot, context(p.piece, work))
            }
        }
        trace.record(.forward, microBatch: layout.microBatches - 1, run: vs.index, step: work.step.index, since: t)
        for p in pieces {
            p.slot.output = p.slot.held
            try sendForward(try held(p.slot), microBatch: p.microBatch, vs, work: work)
        }
    }

    private func finishBackward(_ vs: VirtualStage, work: inout StepWork) throws {
        guard let grads = model.gradients else { throw ParmlError.internal("backward before forward") }
        let pieces = try heldPieces(vs, work: work)
        let t = trace.now()
        for n in vs.statisticsLayers.indices.reversed() {
            let b = vs.statisticsLayers[n]
            let channels = try statisticsLayer(b, of: model).channels
            let perRow = try positions(before: b, work: work)
            let table = try statisticsTable(rows: tableRows(work), width: 2 * channels)
            for p in pieces {
                let row = table.data + tableRow(p.piece, p.microBatch, work: work) * 2 * channels
                try statisticsLayer(b, of: p.slot.model).gradientSums(
                    try heldGradient(p.slot), context(p.piece, work), accumulate: accumulates(p.piece, work: work), into: row)
                copyGradients(of: b..<(b + 1), from: grads, into: p.slot.leaf, vs)
            }
            let global = try statisticsLayer(b, of: model).scope == .global
            var totals = table.data
            if global {
                try shareTable(table, work: work)
                totals = try sumRows(table, width: 2 * channels, rows: tableRows(work))
            }
            let before = n > 0 ? vs.statisticsLayers[n - 1] + 1 : vs.layers.lowerBound
            let total = rowCounts.reduce(0, +) * perRow
            for p in pieces {
                let row = tableRow(p.piece, p.microBatch, work: work)
                // The run's first layer on the first run needs no input gradient.
                if b == vs.layers.lowerBound && vs.isFirst { break }
                let layer = try statisticsLayer(b, of: p.slot.model)
                let g = try layer.inputGradient(
                    try heldGradient(p.slot), sums: global ? totals : totals + row * 2 * channels,
                    count: global ? total : rowCounts[row] * perRow)
                p.slot.heldGradient = try backward(
                    layers: before..<b, of: vs, from: g, slot: p.slot, context(p.piece, work), accumulate: accumulates(p.piece, work: work))
                copyGradients(of: before..<b, from: grads, into: p.slot.leaf, vs)
            }
        }
        trace.record(.backward, microBatch: layout.microBatches - 1, run: vs.index, step: work.step.index, since: t)
        for p in pieces {
            vs.backwardPieces += 1
            if let chunk = p.piece.chunk, let leaf = p.slot.leaf {
                vs.accumulator.push(chunk: chunk, buffer: leaf)
                p.slot.leaf = nil
            }
            try sendBackward(try heldGradient(p.slot), microBatch: p.microBatch, vs, work: work)
        }
    }

    // MARK: - Pieces and the table

    /// Every piece of the step on this run, in micro-batch then piece order,
    /// with its slot (the list is kept: no allocation after the first step).
    private func heldPieces(_ vs: VirtualStage, work: StepWork) throws -> [HeldPiece] {
        statistics.pieces.removeAll(keepingCapacity: true)
        let k = localIndex(vs)
        for j in 0..<layout.microBatches {
            for q in 0..<work.pieceCount(j) {
                statistics.pieces.append(HeldPiece(piece: work.piece(j, q), microBatch: j, slot: try slot(j, q, k, fused: false, work: work)))
            }
        }
        return statistics.pieces
    }

    /// The run's position among this rank's runs (the slot index's k).
    private func localIndex(_ vs: VirtualStage) -> Int { virtualStages.firstIndex { $0 === vs } ?? 0 }

    /// Fast mode adds every piece after the rank's first into the gradients;
    /// deterministic mode keeps each chunk's own.
    private func accumulates(_ piece: Piece, work: StepWork) -> Bool {
        piece.chunk == nil && piece.rows.lowerBound != work.piece(0, 0).rows.lowerBound
    }

    /// Rows of the table: one per chunk, or one per (data rank, micro-batch).
    private func tableRows(_ work: StepWork) -> Int {
        work.step.plan.chunk != nil ? work.step.plan.chunkCount : layout.mesh.dp * layout.microBatches
    }

    private func tableRow(_ piece: Piece, _ j: Int, work: StepWork) -> Int {
        piece.chunk ?? coordinate.data * layout.microBatches + j
    }

    /// Samples behind every row of the table, as every rank can work them
    /// out (kept in `rowCounts`).
    private func countRows(work: StepWork) {
        let plan = work.step.plan
        rowCounts.removeAll(keepingCapacity: true)
        if plan.chunk != nil {
            for c in 0..<plan.chunkCount { rowCounts.append(plan.rows(ofChunk: c).count) }
        } else {
            for d in 0..<layout.mesh.dp {
                let rows = plan.rows(of: d).count
                for j in 0..<layout.microBatches {
                    rowCounts.append(Sharding.range(count: rows, parts: layout.microBatches, index: j, alignment: 1).count)
                }
            }
        }
    }

    /// Values per channel and sample at layer `b`'s input (positions of an image).
    private func positions(before b: Int, work: StepWork) throws -> Int {
        countRows(work: work)
        let layers = model.root.layers
        var s = work.step.x.shape.withLeading(1)
        for l in 0..<b { s = try layers[l].outputShape(for: s) }
        return try statisticsLayer(b, of: model).valuesPerChannel(rows: 1, input: s)
    }

    /// The zeroed table (allocates only when it must grow).
    private func statisticsTable(rows: Int, width: Int) throws -> Tensor {
        try statistics.table.resize(Shape(rows * width))
        statistics.table.fill(0)
        return statistics.table
    }

    /// Every rank of the data group gets every row.
    private func shareTable(_ table: Tensor, work: StepWork) throws {
        guard let comms, layout.mesh.dp > 1 else { return }
        try comms.data.allReduce(table.data, count: table.count, op: .sum)
    }

    /// Mean and biased variance per channel over the rows' moments (Chan et
    /// al.'s pairwise update, row by row in order, in Double).
    private func combineMoments(_ table: Tensor, channels: Int, perRow: Int, work: StepWork) throws -> Tensor {
        try statistics.moments.resize(Shape(2 * channels))
        statistics.mean.removeAll(keepingCapacity: true)
        statistics.m2.removeAll(keepingCapacity: true)
        statistics.mean.append(contentsOf: repeatElement(0, count: channels))
        statistics.m2.append(contentsOf: repeatElement(0, count: channels))
        var n = 0.0
        for (r, samples) in rowCounts.enumerated() where samples > 0 {
            let k = Double(samples * perRow)
            let row = table.data + r * 2 * channels
            let total = n + k
            for c in 0..<channels {
                let delta = Double(row[c]) / k - statistics.mean[c]
                statistics.mean[c] += delta * k / total
                statistics.m2[c] += Double(row[channels + c]) + delta * delta * n * k / total
            }
            n = total
        }
        let out = statistics.moments.data
        for c in 0..<channels {
            out[c] = Float(statistics.mean[c])
            out[channels + c] = n > 0 ? Float(statistics.m2[c] / n) : 0
        }
        return statistics.moments
    }

    /// One row's own mean and variance ('local' statistics).
    private func localMoments(_ table: Tensor, row r: Int, channels: Int, perRow: Int, work: StepWork) throws -> UnsafeMutablePointer<Float> {
        try statistics.local.resize(Shape(2 * channels))
        let k = Float(max(1, rowCounts[r] * perRow)), row = table.data + r * 2 * channels, out = statistics.local.data
        for c in 0..<channels {
            out[c] = row[c] / k
            out[channels + c] = row[channels + c] / k
        }
        return out
    }

    /// Σ over the rows, in row order.
    private func sumRows(_ table: Tensor, width: Int, rows: Int) throws -> UnsafeMutablePointer<Float> {
        let out = statistics.sums
        try out.resize(Shape(width))
        out.fill(0)
        for r in 0..<rows {
            let row = table.data + r * width
            for c in 0..<width { out.data[c] += row[c] }
        }
        return out.data
    }

    /// Deterministic mode: the gradients `layers` just wrote into the piece's leaf.
    private func copyGradients(of layers: Range<Int>, from grads: Tensor, into leaf: Tensor?, _ vs: VirtualStage) {
        guard let leaf, !layers.isEmpty else { return }
        let offsets = statistics.layerOffsets
        let lo = offsets[layers.lowerBound], hi = offsets[layers.upperBound]
        (leaf.data + (lo - vs.range.lowerBound)).update(from: grads.data + lo, count: hi - lo)
    }

    private func statisticsLayer(_ index: Int, of m: Model) throws -> BatchStatisticsLayer {
        guard let l = m.root.layers[index] as? BatchStatisticsLayer else {
            throw ParmlError.internal("layer \(index) is not a batch-statistics layer")
        }
        return l
    }

    private func held(_ slot: PipelineSlot) throws -> Tensor {
        guard let h = slot.held else { throw ParmlError.internal("a held piece without activations") }
        return h
    }

    private func heldGradient(_ slot: PipelineSlot) throws -> Tensor {
        guard let g = slot.heldGradient else { throw ParmlError.internal("a held piece without a gradient") }
        return g
    }
}

struct HeldPiece {
    let piece: Piece
    let microBatch: Int
    let slot: PipelineSlot
}

/// Scratch of the phases above, kept from step to step.
final class BatchStatisticsScratch {
    /// Arena offset of each top-level layer's parameters, and the end.
    let layerOffsets: [Int]
    var pieces: [HeldPiece] = []
    let table: Tensor
    let moments: Tensor
    let local: Tensor
    let sums: Tensor
    var mean: [Double] = []
    var m2: [Double] = []

    init(model: Model) throws {
        layerOffsets = model.topLevelParameterCounts.reduce(into: [0]) { $0.append($0[$0.count - 1] + $1) }
        table = try Tensor(shape: Shape(0))
        moments = try Tensor(shape: Shape(0))
        local = try Tensor(shape: Shape(0))
        sums = try Tensor(shape: Shape(0))
    }
}
