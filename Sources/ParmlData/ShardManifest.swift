#if canImport(Glibc)
import Glibc
#endif
import CZlib
import ParmlTensor

/// 8 lowercase hex digits, as a manifest writes a CRC-32.
private func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 8 - s.count) + s
}

/// One shard of a sharded dataset, checked: where its inputs' rows lie in
/// which file. Targets are read whole when the dataset opens (4 bytes a
/// sample), so only inputs stream.
public struct Shard: Sendable, Equatable {
    /// The file holding the inputs (a `.npy`, or a `.npz` with a stored member).
    public let inputsPath: String
    /// Offset of the first inputs byte in that file.
    public let inputsOffset: Int
    /// The file's size when it was checked; a reader refuses a file that changed.
    public let fileSize: Int
    public let rows: Int
    /// The manifest's CRC-32 of each of the shard's files (inputs, then
    /// targets when they are another file); empty when it gives none.
    public var checksums: [FileChecksum] = []
}

/// A whole file's CRC-32 (zlib's, as Python's zlib.crc32), as a manifest states it.
public struct FileChecksum: Sendable, Equatable {
    public let path: String
    public let crc32: UInt32
}

/// A manifest and the shards it names, every header checked against it.
///
/// The manifest is a small text file (`manifest.txt` in the dataset's
/// directory unless a file is named), one statement a line, `#` comments:
///
///     parml-shards 1
///     inputs uint8 28 28          # optional: element type and sample dims
///     targets uint8               # optional: element type [and dims]
///     shard x_00000.npy y_00000.npy 10000
///     shard part_00001.npz 10000  # members x.npy and y.npy, stored (np.savez)
///     shard x_00002.npy y_00002.npy 10000 crc32=1c291ca3,9b1ea5f0
///
/// A shard line may end with `crc32=` and the CRC-32 (8 hex digits, zlib's)
/// of each of its files, comma-separated (inputs, then targets; one for an
/// npz). A stream verifies the shards it reads when it opens, before any
/// row is read (`verifyChecksums`); shards without them are not checked.
/// Shard paths are relative to the manifest's directory (or absolute) and
/// contain no spaces. The row count of each shard is required and must
/// match its files. Without `inputs`/`targets` lines the first shard sets
/// the element types and dims every other shard must have.
public struct ShardManifest {
    public let path: String
    public let inputElement: NPYElement
    public let sampleDims: [Int]
    public let targetElement: NPYElement
    /// Dims of one target: [] for one value a sample.
    public let targetDims: [Int]
    public let shards: [Shard]
    /// Per shard: where its targets lie (file, offset), checked; read by `readTargets`.
    let targetSources: [(path: String, offset: Int)]

    /// Input element types a stream converts without a check per value:
    /// every value of these is an exact float32.
    static let streamableInputs: Set<NPYElement> = [.float32, .float16, .float64, .uint8, .int8, .bool, .int16, .uint16]

    /// Reads and checks the manifest at `path` (a file, or a directory
    /// holding `manifest.txt`) and the header of every shard it names.
    /// Nothing is read past the headers. Errors: `.io` (a missing or
    /// unreadable file), `.format` (a bad line, a shard whose rows, dtype,
    /// dims or size disagree with the manifest, a truncated shard),
    /// `.unsupported` (compressed npz members, an input dtype a stream
    /// does not read).
    public static func read(path given: String) throws -> ShardManifest {
        var st = stat()
        var path = given
        if stat(given, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { path = given.hasSuffix("/") ? given + "manifest.txt" : given + "/manifest.txt" }
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let file = try MappedFile(cPath: path, displayName: path)
        guard let text = String(validating: file.bytes, as: UTF8.self) else { throw ParmlError.format("\(path): the manifest is not UTF-8 text") }

        var version: Int?
        var declaredInputs: (NPYElement, [Int])?
        var declaredTargets: (NPYElement, [Int]?)?
        var entries: [(line: Int, inputs: String, targets: String?, rows: Int, crcs: [UInt32])] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            let words = (raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
                .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let keyword = words.first else { continue }
            func bad(_ what: String) -> ParmlError { ParmlError.format("\(path):\(line): \(what)") }
            func element(_ word: String) throws -> NPYElement {
                let names: [String: NPYElement] = [
                    "bool": .bool, "int8": .int8, "uint8": .uint8, "int16": .int16, "uint16": .uint16, "int32": .int32, "uint32": .uint32,
                    "int64": .int64, "uint64": .uint64, "float16": .float16, "float32": .float32, "float64": .float64,
                ]
                guard let e = names[word] else { throw bad("'\(word)' is not an element type (bool, int8...int64, uint8...uint64, float16/32/64)") }
                return e
            }
            func dims(_ words: ArraySlice<String>) throws -> [Int] {
                try words.map { w in
                    guard let d = Int(w), d >= 1 else { throw bad("'\(w)' is not a dimension (an integer >= 1)") }
                    return d
                }
            }
            if version == nil && keyword != "parml-shards" { throw bad("a manifest starts with 'parml-shards 1'") }
            switch keyword {
            case "parml-shards":
                guard version == nil, words.count == 2, words[1] == "1" else { throw bad("expected 'parml-shards 1' once, first") }
                version = 1
            case "inputs":
                guard words.count >= 3 else { throw bad("'inputs' takes an element type and the sample dims") }
                declaredInputs = (try element(words[1]), try dims(words[2...]))
            case "targets":
                guard words.count >= 2 else { throw bad("'targets' takes an element type [and dims]") }
                declaredTargets = (try element(words[1]), words.count > 2 ? try dims(words[2...]) : nil)
            case "shard":
                var words = words
                var crcs: [UInt32] = []
                if let last = words.last, last.hasPrefix("crc32=") {
                    words.removeLast()
                    let given = last.dropFirst(6).split(separator: ",", omittingEmptySubsequences: false)
                    for h in given {
                        guard h.count == 8, let v = UInt32(h, radix: 16) else { throw bad("'\(h)' in \(last) is not a CRC-32 (8 hex digits)") }
                        crcs.append(v)
                    }
                    guard crcs.count == words.count - 2 else {
                        throw bad("\(last) gives \(crcs.count) checksum(s) for \(words.count - 2) file(s) (one a file: inputs, then targets)")
                    }
                }
                guard words.count == 3 || words.count == 4, let rows = Int(words[words.count - 1]), rows >= 1 else {
                    throw bad("expected 'shard INPUTS.npy TARGETS.npy ROWS' or 'shard ARCHIVE.npz ROWS' (ROWS >= 1) [crc32=...]")
                }
                func resolve(_ p: String) -> String { p.hasPrefix("/") ? p : directory + "/" + p }
                entries.append((line, resolve(words[1]), words.count == 4 ? resolve(words[2]) : nil, rows, crcs))
            default:
                throw bad("unknown statement '\(keyword)' (parml-shards, inputs, targets, shard)")
            }
        }
        guard version != nil else { throw ParmlError.format("\(path): empty manifest (expected 'parml-shards 1')") }
        guard !entries.isEmpty else { throw ParmlError.format("\(path): the manifest names no shard") }

        var shards: [Shard] = []
        var targetSources: [(String, Int)] = []
        var inputs = declaredInputs
        var targets: (NPYElement, [Int])? = declaredTargets.flatMap { t in t.1.map { (t.0, $0) } }
        for e in entries {
            let at = "\(path):\(e.line)"
            let (x, xOffset, xSize) = try locate(e.inputs, member: "x", at: at)
            let (y, yOffset, _) = try locate(e.targets ?? e.inputs, member: e.targets == nil ? "y" : nil, at: at)
            guard x.dims.count >= 2 else {
                throw ParmlError.shape("\(e.inputs): inputs need shape (rows, sample dims...), got \(x.dims)")
            }
            guard x.dims[0] == e.rows, y.dims[0] == e.rows else {
                throw ParmlError.format("\(at): the manifest says \(e.rows) rows, but \(e.inputs) holds \(x.dims[0]) and \(e.targets ?? e.inputs) \(y.dims[0])")
            }
            let xd = Array(x.dims.dropFirst()), yd = Array(y.dims.dropFirst())
            if let (el, d) = inputs {
                guard x.element == el, xd == d else {
                    throw ParmlError.format("\(e.inputs): inputs are \(x.element) with sample dims \(xd), but the manifest (or the first shard) says \(el) \(d)")
                }
            } else {
                inputs = (x.element, xd)
            }
            if let (el, d) = targets {
                guard y.element == el, yd == d else {
                    throw ParmlError.format("\(e.targets ?? e.inputs): targets are \(y.element) with dims \(yd), but the manifest (or the first shard) says \(el) \(d)")
                }
            } else if let t = declaredTargets {
                guard y.element == t.0 else { throw ParmlError.format("\(e.targets ?? e.inputs): targets are \(y.element), but the manifest says \(t.0)") }
                targets = (y.element, yd)
            } else {
                targets = (y.element, yd)
            }
            var shard = Shard(inputsPath: e.inputs, inputsOffset: xOffset, fileSize: xSize, rows: e.rows)
            shard.checksums = zip([e.inputs] + (e.targets.map { [$0] } ?? []), e.crcs).map { FileChecksum(path: $0, crc32: $1) }
            shards.append(shard)
            targetSources.append((e.targets ?? e.inputs, yOffset))
        }
        guard let inputs, let targets else { throw ParmlError.internal("\(path): no shard set the element types") }
        guard streamableInputs.contains(inputs.0) else {
            throw ParmlError.unsupported(
                "\(path): \(inputs.0) inputs are not streamed (values past 2^24 would need a check per value); save them as float32")
        }
        return ShardManifest(
            path: path, inputElement: inputs.0, sampleDims: inputs.1, targetElement: targets.0, targetDims: targets.1, shards: shards,
            targetSources: targetSources)
    }

    /// The header of a `.npy` file, or of member `member`.npy of a `.npz`
    /// archive (when `member` is given and the file is a zip archive), and
    /// where its data starts in the file.
    private static func locate(_ path: String, member: String?, at: String) throws -> (NPYHeader, Int, Int) {
        let file: MappedFile
        do { file = try MappedFile(cPath: path, displayName: path) } catch let e as ParmlError {
            throw ParmlError.io("\(at): the manifest names a shard that cannot be read: \(e.message)")
        }
        guard file.bytes.count >= 4 else { throw ParmlError.format("\(path): \(file.bytes.count) bytes, too short for a shard (truncated?)") }
        let isZip = file.bytes.loadUnaligned(as: UInt32.self) == UInt32(0x0403_4b50).littleEndian
        if !isZip {
            let h = try NPY.header(of: file.bytes, name: path)
            return (h, h.dataOffset, file.bytes.count)
        }
        guard let member else { throw ParmlError.format("\(path): a zip archive where a .npy file was expected (one file a shard: 'shard ARCHIVE.npz ROWS')") }
        let members = try Zip.members(of: file.bytes, name: path)
        guard let m = members.first(where: { $0.name == member + ".npy" }) else {
            throw ParmlError.format("\(path): no member '\(member).npy' (a .npz shard holds x and y: np.savez(path, x=..., y=...))")
        }
        guard m.method == 0 else {
            throw ParmlError.unsupported("\(path)[\(m.name)]: a compressed member cannot be streamed; write shards with np.savez, not savez_compressed")
        }
        let (bytes, _) = try Zip.contents(of: m, in: file.bytes, name: path)
        let name = "\(path)[\(m.name)]"
        let h = try NPY.header(of: bytes, name: name)
        return (h, bytes.baseAddress! - file.bytes.baseAddress! + h.dataOffset, file.bytes.count)
    }

    /// Checks the files of shards `chosen` against the manifest's CRC-32s
    /// (shards without them are skipped): one sequential read of each file.
    /// A mismatch is a `.format` error naming the shard and the file.
    func verifyChecksums(_ chosen: [Int]) throws {
        for k in chosen {
            for c in shards[k].checksums {
                let file = try MappedFile(cPath: c.path, displayName: c.path)
                var crc = UInt(CZlib.crc32(0, nil, 0))
                var at = 0
                let bytes = file.bytes
                while at < bytes.count {
                    let n = min(bytes.count - at, 1 << 30)  // zlib takes 32-bit lengths
                    crc = UInt(CZlib.crc32(uLong(crc), bytes.baseAddress! + at, uInt(n)))
                    at += n
                }
                guard UInt32(truncatingIfNeeded: crc) == c.crc32 else {
                    throw ParmlError.format(
                        "\(path): shard \(k) (\(c.path)) has CRC-32 \(hex(UInt32(truncatingIfNeeded: crc))) but the manifest says \(hex(c.crc32)): "
                            + "the file is corrupt or changed since the manifest was written")
                }
            }
        }
    }

    /// The targets of shards `chosen` (in that order), stacked: int32 class
    /// indices for integer and bool targets, float32 values for floats.
    /// Reads each targets array once (mapped, then unmapped).
    func readTargets(_ chosen: [Int]) throws -> Tensor {
        let rows = chosen.reduce(0) { $0 + shards[$1].rows }
        let perRow = targetDims.reduce(1, *)
        var dims = [max(rows, 1)]
        dims += targetDims
        let out = try Tensor(shape: try Shape(dims), dtype: targetElement.isFloat ? .float32 : .int32)
        out.fill(0)  // a rank without shards keeps one zero row: its fit probe
        var at = 0
        for k in chosen {
            let (path, offset) = targetSources[k]
            let file = try MappedFile(cPath: path, displayName: path)
            let n = shards[k].rows * perRow
            guard offset + n * targetElement.size <= file.bytes.count else {
                throw ParmlError.io("\(path): shorter than when the manifest was checked (changed on disk?)")
            }
            let header = NPYHeader(element: targetElement, dims: [shards[k].rows] + targetDims, dataOffset: 0, count: n)
            let t = try NPY.targets(header, data: file.bytes.baseAddress! + offset, owner: file, name: path)
            UnsafeMutableRawPointer(out.data + at).copyMemory(from: t.data, byteCount: n * 4)
            at += n
        }
        return out
    }
}
