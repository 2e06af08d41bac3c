import ParmlTensor

/// The element types parml reads from a `.npy` array: numpy's bool,
/// integers and floats, little-endian (or single bytes).
public enum NPYElement: String, Sendable, CaseIterable {
    case bool = "b1", int8 = "i1", uint8 = "u1", int16 = "i2", uint16 = "u2", int32 = "i4", uint32 = "u4"
    case int64 = "i8", uint64 = "u8", float16 = "f2", float32 = "f4", float64 = "f8"

    /// Bytes per element.
    public var size: Int { Int(rawValue.dropFirst())! }
    public var isFloat: Bool { rawValue.hasPrefix("f") }

    /// The element type of a numpy `descr` such as '<f4' or '|u1', or an
    /// `.unsupported` error saying why parml does not read it.
    static func parse(descr: String, name: String) throws -> NPYElement {
        let order = descr.first
        let code = String(descr.dropFirst())
        if code.hasPrefix("O") {
            throw ParmlError.unsupported(
                "\(name): an object array (dtype \(descr), pickled Python objects) cannot be read; save a numeric array")
        }
        guard order == "<" || order == ">" || order == "|" || order == "=", let element = NPYElement(rawValue: code) else {
            throw ParmlError.unsupported(
                "\(name): dtype '\(descr)' is not supported; parml reads bool, int8...int64, uint8...uint64, float16, float32 and float64")
        }
        if order == ">" && element.size > 1 {
            throw ParmlError.unsupported(
                "\(name): dtype '\(descr)' is big-endian; save it little-endian (arr.astype(arr.dtype.newbyteorder('<')))")
        }
        return element
    }
}

/// The header of one `.npy` array: what its data is and where it starts.
public struct NPYHeader: Sendable, Equatable {
    public let element: NPYElement
    /// C-order dimensions (numpy's `shape`), each at least 1.
    public let dims: [Int]
    /// Offset of the first data byte from the start of the `.npy` bytes.
    public let dataOffset: Int
    /// Elements in the array: `dims` multiplied together.
    public let count: Int
}

/// Reader of NumPy's `.npy` format (numpy.lib.format, versions 1 to 3): the
/// magic "\x93NUMPY", a version, a little-endian header length, a Python
/// dict literal {'descr', 'fortran_order', 'shape'}, then the raw elements.
public enum NPY {
    /// Parses and checks the header of `bytes` (a whole `.npy` file or
    /// archive member), including that exactly `count × size` data bytes
    /// follow it: a short file or a header that promises more or fewer
    /// elements than are there is `.format`; Fortran order, object arrays,
    /// big-endian and other dtypes are `.unsupported`.
    public static func header(of bytes: UnsafeRawBufferPointer, name: String) throws -> NPYHeader {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
        guard bytes.count >= 10 else {
            throw ParmlError.format("\(name): \(bytes.count) bytes, too short for a .npy header (truncated, or not a .npy file)")
        }
        guard Array(bytes[0..<6]) == magic else { throw ParmlError.format("\(name): not a .npy file (no \\x93NUMPY magic)") }
        let major = bytes[6]
        let lengthBytes: Int
        switch major {
        case 1: lengthBytes = 2
        case 2, 3: lengthBytes = 4
        default: throw ParmlError.unsupported("\(name): .npy format version \(major).\(bytes[7]) is unknown (1, 2 and 3 are read)")
        }
        var headerLength = 0
        for i in 0..<lengthBytes { headerLength |= Int(bytes[8 + i]) << (8 * i) }
        let start = 8 + lengthBytes
        guard bytes.count >= start + headerLength else {
            throw ParmlError.format(
                "\(name): the file ends inside the .npy header (\(start + headerLength) header bytes promised, \(bytes.count) there)")
        }
        guard let text = String(validating: bytes[start..<start + headerLength], as: UTF8.self) else {
            throw ParmlError.format("\(name): the .npy header is not text")
        }
        var parser = HeaderParser(text: Array(text.utf8), name: name)
        let dict = try parser.dict()

        guard case .string(let descr)? = dict["descr"] else {
            if dict["descr"] != nil {
                throw ParmlError.unsupported("\(name): a structured dtype (record array) cannot be read; save one numeric array per field")
            }
            throw ParmlError.format("\(name): the .npy header has no 'descr'")
        }
        let element = try NPYElement.parse(descr: descr, name: name)
        guard case .bool(let fortran)? = dict["fortran_order"] else {
            throw ParmlError.format("\(name): the .npy header has no 'fortran_order' True or False")
        }
        if fortran {
            throw ParmlError.unsupported("\(name): the array is in Fortran order; save a C-order array (np.ascontiguousarray)")
        }
        guard case .ints(let dims)? = dict["shape"] else { throw ParmlError.format("\(name): the .npy header has no 'shape' tuple") }
        guard !dims.isEmpty else { throw ParmlError.format("\(name): a 0-d array (shape ()) has no samples") }
        guard dims.count <= Shape.maxRank else {
            throw ParmlError.unsupported("\(name): shape \(dims) has \(dims.count) dimensions; parml takes 1 to \(Shape.maxRank)")
        }
        var count = 1
        for d in dims {
            guard d >= 1 else { throw ParmlError.format("\(name): shape \(dims) has a dimension of size \(d); a dataset needs every dimension at least 1") }
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, p <= Int.max / 16 else { throw ParmlError.format("\(name): shape \(dims) has too many elements") }
            count = p
        }
        let dataOffset = start + headerLength
        let dataBytes = count * element.size
        let have = bytes.count - dataOffset
        let shapeText = "(" + dims.map(String.init).joined(separator: ", ") + ")"
        if have < dataBytes {
            throw ParmlError.format(
                "\(name): truncated: shape \(shapeText) of \(descr) needs \(dataBytes) data bytes after the \(dataOffset)-byte header, the file has \(have)")
        }
        if have > dataBytes {
            throw ParmlError.format(
                "\(name): \(have - dataBytes) bytes after the data: shape \(shapeText) of \(descr) needs \(dataBytes) data bytes, the file has \(have) (the header and the data disagree)")
        }
        return NPYHeader(element: element, dims: dims, dataOffset: dataOffset, count: count)
    }

    /// The inputs of a dataset from an array's data at `data`: float32
    /// viewed in place when 4-byte aligned (kept alive by `owner`), other
    /// types converted into a new float32 tensor. uint8 values are divided
    /// by 255 (images, as parml_dataset_load_idx scales them); bool becomes
    /// 0 or 1; other integers are kept as exact floats (|value| ≤ 2^24, else
    /// `.format`); float16 and float64 round to the nearest float32.
    public static func inputs(_ h: NPYHeader, data: UnsafeRawPointer, owner: AnyObject, name: String) throws -> Tensor {
        let shape = try Shape(h.dims)
        if h.element == .float32 && Int(bitPattern: data) % 4 == 0 {
            return Tensor(view: UnsafeMutableRawPointer(mutating: data).assumingMemoryBound(to: Float.self), shape: shape, owner: owner)
        }
        let t = try Tensor(shape: shape)
        let out = t.data
        switch h.element {
        case .float32: UnsafeMutableRawPointer(out).copyMemory(from: data, byteCount: h.count * 4)
        case .uint8:
            // Division, not multiplication by 1/255: 255 maps to exactly 1 (as IDX).
            for i in 0..<h.count { out[i] = Float(data.load(fromByteOffset: i, as: UInt8.self)) / 255 }
        case .float16:
            for i in 0..<h.count { out[i] = Float(Float16(bitPattern: UInt16(littleEndian: data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
        case .float64:
            for i in 0..<h.count { out[i] = Float(Double(bitPattern: UInt64(littleEndian: data.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        default:
            for i in 0..<h.count {
                let v = try integer(h.element, data, i, name: name)
                guard v >= -(1 << 24), v <= 1 << 24 else {
                    throw ParmlError.format("\(name): element \(i) is \(v), which float32 cannot hold exactly (|value| ≤ 2^24 for integer inputs)")
                }
                out[i] = Float(v)
            }
        }
        return t
    }

    /// The targets of a dataset: integers and bool become int32 class
    /// indices (a negative value or one above 2^31-1 is `.format`), viewed
    /// in place when int32 and aligned; floats become float32 values
    /// (regression targets, or class indices when they are whole numbers,
    /// as in parml_dataset_create), viewed in place when float32 and aligned.
    public static func targets(_ h: NPYHeader, data: UnsafeRawPointer, owner: AnyObject, name: String) throws -> Tensor {
        let shape = try Shape(h.dims)
        let aligned = Int(bitPattern: data) % 4 == 0
        let pointer = UnsafeMutableRawPointer(mutating: data).assumingMemoryBound(to: Float.self)
        if h.element.isFloat {
            if h.element == .float32 && aligned { return Tensor(view: pointer, shape: shape, owner: owner) }
            let t = try Tensor(shape: shape)
            for i in 0..<h.count {
                switch h.element {
                case .float16: t.data[i] = Float(Float16(bitPattern: UInt16(littleEndian: data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
                case .float64: t.data[i] = Float(Double(bitPattern: UInt64(littleEndian: data.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                default: t.data[i] = data.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
                }
            }
            return t
        }
        func refuse(_ i: Int, _ v: Int64) -> ParmlError {
            ParmlError.format("\(name): label \(i) is \(v), not a class index (an integer in 0...2^31-1)")
        }
        if h.element == .int32 && aligned {
            let view = Tensor(view: pointer, shape: shape, owner: owner)
            try view.retarget(pointer, shape: shape, dtype: .int32)
            for i in 0..<h.count where view.int32s[i] < 0 { throw refuse(i, Int64(view.int32s[i])) }
            return view
        }
        let t = try Tensor(shape: shape, dtype: .int32)
        for i in 0..<h.count {
            let v = try integer(h.element, data, i, name: name)
            guard v >= 0, v <= Int64(Int32.max) else { throw refuse(i, v) }
            t.int32s[i] = Int32(v)
        }
        return t
    }

    /// Element `i` of an integer or bool array as Int64 (uint64 above
    /// Int64.max is `.format`: no class index or exact float is that big).
    @inline(__always)
    private static func integer(_ e: NPYElement, _ p: UnsafeRawPointer, _ i: Int, name: String) throws -> Int64 {
        switch e {
        case .bool: return p.load(fromByteOffset: i, as: UInt8.self) == 0 ? 0 : 1
        case .int8: return Int64(p.load(fromByteOffset: i, as: Int8.self))
        case .uint8: return Int64(p.load(fromByteOffset: i, as: UInt8.self))
        case .int16: return Int64(Int16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
        case .uint16: return Int64(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .int32: return Int64(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
        case .uint32: return Int64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        case .int64: return Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
        case .uint64:
            let v = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
            guard let s = Int64(exactly: v) else { throw ParmlError.format("\(name): element \(i) is \(v), too large") }
            return s
        case .float16, .float32, .float64: throw ParmlError.internal("\(name): \(e) is not an integer type")
        }
    }
}

/// The subset of Python literal syntax a .npy header uses: a dict of string
/// keys whose values are strings, True/False, tuples of integers, or (for
/// structured dtypes) lists, which are skipped.
private struct HeaderParser {
    enum Value: Equatable {
        case string(String), bool(Bool), ints([Int]), other
    }

    let text: [UInt8]
    let name: String
    var at = 0

    init(text: [UInt8], name: String) {
        self.text = text
        self.name = name
    }

    func error(_ what: String) -> ParmlError {
        ParmlError.format("\(name): the .npy header is not a valid dict (\(what) at byte \(at)): \(String(decoding: text, as: UTF8.self).trimmingSpaces)")
    }

    mutating func skipSpace() {
        while at < text.count, text[at] == 0x20 || text[at] == 0x0A || text[at] == 0x09 || text[at] == 0x0D { at += 1 }
    }

    mutating func expect(_ c: UInt8) throws {
        skipSpace()
        guard at < text.count, text[at] == c else { throw error("expected '\(Character(Unicode.Scalar(c)))'") }
        at += 1
    }

    mutating func peek() -> UInt8? {
        skipSpace()
        return at < text.count ? text[at] : nil
    }

    mutating func dict() throws -> [String: Value] {
        try expect(UInt8(ascii: "{"))
        var out: [String: Value] = [:]
        while let c = peek(), c != UInt8(ascii: "}") {
            let key = try string()
            try expect(UInt8(ascii: ":"))
            out[key] = try value()
            if peek() == UInt8(ascii: ",") { at += 1 }
        }
        try expect(UInt8(ascii: "}"))
        return out
    }

    mutating func string() throws -> String {
        skipSpace()
        guard at < text.count, text[at] == UInt8(ascii: "'") || text[at] == UInt8(ascii: "\"") else { throw error("expected a string") }
        let quote = text[at]
        at += 1
        let begin = at
        while at < text.count, text[at] != quote { at += 1 }
        guard at < text.count else { throw error("unterminated string") }
        let s = String(decoding: text[begin..<at], as: UTF8.self)
        at += 1
        return s
    }

    mutating func value() throws -> Value {
        guard let c = peek() else { throw error("expected a value") }
        switch c {
        case UInt8(ascii: "'"), UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "T"), UInt8(ascii: "F"):
            for (word, v) in [("True", true), ("False", false)] where text[at...].starts(with: word.utf8) {
                at += word.utf8.count
                return .bool(v)
            }
            throw error("expected True or False")
        case UInt8(ascii: "("):
            at += 1
            var ints: [Int] = []
            while let d = peek(), d != UInt8(ascii: ")") {
                let begin = at
                while at < text.count, text[at] >= UInt8(ascii: "0"), text[at] <= UInt8(ascii: "9") { at += 1 }
                guard at > begin, at - begin <= 18, let n = Int(String(decoding: text[begin..<at], as: UTF8.self)) else {
                    throw error("expected a non-negative integer in the shape")
                }
                ints.append(n)
                if at < text.count, text[at] == UInt8(ascii: "L") { at += 1 }  // Python 2's long literal
                if peek() == UInt8(ascii: ",") { at += 1 }
            }
            try expect(UInt8(ascii: ")"))
            return .ints(ints)
        case UInt8(ascii: "["):
            // A structured dtype's field list: skip it, brackets balanced.
            var depth = 0
            repeat {
                guard at < text.count else { throw error("unterminated list") }
                if text[at] == UInt8(ascii: "[") { depth += 1 }
                if text[at] == UInt8(ascii: "]") { depth -= 1 }
                at += 1
            } while depth > 0
            return .other
        default: throw error("unexpected character")
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.last, c == " " || c == "\n" { s = s.dropLast() }
        return String(s)
    }
}
