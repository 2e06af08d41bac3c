import Foundation
import ParmlModel
import ParmlParallel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// The strategy advisor: its memory prediction against what the trainer
// reports, feasibility and budgets, refused constraints, and the
// calibration cache's recovery from bad files.

/// Rates for tests that do not look at times (memory, feasibility): made
/// up, so the tests do not depend on this machine's speed.
private func fixedCalibration() -> MachineCalibration {
    let cpu = MachineCalibration.currentCPU()
    var c = MachineCalibration(cpuModel: cpu.model, cores: cpu.cores, libraryVersion: "test")
    c.products = [.init(m: 64, n: 256, k: 256, threads: 1, flopsPerSecond: 5e10)]
    c.elementwiseBytesPerSecond = 1e10
    c.allReduce = [.init(ranks: 2, latency: 1e-5, bytesPerSecond: 5e9), .init(ranks: 4, latency: 2e-5, bytesPerSecond: 3e9)]
    c.handover = [.init(ranks: 2, latency: 1e-5, bytesPerSecond: .infinity), .init(ranks: 4, latency: 2e-5, bytesPerSecond: .infinity)]
    c.send = [.init(ranks: 2, latency: 5e-6, bytesPerSecond: 5e9)]
    c.concurrency = [(1, 5e10), (2, 1e11), (4, 1e11)]
    return c
}

/// One value per rank thread, set by each (RankPool.run) and read after.
private final class RankResults<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [T?]
    init(_ n: Int) { values = Array(repeating: nil, count: n) }
    func set(_ r: Int, _ v: T) { lock.withLock { values[r] = v } }
    func all() throws -> [T] { try lock.withLock { try values.map { try #require($0) } } }
}

/// Embedding → position → 2 × (attention block, MLP block) → LayerNorm → Linear: a small GPT.
private func gpt(vocab: Int = 32, c: Int = 32, heads: Int = 4, t: Int = 16, seed: UInt64 = 3) throws -> Model {
    let m = Model()
    try m.add(try Embedding(count: vocab, dim: c, initStd: 0.02))
    try m.add(try PositionEmbedding(positions: t, dim: c, initStd: 0.02))
    for _ in 0..<2 {
        try m.add(Residual(Sequential([try LayerNorm(features: c), try CausalSelfAttention(features: c, heads: heads)])))
        try m.add(
            Residual(
                Sequential([
                    try LayerNorm(features: c), try Linear(inFeatures: c, outFeatures: 4 * c), Activation(.gelu),
                    try Linear(inFeatures: 4 * c, outFeatures: c),
                ])))
    }
    try m.add(try LayerNorm(features: c))
    try m.add(try Linear(inFeatures: c, outFeatures: vocab, bias: false))
    try m.initialize(seed: seed)
    return m
}

/// Passes its input on and trains one parameter, at no cost the model
/// counts: in front of a model's first linear it makes that linear compute
/// an input gradient like any other (no layer up to the first that trains
/// parameters computes one).
private final class TrainedPassThrough: Layer, WorkDescribingLayer {
    var kind: String { "trained_pass_through" }
    var parameterSpecs: [ParameterSpec] { [ParameterSpec(name: "w", shape: Shape(1), initializer: .constant(0), decays: false)] }
    func outputShape(for input: Shape) throws -> Shape { input }
    func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor { x }
    func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        needInputGradient ? dy : nil
    }
    func replicate() throws -> Layer { TrainedPassThrough() }
    func forwardWork(input: Shape) throws -> LayerWork { LayerWork() }
}

/// conv(1→8, 3×3) → relu → max_pool(2) → flatten → linear(8·4·4→10).
private func cnn(batchNorm: Bool, seed: UInt64 = 9) throws -> Model {
    let m = Model()
    try m.add(try Conv2d(inChannels: 1, outChannels: 8, kernel: (3, 3), padding: (1, 1)))
    if batchNorm { try m.add(try BatchNorm(channels: 8)) }
    try m.add(Activation(.relu))
    try m.add(try MaxPool2d(kernel: (2, 2)))
    try m.add(Flatten())
    try m.add(try Linear(inFeatures: 8 * 4 * 4, outFeatures: 16))
    try m.add(Activation(.relu))
    try m.add(try Linear(inFeatures: 16, outFeatures: 10))
    try m.initialize(seed: seed)
    return m
}

private struct Case: CustomStringConvertible, Sendable {
    let name: String
    let make: @Sendable () throws -> Model
    let sample: Shape
    let inputs: @Sendable (Int) throws -> (Tensor, Tensor)
    var description: String { name }
}

private let cases: [Case] = [
    Case(name: "mlp", make: { try residualMLP(width: 64, blocks: 2, seed: 4) }, sample: Shape(12)) { n in
        (try Tensor(randomArray(n * 12, seed: 1, stream: 0), shape: Shape(n, 12)), try Tensor((0..<n).map { Float($0 % 4) }, shape: Shape(n)))
    },
    Case(name: "gpt", make: { try gpt() }, sample: Shape(16)) { n in
        let ids = (0..<(n * 16)).map { Float(($0 * 7) % 32) }
        return (try Tensor(ids, shape: Shape(n, 16)), try Tensor(ids.map { Float((Int($0) + 1) % 32) }, shape: Shape(n, 16)))
    },
    Case(name: "cnn", make: { try cnn(batchNorm: false) }, sample: Shape(1, 8, 8)) { n in
        (try Tensor(randomArray(n * 64, seed: 2, stream: 0), shape: Shape(n, 1, 8, 8)), try Tensor((0..<n).map { Float($0 % 10) }, shape: Shape(n)))
    },
    Case(name: "cnn+bn", make: { try cnn(batchNorm: true) }, sample: Shape(1, 8, 8)) { n in
        (try Tensor(randomArray(n * 64, seed: 2, stream: 0), shape: Shape(n, 1, 8, 8)), try Tensor((0..<n).map { Float($0 % 10) }, shape: Shape(n)))
    },
]

private func layouts() -> [StrategyConfig] {
    var out: [StrategyConfig] = []
    for (dp, pp, tp, m, zero, det) in [
        (1, 1, 1, 1, 0, false), (2, 1, 1, 1, 0, false), (2, 1, 1, 1, 1, false), (2, 1, 1, 1, 3, false), (1, 2, 1, 4, 0, false),
        (1, 1, 2, 1, 0, false), (2, 2, 1, 2, 1, false), (1, 1, 1, 1, 0, true), (2, 1, 1, 1, 0, true), (1, 2, 1, 2, 0, true),
    ] {
        var s = StrategyConfig()
        (s.dp, s.pp, s.tp, s.microBatches, s.zeroStage, s.deterministic) = (dp, pp, tp, m, zero, det)
        s.gradientChunk = 8
        out.append(s)
    }
    var interleaved = StrategyConfig()
    (interleaved.pp, interleaved.microBatches, interleaved.pipelineSchedule, interleaved.virtualStages) = (2, 4, .interleaved, 2)
    out.append(interleaved)
    return out
}

@Suite struct AdvisorTests {
    /// Promise of the cost model: the peak bytes it predicts for a layout
    /// are within 10 % of what `Trainer.memory` reports after a step, on
    /// the fullest rank, for MLP, GPT and CNN layers (tp only where the
    /// model splits; a batch_norm model runs GPipe's order).
    @Test(arguments: cases)
    fileprivate func predictedMemoryMatchesTheTrainer(_ c: Case) throws {
        let batch = 32
        var optimizer = OptimizerConfig()
        optimizer.kind = .adamW
        for st in layouts() {
            let model = try c.make()
            var request = AdviceRequest(sampleShape: c.sample, batch: batch)
            request.optimizer = optimizer
            let predicted: LayoutPrediction
            do {
                predicted = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: fixedCalibration())
            } catch let e as ParmlError {
                // Layouts the trainer refuses too (tp through a batch_norm): the same error both ways.
                let refused = parmlError { _ = try Trainer(model: try c.make(), loss: .crossEntropy, optimizer: optimizer, strategy: st) }
                #expect(refused != nil, "\(c) \(st.dp)x\(st.pp)x\(st.tp): advisor refused (\(e)) but the trainer builds it")
                continue
            }
            let trainer = try Trainer(model: model, loss: .crossEntropy, optimizer: optimizer, strategy: st)
            let (x, y) = try c.inputs(batch)
            try trainer.step(inputs: x, targets: y)
            var worst = 0, worstRank = 0
            for r in 0..<st.worldSize {
                let m = try trainer.memory(rank: r)
                let total = m.parameters + m.gradients + m.optimizer + m.scratch + m.activations
                if total > worst { (worst, worstRank) = (total, r) }
            }
            let error = abs(Double(predicted.peakBytes - worst)) / Double(worst)
            let m = try trainer.memory(rank: worstRank)
            #expect(
                error <= 0.10,
                "\(c) dp\(st.dp) pp\(st.pp) tp\(st.tp) m\(st.microBatches) zero\(st.zeroStage) det=\(st.deterministic): predicted \(predicted.memory), trainer rank \(worstRank) \(m)"
            )
            #expect(predicted.memory.parameters == m.parameters && predicted.memory.optimizer == m.optimizer,
                "\(c) \(st.dp)x\(st.pp)x\(st.tp) zero\(st.zeroStage): \(predicted.memory) vs \(m)")
        }
    }

    /// Interleaved 1F1B keeps more slots than micro-batches in flight per
    /// run, so with an uneven split (6 rows in 4 micro-batches: 2, 2, 1, 1)
    /// some slots only ever hold the short micro-batches and their buffers
    /// stay small: the prediction sizes each slot by the largest piece it
    /// holds, and is held to 1 % of the trainer's report (it charged every
    /// slot the largest piece before, 16 % over for bench/advisor.py's GPT).
    @Test func interleavedSlotsAreSizedByTheirPieces() throws {
        for (dp, batch, m) in [(1, 6, 4), (2, 12, 4), (1, 10, 8), (2, 8, 2)] {
            var st = StrategyConfig()
            (st.dp, st.pp, st.microBatches, st.pipelineSchedule, st.virtualStages) = (dp, 2, m, .interleaved, 2)
            var request = AdviceRequest(sampleShape: Shape(16), batch: batch)
            request.optimizer.kind = .adamW
            let predicted = try StrategyAdvisor.predict(model: try gpt(), strategy: st, request: request, calibration: fixedCalibration())
            let trainer = try Trainer(model: try gpt(), loss: .crossEntropy, optimizer: request.optimizer, strategy: st)
            let ids = (0..<(batch * 16)).map { Float(($0 * 7) % 32) }
            try trainer.step(
                inputs: try Tensor(ids, shape: Shape(batch, 16)), targets: try Tensor(ids.map { Float((Int($0) + 1) % 32) }, shape: Shape(batch, 16)))
            var worst = 0
            for r in 0..<st.worldSize {
                let x = try trainer.memory(rank: r)
                worst = max(worst, x.parameters + x.gradients + x.optimizer + x.scratch + x.activations)
            }
            let error = abs(Double(predicted.peakBytes - worst)) / Double(worst)
            #expect(error <= 0.01, "dp\(dp) batch \(batch) m\(m) v2: predicted \(predicted.peakBytes) (\(predicted.memory)), trainer \(worst)")
        }
    }

    /// Every ranked layout fits the budget; the excluded ones that were cut
    /// for memory say how much they need; plain data parallelism is excluded
    /// when the budget is below one replica's parameters, gradients and state.
    @Test func budgetsAreHonoured() throws {
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        var request = AdviceRequest(sampleShape: Shape(12), batch: 64)
        request.optimizer.kind = .adamW
        let all = try StrategyAdvisor.advise(model: model, request: request, calibration: fixedCalibration(), origin: .measured)
        let serial = try #require(all.ranked.first { $0.strategy.worldSize == 1 })
        request.memoryBudget = serial.peakBytes * 3 / 4
        let advice = try StrategyAdvisor.advise(model: model, request: request, calibration: fixedCalibration(), origin: .measured)
        #expect(!advice.ranked.isEmpty)
        for p in advice.ranked { #expect(p.peakBytes <= request.memoryBudget) }
        let plainDP = advice.excluded.filter { $0.strategy.pp == 1 && $0.strategy.tp == 1 && $0.strategy.zeroStage == 0 }
        #expect(!plainDP.isEmpty)
        for e in plainDP { #expect(e.why.contains("budget"), "\(e.why)") }
        #expect(advice.ranked.allSatisfy { $0.strategy.worldSize > 1 })
        // Ranked fastest first, every layout accounted for once.
        #expect(zip(advice.ranked, advice.ranked.dropFirst()).allSatisfy { $0.stepSeconds <= $1.stepSeconds })
        #expect(advice.ranked.count + advice.excluded.count == all.ranked.count + all.excluded.count)
    }

    /// Advice reads the model and leaves it as it was: the probe's copy
    /// reads the model's parameter arena (batch_norm's running statistics
    /// in it included) and writes gradients of its own. And every ranked
    /// layout gets the time it gets predicted alone: an advice reuses the
    /// compute of stages it has timed already, keyed by everything the
    /// time depends on (rates by working set, so the held activations count).
    @Test func adviceLeavesTheModelAsItWasAndMatchesLonePredictions() throws {
        var calibration = fixedCalibration()
        calibration.products += [
            .init(m: 4, n: 256, k: 256, threads: 1, flopsPerSecond: 1e10), .init(m: 256, n: 256, k: 256, threads: 1, flopsPerSecond: 8e10),
        ]
        calibration.elementwiseBySize = [(2e5, 1e11), (3e6, 9e10), (1e8, 2e10)]
        calibration.elementwiseAllCoresBySize = [(2e5, 2e11), (3e6, 1.8e11), (1e8, 3e10)]
        calibration.elementwiseAllCoresBytesPerSecond = 3e10
        func bits(_ t: Tensor?) -> [UInt32] {
            guard let t else { return [] }
            return (0..<t.count).map { t.data[$0].bitPattern }
        }
        for c in cases {
            let model = try c.make()
            let (parameters, gradients) = (bits(model.parameters), bits(model.gradients))
            var request = AdviceRequest(sampleShape: c.sample, batch: 16)
            request.optimizer.kind = .adamW
            request.cores = 2
            let advice = try StrategyAdvisor.advise(model: model, request: request, calibration: calibration, origin: .measured)
            expectEqualElements(bits(model.parameters), parameters, "\(c): the advice changed the parameters")
            expectEqualElements(bits(model.gradients), gradients, "\(c): the advice changed the gradients")
            #expect(advice.ranked.count > 10, "\(c)")
            for p in advice.ranked {
                let alone = try StrategyAdvisor.predict(model: model, strategy: p.strategy, request: request, calibration: calibration)
                #expect(alone.stepSeconds == p.stepSeconds && alone.compute == p.compute, "\(c) \(p.strategy): \(alone.stepSeconds) alone, \(p.stepSeconds) in the advice; memory \(alone.memory) alone, \(p.memory) in the advice")
            }
        }
    }

    /// Layouts the trainer cannot build are excluded with its reason, and
    /// the first choice builds and steps.
    @Test func infeasibleLayoutsAreExcludedWithTheirReason() throws {
        // 3 classes: tp 2 and 4 cannot split the last Linear... but it is replicated; 12 → 10 hidden: tp 4 does not divide 10.
        let model = Model()
        try model.add(try Linear(inFeatures: 12, outFeatures: 10))
        try model.add(Activation(.relu))
        try model.add(try Linear(inFeatures: 10, outFeatures: 3))
        try model.initialize(seed: 1)
        var request = AdviceRequest(sampleShape: Shape(12), batch: 6)
        request.maxRanks = 4
        let advice = try StrategyAdvisor.advise(model: model, request: request, calibration: fixedCalibration(), origin: .measured)
        let tp4 = advice.excluded.filter { $0.strategy.tp == 4 }
        #expect(!tp4.isEmpty)
        #expect(tp4.allSatisfy { !$0.why.isEmpty })
        // pp 4 with 3 top-level layers, and 4 × micro-batches over 6 rows.
        #expect(advice.excluded.contains { $0.strategy.pp == 4 && $0.why.contains("top-level layer") })
        #expect(advice.excluded.contains { $0.why.contains("fewer than one row") })
        #expect(!advice.ranked.contains { $0.strategy.tp == 4 || $0.strategy.pp == 4 })
        let first = try #require(advice.ranked.first)
        let t = try Trainer(model: model, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: first.strategy)
        let x = try Tensor(randomArray(72, seed: 3, stream: 0), shape: Shape(6, 12))
        try t.step(inputs: x, targets: try Tensor([0, 1, 2, 0, 1, 2], shape: Shape(6)))
    }

    /// A tp degree that splits no layer leaves every parameter whole on
    /// every tp rank, each repeating the model's work: excluded, with the
    /// reason, and no probe of another whole copy of the model per degree.
    @Test func tensorParallelThatSplitsNothingIsExcluded() throws {
        let lone = Model()
        try lone.add(try Linear(inFeatures: 12, outFeatures: 6))
        try lone.initialize(seed: 1)
        var request = AdviceRequest(sampleShape: Shape(12), batch: 24)
        request.maxRanks = 6
        let advice = try StrategyAdvisor.advise(model: lone, request: request, calibration: fixedCalibration(), origin: .measured)
        #expect(!advice.ranked.isEmpty && advice.ranked.allSatisfy { $0.strategy.tp == 1 })
        let refused = advice.excluded.filter { $0.strategy.tp > 1 && $0.strategy.pp == 1 }
        #expect(!refused.isEmpty && refused.allSatisfy { $0.why.contains("splits no layer") }, "\(refused.map(\.why))")
    }

    @Test func badConstraintsAreRefused() throws {
        let model = try residualMLP(width: 16, seed: 4)
        let c = fixedCalibration()
        func refusal(_ edit: (inout AdviceRequest) -> Void) -> String {
            var r = AdviceRequest(sampleShape: Shape(12), batch: 8)
            edit(&r)
            return parmlError { _ = try StrategyAdvisor.advise(model: model, request: r, calibration: c, origin: .measured) }?.message ?? "accepted"
        }
        #expect(refusal { $0.batch = 0 }.contains("batch must be"))
        #expect(refusal { $0.memoryBudget = -1 }.contains("memory_budget"))
        #expect(refusal { $0.maxRanks = -2 }.contains("max_ranks"))
        #expect(refusal { $0.cores = -1 }.contains("cores"))
        #expect(refusal { $0.backend = .mpi }.contains("inside the MPI job"))
        #expect(refusal { ($0.backend, $0.processes, $0.maxRanks) = (.mpi, 2, 4) }.contains("the MPI job has 2 process(es)"))
        // In a job whose collectives the calibration does not hold.
        #expect(refusal { ($0.backend, $0.processes) = (.mpi, 2) }.contains("no collectives of a job of 2"))
        #expect(refusal { $0.sampleShape = Shape(5) }.contains("does not take samples"))
        #expect(refusal { $0.machine = MachineDescription(nodes: 0, ranksPerNode: 1, coresPerNode: 1, interNodeBandwidth: 1e9, interNodeLatency: 0) }
            .contains("nodes"))
        #expect(refusal { $0.machine = MachineDescription(nodes: 2, ranksPerNode: 1, coresPerNode: 1, interNodeBandwidth: -1, interNodeLatency: 0) }
            .contains("bandwidth"))
        let unbuilt = Model()
        try unbuilt.add(try Linear(inFeatures: 12, outFeatures: 2))
        let e = parmlError { _ = try StrategyAdvisor.advise(model: unbuilt, request: AdviceRequest(sampleShape: Shape(12), batch: 8), calibration: c, origin: .measured) }
        #expect(e?.message.contains("not initialised") == true)
    }

    /// Other machines: a group spanning nodes pays the given link, so a
    /// slower link makes data parallelism across 8 nodes slower.
    @Test func describedMachinesUseTheirLinks() throws {
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        var request = AdviceRequest(sampleShape: Shape(12), batch: 256)
        var st = StrategyConfig()
        st.dp = 8
        func step(bandwidth: Double) throws -> LayoutPrediction {
            request.machine = MachineDescription(nodes: 8, ranksPerNode: 1, coresPerNode: 4, interNodeBandwidth: bandwidth, interNodeLatency: 1e-5)
            return try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: fixedCalibration())
        }
        let fast = try step(bandwidth: 1e10), slow = try step(bandwidth: 1e8)
        #expect(slow.communication > fast.communication * 10)
        // A ring over 8 nodes: 2·7 latencies plus 2·7/8 of the gradient bytes at the link's rate.
        let bytes = Double(model.parameterCount * 4)
        let buckets = (bytes / Double(st.bucketBytes)).rounded(.up)
        let dpTerm = try #require(slow.communications.first { $0.group == "dp(8)" })
        #expect(abs(dpTerm.seconds - buckets * (14 * 1e-5 + 14.0 / 8 * bytes / buckets / 1e8)) < 1e-9)
    }

    /// MPI processes of a job on this machine: only layouts of all its
    /// processes, their collectives at the rates measured in such a job,
    /// and no rank threads to hand the step over to.
    @Test func processesPayTheirJobsCollectives() throws {
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        var c = fixedCalibration()
        c.processRates[2] = ProcessRates(
            allReduce: [.init(ranks: 2, latency: 3e-4, bytesPerSecond: 1e8)], broadcast: [.init(ranks: 2, latency: 1e-4, bytesPerSecond: 1e8)],
            allGather: [.init(ranks: 2, latency: 5e-5, bytesPerSecond: 2e8)], send: .init(ranks: 2, latency: 2e-4, bytesPerSecond: 1e8))
        c.pageFaultSeconds = 1e-6
        var request = AdviceRequest(sampleShape: Shape(12), batch: 64)
        request.cores = 2
        var st = StrategyConfig()
        st.dp = 2
        let threads = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
        (request.backend, request.processes, st.backend) = (.mpi, 2, .mpi)
        let processes = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
        let bytes = Double(model.parameterCount * 4)
        let buckets = (bytes / Double(st.bucketBytes)).rounded(.up)
        let dp = try #require(processes.communications.first { $0.group == "dp(2)" })
        #expect(abs(dp.seconds - buckets * (3e-4 + bytes / buckets / 1e8)) < 1e-9, "\(dp.seconds)")
        let stats = try #require(processes.communications.first { $0.group == "world(2)" })
        #expect(abs(stats.seconds - (3e-4 + 8 / 1e8)) < 1e-12)
        // Threads pay the rank threads' hand-over; processes pay none.
        #expect(abs(processes.overhead - stats.seconds) < 1e-12)
        #expect(threads.overhead > threads.communications.first { $0.group == "world(2)" }!.seconds)
        #expect(!processes.communications.contains { $0.group.hasPrefix("replica") })
        // ZeRO-1's parameters come back at the job's all-gather; ZeRO-3's
        // per layer (2 blocks forward, 1 backward: the last stays), each
        // faulting in the half of its pages outside the shard.
        st.zeroStage = 1
        let zeroOne = try #require(try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
            .communications.first { $0.group == "dp(2)" })
        #expect(abs(zeroOne.seconds - buckets * (0.5 * (3e-4 + bytes / buckets / 1e8) + 5e-5 + bytes / buckets / 2e8)) < 1e-9)
        st.zeroStage = 3
        let zeroThree = try #require(try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
            .communications.first { $0.group == "dp(2)" })
        let blocks = model.root.layers.indices.map { Double(model.parameterRange(ofTopLevelLayers: $0..<($0 + 1)).count) * 4 }.filter { $0 > 0 }
        let gather = { (b: Double) in 5e-5 + b / 2e8 + (b / 2 / 4096).rounded(.up) * 1e-6 }
        let expected = buckets * 0.5 * (3e-4 + bytes / buckets / 1e8) + 2 * blocks.map(gather).reduce(0, +) - gather(blocks.last!)
        #expect(abs(zeroThree.seconds - expected) < 1e-9, "\(zeroThree.seconds) against \(expected)")
        st.zeroStage = 0
        // A pipeline's hops at the job's send; after the update each
        // process's host model is assembled by a broadcast of each stage's parameters.
        (st.dp, st.pp, st.microBatches) = (1, 2, 2)
        let pipeline = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
        let hops = try #require(pipeline.communications.first { $0.group == "pp(2)" })
        #expect(hops.seconds >= 2e-4)
        let assembly = try #require(pipeline.communications.first { $0.group == "replica(2)" })
        #expect(assembly.count == 2)
        #expect(abs(assembly.seconds - (2 * 1e-4 + bytes / 1e8)) < 1e-9, "\(assembly.seconds)")
        st.backend = .threads
        request.backend = .threads
        let threadsPipeline = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
        #expect(!threadsPipeline.communications.contains { $0.group.hasPrefix("replica") })
        (request.backend, st.backend) = (.mpi, .mpi)
        // Advice ranks only layouts of the job's 2 processes, all on MPI.
        let advice = try StrategyAdvisor.advise(model: model, request: request, calibration: c, origin: .cached)
        #expect(!advice.ranked.isEmpty)
        #expect(advice.ranked.allSatisfy { $0.strategy.worldSize == 2 && $0.strategy.backend == .mpi })
    }

    /// A job's processes (here rank threads standing in for them) get one
    /// calibration: rank 0's file, with the collectives the job measured
    /// together the first time, stored for the next advice.
    @Test func aJobSharesOneCalibrationAndMeasuresItsCollectivesOnce() throws {
        let dir = NSTemporaryDirectory() + "parml-advisor-job-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var stored = fixedCalibration()
        stored.libraryVersion = "9.9.9"
        stored.products += [
            .init(m: 4, n: 1024, k: 16, threads: 1, flopsPerSecond: 2e10), .init(m: 64, n: 1024, k: 64, threads: 1, flopsPerSecond: 4e10),
            .init(m: 64, n: 256, k: 256, threads: 1, flopsPerSecond: 7e10, form: .nt),
            .init(m: 64, n: 256, k: 256, threads: 1, flopsPerSecond: 3e10, form: .tn),
        ]
        stored.concurrentPageFaults = [(2, 1e-6), (4, 2e-6)]
        stored.pageFaultSeconds = 5e-7
        stored.elementwiseBySize = [(1e5, 3e10), (1e8, 1e10)]
        stored.elementwiseAllCoresBySize = [(1e5, 5e10), (1e8, 1.5e10)]
        stored.elementwiseAllCoresBytesPerSecond = 1.5e10
        stored.loadAverage = 0.1
        stored.arithmetic = [.gelu: 3e-9, .tanh: 2e-9, .sigmoid: 1.5e-9, .layerNorm: 1.9e-9]
        let path = dir + "/" + CalibrationCache.fileName
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try CalibrationCache.format(stored).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(CalibrationCache.parse(CalibrationCache.format(stored)) == stored)
        for size in [2, 4] {
            let world = try ThreadsWorld(size: size, timeout: 30, name: "job")
            let pool = try RankPool(size: size)
            let results = RankResults<(MachineCalibration, CalibrationCache.Origin)>(size)
            func run() throws -> [(MachineCalibration, CalibrationCache.Origin)] {
                try pool.run(world: world) { r in
                    results.set(r, try CalibrationCache.loadShared(directory: dir, libraryVersion: "9.9.9", world: world.communicator(rank: r)))
                }
                return try results.all()
            }
            let first = try run()
            #expect(first.allSatisfy { $0.1 == .measured && $0.0 == first[0].0 })
            let c = first[0].0
            #expect(c.hasProcessRates(job: size) && !c.hasProcessRates(job: 3))
            let job = try #require(c.processRates[size])
            #expect(job.allReduce.map(\.ranks) == (size == 2 ? [2] : [2, 4]))
            expectEqualElements(job.broadcast.map(\.ranks), job.allReduce.map(\.ranks))
            #expect(job.allReduce.allSatisfy { $0.bytesPerSecond > 0 && $0.latency >= 0 } && job.send!.bytesPerSecond > 0)
            #expect(job.broadcast.allSatisfy { $0.bytesPerSecond > 0 && $0.latency >= 0 })
            // Past 4 MiB a second slope, measured at 32 MiB.
            #expect(job.allReduce.allSatisfy { $0.largeBytesPerSecond > 0 && $0.largeBytesPerSecond.isFinite })
            // The in-process figures are the file's, untouched.
            #expect(c.products == stored.products && c.allReduce == stored.allReduce)
            // Stored: the next advice measures nothing and gets the same figures.
            let onDisk = try #require(CalibrationCache.parse(try String(contentsOfFile: path, encoding: .utf8)))
            #expect(onDisk == c)
            let second = try run()
            #expect(second.allSatisfy { $0.1 == .cached && $0.0 == c })
        }
        // The file keeps each job's figures (the 2-process job's beside the 4's).
        let both = try #require(CalibrationCache.parse(try String(contentsOfFile: path, encoding: .utf8)))
        #expect(both.hasProcessRates(job: 2) && both.hasProcessRates(job: 4))
        // A figure of a job size its groups do not divide is corrupt.
        let text = CalibrationCache.format(both)
        #expect(CalibrationCache.parse(text + "process_allreduce 4 3 1e-05 1e9 1e9\n") == nil)
        #expect(CalibrationCache.parse(text + "process_allreduce 4 2 1e-05 1e9 1e9\n") != nil)
    }

    /// ZeRO-2's buckets hand the gradient pages outside a rank's shard back
    /// each step: the model charges their page faults (the calibrated cost
    /// per page), which ZeRO-1 does not pay.
    @Test func releasedGradientPagesAreCharged() throws {
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        var calibration = fixedCalibration()
        calibration.pageFaultSeconds = 2e-6
        let request = AdviceRequest(sampleShape: Shape(12), batch: 64)
        func predict(zero: Int) throws -> LayoutPrediction {
            var st = StrategyConfig()
            st.dp = 2
            st.zeroStage = zero
            st.bucketBytes = 64 << 10
            return try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: calibration)
        }
        let one = try predict(zero: 1), two = try predict(zero: 2)
        #expect(one.releasedGradientBytes == 0)
        // Every page outside data rank 0's half of the gradients.
        let outside = Double(model.parameterCount) * 2
        #expect(abs(two.releasedGradientBytes - outside) <= 0.01 * outside)
        #expect(two.overhead - one.overhead >= (two.releasedGradientBytes / 4096).rounded(.down) * 2e-6 * 0.999)
        #expect(two.reason.contains("page faults"))
        // Both ranks fault at once in one process: the calibrated cost of 2
        // threads faulting together, not the one-thread figure.
        calibration.concurrentPageFaults = [(2, 7e-6), (4, 1.6e-5)]
        let together = try predict(zero: 2), pages = (together.releasedGradientBytes / 4096).rounded(.up)
        #expect(abs((together.overhead - one.overhead) - (two.overhead - one.overhead) - pages * 5e-6) <= 1e-9)
        #expect(abs(calibration.pageFaultSeconds(concurrent: 3) - 1.15e-5) < 1e-15 && calibration.pageFaultSeconds(concurrent: 8) == 1.6e-5)
    }

    /// ZeRO-2 whose buckets hand pages back reduce-scatters every
    /// micro-batch's buckets into the shard: m reduce-scatters (half an
    /// all-reduce each) and one all-gather a step, where ZeRO-1 sends the same
    /// whatever m.
    @Test func microBatchesReduceScatterIntoTheShardEachTime() throws {
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        let calibration = fixedCalibration()
        let request = AdviceRequest(sampleShape: Shape(12), batch: 64)
        func dpTerm(zero: Int, m: Int) throws -> CommunicationTerm {
            var st = StrategyConfig()
            (st.dp, st.zeroStage, st.microBatches, st.bucketBytes) = (2, zero, m, 64 << 10)
            let p = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: calibration)
            return try #require(p.communications.first { $0.group == "dp(2)" })
        }
        let one = try dpTerm(zero: 2, m: 1), four = try dpTerm(zero: 2, m: 4)
        #expect(four.count == 4 * one.count)
        #expect(abs(four.seconds - one.seconds * 5 / 2) <= 1e-9 * one.seconds, "\(four.seconds) vs \(one.seconds)")
        #expect(four.what.contains("each of the 4 micro-batches") && !one.what.contains("micro-batches"))
        let zeroOne = try dpTerm(zero: 1, m: 1), zeroOneFour = try dpTerm(zero: 1, m: 4)
        #expect(zeroOneFour.count == zeroOne.count && abs(zeroOneFour.seconds - zeroOne.seconds) <= 1e-9 * zeroOne.seconds)
        #expect(abs(zeroOne.seconds - one.seconds) <= 1e-9 * one.seconds)
    }

    /// The threads backend's reduce-scatter and all-gather each cost what
    /// its whole all-reduce does (each rank reads its peers' slices), where
    /// a ring's halves cost half: ZeRO-1 at dp 2 on this machine is charged
    /// two all-reduces, ZeRO-3 (no gather) one.
    @Test func threadsBackendHalvesCostAWholeAllReduce() throws {
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        var request = AdviceRequest(sampleShape: Shape(12), batch: 64)
        request.cores = 2
        func dpSeconds(zero: Int) throws -> Double {
            var st = StrategyConfig()
            (st.dp, st.zeroStage) = (2, zero)
            let p = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: fixedCalibration())
            return try #require(p.communications.first { $0.group == "dp(2)" }).seconds
        }
        let allReduce = try dpSeconds(zero: 0), zeroOne = try dpSeconds(zero: 1), zeroThree = try dpSeconds(zero: 3)
        #expect(allReduce > 0)
        #expect(abs(zeroOne / allReduce - 2) < 1e-9, "\(zeroOne) against \(allReduce)")
        #expect(abs(zeroThree / allReduce - 1) < 1e-9, "\(zeroThree) against \(allReduce)")
    }

    /// Ranks past the cores: a group between two measured sizes is costed
    /// between them (3 ranks on 2 cores lie between 2 threads with a core
    /// each and 4 sharing 2 cores), and data parallelism over more ranks
    /// than cores is never predicted faster than over as many as the cores.
    @Test func moreRanksThanCoresAreNotFree() throws {
        let c = fixedCalibration()
        let three = try #require(MachineCalibration.interpolated(c.allReduce, ranks: 3))
        #expect(abs(three.latency - 1.5e-5) < 1e-15 && abs(1 / three.bytesPerSecond - (0.5 / 5e9 + 0.5 / 3e9)) < 1e-20)
        #expect(MachineCalibration.interpolated(c.allReduce, ranks: 8) == nil)
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        var request = AdviceRequest(sampleShape: Shape(12), batch: 96)
        request.cores = 2
        func predict(dp: Int) throws -> LayoutPrediction {
            var st = StrategyConfig()
            st.dp = dp
            return try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
        }
        let two = try predict(dp: 2), threeRanks = try predict(dp: 3), four = try predict(dp: 4)
        for more in [threeRanks, four] {
            #expect(more.compute >= 0.99 * two.compute, "\(more.compute) vs \(two.compute)")
            #expect(more.stepSeconds > two.stepSeconds)
        }
        #expect(threeRanks.overhead > two.overhead && threeRanks.overhead < four.overhead)
    }

    /// A pipeline's stages share the cores only where its schedule runs them
    /// at once (PipelineReplay.makespan with the cores shared). Two equal stages of t a
    /// micro-batch (forward t/3, backward 2t/3), 2 micro-batches, 1F1B, on
    /// a machine where 2 threads at once are each 2× slower (a loaded one),
    /// worked by hand: stage 0's first forward runs alone, its second
    /// beside stage 1's first (both stretched), stage 1's first backward
    /// alone, and so on: 4t in all, each stage busy 3t, against 3t and 2t
    /// where 2 threads run as fast as 1. The formula before charged both
    /// stages' whole critical path at the average busy count.
    @Test func pipelineStagesShareTheCoresAsTheirScheduleOverlaps() throws {
        let model = Model()
        try model.add(TrainedPassThrough())  // the first Linear then computes an input gradient like the second
        try model.add(try Linear(inFeatures: 64, outFeatures: 64))
        try model.markStageBoundary()
        try model.add(try Linear(inFeatures: 64, outFeatures: 64))
        try model.initialize(seed: 2)
        var request = AdviceRequest(sampleShape: Shape(64), batch: 64)
        request.cores = 2
        var st = StrategyConfig()
        (st.pp, st.microBatches) = (2, 2)
        var gain = fixedCalibration(), none = fixedCalibration()
        gain.concurrency = [(1, 5e10), (2, 1e11), (4, 1e11)]
        none.concurrency = [(1, 5e10), (2, 5e10), (4, 5e10)]
        let fast = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: gain)
        let slow = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: none)
        let t = fast.compute / 2
        #expect(t > 0)
        #expect(abs(fast.bubble - t) <= 1e-9 * t, "uncontended: bubble \(fast.bubble), t \(t)")
        #expect(abs(slow.compute - 3 * t) <= 1e-9 * t, "contended: busiest stage \(slow.compute), 3t = \(3 * t)")
        #expect(abs(slow.compute + slow.bubble - 4 * t) <= 1e-9 * t, "contended: \(slow.compute + slow.bubble), 4t = \(4 * t)")
    }

    /// Four equal stages on 2 cores, where 4 threads at once are each 2×
    /// slower: the step takes longer than on 4 cores and less than twice
    /// that, nearer twice where the stages run at once longer (16
    /// micro-batches against 4); on 4 cores it is within 1 % of the
    /// textbook (m + 3)·t of the slowest stage's t. An unbalanced cut, the first stage holding
    /// the widest layer, leaves no bubble at all: the short stages' fill
    /// and drain run while the first stage computes (the formula before
    /// charged their micro-batch times).
    @Test func pipelineStagesShareTheCoresByTheirWork() throws {
        let model = Model()
        try model.add(TrainedPassThrough())
        for i in 0..<4 {
            if i > 0 { try model.markStageBoundary() }
            try model.add(try Linear(inFeatures: 64, outFeatures: 64))
        }
        try model.initialize(seed: 2)
        var request = AdviceRequest(sampleShape: Shape(64), batch: 64)
        request.cores = 2
        var linear = fixedCalibration()
        linear.concurrency = [(1, 5e10), (2, 1e11), (4, 2e11)]
        linear.cores = 4  // 4 threads at 4x one: a machine of 4 cores (past its cores a calibration's rate is capped)
        var fourCores = request
        fourCores.cores = 4
        var ratios: [Double] = []
        for m in [4, 16] {
            var st = StrategyConfig()
            (st.pp, st.microBatches) = (4, m)
            let free = try StrategyAdvisor.predict(model: model, strategy: st, request: fourCores, calibration: linear)
            let t = free.compute / Double(m)  // the slowest stage's micro-batch, uncontended
            let alone = free.compute + free.bubble
            #expect(alone <= 1.01 * t * Double(m + 3), "m\(m) uncontended: \(alone), (m + 3)·t = \(t * Double(m + 3))")
            let p = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: fixedCalibration())
            let shared = p.compute + p.bubble
            #expect(shared > alone && shared < 2 * alone, "m\(m): \(shared) on 2 cores, \(alone) on 4")
            ratios.append(shared / alone)
        }
        // 16 micro-batches keep all four stages busy most of the step; 4 spend more of it filling and draining.
        // (Measured here: 1.125 and 1.65; the stages behind the first are a
        // little lighter, so the shared work is under 2 × 16 of the slowest.)
        #expect(ratios[1] > 1.5 && ratios[0] < ratios[1], "\(ratios)")
        let wide = Model()
        try wide.add(try Linear(inFeatures: 64, outFeatures: 1024))
        try wide.add(try Linear(inFeatures: 1024, outFeatures: 16))
        try wide.add(try Linear(inFeatures: 16, outFeatures: 16))
        try wide.add(try Linear(inFeatures: 16, outFeatures: 16))
        try wide.initialize(seed: 2)
        request.cores = 4
        var st = StrategyConfig()
        (st.pp, st.microBatches) = (4, 4)
        let p = try StrategyAdvisor.predict(model: wide, strategy: st, request: request, calibration: linear)
        // Stage 0 starts first and ends last, and its own forwards outlast
        // the short stages' round trip: it never waits.
        #expect(p.compute > 0 && p.bubble == 0, "bubble \(p.bubble), compute \(p.compute)")
    }

    /// An element-wise pass runs at the rate measured for working sets of
    /// its size (a small model's activations and update stay in the caches:
    /// 114 GB/s at 192 KiB against 21 past the caches, measured here): the
    /// line through the two measured sizes around it in log bytes and log
    /// rate, the nearest outside them, and one figure where none was measured.
    @Test func elementwiseRatesFollowTheWorkingSet() throws {
        var c = fixedCalibration()  // past the caches, one thread: 1e10 B/s
        #expect(abs(c.elementwiseSeconds(bytes: 1e6) - 1e-4) < 1e-15)
        c.elementwiseBySize = [(2e5, 1e11), (2e7, 4e10), (1e8, 1e10)]
        for (bytes, rate) in [(2e5, 1e11), (2e6, (1e11 * 4e10).squareRoot()), (1e4, 1e11), (1e9, 1e10), (1e8, 1e10)] {
            #expect(abs(c.elementwiseSeconds(bytes: bytes) * rate / bytes - 1) < 1e-6, "\(bytes) B")
        }
        // More threads: the gain every core measured past the caches.
        c.elementwiseAllCoresBytesPerSecond = 1.5e10
        #expect(abs(c.elementwiseSeconds(bytes: 2e5, threads: 1) / c.elementwiseSeconds(bytes: 2e5, threads: 2) - 1.5) < 1e-9)
    }

    /// The memory's bandwidth is one resource: two one-thread ranks
    /// updating at once each get half of what every core measured together,
    /// at most one thread's own rate; one rank on both cores gets all of it.
    @Test func concurrentRanksShareTheMemory() throws {
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        var request = AdviceRequest(sampleShape: Shape(12), batch: 96)
        request.cores = 2
        func predict(dp: Int, allCores: Double) throws -> LayoutPrediction {
            var c = fixedCalibration()  // one thread: 1e10 B/s
            c.elementwiseAllCoresBytesPerSecond = allCores
            var st = StrategyConfig()
            st.dp = dp
            return try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
        }
        // Both cores together no faster than one: two ranks at once take twice as long each.
        let flat = try predict(dp: 2, allCores: 1e10), scaling = try predict(dp: 2, allCores: 2e10)
        #expect(abs(flat.optimizer / scaling.optimizer - 2) < 1e-9, "\(flat.optimizer) vs \(scaling.optimizer)")
        #expect(flat.compute > scaling.compute)
        // One rank on both cores: the whole of it, whatever the sharing.
        let one = try predict(dp: 1, allCores: 1e10), oneFast = try predict(dp: 1, allCores: 2e10)
        #expect(one.blasThreads == 2 && abs(one.optimizer / oneFast.optimizer - 2) < 1e-9)
    }

    /// The update's passes over the owned floats: parameters read and
    /// written, gradients read, each state copy read and written, and one
    /// more read of the gradients for the finite check or clipping's norm
    /// (Adam: 8 passes with the check, 7 without).
    @Test func theFiniteCheckReadsTheGradientsOnce() throws {
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        func optimizerSeconds(skip: Bool, clip: Float = 0) throws -> Double {
            var request = AdviceRequest(sampleShape: Shape(12), batch: 96)
            request.cores = 2
            request.optimizer.kind = .adam
            request.optimizer.skipNonFinite = skip
            request.optimizer.clipGradNorm = clip
            return try StrategyAdvisor.predict(model: model, strategy: StrategyConfig(), request: request, calibration: fixedCalibration()).optimizer
        }
        let checked = try optimizerSeconds(skip: true), unchecked = try optimizerSeconds(skip: false)
        #expect(abs(checked / unchecked - 8.0 / 7) < 1e-9, "\(checked) vs \(unchecked)")
        #expect(abs(try optimizerSeconds(skip: false, clip: 1) - checked) < 1e-15)
    }

    /// Ranks sharing the cores share the caches too: a rank's pass runs at
    /// the rate of every resident rank's passes together, and the running
    /// ranks share the cores' gain. Two one-thread ranks each on half the
    /// bytes take what one two-thread rank takes on all of them; passes
    /// that fit in the caches together are not charged the memory's rate.
    @Test func concurrentRanksShareTheCaches() throws {
        var c = fixedCalibration()  // past the caches, one thread: 1e10 B/s
        c.elementwiseBySize = [(2e5, 1e11), (2e7, 4e10), (1e8, 1e10)]
        c.elementwiseAllCoresBytesPerSecond = 1.5e10  // every core: 1.5x one thread
        let model = CostModel(calibration: c, coresPerNode: 2, machine: nil)
        let half = model.elementwise(bytes: 1e5, threads: 1, running: 2, resident: 2)
        let whole = model.elementwise(bytes: 2e5, threads: 2, running: 2, resident: 2)
        #expect(abs(half - 2e5 / (1e11 * 1.5)) < 1e-15 && abs(half / whole - 1) < 1e-12, "\(half) vs \(whole)")
        #expect(half < 0.2 * 2e5 / 1.5e10)  // not the memory's rate: 10x that
        // Four one-thread ranks on 2 cores: two run at once, and all four
        // passes share the caches (4e5 bytes: between the 2e5 and 2e7 rates).
        let rate = exp(log(1e11) + log(2) / log(100) * (log(4e10) - log(1e11)))
        let four = model.elementwise(bytes: 1e5, threads: 1, running: 2, resident: 4)
        #expect(abs(four - 2e5 / (rate * 1.5)) < 1e-15, "\(four)")
        // Alone, a rank gets its own working set's rate.
        #expect(abs(model.elementwise(bytes: 1e5, threads: 1, running: 1, resident: 1) - 1e5 / 1e11) < 1e-15)
        // A backward pass reads what its forward stored after the rest of
        // the step went through the caches: the rank's held activations
        // (2e7 bytes: the 4e10 rate) set its working set, not its own bytes.
        #expect(abs(model.elementwise(bytes: 1e5, threads: 1, running: 1, resident: 1, held: 2e7) - 1e5 / 4e10) < 1e-15)
        #expect(abs(model.elementwise(bytes: 1e5, threads: 1, running: 1, resident: 1, held: 5e4) - 1e5 / 1e11) < 1e-15)
        // Two ranks holding 1e7 each: 2e7 together.
        #expect(abs(model.elementwise(bytes: 1e5, threads: 1, running: 2, resident: 2, held: 1e7) - 2e5 / (4e10 * 1.5)) < 1e-15)
        // Measured by working set, the cores' gain is their caches' where the
        // passes fit (each core's own: 2x here) and the memory's past them (1x).
        c.elementwiseAllCoresBySize = [(2e5, 2e11), (2e7, 8e10), (1e8, 1e10)]
        let measured = CostModel(calibration: c, coresPerNode: 2, machine: nil)
        #expect(abs(c.allCoresGain(workingSet: 2e5) - 2) < 1e-12 && abs(c.allCoresGain(workingSet: 1e8) - 1) < 1e-12)
        #expect(abs(measured.elementwise(bytes: 1e5, threads: 1, running: 2, resident: 2) - 1e5 / 1e11) < 1e-15)  // as alone
        #expect(abs(measured.elementwise(bytes: 2e5, threads: 2, running: 2, resident: 2) - 2e5 / 2e11) < 1e-15)
        #expect(abs(measured.elementwise(bytes: 5e7, threads: 1, running: 2, resident: 2) - 1e8 / 1e10) < 1e-12)  // the memory, shared
    }

    /// Ranks past the cores meet at every collective (and a pipeline's at
    /// every tick), and between two meetings a core holding two of them
    /// runs one after the other while a core holding one waits: ⌈n / cores⌉
    /// turns, not the fair share n / cores. Three ranks on 2 cores compute
    /// 4/3 of the fair share; four, exactly it.
    @Test func ranksPastTheCoresTakeTurns() throws {
        let turns = CostModel(calibration: fixedCalibration(), coresPerNode: 2, machine: nil)
        #expect(turns.turns(1, stretch: 0) == 1 && turns.turns(2, stretch: 0) == 1 && turns.turns(4, stretch: 0) == 1)
        #expect(abs(turns.turns(3, stretch: 0) - 4.0 / 3) < 1e-15 && abs(turns.turns(5, stretch: 0) - 6.0 / 5) < 1e-15)
        // Stretches longer than the scheduler's time slice (1.5 ms on 2
        // cores) are dealt out in slices: about one slice of each waits.
        #expect(abs(turns.timeSlice - 1.5e-3) < 1e-15 && turns.turns(3, stretch: 1.5e-3) == 4.0 / 3)
        #expect(abs(turns.turns(3, stretch: 15e-3) - (1 + 1.0 / 30)) < 1e-12 && turns.turns(4, stretch: 15e-3) == 1)
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        func predict(dp: Int, cores: Int) throws -> LayoutPrediction {
            var request = AdviceRequest(sampleShape: Shape(12), batch: 96)
            request.cores = cores
            var st = StrategyConfig()
            st.dp = dp
            return try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: fixedCalibration())
        }
        // The same threads (one per rank) and the same calibrated slowdown; only the turns differ.
        let three = try predict(dp: 3, cores: 2), threeFit = try predict(dp: 3, cores: 4)
        #expect(three.blasThreads == 1 && threeFit.blasThreads == 1)
        #expect(abs(three.compute / threeFit.compute - 4.0 / 3) < 1e-9, "\(three.compute) vs \(threeFit.compute)")
        #expect(abs(three.optimizer / threeFit.optimizer - 4.0 / 3) < 1e-9)
        let four = try predict(dp: 4, cores: 2), fourFit = try predict(dp: 4, cores: 4)
        #expect(abs(four.compute / fourFit.compute - 1) < 1e-9)
    }

    /// Deterministic mode: uneven chunk shares pack onto the cores by their
    /// loads; each chunk's gradient is copied into a leaf (or added into its
    /// left sibling) and siblings are summed (TreeAccumulator), the dp ranks' nodes are exchanged through
    /// the mailboxes and combined along the tree (ChunkTreeReduction); a
    /// pipeline's fill waits for one piece, not a micro-batch of pieces.
    @Test func deterministicModeChargesTheChunkTree() throws {
        let cost = CostModel(calibration: fixedCalibration(), coresPerNode: 2, machine: nil)
        // 4 chunks on 3 ranks (2, 1, 1): the one-chunk ranks share a core.
        #expect(abs(cost.turns(3, loads: [1, 0.5, 0.5], stretch: 0) - 2.0 / 3) < 1e-15)
        #expect(abs(cost.turns(3, loads: [1, 1, 1], stretch: 0) - 4.0 / 3) < 1e-15)
        let model = try residualMLP(width: 256, blocks: 2, seed: 4)
        let w = Double(model.parameterCount), rate = fixedCalibration().elementwiseBytesPerSecond
        func predict(dp: Int = 1, pp: Int = 1, m: Int = 1, zero: Int = 0, deterministic: Bool, cores: Int = 1) throws -> LayoutPrediction {
            var request = AdviceRequest(sampleShape: Shape(12), batch: 128)
            request.cores = cores
            var st = StrategyConfig()
            (st.dp, st.pp, st.microBatches, st.zeroStage, st.deterministic, st.gradientChunk) = (dp, pp, m, zero, deterministic, 32)
            return try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: fixedCalibration())
        }
        // One rank, 4 chunks of 32 rows against 4 micro-batches of 32 (the
        // same products): no copy (backward writes chunks 0 and 2 into their
        // leaves, 1 and 3 are added straight into their siblings), 3 sums
        // (the last written into the arena), at 4 bytes a float.
        let tree = try predict(deterministic: true).compute - (try predict(m: 4, deterministic: false).compute)
        let expected = 4 * w * Double(3 * 3) / rate
        #expect(abs(tree / expected - 1) < 1e-9, "\(tree) s against \(expected)")
        // dp 2 (2 chunks each, one node each): ZeRO-1's reduce-scatter half
        // becomes 4w bytes posted, 4w taken and 14w combined, the gather half stays.
        let ring = try predict(dp: 2, zero: 1, deterministic: false, cores: 2).communications.first { $0.group == "dp(2)" }
        let chunked = try predict(dp: 2, zero: 1, deterministic: true, cores: 2).communications.first { $0.group == "dp(2)" }
        let exchange = try #require(chunked).seconds - (try #require(ring)).seconds / 2
        #expect(abs(exchange / (22 * w / rate) - 1) < 1e-9, "\(exchange) s against \(22 * w / rate)")
        // pp 2: 2 micro-batches of 2 chunks fill the pipe as 4 of 1 do.
        let two = try predict(pp: 2, m: 2, deterministic: true, cores: 2), four = try predict(pp: 2, m: 4, deterministic: true, cores: 2)
        #expect(two.bubble > 0 && abs(two.bubble / four.bubble - 1) < 1e-9, "\(two.bubble) against \(four.bubble)")
    }

    /// Deterministic mode's scratch on one stage, predicted to the byte: a
    /// plain run pushes each chunk's leaf as backward makes it, a run
    /// holding batch_norm takes every chunk's leaf before pushing any
    /// (4 chunks: 2 leaf buffers against 4 with one data rank).
    @Test func deterministicScratchMatchesTheTrainerWithAndWithoutBatchNorm() throws {
        for c in cases where c.name.hasPrefix("cnn") {
            for dp in [1, 2] {
                var st = StrategyConfig()
                (st.dp, st.deterministic, st.gradientChunk) = (dp, true, 8)
                let request = AdviceRequest(sampleShape: c.sample, batch: 32)
                let predicted = try StrategyAdvisor.predict(model: try c.make(), strategy: st, request: request, calibration: fixedCalibration())
                let trainer = try Trainer(model: try c.make(), loss: .crossEntropy, optimizer: request.optimizer, strategy: st)
                let (x, y) = try c.inputs(32)
                try trainer.step(inputs: x, targets: y)
                let m = try trainer.memory(rank: 0)
                #expect(predicted.memory.scratch == m.scratch, "\(c) dp\(dp): predicted \(predicted.memory), trainer \(m)")
            }
        }
    }

    /// tp's f operator forwards its input unchanged and all-reduces in
    /// backward (the model's communication): it declares no element-wise
    /// work, where the default read of its input and write of its output
    /// had charged every column-split layer's input three passes a step.
    @Test func tensorParallelEnterMovesNoFloats() throws {
        let f = TensorParallelEnter()
        #expect(try f.work(input: Shape(32, 128)).elementwiseFloats == 0 && (try f.work(input: Shape(32, 128)).products.isEmpty))
        #expect(try TensorParallelReduce(features: 128, bias: true).work(input: Shape(32, 128)).elementwiseFloats == 2 * 32 * 128)
    }

    /// The profile's probe skips its products (`BLAS.skippingProducts`):
    /// the buffers it reads are the bytes a probe that computes them holds,
    /// layer by layer, for every case's model on one rank and the GPT's on
    /// tp rank 0 of 2, at both probe row counts.
    @Test func probeWithoutProductsHoldsTheBuffersOfOneWithThem() throws {
        let probed = try cases.map { (try $0.make(), $0.sample, 1) } + [(try gpt(), Shape(16), 2)]
        for (model, sample, tp) in probed {
            let profile = try ModelProfile(serial: model, tp: tp, sampleShape: sample, threads: 1)
            for rows in [ModelProfile.probeRows.0, ModelProfile.probeRows.1] {
                // Fresh copies each: buffers only grow, so a copy probed first at more rows would hide a difference.
                let computing = try ModelProfile(serial: model, tp: tp, sampleShape: sample, threads: 1).model
                let skipping = try ModelProfile(serial: model, tp: tp, sampleShape: sample, threads: 1).model
                let full = try BLAS.asOneOff { try ModelProfile.probe(computing, sample: sample, rows: rows, threads: 1) }
                let skipped = try BLAS.asOneOff {
                    try BLAS.skippingProducts { try ModelProfile.probe(skipping, sample: sample, rows: rows, threads: 1) }
                }
                expectEqualElements(full, skipped, "\(model.root.layers.count) layers, tp \(tp), \(rows) rows: \(full) against \(skipped)")
                #expect(full.reduce(0, +) > 0)
            }
            #expect(profile.bufferPerRow.reduce(0, +) > 0)
        }
    }

    /// A sequence moves no floats of its own and a residual block's sum
    /// moves three arrays, so the sequences tp's rewrite nests in a block
    /// cost nothing: the GPT's MLP block on a tp 2 rank (half its columns)
    /// moves fewer floats than on the one rank, not more.
    @Test func sequencesMoveNoFloatsOfTheirOwn() throws {
        let x = Shape(4, 8, 32)
        let gelu = Activation(.gelu), norm = try LayerNorm(features: 32)
        let parts = try norm.work(input: x).elementwiseFloats + (try gelu.work(input: x).elementwiseFloats)
        #expect(try Sequential([norm, gelu]).work(input: x).elementwiseFloats == parts)
        #expect(try Sequential([Sequential([norm]), Sequential([gelu])]).work(input: x).elementwiseFloats == parts)
        #expect(try Residual(Sequential([norm, gelu])).work(input: x).elementwiseFloats == parts + 3 * Double(x.count))
        let serial = try gpt()
        let block = 3  // embedding, position, attention block, MLP block, ...
        let one = try ModelProfile(serial: serial, tp: 1, sampleShape: Shape(16), threads: 1)
        let two = try ModelProfile(serial: serial, tp: 2, sampleShape: Shape(16), threads: 1)
        let w1 = try one.model.root.layers[block].work(input: one.input(ofLayer: block, rows: 4))
        let w2 = try two.model.root.layers[block].work(input: two.input(ofLayer: block, rows: 4))
        #expect(w2.productFLOPs * 2 == w1.productFLOPs)
        #expect(w2.elementwiseFloats < w1.elementwiseFloats, "\(w2.elementwiseFloats) floats on a tp 2 rank, \(w1.elementwiseFloats) on one")
    }

    /// The replay runs each stage's 1F1B order: of two equal stages' six
    /// hops (2 micro-batches, forward 1 s and backward 2 s a run), two lie
    /// on the step's path, and where every wait outlasts the window, each
    /// of the three waits on a hop also waits for a wake-up.
    @Test func pipelineReplayChargesOnlyTheHopsOnThePath() throws {
        let replay = PipelineReplay(
            kind: .oneForwardOneBackward, stages: 2, virtualStages: 1, microBatches: 2, forward: [1, 1], backward: [2, 2])
        let bare = try #require(replay.makespan(hop: 0, wake: 0, window: 0.05))
        #expect(abs(bare.seconds - 9) < 1e-12)
        // The same with the cores shared: two ops at once each run 2× slower
        // (worked by hand in pipelineStagesShareTheCoresAsTheirScheduleOverlaps: 4t and 3t of t = 3 s).
        let halves = { (threads: Int) -> Double in threads > 1 ? 2 : 1 }
        let shared = try #require(replay.makespan(hop: 0, wake: 0, window: .infinity, stretch: halves))
        #expect(abs(shared.seconds - 12) < 1e-9 && abs(shared.busiest - 9) < 1e-9, "\(shared)")
        let hops = try #require(replay.hops(seconds: 0.1, wake: 0, window: .infinity))
        #expect(abs(hops.seconds - 0.2) < 1e-12 && hops.sleeps == 0)
        // Stage 1 waits 1.1 s for its first input; stage 0 for both gradients.
        let woken = try #require(replay.hops(seconds: 0.1, wake: 0.5, window: 0.05))
        #expect(abs(woken.seconds - 1.2) < 1e-12 && woken.sleeps == 3, "\(woken)")
        // A first stage 10× the second's work never waits for it: its hops land off the path.
        let heavy = PipelineReplay(
            kind: .oneForwardOneBackward, stages: 2, virtualStages: 1, microBatches: 8, forward: [1, 0.1], backward: [2, 0.2])
        let light = try #require(heavy.hops(seconds: 0.01, wake: 0.05, window: 0.001))
        #expect(light.seconds < 2 * (0.01 + 0.05) + 1e-12, "\(light)")
        // Every schedule finishes, GPipe and interleaved 1F1B included.
        for (kind, v) in [(PipelineSchedule.gpipe, 1), (.interleaved, 2)] {
            let r = PipelineReplay(
                kind: kind, stages: 4, virtualStages: v, microBatches: 8,
                forward: Array(repeating: 1, count: 4 * v), backward: Array(repeating: 2, count: 4 * v))
            let t = try #require(r.makespan(hop: 0, wake: 0, window: 0))
            #expect(t.seconds >= 8 * 3 * Double(v) - 1e-9)
        }
    }

    /// Past the cores a pipeline rank that waits longer than WorldCore's
    /// spin and yield windows sleeps: where a stage's pieces take longer
    /// than those windows, the hops cost more on 2 cores than on 4 (wake-ups
    /// and their CPU time); where they are shorter, nobody sleeps and the
    /// hops cost what they cost with a core per rank.
    @Test func pipelineHopsWakeSleepingRanksPastTheCores() throws {
        let c = fixedCalibration()  // hand-over: 2 ranks 10 µs, 4 ranks 20 µs
        func sends(width: Int, batch: Int, cores: Int, dp: Int = 1, pp: Int = 4) throws -> CommunicationTerm {
            let model = Model()
            for _ in 0..<4 { try model.add(try Linear(inFeatures: width, outFeatures: width)) }
            try model.initialize(seed: 2)
            var request = AdviceRequest(sampleShape: Shape(width), batch: batch)
            request.cores = cores
            var st = StrategyConfig()
            (st.dp, st.pp, st.microBatches) = (dp, pp, 8)
            let p = try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: c)
            return try #require(p.communications.first { $0.group.hasPrefix("pp") })
        }
        let windows = rankWaitWindows(ranks: 4, cpus: 2)
        #expect(Double(windows.spinNanos + windows.yieldNanos) * 1e-9 < 1e-4)
        // 64 rows a piece over 512 × 512: each forward about 0.7 ms at 50 GFLOP/s.
        let long = try sends(width: 512, batch: 512, cores: 2), longFit = try sends(width: 512, batch: 512, cores: 4)
        #expect(long.count == 2 * (8 + 3) && long.count == longFit.count)
        #expect(long.seconds > longFit.seconds + 1e-5, "\(long.seconds) vs \(longFit.seconds)")
        // 4 rows over 64 × 64 on 2 data ranks of 2 stages: well under a
        // microsecond a piece, and a round trip of two 5 µs hops.
        let short = try sends(width: 64, batch: 64, cores: 2, dp: 2, pp: 2)
        let shortFit = try sends(width: 64, batch: 64, cores: 4, dp: 2, pp: 2)
        // No wake-up (10 µs) charged: what differs is where the hops fall
        // among pieces whose times the cores' sharing stretches.
        #expect(abs(short.seconds - shortFit.seconds) < 0.5e-5, "\(short.seconds) vs \(shortFit.seconds)")
        #expect(short.seconds < Double(short.count) * (5e-6 + 1e-5))
    }

    /// A step computes its pieces at their own rows: 12 rows in 8
    /// micro-batches are 4 pieces of 2 rows and 4 of 1, what 8 rows in 4
    /// and 4 rows in 4 compute together, not 8 pieces of the largest.
    @Test func unevenMicroBatchesComputeTheirOwnRows() throws {
        let model = Model()  // 2 equal stages
        for _ in 0..<2 { try model.add(try Linear(inFeatures: 64, outFeatures: 64)) }
        try model.initialize(seed: 2)
        func compute(batch: Int, m: Int) throws -> Double {
            var request = AdviceRequest(sampleShape: Shape(64), batch: batch)
            request.cores = 2
            var st = StrategyConfig()
            (st.pp, st.microBatches) = (2, m)
            return try StrategyAdvisor.predict(model: model, strategy: st, request: request, calibration: fixedCalibration()).compute
        }
        let uneven = try compute(batch: 12, m: 8), twos = try compute(batch: 8, m: 4), ones = try compute(batch: 4, m: 4)
        #expect(abs(uneven - (twos + ones)) < 1e-9 * uneven, "\(uneven) vs \(twos) + \(ones)")
        #expect(ones < twos)
    }

    /// Thread gain applies to products BLAS.gemm cuts over the worker
    /// threads, not to small ones that run on one thread anyway; it is the
    /// gain the concurrent sgemms measured (a product cut over 2 threads
    /// runs as 2 one-thread products at once).
    @Test func threadGainOnlyForCutProducts() throws {
        var c = fixedCalibration()
        c.concurrency = [(1, 5e10), (2, 9e10), (4, 9e10)]  // 2 threads at once: 1.8x one
        let small = MatrixProduct(m: 8, n: 16, k: 16, count: 1), large = MatrixProduct(m: 64, n: 256, k: 256, count: 1)
        #expect(BLAS.productBlocks(m: 8, n: 16, k: 16).count == 1 && (BLAS.productBlocks(m: 64, n: 256, k: 256).count > 1) == (Clock.onlineCores > 1))
        #expect(c.productSeconds(small, threads: 2) == c.productSeconds(small, threads: 1))
        if Clock.onlineCores > 1 {
            #expect(abs(c.productSeconds(large, threads: 1) / c.productSeconds(large, threads: 2) - 9e10 / 5e10) < 1e-9)
        }
    }

    /// A product BLAS.gemm cuts into blocks is timed as its blocks: each at
    /// the rate of the block's rows (a 64-row product by rows in two 32-row
    /// halves runs at the 32-row rate), one after another on one thread,
    /// side by side on two. The model's first layer computes no input gradient.
    @Test func cutProductsAreTimedAsTheirBlocks() throws {
        var c = fixedCalibration()
        c.products = [.init(m: 32, n: 64, k: 1024, threads: 1, flopsPerSecond: 4e10), .init(m: 64, n: 64, k: 1024, threads: 1, flopsPerSecond: 8e10)]
        c.concurrency = [(1, 5e10), (2, 9e10), (4, 9e10)]
        let p = MatrixProduct(m: 64, n: 64, k: 1024)
        let blocks = BLAS.productBlocks(m: 64, n: 64, k: 1024)
        if Clock.onlineCores > 1 {
            #expect(blocks.count == min(Clock.onlineCores, 4) && blocks.n == 64 && blocks.m == 64 / blocks.count)
            #expect(abs(c.productSeconds(p, threads: 1) * 4e10 / p.flops - 1) < 1e-9)
            #expect(abs(c.productSeconds(p, threads: 1) / c.productSeconds(p, threads: 2) - 9e10 / 5e10) < 1e-9)
        } else {
            #expect(blocks.count == 1 && abs(c.productSeconds(p, threads: 1) * 8e10 / p.flops - 1) < 1e-9)
        }
        // Below 2^21 multiply-adds: one sgemm, at its own rows' rate.
        #expect(BLAS.productBlocks(m: 16, n: 64, k: 1024).count == 1)
        // The first layer's products: forward and weight gradient only.
        let model = try residualMLP(width: 64, blocks: 1, seed: 2)
        let first = model.root.layers[0]
        let cost = CostModel(calibration: c, coresPerNode: 2, machine: nil)
        let profile = try ModelProfile(serial: model, tp: 1, sampleShape: Shape(12))
        let w = try first.work(input: profile.input(ofLayer: 0, rows: 8))
        #expect(w.products.count == 1)
        let layer0 = try cost.compute(profile, layers: 0..<1, rows: 8, threads: 1, running: 1, resident: 1, held: 0, footprint: 0)
        let ew = 3 * 4 * w.elementwiseFloats
        let q = w.products[0]
        let two = c.productSeconds(q, threads: 1) + c.productSeconds(MatrixProduct(m: q.n, n: q.k, k: q.m), threads: 1)
        #expect(abs(layer0 - two - cost.elementwise(bytes: ew / 3, threads: 1, running: 1, resident: 1)
            - cost.elementwise(bytes: 2 * ew / 3, threads: 1, running: 1, resident: 1)) < 1e-12)
    }

    /// A product is timed at the rate of the measured shapes whose output
    /// (n) and inner (k) sides are nearest, each in its own role: the weight
    /// gradient of a 16-row piece (1024 × 1024 over k = 16) runs at its own
    /// measured rate, not at that of a narrow output over a wide inner side.
    @Test func smallInnerDimensionProductsUseTheirOwnRate() throws {
        var c = fixedCalibration()
        c.products = [
            .init(m: 1024, n: 1024, k: 1024, threads: 1, flopsPerSecond: 1e11),
            .init(m: 1024, n: 1024, k: 16, threads: 1, flopsPerSecond: 4e10),
            .init(m: 1024, n: 16, k: 256, threads: 1, flopsPerSecond: 8e10),
        ]
        let weightGradient = MatrixProduct(m: 1024, n: 1024, k: 16), narrowOutput = MatrixProduct(m: 1024, n: 16, k: 1024)
        #expect(abs(c.productSeconds(weightGradient, threads: 1) * 4e10 / weightGradient.flops - 1) < 1e-12)
        #expect(abs(c.productSeconds(narrowOutput, threads: 1) * 8e10 / narrowOutput.flops - 1) < 1e-12)
        // Between two measured row counts, the line through them in log rows
        // and log rate (128 rows: halfway from 64 to 256, the geometric mean);
        // outside them, the nearest.
        c.products = [.init(m: 64, n: 256, k: 256, threads: 1, flopsPerSecond: 5e10), .init(m: 256, n: 256, k: 256, threads: 1, flopsPerSecond: 8e10)]
        for (rows, rate) in [(128, (5e10 * 8e10).squareRoot()), (16, 5e10), (1024, 8e10), (64, 5e10)] {
            let p = MatrixProduct(m: rows, n: 256, k: 256)
            #expect(abs(c.productSeconds(p, threads: 1) * rate / p.flops - 1) < 1e-9, "\(rows) rows")
        }
        #expect(MachineCalibration.productSides.contains { $0.1 < $0.0 })
    }

    /// GELU, tanh, sigmoid and LayerNorm declare their elements as
    /// arithmetic-bound work (ReLU and the rest only traffic), a container
    /// sums its children's, and the cost model charges each kernel's
    /// calibrated time past what its traffic costs within a core's cache:
    /// nothing where the traffic already takes longer, on two threads the
    /// concurrent sgemms' gain.
    @Test func arithmeticBoundKernelsAreChargedPastTheirTraffic() throws {
        let x = Shape(4, 8, 32)
        #expect(try Activation(.gelu).work(input: x).arithmetic == [.gelu: 1024])
        #expect(try Activation(.tanh).work(input: x).arithmetic == [.tanh: 1024])
        #expect(try Activation(.relu).work(input: x).arithmetic.isEmpty)
        #expect(try LayerNorm(features: 32).work(input: x).arithmetic == [.layerNorm: 1024])
        let block = Residual(Sequential([try LayerNorm(features: 32), Activation(.gelu), try LayerNorm(features: 32)]))
        #expect(try block.work(input: x).arithmetic == [.gelu: 1024, .layerNorm: 2048])
        // Traffic as before: input and output.
        #expect(try Activation(.gelu).work(input: x).elementwiseFloats == 2048)

        var c = fixedCalibration()
        c.elementwiseBySize = [(1e5, 4e10), (1e8, 1e10)]
        let elements = 1e5
        let traffic = c.elementwiseSeconds(bytes: 24 * elements, workingSet: 5 * 4 * 256 * 256)
        #expect(c.arithmeticSeconds(.gelu, elements: elements) == 0)  // not measured
        c.arithmetic = [.gelu: 5e-9, .layerNorm: 1e-11]
        #expect(abs(c.arithmeticSeconds(.gelu, elements: elements) - (5e-4 - traffic)) < 1e-12)
        #expect(c.arithmeticSeconds(.layerNorm, elements: elements) == 0)  // its traffic takes longer
        #expect(abs(c.arithmeticSeconds(.gelu, elements: elements, threads: 2) - (5e-4 - traffic) * c.slowdown(busyThreads: 2) / 2) < 1e-12)

        // A 32 → 64 → 32 MLP, GELU against ReLU between: the GELU layer's 64 × rows elements.
        func mlp(_ f: ActivationKind) throws -> (Model, ModelProfile) {
            let m = Model()
            try m.add(try Linear(inFeatures: 32, outFeatures: 64))
            try m.add(Activation(f))
            try m.add(try Linear(inFeatures: 64, outFeatures: 32))
            try m.initialize(seed: 5)
            return (m, try ModelProfile(serial: m, tp: 1, sampleShape: Shape(32)))
        }
        let cost = CostModel(calibration: c, coresPerNode: 1, machine: nil)
        let (_, gelu) = try mlp(.gelu), (_, relu) = try mlp(.relu)
        let rows = 512
        let withGELU = try cost.compute(gelu, layers: 1..<2, rows: rows, threads: 1, running: 1, resident: 1, held: 0, footprint: 0)
        let withReLU = try cost.compute(relu, layers: 1..<2, rows: rows, threads: 1, running: 1, resident: 1, held: 0, footprint: 0)
        let expected = c.arithmeticSeconds(.gelu, elements: Double(64 * rows))
        #expect(expected > 0 && abs(withGELU - withReLU - expected) < 1e-12, "\(withGELU - withReLU) against \(expected)")
    }

    /// Each form at its own measured rate (C = op(A)·op(B)): a layer's x·Wᵀ
    /// forward at NT's, its weight gradient dyᵀ·x at TN's, its input
    /// gradient dy·W at NN's; a form the calibration lacks at NN's, and
    /// OpenBLAS's small-matrix kernels at NN's, the form they were measured in.
    @Test func productsAreTimedInTheirOwnForm() throws {
        var c = fixedCalibration()
        c.products = [
            .init(m: 256, n: 256, k: 256, threads: 1, flopsPerSecond: 4e10),
            .init(m: 256, n: 256, k: 256, threads: 1, flopsPerSecond: 8e10, form: .nt),
            .init(m: 256, n: 256, k: 256, threads: 1, flopsPerSecond: 2e10, form: .tn),
        ]
        let p = MatrixProduct(m: 256, n: 256, k: 256)
        for (form, rate) in [(MachineCalibration.ProductForm.nn, 4e10), (.nt, 8e10), (.tn, 2e10)] {
            #expect(abs(c.productSeconds(p, threads: 1, form: form) * rate / p.flops - 1) < 1e-12, "\(form)")
        }
        var nnOnly = c
        nnOnly.products = [c.products[0]]
        #expect(nnOnly.productSeconds(p, threads: 1, form: .nt) == c.productSeconds(p, threads: 1, form: .nn))
        c.products += [.init(m: 4, n: 16, k: 16, threads: 1, flopsPerSecond: 1e10), .init(m: 4, n: 16, k: 16, threads: 1, flopsPerSecond: 3e10, form: .nt)]
        let small = MatrixProduct(m: 4, n: 16, k: 16)
        #expect(abs(c.productSeconds(small, threads: 1, smallKernel: true, form: .nt) * 1e10 / small.flops - 1) < 1e-12)

        // A 64 → 256 → 256 MLP's second layer at 256 rows: NT, TN and NN
        // products of 256³, as against every one at NN's rate.
        let model = Model()
        try model.add(try Linear(inFeatures: 64, outFeatures: 256))
        try model.add(try Linear(inFeatures: 256, outFeatures: 256))
        try model.initialize(seed: 4)
        let profile = try ModelProfile(serial: model, tp: 1, sampleShape: Shape(64))
        func second(_ cal: MachineCalibration) throws -> Double {
            try CostModel(calibration: cal, coresPerNode: 1, machine: nil)
                .compute(profile, layers: 1..<2, rows: 256, threads: 1, running: 1, resident: 1, held: 0, footprint: 0)
        }
        let products = p.flops / 8e10 + p.flops / 2e10 + p.flops / 4e10
        let formed = try second(c), asNN = try second(nnOnly)
        #expect(abs(formed - asNN - (products - 3 * p.flops / 4e10)) < 1e-9)
    }

    /// In a pass a product's operands come from the memory, not from the
    /// caches the calibration's repeated product kept them in: each product
    /// reads its three matrices once more at the memory's rate, less their
    /// cost within caches of their size, less what the calibrated product
    /// already spent below the peak rate.
    @Test func productsReadTheirOperandsAtTheMemorysRate() throws {
        let model = Model()
        try model.add(try Linear(inFeatures: 256, outFeatures: 256, bias: false))
        try model.initialize(seed: 1)
        var request = AdviceRequest(sampleShape: Shape(256), batch: 64)
        request.cores = 1
        func compute(memory: Double, peak: Double? = nil) throws -> Double {
            var c = fixedCalibration()  // 64 x 256 x 256 at 5e10 FLOP/s
            if let peak { c.products.append(.init(m: 64, n: 4096, k: 4096, threads: 1, flopsPerSecond: peak)) }
            // Every working set up to 1 MB at 1e11 B/s; the memory (100 MB) at `memory`.
            c.elementwiseBySize = [(1e5, 1e11), (1e6, 1e11), (1e8, memory)]
            return try StrategyAdvisor.predict(model: model, strategy: StrategyConfig(), request: request, calibration: c).compute
        }
        // The forward and the weight gradient (a first layer has no input
        // gradient), each reading 64x256 + 256x256 + 64x256 floats.
        let operands = 4.0 * Double(64 * 256 + 256 * 256 + 64 * 256)
        let slow = try compute(memory: 1e10), fast = try compute(memory: 1e11)
        let expected = 2 * (operands / 1e10 - operands / 1e11)
        #expect(abs((slow - fast) / expected - 1) < 1e-9, "\(slow - fast) s against \(expected)")
        // A product at a quarter of the peak already spent 3/4 of its
        // calibrated time (168 us) waiting, more than the 39 us of reading.
        let stalled = try compute(memory: 1e10, peak: 2e11)
        #expect(abs(stalled / fast - 1) < 1e-12, "\(stalled) against \(fast)")
    }

    /// OpenBLAS runs products of at most 10⁶ multiply-adds on its
    /// small-matrix kernels where its kernel family has them (x·Wᵀ only for
    /// m·n ≤ 1200 and k ≥ 32). The advisor times those among the calibrated
    /// products that ran there too, and charges them no operand term.
    @Test func smallMatrixKernelProductsAreTimedAsSuch() throws {
        // The rule, row-major: x·Wᵀ (NT), dyᵀ·x (TN), dy·W (NN).
        #expect(BLAS.smallMatrixKernel(transA: false, transB: true, m: 4, n: 256, k: 784))  // m·n = 1024
        #expect(!BLAS.smallMatrixKernel(transA: false, transB: true, m: 8, n: 256, k: 784))  // m·n = 2048
        #expect(!BLAS.smallMatrixKernel(transA: false, transB: true, m: 2, n: 64, k: 16))  // k < 32
        #expect(BLAS.smallMatrixKernel(transA: true, transB: false, m: 256, n: 784, k: 4))
        #expect(BLAS.smallMatrixKernel(transA: false, transB: false, m: 2, n: 512, k: 512))
        #expect(!BLAS.smallMatrixKernel(transA: false, transB: false, m: 4, n: 512, k: 512))  // 1,048,576 > 10⁶
        #expect(!BLAS.smallMatrixKernel(transA: true, transB: true, m: 2, n: 2, k: 2))

        // Calibrated: a packed 16-row product at 2e10 FLOP/s and a small one at 1e11.
        var c = fixedCalibration()
        c.products = [
            .init(m: 16, n: 256, k: 256, threads: 1, flopsPerSecond: 2e10), .init(m: 4, n: 256, k: 256, threads: 1, flopsPerSecond: 1e11),
        ]
        c.elementwiseBySize = [(1e5, 1e11), (1e6, 1e11), (1e8, 1e10)]
        let forward = MatrixProduct(m: 2, n: 256, k: 256)
        #expect(abs(c.productSeconds(forward, threads: 1, smallKernel: true) * 1e11 / forward.flops - 1) < 1e-12)
        #expect(abs(c.productSeconds(MatrixProduct(m: 16, n: 256, k: 256), threads: 1, smallKernel: false) * 2e10
            / MatrixProduct(m: 16, n: 256, k: 256).flops - 1) < 1e-12)

        // A 2-row piece of one Linear(256 → 256) after another layer: all three
        // products small (x·Wᵀ: 2 × 256 = 512 ≤ 1200), each at 1e11 and no operand term.
        let model = Model()
        try model.add(try Linear(inFeatures: 8, outFeatures: 256, bias: false))
        try model.add(try Linear(inFeatures: 256, outFeatures: 256, bias: false))
        try model.initialize(seed: 1)
        let profile = try ModelProfile(serial: model, tp: 1, sampleShape: Shape(8))
        let w = try model.root.layers[1].work(input: profile.input(ofLayer: 1, rows: 2))
        #expect(w.products.map(\.timesWeights) == [true])
        let ew = 4 * w.elementwiseFloats
        let small = CostModel(calibration: c, coresPerNode: 1, machine: nil, smallKernels: true)
        let packed = CostModel(calibration: c, coresPerNode: 1, machine: nil, smallKernels: false)
        let passes = small.elementwise(bytes: ew, threads: 1, running: 1, resident: 1)
            + small.elementwise(bytes: 2 * ew, threads: 1, running: 1, resident: 1, held: 0)
        let withSmall = try small.compute(profile, layers: 1..<2, rows: 2, threads: 1, running: 1, resident: 1, held: 0, footprint: 0)
        #expect(abs((withSmall - passes) / (3 * forward.flops / 1e11) - 1) < 1e-9, "\(withSmall - passes) s")
        // Without small kernels: the packed rate (2e10) and the operands read at the memory's rate.
        let withPacked = try packed.compute(profile, layers: 1..<2, rows: 2, threads: 1, running: 1, resident: 1, held: 0, footprint: 0)
        #expect(withPacked - passes > 3 * forward.flops / 2e10)
    }

    /// A product of few rows that oneDNN runs (x·Wᵀ of at most 8, dy·W of
    /// fewer than 32) costs the longer of its calibrated time and reading
    /// its operands at the rate the rank's footprint allows, not the two
    /// added: more footprint moves only those two products' charge.
    @Test func fewRowProductsOnOneDNNOverlapTheirOperandReads() throws {
        // Where the products go to oneDNN at all (by default, CPUs with AVX-512).
        let routed = OneDNN.available && BLAS.largeProductsOnOneDNN
        #expect(BLAS.fewRowsOnOneDNN(transA: false, transB: true, m: 4, n: 512, k: 512, ldc: 512) == routed)
        #expect(BLAS.fewRowsOnOneDNN(transA: false, transB: false, m: 16, n: 512, k: 512, ldc: 512) == routed)
        #expect(BLAS.fewRowsOnOneDNN(transA: false, transB: true, m: 16, n: 512, k: 512, ldc: 512) == routed)  // x·Wᵀ
        #expect(!BLAS.fewRowsOnOneDNN(transA: true, transB: false, m: 512, n: 512, k: 4, ldc: 512))  // dyᵀ·x
        #expect(!BLAS.fewRowsOnOneDNN(transA: false, transB: false, m: 64, n: 512, k: 512, ldc: 512))  // not few rows
        #expect(!BLAS.fewRowsOnOneDNN(transA: false, transB: false, m: 2, n: 256, k: 256, ldc: 256))  // below 2^20

        var c = fixedCalibration()
        c.products = [.init(m: 4, n: 512, k: 512, threads: 1, flopsPerSecond: 5e10)]
        c.elementwiseBySize = [(1e5, 1e11), (1e6, 1e11), (1e8, 1e10)]
        let model = Model()
        try model.add(try Linear(inFeatures: 8, outFeatures: 512, bias: false))
        try model.add(try Linear(inFeatures: 512, outFeatures: 512, bias: false))
        try model.initialize(seed: 1)
        let profile = try ModelProfile(serial: model, tp: 1, sampleShape: Shape(8))
        let cost = CostModel(calibration: c, coresPerNode: 1, machine: nil)
        func layer1(footprint: Double) throws -> Double {
            try cost.compute(profile, layers: 1..<2, rows: 4, threads: 1, running: 1, resident: 1, held: 0, footprint: footprint)
        }
        let forward = MatrixProduct(m: 4, n: 512, k: 512)
        let time = c.productSeconds(forward, threads: 1)
        let operands = 4.0 * Double(4 * 512 + 512 * 512 + 4 * 512)
        // 1e8 bytes held: the operands come at the memory's 1e10 B/s, slower than the product.
        #expect(operands / 1e10 > time && operands / 1e11 < time)
        let cached = try layer1(footprint: 5e5), spilled = try layer1(footprint: 1e8)
        if routed {
            #expect(abs((spilled - cached) / (2 * (operands / 1e10 - time)) - 1) < 1e-9, "\(spilled - cached) s")
        } else {
            #expect(spilled == cached)
        }
    }

    /// Interleaved 1F1B is among the layouts for a model deep enough, with
    /// the smaller bubble of its v runs per stage; a model too shallow gets none.
    @Test func interleavedLayoutsAreConsidered() throws {
        let model = try gpt()
        let advice = try StrategyAdvisor.advise(
            model: model, request: AdviceRequest(sampleShape: Shape(16), batch: 16), calibration: fixedCalibration(), origin: .measured)
        func find(_ schedule: PipelineSchedule) -> LayoutPrediction? {
            advice.ranked.first { $0.strategy.dp == 1 && $0.strategy.pp == 2 && $0.strategy.tp == 1 && $0.strategy.microBatches == 4
                && $0.strategy.pipelineSchedule == schedule }
        }
        let plain = try #require(find(.oneForwardOneBackward)), inter = try #require(find(.interleaved))
        #expect(inter.strategy.virtualStages == 2)
        #expect(inter.bubble < 0.75 * plain.bubble)
        #expect(advice.table.contains("dp1 pp2 tp1 m4 v2"))
        let three = Model()  // 3 top-level layers: fewer than 2 runs for each of 2 stages
        try three.add(try Linear(inFeatures: 12, outFeatures: 16))
        try three.add(Activation(.relu))
        try three.add(try Linear(inFeatures: 16, outFeatures: 4))
        try three.initialize(seed: 1)
        let shallow = try StrategyAdvisor.advise(
            model: three, request: AdviceRequest(sampleShape: Shape(12), batch: 16),
            calibration: fixedCalibration(), origin: .measured)
        #expect(!(shallow.ranked.map(\.strategy) + shallow.excluded.map(\.strategy)).contains { $0.pipelineSchedule == .interleaved })
    }

    /// The calibration times one-thread products and the concurrent ranks
    /// in the threads' CPU time, which leaves out the waits for a core that
    /// other processes hold (a loaded machine measured 1024³ at 30 GFLOP/s
    /// on the wall clock against 100 quiet); past the cores, ranks take
    /// turns, so 4 threads on 2 cores deliver no more than 2.
    @Test func calibrationCountsTheThreadsOwnTime() throws {
        let (wall, cpu) = (Clock.now(), Clock.threadCPU())
        usleep(50_000)
        #expect(Clock.now() - wall >= 0.049 && Clock.threadCPU() - cpu < 0.02)
        let c = try MachineCalibration.measure(libraryVersion: "test")
        #expect(c.concurrency.map(\.threads) == [1, 2, 4] && c.concurrency.allSatisfy { $0.flopsPerSecond > 0 })
        let rate = Dictionary(uniqueKeysWithValues: c.concurrency.map { ($0.threads, $0.flopsPerSecond) })
        if c.cores == 2 {
            #expect(rate[4]! < 1.5 * rate[2]!, "4 threads on 2 cores: \(rate[4]!) against 2: \(rate[2]!)")
            #expect(c.slowdown(busyThreads: 4) > 1.3 * c.slowdown(busyThreads: 2))
        }
    }

    /// Deterministic mode's chunk tree: its passes over a run's gradient
    /// run at the rate of the working set they cycle through (the
    /// gradient in the arena and the accumulator's height + 1 buffers),
    /// not of the step's whole traffic: 9 passes over 264 KB at the
    /// cached rate, where the 2.4 MB of traffic would read as memory's.
    @Test func chunkTreePassesRunAtTheirBuffersRate() throws {
        let model = Model()
        try model.add(try Linear(inFeatures: 64, outFeatures: 512))
        try model.add(try Linear(inFeatures: 512, outFeatures: 64))
        try model.initialize(seed: 1)
        var c = fixedCalibration()
        c.elementwiseBySize = [(1e5, 1e11), (2e6, 1e11), (1e8, 1e10)]
        var st = StrategyConfig()
        st.deterministic = true
        let request = AdviceRequest(sampleShape: Shape(64), batch: 128)  // 4 chunks of 32 rows
        var profiles: [Int: ModelProfile] = [:]
        let candidate = try StrategyAdvisor.candidate(model: model, strategy: st, request: request, profiles: &profiles)
        let cost = CostModel(calibration: c, coresPerNode: 1, machine: nil)
        let tree = cost.chunkTree(candidate, run: 0, threads: 1, running: 1, resident: 1)
        let run = 4.0 * Double(model.parameterCount)
        // No copy (backward writes chunks 0 and 2 into their leaves; 1 and
        // 3 are added into their left siblings), 3 sums of siblings (3
        // passes each; the one forming the root writes it into the arena).
        let passes = 3.0 * 3
        #expect(run * 4 < 2e6 && run * passes > 2e6)  // the buffers fit where the step's traffic would not
        #expect(abs(tree / (passes * run / 1e11) - 1) < 1e-9, "\(tree) s")
    }

    /// A run holding batch_norm copies every chunk's leaf out of the arena
    /// (BatchStatisticsExecution holds them all until its statistics phase)
    /// and, with one chunk, copies it back: 4 chunks make 4 copies and 3
    /// sums, 1 chunk 2 copies, where a plain run makes 0 and 3, and 0
    /// (its backward writes each leaf's gradient into the leaf).
    @Test func chunkTreeOfABatchNormRunCopiesEveryLeaf() throws {
        var c = fixedCalibration()
        c.elementwiseBySize = [(1e5, 1e11), (1e8, 1e11)]
        let cost = CostModel(calibration: c, coresPerNode: 1, machine: nil)
        let cases: [(batchNorm: Bool, chunk: Int, passes: Double)] = [(true, 8, 2 * 4 + 3 * 3), (true, 32, 2 * 2), (false, 8, 3 * 3), (false, 32, 0)]
        for (batchNorm, chunk, passes) in cases {
            let model = try cnn(batchNorm: batchNorm)
            var st = StrategyConfig()
            (st.deterministic, st.gradientChunk) = (true, chunk)
            var profiles: [Int: ModelProfile] = [:]
            let candidate = try StrategyAdvisor.candidate(
                model: model, strategy: st, request: AdviceRequest(sampleShape: Shape(1, 8, 8), batch: 32), profiles: &profiles)
            let tree = cost.chunkTree(candidate, run: 0, threads: 1, running: 1, resident: 1)
            let expected = passes * 4 * Double(model.parameterCount) / 1e11
            #expect(abs(tree - expected) <= 1e-9 * expected, "batch_norm \(batchNorm), chunk \(chunk): \(tree) s against \(expected)")
        }
    }

    /// Threads past the cores take turns: a calibration whose 4-thread trial
    /// measured more than its 2-thread one on 2 cores (something slowed the
    /// 2-thread trial) is read as the 2 cores' rate shared 4 ways; on 4
    /// cores, or where 4 measured less, the measured rate stands.
    @Test func threadsPastTheCoresComputeNoFasterThanTheCores() {
        var c = MachineCalibration(cpuModel: "test", cores: 2, libraryVersion: "test")
        c.concurrency = [(1, 1e11), (2, 1.8e11), (4, 1.9e11)]
        #expect(abs(c.slowdown(busyThreads: 2) - 1e11 / 0.9e11) < 1e-12)
        #expect(abs(c.slowdown(busyThreads: 4) - 1e11 / (1.8e11 / 4)) < 1e-12)
        #expect(abs(c.slowdown(busyThreads: 8) - 1e11 / (1.8e11 / 8)) < 1e-12)
        var four = c
        four.cores = 4
        #expect(abs(four.slowdown(busyThreads: 4) - 1e11 / (1.9e11 / 4)) < 1e-12)
        c.concurrency = [(1, 1e11), (2, 1.8e11), (4, 1.7e11)]
        #expect(abs(c.slowdown(busyThreads: 4) - 1e11 / (1.7e11 / 4)) < 1e-12)
    }

    /// A one-thread trial slower than each of two threads together (20:38's
    /// calibration: 86 GFLOP/s against 92 each) is read at their rate: 4
    /// threads on 2 cores then take 2× one thread's time, not 1.88×.
    @Test func oneThreadComputesAtLeastAsFastAsEachOfTwo() {
        var c = MachineCalibration(cpuModel: "test", cores: 2, libraryVersion: "test")
        c.concurrency = [(1, 0.86e11), (2, 1.84e11), (4, 1.84e11)]
        #expect(c.slowdown(busyThreads: 1) == 1 && c.slowdown(busyThreads: 2) == 1)
        #expect(abs(c.slowdown(busyThreads: 4) - 2) < 1e-12, "\(c.slowdown(busyThreads: 4))")
        // Threads past the cores count only where they share them: on 4 cores
        // the 4-thread trial (0.46e11 each) does not raise one thread's rate.
        var four = c
        four.cores = 4
        #expect(abs(four.slowdown(busyThreads: 4) - 0.92e11 / 0.46e11) < 1e-12)
        c.concurrency = [(1, 1e11), (2, 1.84e11), (4, 1.84e11)]
        #expect(abs(c.slowdown(busyThreads: 4) - 1e11 / 0.46e11) < 1e-12)
    }

    /// A calibration file that is corrupt, from another CPU or from another
    /// library version is measured again and replaced; a good one is reused.
    /// Two hosts that show the same generic model name (virtual machines'
    /// "AMD EPYC") but other cores or vector extensions get other keys, so
    /// a cached calibration is not read on the other.
    @Test func cpuIdentityTellsHostsWithTheSameNameApart() {
        func info(model: Int, flags: String) -> String {
            """
            processor\t: 0
            vendor_id\t: AuthenticAMD
            cpu family\t: 25
            model\t\t: \(model)
            model name\t: AMD EPYC
            stepping\t: 1
            flags\t\t: fpu sse2 \(flags) aes

            processor\t: 1
            model name\t: Something else
            """
        }
        let milan = MachineCalibration.cpuIdentity(cpuinfo: info(model: 1, flags: "avx fma avx2"))
        let genoa = MachineCalibration.cpuIdentity(cpuinfo: info(model: 17, flags: "avx fma avx2 avx512f avx512bw avx512_bf16"))
        #expect(milan == "AMD EPYC (family 25 model 1 stepping 1; avx2 fma)")
        #expect(genoa == "AMD EPYC (family 25 model 17 stepping 1; avx2 fma avx512f avx512_bf16)")
        #expect(MachineCalibration.cpuIdentity(cpuinfo: "model name : Plain CPU\n") == "Plain CPU")
        #expect(MachineCalibration.cpuIdentity(cpuinfo: "") == "unknown")
        // This machine's key comes from its own /proc/cpuinfo and round-trips through the file.
        let here = MachineCalibration.currentCPU()
        var c = MachineCalibration(cpuModel: here.model, cores: here.cores, libraryVersion: "test")
        c.elementwiseBytesPerSecond = 1
        #expect(CalibrationCache.format(c).contains("cpu_model=\(here.model)\n"))
    }

    @Test func calibrationCacheRecovers() throws {
        let dir = NSTemporaryDirectory() + "parml-advisor-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + CalibrationCache.fileName
        let (first, origin1) = try CalibrationCache.load(directory: dir, libraryVersion: "9.9.9")
        #expect(origin1 == .measured)
        #expect(first.products.count >= 30 && first.elementwiseBytesPerSecond > 0 && first.allReduce.count == 2 && first.send.count == 1)
        #expect(first.concurrentPageFaults.map(\.threads) == [2, 4] && first.concurrentPageFaults.allSatisfy { $0.seconds > 0 })
        let sizes = MachineCalibration.elementwiseFloats.count
        #expect(first.elementwiseBySize.count == sizes && first.elementwiseBySize.allSatisfy { $0.bytesPerSecond > 0 })
        #expect(first.seconds > 0 && first.seconds < 30)
        let (again, origin2) = try CalibrationCache.load(directory: dir, libraryVersion: "9.9.9")
        #expect(origin2 == .cached)
        #expect(again == CalibrationCache.parse(CalibrationCache.format(first)))
        // Corrupt: garbage, a truncated file, a negative rate.
        let text = CalibrationCache.format(first)
        for bad in ["\u{0}\u{1}garbage", String(text.prefix(text.count / 2)), text.replacingOccurrences(of: "product 16", with: "product -16")] {
            try bad.write(toFile: path, atomically: true, encoding: .utf8)
            let (_, o) = try CalibrationCache.load(directory: dir, libraryVersion: "9.9.9")
            #expect(o == .replaced)
            #expect(CalibrationCache.parse(try String(contentsOfFile: path, encoding: .utf8)) != nil)
        }
        // Written before the small-inner-dimension products were measured: measured again.
        let older = text.split(separator: "\n").filter { line in
            let w = line.split(separator: " ")
            return !(w.first?.hasPrefix("product") == true && w.count == 6 && Int(w[3])! < Int(w[2])!)
        }.joined(separator: "\n")
        #expect(CalibrationCache.parse(older) == nil)
        // Written before the element-wise rates of every core by working set: measured again.
        if first.cores > 1 {
            #expect(first.elementwiseAllCoresBySize.count == sizes && first.elementwiseAllCoresBySize.allSatisfy { $0.bytesPerSecond > 0 })
            let noAllCores = text.split(separator: "\n").filter { !$0.hasPrefix("elementwise_all_cores_size ") }.joined(separator: "\n")
            #expect(CalibrationCache.parse(noAllCores) == nil)
        }
        // Written before the products of fewer than 16 rows were measured: measured again.
        #expect(first.products.contains { $0.m == 4 })
        let noSmallPieces = text.split(separator: "\n").filter { line in
            let w = line.split(separator: " ")
            return !(w.first?.hasPrefix("product") == true && w.count == 6 && Int(w[1])! < 16)
        }.joined(separator: "\n")
        #expect(CalibrationCache.parse(noSmallPieces) == nil)
        // Written before each form was measured: measured again.
        for form in [MachineCalibration.ProductForm.nt, .tn] {
            #expect(first.products.filter { $0.form == form }.count == first.products.filter { $0.form == .nn }.count)
            let noForm = text.split(separator: "\n").filter { !$0.hasPrefix("product_\(form.rawValue) ") }.joined(separator: "\n")
            #expect(CalibrationCache.parse(noForm) == nil)
        }
        // Written before the arithmetic-bound kernels were timed: measured again.
        #expect(ArithmeticKernel.allCases.allSatisfy { (first.arithmetic[$0] ?? 0) > 0 && first.arithmetic[$0]! < 1e-6 })
        let noArithmetic = text.split(separator: "\n").filter { !$0.hasPrefix("arithmetic ") }.joined(separator: "\n")
        #expect(CalibrationCache.parse(noArithmetic) == nil)
        #expect(CalibrationCache.parse(text.replacingOccurrences(of: "arithmetic gelu", with: "arithmetic erf")) == nil)
        // Another CPU, another library version.
        try text.replacingOccurrences(of: "cpu_model=", with: "cpu_model=Other ").write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try CalibrationCache.load(directory: dir, libraryVersion: "9.9.9").1 == .replaced)
        #expect(try CalibrationCache.load(directory: dir, libraryVersion: "9.9.10").1 == .replaced)
        #expect(try CalibrationCache.load(directory: dir, libraryVersion: "9.9.10").1 == .cached)
        // Measured on a busy machine that has since eased: measured again.
        let (fresh, _) = try CalibrationCache.load(directory: dir, libraryVersion: "9.9.10")
        #expect(fresh.pageFaultSeconds > 0 && fresh.pageFaultSeconds < 1e-3)
        var busy = fresh
        busy.loadAverage = 1000
        try CalibrationCache.format(busy).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try CalibrationCache.load(directory: dir, libraryVersion: "9.9.10").1 == .remeasuredQuieter)
        #expect(CalibrationCache.measuredBusier(busy, now: 1) && !CalibrationCache.measuredBusier(busy, now: 600))
        busy.loadAverage = 0.5 * Double(busy.cores)  // not busy: kept whatever the load now
        #expect(!CalibrationCache.measuredBusier(busy, now: 0))
        var unknown = fresh
        unknown.loadAverage = 1000
        #expect(!CalibrationCache.measuredBusier(unknown, now: nil))
        // A directory that cannot be created: measured, not stored, no error.
        #expect(try CalibrationCache.load(directory: "/proc/parml-no", libraryVersion: "9.9.9").1 == .measured)
    }
}
