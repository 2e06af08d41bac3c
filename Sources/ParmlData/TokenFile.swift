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
    /// Reads a flat file of ids (a regular file, mapped) into int32. Throws `.io`
    /// when it cannot be opened or read, `.format` when its size is not a
    /// whole number of ids or an id is outside 0...2^24, and the
    /// initialiser's errors otherwise.
    public static func load(
        cPath: UnsafePointer<CChar>, type: TokenFileType, blockSize: Int, mode: Mode, seed: UInt64, windows: Int? = nil
    ) throws -> TokenDataset {
        let ids = try readIDs(cPath: cPath, type: type)
        return try TokenDataset(ids: ids, blockSize: blockSize, mode: mode, seed: seed, windows: windows)
    }

    static func readIDs(cPath: UnsafePointer<CChar>, type: TokenFileType) throws -> Tensor {
        let file = try MappedFile(cPath: cPath, displayName: String(cString: cPath))
        let path = file.path, bytes = file.bytes.count, width = type.size
        guard bytes % width == 0 else {
            throw ParmlError.format("\(path): \(bytes) bytes is not a whole number of \(width)-byte ids (truncated?)")
        }
        let n = bytes / width
        guard n >= 1 else { throw ParmlError.format("\(path): the file is empty") }
        let ids = try Tensor(shape: Shape(n), dtype: .int32)
        let buffer = file.bytes.baseAddress!
        for i in 0..<n {
            let v: Int64
            switch type {
            case .uint8: v = Int64(buffer.load(fromByteOffset: i, as: UInt8.self))
            case .uint16: v = Int64(UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            case .uint32: v = Int64(UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            case .int32: v = Int64(Int32(littleEndian: buffer.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            }
            guard v >= 0, v <= 1 << 24 else {
                throw ParmlError.format("\(path): id \(i) is \(v), outside 0...2^24 (ids go into the model as exact floats)")
            }
            ids.int32s[i] = Int32(v)
        }
        return ids
    }
}
