import CParmlTypes
import ParmlTensor

/// Reads a C shape (dims, ndim) into a Shape, rejecting NULL, ranks outside
/// 1...8, negative dimensions and overflowing sizes.
func shape(_ dims: UnsafePointer<Int64>?, _ ndim: Int, name: String) throws -> Shape {
    let dims = try nonNull(dims, name)
    guard ndim >= 1, ndim <= Shape.maxRank else {
        throw ParmlError.invalidArgument("\(name): ndim must be 1...\(Shape.maxRank), got \(ndim)")
    }
    var values: [Int] = []
    for i in 0..<ndim {
        let d = dims[i]
        guard d >= 0, d <= Int64(Int32.max) else {
            throw ParmlError.invalidArgument("\(name)[\(i)] = \(d) is out of range 0...2^31-1")
        }
        values.append(Int(d))
    }
    let s = try Shape(values)
    guard let n = s.checkedCount, n <= Int.max / 16 else {
        throw ParmlError.invalidArgument("\(name) \(s) has too many elements")
    }
    return s
}

/// Writes a shape to (dims_out, capacity) and its rank to *ndim_out.
/// dims_out may be NULL with capacity 0 to ask for the rank only.
func writeShape(_ s: Shape, _ dimsOut: UnsafeMutablePointer<Int64>?, _ capacity: Int, _ ndimOut: UnsafeMutablePointer<Int>?) throws {
    let ndimOut = try nonNull(ndimOut, "ndim_out")
    if dimsOut == nil && capacity == 0 {
        ndimOut.pointee = s.rank
        return
    }
    let out = try nonNull(dimsOut, "dims_out")
    guard capacity >= s.rank else {
        throw ParmlError.invalidArgument("capacity \(capacity) is less than the rank \(s.rank)")
    }
    for i in 0..<s.rank { out[i] = Int64(s[i]) }
    ndimOut.pointee = s.rank
}

func tensorObject(_ t: parml_tensor?, _ name: String = "tensor") throws -> Tensor {
    try HandleRegistry.shared.object(t, .tensor, as: Tensor.self, name: name)
}

/// A float32 tensor behind a handle, or INVALID_ARGUMENT naming its dtype.
func floatTensorObject(_ t: parml_tensor?, _ name: String = "tensor") throws -> Tensor {
    let x = try tensorObject(t, name)
    guard x.dtype == .float32 else {
        throw ParmlError.invalidArgument("\(name) holds \(x.dtype.name) values; this call reads and writes float32 (use parml_tensor_bytes)")
    }
    return x
}

/// Inputs as the engine runs them: float32 (integer token ids become floats,
/// exact below 2^24), converted into `scratch` when they must be.
func engineInputs(_ t: Tensor, scratch: Tensor) throws -> Tensor {
    guard t.dtype != .float32 else { return t }
    try scratch.convert(from: t, to: .float32, what: "inputs")
    return scratch
}

/// Targets as the engine takes them: float32 and int32 as they are, int64
/// narrowed to int32 (into `scratch`).
func engineTargets(_ t: Tensor, scratch: Tensor) throws -> Tensor {
    guard t.dtype == .int64 else { return t }
    try scratch.convert(from: t, to: .int32, what: "targets")
    return scratch
}

/// A PARML_DTYPE_* code from C.
func dtypeFromC(_ code: Int32) throws -> DType {
    guard let t = DType(rawValue: code) else {
        throw ParmlError.invalidArgument("dtype \(code) is unknown (PARML_DTYPE_FLOAT32, _INT32 or _INT64)")
    }
    return t
}

/// Creates a tensor of the given shape (ndim 1...8, dims >= 0) holding a copy
/// of `data` (numel floats, row-major), or zeros when data is NULL.
/// The caller owns *out and frees it with parml_tensor_free; *out is
/// untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL dims or out, ndim outside 1...8,
/// a dimension outside 0...2^31-1, too many elements), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.1.
@c(parml_tensor_create)
public func parmlTensorCreate(
    _ dims: UnsafePointer<Int64>?, _ ndim: Int, _ data: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<parml_tensor?>?
) -> parml_status {
    guarded("parml_tensor_create") {
        let out = try nonNull(out, "out")
        let t = try Tensor(shape: shape(dims, ndim, name: "dims"))
        if let data { t.data.update(from: data, count: t.count) }
        out.pointee = HandleRegistry.shared.register(t, as: .tensor)
    }
}

/// Creates a tensor of element type `dtype` (PARML_DTYPE_FLOAT32, _INT32 or
/// _INT64) and the given shape holding a copy of `data` (numel elements of
/// that type, row-major), or zeros when data is NULL. Integer tensors carry
/// class indices (targets of cross-entropy, exact at any size) and token
/// ids (inputs of an embedding); the engine narrows int64 to int32 where it
/// trains on them and refuses values that do not fit. The caller owns *out
/// (parml_tensor_free); *out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (unknown dtype, NULL dims or out, ndim
/// outside 1...8, a dimension outside 0...2^31-1, too many elements),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_tensor_create_typed)
public func parmlTensorCreateTyped(
    _ dtype: Int32, _ dims: UnsafePointer<Int64>?, _ ndim: Int, _ data: UnsafeRawPointer?, _ out: UnsafeMutablePointer<parml_tensor?>?
) -> parml_status {
    guarded("parml_tensor_create_typed") {
        let type = try dtypeFromC(dtype)
        let out = try nonNull(out, "out")
        let t = try Tensor(shape: shape(dims, ndim, name: "dims"), dtype: type)
        if let data { UnsafeMutableRawPointer(t.data).copyMemory(from: data, byteCount: t.byteCount) }
        out.pointee = HandleRegistry.shared.register(t, as: .tensor)
    }
}

/// The tensor's element type, PARML_DTYPE_*, in *dtype_out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL dtype_out). Since: 0.3.
@c(parml_tensor_dtype)
public func parmlTensorDtype(_ tensor: parml_tensor?, _ dtype_out: UnsafeMutablePointer<Int32>?) -> parml_status {
    guarded("parml_tensor_dtype") {
        let t = try tensorObject(tensor)
        try nonNull(dtype_out, "dtype_out").pointee = t.dtype.rawValue
    }
}

/// Borrows the tensor's storage whatever its dtype: *data_out points to
/// *nbytes_out bytes (numel elements of its type, row-major, 64-byte
/// aligned), owned by the tensor and valid until parml_tensor_free. Writing
/// through it changes the tensor. Either out-pointer but data_out may be NULL.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL data_out). Since: 0.3.
@c(parml_tensor_bytes)
public func parmlTensorBytes(
    _ tensor: parml_tensor?, _ data_out: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ nbytes_out: UnsafeMutablePointer<Int64>?
) -> parml_status {
    guarded("parml_tensor_bytes") {
        let t = try tensorObject(tensor)
        try nonNull(data_out, "data_out").pointee = UnsafeMutableRawPointer(t.data)
        nbytes_out?.pointee = Int64(t.byteCount)
    }
}

/// Releases a tensor. NULL, or a handle already freed, is a no-op. Since: 0.1.
@c(parml_tensor_free)
public func parmlTensorFree(_ tensor: parml_tensor?) {
    HandleRegistry.shared.release(tensor, .tensor)
}

/// The tensor's shape: writes up to `capacity` dimensions to dims_out and
/// the rank to *ndim_out. Pass dims_out = NULL, capacity = 0 to get the rank
/// only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL ndim_out, NULL dims_out
/// with capacity > 0, capacity below the rank). Since: 0.1.
@c(parml_tensor_shape)
public func parmlTensorShape(
    _ tensor: parml_tensor?, _ dims_out: UnsafeMutablePointer<Int64>?, _ capacity: Int, _ ndim_out: UnsafeMutablePointer<Int>?
) -> parml_status {
    guarded("parml_tensor_shape") { try writeShape(tensorObject(tensor).shape, dims_out, capacity, ndim_out) }
}

/// Number of elements in *numel_out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL numel_out). Since: 0.1.
@c(parml_tensor_numel)
public func parmlTensorNumel(_ tensor: parml_tensor?, _ numel_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_tensor_numel") {
        let t = try tensorObject(tensor)
        try nonNull(numel_out, "numel_out").pointee = Int64(t.count)
    }
}

/// Copies the tensor's `count` floats (count must equal its numel) into the
/// caller's buffer dst. Float32 tensors only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL dst, a tensor of another
/// dtype: since 0.3), PARML_ERR_SHAPE
/// (count differs from numel). Since: 0.1.
@c(parml_tensor_read)
public func parmlTensorRead(_ tensor: parml_tensor?, _ dst: UnsafeMutablePointer<Float>?, _ count: Int) -> parml_status {
    guarded("parml_tensor_read") {
        let t = try floatTensorObject(tensor)
        let dst = try nonNull(dst, "dst")
        guard count == t.count else { throw ParmlError.shape("count is \(count) but the tensor \(t.shape) holds \(t.count)") }
        dst.update(from: t.data, count: count)
    }
}

/// Overwrites the tensor's contents with `count` floats from src (count must
/// equal its numel). Float32 tensors only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL src, a tensor of another
/// dtype: since 0.3), PARML_ERR_SHAPE
/// (count differs from numel). Since: 0.1.
@c(parml_tensor_write)
public func parmlTensorWrite(_ tensor: parml_tensor?, _ src: UnsafePointer<Float>?, _ count: Int) -> parml_status {
    guarded("parml_tensor_write") {
        let t = try floatTensorObject(tensor)
        let src = try nonNull(src, "src")
        guard count == t.count else { throw ParmlError.shape("count is \(count) but the tensor \(t.shape) holds \(t.count)") }
        t.data.update(from: src, count: count)
    }
}

/// Borrows the tensor's storage: *data_out points to numel floats, row-major,
/// 64-byte aligned, owned by the tensor and valid until parml_tensor_free.
/// Writing through it changes the tensor. Float32 tensors only (others:
/// parml_tensor_bytes).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL data_out, a tensor of
/// another dtype: since 0.3). Since: 0.1.
@c(parml_tensor_data)
public func parmlTensorData(_ tensor: parml_tensor?, _ data_out: UnsafeMutablePointer<UnsafeMutablePointer<Float>?>?) -> parml_status {
    guarded("parml_tensor_data") {
        let t = try floatTensorObject(tensor)
        try nonNull(data_out, "data_out").pointee = t.data
    }
}
