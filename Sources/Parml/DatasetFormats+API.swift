import CParmlTypes
import ParmlData
import ParmlTensor

/// Loads a dataset from two NumPy .npy files (numpy.save): inputs
/// (N, sample dims...) and targets (N) or (N, ...), C order, little-endian
/// bool, int8...int64, uint8...uint64, float16, float32 or float64. The
/// files are memory-mapped: float32 inputs and int32 or float32 targets are
/// read in place, as batches touch them, so loading costs no memory for
/// them; other types are converted once into library memory. Inputs: uint8
/// divided by 255 (images, as parml_dataset_load_idx scales them), bool 0
/// or 1, other integers kept as exact floats (|value| <= 2^24), float16 and
/// float64 rounded to float32. Targets: integers and bool become int32 class
/// indices (0...2^31-1); floats are float32 values (class indices when they
/// are whole numbers, as in parml_dataset_create). The files must not be
/// changed or truncated while the dataset lives (a truncated mapped file
/// raises SIGBUS). The caller owns *out (parml_dataset_free); *out is
/// untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out), PARML_ERR_IO
/// (cannot open, map or read; not a regular file), PARML_ERR_FORMAT (not
/// .npy, truncated, a header that promises more or fewer bytes than follow,
/// a negative or non-integer label, an integer input beyond 2^24),
/// PARML_ERR_UNSUPPORTED (Fortran order, object or structured arrays,
/// big-endian, complex or other dtypes, more than 8 dimensions),
/// PARML_ERR_SHAPE (inputs of rank 1, N differs), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.3.
@c(parml_dataset_load_npy)
public func parmlDatasetLoadNPY(
    _ inputs_path: UnsafePointer<CChar>?, _ targets_path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_load_npy") {
        let x = try nonNull(inputs_path, "inputs_path")
        let y = try nonNull(targets_path, "targets_path")
        let out = try nonNull(out, "out")
        let d = try Dataset.loadNPY(inputsPath: x, targetsPath: y)
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}

/// Loads a dataset from two arrays of one NumPy .npz archive
/// (numpy.savez or savez_compressed), named by their keys: "x" finds the
/// member x.npy (the name numpy gives the keyword argument x=). Stored
/// members (savez) are memory-mapped and read as parml_dataset_load_npy
/// reads a file (in place when float32 and 4-byte aligned in the archive;
/// savez does not align them, so most are copied once); deflated members
/// (savez_compressed) are inflated into library memory and checked against
/// their CRC-32. Types and conversions as in parml_dataset_load_npy. The
/// caller owns *out; *out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path, key or out), PARML_ERR_IO,
/// PARML_ERR_FORMAT (not a zip archive, truncated, no member for a key, a
/// size or CRC that does not match, and the .npy errors),
/// PARML_ERR_UNSUPPORTED (encrypted members, compression other than
/// deflate, and the .npy refusals), PARML_ERR_SHAPE,
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_dataset_load_npz)
public func parmlDatasetLoadNPZ(
    _ path: UnsafePointer<CChar>?, _ inputs_key: UnsafePointer<CChar>?, _ targets_key: UnsafePointer<CChar>?,
    _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_load_npz") {
        let path = try nonNull(path, "path")
        let x = String(cString: try nonNull(inputs_key, "inputs_key"))
        let y = String(cString: try nonNull(targets_key, "targets_key"))
        let out = try nonNull(out, "out")
        let d = try Dataset.loadNPZ(path: path, inputsKey: x, targetsKey: y)
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}

func defaultCSVParams() -> parml_csv_params {
    var p = parml_csv_params()
    p.struct_size = MemoryLayout<parml_csv_params>.size
    let o = CSVOptions()
    p.delimiter = Int32(o.delimiter)
    p.has_header = o.header ? 1 : 0
    p.label_name = nil
    p.label_index = -1
    p.feature_names = nil
    p.feature_indices = nil
    p.num_features = 0
    p.label_kind = PARML_CSV_LABEL_CLASS
    return p
}

/// Fills *params with the defaults (',' delimiter, a header line, the last
/// column the label as class indices, every other column a feature) and
/// sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
@c(parml_csv_params_init)
public func parmlCSVParamsInit(_ params: UnsafeMutablePointer<parml_csv_params>?) -> parml_status {
    guarded("parml_csv_params_init") { try nonNull(params, "params").pointee = defaultCSVParams() }
}

/// The C CSV options as the engine takes them.
private func csvOptions(_ params: UnsafePointer<parml_csv_params>?) throws -> CSVOptions {
    let p = try params.map {
        try readSized($0, defaults: defaultCSVParams(), name: "params", minimum: MemoryLayout<parml_csv_params>.size)
    } ?? defaultCSVParams()
    var o = CSVOptions()
    guard p.delimiter > 0, p.delimiter < 128, p.delimiter != 0x22, p.delimiter != 0x0A, p.delimiter != 0x0D else {
        throw ParmlError.invalidArgument("params->delimiter \(p.delimiter) must be one ASCII byte other than a quote or a line end")
    }
    o.delimiter = UInt8(p.delimiter)
    guard p.has_header == 0 || p.has_header == 1 else { throw ParmlError.invalidArgument("params->has_header must be 0 or 1, got \(p.has_header)") }
    o.header = p.has_header == 1
    o.label = p.label_name.map { .name(String(cString: $0)) } ?? .index(Int(p.label_index))
    guard p.num_features >= 0, p.num_features <= 1 << 20 else {
        throw ParmlError.invalidArgument("params->num_features must be 0...2^20, got \(p.num_features)")
    }
    if p.num_features > 0 {
        let n = Int(p.num_features)
        switch (p.feature_names, p.feature_indices) {
        case (let names?, nil):
            o.features = try (0..<n).map { i in .name(String(cString: try nonNull(names[i], "params->feature_names[\(i)]"))) }
        case (nil, let indices?):
            o.features = try (0..<n).map { i in
                guard indices[i] >= 0 else { throw ParmlError.invalidArgument("params->feature_indices[\(i)] is \(indices[i]), not a column index") }
                return .index(Int(indices[i]))
            }
        default:
            throw ParmlError.invalidArgument("params->num_features is \(n): set exactly one of feature_names and feature_indices")
        }
    } else if p.feature_names != nil || p.feature_indices != nil {
        throw ParmlError.invalidArgument("params->feature_names or feature_indices is set but num_features is 0")
    }
    switch p.label_kind {
    case PARML_CSV_LABEL_CLASS: o.labels = .classIndex
    case PARML_CSV_LABEL_VALUE: o.labels = .value
    case PARML_CSV_LABEL_TEXT: o.labels = .name
    default: throw ParmlError.invalidArgument("params->label_kind \(p.label_kind) is unknown (PARML_CSV_LABEL_CLASS, _VALUE or _TEXT)")
    }
    return o
}

/// Loads a dataset from a CSV table (NULL params = the
/// parml_csv_params_init defaults): inputs (N, F) float32 from the feature
/// columns, targets (N) from the label column, int32 class indices
/// (PARML_CSV_LABEL_CLASS), float32 values (_VALUE), or class names
/// (_TEXT: the distinct names in byte order are classes 0, 1, ...; read them
/// back with parml_dataset_class_name). Fields may be
/// double-quoted (RFC 4180); blank lines are skipped; every cell read must
/// be a finite number (strtod syntax in the C locale: '.' is the decimal
/// point whatever setlocale says).
/// The whole file is checked before anything is built. The caller owns
/// *out; *out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out, a bad params
/// field, a column name or index the file does not have, a column both
/// label and feature), PARML_ERR_IO (cannot open or read), PARML_ERR_FORMAT
/// (empty, no data rows, a row with another number of columns than the
/// first, an empty or non-numeric cell, a label that is not a class index,
/// an empty class name; the message names the line, counted from 1, and the
/// column, from 0),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_dataset_load_csv)
public func parmlDatasetLoadCSV(
    _ path: UnsafePointer<CChar>?, _ params: UnsafePointer<parml_csv_params>?, _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_load_csv") {
        let path = try nonNull(path, "path")
        let options = try csvOptions(params)
        let out = try nonNull(out, "out")
        let d = try Dataset.loadCSV(cPath: path, options: options)
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}

/// A dataset that reads the caller's memory in place instead of copying
/// it: inputs (inputs_dims, float32 only: PARML_DTYPE_FLOAT32) and targets
/// (targets_dims; PARML_DTYPE_FLOAT32 or _INT32 read in place, _INT64
/// narrowed into a library-owned int32 copy of the targets). Shapes and
/// meaning as in parml_dataset_create. Each pointer must be aligned to
/// its element size (4 bytes; 8 for int64 targets). Lifetime: the memory is borrowed, not owned: it must stay
/// valid until parml_dataset_free(*out) has returned and no call that uses
/// the dataset (parml_trainer_fit, _evaluate) is still running on another
/// thread, and must not change while such a call runs. The class count
/// (parml_dataset_num_classes) is read once, here. The caller owns *out;
/// *out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL data, dims or out, an unknown
/// dtype, inputs that are not float32, a misaligned pointer, a bad shape,
/// N = 0, int64 targets beyond int32), PARML_ERR_SHAPE (inputs of rank 1,
/// N differs), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_dataset_create_borrowed)
public func parmlDatasetCreateBorrowed(
    _ inputs_dtype: Int32, _ inputs_dims: UnsafePointer<Int64>?, _ inputs_ndim: Int, _ inputs: UnsafeRawPointer?,
    _ targets_dtype: Int32, _ targets_dims: UnsafePointer<Int64>?, _ targets_ndim: Int, _ targets: UnsafeRawPointer?,
    _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_create_borrowed") {
        let xType = try dtypeFromC(inputs_dtype), yType = try dtypeFromC(targets_dtype)
        let xShape = try shape(inputs_dims, inputs_ndim, name: "inputs_dims")
        let yShape = try shape(targets_dims, targets_ndim, name: "targets_dims")
        let x = try nonNull(inputs, "inputs"), y = try nonNull(targets, "targets")
        let out = try nonNull(out, "out")
        guard xType == .float32 else {
            throw ParmlError.invalidArgument(
                "inputs are \(xType.name); a borrowed dataset reads float32 inputs in place (convert them, or use parml_dataset_create)")
        }
        for (p, name, size) in [(x, "inputs", 4), (y, "targets", yType.size)] where Int(bitPattern: p) % size != 0 {
            throw ParmlError.invalidArgument("\(name) at \(p) is not \(size)-byte aligned")
        }
        let xs = Tensor(view: UnsafeMutableRawPointer(mutating: x).assumingMemoryBound(to: Float.self), shape: xShape, owner: nil)
        let ys: Tensor
        let yPointer = UnsafeMutableRawPointer(mutating: y).assumingMemoryBound(to: Float.self)
        switch yType {
        case .float32, .int32:
            ys = Tensor(view: yPointer, shape: yShape, owner: nil)
            try ys.retarget(yPointer, shape: yShape, dtype: yType)
        case .int64:
            // The engine's class indices are int32: a copy of the targets
            // only (4 bytes a label), the inputs stay borrowed.
            let wide = Tensor(view: yPointer, shape: yShape, owner: nil)
            try wide.retarget(yPointer, shape: yShape, dtype: .int64)
            ys = try Tensor(shape: yShape, dtype: .int32)
            try ys.convert(from: wide, to: .int32, what: "targets")
        }
        let d = try Dataset(inputs: xs, targets: ys)
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}

/// How many class names the dataset has in *count_out: the distinct labels
/// of a CSV table loaded with PARML_CSV_LABEL_TEXT (the parts
/// parml_dataset_split makes of it keep them all), else 0.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL count_out). Since: 0.3.
@c(parml_dataset_num_class_names)
public func parmlDatasetNumClassNames(_ dataset: parml_dataset?, _ count_out: UnsafeMutablePointer<Int64>?) -> parml_status {
    guarded("parml_dataset_num_class_names") {
        let d = try datasetObject(dataset, inFitCallback: .allowed)
        try nonNull(count_out, "count_out").pointee = Int64((d as? Dataset)?.classNames?.count ?? 0)
    }
}

/// The name of class `index` (0 <= index < parml_dataset_num_class_names) in
/// a new NUL-terminated UTF-8 string *name_out, which the caller frees with
/// parml_buffer_free. *name_out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL name_out, index out of
/// range), PARML_ERR_STATE (the dataset's labels were not names).
/// Since: 0.3.
@c(parml_dataset_class_name)
public func parmlDatasetClassName(
    _ dataset: parml_dataset?, _ index: Int64, _ name_out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> parml_status {
    guarded("parml_dataset_class_name") {
        let d = try datasetObject(dataset, inFitCallback: .allowed)
        let out = try nonNull(name_out, "name_out")
        guard let names = (d as? Dataset)?.classNames else {
            throw ParmlError.state("the dataset has no class names (its labels were not loaded as text: PARML_CSV_LABEL_TEXT)")
        }
        guard index >= 0, index < names.count else {
            throw ParmlError.invalidArgument("class index \(index) is out of range: the dataset has \(names.count) class names (0...\(names.count - 1))")
        }
        out.pointee = try cString(names[Int(index)])
    }
}
