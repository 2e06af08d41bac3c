#if canImport(Glibc)
import Glibc
#endif

/// A float32, row-major tensor. Storage is 64-byte aligned and owned by the
/// tensor, or a view into storage someone else owns (a parameter arena).
///
/// Training reuses tensors: `resize` keeps the allocation whenever the new
/// shape fits, so steady-state steps allocate nothing.
public final class Tensor {
    public private(set) var shape: Shape
    public private(set) var count: Int
    public private(set) var capacity: Int
    public private(set) var data: UnsafeMutablePointer<Float>
    private let owner: AnyObject?
    private let owns: Bool

    /// A zero-filled tensor. Throws on an overflowing size or a failed allocation.
    public init(shape: Shape) throws {
        guard let n = shape.checkedCount, n <= Int.max / 8 else {
            throw ParmlError.shape("shape \(shape) has too many elements")
        }
        self.shape = shape
        count = n
        capacity = n
        data = try Tensor.allocate(n)
        owns = true
        owner = nil
    }

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

    deinit { if owns { free(data) } }

    /// Points a view at other memory (another slice of a batch) without
    /// allocating a new tensor object. Views only.
    public func retarget(_ pointer: UnsafeMutablePointer<Float>, shape newShape: Shape) throws {
        guard !owns else { throw ParmlError.internal("retarget is for views; this tensor owns its storage") }
        data = pointer
        shape = newShape
        count = newShape.count
        capacity = count
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
    public func resize(_ newShape: Shape) throws {
        if newShape == shape { return }
        guard let n = newShape.checkedCount, n <= Int.max / 8 else {
            throw ParmlError.shape("shape \(newShape) has too many elements")
        }
        if n > capacity {
            guard owns else { throw ParmlError.internal("cannot grow a tensor view") }
            let p = try Tensor.allocate(n)
            free(data)
            data = p
            capacity = n
        }
        shape = newShape
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
        try resize(other.shape)
        data.update(from: other.data, count: count)
    }

    public func clone() throws -> Tensor {
        let t = try Tensor(shape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    public subscript(i: Int) -> Float {
        get { precondition(i >= 0 && i < count); return data[i] }
        set { precondition(i >= 0 && i < count); data[i] = newValue }
    }
}
