import CParmlProto
import ParmlTensor

/// Tensor ↔ parml.Tensor.
enum TensorCodec {
    /// Fills `message` to describe `tensor`; its data field points at the
    /// tensor's storage (keep the tensor alive until packed).
    static func fill(_ message: UnsafeMutablePointer<Parml__Tensor>, from tensor: Tensor, name: String, arena: PackArena) throws {
        parml__tensor__init(message)
        message.pointee.dtype = Parml__Tensor__DType(rawValue: UInt32(tensor.dtype.rawValue))
        let rank = tensor.shape.rank
        let dims = try arena.allocate(Int64.self, count: rank)
        for i in 0..<rank { dims[i] = Int64(tensor.shape[i]) }
        message.pointee.n_dims = rank
        message.pointee.dims = dims
        // Values in memory are little-endian (IEEE-754 floats, two's-complement
        // ints) on every CPU parml builds for (x86-64, arm64): the file's layout.
        message.pointee.data = ProtobufCBinaryData(
            len: tensor.byteCount, data: UnsafeMutableRawPointer(tensor.data).assumingMemoryBound(to: UInt8.self))
        if !name.isEmpty { message.pointee.name = try arena.string(name) }
    }

    /// The dtype a message declares, one of `allowing` (parameters and
    /// optimizer state are float32; a tensor message may hold any).
    static func dtype(of m: Parml__Tensor, what: String, allowing: [DType] = [.float32]) throws -> DType {
        guard let t = DType(rawValue: Int32(bitPattern: m.dtype.rawValue)), allowing.contains(t) else {
            let names = allowing.map { $0.name.uppercased() }.joined(separator: ", ")
            throw ParmlError.format("\(what): dtype \(m.dtype.rawValue) is not one of \(names)")
        }
        return t
    }

    /// The shape a message declares, checked: dtype, rank 1...8, dims in
    /// 0...2^31-1, a product that does not overflow, and exactly the bytes
    /// of data its dtype needs per element.
    static func shape(of m: Parml__Tensor, what: String, allowing: [DType] = [.float32]) throws -> Shape {
        let type = try dtype(of: m, what: what, allowing: allowing)
        return try dims(of: m, what: what, elementSize: type.size, typeName: type.name)
    }

    /// The dims of a message whose elements are `elementSize` bytes, checked
    /// as `shape(of:)` does.
    private static func dims(of m: Parml__Tensor, what: String, elementSize: Int, typeName: String) throws -> Shape {
        guard m.n_dims >= 1, m.n_dims <= Shape.maxRank else {
            throw ParmlError.format("\(what): \(m.n_dims) dims; a tensor has 1 to \(Shape.maxRank)")
        }
        var dims: [Int] = []
        for i in 0..<m.n_dims {
            let d = m.dims[i]
            guard d >= 0, d <= Int64(Int32.max) else { throw ParmlError.format("\(what): dims[\(i)] = \(d) is outside 0...2^31-1") }
            dims.append(Int(d))
        }
        let s = Shape(validated: dims)
        guard let n = s.checkedCount, n <= Int.max / 16 else {
            throw ParmlError.format("\(what): dims \(dims) hold more elements than fit in memory (the product overflows)")
        }
        guard m.data.len == n * elementSize else {
            throw ParmlError.format("\(what): dims \(dims) of \(typeName) need \(n * elementSize) bytes of data, found \(m.data.len)")
        }
        return s
    }

    // MARK: - bfloat16 parameters (model files saved for exchange)

    /// parml.Tensor.DType.BFLOAT16's wire value. It is a file encoding of
    /// float32 parameters, not a tensor dtype: reading widens it back.
    static let bfloat16Wire: UInt32 = 4

    /// Whether a parameter message holds bfloat16 values.
    static func isBFloat16(_ m: Parml__Tensor) -> Bool { m.dtype.rawValue == bfloat16Wire }

    /// A model parameter's shape, checked: FLOAT32 always, BFLOAT16 where
    /// `allowBFloat16` (model files; checkpoints stay float32 so resuming
    /// is exact).
    static func parameterShape(of m: Parml__Tensor, what: String, allowBFloat16: Bool) throws -> Shape {
        guard isBFloat16(m) else { return try shape(of: m, what: what) }
        guard allowBFloat16 else {
            throw ParmlError.format("\(what): dtype BFLOAT16 is for model files saved for exchange; a checkpoint's parameters are FLOAT32")
        }
        return try dims(of: m, what: what, elementSize: 2, typeName: "bfloat16")
    }

    /// Fills `message` with `tensor`'s float32 values rounded to bfloat16
    /// (nearest even, subnormals to zero), written into `arena`.
    static func fillBFloat16(_ message: UnsafeMutablePointer<Parml__Tensor>, from tensor: Tensor, name: String, arena: PackArena) throws {
        try fill(message, from: tensor, name: name, arena: arena)
        let halves = try arena.allocate(UInt16.self, count: tensor.count)
        BF16.round(tensor.data, into: halves, count: tensor.count)
        message.pointee.dtype = Parml__Tensor__DType(rawValue: bfloat16Wire)
        message.pointee.data = ProtobufCBinaryData(
            len: tensor.count * 2, data: UnsafeMutableRawPointer(halves).assumingMemoryBound(to: UInt8.self))
    }

    /// Copies a checked parameter message's values into `dst` as float32
    /// (bfloat16 widened exactly).
    static func copyParameter(_ m: Parml__Tensor, to dst: UnsafeMutablePointer<Float>) {
        guard isBFloat16(m) else { return copyData(m, to: dst) }
        guard m.data.len > 0, let src = m.data.data else { return }
        let halves = UnsafeRawPointer(src)
        for i in 0..<(m.data.len / 2) { dst[i] = BF16.value(halves.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
    }

    /// Copies a checked message's data into `dst` (shape(of:) first).
    static func copyData(_ m: Parml__Tensor, to dst: UnsafeMutablePointer<Float>) {
        guard m.data.len > 0, let src = m.data.data else { return }
        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: m.data.len)
    }

    /// A new tensor from a message.
    static func tensor(from m: Parml__Tensor, what: String, allowing: [DType] = [.float32]) throws -> Tensor {
        let s = try shape(of: m, what: what, allowing: allowing)
        let t = try Tensor(shape: s, dtype: try dtype(of: m, what: what, allowing: allowing))
        copyData(m, to: t.data)
        return t
    }

    /// The message pointer at `index` of a repeated field, or a format error.
    static func element(_ list: UnsafeMutablePointer<UnsafeMutablePointer<Parml__Tensor>?>?, _ index: Int, what: String) throws -> Parml__Tensor {
        guard let list, let p = list[index] else { throw ParmlError.format("\(what) is missing") }
        return p.pointee
    }
}

/// A single tensor as a parml.Tensor message (parml_tensor_serialize).
public enum TensorFile {
    public static func encode(_ tensor: Tensor) throws -> EncodedBytes {
        let arena = PackArena()
        let m = try arena.allocate(Parml__Tensor.self, count: 1)
        try TensorCodec.fill(m, from: tensor, name: "", arena: arena)
        return try withExtendedLifetime(tensor) {
            try pack(UnsafeRawPointer(m).assumingMemoryBound(to: ProtobufCMessage.self))
        }
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Tensor {
        let u = try Unpacked<Parml__Tensor>(bytes, pml_tensor_descriptor(), what: "tensor message")
        return try TensorCodec.tensor(from: u.message.pointee, what: "tensor", allowing: DType.allCases)
    }
}
