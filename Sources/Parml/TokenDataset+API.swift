import CParmlTypes
import ParmlData
import ParmlTensor

/// The C token options (NULL: the defaults) as the engine takes them.
private func tokenOptions(_ params: UnsafePointer<parml_token_params>?) throws -> (mode: TokenDataset.Mode, seed: UInt64, windows: Int?) {
    let p = try params.map {
        try readSized($0, defaults: defaultTokenParams(), name: "params", minimum: MemoryLayout<parml_token_params>.size)
    } ?? defaultTokenParams()
    guard let mode = TokenDataset.Mode(rawValue: p.mode) else {
        throw ParmlError.invalidArgument("params->mode \(p.mode) is unknown (PARML_TOKENS_RANDOM or PARML_TOKENS_SEQUENTIAL)")
    }
    guard p.windows_per_epoch >= 0 else {
        throw ParmlError.invalidArgument("params->windows_per_epoch must be 0 ((N-1)/T) or positive, got \(p.windows_per_epoch)")
    }
    return (mode, p.seed, p.windows_per_epoch == 0 ? nil : Int(p.windows_per_epoch))
}

/// A token dataset over a copy of `ids`, a 1-D tensor (N) of token ids
/// (int32, int64, or float32 integers), each in 0..2^24, with windows of
/// block_size T: sample j is inputs ids[s .. s+T) and targets
/// ids[s+1 .. s+T], s chosen by params->mode (NULL params = the
/// parml_token_params_init defaults). Windows are cut per batch, never
/// stored: the dataset holds the N ids (4 bytes each). parml_trainer_fit
/// and _evaluate take it as any dataset; evaluate reads epoch 0's windows,
/// the same at every call. The tensor stays the caller's; the caller owns
/// *out (parml_dataset_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, block_size outside
/// 1...2^31-1, fewer than T+1 ids, an id that is negative, above 2^24 or
/// not an integer, a bad params field), PARML_ERR_SHAPE (ids not 1-D),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_dataset_create_tokens)
public func parmlDatasetCreateTokens(
    _ ids: parml_tensor?, _ block_size: Int64, _ params: UnsafePointer<parml_token_params>?,
    _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_create_tokens") {
        let x = try tensorObject(ids, "ids")
        let t = try positive(block_size, "block_size")
        let options = try tokenOptions(params)
        let out = try nonNull(out, "out")
        guard x.shape.rank == 1 else { throw ParmlError.shape("ids must be a 1-D tensor (N), got shape \(x.shape)") }
        // The dataset's own int32 copy: the engine's type for ids.
        let copy = try Tensor(shape: x.shape, dtype: .int32)
        try copy.convert(from: x, to: .int32, what: "ids")
        let d = try TokenDataset(ids: copy, blockSize: t, mode: options.mode, seed: options.seed, windows: options.windows)
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}

/// A token dataset read from a flat file of ids with no header, as
/// nanoGPT's prepare.py writes train.bin: file_type PARML_TOKEN_FILE_UINT16
/// (or _UINT8, _UINT32, _INT32; little-endian). The file is memory-mapped
/// and read in place at its own width (no int32 copy): every id is read
/// once here, then the pages are released from the process and read again
/// as windows need them. The file must not change while the dataset lives
/// (a mapped file truncated underneath raises SIGBUS). Otherwise as
/// parml_dataset_create_tokens. The caller owns *out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out, unknown
/// file_type, block_size outside 1...2^31-1, fewer than T+1 ids, a bad
/// params field), PARML_ERR_IO (cannot open or read, not a regular file),
/// PARML_ERR_FORMAT (empty, a size that is not a whole number of ids, an
/// id above 2^24 or negative), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
@c(parml_dataset_load_tokens)
public func parmlDatasetLoadTokens(
    _ path: UnsafePointer<CChar>?, _ file_type: Int32, _ block_size: Int64, _ params: UnsafePointer<parml_token_params>?,
    _ out: UnsafeMutablePointer<parml_dataset?>?
) -> parml_status {
    guarded("parml_dataset_load_tokens") {
        let path = try nonNull(path, "path")
        guard let type = TokenFileType(rawValue: file_type) else {
            throw ParmlError.invalidArgument("file_type \(file_type) is unknown (PARML_TOKEN_FILE_UINT8, _UINT16, _UINT32 or _INT32)")
        }
        let t = try positive(block_size, "block_size")
        let options = try tokenOptions(params)
        let out = try nonNull(out, "out")
        let d = try TokenDataset.load(cPath: path, type: type, blockSize: t, mode: options.mode, seed: options.seed, windows: options.windows)
        out.pointee = HandleRegistry.shared.register(d, as: .dataset)
    }
}
