import ParmlTensor

/// The element type of a flat file of token ids: little-endian integers
/// with no header, as nanoGPT's prepare.py writes train.bin (uint16).
/// Raw values are the C API's PARML_TOKEN_FILE_* codes.
public enum TokenFileType: Int32 {
    case uint8 = 1, uint16 = 2, uint32 = 3, int32 = 4

    public var size: Int {
        switch self {
        case .uint8: 1
        case .uint16: 2
        case .uint32, .int32: 4
        }
    }
}

extension TokenDataset {
    /// A token dataset over a flat file of ids (a regular file), mapped
    /// and read in place: no copy of the ids, whatever their width (nanoGPT's
    /// uint16 train.bin stays 2 bytes an id). The ids are read once here
    /// (checked, the largest found), then the pages are released from this
    /// process (MADV_DONTNEED; the page cache keeps them while memory allows)
    /// and read again as windows touch them. Throws `.io` when it cannot be
    /// opened or mapped, `.format` when its size is not a whole number of
    /// ids or an id is outside 0...2^24, and the initialiser's errors
    /// otherwise. The file must not change while the dataset lives.
    public static func load(
        cPath: UnsafePointer<CChar>, type: TokenFileType, blockSize: Int, mode: Mode, seed: UInt64, windows: Int? = nil
    ) throws -> TokenDataset {
        let file = try MappedFile(cPath: cPath, displayName: String(cString: cPath))
        let path = file.path, bytes = file.bytes.count, width = type.size
        guard bytes % width == 0 else {
            throw ParmlError.format("\(path): \(bytes) bytes is not a whole number of \(width)-byte ids (truncated?)")
        }
        let n = bytes / width
        guard n >= 1 else { throw ParmlError.format("\(path): the file is empty") }
        let ids = TokenIDs(base: file.bytes.baseAddress!, count: n, type: type, owner: file)
        // The engine's range, checked before the dataset's own checks (which name no file).
        for i in 0..<n {
            let v: Int64 = type == .uint32 ? Int64(UInt32(bitPattern: ids[i])) : Int64(ids[i])
            guard v >= 0, v <= 1 << 24 else {
                throw ParmlError.format("\(path): id \(i) is \(v), outside 0...2^24 (ids go into the model as exact floats)")
            }
        }
        let d = try TokenDataset(ids: ids, blockSize: blockSize, mode: mode, seed: seed, windows: windows)
        file.release()
        return d
    }
}
