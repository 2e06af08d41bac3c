import CParmlTypes
import ParmlModel
import ParmlTensor
import ParmlTraining

// Class imbalance from C: what the loss weighs, and metrics beyond accuracy.

func defaultLossParams() -> parml_loss_params {
    let o = LossOptions()
    var p = parml_loss_params()
    p.struct_size = MemoryLayout<parml_loss_params>.size
    p.class_weights = nil
    p.num_class_weights = 0
    p.label_smoothing = o.labelSmoothing
    p.pos_weight = nil
    p.num_pos_weight = 0
    return p
}

/// Default top-k of parml_metrics_params (ImageNet's top-5).
let defaultTopK = 5

func defaultMetricsParams() -> parml_metrics_params {
    var p = parml_metrics_params()
    p.struct_size = MemoryLayout<parml_metrics_params>.size
    p.top_k = Int64(defaultTopK)
    p.capacity = 0
    return p
}

/// A caller's array of `count` floats (NULL with count 0 is none), copied.
func floats(_ p: UnsafePointer<Float>?, _ count: Int64, _ name: String) throws -> [Float]? {
    guard count >= 0, count <= Int64(Int32.max) else { throw ParmlError.invalidArgument("num_\(name) must be in 0...2^31-1, got \(count)") }
    guard let p else {
        guard count == 0 else { throw ParmlError.invalidArgument("\(name) is NULL but num_\(name) is \(count)") }
        return nil
    }
    guard count > 0 else { throw ParmlError.invalidArgument("\(name) is set but num_\(name) is 0") }
    return Array(UnsafeBufferPointer(start: p, count: Int(count)))
}

/// Fills *params with the loss defaults (no class weights, no label
/// smoothing, no pos_weight) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_loss_params_init)
public func parmlLossParamsInit(_ params: UnsafeMutablePointer<parml_loss_params>?) -> parml_status {
    guarded("parml_loss_params_init") { try nonNull(params, "params").pointee = defaultLossParams() }
}

/// Sets what the trainer's loss weighs, for the steps, fits and evaluations
/// after this call (NULL params = the defaults: a plain mean): class weights
/// and label smoothing for PARML_LOSS_CROSS_ENTROPY (a split classifier's
/// sharded loss too), pos_weight for PARML_LOSS_BCE_WITH_LOGITS. The arrays
/// are copied. Every layout trains on the same weighted mean (under MPI with
/// local batches each step sums the replicas' class counts); every process
/// sets the same options. A class-weight count other than the model's
/// classes (or pos_weight count other than its outputs) is refused by the
/// next step or evaluation with PARML_ERR_SHAPE, as is a batch whose
/// targets all weigh 0 (PARML_ERR_INVALID_ARGUMENT); nothing is trained.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, small struct_size, a NULL
/// array with a nonzero count or the reverse, a weight negative or not
/// finite, label_smoothing outside [0, 1], an option the trainer's loss
/// does not take). Since: 0.3.
@c(parml_trainer_set_loss)
public func parmlTrainerSetLoss(_ trainer: parml_trainer?, _ params: UnsafePointer<parml_loss_params>?) -> parml_status {
    guarded("parml_trainer_set_loss") {
        let t = try trainerObject(trainer)
        let p = try params.map {
            try readSized($0, defaults: defaultLossParams(), name: "params", minimum: MemoryLayout<parml_loss_params>.size)
        } ?? defaultLossParams()
        var o = LossOptions()
        o.classWeights = try floats(p.class_weights, p.num_class_weights, "class_weights")
        o.labelSmoothing = p.label_smoothing
        o.positiveWeights = try floats(p.pos_weight, p.num_pos_weight, "pos_weight")
        try t.setLossOptions(o)
    }
}

/// Fills *params with the metrics defaults (top_k 5, no per-class buffers)
/// and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_metrics_params_init)
public func parmlMetricsParamsInit(_ params: UnsafeMutablePointer<parml_metrics_params>?) -> parml_status {
    guarded("parml_metrics_params_init") { try nonNull(params, "params").pointee = defaultMetricsParams() }
}

/// Classification metrics over a dataset in inference mode, in batches of
/// batch_size (the pass of parml_trainer_evaluate): loss, accuracy, top-k
/// accuracy, macro and weighted precision, recall and F1 in *out (set
/// out->struct_size to sizeof(parml_metrics) first), and, into the
/// caller's buffers named in *params (NULL params = defaults, no buffers),
/// the confusion matrix and per-class support, precision, recall and F1.
/// out->classes says how many classes the buffers need; parml_model_output_shape
/// tells it before the call. Outputs are written only on success.
/// PARML_LOSS_CROSS_ENTROPY trainers: single-label, confusion is (C, C).
/// PARML_LOSS_BCE_WITH_LOGITS trainers: multi-label, each output a label
/// predicted when its logit is > 0 and present when its target is > 0.5;
/// "classes" are the outputs, confusion is (C, 2, 2) per label [[tn, fp],
/// [fn, tp]] (4 * C entries), accuracy is the share of label decisions that
/// are right (as parml_trainer_evaluate), top_k_accuracy is NaN, and the
/// macro means are over every label (scikit-learn's multilabel rules).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, NULL out, small
/// struct_size, batch_size outside 1...2^31-1, top_k < 1, a buffer with
/// capacity below the model's classes (the message says how many), another
/// loss, a target that is not a class index or, for binary cross-entropy,
/// not in [0, 1]), PARML_ERR_SHAPE (the dataset
/// does not fit the model), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_trainer_evaluate_metrics)
public func parmlTrainerEvaluateMetrics(
    _ trainer: parml_trainer?, _ dataset: parml_dataset?, _ batch_size: Int64, _ params: UnsafePointer<parml_metrics_params>?,
    _ out: UnsafeMutablePointer<parml_metrics>?
) -> parml_status {
    guarded("parml_trainer_evaluate_metrics") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let d = try datasetObject(dataset, inFitCallback: .allowed)
        let out = try nonNull(out, "out")
        let size = UnsafeRawPointer(out).load(as: Int.self)
        guard size >= MemoryLayout<parml_metrics>.size else {
            throw ParmlError.invalidArgument("out->struct_size is \(size); set it to sizeof(parml_metrics) first")
        }
        let p = try params.map {
            try readSized($0, defaults: defaultMetricsParams(), name: "params", minimum: MemoryLayout<parml_metrics_params>.size)
        } ?? defaultMetricsParams()
        guard p.top_k >= 1, p.top_k <= Int64(Int32.max) else { throw ParmlError.invalidArgument("params->top_k must be >= 1, got \(p.top_k)") }
        let wantsBuffers = p.confusion != nil || p.support != nil || p.precision != nil || p.recall != nil || p.f1 != nil
        guard p.capacity >= 0 else { throw ParmlError.invalidArgument("params->capacity must be >= 0, got \(p.capacity)") }
        let m = try t.evaluateMetrics(d, batchSize: positive(batch_size, "batch_size"), topK: Int(p.top_k))
        let c = m.classes
        if wantsBuffers {
            guard p.capacity >= Int64(c) else {
                throw ParmlError.invalidArgument(
                    "params->capacity is \(p.capacity) but the model has \(c) \(m.multiLabel ? "labels" : "classes"): the per-class buffers need \(c) entries, confusion \(m.confusion.count)")
            }
        }
        // The confusion rows are `classes` wide (multi-label: 4 entries a label), whatever the capacity.
        if let b = p.confusion { for (i, v) in m.confusion.enumerated() { b[i] = Int64(v) } }
        for k in 0..<c {
            p.support?[k] = Int64(m.support(k))
            p.precision?[k] = Float(m.precision(k))
            p.recall?[k] = Float(m.recall(k))
            p.f1?[k] = Float(m.f1(k))
        }
        var r = parml_metrics()
        r.struct_size = MemoryLayout<parml_metrics>.size
        r.classes = Int64(c)
        r.predictions = Int64(m.predictions)
        r.loss = m.loss
        r.accuracy = Float(m.accuracy)
        r.top_k_accuracy = Float(m.topKAccuracy)
        let macro = m.macro, weighted = m.weighted
        r.macro_precision = Float(macro.precision)
        r.macro_recall = Float(macro.recall)
        r.macro_f1 = Float(macro.f1)
        r.weighted_precision = Float(weighted.precision)
        r.weighted_recall = Float(weighted.recall)
        r.weighted_f1 = Float(weighted.f1)
        try writeSized(r, to: out, name: "out", minimum: MemoryLayout<parml_metrics>.size)
    }
}
