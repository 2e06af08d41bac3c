import ParmlModel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// Interleaved 1F1B (Megatron-LM's virtual pipeline): the schedule's
// dependencies, message order and bubble, and promise 1 for it: in
// deterministic mode every pp × v × m, with dp and ZeRO, gives serial
// training's bits.

/// Four residual blocks: 7 top-level layers, enough for pp × v runs.
private func deepMLP(width w: Int, marks: Set<Int> = []) throws -> Model {
    try residualMLP(width: w, blocks: 4, marks: marks, seed: 13)
}

private func batch(_ n: Int, step: Int) throws -> (Tensor, Tensor) { try residualMLPBatch(n, step: step, seed: 31) }

private struct Interleaved: CustomStringConvertible {
    var dp = 1
    var pp = 1
    var v = 1
    var m = 1
    var zero = 0
    var description: String { "dp=\(dp) pp=\(pp) v=\(v) m=\(m) zero=\(zero)" }

    var strategy: StrategyConfig {
        var s = StrategyConfig()
        s.dp = dp
        s.pp = pp
        s.microBatches = m
        s.zeroStage = zero
        if v > 1 {
            s.pipelineSchedule = .interleaved
            s.virtualStages = v
        }
        s.gradientChunk = 4
        s.seed = 9
        s.bucketBytes = 300 * 4
        s.watchdogSeconds = 20
        s.blasThreads = 1
        return s
    }
}

/// Parameters after `steps` steps of `layout`.
private func train(
    _ layout: Interleaved, deterministic: Bool, config: OptimizerConfig, width: Int = 16, n: Int = 37, steps: Int = 4
) throws -> [Float] {
    var s = layout.strategy
    s.deterministic = deterministic
    let model = try deepMLP(width: width)
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: config, strategy: s)
    for k in 0..<steps {
        let (x, y) = try batch(n, step: k)
        let r = try t.step(inputs: x, targets: y)
        #expect(r.loss.isFinite, "\(layout): loss \(r.loss)")
    }
    return model.parameters!.toArray()
}

/// Bitwise equality, the difference named when it fails.
private func expectBitwise(_ a: [Float], _ b: [Float], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    expectSameBits(a, b, "\(what): max |Δ| = \(maxAbsDiff(a, b))", sourceLocation: sourceLocation)
}

struct InterleavedPipelineTests {
    /// pp 2 × v 2 (m 2, 4, 8), pp 2 × v 3, pp 3 × v 2, and with AdamW the
    /// global norm's blocks cut by runs of one rank (1,492 parameters in two
    /// blocks at width 16; 22,828 in 23 at width 72).
    @Test(arguments: DPOptimizer.allCases, [16, 72])
    func deterministicInterleavingIsBitIdenticalToSerial(optimizer: DPOptimizer, width: Int) throws {
        let serial = try train(Interleaved(), deterministic: true, config: optimizer.config, width: width)
        let layouts = [
            Interleaved(pp: 2, v: 2, m: 2), Interleaved(pp: 2, v: 2, m: 4), Interleaved(pp: 2, v: 2, m: 8),
            Interleaved(pp: 2, v: 3, m: 4), Interleaved(pp: 3, v: 2, m: 3), Interleaved(pp: 3, v: 2, m: 6),
        ]
        for layout in layouts {
            let got = try train(layout, deterministic: true, config: optimizer.config, width: width)
            expectBitwise(got, serial, "\(layout) \(optimizer)")
        }
    }

    /// dp 2 × pp 2 × v 2 with ZeRO 0–3: every run's slice is sharded on its own.
    @Test(arguments: DPOptimizer.allCases)
    func deterministicHybridsAreBitIdenticalToSerial(optimizer: DPOptimizer) throws {
        let serial = try train(Interleaved(), deterministic: true, config: optimizer.config, width: 40)
        for zero in 0...3 {
            let layout = Interleaved(dp: 2, pp: 2, v: 2, m: 4, zero: zero)
            let got = try train(layout, deterministic: true, config: optimizer.config, width: 40)
            expectBitwise(got, serial, "\(layout) \(optimizer)")
        }
    }

    /// Default mode: the GEMMs and their order of serial accumulation over
    /// the same m micro-batches, so the same bits (AdamW, clipping on).
    @Test func defaultModeMatchesSerialAccumulation() throws {
        let config = DPOptimizer.adamW.config
        for m in [2, 4] {
            let serial = try train(Interleaved(m: m), deterministic: false, config: config, width: 40)
            let got = try train(Interleaved(pp: 2, v: 2, m: m), deterministic: false, config: config, width: 40)
            expectBitwise(got, serial, "pp=2 v=2 m=\(m)")
        }
    }

    /// More micro-batches than rows: empty ones are skipped on every stage alike.
    @Test func emptyMicroBatchesAreSkipped() throws {
        let config = DPOptimizer.sgdMomentum.config
        let serial = try train(Interleaved(), deterministic: true, config: config, n: 5, steps: 2)
        let got = try train(Interleaved(pp: 2, v: 2, m: 8), deterministic: true, config: config, n: 5, steps: 2)
        expectBitwise(got, serial, "pp=2 v=2 m=8, 5 rows")
    }

    @Test func ranksHoldTheirRunsAndThePlanSaysSo() throws {
        let model = try deepMLP(width: 16)
        let t = try Trainer(
            model: model, loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: Interleaved(pp: 2, v: 2, m: 4).strategy)
        #expect(t.layout.partition.layers.count == 4)
        let ranges = t.layout.stageRanges
        #expect(ranges.first?.lowerBound == 0 && ranges.last?.upperBound == model.parameterCount)
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
        #expect(t.ranks[0].ownedRanges == [ranges[0], ranges[2]] && t.ranks[1].ownedRanges == [ranges[1], ranges[3]])
        let grads = try (0..<2).map { try t.memory(rank: $0).gradients }
        #expect(grads.reduce(0, +) == model.parameterCount * 4, "the ranks' gradients add up to one arena: \(grads)")
        let plan = t.planDescription
        #expect(plan.contains("interleaved 1F1B (2 virtual stages per stage)"), "\(plan)")
        #expect(plan.contains("(p−1)/(v·m+p−1) = 0.111"), "\(plan)")
        #expect(plan.contains("virtual stage 3 (on stage 1)"), "\(plan)")
    }

    /// A rank that fails or stalls mid-ring fails the step on every rank
    /// (activations and gradients travel on two groups of one world).
    @Test func aFailingOrStalledRankFailsTheStep() throws {
        var s = Interleaved(pp: 2, v: 2, m: 4).strategy
        s.watchdogSeconds = 1
        let t = try Trainer(model: try deepMLP(width: 16), loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: s)
        let (x, y) = try batch(24, step: 0)
        try t.step(inputs: x, targets: y)
        t.faultInjection = .fail(rank: 1, step: 1)
        let e = parmlError { try t.step(inputs: x, targets: y) }
        #expect(e?.message.contains("rank 1") == true, "\(String(describing: e))")
        #expect(t.stepCount == 1)
        let stalled = try Trainer(model: try deepMLP(width: 16), loss: .crossEntropy, optimizer: DPOptimizer.sgdMomentum.config, strategy: s)
        expectStalledRankTimesOut(stalled, x: x, y: y)
    }

    @Test func badNumbersAreRefusedWithThem() throws {
        func message(_ configure: (inout StrategyConfig) -> Void) -> String {
            var s = Interleaved(pp: 2, v: 2, m: 4).strategy
            configure(&s)
            let e = parmlError { _ = try Trainer(model: try deepMLP(width: 16), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s) }
            return e.map { "\($0.kind): \($0.message)" } ?? "no error"
        }
        let cases: [(String, (inout StrategyConfig) -> Void, [String])] = [
            ("m not a multiple of pp", { $0.microBatches = 3 }, ["multiple of pp", "micro_batches=3", "pp=2"]),
            ("v = 1", { $0.virtualStages = 1 }, ["virtual_stages >= 2", "got 1"]),
            ("pp = 1", { $0.pp = 1 }, ["pp >= 2", "pp=1"]),
            ("v with 1F1B", { $0.pipelineSchedule = .oneForwardOneBackward }, ["virtual_stages=2", "interleaved"]),
            ("v too large", { $0.virtualStages = 2000 }, ["virtual_stages", "2000"]),
            ("more runs than layers", { $0.virtualStages = 4 }, ["2 × 4 = 8 runs", "7 top-level"]),
        ]
        for (what, configure, words) in cases {
            let m = message(configure)
            #expect(m.hasPrefix("invalidArgument") && words.allSatisfy { m.contains($0) }, "\(what): \(m)")
        }
    }

    /// Marked boundaries cut pp × v runs, and the math stays serial's.
    @Test func markedBoundariesCountRuns() throws {
        var s = Interleaved(pp: 2, v: 2, m: 2).strategy
        s.deterministic = true
        let e = parmlError { _ = try Trainer(model: try deepMLP(width: 16, marks: [3]), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s) }
        #expect(e?.message.contains("(2 stages) but pp × virtual_stages = 2 × 2 = 4") == true, "\(String(describing: e))")
        let model = try deepMLP(width: 16, marks: [2, 3, 5])
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: s)
        #expect(t.layout.partition.layers == [0..<2, 2..<3, 3..<5, 5..<7])
        var serial = Interleaved().strategy
        serial.deterministic = true
        let serialModel = try deepMLP(width: 16)
        let st = try Trainer(model: serialModel, loss: .crossEntropy, optimizer: DPOptimizer.adamW.config, strategy: serial)
        for k in 0..<3 {
            let (x, y) = try batch(21, step: k)
            try t.step(inputs: x, targets: y)
            try st.step(inputs: x, targets: y)
        }
        expectBitwise(model.parameters!.toArray(), serialModel.parameters!.toArray(), "marked pp=2 v=2")
    }
}

struct InterleavedScheduleTests {
    /// Runs every stage's schedule with each forward taking one unit of time
    /// and each backward one or two (its input and weight gradients), and
    /// messages arriving at once: every activation and
    /// gradient is received in the order it was sent on its queue (the
    /// receiver takes exactly the piece it expects), nothing deadlocks,
    /// forward of run c precedes forward of c + 1 and backward of c + 1
    /// precedes backward of c, each run's micro-batches go forward and
    /// backward in order within their slots, and the bubble (idle share of
    /// the pipeline phase, mean over stages) is (p−1)/(v·m+p−1).
    @Test func dependenciesMessageOrderAndBubble() {
        for p in 2...5 {
            for v in 1...4 {
                for m in stride(from: p, through: 3 * p, by: p) {
                    let kind: PipelineSchedule = v == 1 ? .oneForwardOneBackward : .interleaved
                    let scheds = (0..<p).map { StageSchedule(kind: kind, stage: $0, stages: p, microBatches: m, virtualStages: v) }
                    let formula = Double(p - 1) / Double(v * m + p - 1)
                    for backward in [1, 2] {
                        let bubble = simulate(scheds, p: p, v: v, m: m, backward: backward)
                        #expect(
                            bubble.map { abs($0 - formula) < 1e-9 } == true,
                            "p=\(p) v=\(v) m=\(m) backward \(backward): bubble \(String(describing: bubble)) vs \(formula)")
                    }
                }
            }
        }
    }

    /// The (p, v, m) = (2, 2, 8) schedule of the bench, Megatron's warm-up
    /// lengths, and what they keep alive: warm-up + 1 runs' activations on a
    /// stage, each 1/v of its layers.
    @Test func warmupFollowsMegatron() {
        for p in 2...4 {
            for v in 2...3 {
                for s in 0..<p {
                    let sched = StageSchedule(kind: .interleaved, stage: s, stages: p, microBatches: 2 * p, virtualStages: v)
                    #expect(sched.inFlight == min((p - s - 1) * 2 + (v - 1) * p + 1, 2 * p * v), "p=\(p) v=\(v) s=\(s)")
                }
            }
        }
        for (s, warmup) in [(0, 4), (1, 2)] {
            let ops = StageSchedule(kind: .interleaved, stage: s, stages: 2, microBatches: 8, virtualStages: 2).ops
            let first = ops.firstIndex { if case .backward = $0 { true } else { false } }
            #expect(first == warmup + 1, "stage \(s): \(ops.prefix(8))")
        }
        let ops = StageSchedule(kind: .interleaved, stage: 0, stages: 2, microBatches: 4, virtualStages: 2).ops
        #expect(Array(ops.prefix(6)) == [.forward(0, 0), .forward(1, 0), .forward(0, 1), .forward(1, 1), .forward(2, 0), .backward(0, 1)])
    }

    /// The bubble of a run of `scheds` (a forward takes 1, a backward
    /// `backward`), or nil when it deadlocks (with #expect failures for any
    /// broken rule).
    private func simulate(_ scheds: [StageSchedule], p: Int, v: Int, m: Int, backward: Int) -> Double? {
        let runs = p * v
        struct Message: Equatable { let run: Int, microBatch: Int, ready: Int }
        // Queues per (forward?, from, to).
        var queues: [String: [Message]] = [:]
        func key(_ fwd: Bool, _ from: Int, _ to: Int) -> String { "\(fwd) \(from) \(to)" }
        var pos = [Int](repeating: 0, count: p), clock = [Int](repeating: 0, count: p), busy = [Int](repeating: 0, count: p)
        var forwardDone = Set<[Int]>(), backwardDone = Set<[Int]>()
        var nextForward = [Int](repeating: 0, count: runs), nextBackward = [Int](repeating: 0, count: runs)
        var slotOwner: [[Int: Int]] = (0..<p).map { _ in [:] }
        var progress = true
        while progress {
            progress = false
            for s in 0..<p where pos[s] < scheds[s].ops.count {
                let op = scheds[s].ops[pos[s]]
                var start = clock[s]
                switch op {
                case .forward(let j, let k):
                    let c = k * p + s
                    if c > 0 {
                        let q = key(true, (c - 1) % p, s)
                        guard let msg = queues[q]?.first else { continue }
                        #expect(msg.run == c - 1 && msg.microBatch == j, "p=\(p) v=\(v) m=\(m) stage \(s) expects (\(c - 1), \(j)), got \(msg)")
                        queues[q]!.removeFirst()
                        start = max(start, msg.ready)
                        #expect(forwardDone.contains([c - 1, j]))
                    }
                    #expect(nextForward[c] == j, "run \(c) forwards out of order")
                    nextForward[c] += 1
                    let slot = j % scheds[s].live[k]
                    #expect(slotOwner[s][k * 1000 + slot] == nil, "p=\(p) v=\(v) m=\(m) stage \(s) run \(k): slot \(slot) busy")
                    slotOwner[s][k * 1000 + slot] = j
                    forwardDone.insert([c, j])
                    if c < runs - 1 { queues[key(true, s, (c + 1) % p), default: []].append(Message(run: c, microBatch: j, ready: start + 1)) }
                    clock[s] = start + 1
                    busy[s] += 1
                case .backward(let j, let k):
                    let c = k * p + s
                    if c < runs - 1 {
                        let q = key(false, (c + 1) % p, s)
                        guard let msg = queues[q]?.first else { continue }
                        #expect(msg.run == c + 1 && msg.microBatch == j, "p=\(p) v=\(v) m=\(m) stage \(s) expects gradient (\(c + 1), \(j)), got \(msg)")
                        queues[q]!.removeFirst()
                        start = max(start, msg.ready)
                        #expect(backwardDone.contains([c + 1, j]))
                    }
                    #expect(forwardDone.contains([c, j]))
                    #expect(nextBackward[c] == j, "run \(c) backwards out of order")
                    nextBackward[c] += 1
                    slotOwner[s][k * 1000 + j % scheds[s].live[k]] = nil
                    backwardDone.insert([c, j])
                    if c > 0 { queues[key(false, s, (c - 1) % p), default: []].append(Message(run: c, microBatch: j, ready: start + backward)) }
                    clock[s] = start + backward
                    busy[s] += backward
                }
                pos[s] += 1
                progress = true
            }
        }
        let finished = (0..<p).allSatisfy { pos[$0] == scheds[$0].ops.count }
        #expect(finished, "p=\(p) v=\(v) m=\(m) deadlocks at \(pos)")
        guard finished else { return nil }
        #expect(forwardDone.count == runs * m && backwardDone.count == runs * m)
        let phase = Double(clock.max()!)
        return (0..<p).reduce(0.0) { $0 + (phase - Double(busy[$1])) / phase } / Double(p)
    }
}
