import CParmlTypes
import ParmlData
import ParmlTensor
import ParmlTraining

/// A dataset of the same samples as `dataset` (shared, not copied: the new
/// handle keeps them alive, and borrowed host memory must outlive it too)
/// carrying one loss weight per sample (Keras's sample_weight=), copied
/// from `weights` (`count` floats, the dataset's size). parml_trainer_fit
/// and parml_trainer_evaluate then take the weighted mean
/// sum(w[i] * loss[i]) / sum(w[i]) over each batch, w[i] = the sample's
/// weight times its target's class weight (docs/data.md, "Sample weights"). The weights
/// follow their samples through shuffling, class-balanced sampling and
/// parml_dataset_split. The augmentation comes along. NULL weights with
/// count 0 give the samples without weights. The caller owns *out
/// (parml_dataset_free); `dataset` stays the caller's, unchanged.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, a token dataset
/// or shard stream, count not the dataset's size, a weight negative or not
/// finite, every weight 0), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_dataset_with_sample_weights)
public func parmlDatasetWithSampleWeights(
    _ dataset: parml_dataset?, _ weights: UnsafePointer<Float>?, _ count: Int64, _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_with_sample_weights") {
        let source = try datasetObject(dataset, inFitCallback: .allowed)
        let out = try nonNull(out, "out")
        guard let d = source as? Dataset else {
            throw ParmlError.invalidArgument(
                "sample weights need a dataset of samples in memory; this one cuts token windows or streams shards")
        }
        let w = try floats(weights, count, "weights")
        let weighted = try d.withSampleWeights(w)
        out.pointee = HandleRegistry.shared.register(weighted, as: .dataset)
    }
}

/// parml_trainer_step with one loss weight per sample: `sample_weights`
/// holds `count` floats (N, the batch's rows; with local batches this
/// process's rows), finite and >= 0. The loss is
/// sum(w[i] * loss[i]) / sum(w[i]) over the global batch, w[i] the sample's
/// weight times its target's class weight (a
/// sequence's positions each count with their sample's weight), the same
/// in every layout; *loss_out gets it. The weights are read during the call
/// only. Local batches: every process passes weights or none does.
/// Errors: parml_trainer_step's, and PARML_ERR_INVALID_ARGUMENT (NULL
/// sample_weights, a weight negative or not finite, every weight of the
/// global batch 0, DP-SGD on), PARML_ERR_SHAPE (count is not N). Since: 0.3.
@c(parml_trainer_step_weighted)
public func parmlTrainerStepWeighted(
    _ trainer: parml_trainer?, _ inputs: parml_tensor?, _ targets: parml_tensor?, _ sample_weights: UnsafePointer<Float>?,
    _ count: Int64, _ loss_out: UnsafeMutablePointer<Float>?
) -> parml_status {
    guarded("parml_trainer_step_weighted") {
        let t = try trainerObject(trainer)
        let x = try engineInputs(tensorObject(inputs, "inputs"), scratch: t.conversion.inputs)
        let y = try engineTargets(tensorObject(targets, "targets"), scratch: t.conversion.targets)
        let p = try nonNull(sample_weights, "sample_weights")
        guard count >= 0, count <= Int64(Int32.max) else { throw ParmlError.invalidArgument("count must be in 0...2^31-1, got \(count)") }
        let w = t.stepWeights
        try w.resize(Shape(Int(count)))  // the trainer's buffer: allocates only when it must grow
        w.data.update(from: p, count: Int(count))
        let r = try t.step(inputs: x, targets: y, sampleWeights: w)
        loss_out?.pointee = r.loss
    }
}
