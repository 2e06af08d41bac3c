import CParmlTypes
import ParmlModel
import ParmlTensor
import ParmlTraining

func trainerObject(_ t: parml_trainer?, inFitCallback use: FitCallbackUse = .refused) throws -> Trainer {
    try HandleRegistry.shared.object(t, .trainer, as: Trainer.self, name: "trainer", inFitCallback: use)
}

extension Trainer: ModelOwner {
    var ownedModel: AnyObject { model }
}

/// Creates a trainer for an initialised model: `loss` is PARML_LOSS_*
/// (parml_trainer_set_loss adds class weights, label smoothing, pos_weight),
/// `optimizer` comes from parml_optimizer_params_init (NULL = its defaults),
/// `strategy` from parml_strategy_params_init (NULL = serial). The trainer
/// keeps its own reference to the model and updates its parameters in place.
/// The caller owns *out (parml_trainer_free). Under MPI every process
/// creates its trainer alike (collective).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, bad field, unknown
/// enum, small struct_size, pp (x virtual_stages) greater than the model's
/// top-level layers, interleaved 1F1B with micro_batches not a multiple of
/// pp, tp not dividing a split width: the message names the layer and the numbers;
/// MPI: a process count other than dp*pp*tp), PARML_ERR_STATE (model not
/// initialised; MPI already finalized), PARML_ERR_UNSUPPORTED (MPI backend
/// without Open MPI), PARML_ERR_BLAS (OpenBLAS cannot be loaded),
/// PARML_ERR_OUT_OF_MEMORY (also: a rank thread could not start),
/// PARML_ERR_COMMUNICATION (MPI: building the process groups failed or timed
/// out). Since: 0.1.
/// Also PARML_ERR_STATE while another ZeRO-3 trainer under MPI holds only
/// this process's shard of the model (until parml_trainer_gather_params).
@c(parml_trainer_create)
public func parmlTrainerCreate(
    _ model: parml_model?, _ loss: Int32, _ optimizer: UnsafePointer<parml_optimizer_params>?,
    _ strategy: UnsafePointer<parml_strategy_params>?, _ out: UnsafeMutablePointer<parml_trainer?>?
) -> parml_status {
    guarded("parml_trainer_create") {
        let m = try modelObject(model)
        let kind = try lossKind(loss)
        let out = try nonNull(out, "out")
        let o = try optimizer.map {
            try readSized(
                $0, defaults: defaultOptimizerParams(), name: "optimizer", minimum: MemoryLayout<parml_optimizer_params>.offset(of: \.skip_nonfinite)!)
        } ?? defaultOptimizerParams()
        let s = try strategy.map {
            // 0.1 ends before split_classifier, 0.2 before virtual_stages.
            try readSized(
                $0, defaults: defaultStrategyParams(), name: "strategy",
                minimum: MemoryLayout<parml_strategy_params>.offset(of: \.split_classifier)!,
                older: [MemoryLayout<parml_strategy_params>.offset(of: \.virtual_stages)!])
        } ?? defaultStrategyParams()
        _ = mpiBackendRegistered
        let t = try Trainer(model: m, loss: kind, optimizer: optimizerConfig(from: o), strategy: strategyConfig(from: s))
        out.pointee = HandleRegistry.shared.register(t, as: .trainer)
    }
}

/// Releases a trainer (and its reference to the model). NULL is a no-op.
/// MPI backend: freeing a trainer whose step failed ends the whole job, on
/// purpose (messages may still be in flight and peers waiting): it writes the
/// reason to stderr and calls MPI_Abort, so this call does not return and
/// mpirun stops every process. Since: 0.1.
@c(parml_trainer_free)
public func parmlTrainerFree(_ trainer: parml_trainer?) {
    HandleRegistry.shared.release(trainer, .trainer)
}

/// One optimizer step on a batch: inputs (N, ...) (float32, or integer token
/// ids for a model that starts with an embedding) and targets ((N) or (N, T)
/// class indices for cross-entropy: int32, int64 or float32; values of the
/// output's shape for MSE, and in [0, 1] for binary cross-entropy, integers
/// compared as floats). Integer tensors are
/// converted into buffers the
/// trainer keeps, so such steps allocate nothing once sized. Writes the batch's
/// mean loss (before the update) to *loss_out when it is not NULL.
/// A batch refused by the checks (shape, target, local rows) changes nothing.
/// A step whose loss or gradients hold a NaN or an infinity is skipped on
/// every rank: it changes nothing (parameters, optimizer state, step count),
/// returns PARML_ERR_NONFINITE naming the step and where the value first
/// showed up, and the trainer stays usable (optimizer skip_nonfinite = 0
/// turns the check off). Any other failure after the ranks have started
/// leaves the trainer unusable (its ranks may disagree): later steps return
/// PARML_ERR_STATE; create a new trainer (MPI: freeing this one ends the
/// job, see parml_trainer_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles; a target that is not a class
/// index), PARML_ERR_SHAPE, PARML_ERR_STATE (an earlier step failed),
/// PARML_ERR_NONFINITE (since 0.3), PARML_ERR_COMMUNICATION (a rank failed
/// or timed out: every rank returns it, the message names the rank and the
/// call), PARML_ERR_OUT_OF_MEMORY. Since: 0.1.
@c(parml_trainer_step)
public func parmlTrainerStep(
    _ trainer: parml_trainer?, _ inputs: parml_tensor?, _ targets: parml_tensor?, _ loss_out: UnsafeMutablePointer<Float>?
) -> parml_status {
    guarded("parml_trainer_step") {
        let t = try trainerObject(trainer)
        let x = try engineInputs(tensorObject(inputs, "inputs"), scratch: t.conversion.inputs)
        let y = try engineTargets(tensorObject(targets, "targets"), scratch: t.conversion.targets)
        let r = try t.step(inputs: x, targets: y)
        loss_out?.pointee = r.loss
    }
}

/// Trains over `train` for params->epochs more epochs of params->batch_size
/// samples (NULL params = parml_fit_params_init defaults). The data order
/// continues from the trainer's epoch count (parml_trainer_epoch_count), so
/// several calls, or a resumed checkpoint, train as one longer call
/// (params->class_sampling_weights, since 0.3, draws class-balanced epochs
/// with replacement instead, also from (seed, epoch)). A dataset with
/// sample weights (parml_dataset_with_sample_weights) weighs each sample's
/// loss (not with DP-SGD: PARML_ERR_INVALID_ARGUMENT). After
/// each epoch the built-in callbacks run (params->callbacks: early
/// stopping, keep-best checkpoint, reduce-on-plateau; since 0.3), then
/// params->progress (if set) gets that epoch's metrics (and, with
/// params->callback_every_steps, the running metrics after such steps);
/// returning nonzero stops training with PARML_ERR_CANCELLED (the epochs
/// done stay applied; a stop after a step leaves its epoch uncounted). A
/// skipped step (PARML_ERR_NONFINITE) stops it too; that epoch does not
/// count as completed. Early stopping ends fit with PARML_OK. The callback
/// runs on the calling thread and, since 0.3, may use this trainer, its
/// model and fit's datasets to read and save: evaluate, save a model or
/// checkpoint, read parameters, predict, and set the learning rate; calls
/// that would change what fit runs on (step, fit, load a checkpoint, set
/// parameters, add layers, init) return PARML_ERR_STATE. Freeing the trainer
/// from the callback makes fit stop after it with PARML_ERR_STATE (the
/// trainer lives until fit returns). MPI: the callback runs on every
/// process; collective calls in it (save a checkpoint) must be made by all.
/// When last_out is not NULL it receives the last epoch's metrics; set
/// last_out->struct_size to sizeof(parml_epoch_metrics) first (a 0.2 size
/// gets the 0.2 fields).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, a bad params or callbacks
/// field, a monitor of validation metrics without params->validation or of
/// accuracy under MSE, small last_out->struct_size, no batch with drop_last,
/// a target that is not a class index; class sampling weights that are
/// negative, not finite, all 0 for the dataset's classes, fewer than its
/// classes, or given for a dataset without class indices), PARML_ERR_SHAPE
/// (a dataset does not fit the model), PARML_ERR_CANCELLED, PARML_ERR_STATE
/// (the trainer was freed by the callback), PARML_ERR_IO (the keep-best
/// file could not be written), and a failing step's codes
/// (parml_trainer_step; the steps before it stay applied). Since: 0.1.
@c(parml_trainer_fit)
public func parmlTrainerFit(
    _ trainer: parml_trainer?, _ train: parml_dataset?, _ params: UnsafePointer<parml_fit_params>?,
    _ last_out: UnsafeMutablePointer<parml_epoch_metrics>?
) -> parml_status {
    guarded("parml_trainer_fit") {
        let t = try trainerObject(trainer)
        let data = try datasetObject(train, "train")
        let p = try params.map {
            // 0.1 and 0.2 end before class_sampling_weights, early 0.3 before callback_every_steps.
            try readSized(
                $0, defaults: defaultFitParams(), name: "params",
                minimum: MemoryLayout<parml_fit_params>.offset(of: \.class_sampling_weights)!,
                older: [MemoryLayout<parml_fit_params>.offset(of: \.callback_every_steps)!])
        } ?? defaultFitParams()
        let validation = try p.validation.map { try datasetObject($0, "params->validation") }
        let metricsMinimum = MemoryLayout<parml_epoch_metrics>.offset(of: \.epoch_step)!  // 0.2's struct
        if let last_out {
            let size = UnsafeRawPointer(last_out).load(as: Int.self)
            guard size >= metricsMinimum else {
                throw ParmlError.invalidArgument("last_out->struct_size is \(size); set it to sizeof(parml_epoch_metrics) first")
            }
        }
        guard p.epochs >= 1, p.epochs <= Int64(Int32.max) else {
            throw ParmlError.invalidArgument("params->epochs must be in 1...2^31-1, got \(p.epochs)")
        }
        guard p.batch_size >= 1, p.batch_size <= Int64(Int32.max) else {
            throw ParmlError.invalidArgument("params->batch_size must be in 1...2^31-1, got \(p.batch_size)")
        }
        var options = FitOptions()
        options.epochs = Int(p.epochs)
        options.batchSize = Int(p.batch_size)
        options.shuffle = p.shuffle != 0
        options.dropLast = p.drop_last != 0
        options.classSamplingWeights = try floats(p.class_sampling_weights, p.num_class_sampling_weights, "class_sampling_weights")
        var callbacks = try fitCallbacks(p.callbacks, trainer: t)
        callbacks.everySteps = try count(p.callback_every_steps, "callback_every_steps")
        if let callback = p.progress {
            let userData = p.user_data
            callbacks.progress = { m in
                var c = cMetrics(m)
                // The callback may use the handles this call holds to read and save (Handles.swift).
                let go = HandleRegistry.shared.lend { callback(&c, userData) == 0 }
                guard HandleRegistry.shared.isLive(trainer, .trainer) else {
                    throw ParmlError.state("the trainer was freed inside its fit callback; fit stopped after epoch \(m.epoch) step \(m.steps)")
                }
                return go
            }
        }
        let last = try t.fit(data, options: options, validation: validation, callbacks: callbacks)
        if let last_out { try writeSized(cMetrics(last), to: last_out, name: "last_out", minimum: metricsMinimum) }
    }
}

func cMetrics(_ m: EpochMetrics) -> parml_epoch_metrics {
    var c = parml_epoch_metrics()
    c.struct_size = MemoryLayout<parml_epoch_metrics>.size
    c.epoch = Int64(m.epoch)
    c.epochs = Int64(m.epochs)
    c.steps = Int64(m.steps)
    c.train_loss = m.trainLoss
    c.train_accuracy = m.trainAccuracy
    c.val_loss = m.validationLoss
    c.val_accuracy = m.validationAccuracy
    c.learning_rate = m.learningRate
    c.seconds = m.seconds
    c.samples_per_second = m.samplesPerSecond
    c.epoch_step = Int64(m.epochStep)
    c.end_of_epoch = m.endOfEpoch ? 1 : 0
    c.events = m.events.rawValue
    c.best_epoch = Int64(m.bestEpoch)
    c.privacy_epsilon = m.privacyEpsilon
    return c
}

/// Mean loss and accuracy over a dataset in inference mode, in batches of
/// batch_size. Accuracy is over predictions: one per sample, or one per
/// position for a sequence's logits (N, T, C), one per output for binary
/// cross-entropy; accuracy_out gets NaN for MSE. With class weights or a
/// dataset's sample weights (parml_dataset_with_sample_weights) the loss is
/// the weighted mean over the whole dataset; accuracy is not weighted. Either output may be
/// NULL. parml_trainer_evaluate_metrics measures more.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, batch_size outside
/// 1...2^31-1, a target that is not a class index), PARML_ERR_SHAPE (the
/// dataset does not fit the model), PARML_ERR_OUT_OF_MEMORY. Since: 0.1.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_trainer_evaluate)
public func parmlTrainerEvaluate(
    _ trainer: parml_trainer?, _ dataset: parml_dataset?, _ batch_size: Int64, _ loss_out: UnsafeMutablePointer<Float>?,
    _ accuracy_out: UnsafeMutablePointer<Float>?
) -> parml_status {
    guarded("parml_trainer_evaluate") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let d = try datasetObject(dataset, inFitCallback: .allowed)
        let r = try t.evaluate(d, batchSize: positive(batch_size, "batch_size"))
        loss_out?.pointee = r.loss
        accuracy_out?.pointee = t.loss.classifies ? Float(r.correct) / Float(r.predictions) : .nan
    }
}

/// Optimizer steps taken so far in *steps_out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL steps_out). Since: 0.1.
@c(parml_trainer_step_count)
public func parmlTrainerStepCount(_ trainer: parml_trainer?, _ steps_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_trainer_step_count") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        try nonNull(steps_out, "steps_out").pointee = Int64(t.stepCount)
    }
}

/// Epochs parml_trainer_fit has completed on this trainer, over all its
/// calls and restored from checkpoints, in *epochs_out. With the strategy's
/// seed it fixes the next epoch's data order, so fit over 2 epochs twice
/// trains as fit over 4 once.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL epochs_out). Since: 0.3.
@c(parml_trainer_epoch_count)
public func parmlTrainerEpochCount(_ trainer: parml_trainer?, _ epochs_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_trainer_epoch_count") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        try nonNull(epochs_out, "epochs_out").pointee = Int64(t.epochCount)
    }
}

/// Steps this trainer skipped because their loss or gradients held a NaN or
/// an infinity (each returned PARML_ERR_NONFINITE and updated nothing), in
/// *skipped_out; skipped steps are not in parml_trainer_step_count.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL skipped_out). Since: 0.3.
@c(parml_trainer_skipped_steps)
public func parmlTrainerSkippedSteps(_ trainer: parml_trainer?, _ skipped_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_trainer_skipped_steps") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        try nonNull(skipped_out, "skipped_out").pointee = Int64(t.skippedSteps)
    }
}

/// The learning rate the next step will use (after schedule and warmup).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL lr_out). Since: 0.1.
@c(parml_trainer_learning_rate)
public func parmlTrainerLearningRate(_ trainer: parml_trainer?, _ lr_out: UnsafeMutablePointer<Float>?) -> parml_status {
    guarded("parml_trainer_learning_rate") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        try nonNull(lr_out, "lr_out").pointee = t.learningRate
    }
}

/// Makes the next step use learning rate `lr` (finite, > 0) and keeps the
/// schedule's shape from there: later steps use lr * schedule(s) /
/// schedule(now), so a step or cosine schedule goes on decaying from the
/// new rate (a constant one stays at lr). It is a factor on the schedule,
/// training state that checkpoints carry (loading one restores it). May
/// be called from a fit
/// callback (reduce-on-plateau does the same). MPI: call it on every
/// process alike.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, lr not finite or <= 0),
/// PARML_ERR_STATE (the schedule's rate is 0 now: a cosine past its end
/// with min_lr 0). Since: 0.3.
@c(parml_trainer_set_learning_rate)
public func parmlTrainerSetLearningRate(_ trainer: parml_trainer?, _ lr: Float) -> parml_status {
    guarded("parml_trainer_set_learning_rate") {
        try trainerObject(trainer, inFitCallback: .allowed).setLearningRate(lr)
    }
}

/// Memory rank `rank` (0..dp*pp*tp-1) of the trainer holds: parameters
/// (its pipeline stage's slice; its shard of that under ZeRO-3 on the
/// threads backend; under ZeRO-3 with MPI and tp = 1, its shard plus the
/// largest layer's part outside it, gathered while that layer runs), gradients (its stage's slice; under ZeRO >= 2 in the
/// default mode, where handing pages back lowers the data group's peak,
/// its shard plus the largest gradient bucket, the rest of the slice's
/// pages being handed back as backward reduces each bucket, each
/// micro-batch's with several), optimizer state (1/dp of that under ZeRO >= 1),
/// scratch and activations (high-water, since 0.2). Set out->struct_size to sizeof(parml_memory_report) first (a 0.1
/// size gets the 0.1 fields). Under MPI a process answers for its own rank
/// only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, small struct_size,
/// rank outside the mesh or, under MPI, another process's rank). Since: 0.1.
@c(parml_trainer_memory)
public func parmlTrainerMemory(_ trainer: parml_trainer?, _ rank: Int32, _ out: UnsafeMutablePointer<parml_memory_report>?) -> parml_status {
    guarded("parml_trainer_memory") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let out = try nonNull(out, "out")
        let m = try t.memory(rank: Int(rank))
        var r = parml_memory_report()
        r.struct_size = MemoryLayout<parml_memory_report>.size
        r.parameter_bytes = Int64(m.parameters)
        r.gradient_bytes = Int64(m.gradients)
        r.optimizer_bytes = Int64(m.optimizer)
        r.scratch_bytes = Int64(m.scratch)
        r.activation_bytes = Int64(m.activations)
        // A 0.1 caller's struct ends before activation_bytes: fill what it has.
        try writeSized(r, to: out, name: "out", minimum: MemoryLayout<parml_memory_report>.offset(of: \.activation_bytes)!)
    }
}

/// The execution plan as text in *text_out, NUL-terminated: the dp x pp x tp
/// mesh, which layers and parameter slice each rank holds, what a step
/// exchanges (send/recv, all-reduce, reduce-scatter, all-gather) and each
/// rank's memory. The caller frees it with parml_buffer_free. The wording is
/// for people and may change; do not parse it.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL text_out),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
@c(parml_trainer_plan)
public func parmlTrainerPlan(_ trainer: parml_trainer?, _ text_out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> parml_status {
    guarded("parml_trainer_plan") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let out = try nonNull(text_out, "text_out")
        out.pointee = try cString(t.planDescription)
    }
}

/// Starts (nonzero `enabled`, discarding what was recorded) or stops
/// recording every rank's timeline: forward and backward per micro-batch,
/// send, waits in receive (pipeline bubbles), gradient reduction, optimizer.
/// The environment variable PARML_TRACE=path turns recording on for every
/// trainer and writes the timeline to path when the trainer is freed.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle). Since: 0.2.
@c(parml_trainer_set_trace)
public func parmlTrainerSetTrace(_ trainer: parml_trainer?, _ enabled: Int32) -> parml_status {
    guarded("parml_trainer_set_trace") {
        try trainerObject(trainer, inFitCallback: .allowed).setTracing(enabled != 0)
    }
}

/// Writes the recorded timeline to `path` as Chrome trace JSON (open it in
/// Perfetto or chrome://tracing): one track per rank, one slice per event,
/// labelled with micro-batch, stage and step.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL path), PARML_ERR_IO.
/// Since: 0.2.
@c(parml_trainer_write_trace)
public func parmlTrainerWriteTrace(_ trainer: parml_trainer?, _ path: UnsafePointer<CChar>?) -> parml_status {
    guarded("parml_trainer_write_trace") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let p = try nonNull(path, "path")
        try t.writeChromeTrace(to: String(cString: p))
    }
}

/// MPI: with `enabled` nonzero, each process passes parml_trainer_step and
/// parml_trainer_fit only the rows of its data-parallel replica (the
/// processes of one replica pass the same rows) instead of the global
/// batch; the global batch is the replicas' rows in replica order, and its
/// rows must be the ones parml_trainer_data_rows gives (a step with other
/// rows fails on every process with PARML_ERR_SHAPE). Each step exchanges
/// the replicas' row counts.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle; enabling it on the threads
/// backend). Since: 0.2.
@c(parml_trainer_set_local_batches)
public func parmlTrainerSetLocalBatches(_ trainer: parml_trainer?, _ enabled: Int32) -> parml_status {
    guarded("parml_trainer_set_local_batches") {
        try trainerObject(trainer).setLocalBatches(enabled != 0)
    }
}

/// The rows [*start_out, *start_out + *count_out) of a global batch of
/// `global_samples` that this process's data-parallel replica trains on:
/// what to pass with local batches. On the threads backend every replica is
/// in the process: all rows.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, negative count, NULL
/// out-pointer). Since: 0.2.
@c(parml_trainer_data_rows)
public func parmlTrainerDataRows(
    _ trainer: parml_trainer?, _ global_samples: Int64, _ start_out: UnsafeMutablePointer<Int64>?,
    _ count_out: UnsafeMutablePointer<Int64>?
) -> parml_status {
    guarded("parml_trainer_data_rows") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let start = try nonNull(start_out, "start_out"), count = try nonNull(count_out, "count_out")
        let rows = try t.dataRows(globalSamples: Int(global_samples))
        start.pointee = Int64(rows.lowerBound)
        count.pointee = Int64(rows.count)
    }
}
