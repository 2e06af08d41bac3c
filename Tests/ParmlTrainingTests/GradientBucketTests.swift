#if canImport(Glibc)
import Glibc
#endif
import ParmlModel
import ParmlParallel
import ParmlTensor
import Testing
import _ParmlTestSupport

@_spi(Testing) @testable import ParmlTraining

// ZeRO-2 and 3 in the default mode reduce-scatter gradients bucket by bucket
// during backward and hand back the pages outside each rank's shard
// (GradientBuckets.swift). Deterministic mode keeps its chunk tree.

private func tinyGPT() throws -> Model { try miniGPT(vocabulary: 11, width: 16, context: 8, blocks: 2, heads: 2, seed: 4) }

/// Batch `step` of n windows of 8 token ids and their next tokens.
private func tokens(_ n: Int, step: Int) throws -> (Tensor, Tensor) {
    let (t, v) = (8, 11)
    let ids = randomArray(n * (t + 1), seed: 12, stream: UInt64(step), low: 0, high: Float(v)).map { min(Float(v - 1), $0.rounded(.down)) }
    var x = [Float](), y = [Float]()
    for i in 0..<n {
        x += ids[(i * (t + 1))..<(i * (t + 1) + t)]
        y += ids[(i * (t + 1) + 1)..<((i + 1) * (t + 1))]
    }
    return (try Tensor(x, shape: Shape(n, t)), try Tensor(y, shape: Shape(n, t)))
}

private struct GPTLayout: CustomStringConvertible {
    var dp = 1, pp = 1, m = 1, zero = 0, v = 1
    var deterministic = false
    var overlap = OverlapSetting.auto
    var description: String { "dp=\(dp) pp=\(pp) m=\(m) v=\(v) zero=\(zero)\(deterministic ? " deterministic" : "") overlap \(overlap.name)" }
}

/// The GPT's parameters and losses after `steps` AdamW steps (clipped) under `l`.
private func trainGPT(_ l: GPTLayout, n: Int = 13, steps: Int = 3) throws -> (params: [UInt32], losses: [Float]) {
    var s = StrategyConfig()
    (s.dp, s.pp, s.microBatches, s.zeroStage, s.deterministic, s.overlap) = (l.dp, l.pp, l.m, l.zero, l.deterministic, l.overlap)
    if l.v > 1 { (s.pipelineSchedule, s.virtualStages) = (.interleaved, l.v) }
    s.gradientChunk = 4
    s.seed = 9
    s.bucketBytes = 2000 * 4  // a bucket per block or two
    s.watchdogSeconds = 30
    var o = OptimizerConfig()
    o.kind = .adamW
    o.learningRate = 0.01
    o.weightDecay = 0.1
    o.clipGradNorm = 0.5
    let model = try tinyGPT()
    let t = try Trainer(model: model, loss: .crossEntropy, optimizer: o, strategy: s)
    var losses: [Float] = []
    for k in 0..<steps {
        let (x, y) = try tokens(n, step: k)
        losses.append(try t.step(inputs: x, targets: y).loss)
    }
    return (bits(model.parameters), losses)
}

/// 256 → [256 → ReLU] × 4 → 4: a bucket per linear at 64 KiB buckets.
private func fourLinears() throws -> Model {
    let m = Model()
    for _ in 0..<4 {
        try m.add(try Linear(inFeatures: 256, outFeatures: 256))
        try m.add(Activation(.relu))
    }
    try m.add(try Linear(inFeatures: 256, outFeatures: 4))
    try m.initialize(seed: 3)
    return m
}

/// Bytes of the pages of `count` floats at `p` that are resident.
private func residentBytes(_ p: UnsafeMutablePointer<Float>, count: Int) -> Int {
    let page = UInt(Pages.size)
    let lo = UInt(bitPattern: p) / page * page, hi = UInt(bitPattern: p + count)
    var vec = [UInt8](repeating: 0, count: Int((hi - lo + page - 1) / page))
    guard mincore(UnsafeMutableRawPointer(bitPattern: lo), Int(hi - lo), &vec) == 0 else { return -1 }
    return vec.reduce(0) { $0 + Int($1 & 1) } * Int(page)
}

struct GradientBucketTests {
    /// The buckets sum each element over the data ranks in rank order, as
    /// ZeRO-1's reduce-scatter of the whole run after backward does: the
    /// same bits, with pipelines, micro-batches and interleaving too.
    @Test func bucketedZeroTwoAndThreeGiveZeroOnesBits() throws {
        let layouts = [
            GPTLayout(dp: 2), GPTLayout(dp: 3), GPTLayout(dp: 2, m: 3), GPTLayout(dp: 2, pp: 2, m: 3),
            GPTLayout(dp: 2, pp: 2, m: 4, v: 2),
        ]
        for var l in layouts {
            l.zero = 1
            let reference = try trainGPT(l)
            for zero in [2, 3] {
                l.zero = zero
                let got = try trainGPT(l)
                expectEqualElements(got.params, reference.params, "\(l) differs from zero=1")
                expectEqualElements(got.losses.map(\.bitPattern), reference.losses.map(\.bitPattern), "\(l): losses \(got.losses) vs \(reference.losses)")
            }
        }
    }

    /// Overlap hands the same buckets to a communication thread, which
    /// reduces them while backward goes on: the same bits as reducing after
    /// backward, at every ZeRO stage, with pipelines, micro-batches and
    /// interleaving too (the GPT has a tied classifier, whose two gradients
    /// are summed after the buckets).
    @Test func overlapGivesTheBitsOfReducingAfterBackward() throws {
        let layouts = [
            GPTLayout(dp: 2), GPTLayout(dp: 3), GPTLayout(dp: 2, m: 3), GPTLayout(dp: 2, pp: 2, m: 3),
            GPTLayout(dp: 2, pp: 2, m: 4, v: 2), GPTLayout(dp: 3, pp: 2, m: 2),
        ]
        for var l in layouts {
            for zero in 0...3 {
                l.zero = zero
                l.overlap = .off
                let reference = try trainGPT(l)
                l.overlap = .on
                let got = try trainGPT(l)
                expectEqualElements(got.params, reference.params, "\(l) differs from overlap off")
                expectEqualElements(got.losses.map(\.bitPattern), reference.losses.map(\.bitPattern), "\(l): losses \(got.losses) vs \(reference.losses)")
            }
        }
    }

    /// Which layouts get a communication thread: on (or auto under MPI)
    /// with dp > 1 in the default mode, at every ZeRO stage; never with
    /// dp = 1, and auto keeps it off except for MPI across machines. `on` where it
    /// cannot apply is refused with the reason, and the plan says which.
    @Test func overlapSettingAndPlan() throws {
        func trainer(dp: Int, zero: Int = 0, overlap: OverlapSetting) throws -> Trainer {
            var s = StrategyConfig()
            (s.dp, s.zeroStage, s.overlap, s.bucketBytes) = (dp, zero, overlap, 2000 * 4)
            return try Trainer(model: try tinyGPT(), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        }
        for zero in 0...3 {
            let t = try trainer(dp: 2, zero: zero, overlap: .on)
            #expect(t.ranks.allSatisfy { $0.communication != nil }, "zero=\(zero)")
            #expect(t.planDescription.contains("overlapped with backward on a communication thread per rank (overlap on)"), "\(t.planDescription)")
            #expect(t.planDescription.contains(zero == 0 ? "all-reduce in buckets" : "reduce-scatter in buckets"), "\(t.planDescription)")
        }
        let auto = try trainer(dp: 2, overlap: .auto)
        #expect(auto.ranks.allSatisfy { $0.communication == nil })
        #expect(auto.planDescription.contains("after backward (overlap auto: on only for MPI processes on more than one machine)"), "\(auto.planDescription)")
        #expect(try trainer(dp: 1, overlap: .on).ranks[0].communication == nil)
        #expect(try trainer(dp: 2, zero: 2, overlap: .off).planDescription.contains("; on the rank's thread (overlap off)"))
        var s = StrategyConfig()
        (s.dp, s.overlap) = (2, .auto)
        // Auto follows the measurements: MPI processes on several machines
        // overlap; on one machine (shared memory or loopback) and on threads
        // they do not.
        var mpi = s
        mpi.backend = .mpi
        #expect(mpi.overlapsReduction(dp: 2, spansMachines: true))
        #expect(!mpi.overlapsReduction(dp: 2, spansMachines: false))
        #expect(!s.overlapsReduction(dp: 2, spansMachines: true))
        #expect(!mpi.overlapsReduction(dp: 1, spansMachines: true))
        for (field, why) in [("deterministic", "deterministic mode"), ("compression", "gradient_compression=bf16"), ("local", "local SGD")] {
            var c = s
            switch field {
            case "deterministic": c.deterministic = true
            case "compression": c.gradientCompression = .bf16
            default: c.localSteps = 4
            }
            try c.validate()  // auto turns itself off
            #expect(!c.overlapsReduction(dp: 2, spansMachines: true))
            c.overlap = .on
            let e = parmlError { try c.validate() }
            #expect(e?.message.contains("overlap=on: \(why)") == true, "\(String(describing: e))")
        }
    }

    /// Deterministic mode (which keeps its chunk tree) gives serial
    /// training's bits for the GPT under ZeRO-2 and ZeRO-3.
    @Test func deterministicGPTUnderZeroTwoAndThreeIsSerial() throws {
        let serial = try trainGPT(GPTLayout(deterministic: true))
        for l in [
            GPTLayout(dp: 2, zero: 2, deterministic: true), GPTLayout(dp: 2, zero: 3, deterministic: true),
            GPTLayout(dp: 3, zero: 2, deterministic: true), GPTLayout(dp: 2, pp: 2, m: 2, zero: 3, deterministic: true),
        ] {
            let got = try trainGPT(l)
            expectEqualElements(got.params, serial.params, "\(l) differs from serial")
        }
    }

    /// The buckets: runs of top-level layers from the last backwards, each
    /// closed once it holds bucket_bytes / 4 gradients; and the gradient
    /// bytes memory reports are the owned shard plus the largest bucket's
    /// part outside it.
    @Test func bucketsAndTheirMemoryFigure() throws {
        let m = Model()
        for _ in 0..<6 {
            try m.add(try Linear(inFeatures: 128, outFeatures: 128))  // 16,512 parameters
            try m.add(Activation(.relu))
        }
        try m.add(try Linear(inFeatures: 128, outFeatures: 4))  // 516
        try m.initialize(seed: 2)
        var s = StrategyConfig()
        (s.dp, s.zeroStage, s.bucketBytes) = (4, 2, 20_000 * 4)
        let t = try Trainer(model: m, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        let b = try #require(t.ranks[0].virtualStages[0].buckets)
        // From the last layer back: 516 + 16,512 is short of 20,000, so the
        // next linear joins (33,540); then two linears per bucket, the first
        // bucket closing at layer 0.
        #expect(b.buckets.map(\.layers) == [8..<13, 4..<8, 0..<4])
        #expect(b.buckets.map(\.range.count) == [33_540, 33_024, 33_024])
        let total = 6 * 16_512 + 516
        var owns = 0
        for r in 0..<4 {
            let owned = t.ranks[r].virtualStages[0].owned
            owns += owned.count
            let outside = b.buckets.map { k in
                k.range.count - max(0, min(k.range.upperBound, owned.upperBound) - max(k.range.lowerBound, owned.lowerBound))
            }
            #expect(try t.memory(rank: r).gradients == 4 * (owned.count + outside.max()!), "rank \(r)")
            #expect(owned.count <= total / 4 + Sharding.defaultAlignment, "rank \(r) owns \(owned)")
            #expect(try t.memory(rank: r).gradients < 4 * total * 3 / 4, "rank \(r) holds most of the gradients")
        }
        #expect(owns == total)
        s.zeroStage = 1
        let whole = try Trainer(model: try m.replicate(), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        #expect(try whole.memory(rank: 1).gradients == 4 * total)
        // Micro-batches: each one's buckets are reduced into the shard, so
        // the figure is the same as with one.
        (s.zeroStage, s.microBatches) = (2, 2)
        let accumulating = try Trainer(model: try m.replicate(), loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        #expect(try accumulating.memory(rank: 1).gradients == t.memory(rank: 1).gradients)
        #expect(accumulating.ranks.allSatisfy { $0.virtualStages[0].buckets?.reducesEachMicroBatch == true })
        #expect(accumulating.planDescription.contains("(every micro-batch's buckets, summed into the shard)"), "\(accumulating.planDescription)")
    }

    /// Pages go back only where that lowers the data group's peak. The
    /// 784-1024-1024-10 MLP makes two buckets whatever bucket_bytes (whole
    /// layers: the last two linears, then the first); over dp 2, rank 0's
    /// shard ends inside the larger one, so rank 0 holds every page while
    /// that bucket fills: the pages stay, the report and the arena say the
    /// whole slice, and no step faults them back. Over dp 4 the largest
    /// rank's peak is 1.52 M of 1.86 M floats, and the pages go back.
    @Test func pagesGoBackOnlyWhereThatLowersThePeak() throws {
        func trainer(dp: Int) throws -> Trainer {
            let m = try benchmarkMLP(seed: 2)
            var s = StrategyConfig()
            (s.dp, s.zeroStage) = (dp, 2)
            return try Trainer(model: m, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
        }
        let total = 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
        let kept = try trainer(dp: 2)
        #expect(kept.ranks.allSatisfy { $0.virtualStages[0].buckets?.releasesPages == false })
        #expect(kept.planDescription.contains("the pages stay (handing them back would not lower the peak)"), "\(kept.planDescription)")
        let x = try Tensor(randomArray(8 * 784, seed: 5), shape: Shape(8, 784))
        let y = try Tensor((0..<8).map { Float($0 % 10) }, shape: Shape(8))
        for _ in 0..<2 { try kept.step(inputs: x, targets: y) }
        for r in kept.ranks {
            #expect(try kept.memory(rank: r.rank).gradients == 4 * total, "rank \(r.rank)")
            let g = r.model.gradients!
            #expect(residentBytes(g.data, count: g.count) >= 4 * total - Pages.size, "rank \(r.rank): pages handed back")
        }
        let released = try trainer(dp: 4)
        #expect(released.ranks.allSatisfy { $0.virtualStages[0].buckets?.releasesPages == true })
        let peak = try (0..<4).map { try released.memory(rank: $0).gradients }.max()!
        #expect(peak < 4 * total * 17 / 20, "\(peak) of \(4 * total) bytes")
        #expect(released.planDescription.contains("hands back the rest of each bucket's pages"), "\(released.planDescription)")
    }

    /// Micro-batches with pages handed back: each micro-batch's buckets are
    /// reduce-scattered as its backward passes them and the shard sums the
    /// micro-batches (the rest of the arena reads zero before the next), so
    /// after steps only the shard is resident, and training matches ZeRO-1
    /// to rounding (the sums are grouped by micro-batch first, not by rank),
    /// with a pipeline too; overlap changes no bits. A step whose data ranks
    /// run different pieces (13 rows over 4 ranks and 4 micro-batches: one
    /// rank's last micro-batch is empty) reduces once after backward, with
    /// ZeRO-1's bits.
    @Test func microBatchesReduceIntoTheShard() throws {
        func run(zero: Int, rows: Int = 32, pp: Int = 1, overlap: OverlapSetting = .off) throws
            -> (params: [Float], resident: [Int], owned: [Int], each: Bool)
        {
            let m = try fourLinears()
            var s = StrategyConfig()
            (s.dp, s.pp, s.zeroStage, s.bucketBytes, s.microBatches, s.overlap) = (4, pp, zero, 1 << 16, 4, overlap)
            var o = OptimizerConfig()
            o.learningRate = 0.1
            let t = try Trainer(model: m, loss: .crossEntropy, optimizer: o, strategy: s)
            var each = true
            for k in 0..<3 {
                let x = try Tensor(randomArray(rows * 256, seed: 5, stream: UInt64(k)), shape: Shape(rows, 256))
                let y = try Tensor((0..<rows).map { Float(($0 + k) % 4) }, shape: Shape(rows))
                try t.step(inputs: x, targets: y)
                each = each && t.ranks.allSatisfy { $0.virtualStages[0].buckets?.eachMicroBatch == true }
            }
            let first = t.ranks.filter { $0.coordinate.stage == 0 }
            let resident = first.map { r in residentBytes(r.model.gradients!.data, count: r.virtualStages[0].range.upperBound) }
            return (m.parameters!.toArray(), resident, first.map { $0.virtualStages[0].owned.count * 4 }, each)
        }
        for pp in [1, 2] {
            let reference = try run(zero: 1, pp: pp)
            let got = try run(zero: 2, pp: pp)
            #expect(got.each && !reference.each, "pp=\(pp)")
            var worst: Float = 0
            for (a, b) in zip(got.params, reference.params) { worst = max(worst, abs(a - b) / max(1, abs(b))) }
            #expect(worst > 0 && worst < 1e-5, "pp=\(pp): largest difference from ZeRO-1: \(worst)")
            for (r, (resident, owned)) in zip(got.resident, got.owned).enumerated() {
                #expect(
                    resident >= owned - 2 * Pages.size && resident <= owned + 4 * Pages.size,
                    "pp=\(pp) rank \(r): \(resident) bytes of the first stage resident, owns \(owned)")
            }
            let overlapped = try run(zero: 2, pp: pp, overlap: .on)
            expectEqualElements(overlapped.params.map(\.bitPattern), got.params.map(\.bitPattern), "pp=\(pp): overlap changed bits")
        }
        let uneven = try run(zero: 2, rows: 13)
        #expect(!uneven.each)
        expectEqualElements(uneven.params.map(\.bitPattern), (try run(zero: 1, rows: 13)).params.map(\.bitPattern))
    }

    /// What the figure says is what the pages hold: after steps, each
    /// rank's gradient arena has its shard resident and nothing else
    /// (but the partial pages at its ends); ZeRO-1 keeps the whole arena.
    @Test func onlyTheShardStaysResident() throws {
        func arenas(zero: Int) throws -> [(resident: Int, owned: Int, whole: Int)] {
            let m = try fourLinears()
            var s = StrategyConfig()
            (s.dp, s.zeroStage, s.bucketBytes) = (4, zero, 1 << 16)
            let t = try Trainer(model: m, loss: .crossEntropy, optimizer: OptimizerConfig(), strategy: s)
            for k in 0..<2 {
                let x = try Tensor(randomArray(32 * 256, seed: 5, stream: UInt64(k)), shape: Shape(32, 256))
                let y = try Tensor((0..<32).map { Float(($0 + k) % 4) }, shape: Shape(32))
                try t.step(inputs: x, targets: y)
            }
            return t.ranks.map { r in
                let g = r.model.gradients!
                return (residentBytes(g.data, count: g.count), r.virtualStages[0].owned.count * 4, g.count * 4)
            }
        }
        let page = Pages.size
        for (r, a) in try arenas(zero: 2).enumerated() {
            // Partial pages: two at the shard's ends, two at the run's.
            #expect(a.resident >= a.owned - 2 * page && a.resident <= a.owned + 4 * page, "rank \(r): \(a.resident) bytes resident, owns \(a.owned)")
            #expect(a.resident < a.whole / 3, "rank \(r): \(a.resident) of \(a.whole)")
        }
        for (r, a) in try arenas(zero: 1).enumerated() {
            #expect(a.resident >= a.whole - page, "zero=1 rank \(r): \(a.resident) of \(a.whole) bytes resident")
        }
    }
}
