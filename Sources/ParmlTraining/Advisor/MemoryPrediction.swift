import ParmlModel
import ParmlParallel

/// Peak bytes per rank for a layout, filled into the `MemoryAccount` a live
/// rank reports (RankMemory.swift), from the same objects where they can be
/// built without the step: the layout's RankLayout, VirtualStage's shards,
/// the StageSchedule that decides which activation slots a stage fills, and a
/// TreeAccumulator fed the rank's chunks (deterministic mode).
extension LayoutCandidate {
    /// Whether virtual stage (run) `c` holds a batch_norm layer.
    func holdsBatchStatistics(run c: Int) -> Bool {
        layout.partition.layers[c].contains { profile.model.root.layers[$0] is BatchStatisticsLayer }
    }

    /// Whether run `c`'s gradients go through ZeRO-2/3's buckets that hand
    /// pages back, as the trainer runs them (GradientBuckets.releasesPages:
    /// no batch_norm in the run, and a lower peak for it; with micro-batches
    /// each one's buckets are reduced and handed back).
    func bucketsGradients(run c: Int) -> Bool {
        guard let floats = layout.gradientBucketFloats else { return false }
        return GradientBuckets(
            layers: layout.partition.layers[c], range: layout.stageRanges[c], model: profile.model, layout: layout, bucketFloats: floats
        ).releasesPages
    }

    /// Stage `s` of data rank 0 and tp rank 0 (data rank 0 takes the most rows and the largest shard).
    func memory(stage s: Int) -> MemoryAccount {
        let st = strategy, mesh = layout.mesh
        var a = MemoryAccount()
        a.sharesParameters = st.zeroStage >= 3 && mesh.dp > 1 && st.backend == .threads
        let runs = Array(layout.virtualStages(of: s))
        // As RankMemory counts it: ZeRO-3 under MPI gathers one layer at a time, but whole runs holding batch_norm.
        a.gathersParameters = ParameterGathering.applies(layout: layout, sharesParameters: a.sharesParameters, processes: st.backend == .mpi)
            && !runs.contains(where: holdsBatchStatistics(run:))
        let state = folds ? 0 : optimizerStateCopies
        for c in runs {
            let range = layout.stageRanges[c], layers = layout.partition.layers[c]
            let owned = VirtualStage.owned(range, layout: layout, data: 0)
            a.sliceFloats += range.count
            a.ownedFloats += owned.count

            a.optimizerFloats += owned.count * state
            // As RankMemory counts a run's gradients (the whole slice where its buckets keep their pages).
            if let floats = layout.gradientBucketFloats {
                let buckets = GradientBuckets(layers: layers, range: range, model: profile.model, layout: layout, bucketFloats: floats)
                a.gradientFloats += buckets.residentGradients(owned: owned)
            } else {
                a.gradientFloats += range.count
            }
        }
        if a.gathersParameters {
            // The fullest data rank's shards and gathered layer: a later
            // rank's shard can miss the model's widest layer that data rank
            // 0's holds most of (the 784-256-256-10 MLP's second process of
            // dp 2 held 34 % more parameters than the first).
            var fullest = 0
            for d in 0..<mesh.dp {
                var owned = 0, gathered = 0
                for c in runs {
                    let range = layout.stageRanges[c], mine = VirtualStage.owned(range, layout: layout, data: d)
                    owned += mine.count
                    gathered = max(
                        gathered,
                        ParameterGathering.largestOutside(layers: layout.partition.layers[c], run: range, owned: mine, model: profile.model))
                }
                fullest = max(fullest, owned + gathered)
            }
            a.gatheredFloats = fullest - a.ownedFloats
        }
        let rows = pieceRows
        // Activations: the slots the stage's schedule fills (PipelineExecution.slot).
        let schedule = StageSchedule(
            kind: layout.stageScheduleKind, stage: s, stages: mesh.pp, microBatches: st.microBatches, virtualStages: layout.virtualStages)
        let offsets = schedule.live.indices.map { k in schedule.live[..<k].reduce(0, +) }
        // Slot index → the run (k) it holds and the most rows of any piece it
        // held: a slot's buffers grow to the largest piece put in it, so a slot
        // that only ever holds the short micro-batches of an uneven split (the
        // many slots of interleaved 1F1B) stays small.
        var used: [Int: (run: Int, rows: Int)] = [:]
        func hold(_ index: Int, run k: Int, rows: Int) { used[index] = (k, max(rows, used[index]?.rows ?? 0)) }
        let ops = schedule.ops
        var i = 0
        while i < ops.count {
            switch ops[i] {
            case .forward(let j, let k):
                let isLast = runs[k] == layout.stageRanges.count - 1
                if isLast, !hasBatchStatistics, i + 1 < ops.count, ops[i + 1] == .backward(j, k) {
                    for q in 0..<pieceCount(j) { hold(offsets[k] * maxPieces, run: k, rows: self.rows(ofPiece: j, q)) }
                    i += 2
                    continue
                }
                for q in 0..<pieceCount(j) { hold((offsets[k] + j % schedule.live[k]) * maxPieces + q, run: k, rows: self.rows(ofPiece: j, q)) }
            case .backward:
                break
            }
            i += 1
        }
        var bytes = 0
        let f = MemoryLayout<Float>.stride
        let sending = runs.filter { $0 != layout.stageRanges.count - 1 }
        if let widest = sending.map({ profile.output(ofLayer: layout.partition.layers[$0].upperBound - 1, rows: 1).rowSize }).max() {
            bytes += rows * widest * f  // the rank's buffer for gradients coming back
        }
        for (_, slot) in used {
            let c = runs[slot.run]
            let layers = layout.partition.layers[c]
            for l in layers { bytes += profile.bufferBytes(layer: l, rows: slot.rows) }
            if c != 0 { bytes += slot.rows * profile.input(ofLayer: layers.lowerBound, rows: 1).rowSize * f }
        }
        a.activationBytes = bytes
        if st.deterministic { addTreeScratch(&a, runs: runs) }
        return a
    }

    /// Deterministic mode: each run's leaf accumulators (a TreeAccumulator fed
    /// this rank's chunks as the run feeds it, counting its buffers), and with
    /// dp > 1 the tree reduction's received nodes and level buffers
    /// (ChunkTreeReduction).
    private func addTreeScratch(_ a: inout MemoryAccount, runs: [Int]) {
        let plan = stepPlan
        let tree = ChunkTree(chunks: plan.chunkCount)
        let chunks = plan.chunks(of: 0)
        // A run holding batch_norm is rare: its count is simulated only where one is here.
        guard let plain = leafBuffers(tree: tree, chunks: chunks, holding: false),
            let holding = runs.contains(where: holdsBatchStatistics(run:)) ? leafBuffers(tree: tree, chunks: chunks, holding: true) : 0
        else { return }
        var widest = 0
        for c in runs {
            let width = layout.stageRanges[c].count
            a.accumulatorBytes += (holdsBatchStatistics(run: c) ? holding : plain) * width * MemoryLayout<Float>.stride
            widest = max(widest, Sharding.range(count: width, parts: layout.mesh.dp, index: 0).count)
        }
        guard layout.mesh.dp > 1 else { return }
        var received = 0
        for other in 1..<layout.mesh.dp { received += tree.cover(plan.chunks(of: other)).count }
        a.scratchFloats = (received + tree.height + 1) * widest
    }

    /// Leaf buffers a run's accumulator allocates over a step, fed data rank
    /// 0's `chunks` one float wide: pushed as backward makes them (Rank.swift,
    /// the root summed into the arena with one data rank), or, for a run
    /// holding batch_norm, every chunk's leaf taken before the first is pushed
    /// (BatchStatisticsExecution holds them until its statistics phase).
    private func leafBuffers(tree: ChunkTree, chunks: Range<Int>, holding: Bool) -> Int? {
        let counter = TreeAccumulator()
        var gradient: Float = 0
        do {
            try withUnsafeMutablePointer(to: &gradient) { arena in
                try counter.start(tree: tree, owned: chunks, width: 1, root: layout.mesh.dp == 1 ? arena : nil)
                if holding {
                    let leaves = try chunks.map { _ in try counter.leafBuffer() }
                    for (chunk, leaf) in zip(chunks, leaves) { counter.push(chunk: chunk, buffer: leaf) }
                } else {
                    for chunk in chunks { try counter.push(chunk: chunk, from: arena) }
                }
            }
        } catch {
            return nil  // a 1-float tensor cannot fail to allocate
        }
        return counter.bytes / MemoryLayout<Float>.stride
    }
}
