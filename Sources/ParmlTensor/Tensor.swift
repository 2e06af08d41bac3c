#if canImport(Glibc)
import Glibc
#endif

/// The element type of a tensor (the C API's PARML_DTYPE_* codes).
/// Training holds float32 values and int32 class indices; int64 exists for
/// hosts (numpy's default integer) and is narrowed where the engine takes it.
public enum DType: Int32, Sendable, CaseIterable {
    case float32 = 1, int32 = 2, int64 = 3

    /// Bytes per element.
    public var size: Int { self == .int64 ? 8 : 4 }
    public var name: String {
        switch self {
        case .float32: "float32"
        case .int32: "int32"
        case .int64: "int64"
        }
    }
}

/// A row-major tensor of float32 values (or, for class indices and token
/// ids, int32/int64: `dtype`). Storage is 64-byte aligned and owned by the
/// tensor, or a view into storage someone else owns (a parameter arena).
///
/// Training reuses tensors: `resize` keeps the allocation whenever the new
/// shape fits, so steady-state steps allocate nothing.
public final class Tensor {
    public private(set) var shape: Shape
    public private(set) var count: Int
    /// Allocated room in 4-byte words (an int64 element takes two).
    public private(set) var capacity: Int
    /// The storage as floats: the values when `dtype` is float32; for other
    /// dtypes use `int32s`/`int64s` (the same bytes).
    public private(set) var data: UnsafeMutablePointer<Float>
    public private(set) var dtype: DType = .float32
    private let owner: AnyObject?
    private let owns: Bool
    /// Bytes mapped with `init(untouched:)` (unmapped, not freed); 0 otherwise.
    private var mappedBytes = 0

    /// A zero-filled tensor. Throws on an overflowing size or a failed allocation.
    public init(shape: Shape, dtype: DType = .float32) throws {
        guard let n = shape.checkedCount, n <= Int.max / 16 else {
            throw ParmlError.shape("shape \(shape) has too many elements")
        }
        self.shape = shape
        self.dtype = dtype
        count = n
        capacity = n * dtype.size / 4
        data = try Tensor.allocate(capacity)
        owns = true
        owner = nil
    }

    /// A zero float32 tensor in fresh pages of its own that nothing has
    /// touched: they take no memory until written (an arena whose parts a
    /// rank never or only briefly uses, `Pages`).
    public init(untouched shape: Shape) throws {
        guard let n = shape.checkedCount, n <= Int.max / 16 else {
            throw ParmlError.shape("shape \(shape) has too many elements")
        }
        self.shape = shape
        count = n
        capacity = n
        let bytes = Swift.max(n, 1) * MemoryLayout<Float>.stride
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            throw ParmlError.outOfMemory("could not map \(n) floats")
        }
        data = p.bindMemory(to: Float.self, capacity: Swift.max(n, 1))
        mappedBytes = bytes
        owns = true
        owner = nil
    }

    /// The storage as int32 values (meaningful when `dtype` is int32).
    public var int32s: UnsafeMutablePointer<Int32> { UnsafeMutableRawPointer(data).assumingMemoryBound(to: Int32.self) }
    /// The storage as int64 values (meaningful when `dtype` is int64).
    public var int64s: UnsafeMutablePointer<Int64> { UnsafeMutableRawPointer(data).assumingMemoryBound(to: Int64.self) }
    /// Bytes the elements take.
    public var byteCount: Int { count * dtype.size }

    public convenience init(_ values: [Float], shape: Shape) throws {
        try self.init(shape: shape)
        guard values.count == count else {
            throw ParmlError.shape("\(values.count) values do not fill shape \(shape)")
        }
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// A view of `shape.count` floats at `pointer`, kept alive by `owner`.
    public init(view pointer: UnsafeMutablePointer<Float>, shape: Shape, owner: AnyObject?) {
        self.shape = shape
        count = shape.count
        capacity = count
        data = pointer
        owns = false
        self.owner = owner
    }

    deinit { release() }

    private func release() {
        if mappedBytes > 0 {
            munmap(data, mappedBytes)
        } else if owns {
            free(data)
        }
    }

    /// Points a view at other memory (another slice of a batch) without
    /// allocating a new tensor object. Views only.
    public func retarget(_ pointer: UnsafeMutablePointer<Float>, shape newShape: Shape, dtype newType: DType = .float32) throws {
        guard !owns else { throw ParmlError.internal("retarget is for views; this tensor owns its storage") }
        data = pointer
        shape = newShape
        dtype = newType
        count = newShape.count
        capacity = count * newType.size / 4
    }

    static func allocate(_ n: Int) throws -> UnsafeMutablePointer<Float> {
        var raw: UnsafeMutableRawPointer?
        // 64-byte alignment: one cache line, and what AVX-512 loads like.
        guard posix_memalign(&raw, 64, Swift.max(n, 1) * MemoryLayout<Float>.stride) == 0, let raw else {
            throw ParmlError.outOfMemory("could not allocate \(n) floats")
        }
        let p = raw.bindMemory(to: Float.self, capacity: Swift.max(n, 1))
        p.initialize(repeating: 0, count: Swift.max(n, 1))
        return p
    }

    /// Gives the tensor a new shape. Contents are unspecified afterwards
    /// unless the element count is unchanged. Reallocates only to grow.
    public func resize(_ newShape: Shape) throws { try resize(newShape, dtype: dtype) }

    /// The same, with elements of type `newType` (room counted in bytes).
    public func resize(_ newShape: Shape, dtype newType: DType) throws {
        if newShape == shape && newType == dtype { return }
        guard let n = newShape.checkedCount, n <= Int.max / 16 else {
            throw ParmlError.shape("shape \(newShape) has too many elements")
        }
        let words = n * newType.size / 4
        if words > capacity {
            guard owns else { throw ParmlError.internal("cannot grow a tensor view") }
            let p = try Tensor.allocate(words)
            release()
            mappedBytes = 0
            data = p
            capacity = words
        }
        shape = newShape
        dtype = newType
        count = n
    }

    /// Changes the shape without touching data; the element count must match.
    public func reshape(_ newShape: Shape) throws {
        guard newShape.checkedCount == count else {
            throw ParmlError.shape("cannot reshape \(shape) to \(newShape)")
        }
        shape = newShape
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }

    public func toArray() -> [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    public func copy(from other: Tensor) throws {
        try resize(other.shape, dtype: other.dtype)
        data.update(from: other.data, count: count * dtype.size / 4)
    }

    public func clone() throws -> Tensor {
        let t = try Tensor(shape: shape, dtype: dtype)
        t.data.update(from: data, count: count * dtype.size / 4)
        return t
    }

    /// `source`'s values as `dtype` into this tensor (resized): float ids or
    /// labels to int32, int64 to int32 or float32, int to float32. A value
    /// the target type cannot hold exactly is refused, naming `what` and the
    /// element: floats must be integers for an int type, ints at most 2^24
    /// in magnitude for float32, int64 within int32's range for int32.
    public func convert(from source: Tensor, to newType: DType, what: String) throws {
        try resize(source.shape, dtype: newType)
        let n = count
        func refuse(_ i: Int, _ v: String) -> ParmlError {
            ParmlError.invalidArgument("\(what) element \(i) is \(v), which \(newType.name) cannot hold exactly")
        }
        switch (source.dtype, newType) {
        case (let a, let b) where a == b:
            data.update(from: source.data, count: n * a.size / 4)
        case (.float32, .int32), (.float32, .int64):
            for i in 0..<n {
                let v = source.data[i]
                // 2^31 is a Float but no Int32 (the literal 2^31-1 rounds up to it).
                guard v.rounded(.towardZero) == v, v >= -2_147_483_648, v < 2_147_483_648 else { throw refuse(i, "\(v)") }
                if newType == .int32 { int32s[i] = Int32(v) } else { int64s[i] = Int64(v) }
            }
        case (.int32, .float32):
            for i in 0..<n {
                let v = source.int32s[i]
                guard abs(Int64(v)) <= 1 << 24 else { throw refuse(i, "\(v)") }
                data[i] = Float(v)
            }
        case (.int64, .float32):
            for i in 0..<n {
                let v = source.int64s[i]
                guard v >= -(1 << 24), v <= 1 << 24 else { throw refuse(i, "\(v)") }
                data[i] = Float(v)
            }
        case (.int64, .int32):
            for i in 0..<n {
                guard let v = Int32(exactly: source.int64s[i]) else { throw refuse(i, "\(source.int64s[i])") }
                int32s[i] = v
            }
        case (.int32, .int64):
            for i in 0..<n { int64s[i] = Int64(source.int32s[i]) }
        default:
            throw ParmlError.internal("no conversion from \(source.dtype.name) to \(newType.name)")
        }
    }

    public subscript(i: Int) -> Float {
        get { precondition(i >= 0 && i < count); return data[i] }
        set { precondition(i >= 0 && i < count); data[i] = newValue }
    }
}
