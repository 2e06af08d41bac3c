#if canImport(Glibc)
import Glibc
#endif
import ParmlModel
import ParmlParallel
import ParmlTensor

/// One exchange a layout makes in a step.
public struct CommunicationTerm: Sendable {
    /// What travels ("gradients all-reduce", "tp all-reduce (g, forward)", "activations send").
    public var what: String
    /// The group, as "dp(2)", "tp(2)", "pp(2)" or "world(4)".
    public var group: String
    /// Messages per step and bytes per message.
    public var count: Int
    public var bytes: Double
    public var seconds: Double
}

/// What the cost model predicts for one layout.
public struct LayoutPrediction: Sendable {
    public var strategy: StrategyConfig
    /// The BLAS threads each rank runs (the trainer's choice for this layout).
    public var blasThreads: Int
    /// Seconds per step: matrix and element-wise work of the slowest stage,
    /// communication on the critical path, the pipeline's idle time,
    /// the optimizer's update, and fixed costs (thread hand-over, statistics).
    public var compute = 0.0
    public var communication = 0.0
    public var bubble = 0.0
    public var optimizer = 0.0
    public var overhead = 0.0
    public var communications: [CommunicationTerm] = []
    /// Gradient bytes ZeRO-2/3's buckets hand back to the system each step
    /// (and fault in again in the next backward), on the fullest rank.
    public var releasedGradientBytes = 0.0
    /// The rank holding the most bytes (stage, as `Trainer.memory` would report it).
    public var peakStage = 0
    public var memory: (parameters: Int, gradients: Int, optimizer: Int, scratch: Int, activations: Int) = (0, 0, 0, 0, 0)
    public var reason = ""

    public var stepSeconds: Double { compute + communication + bubble + optimizer + overhead }
    public var peakBytes: Int { memory.parameters + memory.gradients + memory.optimizer + memory.scratch + memory.activations }
}

/// A layout the advisor evaluates, with what the trainer would build for it.
struct LayoutCandidate {
    let strategy: StrategyConfig
    let profile: ModelProfile
    let layout: RankLayout
    let batch: Int
    let hasBatchStatistics: Bool
    /// SGD momentum folded into the gradient arena (one rank): no optimizer state.
    let folds: Bool
    let optimizerStateCopies: Int
    /// The finite check or the clipping norm reads the owned gradients
    /// once before the update (NonFinite.swift, GradientNorm.swift).
    let readsGradientsFirst: Bool

    var stepPlan: StepPlan {
        StepPlan(samples: batch, ranks: layout.mesh.dp, deterministicChunk: strategy.deterministic ? strategy.gradientChunk : nil)
    }

    /// Rows of data rank 0's largest piece, and its pieces per micro-batch (PipelineWork.StepWork).
    var pieceRows: Int {
        let plan = stepPlan
        if let c = plan.chunk { return min(c, plan.samples) }
        return (plan.rows(of: 0).count + strategy.microBatches - 1) / strategy.microBatches
    }
    var maxPieces: Int {
        let plan = stepPlan
        guard plan.chunk != nil else { return 1 }
        return max(1, (plan.chunks(of: 0).count + strategy.microBatches - 1) / strategy.microBatches)
    }
    func pieceCount(_ j: Int) -> Int {
        let plan = stepPlan, m = strategy.microBatches
        if plan.chunk != nil { return Sharding.range(count: plan.chunks(of: 0).count, parts: m, index: j, alignment: 1).count }
        return Sharding.range(count: plan.rows(of: 0).count, parts: m, index: j, alignment: 1).isEmpty ? 0 : 1
    }
    /// Rows of piece q of micro-batch j on data rank 0 (StepWork.piece): the
    /// last micro-batches of an uneven split, and a short last chunk, hold fewer.
    func rows(ofPiece j: Int, _ q: Int) -> Int {
        let plan = stepPlan, m = strategy.microBatches
        if plan.chunk != nil {
            let chunks = plan.chunks(of: 0)
            return plan.rows(ofChunk: chunks.lowerBound + Sharding.range(count: chunks.count, parts: m, index: j, alignment: 1).lowerBound + q).count
        }
        return Sharding.range(count: plan.rows(of: 0).count, parts: m, index: j, alignment: 1).count
    }
}

/// Turns a layout's work into seconds with a machine's rates.
struct CostModel {
    let calibration: MachineCalibration
    /// Cores each node offers and ranks each node runs (this machine: its cores, every rank).
    let coresPerNode: Int
    let machine: MachineDescription?
    /// Whether OpenBLAS here has small-matrix kernels (`BLAS.hasSmallMatrixKernels`).
    var smallKernels = false
    /// Whether the ranks are MPI processes of a job on this machine: its
    /// collectives are priced at the rates measured inside such a job (the
    /// calibration's `processRates`), ZeRO-3 gathers per layer, the host
    /// model is assembled after each update, and there are no rank threads
    /// to hand a step over to.
    var processes = false
    /// `compute`'s answers within one advice: most layouts repeat the same
    /// stages at the same rows (the four ZeRO stages, the schedules).
    let computed = ComputeMemo()

    func ranksPerNode(world: Int) -> Int { min(world, machine?.ranksPerNode ?? world) }

    /// Seconds of an all-reduce of `bytes` in a group of `n` ranks whose
    /// members are `stride` ranks apart in the world.
    func allReduce(bytes: Double, ranks n: Int, stride: Int, world: Int) -> Double {
        guard n > 1 else { return 0 }
        if let machine, n * stride > machine.ranksPerNode {
            let steps = 2 * Double(n - 1)
            return steps * machine.interNodeLatency + steps / Double(n) * bytes / machine.interNodeBandwidth
        }
        // A job's groups of n, measured reducing at once as a layout's groups do.
        if processes, let r = calibration.processRates[world]?.allReduce.first(where: { $0.ranks == n }) { return r.seconds(bytes: bytes) }
        if let r = MachineCalibration.interpolated(calibration.allReduce, ranks: n) { return r.latency + bytes / r.bytesPerSecond }
        guard let r = MachineCalibration.nearest(calibration.allReduce, ranks: n) else { return 0 }
        // A ring's latency grows with n − 1 and its traffic with 2(n−1)/n.
        let lat = r.latency * Double(n - 1) / Double(r.ranks - 1)
        let traffic = (Double(n - 1) / Double(n)) / (Double(r.ranks - 1) / Double(r.ranks))
        return lat + bytes / r.bytesPerSecond * traffic
    }

    /// Seconds of a broadcast of `bytes` in a group of `n` MPI processes of
    /// a job of `world` (the job's measured rate for groups of n; 0 where not measured).
    func processBroadcast(bytes: Double, ranks n: Int, world: Int) -> Double {
        guard n > 1, let r = calibration.processRates[world]?.broadcast.first(where: { $0.ranks == n }) else { return 0 }
        return r.seconds(bytes: bytes)
    }

    /// Seconds of an all-gather of `bytes` (the whole buffer) in a group of
    /// `n` MPI processes of a job of `world` (0 where not measured).
    func processAllGather(bytes: Double, ranks n: Int, world: Int) -> Double {
        guard n > 1, let r = calibration.processRates[world]?.allGather.first(where: { $0.ranks == n }) else { return 0 }
        return r.seconds(bytes: bytes)
    }

    /// ZeRO-3 under MPI (ParameterGathering): each top-level layer holding
    /// parameters is all-gathered before its forward and again before its
    /// backward, its pages outside the rank's shard (handed back after the
    /// layer before) faulted in again, unless it is still the resident
    /// one: the first micro-batch gathers every layer forward and all but
    /// the last backward, each later one all but the first forward and all
    /// but the last backward (a stage of one layer gathers it once a
    /// step). The 784-256-256-10 MLP's dp 2 spent 730 µs of a 1.4 ms step
    /// in its 5 gathers, where half an all-reduce of the slice had been
    /// charged once (0.06 ms).
    func layerGathers(_ c: LayoutCandidate, stage s: Int, world: Int, contention: Double) -> Double {
        let dp = c.layout.mesh.dp
        var blocks: [Double] = []
        for run in c.layout.virtualStages(of: s) {
            for l in c.layout.partition.layers[run] {
                let n = c.profile.model.parameterRange(ofTopLevelLayers: l..<(l + 1)).count
                if n > 0 { blocks.append(Double(n) * 4) }
            }
        }
        guard let first = blocks.first, let last = blocks.last else { return 0 }
        func gather(_ b: Double) -> Double {
            processAllGather(bytes: b, ranks: dp, world: world)
                + pageFaults(bytes: b * Double(dp - 1) / Double(dp), c.strategy, local: 1, contention: contention)
        }
        let all = blocks.reduce(0.0) { $0 + gather($1) }
        let later = blocks.count > 1 ? 2 * all - gather(first) - gather(last) : 0
        return 2 * all - gather(last) + Double(c.strategy.microBatches - 1) * later
    }

    /// Seconds of a send of `bytes` to a neighbour `stride` ranks away (and its receive).
    func send(bytes: Double, stride: Int, world: Int) -> Double {
        if let machine, 2 * stride > machine.ranksPerNode {
            return machine.interNodeLatency + bytes / machine.interNodeBandwidth
        }
        if processes, let r = calibration.processRates[world]?.send { return r.seconds(bytes: bytes) }
        guard let r = MachineCalibration.nearest(calibration.send, ranks: 2) else { return 0 }
        return r.latency + bytes / r.bytesPerSecond
    }

    /// Releasing `bytes` of gradient pages and faulting them in again, on
    /// each rank: on this machine's threads backend, every local rank does
    /// so at the same point of the step in one process, at the calibrated
    /// per-page cost of that many threads at once; elsewhere (processes,
    /// described machines) the one-thread cost, stretched as compute is.
    func pageFaults(bytes: Double, _ st: StrategyConfig, local: Int, contention: Double) -> Double {
        let pages = (bytes / 4096).rounded(.up)
        if machine == nil && st.backend == .threads { return pages * calibration.pageFaultSeconds(concurrent: local) }
        return pages * calibration.pageFaultSeconds * contention
    }

    /// Seconds a pipeline hop waits for its receiver to wake when the
    /// node's rank threads outnumber its cores: a rank that waits longer
    /// than WorldCore's spin and yield windows sleeps and gives up its core,
    /// and the activation it waits for then also waits for its wake-up. The
    /// calibrated hand-over of that many ranks (waking sleeping rank threads
    /// and joining them) less the hand-over of as many ranks as cores (where
    /// none has to give up its core). 0 on described machines (not measured there).
    func wake(busy: Int) -> Double {
        // MPI processes past the cores yield rather than sleep (MPICommunicator's waits).
        guard machine == nil, !processes, busy > coresPerNode else { return 0 }
        let rates = calibration.handover
        guard let h = MachineCalibration.interpolated(rates, ranks: busy) ?? MachineCalibration.nearest(rates, ranks: busy) else { return 0 }
        let fits = MachineCalibration.interpolated(rates, ranks: coresPerNode)?.latency ?? 0
        return max(0, h.latency - fits)
    }

    /// How much longer `n` threads that meet at every collective take on
    /// the cores than the cores' fair share (n / cores each) says, for
    /// stretches of `stretch` seconds of work between two meetings. A
    /// stretch shorter than the scheduler's time slice runs to its meeting
    /// unswitched, so a core holding two of the threads runs one after the
    /// other while a core holding one waits at the meeting: ⌈n / cores⌉
    /// turns. 3 ranks on 2 cores: 2 turns, 4/3 of the fair 1.5; 4 ranks on
    /// 2 cores: 2 turns, the fair share itself. (Three ranks of the 4×512
    /// MLP measured 5.65 ms a step against 4.49 for four, and the CNN's,
    /// whose batch_norm statistics meet at every layer, 2.83 against 2.02,
    /// where the fair share had them alike.) Longer stretches are cut into
    /// slices that the scheduler deals out fairly, and only about one slice
    /// of each stretch waits: the excess over the fair share falls as
    /// slice / stretch (three ranks of the GPT at batch 12 and 24, one
    /// meeting a step after 15–30 ms of work each, measured 1.00–1.03x
    /// four, where full turns predicted 1.27x).
    ///
    /// `loads` are the threads' work relative to the most loaded one's (the
    /// stretch's unit). Uneven loads pack unevenly: deterministic mode's 4
    /// chunks on 3 data ranks give them 2, 1 and 1, and the two one-chunk
    /// ranks share a core while the two-chunk rank has the other, so the
    /// step takes two chunks' time, as two ranks would (measured 14.5 ms
    /// against 13.2 for dp 2, where equal loads predicted 1.5× the latter).
    /// The turns are the cores' fullest sum when each thread goes to the
    /// least loaded core, longest first; the fair share is the loads' sum
    /// spread over the cores, and never less than the longest alone.
    func turns(_ n: Int, loads: [Double] = [], stretch: Double) -> Double {
        let c = coresPerNode
        guard n > c, c > 0 else { return 1 }
        let w = loads.count == n ? loads.sorted(by: >) : Array(repeating: 1.0, count: n)
        var core = Array(repeating: 0.0, count: c)
        for x in w {
            let k = core.indices.min { core[$0] < core[$1] } ?? 0
            core[k] += x
        }
        // In units of the stretch's share (n equal threads over c cores: n / c each).
        let unit = Double(n) / Double(c) * (w.first ?? 1)
        let full = (core.max() ?? 0) / unit
        let fair = max(w.reduce(0, +) / Double(c), w.first ?? 1) / unit
        guard stretch > timeSlice else { return full }
        return fair + (full - fair) * timeSlice / stretch
    }

    /// The scheduler's time slice as the turns above see it: Linux's
    /// default (EEVDF's base slice, 0.75 ms × (1 + log₂ min(cores, 8)):
    /// 1.5 ms on 2 cores). Not measured; on this machine's quiet runs any
    /// figure from 1.5 to 6 ms ranked the layouts alike (bench/advisor.md).
    var timeSlice: Double { 0.75e-3 * (1 + log2(Double(min(max(coresPerNode, 1), 8))).rounded(.down)) }

    /// Deterministic mode's chunk tree on data rank 0 for one run: each
    /// chunk's gradient copied out of the arena into a leaf (read and
    /// write) unless it is a right child added straight into its waiting
    /// left sibling, each sum of siblings (two reads and a write); with one
    /// data rank the root's sum is written into the arena, and a lone chunk
    /// is the root where it is (TreeAccumulator, ChunkTreeReduction; with
    /// more data ranks, `chunkTreeExchange`). The one rank of
    /// the 784-1024-1024-10 MLP at batch 128 (4 chunks, 141 MB) measured
    /// 20.9 ms a step against 14.9 predicted without it (when every leaf
    /// was copied). A run holding batch_norm copies every chunk's leaf (its
    /// statistics phase holds them all before any is summed), and a lone
    /// chunk's back into the arena.
    func chunkTree(_ c: LayoutCandidate, run: Int, threads: Int, running: Int, resident: Int) -> Double {
        let plan = c.stepPlan
        let mine = plan.chunks(of: 0)
        guard plan.chunk != nil, !mine.isEmpty else { return 0 }
        // The accumulator ends holding the cover of the rank's chunks: every other leaf was summed into one.
        let tree = ChunkTree(chunks: plan.chunkCount)
        let merges = mine.count - tree.cover(mine).count
        // A plain run copies nothing: backward writes a leaf's gradient into
        // it, and a right child whose left sibling waits is added from the
        // arena. A run holding batch_norm copies every chunk's out of the
        // arena, and a lone chunk's back.
        let lone = c.layout.mesh.dp == 1 && plan.chunkCount == 1
        let copied = c.holdsBatchStatistics(run: run) ? mine.count + (lone ? 1 : 0) : 0
        let passes = 2 * copied + 3 * merges
        // Each pass goes over the run's gradient, in the arena or in one of
        // the accumulator's at most height + 1 buffers: those are its working
        // set, not the step's whole traffic. (The step's traffic as the set
        // had charged a pipeline stage of the 784-1024-1024-10 MLP in 32-row
        // chunks 690 µs a chunk for its 3 MB gradient, whose whole backward
        // traced 860, product included.)
        let gradient = 4 * Double(c.layout.stageRanges[run].count)
        let live = gradient * Double(tree.height + 2)
        return Double(passes) * elementwise(bytes: gradient, threads: threads, running: running, resident: resident, held: live)
    }

    /// Deterministic mode's exchange between `dp` data ranks of a slice of
    /// `floats` (ChunkTreeReduction), on data rank 0: its tree nodes' slices
    /// posted to every other shard's owner and the others' nodes taken from
    /// the mailboxes (a copy each way), then its shard combined along the
    /// tree (each node copied or added). Element-wise traffic, its ranks
    /// taking turns on the cores. ZeRO 0's all-gather after it is the ring's.
    func chunkTreeExchange(_ c: LayoutCandidate, floats: Double, threads: Int, running: Int, busy: Int) -> Double {
        let plan = c.stepPlan, dp = c.layout.mesh.dp
        guard plan.chunk != nil, dp > 1 else { return 0 }
        let tree = ChunkTree(chunks: plan.chunkCount)
        let covers = (0..<dp).map { Double(tree.cover(plan.chunks(of: $0)).count) }
        let shard = floats / Double(dp)
        let nodes = covers.reduce(0, +)
        let sent = covers[0] * Double(dp - 1) * shard * 8
        let received = (nodes - covers[0]) * shard * 8
        let combined = (8 * nodes + 12 * max(0, nodes - 1)) * shard
        let one = elementwise(bytes: sent + received + combined, threads: threads, running: running, resident: busy)
        return one * max(1, Double(busy) / Double(max(running, 1)))
    }

    /// Each of the node's busy threads' share of the step's rows, relative
    /// to data rank 0's (the largest): every stage and tp rank of data rank
    /// d has d's rows. Equal where the node holds part of the world.
    func threadLoads(_ c: LayoutCandidate, local: Int, threads: Int) -> [Double] {
        let mesh = c.layout.mesh, plan = c.stepPlan
        let first = Double(max(1, plan.rows(of: 0).count))
        guard local == mesh.worldSize else { return [] }
        var loads: [Double] = []
        for d in 0..<mesh.dp {
            let share = Double(plan.rows(of: d).count) / first
            loads += Array(repeating: share, count: mesh.pp * mesh.tp * threads)
        }
        return loads
    }

    func handover(world: Int) -> Double {
        let local = ranksPerNode(world: world)
        guard world > 1, !processes,
            let h = MachineCalibration.interpolated(calibration.handover, ranks: local) ?? MachineCalibration.nearest(calibration.handover, ranks: local)
        else { return 0 }
        return h.latency
    }

    /// Seconds of `bytes` of element-wise traffic on a rank's `threads`
    /// threads while `running` threads of the node move memory at once and
    /// `resident` threads' ranks (running or waiting their turn on a core)
    /// hold their working sets in the node's caches. On this machine the
    /// cores are one resource: the rank's pass runs at one thread's rate
    /// for the working set of every resident rank's pass (`bytes` each; a
    /// rank waiting its turn on a core still fills that core's cache), and
    /// gets its threads' share of what the running threads move together,
    /// at that rate times the gain every core measured past the caches
    /// (`elementwiseSeconds` on all cores), at most what its threads alone
    /// reach. So two one-thread ranks each on half the bytes take as long
    /// as one two-thread rank on all of them, and passes that stay in the
    /// caches together run at the caches' rate, not the memory's (the
    /// memory's rate for every shared pass had doubled the predicted step
    /// of the CNN's 16-row ranks, whose activations fit).
    /// Described machines: the rank's rate as measured here.
    func elementwise(bytes: Double, threads: Int, running: Int, resident: Int, held: Double = 0) -> Double {
        guard machine == nil else { return calibration.elementwiseSeconds(bytes: bytes, threads: threads) }
        let set = max(bytes, held) * Double(max(resident, threads)) / Double(threads)
        let alone = calibration.elementwiseSeconds(bytes: bytes, threads: threads, workingSet: set)
        guard calibration.elementwiseAllCoresBytesPerSecond > 0, running > threads else { return alone }
        let combined = bytes * Double(running) / Double(threads)
        return max(alone, calibration.elementwiseSeconds(bytes: combined, threads: max(2, coresPerNode), workingSet: set))
    }

    /// Forward and backward of `layers` at `rows`, on `threads` BLAS threads
    /// while `running` threads of the node compute at once: on this machine
    /// at the measured gain of more threads; on described machines (whose
    /// thread counts were not measured) at `threads` times this machine's
    /// one-thread rate. `held`: the activations the rank holds; `footprint`:
    /// every byte it holds (what a step cycles through the caches).
    func compute(
        _ profile: ModelProfile, layers: Range<Int>, rows: Int, threads requested: Int, running: Int, resident: Int, held: Double,
        footprint: Double
    ) throws -> Double {
        let key = ComputeMemo.Key(
            profile: ObjectIdentifier(profile), layers: layers, rows: rows, threads: requested, running: running, resident: resident,
            held: held.bitPattern, footprint: footprint.bitPattern)
        if let t = computed.seconds[key] { return t }
        let t = try uncachedCompute(
            profile, layers: layers, rows: rows, threads: requested, running: running, resident: resident, held: held, footprint: footprint)
        computed.seconds[key] = t
        return t
    }

    private func uncachedCompute(
        _ profile: ModelProfile, layers: Range<Int>, rows: Int, threads requested: Int, running: Int, resident: Int, held: Double,
        footprint: Double
    ) throws -> Double {
        let threads = machine == nil ? requested : 1
        let ideal = machine == nil ? 1 : Double(requested)
        // The memory's rate (the largest working set calibrated) and the products' peak.
        let (memory, peak) = computed.memoryAndPeak(calibration)
        var t = 0.0
        for l in layers {
            let w = try computed.work(profile, layer: l, rows: rows)
            for p in w.products {
                // Forward x·Wᵀ, then the weight gradient dyᵀ·x, (n × m)·(m × k),
                // and the input gradient dy·W, (m × n)·(n × k), each with the
                // operands BLAS.gemm reads transposed for a layer's weights.
                // No layer up to the model's first that trains parameters
                // computes an input gradient (nothing before it reads one:
                // PipelineExecution's `need`).
                var products: [(q: MatrixProduct, kernel: MachineCalibration.ProductForm)] = [
                    (p, .nt), (MatrixProduct(m: p.n, n: p.k, k: p.m, count: p.count), .tn),
                ]
                if l > profile.model.root.firstTrainingLayer { products.append((MatrixProduct(m: p.m, n: p.k, k: p.n, count: p.count), .nn)) }
                // The calibration repeats each product on operands its
                // caches keep; in a pass every other layer's weights,
                // gradients and activations went through those caches in
                // between. Each product reads its three matrices once more
                // at the memory's rate, less what that costs within caches
                // of their own size, and less what the calibrated product
                // already spent below the peak rate (4 rows that stream a
                // 512 × 512 weight at 32 GFLOP/s do not stream it twice).
                // The GPT's 64-row products measured 13 µs a call more in
                // the step's order than alone (272 KB at 21 GB/s; 1.2 ms a
                // pass), its 768-row ones 18 % more (ParmlBenchGPT shapes).
                let operands = 4 * Double(p.m * p.k + p.k * p.n + p.m * p.n) * Double(p.count)
                let far = machine == nil
                    ? elementwise(bytes: operands, threads: threads, running: running, resident: resident, held: memory) : 0
                let near = calibration.elementwiseSeconds(bytes: operands, threads: threads)
                let stay = machine == nil
                    ? elementwise(bytes: operands, threads: threads, running: running, resident: resident, held: footprint) : 0
                for (q, kernel) in products {
                    // x·Wᵀ, dyᵀ·x, dy·W: which of them OpenBLAS runs on its
                    // small-matrix kernels. Those read their operands as
                    // they are, unpacked, and measured 0–5 µs slower in the
                    // step's order than alone (4 rows over 784 × 256: 14 µs
                    // both; 2 rows over 512 × 512: 11 against 14–16 µs),
                    // where the operand term below charged them about 40.
                    let b = BLAS.productBlocks(m: q.m, n: q.n, k: q.k)
                    let small = smallKernels && p.timesWeights
                        && BLAS.smallMatrixKernel(transA: kernel.transA, transB: kernel.transB, m: b.m, n: b.n, k: q.k)
                    // Timed in its own form where it is a layer's x·Wᵀ; other
                    // kernels' products (convolutions, attention's heads) at NN's.
                    let form = p.timesWeights ? kernel : .nn
                    let time = computed.productSeconds(q, threads: threads, smallKernel: small, form: form, calibration)
                    if small {
                        t += time
                        continue
                    }
                    // oneDNN's kernels for few rows stream the weight once a
                    // call and reach about the memory's rate alone (4 rows
                    // over 512 × 512: 53 GFLOP/s, 26 GB/s of weight): reading
                    // the operands again overlaps that stream instead of
                    // adding to it, from wherever the rank's footprint lets
                    // them stay (the memory's rate added after the product
                    // had over-predicted the 128-512×4-16 MLP's 4- and
                    // 8-row pipelines 1.6–1.9×).
                    if BLAS.fewRowsOnOneDNN(transA: kernel.transA, transB: kernel.transB, m: b.m, n: b.n, k: q.k, ldc: q.n) {
                        t += max(time, stay)
                        continue
                    }
                    let alone = computed.productSeconds(q, threads: 1, smallKernel: false, form: form, calibration)
                    let stall = peak > 0 && alone > 0 ? time * max(0, 1 - q.flops / alone / peak) : 0
                    t += time + max(0, far - max(near, stall))
                }
            }
            // Forward once, its own pass; backward twice, reading what the
            // forward stored after every later layer (and, in a pipeline,
            // the other micro-batches in flight) went through the caches:
            // its working set is the activations the rank holds.
            let pass = 4 * w.elementwiseFloats
            t += elementwise(bytes: pass, threads: threads, running: running, resident: resident)
            t += elementwise(bytes: 2 * pass, threads: threads, running: running, resident: resident, held: held)
            // GELU's, LayerNorm's arithmetic past that traffic (in a fixed order: the same sum every advice).
            for kernel in ArithmeticKernel.allCases {
                t += calibration.arithmeticSeconds(kernel, elements: w.arithmetic[kernel] ?? 0, threads: threads)
            }
        }
        return t / ideal
    }

    func predict(_ c: LayoutCandidate) throws -> LayoutPrediction {
        let st = c.strategy, mesh = c.layout.mesh, world = mesh.worldSize
        let local = ranksPerNode(world: world)
        let threads = st.resolvedBLASThreads(cores: coresPerNode, localRanks: local)
        // Ranks × their BLAS threads past the cores share them.
        // Ranks × their BLAS threads share the cores: on this machine as the
        // calibration measured it (concurrent sgemms), elsewhere by the ratio.
        let busy = local * threads
        func stretch(_ n: Int) -> Double {
            machine == nil
                ? calibration.slowdown(busyThreads: n) / calibration.slowdown(busyThreads: threads)
                : max(1, Double(n) / Double(coresPerNode))
        }
        // Threads running at once (past the cores they take turns, which `stretch` counts).
        let running = min(busy, max(coresPerNode, threads))
        var p = LayoutPrediction(strategy: st, blasThreads: threads)
        let rows = c.pieceRows, m = st.microBatches, f = 4.0
        // Each stage's compute at the uncontended rate, and its tp all-reduces.
        var stages: [(compute: Double, tp: Double, fwd: (Int, Double), bwd: (Int, Double))] = []
        // Each run of layers' compute per slot, for the pipeline's replay.
        var runCompute = [Double](repeating: 0, count: c.layout.stageRanges.count)
        // Deterministic mode's chunk tree per slot of each run (after its backward).
        var runTree = [Double](repeating: 0, count: c.layout.stageRanges.count)
        var peak = MemoryAccount(), peakStage = 0
        // The pieces a step computes, by their rows: an uneven split (12
        // rows in 8 micro-batches: 4 of 2 rows and 4 of 1) and a short last
        // chunk hold fewer rows than the largest. Each stage's compute below
        // is their sum over the step, per slot of the maxPieces × m the
        // rest of the model counts (m × the largest piece had over-predicted
        // the GPT's 2-stage pipelines of 8 micro-batches by a third).
        var pieceSizes: [Int: Int] = [:]
        for j in 0..<m {
            for q in 0..<c.pieceCount(j) {
                let r = c.rows(ofPiece: j, q)
                if r > 0 { pieceSizes[r, default: 0] += 1 }
            }
        }
        if pieceSizes.isEmpty { pieceSizes[rows] = 1 }
        // In ascending rows, so that every stage sums its terms in one order.
        let piecesByRows = pieceSizes.sorted { $0.key < $1.key }
        let slots = Double(c.maxPieces * m)
        for s in 0..<mesh.pp {
            var compute = 0.0, tp = 0.0
            var fwd = (0, 0.0), bwd = (0, 0.0)
            let mem = c.memory(stage: s)
            let held = Double(mem.activationBytes), footprint = Double(mem.total)
            for run in c.layout.virtualStages(of: s) {
                let layers = c.layout.partition.layers[run]
                var own = 0.0
                for (size, count) in piecesByRows {
                    let t = try self.compute(
                        c.profile, layers: layers, rows: size, threads: threads, running: running, resident: busy, held: held,
                        footprint: footprint)
                    own += t * Double(count) / slots
                }
                compute += own
                runCompute[run] = own
                if st.deterministic {
                    let tree = chunkTree(c, run: run, threads: threads, running: running, resident: busy) / slots
                    compute += tree
                    runTree[run] = tree
                }
                for l in layers where mesh.tp > 1 {
                    let g = c.profile.forwardReduce[l], e = c.profile.backwardReduce[l]
                    fwd = (fwd.0 + g.count, fwd.1 + Double(g.floatsPerRow * rows) * f)
                    bwd = (bwd.0 + e.count, bwd.1 + Double(e.floatsPerRow * rows) * f)
                }
            }
            let perCall = { (n: Int, bytes: Double) in
                n == 0 ? 0 : Double(n) * self.allReduce(bytes: bytes / Double(n), ranks: mesh.tp, stride: 1, world: world)
            }
            tp = perCall(fwd.0, fwd.1) + perCall(bwd.0, bwd.1)
            stages.append((compute, tp, fwd, bwd))
            if mem.total > peak.total || s == 0 { (peak, peakStage) = (mem, s) }
        }
        // A pipeline's ranks are not all busy at once: in the steady state
        // the slowest stage always is, and stage s a share t_s / t_max of
        // the time. So its critical path runs at the rate of the cores shared
        // by that many threads on average (at most the cores' worth; past
        // them the bound below applies), and the ranks' total work shared
        // over the cores bounds the step from below. One stage: every rank
        // busy at once, stretched as the calibration measured.
        let slowestRaw = stages.map(\.compute).max() ?? 0
        // Past the cores the ranks take turns between their meetings
        // (`turns`): at each collective (the step's gradient reduction and
        // statistics; batch_norm's statistics and tp's all-reduces within
        // each piece) and in a pipeline at each hop, where every stage hands
        // its micro-batch on.
        let slowest = stages.first { $0.compute == slowestRaw }
        let statistics = mesh.dp > 1 ? c.profile.model.root.layers.filter { $0 is BatchStatisticsLayer }.count : 0
        let perPiece = Double(statistics + (slowest.map { $0.fwd.0 + $0.bwd.0 } ?? 0) + (mesh.pp > 1 ? 2 * c.layout.virtualStages : 0))
        let meetings = 1 + slots * perPiece
        let contention = stretch(busy) * turns(busy, loads: threadLoads(c, local: local, threads: threads), stretch: slowestRaw * slots / meetings)
        let averageBusy = slowestRaw > 0
            ? Double(busy) * stages.reduce(0) { $0 + $1.compute } / (Double(mesh.pp) * slowestRaw) : Double(busy)
        let pathBusy = min(averageBusy, Double(max(coresPerNode, threads)))
        let below = max(threads, Int(pathBusy.rounded(.down))), share = max(0, pathBusy - Double(below))
        let pathContention = (1 - share) * stretch(below) + share * stretch(below + 1)
        // The slowest stage sets the pace of a pipeline.
        var stageCompute = 0.0, stageTP = 0.0, allStages = 0.0, allStagesTP = 0.0
        var tpForward = (0, 0.0), tpBackward = (0, 0.0)
        for stage in stages {
            let compute = stage.compute * pathContention
            allStages += compute
            allStagesTP += stage.tp
            if compute + stage.tp > stageCompute + stageTP {
                (stageCompute, stageTP, tpForward, tpBackward) = (compute, stage.tp, stage.fwd, stage.bwd)
            }
        }
        let pieces = Double(c.maxPieces)
        p.compute = stageCompute * pieces * Double(m)
        // Filling and draining the pipe (described machines; this machine's
        // replay below replaces both figures): a micro-batch passes every other
        // stage once outside the slowest stage's steady state, so the idle
        // time is the other stages' micro-batch times, (p − 1) times the
        // slowest only when the stages are balanced (a cut where the first
        // stage holds the widest layer leaves short stages behind it).
        // Interleaving divides it by the v runs per stage.
        let others = (allStages + allStagesTP) - (stageCompute + stageTP)
        // A piece goes on to the next stage as soon as it is done, so the
        // fill waits for one piece, not a micro-batch (deterministic mode's
        // pp 2 with 2 micro-batches of 2 chunks measured what 4 of 1 did).
        p.bubble = max(0, others) / Double(c.layout.virtualStages)
        // On this machine a pipeline's compute and bubble are replayed op by
        // op, the stages sharing the cores as far as its schedule lets them
        // run at once (a piece's forward a third of its run's compute, its
        // backward two thirds and deterministic mode's chunk tree).
        let sharing = mesh.pp > 1 && machine == nil
            ? PipelineReplay(
                kind: c.layout.stageScheduleKind, stages: mesh.pp, virtualStages: c.layout.virtualStages, microBatches: m * c.maxPieces,
                forward: runCompute.map { $0 / 3 }, backward: zip(runCompute, runTree).map { $0 * 2 / 3 + $1 }) : nil
        let perStage = mesh.dp * mesh.tp * threads
        let hopFree = sharing?.makespan(hop: 0, wake: 0, window: .infinity, threadsPerStage: perStage, stretch: stretch)
        if let r = hopFree {
            p.compute = r.busiest
            p.bubble = max(0, r.seconds - r.busiest)
        }
        // Every rank's compute (the stages' average: ranks fill the node in
        // mesh order), with all of them sharing the cores: with one stage
        // the stretched compute itself; a pipeline on fewer cores than
        // ranks cannot finish sooner, whatever its critical path.
        let shared = allStages / Double(mesh.pp) * pieces * Double(m) * contention / pathContention
        p.compute = max(p.compute, shared - p.bubble)
        var comm = stageTP * pieces * Double(m)
        if mesh.tp > 1 {
            let calls = Int(pieces) * m
            if tpForward.0 > 0 {
                p.communications.append(
                    CommunicationTerm(
                        what: "tp all-reduce of partial outputs (g, forward)", group: "tp(\(mesh.tp))", count: tpForward.0 * calls,
                        bytes: tpForward.1 / Double(tpForward.0), seconds: 0))
            }
            if tpBackward.0 > 0 {
                p.communications.append(
                    CommunicationTerm(
                        what: "tp all-reduce of input gradients (f, backward)", group: "tp(\(mesh.tp))", count: tpBackward.0 * calls,
                        bytes: tpBackward.1 / Double(tpBackward.0), seconds: 0))
            }
            let share = p.communications.reduce(0.0) { $0 + Double($1.count) * $1.bytes }
            for k in p.communications.indices {
                let term = p.communications[k]
                p.communications[k].seconds = comm * Double(term.count) * term.bytes / max(share, 1)
            }
        }
        if mesh.pp > 1 {
            // Activations forward and their gradients back: m·v + pp − 1 of
            // each on a stage's path (v runs per stage: each micro-batch goes
            // round the ring v times), each piece sent on its own.
            var width = 0
            for run in 0..<(c.layout.stageRanges.count - 1) {
                width = max(width, c.profile.output(ofLayer: c.layout.partition.layers[run].upperBound - 1, rows: 1).rowSize)
            }
            let bytes = Double(rows * width) * f
            let sends = 2 * (m * c.layout.virtualStages + mesh.pp - 1) * c.maxPieces
            let hop = send(bytes: bytes, stride: mesh.tp, world: world), wakeUp = wake(busy: busy)
            // What the hops add, replayed op by op (PipelineReplay): a piece
            // is one of the replay's micro-batches, its forward a third of
            // its run's compute (one product of three). A hop costs its send,
            // and its receiver's wake-up where the receiver waited past
            // WorldCore's spin and yield windows, only where the receiver
            // was waiting for it. The 784-256-256-10 MLP's first stage holds
            // three quarters of its parameters and rarely waits: a wake-up
            // on every hop had charged its 4-rank pipelines 0.2–1.3 ms of
            // hops, in steps measured at 0.65–1.1 ms in all (ranked at 0.42
            // in the 20:17 run, 0.69 replayed).
            // Described machines: each stage's compute stretched by the
            // average busy count, the cores not shared in the replay.
            let stretched = runCompute.map { $0 * pathContention }
            let replay = sharing ?? PipelineReplay(
                kind: c.layout.stageScheduleKind, stages: mesh.pp, virtualStages: c.layout.virtualStages, microBatches: m * c.maxPieces,
                forward: stretched.map { $0 / 3 }, backward: stretched.map { $0 * 2 / 3 })
            let windows = rankWaitWindows(ranks: local, cpus: coresPerNode)
            let window = Double(windows.spinNanos + windows.yieldNanos) * 1e-9
            var t = Double(sends) * (hop + wakeUp)
            // On this machine the hop-free replay is the one that gave compute and bubble above.
            let replayed = sharing != nil
                ? replay.hops(seconds: hop, wake: wakeUp, window: window, threadsPerStage: perStage, stretch: stretch, without: hopFree?.seconds)
                : replay.hops(seconds: hop, wake: wakeUp, window: window)
            if let replayed {
                t = replayed.seconds
                // Past the cores a rank that sleeps and is woken also costs
                // the node CPU time (the futex wait and wake, two context
                // switches, its caches refilled), whether or not the wait
                // was on the step's path: charged at the wake-up's figure per
                // sleep (not measured apart), every pipeline and tp rank
                // alike, shared over the cores. Without it the GPT at batch
                // 24 ranked at 0.75 instead of 0.81 (20:17 run): its
                // interleaved 4 stages of 16 micro-batches, whose ranks sleep
                // at nearly every hop, measured 50.7 ms a step, predicted
                // 48.1 without and 49.5 with.
                if busy > coresPerNode {
                    let pipelines = Double(max(1, local / (mesh.pp * mesh.tp)))
                    t += Double(replayed.sleeps * mesh.tp) * pipelines * wakeUp / Double(coresPerNode)
                }
            }
            comm += t
            p.communications.append(
                CommunicationTerm(what: "activations and their gradients (send/recv)", group: "pp(\(mesh.pp))", count: sends, bytes: bytes, seconds: t))
        }
        // The fullest stage's runs whose buckets hand pages back (GradientBuckets.releasesPages).
        let releasingRuns = c.layout.virtualStages(of: peakStage).filter { c.bucketsGradients(run: $0) }
        if mesh.dp > 1 {
            let floats = Double(peak.sliceFloats), bytes = floats * f
            let buckets = max(1, Int((bytes / Double(st.bucketBytes)).rounded(.up)))
            let stride = mesh.pp * mesh.tp
            let once = allReduce(bytes: bytes / Double(buckets), ranks: mesh.dp, stride: stride, world: world)
            // Groups of the other stages and tp ranks reduce at the same time on the same memory.
            // (A job's process rates were measured with its groups reducing at once.)
            let sharing = processes ? 1 : max(1, Double(world) / Double(max(mesh.dp, coresPerNode)))
            let ring = Double(buckets) * once * sharing
            var t = ring
            // In halves of an all-reduce: each reduce-scatter is one, and
            // so is each all-gather (ZeRO 0's after its reduce-scatter, or
            // the parameters'); what a half costs, below.
            var gathers = 1.0, half = 0.5
            // The parameters' (or ZeRO 0's reduced gradients') all-gather:
            // MPI processes of this machine at their measured all-gather,
            // ZeRO-3's per layer with its pages faulted in again;
            // elsewhere `ring` the halves of an all-reduce.
            func gatherSeconds(_ ring: Double) -> Double {
                guard processes, gathers > 0 else { return ring }
                guard peak.gathersParameters else {
                    return Double(buckets) * processAllGather(bytes: bytes / Double(buckets), ranks: mesh.dp, world: world)
                }
                return layerGathers(c, stage: peakStage, world: world, contention: contention)
            }
            var what = "gradients all-reduce"
            var count = buckets
            if st.zeroStage >= 1 {
                gathers = peak.gathersParameters ? 2 : (st.zeroStage >= 3 && st.backend == .threads ? 0 : 1)
                // Where the buckets hand pages back, every micro-batch's
                // buckets are reduce-scattered into the shard (GradientBuckets).
                let reductions = releasingRuns.isEmpty ? 1 : st.microBatches
                // A ring's halves cost half an all-reduce each; the threads
                // backend's (each rank reading its peers' slices) as much as
                // its whole all-reduce: at dp 2 the 784-1024-1024-10 MLP's
                // all-reduce took 0.42 ms, ZeRO-1's reduce-scatter 0.47 and
                // its parameter all-gather 0.27 (Chrome trace).
                if machine == nil && st.backend == .threads { half = 1 }
                t = ring * Double(reductions) * half + gatherSeconds(ring * gathers * half)
                count = buckets * reductions
                what = st.zeroStage >= 3 && st.backend == .threads
                    ? "gradients reduce-scatter (ZeRO-3: the shared arena needs no gather)"
                    : "gradients reduce-scatter + parameters all-gather (ZeRO-\(st.zeroStage))"
                if peak.gathersParameters {
                    // MPI ZeRO-3 gathers each layer before its forward and again before its backward.
                    what = "gradients reduce-scatter + parameters all-gathered per layer, forward and backward (ZeRO-3)"
                }
                if reductions > 1 { what += ", each of the \(reductions) micro-batches' buckets reduce-scattered into the shard" }
            }
            if st.deterministic {
                what += ", chunk-tree order"
                // On this machine: the chunk tree's exchange in place of the ring's reduce-scatter half.
                if machine == nil {
                    t = chunkTreeExchange(c, floats: floats, threads: threads, running: running, busy: busy) + gatherSeconds(ring * gathers * half)
                }
            }
            comm += t
            p.communications.append(CommunicationTerm(what: what, group: "dp(\(mesh.dp))", count: count, bytes: bytes / Double(buckets), seconds: t))
        }
        if processes && (mesh.pp > 1 || mesh.tp > 1) {
            // After the update each process's host model is made whole
            // (HostModelAssembly): every run's slice broadcast by each of
            // its tp ranks to the replica's processes, each received slice
            // copied into place. Outside a traced step; a tp 2 step of the
            // 784-256-256-10 MLP spent 250 µs in it, a third of the step.
            let replica = mesh.pp * mesh.tp
            var t = 0.0, bytes = 0.0
            for range in c.layout.stageRanges {
                let b = Double(range.count) * f
                bytes += b * Double(mesh.tp)
                t += Double(mesh.tp) * processBroadcast(bytes: b, ranks: replica, world: world)
                if mesh.tp > 1 { t += Double(mesh.tp) * elementwise(bytes: 3 * b, threads: threads, running: running, resident: busy) }
            }
            comm += t
            p.communications.append(
                CommunicationTerm(
                    what: "host model assembled (broadcasts of each run's parameters)", group: "replica(\(replica))",
                    count: c.layout.stageRanges.count * mesh.tp, bytes: bytes / Double(max(1, c.layout.stageRanges.count * mesh.tp)), seconds: t))
        }
        p.communication = comm
        // Buckets that hand pages back (where that lowers the peak) release
        // every gradient page outside the rank's shard after reducing it,
        // once per micro-batch; the next backward faults each one in again, zeroed.
        for run in releasingRuns {
            let range = c.layout.stageRanges[run]
            p.releasedGradientBytes += Double(range.count - VirtualStage.owned(range, layout: c.layout, data: 0).count) * f
                * Double(st.microBatches)
        }
        if p.releasedGradientBytes > 0 {
            p.overhead += pageFaults(bytes: p.releasedGradientBytes, st, local: local, contention: contention)
        }
        // The update reads parameters and gradients, writes parameters, and
        // reads and writes each state copy; the finite check (or clipping's
        // norm) has read the gradients once before it.
        let owned = Double(peak.ownedFloats)
        let copies = c.folds ? 1 : c.optimizerStateCopies
        let passes = 3 + 2 * copies + (c.readsGradientsFirst ? 1 : 0)
        // The update runs on the rank's worker threads, as element-wise work
        // does, while the other ranks update theirs. Its working set is the
        // arrays it goes over (parameters, gradients, each state copy), not
        // its traffic: the traffic as the set had read the 128-512×4-16 MLP's
        // 14 MB Adam update past the shared cache (494 µs against 277 traced).
        let slice = owned * f
        p.optimizer = Double(passes)
            * elementwise(bytes: slice, threads: threads, running: running, resident: busy, held: slice * Double(2 + copies)) * contention
        if world > 1 {
            let stats = allReduce(bytes: 8, ranks: world, stride: 1, world: world)
            p.overhead += handover(world: world) + stats
            p.communications.append(CommunicationTerm(what: "loss and accuracy all-reduce", group: "world(\(world))", count: 1, bytes: 8, seconds: stats))
        }
        p.memory = peak.report
        p.peakStage = peakStage
        p.reason = reason(p, c, peak: peak)
        return p
    }

    /// One line: what the layout buys and what it pays.
    private func reason(_ p: LayoutPrediction, _ c: LayoutCandidate, peak: MemoryAccount) -> String {
        let st = c.strategy, mesh = c.layout.mesh
        var parts: [String] = []
        if mesh.worldSize == 1 { parts.append("one rank: no communication, all \(c.batch) rows on \(p.blasThreads) BLAS thread\(p.blasThreads == 1 ? "" : "s")") }
        if mesh.dp > 1, let t = p.communications.first(where: { $0.group.hasPrefix("dp") }) {
            parts.append(
                "dp \(mesh.dp) splits the batch into \(c.stepPlan.rows(of: 0).count)-row shares but adds \(t.count) all-reduce\(t.count == 1 ? "" : "s") of "
                    + "\(Bytes.text(t.bytes)) of gradients")
        }
        if mesh.tp > 1 {
            let whole = Double(c.profile.model.parameterCount) * Double(mesh.tp)
            let saved = (whole - Double(c.profile.model.parameterCount)) * 4
            let calls = p.communications.filter { $0.group.hasPrefix("tp") }
            let n = calls.reduce(0) { $0 + $1.count } / max(st.microBatches * c.maxPieces, 1)
            let bytes = calls.first?.bytes ?? 0
            parts.append("tp \(mesh.tp) removes up to \(Bytes.text(saved)) of parameters per rank but adds \(n) all-reduces of \(Bytes.text(bytes)) per micro-batch")
        }
        if mesh.pp > 1 {
            let share = p.bubble / max(p.stepSeconds, 1e-12) * 100
            parts.append("pp \(mesh.pp) × \(st.microBatches) micro-batches holds 1/\(mesh.pp) of the layers; bubble \(Int(share.rounded())) % of the step")
        }
        if st.zeroStage >= 1 && mesh.dp > 1 {
            parts.append("ZeRO-\(st.zeroStage) keeps \(Bytes.text(Double(peak.report.optimizer))) of optimizer state (1/\(mesh.dp))")
        }
        if p.releasedGradientBytes > 0 {
            let local = ranksPerNode(world: mesh.worldSize)
            let faults = pageFaults(bytes: p.releasedGradientBytes, st, local: local, contention: 1)
            parts.append(
                "its buckets hand \(Bytes.text(p.releasedGradientBytes)) of gradient pages back each step (~\(Bytes.round1(faults * 1e3)) ms of page faults)")
        }
        return parts.joined(separator: "; ")
    }
}

/// Byte counts as people read them.
enum Bytes {
    static func text(_ b: Double) -> String {
        if b >= 1_073_741_824 { return "\(round1(b / 1_073_741_824)) GiB" }
        if b >= 1_048_576 { return "\(round1(b / 1_048_576)) MiB" }
        if b >= 1024 { return "\(round1(b / 1024)) KiB" }
        return "\(Int(b)) B"
    }

    static func round1(_ x: Double) -> String {
        let r = (x * 10).rounded() / 10
        return r == r.rounded() ? "\(Int(r))" : "\(r)"
    }
}

/// `CostModel.compute`'s answers by their arguments (the profile by
/// identity: each tp degree's probe is one object for the whole advice).
final class ComputeMemo {
    struct Key: Hashable {
        let profile: ObjectIdentifier
        let layers: Range<Int>
        let rows, threads, running, resident: Int
        let held, footprint: UInt64
    }
    var seconds: [Key: Double] = [:]

    /// The calibration's rates that `compute` reads for every product, by
    /// shape: the same few shapes recur in every layout of an advice, and
    /// each reading filters the calibration and takes logarithms (a GPT's
    /// advice spent a fifth of its time there).
    struct ProductKey: Hashable {
        let m, n, k, count, threads: Int
        let smallKernel: Bool
        let form: MachineCalibration.ProductForm
    }
    private var products: [ProductKey: Double] = [:]
    func productSeconds(
        _ q: MatrixProduct, threads: Int, smallKernel: Bool, form: MachineCalibration.ProductForm, _ c: MachineCalibration
    ) -> Double {
        let key = ProductKey(m: q.m, n: q.n, k: q.k, count: q.count, threads: threads, smallKernel: smallKernel, form: form)
        if let t = products[key] { return t }
        let t = c.productSeconds(q, threads: threads, smallKernel: smallKernel, form: form)
        products[key] = t
        return t
    }

    /// A top-level layer's work at `rows` (`Layer.work`), per profile.
    struct WorkKey: Hashable {
        let profile: ObjectIdentifier
        let layer, rows: Int
    }
    private var works: [WorkKey: LayerWork] = [:]
    func work(_ profile: ModelProfile, layer l: Int, rows: Int) throws -> LayerWork {
        let key = WorkKey(profile: ObjectIdentifier(profile), layer: l, rows: rows)
        if let w = works[key] { return w }
        let w = try profile.model.root.layers[l].work(input: profile.input(ofLayer: l, rows: rows))
        works[key] = w
        return w
    }

    /// The largest element-wise working set calibrated and the best
    /// one-thread product rate: read once an advice.
    private var memoryPeak: (Double, Double)?
    func memoryAndPeak(_ c: MachineCalibration) -> (memory: Double, peak: Double) {
        if let m = memoryPeak { return m }
        let m = (c.elementwiseBySize.map(\.bytes).max() ?? 0, c.products.filter { $0.threads == 1 }.map(\.flopsPerSecond).max() ?? 0)
        memoryPeak = m
        return m
    }
}
