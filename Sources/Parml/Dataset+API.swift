import CParmlTypes
import ParmlData
import ParmlTensor

/// The samples behind a dataset handle: a `Dataset` or a `TokenDataset`.
func datasetObject(_ d: parml_dataset?, _ name: String = "dataset", inFitCallback use: FitCallbackUse = .refused) throws -> any BatchSource {
    let object = try HandleRegistry.shared.object(d, .dataset, as: AnyObject.self, name: name, inFitCallback: use)
    guard let source = object as? any BatchSource else { throw ParmlError.internal("\(name) holds no samples") }
    return source
}

/// Loads an image/label pair of IDX files (the MNIST format; gzipped or
/// plain): inputs (N, rows, cols) scaled to [0, 1], targets (N) int32 class
/// indices.
/// The caller owns *out (parml_dataset_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out), PARML_ERR_IO
/// (cannot open or read), PARML_ERR_FORMAT (corrupt, truncated, counts
/// differ, a label that is not a class index), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.1.
@c(parml_dataset_load_idx)
public func parmlDatasetLoadIDX(
    _ images_path: UnsafePointer<CChar>?, _ labels_path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_load_idx") {
        let images = try nonNull(images_path, "images_path")
        let labels = try nonNull(labels_path, "labels_path")
        let out = try nonNull(out, "out")
        let d = try Dataset.loadIDX(imagesPath: images, labelsPath: labels)
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}

/// A dataset from copies of `inputs` (N, ...) and `targets`: (N) or (N, T)
/// class indices for cross-entropy (int32 or int64 at any size, or float32
/// integers below 2^24) or (N, ...) float32 values for MSE and binary
/// cross-entropy. Integer inputs
/// (token ids) are kept as floats, exact below 2^24. The tensors stay the
/// caller's; parml_dataset_create_borrowed reads host memory without a
/// copy. The caller owns *out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, NULL out, N = 0, integer
/// inputs beyond 2^24, int64 targets beyond int32), PARML_ERR_SHAPE (inputs
/// of rank 1, N differs), PARML_ERR_OUT_OF_MEMORY. Since: 0.1.
@c(parml_dataset_create)
public func parmlDatasetCreate(_ inputs: parml_tensor?, _ targets: parml_tensor?, _ out: UnsafeMutablePointer<parml_dataset?>?) -> parml_status {
    guarded("parml_dataset_create") {
        let x = try tensorObject(inputs, "inputs")
        let y = try tensorObject(targets, "targets")
        let out = try nonNull(out, "out")
        // The dataset's own copies, as the engine takes them: float32 inputs
        // (integer token ids converted), int64 class indices narrowed to int32.
        let xs = try Tensor(shape: x.shape), ys = try Tensor(shape: y.shape)
        try xs.convert(from: x, to: .float32, what: "inputs")
        try ys.convert(from: y, to: y.dtype == .int64 ? .int32 : y.dtype, what: "targets")
        let d = try Dataset(inputs: xs, targets: ys)
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}

/// Releases a dataset. NULL is a no-op. Since: 0.1.
@c(parml_dataset_free)
public func parmlDatasetFree(_ dataset: parml_dataset?) {
    HandleRegistry.shared.release(dataset, .dataset)
}

/// Number of samples in *count_out (a token dataset: windows per epoch).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL count_out). Since: 0.1.
@c(parml_dataset_size)
public func parmlDatasetSize(_ dataset: parml_dataset?, _ count_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_dataset_size") {
        let d = try datasetObject(dataset, inFitCallback: .allowed)
        try nonNull(count_out, "count_out").pointee = Int64(d.count)
    }
}

/// Number of classes (largest target + 1; a token dataset: largest id + 1)
/// in *classes_out, or 0 when the targets are not class indices.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL classes_out). Since: 0.1.
@c(parml_dataset_num_classes)
public func parmlDatasetNumClasses(_ dataset: parml_dataset?, _ classes_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_dataset_num_classes") {
        let d = try datasetObject(dataset, inFitCallback: .allowed)
        try nonNull(classes_out, "classes_out").pointee = Int64(d.numClasses ?? 0)
    }
}

/// The shape of the whole inputs tensor (N, ...), written as in
/// parml_tensor_shape (a token dataset: (windows per epoch, T)).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL ndim_out, capacity below
/// the rank). Since: 0.1.
@c(parml_dataset_input_shape)
public func parmlDatasetInputShape(
    _ dataset: parml_dataset?, _ dims_out: UnsafeMutablePointer<Int64>?, _ capacity: Int, _ ndim_out: UnsafeMutablePointer<Int>?
) -> parml_status {
    guarded("parml_dataset_input_shape") { try writeShape(datasetObject(dataset, inFitCallback: .allowed).inputShape, dims_out, capacity, ndim_out) }
}
