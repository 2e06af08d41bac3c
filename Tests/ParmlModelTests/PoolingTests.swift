import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// One pooling window to check on input (n, c, h, w).
struct PoolCase: CustomStringConvertible, Sendable {
    var n = 2, c = 3, h = 7, w = 6
    var kernel = (2, 2), stride = (2, 2), padding = (0, 0)
    var description: String { "x (\(n),\(c),\(h),\(w)), kernel \(kernel), stride \(stride), padding \(padding)" }
}

/// Plain, odd sizes that drop a last row, overlapping windows (stride below
/// the kernel), padding up to half the kernel, non-square windows.
let poolCases: [PoolCase] = [
    PoolCase(),
    PoolCase(n: 1, c: 2, h: 7, w: 7, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
    PoolCase(n: 3, c: 2, h: 6, w: 9, kernel: (3, 2), stride: (1, 2), padding: (1, 1)),
    PoolCase(n: 2, c: 1, h: 5, w: 8, kernel: (4, 3), stride: (3, 1), padding: (2, 1)),
    PoolCase(n: 1, c: 3, h: 4, w: 4, kernel: (4, 4), stride: (4, 4)),
]

@Suite struct PoolingTests {
    let training = PassContext(training: true)

    func input(_ t: PoolCase, seed: UInt64) throws -> Tensor { try randomTensor(Shape(t.n, t.c, t.h, t.w), seed: seed) }

    @Test(arguments: poolCases)
    func maxPoolMatchesTheLoops(_ t: PoolCase) throws {
        let model = try makeModel([try MaxPool2d(kernel: t.kernel, stride: t.stride, padding: t.padding)])
        let x = try input(t, seed: 1)
        let y = try model.forward(x, training)
        let want = Naive.pool2d(
            x: x.toArray(), planes: t.n * t.c, h: t.h, w: t.w, kernel: t.kernel, stride: t.stride, padding: t.padding, max: true)
        #expect(y.shape == Shape(t.n, t.c, want.height, want.width))
        expectEqualElements(y.toArray(), want.y, "\(t)")
        // Values apart by far more than the step: the maxima stay put and the difference quotient is exact.
        try gradientCheck(model: model, input: try spreadInput(t), ctx: training, eps: 1e-3, atol: 1e-4, rtol: 1e-4)
    }

    @Test(arguments: poolCases)
    func avgPoolMatchesTheLoops(_ t: PoolCase) throws {
        for includePad in [true, false] {
            let model = try makeModel([try AvgPool2d(kernel: t.kernel, stride: t.stride, padding: t.padding, countIncludePad: includePad)])
            let x = try input(t, seed: 2)
            let y = try model.forward(x, training)
            let want = Naive.pool2d(
                x: x.toArray(), planes: t.n * t.c, h: t.h, w: t.w, kernel: t.kernel, stride: t.stride, padding: t.padding, max: false,
                countIncludePad: includePad)
            #expect(y.shape == Shape(t.n, t.c, want.height, want.width))
            let d = maxAbsDiff(y.toArray(), want.y)
            #expect(d <= 1e-6, "\(t), count_include_pad \(includePad): max abs diff \(d)")
            try gradientCheck(model: model, input: x, ctx: training, eps: 0.1, atol: 1e-5, rtol: 1e-5)
        }
    }

    /// Distinct values at least 0.01 apart, shuffled: no window has a near tie.
    func spreadInput(_ t: PoolCase) throws -> Tensor {
        let n = t.n * t.c * t.h * t.w
        let keys = randomArray(n, seed: 3)
        let order = (0..<n).sorted { keys[$0] < keys[$1] }
        var x = [Float](repeating: 0, count: n)
        for (rank, i) in order.enumerated() { x[i] = Float(rank) * 0.01 - Float(n) * 0.005 }
        return try Tensor(x, shape: Shape(t.n, t.c, t.h, t.w))
    }

    /// Ties go to the first cell in scan order (PyTorch's choice), and
    /// overlapping windows add their gradients into a shared cell.
    @Test func maxPoolTiesAndOverlaps() throws {
        let model = try makeModel([try MaxPool2d(kernel: (2, 2), stride: (1, 1))])
        let x = try Tensor([1, 5, 5, 2, 5, 0, 3, 3, 3], shape: Shape(1, 1, 3, 3))
        let y = try model.forward(x, training)
        #expect(y.toArray() == [5, 5, 5, 5])
        let dx = try model.root.backward(try Tensor([1, 2, 4, 8], shape: y.shape), training, needInputGradient: true, accumulate: false)!
        // Window (0,1) ties three 5s and takes the first, cell (0,1), as window
        // (0,0) does; windows (1,0) and (1,1) both take cell (1,1).
        #expect(dx.toArray() == [0, 1 + 2, 0, 0, 4 + 8, 0, 0, 0, 0])
    }

    /// The 2x2 stride-2 kernel (no padding) keeps the general loop's rules:
    /// ties to the first cell in scan order, NaN wins and the last NaN's
    /// cell takes the gradient (as PyTorch's `val > max || isnan(val)`),
    /// and an odd last row and column are dropped.
    @Test func maxPool2x2KeepsTiesNaNsAndDropsTheOddEdge() throws {
        let model = try makeModel([try MaxPool2d(kernel: (2, 2), stride: (2, 2))])
        let x = try Tensor(
            [2, 2, .nan, 1, 9,
             1, 2, 3, .nan, 9,
             100, 100, 100, 100, 100], shape: Shape(1, 1, 3, 5))
        let y = try model.forward(x, training).toArray()
        #expect(y.count == 2 && y[0] == 2 && y[1].isNaN)
        let dx = try model.root.backward(try Tensor([1, 10], shape: Shape(1, 1, 1, 2)), training, needInputGradient: true, accumulate: false)!
        #expect(dx.toArray() == [1, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0])
    }

    /// Planes are pooled in blocks over the rank's threads: any thread count
    /// gives the loops' outputs and the same input gradient. (Another suite's
    /// trainer may resize the pool meanwhile; the bits may not depend on it.)
    @Test func maxPoolGivesTheSameBitsOnAnyThreadCount() throws {
        let t = PoolCase(n: 8, c: 16, h: 28, w: 28)
        let x = try input(t, seed: 3)
        let dy = try randomTensor(Shape(8, 16, 14, 14), seed: 4)
        let want = Naive.pool2d(
            x: x.toArray(), planes: t.n * t.c, h: t.h, w: t.w, kernel: t.kernel, stride: t.stride, padding: t.padding, max: true)
        var grads: [[Float]] = []
        let saved = BLAS.threads
        defer { BLAS.threads = saved }
        for threads in [1, 2, 3] {
            BLAS.threads = threads
            let model = try makeModel([try MaxPool2d(kernel: (2, 2), stride: (2, 2))])
            expectEqualElements(try model.forward(x, training).toArray(), want.y, "\(threads) threads")
            grads.append(try model.root.backward(dy, training, needInputGradient: true, accumulate: false)!.toArray())
        }
        #expect(grads[1] == grads[0] && grads[2] == grads[0])
    }

    @Test func maxPoolPropagatesNaNAndIgnoresPadding() throws {
        let model = try makeModel([try MaxPool2d(kernel: (2, 2), stride: (2, 2), padding: (1, 1))])
        let x = try Tensor([-4, -3, .nan, -1], shape: Shape(1, 1, 2, 2))
        let y = try model.forward(x, training).toArray()
        // Padding is not a zero that wins over negatives.
        #expect(y[0] == -4 && y[1] == -3 && y[2].isNaN && y[3] == -1)
    }

    @Test func avgPoolCountsPaddingAsPyTorchDoes() throws {
        let x = try Tensor([1, 2, 3, 4], shape: Shape(1, 1, 2, 2))
        let with = try makeModel([try AvgPool2d(kernel: (2, 2), stride: (1, 1), padding: (1, 1))])
        #expect(try with.forward(x, training).toArray() == [0.25, 0.75, 0.5, 1, 2.5, 1.5, 0.75, 1.75, 1])
        let without = try makeModel([try AvgPool2d(kernel: (2, 2), stride: (1, 1), padding: (1, 1), countIncludePad: false)])
        #expect(try without.forward(x, training).toArray() == [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4])
    }

    @Test func globalAveragePooling() throws {
        let model = try makeModel([GlobalAvgPool()])
        let x = try randomTensor(Shape(3, 4, 5, 6), seed: 7)
        let y = try model.forward(x, training)
        #expect(y.shape == Shape(3, 4))
        let v = x.toArray()
        let want = (0..<12).map { p in Float(v[(p * 30)..<((p + 1) * 30)].reduce(0.0) { $0 + Double($1) } / 30) }
        #expect(maxAbsDiff(y.toArray(), want) <= 1e-6)
        try gradientCheck(model: model, input: x, ctx: training, eps: 0.1, atol: 1e-5, rtol: 1e-5)
        expectError(parmlError { _ = try model.outputShape(for: Shape(3, 4, 5)) }, "shape", mentions: ["(N, C, H, W)"])
    }

    @Test func attributesFollowPyTorch() throws {
        let maxKind = try LayerKinds.kind(named: "max_pool2d")
        // stride defaults to the kernel and is written out.
        let m = try maxKind.make(["kernel_size": .ints([3])])
        #expect(m.attributes == ["kernel_size": .ints([3, 3]), "stride": .ints([3, 3]), "padding": .ints([0, 0])])
        #expect(try maxKind.make(m.attributes).attributes == m.attributes)
        let avg = try LayerKinds.kind(named: "avg_pool2d").make(["kernel_size": .ints([2, 3]), "stride": .ints([1])])
        #expect(avg.attributes == ["kernel_size": .ints([2, 3]), "stride": .ints([1, 1]), "padding": .ints([0, 0]), "count_include_pad": .bool(true)])
        expectError(
            parmlError { _ = try maxKind.make(["kernel_size": .ints([3]), "padding": .ints([2])]) }, "invalidArgument",
            mentions: ["max_pool2d", "at most half the kernel"])
        expectError(parmlError { _ = try maxKind.make([:]) }, "invalidArgument", mentions: ["'kernel_size'", "required"])
        expectError(parmlError { _ = try m.outputShape(for: Shape(1, 1, 2, 5)) }, "shape", mentions: ["does not fit"])
    }
}
