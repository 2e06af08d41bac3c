import ParmlData
import ParmlTensor

/// An epoch metric a built-in callback watches.
public enum MonitoredMetric: Int32, Sendable {
    case validationLoss = 1, validationAccuracy = 2, trainLoss = 3, trainAccuracy = 4

    var name: String {
        switch self {
        case .validationLoss: "val_loss"
        case .validationAccuracy: "val_accuracy"
        case .trainLoss: "train_loss"
        case .trainAccuracy: "train_accuracy"
        }
    }

    func value(_ m: EpochMetrics) -> Float {
        switch self {
        case .validationLoss: m.validationLoss
        case .validationAccuracy: m.validationAccuracy
        case .trainLoss: m.trainLoss
        case .trainAccuracy: m.trainAccuracy
        }
    }

    var needsValidation: Bool { self == .validationLoss || self == .validationAccuracy }
}

/// Whether a smaller or a larger value is better; auto: smaller for a
/// loss, larger for an accuracy (Keras's mode="auto").
public enum MonitorMode: Int32, Sendable {
    case auto = 0, min = 1, max = 2
}

/// A metric, its direction and the margin an improvement must beat
/// (Keras: min mode improves when value < best - min_delta). NaN never
/// improves, so a diverged epoch counts as a bad one.
public struct Monitor: Sendable {
    public var metric: MonitoredMetric
    public var mode: MonitorMode = .auto
    public var minDelta: Float = 0

    public init(_ metric: MonitoredMetric, mode: MonitorMode = .auto, minDelta: Float = 0) {
        self.metric = metric
        self.mode = mode
        self.minDelta = minDelta
    }

    var minimizes: Bool {
        switch mode {
        case .min: true
        case .max: false
        case .auto: metric == .validationLoss || metric == .trainLoss
        }
    }

    /// Whether `value` beats `best` (nil: nothing seen yet).
    func improves(_ value: Float, on best: Float?) -> Bool {
        guard value.isFinite else { return false }
        guard let best else { return true }
        return minimizes ? value < best - minDelta : value > best + minDelta
    }

    func validate(name: String, hasValidation: Bool, classifies: Bool) throws {
        guard minDelta.isFinite, minDelta >= 0 else {
            throw ParmlError.invalidArgument("\(name): min_delta must be finite and >= 0, got \(minDelta)")
        }
        if metric.needsValidation && !hasValidation {
            throw ParmlError.invalidArgument("\(name) monitors \(metric.name), but fit has no validation dataset")
        }
        if (metric == .validationAccuracy || metric == .trainAccuracy) && !classifies {
            throw ParmlError.invalidArgument("\(name) monitors \(metric.name), which this trainer's loss does not measure")
        }
    }
}

/// Keras's EarlyStopping: stops fit once `patience` epochs in a row (at
/// least one) did not improve the monitored value; with
/// `restoreBestWeights` the model ends fit with the best epoch's
/// parameters (copied at that epoch's end, so bit for bit).
public struct EarlyStoppingConfig: Sendable {
    public var monitor: Monitor
    public var patience = 0
    public var restoreBestWeights = false
    public init(monitor: Monitor) { self.monitor = monitor }
}

/// Keras's ModelCheckpoint: after each epoch whose monitored value
/// improves (or every epoch without `bestOnly`), the fit's `save` hook
/// writes the model or checkpoint (the C layer decides the file kind).
public struct KeepBestConfig: Sendable {
    public var monitor: Monitor
    public var bestOnly = true
    public init(monitor: Monitor) { self.monitor = monitor }
}

/// Keras's ReduceLROnPlateau: after `patience` epochs in a row without
/// improvement (cooldown epochs after a reduction do not count), the
/// learning rate becomes max(lr × factor, minLearningRate).
public struct ReduceOnPlateauConfig: Sendable {
    public var monitor: Monitor
    public var factor: Float = 0.1
    public var patience = 10
    public var cooldown = 0
    public var minLearningRate: Float = 0
    public init(monitor: Monitor) { self.monitor = monitor }
}

/// What happened at an epoch's end, as the bits of parml_epoch_metrics.events.
public struct FitEvents: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    /// The keep-best callback wrote its file after this epoch.
    public static let saved = FitEvents(rawValue: 1)
    /// Reduce-on-plateau lowered the learning rate after this epoch.
    public static let learningRateReduced = FitEvents(rawValue: 2)
    /// Early stopping ends fit after this epoch.
    public static let stopping = FitEvents(rawValue: 4)
    /// Early stopping's monitored value improved: the best epoch so far.
    public static let best = FitEvents(rawValue: 8)
}

/// The callbacks of one fit call: the built-ins, run in this order at
/// each epoch's end, then the host's `progress` (which sees what they did
/// in the metrics' events); `progress` also runs after every
/// `everySteps`-th step (the trainer's step count), with end_of_epoch off.
/// It returns false to stop, and may throw to stop with that error.
public struct FitCallbacks {
    public var keepBest: KeepBestConfig?
    public var reduceOnPlateau: ReduceOnPlateauConfig?
    public var earlyStopping: EarlyStoppingConfig?
    /// Writes the keep-best file (a model file or a checkpoint).
    public var save: ((EpochMetrics) throws -> Void)?
    public var everySteps = 0
    public var progress: ((EpochMetrics) throws -> Bool)?
    public init() {}

    func validate(hasValidation: Bool, classifies: Bool) throws {
        guard everySteps >= 0 else { throw ParmlError.invalidArgument("callback_every_steps must be >= 0, got \(everySteps)") }
        if let k = keepBest {
            try k.monitor.validate(name: "keep-best checkpoint", hasValidation: hasValidation, classifies: classifies)
            guard save != nil else { throw ParmlError.internal("keep-best checkpoint without a save hook") }
        }
        if let r = reduceOnPlateau {
            try r.monitor.validate(name: "reduce-on-plateau", hasValidation: hasValidation, classifies: classifies)
            guard r.factor > 0, r.factor < 1 else { throw ParmlError.invalidArgument("reduce-on-plateau: factor must be in (0, 1), got \(r.factor)") }
            guard r.patience >= 0, r.cooldown >= 0 else {
                throw ParmlError.invalidArgument("reduce-on-plateau: patience and cooldown must be >= 0, got \(r.patience) and \(r.cooldown)")
            }
            guard r.minLearningRate.isFinite, r.minLearningRate >= 0 else {
                throw ParmlError.invalidArgument("reduce-on-plateau: min_lr must be finite and >= 0, got \(r.minLearningRate)")
            }
        }
        if let e = earlyStopping {
            try e.monitor.validate(name: "early stopping", hasValidation: hasValidation, classifies: classifies)
            guard e.patience >= 0 else { throw ParmlError.invalidArgument("early stopping: patience must be >= 0, got \(e.patience)") }
        }
    }
}

/// The built-ins' counters during one fit call (they start afresh with
/// each call, as Keras's callbacks do with each model.fit).
struct FitCallbackState {
    var keepBestValue: Float?
    var plateauBest: Float?
    var plateauWait = 0
    var cooldownLeft = 0
    var stoppingBest: Float?
    var stoppingWait = 0
    /// Early stopping's best epoch (of this call, 1-based) and its parameters.
    var bestEpoch = 0
    var bestParameters: [Float]?
}

extension Trainer {
    /// Runs the built-ins after an epoch; returns what they did.
    func runBuiltIns(_ c: FitCallbacks, _ s: inout FitCallbackState, _ m: EpochMetrics) throws -> FitEvents {
        var events: FitEvents = []
        if let k = c.keepBest, let save = c.save {
            let v = k.monitor.metric.value(m)
            let better = k.monitor.improves(v, on: s.keepBestValue)
            if better { s.keepBestValue = v }
            if better || !k.bestOnly {
                try save(m)
                events.insert(.saved)
            }
        }
        if let r = c.reduceOnPlateau {
            let v = r.monitor.metric.value(m)
            if s.cooldownLeft > 0 {
                s.cooldownLeft -= 1
                s.plateauWait = 0
            }
            if r.monitor.improves(v, on: s.plateauBest) {
                s.plateauBest = v
                s.plateauWait = 0
            } else if s.cooldownLeft == 0 {
                s.plateauWait += 1
                if s.plateauWait >= max(r.patience, 1) {
                    let old = learningRate
                    if old > r.minLearningRate {
                        try setLearningRate(max(old * r.factor, r.minLearningRate))
                        events.insert(.learningRateReduced)
                    }
                    s.cooldownLeft = r.cooldown
                    s.plateauWait = 0
                }
            }
        }
        if let e = c.earlyStopping {
            let v = e.monitor.metric.value(m)
            if e.monitor.improves(v, on: s.stoppingBest) {
                s.stoppingBest = v
                s.stoppingWait = 0
                s.bestEpoch = m.epoch
                events.insert(.best)
                if e.restoreBestWeights, let p = model.parameters {
                    if s.bestParameters == nil { s.bestParameters = [Float](repeating: 0, count: p.count) }
                    s.bestParameters!.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: p.data, count: p.count) }
                }
            } else {
                s.stoppingWait += 1
                if s.stoppingWait >= max(e.patience, 1) { events.insert(.stopping) }
            }
        }
        return events
    }

    /// Early stopping with restore: puts the best epoch's parameters back
    /// (the replicas take them at the next step, as after set_params).
    func restoreBest(_ s: FitCallbackState) throws {
        guard let best = s.bestParameters else { return }
        try best.withUnsafeBufferPointer { try model.setParameters(from: $0.baseAddress!) }
    }
}

extension Trainer {
    /// `fit` with a progress callback only.
    @discardableResult
    public func fit(
        _ train: any BatchSource, options: FitOptions, validation: (any BatchSource)? = nil,
        progress: @escaping (EpochMetrics) throws -> Bool
    ) throws -> EpochMetrics {
        var c = FitCallbacks()
        c.progress = progress
        return try fit(train, options: options, validation: validation, callbacks: c)
    }
}
