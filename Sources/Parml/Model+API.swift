import CParmlTypes
import ParmlModel
import ParmlTensor

#if canImport(Glibc)
import Glibc
#endif

func modelObject(_ m: parml_model?, _ name: String = "model", inFitCallback use: FitCallbackUse = .refused) throws -> Model {
    try HandleRegistry.shared.object(m, .model, as: Model.self, name: name, inFitCallback: use)
}

func positive(_ v: Int64, _ name: String) throws -> Int {
    guard v >= 1, v <= Int64(Int32.max) else { throw ParmlError.invalidArgument("\(name) must be in 1...2^31-1, got \(v)") }
    return Int(v)
}

/// Creates an empty model. Add layers with parml_model_add_*, then call
/// parml_model_init. The caller owns *out (parml_model_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL out). Since: 0.1.
@c(parml_model_create)
public func parmlModelCreate(_ out: UnsafeMutablePointer<parml_model?>?) -> parml_status {
    guarded("parml_model_create") {
        let out = try nonNull(out, "out")
        out.pointee = HandleRegistry.shared.register(Model(), as: .model)
    }
}

/// Releases the caller's reference. A trainer built on the model keeps its
/// own, so freeing the model first is safe. NULL is a no-op. Since: 0.1.
@c(parml_model_free)
public func parmlModelFree(_ model: parml_model?) {
    HandleRegistry.shared.release(model, .model)
}

/// Appends y = x * W^T + b with W (out_features, in_features), as torch.nn.Linear.
/// `bias` nonzero adds b. Input (..., in_features) -> (..., out_features).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, sizes outside 1...2^31-1 or
/// too large together), PARML_ERR_STATE (after init). Since: 0.1.
@c(parml_model_add_linear)
public func parmlModelAddLinear(_ model: parml_model?, _ in_features: Int64, _ out_features: Int64, _ bias: Int32) -> parml_status {
    guarded("parml_model_add_linear") {
        let m = try modelObject(model)
        try m.add(Linear.descriptor.make(["in_features": .int(in_features), "out_features": .int(out_features), "bias": .bool(bias != 0)]))
    }
}

/// Appends an element-wise activation, kind = PARML_ACTIVATION_*.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, unknown kind), PARML_ERR_STATE
/// (after init). Since: 0.1.
@c(parml_model_add_activation)
public func parmlModelAddActivation(_ model: parml_model?, _ kind: Int32) -> parml_status {
    guarded("parml_model_add_activation") {
        let m = try modelObject(model)
        guard let k = ActivationKind(rawValue: kind) else {
            throw ParmlError.invalidArgument("activation kind \(kind) is unknown (PARML_ACTIVATION_RELU, _GELU, _TANH, _SIGMOID)")
        }
        try m.add(k.descriptor.make())
    }
}

/// Appends layer normalisation over the last dimension (size `features`),
/// with learned scale (init 1) and shift (init 0); eps > 0 (PyTorch: 1e-5).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, features < 1, eps not
/// positive and finite), PARML_ERR_STATE (after init). Since: 0.1.
@c(parml_model_add_layer_norm)
public func parmlModelAddLayerNorm(_ model: parml_model?, _ features: Int64, _ eps: Float) -> parml_status {
    guarded("parml_model_add_layer_norm") {
        let m = try modelObject(model)
        try m.add(LayerNorm.descriptor.make(["features": .int(features), "eps": .float(eps)]))
    }
}

/// Appends inverted dropout with drop probability p in [0, 1); active only
/// in training, masks drawn from the trainer's seed.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, p outside [0, 1)),
/// PARML_ERR_STATE (after init). Since: 0.1.
@c(parml_model_add_dropout)
public func parmlModelAddDropout(_ model: parml_model?, _ p: Float) -> parml_status {
    guarded("parml_model_add_dropout") {
        let m = try modelObject(model)
        try m.add(Dropout.descriptor.make(["p": .float(p)]))
    }
}

/// Appends a flatten: (N, d1, d2, ...) -> (N, d1*d2*...).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle), PARML_ERR_STATE (after init).
/// Since: 0.1.
@c(parml_model_add_flatten)
public func parmlModelAddFlatten(_ model: parml_model?) -> parml_status {
    guarded("parml_model_add_flatten") {
        let m = try modelObject(model)
        try m.add(Flatten.descriptor.make())
    }
}

/// Marks a pipeline stage boundary: the next top-level layer starts a new
/// stage. With boundaries marked, a trainer with pp > 1 cuts there (pp must
/// be the number of boundaries + 1) instead of balancing stages by the
/// cost the layers state (docs/model-parallel.md); pp = 1 ignores them.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle), PARML_ERR_STATE (no layer
/// yet, inside a residual block, twice in a row, after init). Since: 0.2.
@c(parml_model_add_stage_boundary)
public func parmlModelAddStageBoundary(_ model: parml_model?) -> parml_status {
    guarded("parml_model_add_stage_boundary") {
        try modelObject(model).markStageBoundary()
    }
}

/// Opens a residual block: the layers added until parml_model_end_residual
/// form f, and the block computes y = x + f(x) (f must keep the shape).
/// Blocks nest.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle), PARML_ERR_STATE (after init).
/// Since: 0.1.
@c(parml_model_begin_residual)
public func parmlModelBeginResidual(_ model: parml_model?) -> parml_status {
    guarded("parml_model_begin_residual") { try modelObject(model).beginResidual() }
}

/// Closes the innermost residual block.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle; the block is empty),
/// PARML_ERR_STATE (no block open, after init). Since: 0.1.
@c(parml_model_end_residual)
public func parmlModelEndResidual(_ model: parml_model?) -> parml_status {
    guarded("parml_model_end_residual") { try modelObject(model).endResidual() }
}

/// Allocates the parameters and draws them from `seed` (PyTorch's default
/// distributions: Linear U(-1/sqrt(in), 1/sqrt(in)), LayerNorm 1 and 0). Calling it again
/// redraws them. No layer can be added afterwards.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, too many parameters),
/// PARML_ERR_STATE (no layers, open residual block), PARML_ERR_OUT_OF_MEMORY,
/// PARML_ERR_BLAS (OpenBLAS cannot be loaded). Since: 0.1.
@c(parml_model_init)
public func parmlModelInit(_ model: parml_model?, _ seed: UInt64) -> parml_status {
    guarded("parml_model_init") { try modelObject(model).initialize(seed: seed) }
}

/// Number of scalar parameters (also before init); a matrix two layers
/// share (a tied_classifier and its embedding) counts once, and
/// batch_norm's running statistics count (state in the parameter list,
/// which training updates from batch statistics, not by gradient).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL count_out). Since: 0.1.
@c(parml_model_num_params)
public func parmlModelNumParams(_ model: parml_model?, _ count_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_model_num_params") {
        let m = try modelObject(model, inFitCallback: .allowed)
        try nonNull(count_out, "count_out").pointee = Int64(m.declaredParameterCount)
    }
}

/// Copies all parameters, flattened in layer order (each tensor row-major),
/// into dst; count must equal parml_model_num_params.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL dst), PARML_ERR_STATE
/// (before init), PARML_ERR_SHAPE (a wrong count). Since: 0.1.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_model_get_params)
public func parmlModelGetParams(_ model: parml_model?, _ dst: UnsafeMutablePointer<Float>?, _ count: Int) -> parml_status {
    guarded("parml_model_get_params") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let dst = try nonNull(dst, "dst")
        try checkParamCount(m, count)
        try m.copyNamedParameters(to: dst)
    }
}

/// Overwrites all parameters from src, in the order of parml_model_get_params.
/// A NaN or an infinity in src is refused and leaves the model as it was.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL src, a value that is
/// not finite: the message names its index; since 0.3), PARML_ERR_STATE
/// (before init), PARML_ERR_SHAPE (a wrong count). Since: 0.1.
@c(parml_model_set_params)
public func parmlModelSetParams(_ model: parml_model?, _ src: UnsafePointer<Float>?, _ count: Int) -> parml_status {
    guarded("parml_model_set_params") {
        let m = try modelObject(model)
        let src = try nonNull(src, "src")
        try checkParamCount(m, count)
        try checkFinite(src, count)
        try m.setNamedParameters(from: src)
    }
}

/// Throws PARML_ERR_STATE, saying what to call, for a model not yet initialised.
private func requireInitialised(_ m: Model) throws {
    guard m.isInitialized else { throw ParmlError.state("the model is not initialised; call parml_model_init first") }
}

/// The model behind a handle, initialised, and a parameter name from C.
private func initialisedModel(
    _ model: parml_model?, _ name: UnsafePointer<CChar>?, inFitCallback use: FitCallbackUse = .refused
) throws -> (Model, String) {
    let m = try modelObject(model, inFitCallback: use)
    let n = String(cString: try nonNull(name, "name"))
    try requireInitialised(m)
    return (m, n)
}

/// Throws, naming the first element of src that is not finite.
private func checkFinite(_ src: UnsafePointer<Float>, _ count: Int) throws {
    if !Kernels.allFinite(src, count: count) {
        let i = (0..<count).first { !src[$0].isFinite } ?? 0
        throw ParmlError.invalidArgument("src[\(i)] is \(src[i]); parameters must be finite")
    }
}

/// The number of parameter tensors in *count_out (a Linear with a bias
/// has two). Their names, in the order of parml_model_get_params, come
/// from parml_model_param_tensor_info.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL count_out),
/// PARML_ERR_STATE (before init). Since: 0.3.
@c(parml_model_num_param_tensors)
public func parmlModelNumParamTensors(_ model: parml_model?, _ count_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_model_num_param_tensors") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let out = try nonNull(count_out, "count_out")
        try requireInitialised(m)
        out.pointee = Int64(m.namedParameters.count)
    }
}

/// Parameter tensor `index` (0-based, in the order of
/// parml_model_get_params): its stable dotted name in *name_out, as
/// PyTorch names an nn.Sequential's state_dict keys ("0.weight",
/// "3.1.bias" for layer 1 of the residual block at index 3; NUL-terminated,
/// freed by the caller with parml_buffer_free), and its shape written as in
/// parml_tensor_shape (dims_out may be NULL with capacity 0). name_out may
/// be NULL to ask for the shape only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, index out of range, NULL
/// ndim_out, capacity below the rank), PARML_ERR_STATE (before init),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_model_param_tensor_info)
public func parmlModelParamTensorInfo(
    _ model: parml_model?, _ index: Int64, _ name_out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
    _ dims_out: UnsafeMutablePointer<Int64>?, _ capacity: Int, _ ndim_out: UnsafeMutablePointer<Int>?
) -> parml_status {
    guarded("parml_model_param_tensor_info") {
        let m = try modelObject(model, inFitCallback: .allowed)
        try requireInitialised(m)
        let named = m.namedParameters
        guard index >= 0, index < Int64(named.count) else {
            throw ParmlError.invalidArgument("index \(index) is outside 0..<\(named.count)")
        }
        let info = named[Int(index)]
        try writeShape(info.shape, dims_out, capacity, ndim_out)
        if let name_out { name_out.pointee = try cString(info.name) }
    }
}

/// Copies the parameter tensor named `name` (see
/// parml_model_param_tensor_info) into dst, row-major; count must be its
/// element count. The way to read one layer's weights, or to hand them to
/// another framework by name.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL name or dst, no such
/// name: the message lists the names), PARML_ERR_STATE (before init),
/// PARML_ERR_SHAPE (a wrong count: the message gives the shape). Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_model_get_param)
public func parmlModelGetParam(
    _ model: parml_model?, _ name: UnsafePointer<CChar>?, _ dst: UnsafeMutablePointer<Float>?, _ count: Int
) -> parml_status {
    guarded("parml_model_get_param") {
        let (m, n) = try initialisedModel(model, name, inFitCallback: .allowed)
        try m.copyParameter(named: n, to: try nonNull(dst, "dst"), count: count)
    }
}

/// Overwrites the parameter tensor named `name` from src (row-major, count
/// = its element count): loads weights trained elsewhere, tensor by tensor.
/// A NaN or an infinity is refused. On error the model is unchanged.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL name or src, no such
/// name, a value that is not finite), PARML_ERR_STATE (before init),
/// PARML_ERR_SHAPE (a wrong count). Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_model_set_param)
public func parmlModelSetParam(
    _ model: parml_model?, _ name: UnsafePointer<CChar>?, _ src: UnsafePointer<Float>?, _ count: Int
) -> parml_status {
    guarded("parml_model_set_param") {
        let (m, n) = try initialisedModel(model, name)
        let src = try nonNull(src, "src")
        _ = try m.parameter(named: n, count: count)  // name and count first, before src is read
        try checkFinite(src, count)
        try m.setParameter(named: n, from: src, count: count)
    }
}

private func checkParamCount(_ m: Model, _ count: Int) throws {
    try requireInitialised(m)
    guard count == m.namedParameterCount else {
        throw ParmlError.shape("count is \(count) but the model has \(m.namedParameterCount) parameters")
    }
}

/// The output shape for an input shape (dims, ndim), checked through every
/// layer; written as in parml_tensor_shape.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, bad dims or ndim, NULL
/// ndim_out, capacity below the rank), PARML_ERR_SHAPE (no samples, or
/// naming the layer that does not fit). Since: 0.1.
@c(parml_model_output_shape)
public func parmlModelOutputShape(
    _ model: parml_model?, _ dims: UnsafePointer<Int64>?, _ ndim: Int, _ dims_out: UnsafeMutablePointer<Int64>?,
    _ capacity: Int, _ ndim_out: UnsafeMutablePointer<Int>?
) -> parml_status {
    guarded("parml_model_output_shape") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let s = try m.outputShape(for: shape(dims, ndim, name: "dims"))
        try writeShape(s, dims_out, capacity, ndim_out)
    }
}

/// Runs the model in inference mode (dropout off) on `input` and returns a
/// new tensor in *out that the caller frees with parml_tensor_free.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, NULL out), PARML_ERR_STATE
/// (before init), PARML_ERR_SHAPE, PARML_ERR_OUT_OF_MEMORY, PARML_ERR_BLAS.
/// Since: 0.1.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_model_predict)
public func parmlModelPredict(_ model: parml_model?, _ input: parml_tensor?, _ out: UnsafeMutablePointer<parml_tensor?>?) -> parml_status {
    guarded("parml_model_predict") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let x = try engineInputs(tensorObject(input, "input"), scratch: Tensor(shape: Shape(0)))
        let out = try nonNull(out, "out")
        try BLAS.ensureLoaded()
        let y = try m.forward(x, PassContext(training: false))
        out.pointee = HandleRegistry.shared.register(try y.clone(), as: .tensor)
    }
}

/// A text description of the layers and parameter shapes in *text_out,
/// NUL-terminated; the caller frees it with parml_buffer_free.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL text_out),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.1.
@c(parml_model_summary)
public func parmlModelSummary(_ model: parml_model?, _ text_out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> parml_status {
    guarded("parml_model_summary") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let out = try nonNull(text_out, "text_out")
        out.pointee = try cString(m.summary)
    }
}

/// A malloc'd copy of `s` for the caller to free with parml_buffer_free.
func cString(_ s: String) throws -> UnsafeMutablePointer<CChar> {
    let bytes = Array(s.utf8)
    guard let p = malloc(bytes.count + 1)?.assumingMemoryBound(to: CChar.self) else {
        throw ParmlError.outOfMemory("could not allocate \(bytes.count + 1) bytes")
    }
    bytes.withUnsafeBytes { src in
        if let base = src.baseAddress { UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: bytes.count) }
    }
    p[bytes.count] = 0
    return p
}
