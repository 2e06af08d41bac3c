import CParmlTypes
import ParmlModel
import ParmlSerialization
import ParmlTensor
import ParmlTraining

// Files and buffers (docs/file-format.md): models, tensors and checkpoints
// as protobuf messages of proto/parml.proto. Paths are written atomically;
// buffers are malloc'd and freed with parml_buffer_free.

/// The path argument as a String, or .invalidArgument.
func pathString(_ path: UnsafePointer<CChar>?) throws -> String {
    let s = String(cString: try nonNull(path, "path"))
    guard !s.isEmpty else { throw ParmlError.invalidArgument("path is empty") }
    return s
}

/// The (buf, len) argument pair as bytes, or .invalidArgument.
func inputBytes(_ buf: UnsafeRawPointer?, _ len: UInt) throws -> UnsafeRawBufferPointer {
    let buf = try nonNull(buf, "buf")
    guard len > 0 else { throw ParmlError.invalidArgument("len is 0") }
    guard len <= UInt(Int.max) else { throw ParmlError.invalidArgument("len \(len) is larger than any buffer") }
    return UnsafeRawBufferPointer(start: buf, count: Int(len))
}

/// Hands encoded bytes to the caller through (buf_out, len_out), both checked first.
func handOut(
    _ bufOut: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ lenOut: UnsafeMutablePointer<UInt>?, _ encode: () throws -> EncodedBytes
) throws {
    let bufOut = try nonNull(bufOut, "buf_out")
    let lenOut = try nonNull(lenOut, "len_out")
    let bytes = try encode()
    lenOut.pointee = UInt(bytes.count)
    bufOut.pointee = UnsafeMutableRawPointer(bytes.take())
}

/// Writes an initialised model (layers, attributes, parameters) to `path`
/// atomically: a temporary file in the same directory, fsync, rename over
/// `path`, fsync of the directory. Uses the model handle (one thread at a
/// time).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL or empty path),
/// PARML_ERR_STATE (not initialised), PARML_ERR_IO (with the system's
/// reason), PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_model_save)
public func parmlModelSave(_ model: parml_model?, _ path: UnsafePointer<CChar>?) -> parml_status {
    guarded("parml_model_save") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let p = try pathString(path)
        try ModelFile.write(m, to: p)
    }
}

/// Reads a model file (parml_model_save), or the model inside a checkpoint
/// file (parml_trainer_save_checkpoint), into a new, initialised model in
/// *out, which the caller frees with parml_model_free. Pipes and other
/// streams work too.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL or empty path, NULL out),
/// PARML_ERR_IO, PARML_ERR_FORMAT (truncated, damaged, not a model, or a
/// newer format version), PARML_ERR_AUTH_KEY (an authenticated file: use
/// parml_model_load_authenticated), PARML_ERR_BLAS (OpenBLAS cannot be
/// loaded), PARML_ERR_OUT_OF_MEMORY. Thread-safe. Since: 0.2.
@c(parml_model_load)
public func parmlModelLoad(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<parml_model?>?) -> parml_status {
    guarded("parml_model_load") {
        let p = try pathString(path)
        let out = try nonNull(out, "out")
        let m = try ModelFile.decode(try FileIO.readSealed(p))
        out.pointee = HandleRegistry.shared.register(m, as: .model)
    }
}

/// The bytes parml_model_save would write, in a new buffer: *buf_out (free
/// it with parml_buffer_free) of *len_out bytes.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL buf_out or len_out),
/// PARML_ERR_STATE (not initialised), PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_model_serialize)
public func parmlModelSerialize(
    _ model: parml_model?, _ buf_out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ len_out: UnsafeMutablePointer<UInt>?
) -> parml_status {
    guarded("parml_model_serialize") {
        let m = try modelObject(model, inFitCallback: .allowed)
        try handOut(buf_out, len_out) { try ModelFile.encode(m) }
    }
}

/// A new model in *out from `len` bytes at `buf` (parml_model_serialize's
/// output, or a checkpoint's: its model); the caller keeps `buf`.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL buf or out, len 0),
/// PARML_ERR_FORMAT, PARML_ERR_AUTH_KEY (authenticated bytes),
/// PARML_ERR_BLAS (OpenBLAS cannot be loaded), PARML_ERR_OUT_OF_MEMORY.
/// Thread-safe. Since: 0.2.
@c(parml_model_deserialize)
public func parmlModelDeserialize(_ buf: UnsafeRawPointer?, _ len: UInt, _ out: UnsafeMutablePointer<parml_model?>?) -> parml_status {
    guarded("parml_model_deserialize") {
        let bytes = try inputBytes(buf, len)
        let out = try nonNull(out, "out")
        let m = try ModelFile.decode(bytes)
        out.pointee = HandleRegistry.shared.register(m, as: .model)
    }
}

/// A tensor as a parml.Tensor message in a new buffer *buf_out (free it
/// with parml_buffer_free) of *len_out bytes.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL buf_out or len_out),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
@c(parml_tensor_serialize)
public func parmlTensorSerialize(
    _ tensor: parml_tensor?, _ buf_out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ len_out: UnsafeMutablePointer<UInt>?
) -> parml_status {
    guarded("parml_tensor_serialize") {
        let t = try tensorObject(tensor)
        try handOut(buf_out, len_out) { try TensorFile.encode(t) }
    }
}

/// A new tensor in *out (free it with parml_tensor_free) from a parml.Tensor
/// message of `len` bytes at `buf`.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL buf or out, len 0),
/// PARML_ERR_FORMAT (bad dtype, rank, dims, or data size),
/// PARML_ERR_OUT_OF_MEMORY. Thread-safe. Since: 0.2.
@c(parml_tensor_deserialize)
public func parmlTensorDeserialize(_ buf: UnsafeRawPointer?, _ len: UInt, _ out: UnsafeMutablePointer<parml_tensor?>?) -> parml_status {
    guarded("parml_tensor_deserialize") {
        let bytes = try inputBytes(buf, len)
        let out = try nonNull(out, "out")
        let t = try TensorFile.decode(bytes)
        out.pointee = HandleRegistry.shared.register(t, as: .tensor)
    }
}

/// Writes a checkpoint of the trainer to `path` atomically: the model, the
/// whole optimizer state (gathered from every rank, whatever the ZeRO
/// stage), the step count (also the schedule position), the seed and the
/// layout. It loads under any layout. On the MPI backend every process
/// must call it (collective) and world rank 0 writes the file.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL or empty path),
/// PARML_ERR_IO, PARML_ERR_OUT_OF_MEMORY, PARML_ERR_COMMUNICATION (MPI: a
/// process failed or timed out). Since: 0.2.
@c(parml_trainer_save_checkpoint)
public func parmlTrainerSaveCheckpoint(_ trainer: parml_trainer?, _ path: UnsafePointer<CChar>?) -> parml_status {
    guarded("parml_trainer_save_checkpoint") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        let p = try pathString(path)
        try CheckpointFile.write(t, to: p)
    }
}

/// Restores a checkpoint into a trainer whose model has the same layers and
/// whose optimizer is of the same kind (any layout): parameters, optimizer
/// state and step count (and, since 0.3, the epoch count and the factor
/// parml_trainer_set_learning_rate put on the rate). Training then
/// continues as the saved run would have when the trainer has the
/// checkpoint's seed. Hyper-parameters are the trainer's own. On error nothing changes.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL or empty path, other
/// layers or optimizer kind), PARML_ERR_IO, PARML_ERR_FORMAT, PARML_ERR_SHAPE
/// (optimizer state of another size), PARML_ERR_AUTH_KEY (an authenticated
/// checkpoint: use parml_trainer_load_checkpoint_authenticated),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
@c(parml_trainer_load_checkpoint)
public func parmlTrainerLoadCheckpoint(_ trainer: parml_trainer?, _ path: UnsafePointer<CChar>?) -> parml_status {
    guarded("parml_trainer_load_checkpoint") {
        let t = try trainerObject(trainer)
        let p = try pathString(path)
        try CheckpointFile.restore(try FileIO.readSealed(p), into: t)
    }
}

/// The bytes parml_trainer_save_checkpoint would write, in a new buffer
/// *buf_out (free it with parml_buffer_free) of *len_out bytes. Collective
/// on the MPI backend, like parml_trainer_save_checkpoint.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL buf_out or len_out),
/// PARML_ERR_OUT_OF_MEMORY, PARML_ERR_COMMUNICATION (MPI). Since: 0.2.
@c(parml_trainer_serialize_checkpoint)
public func parmlTrainerSerializeCheckpoint(
    _ trainer: parml_trainer?, _ buf_out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ len_out: UnsafeMutablePointer<UInt>?
) -> parml_status {
    guarded("parml_trainer_serialize_checkpoint") {
        let t = try trainerObject(trainer, inFitCallback: .allowed)
        try handOut(buf_out, len_out) { try CheckpointFile.encode(t) }
    }
}

/// parml_trainer_load_checkpoint from `len` bytes at `buf` (the caller
/// keeps them). On error nothing changes.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL buf, len 0, other
/// layers or optimizer kind), PARML_ERR_FORMAT, PARML_ERR_SHAPE,
/// PARML_ERR_AUTH_KEY (authenticated bytes), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.2.
@c(parml_trainer_deserialize_checkpoint)
public func parmlTrainerDeserializeCheckpoint(_ trainer: parml_trainer?, _ buf: UnsafeRawPointer?, _ len: UInt) -> parml_status {
    guarded("parml_trainer_deserialize_checkpoint") {
        let t = try trainerObject(trainer)
        try CheckpointFile.restore(try inputBytes(buf, len), into: t)
    }
}

/// Writes `model` as an ONNX file (IR version 8, opset 17) for inference,
/// for inputs of shape (input_dims, ndim); input_dims[0] becomes the
/// symbolic batch "N" and the other sizes are fixed. Dropout is left out;
/// GELU becomes Erf arithmetic (docs/file-format.md lists every layer's
/// ONNX form). Inputs are named "input", outputs "output". Written
/// atomically.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, bad dims or ndim, NULL or
/// empty path), PARML_ERR_STATE (not initialised), PARML_ERR_SHAPE (the
/// shape does not fit the model), PARML_ERR_IO, PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.2.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
@c(parml_model_export_onnx)
public func parmlModelExportOnnx(
    _ model: parml_model?, _ input_dims: UnsafePointer<Int64>?, _ ndim: Int, _ path: UnsafePointer<CChar>?
) -> parml_status {
    guarded("parml_model_export_onnx") {
        let m = try modelObject(model, inFitCallback: .allowed)
        let s = try shape(input_dims, ndim, name: "input_dims")
        let p = try pathString(path)
        let bytes = try OnnxExport.encode(m, inputShape: s, producerVersion: PARML_VERSION_STRING)
        try FileIO.writeAtomically(bytes.bytes, to: p)
    }
}

/// A report on the parml file at `path` (a model, a checkpoint or a tensor
/// message): kind, format version, checksum, layers and parameter tensors
/// with their names and shapes, and for a checkpoint its step and epoch
/// counts, seed, optimizer and the layout it was trained with. as_json
/// nonzero gives one JSON object, 0 text for people (which may change; do
/// not parse it). Reading runs every check loading would, so a report means
/// the file loads. *text_out is NUL-terminated; free it with
/// parml_buffer_free. This is what the `parml info` tool prints.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL or empty path, NULL text_out),
/// PARML_ERR_IO (cannot read), PARML_ERR_FORMAT (not a parml file, damaged,
/// truncated, or a newer format), PARML_ERR_AUTH_KEY (an authenticated file:
/// its tag cannot be checked without the key), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.3.
@c(parml_file_describe)
public func parmlFileDescribe(
    _ path: UnsafePointer<CChar>?, _ as_json: Int32, _ text_out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> parml_status {
    guarded("parml_file_describe") {
        let p = try pathString(path)
        let out = try nonNull(text_out, "text_out")
        let report = try FileReport.read(p)
        out.pointee = try cString(as_json != 0 ? report.json : report.text)
    }
}
