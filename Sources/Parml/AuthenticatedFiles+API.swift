import CParmlTypes
import ParmlSerialization
import ParmlTensor

// Authenticated files (docs/file-format.md, docs/privacy.md): the save, load,
// serialize and deserialize calls of Files+API.swift with a key, which adds
// (or demands) an HMAC-SHA-256 tag. The key is borrowed for the call only and
// never written anywhere, messages included (they give its length at most).

/// The (key, key_len) argument pair, or .invalidArgument.
func keyBytes(_ key: UnsafeRawPointer?, _ keyLen: UInt) throws -> UnsafeRawBufferPointer {
    let key = try nonNull(key, "key")
    guard keyLen <= UInt(Int32.max) else { throw ParmlError.invalidArgument("key_len \(keyLen) is larger than any key") }
    return UnsafeRawBufferPointer(start: key, count: Int(keyLen))
}

/// parml_model_save with an HMAC-SHA-256 tag under `key` (key_len >= 16
/// bytes, borrowed for the call): only parml_model_load_authenticated with
/// the same key loads the file. Packed in memory, then written atomically.
/// Errors: those of parml_model_save, PARML_ERR_INVALID_ARGUMENT (NULL key,
/// key_len < 16), PARML_ERR_UNSUPPORTED (OpenSSL's libcrypto cannot be
/// loaded). Since: 0.3.
@c(parml_model_save_authenticated)
public func parmlModelSaveAuthenticated(
    _ model: parml_model?, _ path: UnsafePointer<CChar>?, _ key: UnsafeRawPointer?, _ key_len: UInt
) -> parml_status {
    guarded("parml_model_save_authenticated") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let p = try pathString(path)
        try ModelFile.write(m, to: p, key: try keyBytes(key, key_len))
    }
}

/// parml_model_load of a file saved with `key` (also the model inside a
/// checkpoint saved with it): the tag is checked before anything else of the
/// file is read. Each failure has its own code.
/// Errors: those of parml_model_load, PARML_ERR_INVALID_ARGUMENT (NULL key,
/// key_len < 16), PARML_ERR_AUTH_MISSING (the file has no tag),
/// PARML_ERR_AUTH_KEY (tagged under another key), PARML_ERR_AUTH_FAILED
/// (the tag does not verify: bytes altered), PARML_ERR_UNSUPPORTED (no
/// libcrypto). Thread-safe. Since: 0.3.
@c(parml_model_load_authenticated)
public func parmlModelLoadAuthenticated(
    _ path: UnsafePointer<CChar>?, _ key: UnsafeRawPointer?, _ key_len: UInt, _ out: UnsafeMutablePointer<parml_model?>?
) -> parml_status {
    guarded("parml_model_load_authenticated") {
        let p = try pathString(path)
        let k = try keyBytes(key, key_len)
        let out = try nonNull(out, "out")
        let m = try ModelFile.decode(try FileIO.readSealed(p), key: k)
        out.pointee = HandleRegistry.shared.register(m, as: .model)
    }
}

/// The bytes parml_model_save_authenticated would write, in a new buffer
/// *buf_out (free it with parml_buffer_free) of *len_out bytes.
/// Errors: those of parml_model_serialize, PARML_ERR_INVALID_ARGUMENT (NULL
/// key, key_len < 16), PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
@c(parml_model_serialize_authenticated)
public func parmlModelSerializeAuthenticated(
    _ model: parml_model?, _ key: UnsafeRawPointer?, _ key_len: UInt, _ buf_out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    _ len_out: UnsafeMutablePointer<UInt>?
) -> parml_status {
    guarded("parml_model_serialize_authenticated") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let k = try keyBytes(key, key_len)
        try handOut(buf_out, len_out) { try ModelFile.encode(m, key: k) }
    }
}

/// parml_model_deserialize of bytes authenticated with `key`; the caller
/// keeps `buf`.
/// Errors: those of parml_model_deserialize and of
/// parml_model_load_authenticated (PARML_ERR_AUTH_MISSING, _KEY, _FAILED).
/// Thread-safe. Since: 0.3.
@c(parml_model_deserialize_authenticated)
public func parmlModelDeserializeAuthenticated(
    _ buf: UnsafeRawPointer?, _ len: UInt, _ key: UnsafeRawPointer?, _ key_len: UInt, _ out: UnsafeMutablePointer<parml_model?>?
) -> parml_status {
    guarded("parml_model_deserialize_authenticated") {
        let bytes = try inputBytes(buf, len)
        let k = try keyBytes(key, key_len)
        let out = try nonNull(out, "out")
        let m = try ModelFile.decode(bytes, key: k)
        out.pointee = HandleRegistry.shared.register(m, as: .model)
    }
}

/// parml_trainer_save_checkpoint with an HMAC-SHA-256 tag under `key`
/// (key_len >= 16 bytes): only the *_authenticated loads with the same key
/// read it. Collective on the MPI backend; world rank 0 writes.
/// Errors: those of parml_trainer_save_checkpoint,
/// PARML_ERR_INVALID_ARGUMENT (NULL key, key_len < 16),
/// PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
@c(parml_trainer_save_checkpoint_authenticated)
public func parmlTrainerSaveCheckpointAuthenticated(
    _ trainer: parml_trainer?, _ path: UnsafePointer<CChar>?, _ key: UnsafeRawPointer?, _ key_len: UInt
) -> parml_status {
    guarded("parml_trainer_save_checkpoint_authenticated") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let p = try pathString(path)
        try CheckpointFile.write(t, to: p, key: try keyBytes(key, key_len))
    }
}

/// parml_trainer_load_checkpoint of a checkpoint saved with `key`; the tag
/// is checked first. On error nothing changes.
/// Errors: those of parml_trainer_load_checkpoint,
/// PARML_ERR_INVALID_ARGUMENT (NULL key, key_len < 16),
/// PARML_ERR_AUTH_MISSING, PARML_ERR_AUTH_KEY, PARML_ERR_AUTH_FAILED,
/// PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
@c(parml_trainer_load_checkpoint_authenticated)
public func parmlTrainerLoadCheckpointAuthenticated(
    _ trainer: parml_trainer?, _ path: UnsafePointer<CChar>?, _ key: UnsafeRawPointer?, _ key_len: UInt
) -> parml_status {
    guarded("parml_trainer_load_checkpoint_authenticated") {
        let t = try trainerObject(trainer)
        let p = try pathString(path)
        let k = try keyBytes(key, key_len)
        try CheckpointFile.restore(try FileIO.readSealed(p), into: t, key: k)
    }
}

/// The bytes parml_trainer_save_checkpoint_authenticated would write, in a
/// new buffer *buf_out (free it with parml_buffer_free) of *len_out bytes.
/// Collective on the MPI backend.
/// Errors: those of parml_trainer_serialize_checkpoint,
/// PARML_ERR_INVALID_ARGUMENT (NULL key, key_len < 16),
/// PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
@c(parml_trainer_serialize_checkpoint_authenticated)
public func parmlTrainerSerializeCheckpointAuthenticated(
    _ trainer: parml_trainer?, _ key: UnsafeRawPointer?, _ key_len: UInt, _ buf_out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
    _ len_out: UnsafeMutablePointer<UInt>?
) -> parml_status {
    guarded("parml_trainer_serialize_checkpoint_authenticated") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let k = try keyBytes(key, key_len)
        try handOut(buf_out, len_out) { try CheckpointFile.encode(t, key: k) }
    }
}

/// parml_trainer_deserialize_checkpoint of bytes authenticated with `key`
/// (the caller keeps `buf`). On error nothing changes.
/// Errors: those of parml_trainer_deserialize_checkpoint and
/// PARML_ERR_AUTH_MISSING, PARML_ERR_AUTH_KEY, PARML_ERR_AUTH_FAILED,
/// PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
@c(parml_trainer_deserialize_checkpoint_authenticated)
public func parmlTrainerDeserializeCheckpointAuthenticated(
    _ trainer: parml_trainer?, _ buf: UnsafeRawPointer?, _ len: UInt, _ key: UnsafeRawPointer?, _ key_len: UInt
) -> parml_status {
    guarded("parml_trainer_deserialize_checkpoint_authenticated") {
        let t = try trainerObject(trainer)
        let bytes = try inputBytes(buf, len)
        let k = try keyBytes(key, key_len)
        try CheckpointFile.restore(bytes, into: t, key: k)
    }
}
