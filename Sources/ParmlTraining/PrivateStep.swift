import ParmlModel
import ParmlPrivacy
import ParmlTensor

/// How a private run draws its batches.
public enum PrivacySampling: Int, Sendable {
    /// Each example joins each step's batch on its own with probability q
    /// (batch sizes vary): the sampling the accountant's analysis assumes.
    case poisson = 0
    /// Shuffled fixed-size batches, each example once per epoch: common in
    /// practice, but not the mechanism the accountant analyses.
    case shuffled = 1
}

/// DP-SGD (Abadi et al. 2016) settings: each example's gradient clipped to
/// `maxGradNorm` C, noise N(0, σ²C²) added to the clipped sum, divided by
/// the (expected) batch size.
public struct PrivacyConfig: Sendable, Equatable {
    public var noiseMultiplier: Double
    public var maxGradNorm: Float
    /// The δ `Trainer.privacySpent` reports ε for by default.
    public var delta: Double
    public var sampling: PrivacySampling

    public init(noiseMultiplier: Double, maxGradNorm: Float, delta: Double = 1e-5, sampling: PrivacySampling = .poisson) {
        self.noiseMultiplier = noiseMultiplier
        self.maxGradNorm = maxGradNorm
        self.delta = delta
        self.sampling = sampling
    }

    public func validate() throws {
        guard noiseMultiplier.isFinite, noiseMultiplier >= 0 else {
            throw ParmlError.invalidArgument("privacy: noise_multiplier must be finite and >= 0, got \(noiseMultiplier)")
        }
        guard maxGradNorm.isFinite, maxGradNorm > 0 else {
            throw ParmlError.invalidArgument("privacy: max_grad_norm must be finite and > 0, got \(maxGradNorm)")
        }
        guard delta > 0, delta < 1 else { throw ParmlError.invalidArgument("privacy: delta must be in (0, 1), got \(delta)") }
    }
}

/// What a private step needs beyond the config: the batch size B the
/// noisy sum is divided by (the expected size under Poisson sampling).
struct PrivateStepSettings {
    let config: PrivacyConfig
    let expectedBatch: Double
}

/// A rank's scratch for private steps: per-example squared norms (under
/// tp, the sliced sums then the whole ones), and what the tp norm pass
/// keeps per model copy (PrivateTensorParallel.swift).
final class PrivateStepScratch {
    let norms = try! Tensor(shape: Shape(0))  // zero elements: cannot fail
    var residualGradients: [ObjectIdentifier: Tensor] = [:]
    var tensorParallelPasses: [ObjectIdentifier: TensorParallelNormPass] = [:]
}

extension RandomStream {
    /// DP-SGD noise of step `step`: element i is the serial gradient arena's element i.
    public static func privacyNoise(step: Int) -> UInt64 { 0xA000_0000_0000 | UInt64(step & 0xFFF_FFFF_FFFF) }
    /// Poisson sampling of epoch `epoch`: uniform (b·n + i) decides whether
    /// example i joins batch b.
    public static func privacySampling(epoch: Int) -> UInt64 { 0xB000_0000_0000 | UInt64(epoch & 0xFFF_FFFF_FFFF) }
}

extension RankContext {
    /// Pass 1 of a private step on the piece's output gradient `dy` (rows:
    /// the piece's examples): per-example gradient norms through every run,
    /// then, on the last run, each row of `dy` scaled in place by cᵢ · N /
    /// B, cᵢ = min(1, C / ‖gᵢ‖). The ordinary backward that follows then
    /// computes (1/B) Σᵢ clip(gᵢ). gᵢ is example i's gradient of the
    /// batch-mean loss times N (its own loss's gradient): N·‖row i's gradient‖.
    ///
    /// Under pp the norm pass crosses the stages as a backward does
    /// (docs/privacy.md): each run adds its layers' squared
    /// norms onto the running sums the next run sent with its input
    /// gradient, so each example's float sums the layers in serial's order
    /// (last first); the first run sends the totals to the last, which
    /// scales `dy` and starts the ordinary backward. Under tp the sums of
    /// sliced and of replicated layers run apart, and the first run adds
    /// them after an all-reduce of the sliced ones over the tp group
    /// (PrivateTensorParallel.swift). Returns true when `dy`
    /// was consumed by the norm pass and the caller must receive the
    /// ordinary (scaled) output gradient (runs other than the last).
    func clipPerExample(_ dy: Tensor, _ vs: VirtualStage, slot: PipelineSlot, _ ctx: PassContext, work: StepWork) throws -> Bool {
        guard let p = work.step.privacy else { return false }
        let examples = dy.shape[0]
        guard examples > 0 else { return false }
        // Under tp two running sums per example: the sliced, then the whole.
        let sums = tensorParallel != nil ? 2 * examples : examples
        let norms = privateScratch.norms
        try norms.resize(Shape(sums))
        let next = vs.isLast ? nil : layout.stage(holding: vs.index + 1)
        if let next, let comms {
            try comms.pipeBackward.receive(norms.data, count: sums, from: next)  // the later runs' running sums
        } else {
            norms.fill(0)
        }
        let layers = slot.model.root.layers[vs.layers]
        let g: Tensor?
        if let tp = tensorParallel {
            g = try privateScratch.tensorParallelPass(for: slot.model, rewrite: tp.rewrite).backward(
                layers, from: dy, ctx, sliced: norms.data, whole: norms.data + examples, needFirstInputGradient: !vs.isFirst,
                firstTraining: slot.model.root.firstTrainingLayer, scratch: privateScratch)
        } else {
            g = try PerExampleNorms.backward(
                layers, from: dy, ctx, into: norms.data, needFirstInputGradient: !vs.isFirst,
                firstTraining: slot.model.root.firstTrainingLayer)
        }
        if !vs.isFirst {
            guard let comms, let g else { throw ParmlError.internal("a pipeline stage without communicators or input gradient") }
            let previous = layout.stage(holding: vs.index - 1)
            try comms.pipeBackward.send(g.data, count: g.count, to: previous)
            try comms.pipeBackward.send(norms.data, count: sums, to: previous)
        } else {
            if tensorParallel != nil {
                // Every tp rank the same totals: the slices' parts summed, the whole added once.
                guard let comms else { throw ParmlError.internal("a tp rank without communicators") }
                try comms.tensor.allReduce(norms.data, count: examples, op: .sum)
                for i in 0..<examples { norms.data[i] += norms.data[examples + i] }
            }
            if !vs.isLast, let comms {
                // The totals, to the run that scales the loss gradient.
                try comms.pipeBackward.send(norms.data, count: examples, to: layout.stage(holding: layout.partition.layers.count - 1))
            }
        }
        guard vs.isLast else { return true }
        if !vs.isFirst, let comms {
            try comms.pipeBackward.receive(norms.data, count: examples, from: layout.stage(holding: 0))
        }
        let n = Float(work.step.plan.samples)
        let toBatch = n / Float(p.expectedBatch)
        let rowSize = dy.count / examples
        for i in 0..<examples {
            let norm = n * norms.data[i].squareRoot()
            let c = norm > p.config.maxGradNorm ? p.config.maxGradNorm / norm : 1
            let f = c * toBatch
            if f != 1 { Kernels.scale(dy.data + i * rowSize, by: f, count: rowSize) }
        }
        return false
    }

    /// After the data-parallel sum: noise N(0, (σC/B)²) on each element of
    /// the owned ranges, keyed by (seed, step, serial arena index), so every
    /// layout adds the same number to the same parameter.
    func addPrivacyNoise(_ grads: Tensor, step: StepDescription) throws {
        guard let p = step.privacy, p.config.noiseMultiplier > 0 else { return }
        let std = Float(p.config.noiseMultiplier) * p.config.maxGradNorm / Float(p.expectedBatch)
        let rng = Philox(seed: step.settings.seed)
        let stream = RandomStream.privacyNoise(step: step.index)
        for r in ownedRanges {
            guard let tp = tensorParallel else {
                rng.addNormal(to: grads.data + r.lowerBound, count: r.count, stream: stream, first: UInt64(r.lowerBound), std: std)
                continue
            }
            // A slice's elements take the serial element's draw; a replicated
            // one the same draw on every tp rank, so its copies stay equal.
            tp.rewrite.forEachRun(in: r, model: model) { local, serial, count in
                rng.addNormal(to: grads.data + local, count: count, stream: stream, first: UInt64(serial), std: std)
            }
        }
    }
}
