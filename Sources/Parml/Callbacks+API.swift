import CParmlTypes
import ParmlSerialization
import ParmlTensor
import ParmlTraining

// The built-in callbacks of parml_trainer_fit: their C options, read into
// the engine's FitCallbacks (the engine decides when; this layer writes
// the keep-best file, since file formats live above the engine).

func defaultCallbackParams() -> parml_callback_params {
    let stop = EarlyStoppingConfig(monitor: Monitor(.validationLoss))
    let keep = KeepBestConfig(monitor: Monitor(.validationLoss))
    let plateau = ReduceOnPlateauConfig(monitor: Monitor(.validationLoss, minDelta: 1e-4))
    var p = parml_callback_params()
    p.struct_size = MemoryLayout<parml_callback_params>.size
    p.early_stopping_monitor = 0
    p.early_stopping_mode = stop.monitor.mode.rawValue
    p.early_stopping_min_delta = stop.monitor.minDelta
    p.early_stopping_patience = Int64(stop.patience)
    p.restore_best_weights = stop.restoreBestWeights ? 1 : 0
    p.checkpoint_monitor = 0
    p.checkpoint_mode = keep.monitor.mode.rawValue
    p.checkpoint_min_delta = keep.monitor.minDelta
    p.checkpoint_best_only = keep.bestOnly ? 1 : 0
    p.checkpoint_training_state = 0
    p.checkpoint_path = nil
    p.reduce_lr_monitor = 0
    p.reduce_lr_mode = plateau.monitor.mode.rawValue
    p.reduce_lr_min_delta = plateau.monitor.minDelta
    p.reduce_lr_factor = plateau.factor
    p.reduce_lr_patience = Int64(plateau.patience)
    p.reduce_lr_cooldown = Int64(plateau.cooldown)
    p.reduce_lr_min_lr = plateau.minLearningRate
    return p
}

/// Fills *params with the built-in callbacks off (every monitor
/// PARML_MONITOR_NONE) and Keras's defaults for the rest (early stopping:
/// patience 0, min_delta 0, no restore; keep-best: best only, a model
/// file; reduce-on-plateau: factor 0.1, patience 10, min_delta 1e-4,
/// cooldown 0, min_lr 0), and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_callback_params_init)
public func parmlCallbackParamsInit(_ params: UnsafeMutablePointer<parml_callback_params>?) -> parml_status {
    guarded("parml_callback_params_init") { try nonNull(params, "params").pointee = defaultCallbackParams() }
}

/// A monitor from its C fields; nil when `metric` is PARML_MONITOR_NONE.
private func monitor(_ metric: Int32, _ mode: Int32, _ minDelta: Float, _ name: String) throws -> Monitor? {
    if metric == 0 { return nil }
    guard let m = MonitoredMetric(rawValue: metric) else {
        throw ParmlError.invalidArgument(
            "\(name)_monitor \(metric) is unknown (PARML_MONITOR_NONE, _VAL_LOSS, _VAL_ACCURACY, _TRAIN_LOSS or _TRAIN_ACCURACY)")
    }
    guard let d = MonitorMode(rawValue: mode) else {
        throw ParmlError.invalidArgument("\(name)_mode \(mode) is unknown (PARML_MODE_AUTO, _MIN or _MAX)")
    }
    return Monitor(m, mode: d, minDelta: minDelta)
}

private func flag(_ v: Int32, _ name: String) throws -> Bool {
    guard v == 0 || v == 1 else { throw ParmlError.invalidArgument("\(name) must be 0 or 1, got \(v)") }
    return v == 1
}

/// A count from C: in 0...2^31-1.
func count(_ v: Int64, _ name: String) throws -> Int {
    guard v >= 0, v <= Int64(Int32.max) else { throw ParmlError.invalidArgument("\(name) must be in 0...2^31-1, got \(v)") }
    return Int(v)
}

/// The engine's callbacks for `trainer` from the caller's struct (NULL: none).
func fitCallbacks(_ params: UnsafePointer<parml_callback_params>?, trainer: Trainer) throws -> FitCallbacks {
    var c = FitCallbacks()
    guard let params else { return c }
    let p = try readSized(params, defaults: defaultCallbackParams(), name: "params->callbacks", minimum: MemoryLayout<parml_callback_params>.size)
    if let m = try monitor(p.early_stopping_monitor, p.early_stopping_mode, p.early_stopping_min_delta, "early_stopping") {
        var e = EarlyStoppingConfig(monitor: m)
        e.patience = try count(p.early_stopping_patience, "early_stopping_patience")
        e.restoreBestWeights = try flag(p.restore_best_weights, "restore_best_weights")
        c.earlyStopping = e
    }
    if let m = try monitor(p.checkpoint_monitor, p.checkpoint_mode, p.checkpoint_min_delta, "checkpoint") {
        var k = KeepBestConfig(monitor: m)
        k.bestOnly = try flag(p.checkpoint_best_only, "checkpoint_best_only")
        let state = try flag(p.checkpoint_training_state, "checkpoint_training_state")
        guard p.checkpoint_path != nil else { throw ParmlError.invalidArgument("checkpoint_monitor is set but checkpoint_path is NULL") }
        let path = try pathString(p.checkpoint_path)
        c.keepBest = k
        // A checkpoint is collective (world rank 0 writes); a model file is
        // written by world rank 0 only, so MPI processes do not race on it.
        c.save = { _ in
            if state {
                try CheckpointFile.write(trainer, to: path)
            } else if trainer.writesCheckpointFiles {
                try ModelFile.write(trainer.model, to: path)
            }
        }
    }
    if let m = try monitor(p.reduce_lr_monitor, p.reduce_lr_mode, p.reduce_lr_min_delta, "reduce_lr") {
        var r = ReduceOnPlateauConfig(monitor: m)
        r.factor = p.reduce_lr_factor
        r.patience = try count(p.reduce_lr_patience, "reduce_lr_patience")
        r.cooldown = try count(p.reduce_lr_cooldown, "reduce_lr_cooldown")
        r.minLearningRate = p.reduce_lr_min_lr
        c.reduceOnPlateau = r
    }
    return c
}
