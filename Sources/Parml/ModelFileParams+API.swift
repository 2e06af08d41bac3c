import CParmlTypes
import ParmlSerialization
import ParmlTensor

// Model files with options (docs/file-format.md): bfloat16 weights for
// exchange at half the size, and an optional HMAC key, in one call.

func defaultModelFileParams() -> parml_model_file_params {
    var p = parml_model_file_params()
    p.struct_size = MemoryLayout<parml_model_file_params>.size
    p.weights_dtype = PARML_DTYPE_FLOAT32
    p.key = nil
    p.key_len = 0
    return p
}

/// The checked options of a model file (NULL: the defaults).
private func modelFileOptions(
    _ params: UnsafePointer<parml_model_file_params>?
) throws -> (weights: StoredWeights, key: UnsafeRawBufferPointer?) {
    let p = try params.map {
        try readSized($0, defaults: defaultModelFileParams(), name: "params", minimum: MemoryLayout<parml_model_file_params>.size)
    } ?? defaultModelFileParams()
    let weights: StoredWeights
    switch p.weights_dtype {
    case PARML_DTYPE_FLOAT32: weights = .float32
    case PARML_DTYPE_BFLOAT16: weights = .bfloat16
    default:
        throw ParmlError.invalidArgument(
            "params->weights_dtype \(p.weights_dtype) is not PARML_DTYPE_FLOAT32 (1) or PARML_DTYPE_BFLOAT16 (4)")
    }
    if p.key == nil && p.key_len != 0 { throw ParmlError.invalidArgument("params->key is NULL but key_len is \(p.key_len)") }
    let key = try p.key.map { try keyBytes($0, UInt(p.key_len)) }
    return (weights, key)
}

/// Fills *params with the model file defaults (float32 weights, no key)
/// and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_model_file_params_init)
public func parmlModelFileParamsInit(_ params: UnsafeMutablePointer<parml_model_file_params>?) -> parml_status {
    guarded("parml_model_file_params_init") { try nonNull(params, "params").pointee = defaultModelFileParams() }
}

/// parml_model_save with options (NULL params: the defaults, the same file
/// as parml_model_save): params->weights_dtype PARML_DTYPE_BFLOAT16 writes
/// every parameter rounded to bfloat16 (half the bytes; the file says so in
/// each tensor's dtype, and parml_model_load widens them back to float32),
/// params->key adds an HMAC-SHA-256 tag (load it with
/// parml_model_load_authenticated). Written atomically.
/// Errors: those of parml_model_save, PARML_ERR_INVALID_ARGUMENT (bad
/// struct_size, weights_dtype, or key with key_len < 16),
/// PARML_ERR_UNSUPPORTED (a key and no libcrypto). Since: 0.3.
@c(parml_model_save_with)
public func parmlModelSaveWith(
    _ model: parml_model?, _ path: UnsafePointer<CChar>?, _ params: UnsafePointer<parml_model_file_params>?
) -> parml_status {
    guarded("parml_model_save_with") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let p = try pathString(path)
        let o = try modelFileOptions(params)
        try ModelFile.write(m, to: p, weights: o.weights, key: o.key)
    }
}

/// The bytes parml_model_save_with would write, in a new buffer *buf_out
/// (free it with parml_buffer_free) of *len_out bytes.
/// Errors: those of parml_model_serialize, PARML_ERR_INVALID_ARGUMENT (bad
/// struct_size, weights_dtype, or key with key_len < 16),
/// PARML_ERR_UNSUPPORTED (a key and no libcrypto). Since: 0.3.
@c(parml_model_serialize_with)
public func parmlModelSerializeWith(
    _ model: parml_model?, _ params: UnsafePointer<parml_model_file_params>?,
    _ buf_out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ len_out: UnsafeMutablePointer<UInt>?
) -> parml_status {
    guarded("parml_model_serialize_with") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let o = try modelFileOptions(params)
        try handOut(buf_out, len_out) { try ModelFile.encode(m, weights: o.weights, key: o.key) }
    }
}
