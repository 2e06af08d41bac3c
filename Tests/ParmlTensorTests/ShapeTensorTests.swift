import Testing
import _ParmlTestSupport

@testable import ParmlTensor

@Suite struct ShapeTests {
    @Test func fromDims() throws {
        let s = try Shape([2, 3, 4])
        #expect(s.rank == 3 && s.dims == [2, 3, 4])
        #expect(s == Shape(2, 3, 4))
        #expect(s.count == 24 && s.checkedCount == 24)
        #expect(s.rowSize == 12)
        #expect(s.withLeading(5) == Shape(5, 3, 4))
        #expect(s.description == "(2, 3, 4)")
        let eight = try Shape([1, 2, 1, 2, 1, 2, 1, 2])
        #expect(eight.rank == 8 && eight.count == 16)
        #expect(Shape(7).rowSize == 1)
        #expect(try Shape([0, 5]).count == 0)
        #expect(Shape(2, 3) != Shape(3, 2) && Shape(6) != Shape(6, 1))
    }

    @Test(arguments: [[Int](), Array(repeating: 1, count: 9), [2, -1], [-3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    func invalidDimsThrow(_ dims: [Int]) {
        let e = parmlError { _ = try Shape(dims) }
        expectError(e, "shape")
    }

    @Test func overflowingCountIsNil() throws {
        let s = try Shape([Int.max / 2, 3])
        #expect(s.checkedCount == nil)
        #expect(s.count == Int.max)
        let t = try Shape([1 << 32, 1 << 32])
        #expect(t.checkedCount == nil)
        expectError(parmlError { _ = try Tensor(shape: s) }, "shape")
        // Fits Int but not in memory as floats: rejected before allocating.
        expectError(parmlError { _ = try Tensor(shape: Shape(Int.max / 4)) }, "shape")
    }
}

@Suite struct TensorTests {
    @Test func zeroFilledAndAligned() throws {
        let t = try Tensor(shape: Shape(3, 5))
        #expect(t.count == 15 && t.capacity == 15)
        expectEqualElements(t.toArray(), [Float](repeating: 0, count: 15))
        #expect(UInt(bitPattern: t.data) % 64 == 0)
    }

    @Test func valuesMustFillTheShape() throws {
        let t = try Tensor([1, 2, 3, 4, 5, 6], shape: Shape(2, 3))
        #expect(t.toArray() == [1, 2, 3, 4, 5, 6])
        #expect(t[4] == 5)
        expectError(parmlError { _ = try Tensor([1, 2, 3], shape: Shape(2, 2)) }, "shape", mentions: ["3"])
    }

    @Test func resizeKeepsStorageWhenItFits() throws {
        let t = try Tensor(Array((0..<12).map(Float.init)), shape: Shape(3, 4))
        let p = t.data
        // Same size, other shape: pointer and contents kept.
        try t.resize(Shape(4, 3))
        #expect(t.data == p && t.shape == Shape(4, 3) && t.count == 12)
        expectEqualElements(t.toArray(), (0..<12).map(Float.init))
        // Same shape: nothing happens.
        try t.resize(Shape(4, 3))
        #expect(t.data == p)
        // Shrinking keeps the allocation and its capacity.
        try t.resize(Shape(2, 2))
        #expect(t.data == p && t.count == 4 && t.capacity == 12)
        // Growing back within capacity: still no reallocation.
        try t.resize(Shape(12))
        #expect(t.data == p && t.count == 12)
        // Past capacity: a new, larger allocation.
        try t.resize(Shape(5, 5))
        #expect(t.count == 25 && t.capacity == 25)
        #expect(UInt(bitPattern: t.data) % 64 == 0)
        expectError(parmlError { try t.resize(Shape(Int.max / 2, 3)) }, "shape")
    }

    @Test func reshapeNeedsTheSameCount() throws {
        let t = try Tensor([1, 2, 3, 4, 5, 6], shape: Shape(6))
        let p = t.data
        try t.reshape(Shape(3, 2))
        #expect(t.shape == Shape(3, 2) && t.data == p && t.toArray() == [1, 2, 3, 4, 5, 6])
        let e = parmlError { try t.reshape(Shape(4, 2)) }
        expectError(e, "shape")
        #expect(t.shape == Shape(3, 2))
    }

    @Test func viewsShareStorageAndCannotGrow() throws {
        let base = try Tensor([1, 2, 3, 4, 5, 6], shape: Shape(6))
        let v = Tensor(view: base.data + 2, shape: Shape(2, 2), owner: base)
        #expect(v.toArray() == [3, 4, 5, 6])
        v[0] = 30
        #expect(base[2] == 30)
        try v.resize(Shape(3))  // shrinking a view is fine
        expectError(parmlError { try v.resize(Shape(5)) }, "internal")
    }

    @Test func copyCloneFill() throws {
        let a = try Tensor([1, 2, 3], shape: Shape(3))
        let b = try Tensor(shape: Shape(1))
        try b.copy(from: a)
        #expect(b.shape == Shape(3) && b.toArray() == [1, 2, 3])
        let c = try a.clone()
        #expect(c.data != a.data && c.toArray() == a.toArray())
        c.fill(7)
        #expect(c.toArray() == [7, 7, 7] && a.toArray() == [1, 2, 3])
    }
}
