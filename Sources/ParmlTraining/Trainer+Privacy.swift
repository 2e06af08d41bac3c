import ParmlData
import ParmlModel
import ParmlPrivacy
import ParmlTensor

/// A run of private steps with the same sampling rate and noise: what the
/// accountant composes, and what a checkpoint keeps of a private run.
public struct PrivacyLedgerEntry: Sendable, Equatable {
    public let samplingRate: Double
    public let noiseMultiplier: Double
    public var steps: Int

    public init(samplingRate: Double, noiseMultiplier: Double, steps: Int) {
        self.samplingRate = samplingRate
        self.noiseMultiplier = noiseMultiplier
        self.steps = steps
    }

    /// Refuses an entry the accountant cannot take (a damaged or forged file's).
    public func validate() throws {
        guard samplingRate > 0, samplingRate <= 1 else {
            throw ParmlError.format("a privacy record's sampling rate \(samplingRate) is outside (0, 1]")
        }
        guard noiseMultiplier.isFinite, noiseMultiplier >= 0 else {
            throw ParmlError.format("a privacy record's noise multiplier \(noiseMultiplier) is not finite and >= 0")
        }
        guard steps >= 0 else { throw ParmlError.format("a privacy record's step count \(steps) is negative") }
    }
}

/// DP-SGD in the trainer: settings, Poisson sampling in fit, and the ε
/// spent (docs/privacy.md). The step itself is PrivateStep.swift.
extension Trainer {
    /// Turns private training on (or off with nil) for the following steps.
    /// Refuses a model or layout it cannot train privately, naming why.
    public func setPrivacy(_ config: PrivacyConfig?) throws {
        guard let config else {
            privacy = nil
            return
        }
        try config.validate()
        let mesh = layout.mesh
        if mesh.tp > 1 && strategy.splitClassifier {
            throw ParmlError.unsupported(
                "private training with split_classifier (tp = \(mesh.tp)): the per-example norm pass does not handle the sharded "
                    + "loss and vocabulary slices yet; leave split_classifier off")
        }
        if mesh.pp > 1 && layout.virtualStages > 1 {
            throw ParmlError.unsupported(
                "private training with interleaved 1F1B (virtual_stages = \(layout.virtualStages)): the per-example norms cross the "
                    + "stages once from the last to the first, which the interleaved ring does not; use GPipe or 1F1B")
        }
        if mesh.pp > 1 && !model.tiedParameters.isEmpty {
            throw ParmlError.unsupported(
                "private training with tied parameters under pp = \(mesh.pp): a tied classifier's per-example norm needs its "
                    + "embedding's terms on the same rank, and the two sit on different stages; use an untied linear classifier, or pp 1")
        }
        if layout.averagesParameters {
            throw ParmlError.unsupported("private training with local_steps > 1: the noise is added to the summed gradient of every step")
        }
        if layout.compression != .none && mesh.dp > 1 {
            throw ParmlError.unsupported(
                "private training with gradient compression: the compressed sum's sensitivity is not bounded by the clipping norm")
        }
        try PerExampleNorms.checkSupported(model)
        privacy = config
    }

    /// ε of (ε, δ)-DP spent by the private steps this trainer took, from
    /// the RDP accountant. Steps fit took count with q = batch size /
    /// dataset size; steps the host took with `step` count with q = 1 (no
    /// amplification by sampling is claimed for batches the trainer did not draw).
    public func privacySpent(delta: Double) throws -> Double {
        guard delta > 0, delta < 1 else { throw ParmlError.invalidArgument("delta must be in (0, 1), got \(delta)") }
        let orders = RDPAccountant.defaultOrders
        var total = [Double](repeating: 0, count: orders.count)
        for e in privacyLedger {
            if e.noiseMultiplier == 0 { return .infinity }
            let rdp = RDPAccountant.rdp(samplingRate: e.samplingRate, noiseMultiplier: e.noiseMultiplier, orders: orders)
            for k in orders.indices { total[k] += rdp[k] * Double(e.steps) }
        }
        return RDPAccountant.epsilon(orders: orders, rdp: total, delta: delta).epsilon
    }

    /// Private steps counted by the accountant.
    public var privateSteps: Int { privacyLedger.reduce(0) { $0 + $1.steps } }

    /// The private steps taken so far, in runs of equal (q, σ): what a
    /// checkpoint saves so a resumed run keeps its accounting.
    public var privacyRecord: [PrivacyLedgerEntry] { privacyLedger }

    /// Replaces the private steps counted (a checkpoint's record).
    public func restorePrivacyRecord(_ entries: [PrivacyLedgerEntry]) throws {
        for e in entries { try e.validate() }
        privacyLedger = entries
    }

    func recordPrivateStep() {
        guard let privacy else { return }
        let q = privateSamplingRate ?? 1
        if let last = privacyLedger.last, last.samplingRate == q, last.noiseMultiplier == privacy.noiseMultiplier {
            privacyLedger[privacyLedger.count - 1].steps += 1
        } else {
            privacyLedger.append(PrivacyLedgerEntry(samplingRate: q, noiseMultiplier: privacy.noiseMultiplier, steps: 1))
        }
    }

    /// Sets q and the expected batch for a private fit; true when its
    /// batches are Poisson-sampled.
    func beginPrivateFit(_ train: any BatchSource, batchSize: Int, classSampling: Bool) throws -> Bool {
        guard let privacy, train.count > 0 else { return false }
        let q = min(1, Double(batchSize) / Double(train.count))
        let poisson = privacy.sampling == .poisson
        // Refusals first: a refused fit leaves the trainer's q unset.
        if poisson && classSampling {
            throw ParmlError.unsupported("private training: Poisson sampling with class-balanced sampling; use one or the other")
        }
        if poisson && train.augmentation != nil {
            throw ParmlError.unsupported("private training: Poisson sampling with augmentation; use sampling = shuffled")
        }
        privateSamplingRate = q
        privateExpectedBatch = poisson ? q * Double(train.count) : nil
        return poisson
    }

    func endPrivateFit() {
        privateSamplingRate = nil
        privateExpectedBatch = nil
    }

    /// Epoch `epoch`'s Poisson batches: ceil(n / batch) of them, example i
    /// in batch b when uniform (b·n + i) of the epoch's stream is below q.
    func poissonBatches(_ train: any BatchSource, epoch: Int, batchSize: Int) throws -> [[Int]] {
        let n = train.count
        let q = Float(min(1, Double(batchSize) / Double(n)))
        let rng = Philox(seed: strategy.seed)
        let stream = RandomStream.privacySampling(epoch: epoch)
        return (0..<(n + batchSize - 1) / batchSize).map { b in
            (0..<n).filter { i in rng.uniform(stream: stream, index: UInt64(b * n + i)) < q }
        }
    }

    /// Copies the samples into the trainer's batch tensors; returns their count.
    func fillPoisson(_ train: any BatchSource, samples: [Int], epoch: Int) throws -> Int {
        guard !samples.isEmpty else { return 0 }
        try samples.withUnsafeBufferPointer { try train.copy(samples: $0, epoch: epoch, inputs: batchInputs, targets: batchTargets) }
        return samples.count
    }
}
