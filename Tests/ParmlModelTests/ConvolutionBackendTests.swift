import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// oneDNN's convolution against im2col's on the same weights and data:
/// outputs, input gradients and parameter gradients, on the odd shapes and
/// on the demo's (docs/cnn.md). Both sum products of values in [−1, 1] in
/// float, in different orders; the demo's weight gradients sum 3,136 of
/// them and reach tens, so the bound is 1e-5 of the largest value (or 1e-5).
@Suite(.enabled(if: OneDNN.available, "oneDNN does not load here: \(OneDNN.loadError ?? "")"))
struct ConvolutionBackendTests {
    let training = PassContext(training: true)

    /// y, dx and the gradients (dW, db) of one forward and backward.
    func pass(_ t: ConvCase, _ backend: ConvolutionBackend) throws -> (out: [Float], layer: Conv2d) {
        let layer = try t.layer(backend)
        let model = try makeModel([layer], seed: 21)
        let x = try randomTensor(Shape(t.n, t.c, t.h, t.w), seed: 22)
        let y = try model.forward(x, training)
        let dx = try model.root.backward(try randomTensor(y.shape, seed: 23), training, needInputGradient: true, accumulate: false)!
        return (y.toArray() + dx.toArray() + model.gradients!.toArray(), layer)
    }

    static let demoShapes = [
        ConvCase(n: 4, c: 1, h: 28, w: 28, o: 16, padding: (1, 1)),
        ConvCase(n: 4, c: 16, h: 14, w: 14, o: 32, padding: (1, 1)),
    ]

    @Test(arguments: convCases + demoShapes)
    func oneDNNMatchesIm2col(_ t: ConvCase) throws {
        let (want, reference) = try pass(t, .im2col)
        let (got, layer) = try pass(t, .onednn)
        #expect(reference.oneDNNImplementation == nil)
        // Every case runs oneDNN, none falls back (which would compare im2col with itself).
        #expect(layer.oneDNNImplementation != nil, "\(t): oneDNN refused the shape")
        let d = maxAbsDiff(got, want), scale = max(1, Double(want.map(abs).max() ?? 0))
        #expect(d <= 1e-5 * scale, "scale \(scale), \(t): max abs diff \(d) (\(layer.oneDNNImplementation ?? "im2col"))")
    }

    /// Two OpenMP threads split oneDNN's work in a fixed way: the same bits
    /// run after run (and close to one thread's). Plans made directly, so
    /// that no process-wide thread setting changes under other tests.
    @Test func twoThreadsAreDeterministic() throws {
        let t = Self.demoShapes[1]
        let window = Window2d(kernel: t.kernel, stride: t.stride, padding: t.padding)
        let planes = PlaneSizes(height: t.h, width: t.w, outHeight: t.h, outWidth: t.w)
        let x = randomArray(t.n * t.c * t.h * t.w, seed: 27), w = randomArray(t.o * t.c * 9, seed: 28)
        let b = randomArray(t.o, seed: 29), dy = randomArray(t.n * t.o * t.h * t.w, seed: 30)
        func run(threads: Int) throws -> [Float] {
            let key = ConvolutionPlan.Key(batch: t.n, height: t.h, width: t.w, threads: threads)
            let plan = try ConvolutionPlan(
                key: key, inChannels: t.c, outChannels: t.o, groups: 1, window: window, planes: planes, bias: true)
            var y = [Float](repeating: 0, count: dy.count), dx = [Float](repeating: 0, count: x.count)
            var dw = [Float](repeating: 0, count: w.count), db = [Float](repeating: 0, count: b.count)
            try plan.forward(x, w, b, &y)
            try plan.backward(x, w, dy, dw: &dw, db: &db, dx: &dx)
            return y + dx + dw + db
        }
        let a = try run(threads: 2), again = try run(threads: 2)
        expectEqualElements(a.map(\.bitPattern), again.map(\.bitPattern))
        #expect(maxAbsDiff(a, try run(threads: 1)) <= 1e-5 * Double(a.map(abs).max()!))
    }

    /// A layer alternating between batch sizes (a deterministic step's short
    /// last chunk) keeps a plan per size and gives each size's answer.
    @Test func plansPerBatchSize() throws {
        let layer = try convCases[1].layer(.onednn)
        let model = try makeModel([layer], seed: 24)
        let big = try randomTensor(Shape(3, 3, 9, 8), seed: 25), small = try randomTensor(Shape(1, 3, 9, 8), seed: 26)
        let first = try model.forward(big, training).toArray()
        let single = try model.forward(small, training).toArray()
        expectEqualElements(try model.forward(big, training).toArray(), first)
        // The first sample of the batch, alone: within rounding of the batch's.
        let alone = try model.forward(try Tensor(Array(big.toArray()[..<(3 * 9 * 8)]), shape: Shape(1, 3, 9, 8)), training).toArray()
        #expect(maxAbsDiff(alone, Array(first[..<alone.count])) <= 1e-6)
        #expect(single.count == alone.count)
    }
}
