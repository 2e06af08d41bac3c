/// A tensor shape of up to `Shape.maxRank` dimensions, stored inline so that
/// building or comparing one in a training step never allocates.
public struct Shape: Equatable, Sendable, CustomStringConvertible {
    public static let maxRank = 8

    public private(set) var rank: Int
    @usableFromInline var d: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)

    public init(_ d0: Int) { rank = 1; d.0 = d0 }
    public init(_ d0: Int, _ d1: Int) { rank = 2; d.0 = d0; d.1 = d1 }
    public init(_ d0: Int, _ d1: Int, _ d2: Int) { rank = 3; d.0 = d0; d.1 = d1; d.2 = d2 }
    public init(_ d0: Int, _ d1: Int, _ d2: Int, _ d3: Int) { rank = 4; d.0 = d0; d.1 = d1; d.2 = d2; d.3 = d3 }

    /// From an array (API boundaries, not hot loops). Ranks above `maxRank`
    /// or negative dimensions throw.
    public init(_ dims: [Int]) throws {
        guard dims.count >= 1, dims.count <= Shape.maxRank else {
            throw ParmlError.shape("a shape has 1 to \(Shape.maxRank) dimensions, got \(dims.count)")
        }
        rank = 0
        for x in dims {
            guard x >= 0 else { throw ParmlError.shape("dimension \(x) is negative in \(dims)") }
            append(x)
        }
    }

    /// The same as `init(_ dims:)` for shapes known to be valid.
    public init(validated dims: [Int]) {
        rank = 0
        for x in dims.prefix(Shape.maxRank) { append(x) }
    }

    public mutating func append(_ x: Int) {
        precondition(rank < Shape.maxRank)
        withUnsafeMutableBytes(of: &d) { $0.storeBytes(of: x, toByteOffset: rank * MemoryLayout<Int>.stride, as: Int.self) }
        rank += 1
    }

    public subscript(i: Int) -> Int {
        get {
            precondition(i >= 0 && i < rank)
            return withUnsafeBytes(of: d) { $0.load(fromByteOffset: i * MemoryLayout<Int>.stride, as: Int.self) }
        }
        set {
            precondition(i >= 0 && i < rank)
            withUnsafeMutableBytes(of: &d) { $0.storeBytes(of: newValue, toByteOffset: i * MemoryLayout<Int>.stride, as: Int.self) }
        }
    }

    /// Number of elements; nil when the product overflows Int.
    public var checkedCount: Int? {
        var n = 1
        for i in 0..<rank {
            let (p, o) = n.multipliedReportingOverflow(by: self[i])
            if o { return nil }
            n = p
        }
        return n
    }

    public var count: Int { checkedCount ?? Int.max }

    /// Elements per leading index: the product of all but the first dimension.
    public var rowSize: Int {
        var n = 1
        for i in 1..<Swift.max(rank, 1) { n *= self[i] }
        return n
    }

    public var dims: [Int] { (0..<rank).map { self[$0] } }

    /// This shape with its first dimension replaced.
    public func withLeading(_ n: Int) -> Shape {
        var s = self
        s[0] = n
        return s
    }

    public static func == (a: Shape, b: Shape) -> Bool {
        guard a.rank == b.rank else { return false }
        for i in 0..<a.rank where a[i] != b[i] { return false }
        return true
    }

    public var description: String { "(" + dims.map(String.init).joined(separator: ", ") + ")" }
}
