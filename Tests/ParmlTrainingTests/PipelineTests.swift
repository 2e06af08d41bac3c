import Foundation
import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// Promise 1 for pipeline parallelism and dp × pp hybrids: in deterministic
// mode every pp, schedule, micro-batch count and ZeRO stage gives the bits
// serial deterministic training gives; in the default mode a pipeline gives
// the bits of serial training that accumulates the same micro-batches.

/// 12 → w → ReLU → residual(LayerNorm, w → w, GELU, Dropout) → 4: four
/// top-level layers. With w = 16 the 580 parameters share one clipping
/// block (every stage boundary cuts it); with w = 64, 5,380 parameters span
/// six blocks and stage boundaries fall inside blocks.
private func pipelineMLP(width w: Int) throws -> Model { try residualMLP(width: w, seed: 11) }

private func pipelineBatch(_ n: Int, step: Int) throws -> (Tensor, Tensor) { try residualMLPBatch(n, step: step) }

struct Layout: CustomStringConvertible, Sendable {
    var dp = 1
    var pp = 1
    var m = 1
    var schedule: PipelineSchedule = .oneForwardOneBackward
    var zero = 0
    var description: String { "dp=\(dp) pp=\(pp) m=\(m) \(schedule == .gpipe ? "gpipe" : "1f1b") zero=\(zero)" }
}

/// Parameters after `steps` steps of `layout` on batches of `n` samples.
private func trainPipeline(
    _ layout: Layout, deterministic: Bool, optimizer: DPOptimizer, n: Int = 45, width: Int = 16, steps: Int = 5
) throws -> [Float] {
    try trainPipeline(layout, deterministic: deterministic, config: optimizer.config, n: n, width: width, steps: steps)
}

private func trainPipeline(
    _ layout: Layout, deterministic: Bool, config: OptimizerConfig, n: Int = 45, width: Int = 16, steps: Int = 5
) throws -> [Float] {
    var s = StrategyConfig()
    s.dp = layout.dp
    s.pp = layout.pp
    s.microBatches = layout.m
    s.pipelineSchedule = layout.schedule
    s.zeroStage = layout.zero
    s.deterministic = deterministic
    s.gradientChunk = 8
    s.seed = 4
    s.bucketBytes = 700 * 4
    s.watchdogSeconds = 20
    // One OpenBLAS thread for every layout: two threads in one sgemm can
    // round a large-k product differently from one, and serial runs would
    // otherwise get two where ranks get one each.
    s.blasThreads = 1
    let model = try pipelineMLP(width: width)
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: config, strategy: s)
    var losses: [Float] = []
    for k in 0..<steps {
        let (x, y) = try pipelineBatch(n, step: k)
        let r = try t.step(inputs: x, targets: y)
        losses.append(r.loss)
        #expect(r.loss.isFinite, "\(layout): loss \(r.loss)")
        if config.clipGradNorm > 0 { #expect(t.lastGradientNorm.isFinite && t.lastGradientNorm > 0) }
    }
    return model.parameters!.toArray()
}

struct PipelineTests {
    static let pipelines: [Layout] = [2, 3, 4].flatMap { p in
        [PipelineSchedule.gpipe, .oneForwardOneBackward].flatMap { sched in
            [1, p, 2 * p + 1].map { Layout(pp: p, m: $0, schedule: sched) }
        }
    }

    /// The issue's matrix: pp ∈ {2, 3, 4} × {GPipe, 1F1B} × m ∈ {1, p, 2p+1},
    /// two optimizers (AdamW clips by global norm across the stages).
    @Test(arguments: DPOptimizer.allCases, [16, 64])
    func deterministicPipelinesAreBitIdenticalToSerial(optimizer: DPOptimizer, width: Int) throws {
        let serial = try trainPipeline(Layout(), deterministic: true, optimizer: optimizer, width: width)
        for layout in Self.pipelines {
            let p = try trainPipeline(layout, deterministic: true, optimizer: optimizer, width: width)
            expectSameBits(p, serial, "\(layout) \(optimizer): max |Δ| = \(maxAbsDiff(p, serial))")
        }
    }

    /// Hybrids dp × pp with ZeRO 0, 2 and 3 (DeepSpeed forbids ZeRO-2/3 with
    /// pipelines; here they are the same math).
    @Test(arguments: DPOptimizer.allCases)
    func deterministicHybridsAreBitIdenticalToSerial(optimizer: DPOptimizer) throws {
        let serial = try trainPipeline(Layout(), deterministic: true, optimizer: optimizer, width: 64)
        var layouts: [Layout] = []
        for zero in [0, 1, 2, 3] {
            layouts.append(Layout(dp: 2, pp: 2, m: 3, schedule: .oneForwardOneBackward, zero: zero))
            layouts.append(Layout(dp: 2, pp: 2, m: 2, schedule: .gpipe, zero: zero))
        }
        layouts.append(Layout(dp: 3, pp: 2, m: 1, schedule: .oneForwardOneBackward, zero: 2))
        layouts.append(Layout(dp: 2, pp: 3, m: 4, schedule: .gpipe, zero: 1))
        for layout in layouts {
            let p = try trainPipeline(layout, deterministic: true, optimizer: optimizer, width: 64)
            expectSameBits(p, serial, "\(layout) \(optimizer): max |Δ| = \(maxAbsDiff(p, serial))")
        }
    }

    /// Default mode: a stage runs the GEMMs serial training runs on the same
    /// micro-batches and accumulates them in the same order, so a pipeline
    /// equals serial gradient accumulation over m micro-batches bit for bit,
    /// whichever schedule. (Plain SGD momentum is left out: serial training
    /// folds it into the backward GEMM's beta, which rounds once differently.)
    @Test(arguments: ["adamw", "nesterov"])
    func defaultModeMatchesSerialAccumulation(optimizer: String) throws {
        var config = DPOptimizer.adamW.config
        if optimizer == "nesterov" {
            config = DPOptimizer.sgdMomentum.config
            config.nesterov = true
        }
        for m in [1, 3, 5] {
            let serial = try trainPipeline(Layout(m: m), deterministic: false, config: config, width: 64)
            for p in [2, 4] {
                for sched in [PipelineSchedule.gpipe, .oneForwardOneBackward] {
                    let layout = Layout(pp: p, m: m, schedule: sched)
                    let got = try trainPipeline(layout, deterministic: false, config: config, width: 64)
                    expectSameBits(got, serial, "\(layout) \(optimizer): max |Δ| = \(maxAbsDiff(got, serial))")
                }
            }
        }
    }

    /// Accumulating micro-batches changes only the order of float sums: the
    /// same tolerance as data parallelism's default mode.
    @Test func microBatchesStayWithinRoundingOfOneBatch() throws {
        let whole = try trainPipeline(Layout(), deterministic: false, optimizer: .sgdMomentum, width: 64)
        for layout in [Layout(pp: 2, m: 4, schedule: .gpipe), Layout(dp: 2, pp: 2, m: 3, zero: 2)] {
            let p = try trainPipeline(layout, deterministic: false, optimizer: .sgdMomentum, width: 64)
            let d = maxAbsDiff(p, whole)
            #expect(d <= 1e-6, "\(layout): max |Δ| = \(d)")
        }
    }

    /// More micro-batches than samples: empty micro-batches are skipped on
    /// every stage alike, and nothing deadlocks.
    @Test func moreMicroBatchesThanSamples() throws {
        let serial = try trainPipeline(Layout(), deterministic: true, optimizer: .sgdMomentum, n: 6, steps: 2)
        let p = try trainPipeline(Layout(pp: 3, m: 9, schedule: .oneForwardOneBackward), deterministic: true, optimizer: .sgdMomentum, n: 6, steps: 2)
        expectSameBits(p, serial, "pp=3 m=9")
        let fast = try trainPipeline(Layout(dp: 2, pp: 2, m: 7), deterministic: false, optimizer: .sgdMomentum, n: 5, steps: 2)
        #expect(fast.allSatisfy { $0.isFinite })
    }

    /// 1F1B keeps at most p − s micro-batches alive on stage s; GPipe keeps all m.
    @Test func oneForwardOneBackwardBoundsLiveActivations() throws {
        /// A p = 4, m = 8 trainer after one step of `rows` rows.
        func stepped(_ schedule: PipelineSchedule, width: Int, rows: Int) throws -> Trainer {
            var s = StrategyConfig()
            s.pp = 4
            s.microBatches = 8
            s.pipelineSchedule = schedule
            let t = try Trainer(model: try pipelineMLP(width: width), loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: s)
            let (x, y) = try pipelineBatch(rows, step: 0)
            try t.step(inputs: x, targets: y)
            return t
        }
        func bytes(_ schedule: PipelineSchedule) throws -> Int {
            let t = try stepped(schedule, width: 64, rows: 128)
            return try (0..<4).map { try t.memory(rank: $0).activations }.max()!
        }
        let gpipe = try bytes(.gpipe), oneF1B = try bytes(.oneForwardOneBackward)
        // p/m = 1/2, within 10 % (the buffer gradients arrive in is per rank, not per slot).
        #expect(Double(oneF1B) <= 0.55 * Double(gpipe), "1F1B peak \(oneF1B) bytes vs GPipe \(gpipe)")
        func slots(_ schedule: PipelineSchedule) throws -> [Int] {
            try stepped(schedule, width: 16, rows: 64).ranks.map(\.activationSlots)
        }
        #expect(try slots(.gpipe) == [8, 8, 8, 8])
        // 1F1B's last stage runs each forward straight into its backward: one slot.
        #expect(try slots(.oneForwardOneBackward) == [4, 3, 2, 1])
    }

    /// Boundaries the host marks decide the cut; the math does not change.
    @Test func markedBoundariesDecideTheStages() throws {
        func marked() throws -> Model {
            let m = Model()
            try m.add(try Linear(inFeatures: 12, outFeatures: 16))
            try m.markStageBoundary()
            try m.add(Activation(.relu))
            try m.add(try Linear(inFeatures: 16, outFeatures: 4))
            try m.initialize(seed: 11)
            return m
        }
        var s = StrategyConfig()
        s.pp = 2
        s.microBatches = 3
        s.deterministic = true
        s.gradientChunk = 8
        let model = try marked()
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: s)
        #expect(t.layout.partition.layers == [0..<1, 1..<3], "balancing would have cut after the ReLU")
        let serialModel = try marked()
        var serial = StrategyConfig()
        serial.deterministic = true
        serial.gradientChunk = 8
        let st = try Trainer(model: serialModel, loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: serial)
        for k in 0..<3 {
            let (x, y) = try pipelineBatch(20, step: k)
            try t.step(inputs: x, targets: y)
            try st.step(inputs: x, targets: y)
        }
        expectSameBits(model.parameters!.toArray(), serialModel.parameters!.toArray(), "marked pp=2 vs serial")
        s.pp = 3
        let e = parmlError { _ = try Trainer(model: try marked(), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s) }
        #expect(e?.message.contains("marks 1 stage boundary") == true && e?.message.contains("pp=3") == true, "\(String(describing: e))")
        let m = Model()
        #expect(parmlError { try m.markStageBoundary() }?.message.contains("needs a layer") == true)
        try m.add(try Linear(inFeatures: 2, outFeatures: 2))
        try m.beginResidual()
        #expect(parmlError { try m.markStageBoundary() }?.message.contains("residual") == true)
    }

    @Test func stagesOwnContiguousSlicesOfTheArena() throws {
        var s = StrategyConfig()
        s.pp = 3
        let model = try pipelineMLP(width: 64)
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: s)
        let ranges = t.layout.stageRanges
        #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == model.parameterCount)
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
        let grads = try (0..<3).map { try t.memory(rank: $0).gradients }
        #expect(grads.reduce(0, +) == model.parameterCount * 4, "the stages' gradients add up to one arena: \(grads)")
    }
}

struct TraceTests {
    @Test func timelineHasEveryMicroBatchOnEveryStage() throws {
        var s = StrategyConfig()
        s.pp = 2
        s.microBatches = 4
        s.pipelineSchedule = .gpipe
        let t = try Trainer(model: try pipelineMLP(width: 16), loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: s)
        let (x, y) = try pipelineBatch(32, step: 0)
        try t.step(inputs: x, targets: y)
        #expect(t.traceEvents(rank: 0).isEmpty, "nothing is recorded until tracing is on")
        t.setTracing(true)
        for _ in 0..<2 { try t.step(inputs: x, targets: y) }
        for r in 0..<2 {
            let events = t.traceEvents(rank: r)
            for kind in [TraceKind.forward, .backward] {
                let mbs = events.filter { $0.kind == kind }.map { "\($0.step).\($0.microBatch)" }
                #expect(mbs == ["1.0", "1.1", "1.2", "1.3", "2.0", "2.1", "2.2", "2.3"], "rank \(r) \(kind)")
            }
            #expect(events.allSatisfy { $0.end >= $0.start })
            #expect(events.contains { $0.kind == .optimizer } && events.contains { $0.kind == .receive })
            let bubble = t.measuredBubble(rank: r)
            #expect(bubble > 0 && bubble < 1, "rank \(r) bubble \(bubble)")
        }
        let json = try JSONSerialization.jsonObject(with: Data(t.chromeTrace().utf8)) as? [String: Any]
        let events = json?["traceEvents"] as? [[String: Any]] ?? []
        #expect(events.contains { ($0["name"] as? String) == "forward mb 3" && ($0["tid"] as? Int) == 1 })
        #expect(events.filter { ($0["ph"] as? String) == "M" }.count == 2, "one named track per rank")
        t.setTracing(false)
        try t.step(inputs: x, targets: y)
        #expect(t.traceEvents(rank: 0).allSatisfy { $0.step < 3 }, "recording stopped")
    }
}

struct StageScheduleTests {
    /// Every micro-batch runs forward then backward once on every stage, in
    /// order, and a slot (j mod inFlight) is never reused while alive.
    @Test func schedulesRunEachMicroBatchOnceWithinTheirSlots() {
        for p in 1...5 {
            for m in 1...11 {
                for kind in [PipelineSchedule.gpipe, .oneForwardOneBackward] {
                    for s in 0..<p {
                        let sched = StageSchedule(kind: kind, stage: s, stages: p, microBatches: m)
                        var alive = Set<Int>()
                        var slotOwner = [Int: Int]()
                        var forwards: [Int] = [], backwards: [Int] = []
                        for op in sched.ops {
                            switch op {
                            case .forward(let j, _):
                                let slot = j % sched.inFlight
                                #expect(slotOwner[slot] == nil, "p=\(p) m=\(m) s=\(s): slot \(slot) busy")
                                slotOwner[slot] = j
                                alive.insert(j)
                                forwards.append(j)
                            case .backward(let j, _):
                                #expect(alive.contains(j))
                                alive.remove(j)
                                slotOwner[j % sched.inFlight] = nil
                                backwards.append(j)
                            }
                        }
                        #expect(forwards == Array(0..<m) && backwards == Array(0..<m))
                        let bound = kind == .gpipe ? m : min(p - s, m)
                        #expect(sched.inFlight == bound, "p=\(p) m=\(m) s=\(s) \(kind)")
                    }
                }
            }
        }
    }

    @Test func partitionBalancesParameterCounts() throws {
        // 784-1024-1024-10 MLP: Linear, ReLU, Linear, ReLU, Linear.
        let costs = [803_840, 0, 1_049_600, 0, 10_250]
        let two = try StagePartition.balanced(costs: costs, stages: 2)
        #expect(two.layers == [0..<2, 2..<5])
        let five = try StagePartition.balanced(costs: costs, stages: 5)
        #expect(five.layers.map(\.count) == [1, 1, 1, 1, 1])
        let e = parmlError { _ = try StagePartition.balanced(costs: costs, stages: 6) }
        #expect(e?.message.contains("pp=6") == true && e?.message.contains("5 top-level") == true, "\(String(describing: e))")
    }

    @Test func treeAccumulatorLeavesTheCover() throws {
        for chunks in 1...13 {
            let tree = ChunkTree(chunks: chunks)
            for lo in 0..<chunks {
                for hi in (lo + 1)...chunks {
                    let acc = TreeAccumulator()
                    try acc.start(tree: tree, owned: lo..<hi, width: 1)
                    for c in lo..<hi {
                        let b = try acc.leafBuffer()
                        b.data[0] = Float(1 << c)
                        acc.push(chunk: c, buffer: b)
                    }
                    expectEqualElements(acc.stack.map(\.node), tree.cover(lo..<hi), "chunks=\(chunks) range \(lo)..<\(hi)")
                    let sums = acc.stack.indices.map { Int(acc.values(at: $0)[0]) }
                    let expected = tree.cover(lo..<hi).map { n in tree.span(n).reduce(0) { $0 + (1 << $1) } }
                    expectEqualElements(sums, expected)
                }
            }
        }
    }

    /// One data rank: each chunk's gradient lands in the arena in turn,
    /// and the accumulator writes the root's sum there (`start`'s `root`)
    /// with the bits a buffer's root has, never holding more buffers.
    @Test func treeAccumulatorWritesTheRootIntoTheArenaWithItsBits() throws {
        let width = 37
        for chunks in 1...9 {
            let tree = ChunkTree(chunks: chunks)
            let leaves = (0..<chunks).map { c in (0..<width).map { i in 1e3 * sin(Float(c * width + i) * 1.37 + 0.5) } }
            let arena = try Tensor(shape: Shape(width))
            let copied = TreeAccumulator(), rooted = TreeAccumulator()
            try copied.start(tree: tree, owned: 0..<chunks, width: width)
            try rooted.start(tree: tree, owned: 0..<chunks, width: width, root: arena.data)
            for c in 0..<chunks {
                let b = try copied.leafBuffer()
                leaves[c].withUnsafeBufferPointer { b.data.update(from: $0.baseAddress!, count: width) }
                copied.push(chunk: c, buffer: b)
                leaves[c].withUnsafeBufferPointer { arena.data.update(from: $0.baseAddress!, count: width) }  // backward's write
                try rooted.push(chunk: c, from: arena.data)
            }
            #expect(rooted.stack.count == 1 && rooted.stack[0].node == tree.root && rooted.stack[0].buffer == nil, "chunks=\(chunks)")
            expectSameBits(arena.toArray(), Array(UnsafeBufferPointer(start: copied.values(at: 0), count: width)), "chunks=\(chunks)")
            #expect(rooted.bytes <= copied.bytes, "chunks=\(chunks)")
            if chunks == 1 { #expect(rooted.bytes == 0, "a lone chunk is the root where it is") }
        }
        // Not every chunk: the root stays where the cover's nodes are.
        let part = TreeAccumulator(), arena = try Tensor(shape: Shape(1))
        try part.start(tree: ChunkTree(chunks: 4), owned: 0..<2, width: 1, root: arena.data)
        for c in 0..<2 { arena.data[0] = Float(c + 1); try part.push(chunk: c, from: arena.data) }
        #expect(part.stack.count == 1 && part.stack[0].buffer != nil && part.values(at: 0)[0] == 3)
    }

    /// A leaf pushed from the arena (`push(chunk:from:)`, right children
    /// added straight into their left sibling) leaves the nodes, and the
    /// bits, of leaves copied first, with fewer buffers.
    @Test func treeAccumulatorFromTheArenaHasTheCopiedLeavesBits() throws {
        let width = 37
        for chunks in 1...9 {
            let tree = ChunkTree(chunks: chunks)
            // Mantissas of every length, so that a sum in another order shows.
            let leaves = (0..<chunks).map { c in (0..<width).map { i in 1e3 * sin(Float(c * width + i) * 1.37) } }
            for lo in 0..<chunks {
                for hi in (lo + 1)...chunks {
                    let copied = TreeAccumulator(), direct = TreeAccumulator()
                    try copied.start(tree: tree, owned: lo..<hi, width: width)
                    try direct.start(tree: tree, owned: lo..<hi, width: width)
                    for c in lo..<hi {
                        let b = try copied.leafBuffer()
                        leaves[c].withUnsafeBufferPointer { b.data.update(from: $0.baseAddress!, count: width) }
                        copied.push(chunk: c, buffer: b)
                        try leaves[c].withUnsafeBufferPointer { try direct.push(chunk: c, from: $0.baseAddress!) }
                    }
                    expectEqualElements(direct.stack.map(\.node), copied.stack.map(\.node), "chunks=\(chunks) range \(lo)..<\(hi)")
                    for i in direct.stack.indices {
                        #expect((0..<width).allSatisfy { direct.values(at: i)[$0].bitPattern == copied.values(at: i)[$0].bitPattern })
                    }
                    #expect(direct.bytes <= copied.bytes)
                    // One rank's 4 chunks: two leaves held instead of three.
                    if (chunks, lo, hi) == (4, 0, 4) { #expect(copied.bytes == 3 * width * 4 && direct.bytes == 2 * width * 4) }
                }
            }
        }
    }
}

extension PipelineTests {
    /// `keepsLeaf` names exactly the chunks `push(chunk:from:)` would copy
    /// into a leaf: backward writing those straight into a `leafBuffer`
    /// (deterministic mode's step) gives the same nodes, bits and buffers,
    /// for every owned range and with the root in the arena.
    @Test func treeAccumulatorKeepsLeafNamesTheCopiedChunks() throws {
        let width = 37
        for chunks in 1...9 {
            let tree = ChunkTree(chunks: chunks)
            let leaves = (0..<chunks).map { c in (0..<width).map { i in 1e3 * sin(Float(c * width + i) * 1.37 + 0.25) } }
            for lo in 0..<chunks {
                for hi in (lo + 1)...chunks {
                    let whole = lo == 0 && hi == chunks
                    let arenas = (try Tensor(shape: Shape(width)), try Tensor(shape: Shape(width)))
                    let copying = TreeAccumulator(), writing = TreeAccumulator()
                    try copying.start(tree: tree, owned: lo..<hi, width: width, root: whole ? arenas.0.data : nil)
                    try writing.start(tree: tree, owned: lo..<hi, width: width, root: whole ? arenas.1.data : nil)
                    var kept = 0
                    for c in lo..<hi {
                        leaves[c].withUnsafeBufferPointer { arenas.0.data.update(from: $0.baseAddress!, count: width) }
                        try copying.push(chunk: c, from: arenas.0.data)
                        if writing.keepsLeaf(chunk: c) {
                            kept += 1
                            let leaf = try writing.leafBuffer()
                            leaves[c].withUnsafeBufferPointer { leaf.data.update(from: $0.baseAddress!, count: width) }
                            writing.push(chunk: c, buffer: leaf)
                        } else {
                            leaves[c].withUnsafeBufferPointer { arenas.1.data.update(from: $0.baseAddress!, count: width) }
                            try writing.push(chunk: c, from: arenas.1.data)
                        }
                    }
                    let what = "chunks=\(chunks) range \(lo)..<\(hi)"
                    expectEqualElements(writing.stack.map(\.node), copying.stack.map(\.node), "\(what)")
                    for i in writing.stack.indices {
                        expectSameBits(
                            Array(UnsafeBufferPointer(start: writing.values(at: i), count: width)),
                            Array(UnsafeBufferPointer(start: copying.values(at: i), count: width)), "\(what)")
                    }
                    #expect(writing.bytes == copying.bytes, "\(what): \(writing.bytes) bytes against \(copying.bytes)")
                    if whole { expectSameBits(arenas.1.toArray(), arenas.0.toArray(), "\(what): the root in the arena") }
                    if chunks == 1 { #expect(kept == 0, "a lone chunk is the root where backward wrote it") }
                    // One rank's 4 chunks: 0 and 2 kept, 1 and 3 added into them.
                    if (chunks, lo, hi) == (4, 0, 4) { #expect(kept == 2) }
                }
            }
        }
    }
}

struct PipelineFailureTests {
    private func trainer(pp: Int, dp: Int = 1, watchdog: Double) throws -> Trainer {
        var s = StrategyConfig()
        s.pp = pp
        s.dp = dp
        s.microBatches = 3
        s.watchdogSeconds = watchdog
        return try Trainer(model: try pipelineMLP(width: 16), loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: s)
    }

    @Test(arguments: [(2, 1), (3, 1), (2, 2)])
    func aFailingStageFailsTheStepOnEveryRank(pp: Int, dp: Int) throws {
        let t = try trainer(pp: pp, dp: dp, watchdog: 2)
        let (x, y) = try pipelineBatch(24, step: 0)
        try t.step(inputs: x, targets: y)
        let failing = pp * dp - 1
        t.faultInjection = .fail(rank: failing, step: 1)
        let start = Date()
        let e = parmlError { try t.step(inputs: x, targets: y) }
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(e?.message.contains("rank \(failing)") == true, "\(String(describing: e))")
        #expect(t.stepCount == 1)
    }

    @Test func aStalledStageTimesOut() throws {
        let t = try trainer(pp: 3, watchdog: 1)
        let (x, y) = try pipelineBatch(24, step: 0)
        expectStalledRankTimesOut(t, x: x, y: y)
    }

    @Test func moreStagesThanLayersIsRejectedBeforeStepOne() throws {
        var s = StrategyConfig()
        s.pp = 5
        let e = parmlError {
            _ = try Trainer(model: try pipelineMLP(width: 16), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        }
        #expect(e?.message.contains("pp=5") == true && e?.message.contains("4 top-level") == true, "\(String(describing: e))")
    }
}
