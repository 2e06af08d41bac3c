import ParmlModel

extension Trainer {
    /// A human-readable account of the execution plan: the mesh, which rank
    /// holds which layers and which slice of the parameters, what is
    /// exchanged in a step, and the memory each rank holds.
    public var planDescription: String {
        let mesh = layout.mesh
        var lines: [String] = []
        let mode = strategy.deterministic
            ? "deterministic (gradients over chunks of \(strategy.gradientChunk) samples, fixed tree order)"
            : "fast (one GEMM per micro-batch; reproducible for this layout)"
        let threads = "\(blasThreads) thread\(blasThreads == 1 ? "" : "s") per rank"
        lines.append("world \(mesh.worldSize) = dp \(mesh.dp) × pp \(mesh.pp) × tp \(mesh.tp), \(strategy.backend.name) backend, \(threads), \(mode)")
        lines.append("rank = (dp_index · pp + stage) · tp + tp_index")
        if let choice = strategy.choice { lines.append("layout chosen by the strategy advisor: \(choice)") }
        lines.append(precisionDescription)
        if mesh.pp > 1 || layout.microBatches > 1 {
            let m = layout.microBatches, p = mesh.pp, v = layout.virtualStages
            let name: String = switch layout.schedule {
            case _ where mesh.pp == 1: "gradient accumulation"
            case _ where layout.hasBatchStatistics: "GPipe (batch_norm needs every forward before any backward)"
            case .gpipe: "GPipe"
            case .oneForwardOneBackward: "1F1B (PipeDream-flush)"
            case .interleaved: "interleaved 1F1B (\(v) virtual stages per stage)"
            }
            let bubble = Double(p - 1) / Double(v * m + p - 1)
            let formula = v == 1 ? "(p−1)/(m+p−1)" : "(p−1)/(v·m+p−1)"
            lines.append(
                "pipeline: \(name), \(m) micro-batch(es) per replica per step; ideal bubble \(formula) = "
                    + "\((bubble * 1000).rounded() / 1000)")
        }
        if layout.hasBatchStatistics {
            lines.append(
                "batch_norm: each one waits for all of a step's micro-batches, then normalises with statistics over the global "
                    + "batch ('global', one all-reduce of per-piece moments over the dp group, combined in row order) or over each "
                    + "forward's rows ('local': a chunk in deterministic mode, a rank's micro-batch otherwise); running statistics "
                    + "follow the global batch in both")
        }
        if let tp = ranks[0].tensorParallel {
            let logits = tp.rewrite.classifierOffset == nil
                ? "the classifier's logits are whole on every tp rank"
                : "the classifier is split by classes and its logits stay sharded"
            lines.append("tensor parallelism (tp = \(mesh.tp), Megatron column/row pairs; \(logits)):")
            for note in tp.rewrite.notes { lines.append("  " + note) }
        } else {
            lines.append("tensor parallelism: none (tp = 1); every layer is whole on the ranks of its stage")
        }
        if mesh.pp == 1 {
            lines.append("stages:")
        } else if !model.stageStarts.isEmpty {
            lines.append("stages (cut where the model marks them):")
        } else {
            lines.append("stages (balanced by each layer's \(LayerCost.stageCosts(model).measure)):")
        }
        let layers = model.root.layers
        for (c, range) in layout.partition.layers.enumerated() {
            let slice = layout.stageRanges[c]
            let names = range.map { "\($0):" + layers[$0].planLabel }.joined(separator: ", ")
            let arena = mesh.tp > 1 ? " of each tp rank's arena" : ""
            let which = layout.virtualStages == 1 ? "stage \(c)" : "virtual stage \(c) (on stage \(layout.stage(holding: c)))"
            lines.append("  \(which): layers \(names); parameters [\(slice.lowerBound), \(slice.upperBound))\(arena) = \(slice.count)")
        }
        lines.append("ranks:")
        for r in ranks {
            let c = r.coordinate
            let m = r.memory
            let owned = r.ownedRanges.map { "[\($0.lowerBound), \($0.upperBound))" }.joined(separator: " ")
            var line = "  rank \(r.rank) (dp \(c.data), stage \(c.stage), tp \(c.tensor)): updates \(owned)"
            if layout.shardsOverData { line += " (ZeRO-\(layout.zeroStage) shard)" }
            line += "; bytes: parameters \(m.parameters), gradients \(m.gradients), optimizer \(m.optimizer), scratch \(m.scratch)"
            line += ", activations \(m.activations) (high-water so far)"
            lines.append(line)
        }
        lines.append("each step:")
        if mesh.pp > 1 {
            let order = switch layout.schedule {
            case _ where layout.hasBatchStatistics, .gpipe: "all forwards, then all backwards (m micro-batches of activations alive)"
            case .oneForwardOneBackward: "1F1B (at most pp − stage micro-batches of activations alive)"
            case .interleaved:
                "interleaved 1F1B (each micro-batch goes round the ring of stages \(layout.virtualStages) times; "
                    + "(pp − stage − 1)·2 + (v − 1)·pp forwards before the first backward)"
            }
            lines.append("  1. stages run their layers on each micro-batch, \(order); send/recv over the pp group: activations forward, their gradients backward")
        } else {
            lines.append("  1. each rank runs forward and backward of every layer on its rows of the batch")
        }
        if mesh.dp > 1 {
            let how: String
            let overlapWord = strategy.overlap == .auto ? "overlap auto: on only for MPI processes on more than one machine" : "overlap \(strategy.overlap.name)"
            let floats = layout.stageRanges.map(\.count).max() ?? 0
            let ring32 = CompressedRing.ringBytes(count: floats, ranks: mesh.dp, bytesPerValue: 4)
            if layout.averagesParameters {
                how = "none between averages: local SGD, each replica steps on its own rows (loss scaled by its own row count); "
                    + "every \(layout.localSteps) steps the parameters are averaged (all-reduce, then × 1/dp), "
                    + "\(ring32) bytes per rank as a float32 ring, \(ring32 / layout.localSteps) per step"
                    + (layout.hasOuterOptimizer
                        ? "; then DiLoCo's outer Nesterov step (lr \(layout.outerLearningRate), momentum \(layout.outerMomentum)) "
                            + "on θ_last − mean(θ)"
                        : "")
            } else if layout.compression == .powerSGD {
                let floats = ranks[0].virtualStages.compactMap(\.powerSGD).map(\.floatsReduced).max() ?? 0
                let sent = CompressedRing.ringBytes(count: floats, ranks: mesh.dp, bytesPerValue: 4)
                how = "PowerSGD rank \(layout.compressionRank) (one power iteration warm-started from the last step's Q, "
                    + "error feedback): all-reduces of each matrix's P and Q, vectors and small matrices whole; about \(sent) "
                    + "bytes per rank per step as a ring, against \(ring32) for float32 gradients"
            } else if layout.compression != .none {
                let ring16 = CompressedRing.ringBytes(count: floats, ranks: mesh.dp, bytesPerValue: 2)
                how = "ring reduce-scatter then all-gather in \(layout.compression.name) with error feedback (each rounding's "
                    + "error added back next step by the rank that rounded); \(ring16) bytes sent per rank per step, "
                    + "against \(ring32) for a float32 ring"
            } else if strategy.deterministic {
                how = "chunk-tree nodes sent to shard owners (send/recv), summed in the fixed tree order"
                    + (layout.zeroStage == 0 ? ", then all-gather" : "")
            } else if let floats = layout.gradientBucketFloats {
                let op = layout.zeroStage == 0 ? "all-reduce" : "reduce-scatter"
                how = "\(op) in buckets of about \(floats * 4) bytes (whole top-level layers) as backward finishes them"
                    + (layout.zeroStage < 2 ? ""
                        : ranks.contains { $0.virtualStages.contains { $0.buckets?.releasesPages == true } }
                            ? "; each rank keeps its shard and hands back the rest of each bucket's pages"
                                + (layout.microBatches > 1 ? " (every micro-batch's buckets, summed into the shard)" : "")
                            : "; the pages stay (handing them back would not lower the peak)")
                    + (layout.overlapsReduction
                        ? "; overlapped with backward on a communication thread per rank (overlap \(strategy.overlap.name))"
                        : "; on the rank's thread (\(overlapWord))")
            } else if layout.zeroStage >= 1 {
                how = "reduce-scatter (each rank keeps its shard) after backward (\(overlapWord))"
            } else {
                how = "all-reduce in buckets of \(strategy.bucketBytes) bytes after backward (\(overlapWord))"
            }
            lines.append("  2. gradients of each stage summed over its dp group: \(how)")
        } else {
            lines.append("  2. no gradient exchange (dp = 1)")
        }
        let clips = optimizerConfig.clipGradNorm > 0
        let checks = optimizerConfig.skipNonFinite
        if clips {
            lines.append(
                (checks ? "  3a." : "  3.") + (mesh.tp > 1
                    ? " global gradient norm: each rank's share of squares (replicated parameters on tp rank 0), all-reduced over the world"
                    : " global gradient norm: blocks of 1024 summed where they end, block sums all-reduced over the world"))
        }
        if checks {
            let source = clips ? "the global norm" : "each rank probes its gradients"
            lines.append(
                (clips ? "  3b." : "  3.")
                    + (mesh.worldSize > 1
                        ? " finite check: \(source) and its loss; one float all-reduced over the world, and every rank skips a step that is not finite"
                        : " finite check: \(source) and the loss; a step that is not finite updates nothing"))
        }
        // Processes share no memory: under MPI ZeRO-3 gathers each layer before use.
        let gathers = ParameterGathering.applies(layout: layout, sharesParameters: false, processes: strategy.backend == .mpi)
        if mesh.tp > 1 {
            lines.append("  +  tensor-parallel pairs all-reduce over their tp group: partial outputs forward, input gradients backward")
            lines.append(
                gathers
                    ? "  +  the host's model is assembled from the tp ranks' slices only when gathered (parml_trainer_gather_params)"
                    : "  +  after the step, data rank 0's tp ranks write their slices into the host's model")
        }
        var update = "  4. optimizer updates each rank's slice"
        if layout.zeroStage >= 3 && mesh.dp > 1 && strategy.backend == .threads {
            update += "; ZeRO-3: the dp replicas read one shared parameter arena, nothing to gather"
        } else if gathers {
            update += "; ZeRO-3: each process keeps its shard; every layer's parameters are all-gathered over the dp group "
                + "before its forward and again before its backward, and dropped after"
        } else if layout.shardsOverData {
            update += ", then all-gather of the stage's parameters over its dp group"
        }
        lines.append(update)
        if mesh.worldSize > 1 { lines.append("  5. loss and accuracy all-reduced over the world (2 floats)") }
        return lines.joined(separator: "\n")
    }
}
