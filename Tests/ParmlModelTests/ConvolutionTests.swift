import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// One convolution to check: input (n, c, h, w) and the layer's settings.
struct ConvCase: CustomStringConvertible, Sendable {
    var n = 2, c = 3, h = 7, w = 6, o = 4
    var kernel = (3, 3), stride = (1, 1), padding = (0, 0), dilation = (1, 1)
    var groups = 1, bias = true

    var description: String {
        "x (\(n),\(c),\(h),\(w)) → \(o), kernel \(kernel), stride \(stride), padding \(padding), dilation \(dilation), groups \(groups)"
            + (bias ? "" : ", no bias")
    }

    func layer(_ backend: ConvolutionBackend = .configured) throws -> Conv2d {
        try Conv2d(
            inChannels: c, outChannels: o, kernel: kernel, stride: stride, padding: padding, dilation: dilation, groups: groups,
            bias: bias, backend: backend)
    }
}

/// Odd shapes: batches above 1, stride 2, dilation 2, groups 2 and
/// depthwise, padding larger than the kernel's half, non-square kernels and
/// inputs, 1×1 kernels with and without the copy-free path, a kernel as
/// large as the padded input.
let convCases: [ConvCase] = [
    ConvCase(padding: (1, 1)),
    ConvCase(n: 3, c: 3, h: 9, w: 8, o: 5, kernel: (3, 2), stride: (2, 2), padding: (1, 0)),
    ConvCase(n: 2, c: 2, h: 9, w: 10, o: 3, kernel: (3, 3), stride: (1, 2), padding: (2, 1), dilation: (2, 2), bias: false),
    ConvCase(n: 2, c: 4, h: 6, w: 7, o: 6, kernel: (3, 3), padding: (3, 2), groups: 2),
    ConvCase(n: 2, c: 4, h: 5, w: 5, o: 4, kernel: (3, 3), stride: (2, 1), padding: (1, 1), groups: 4),
    ConvCase(n: 3, c: 4, h: 5, w: 6, o: 8, kernel: (1, 1), groups: 2),
    ConvCase(n: 2, c: 3, h: 5, w: 5, o: 2, kernel: (1, 1), stride: (2, 2), padding: (1, 1)),
    ConvCase(n: 1, c: 1, h: 4, w: 3, o: 2, kernel: (5, 4), padding: (2, 2)),
    ConvCase(n: 2, c: 2, h: 8, w: 8, o: 3, kernel: (2, 3), stride: (3, 2), padding: (4, 1), dilation: (2, 1)),
]

/// Both ways conv2d computes; oneDNN only where it loads here.
let convBackends: [ConvolutionBackend] = OneDNN.available ? [.im2col, .onednn] : [.im2col]

@Suite struct ConvolutionTests {
    let training = PassContext(training: true)

    /// im2col + sgemm and oneDNN against the direct loops (Double sums): a
    /// sum of at most 36 products of values in [−1, 1] rounds by well under 1e-5.
    @Test(arguments: convCases, convBackends)
    func forwardMatchesDirectConvolution(_ t: ConvCase, _ backend: ConvolutionBackend) throws {
        let layer = try t.layer(backend)
        let model = try makeModel([layer], seed: 3)
        let x = try randomTensor(Shape(t.n, t.c, t.h, t.w), seed: 5)
        let y = try model.forward(x, training)
        let params = model.parameters!.toArray()
        let wCount = layer.parameterSpecs[0].shape.count
        let want = Naive.conv2d(
            x: x.toArray(), n: t.n, c: t.c, h: t.h, w: t.w, weight: Array(params[..<wCount]), bias: Array(params[wCount...]),
            outChannels: t.o, kernel: t.kernel, stride: t.stride, padding: t.padding, dilation: t.dilation, groups: t.groups)
        #expect(y.shape == Shape(t.n, t.o, want.height, want.width))
        #expect(try model.outputShape(for: x.shape) == y.shape)
        let d = maxAbsDiff(y.toArray(), want.y)
        #expect(d <= 1e-5, "\(t): max abs diff \(d)")
        // A second pass through the same buffers gives the same bits.
        expectEqualElements(try model.forward(x, training).toArray(), y.toArray())
    }

    /// Convolution is linear in x and in the weights: central differences
    /// with a large step are exact up to rounding.
    @Test(arguments: convCases, convBackends)
    func gradientsMatchFiniteDifferences(_ t: ConvCase, _ backend: ConvolutionBackend) throws {
        let model = try makeModel([try t.layer(backend)], seed: 4)
        try gradientCheck(
            model: model, input: try randomTensor(Shape(t.n, t.c, t.h, t.w), seed: 6), ctx: training, eps: 0.1, atol: 1e-4, rtol: 1e-4)
    }

    /// Between other layers, so the input gradient reaches a weight gradient.
    @Test func gradientsThroughAConvolutionStack() throws {
        let layers: [Layer] = [
            try Conv2d(inChannels: 2, outChannels: 4, kernel: (3, 3), stride: (2, 2), padding: (1, 1)),
            try LayerKinds.kind(named: "tanh").make(),
            try Conv2d(inChannels: 4, outChannels: 4, kernel: (3, 3), padding: (1, 1), groups: 2),
            try MaxPool2d(kernel: (2, 2)),
            GlobalAvgPool(),
            try Linear(inFeatures: 4, outFeatures: 3),
        ]
        let model = try makeModel(layers, seed: 8)
        try gradientCheck(model: model, input: try randomTensor(Shape(2, 2, 9, 8), seed: 9), ctx: training)
    }

    /// Parameter gradients become β·old + new (β = ctx.gradientBeta), as
    /// Linear's: overwrite over stale NaNs, accumulate, fold momentum.
    @Test(arguments: convBackends)
    func gradientBetaIsHonoured(_ backend: ConvolutionBackend) throws {
        let model = try makeModel([try convCases[3].layer(backend)], seed: 10)
        let x = try randomTensor(Shape(2, 4, 6, 7), seed: 11)
        let y = try model.forward(x, training)
        let dy = try randomTensor(y.shape, seed: 12)
        model.gradients!.fill(.nan)
        try model.backward(dy, training, accumulate: false)
        let fresh = model.gradients!.toArray()
        #expect(fresh.allSatisfy(\.isFinite) && fresh.contains { abs($0) > 1e-2 })
        try model.backward(dy, training, accumulate: true)
        #expect(maxAbsDiff(model.gradients!.toArray(), fresh.map { 2 * $0 }) <= 1e-6)
        var decayed = training
        decayed.gradientDecay = 0.9
        let old = randomArray(fresh.count, seed: 13, low: -5, high: 5)
        old.withUnsafeBufferPointer { model.gradients!.data.update(from: $0.baseAddress!, count: fresh.count) }
        try model.backward(dy, decayed, accumulate: false)
        let want = zip(old, fresh).map { 0.9 * $0 + $1 }
        let d = maxAbsDiff(model.gradients!.toArray(), want)
        #expect(d <= 1e-5, "max abs diff \(d)")
    }

    @Test(arguments: convBackends)
    func forwardAndBackwardAreDeterministic(_ backend: ConvolutionBackend) throws {
        // The pass's own thread count: with 0 it would follow BLAS.threads,
        // which other tests change while this one runs (oneDNN's sums
        // depend on the count, so the two runs could differ).
        var ctx = training
        ctx.threads = 2
        func run() throws -> [Float] {
            let model = try makeModel([try convCases[1].layer(backend)], seed: 14)
            let x = try randomTensor(Shape(3, 3, 9, 8), seed: 15)
            let y = try model.forward(x, ctx)
            let dx = try model.root.backward(try randomTensor(y.shape, seed: 16), ctx, needInputGradient: true, accumulate: false)!
            return y.toArray() + dx.toArray() + model.gradients!.toArray()
        }
        #expect(try run().map(\.bitPattern) == run().map(\.bitPattern))
    }

    /// PyTorch's default initialisation: U(±1/√fan_in), fan_in = C/groups·kh·kw.
    @Test func initialisationAndAttributes() throws {
        let kind = try LayerKinds.kind(named: "conv2d")
        let layer = try kind.make(["in_channels": .int(6), "out_channels": .int(4), "kernel_size": .ints([3, 2]), "groups": .int(2)])
        #expect(
            layer.attributes == [
                "in_channels": .int(6), "out_channels": .int(4), "kernel_size": .ints([3, 2]), "stride": .ints([1, 1]),
                "padding": .ints([0, 0]), "dilation": .ints([1, 1]), "groups": .int(2), "bias": .bool(true),
            ])
        #expect(layer.parameterSpecs.map(\.shape) == [Shape(4, 3, 3, 2), Shape(4)])
        #expect(layer.parameterSpecs.map(\.initializer) == [.uniform(bound: 1 / Float(18).squareRoot()), .uniform(bound: 1 / Float(18).squareRoot())])
        #expect(layer.parameterSpecs.map(\.decays) == [true, false])
        // One value stands for height and width, as PyTorch's int arguments.
        let square = try kind.make(["in_channels": .int(1), "out_channels": .int(1), "kernel_size": .ints([5]), "padding": .ints([2])])
        #expect(square.attributes["kernel_size"] == .ints([5, 5]) && square.attributes["padding"] == .ints([2, 2]))
        #expect(try square.outputShape(for: Shape(3, 1, 28, 28)) == Shape(3, 1, 28, 28))
    }

    @Test func badSettingsAndShapesAreRefused() throws {
        let kind = try LayerKinds.kind(named: "conv2d")
        expectError(
            parmlError { _ = try kind.make(["in_channels": .int(6), "out_channels": .int(4), "kernel_size": .ints([3]), "groups": .int(4)]) },
            "invalidArgument", mentions: ["groups (4) must divide in_channels (6)"])
        expectError(
            parmlError { _ = try kind.make(["in_channels": .int(1), "out_channels": .int(1), "kernel_size": .ints([3, 3, 3])]) },
            "invalidArgument", mentions: ["conv2d", "'kernel_size'", "one or two ints"])
        expectError(
            parmlError { _ = try kind.make(["in_channels": .int(1), "out_channels": .int(1), "kernel_size": .ints([3]), "stride": .ints([0])]) },
            "invalidArgument", mentions: ["'stride'"])
        expectError(
            parmlError { _ = try kind.make(["in_channels": .int(1), "out_channels": .int(1), "kernel_size": .ints([3]), "padding": .ints([-1])]) },
            "invalidArgument", mentions: ["'padding'", "0...2^31-1"])
        let layer = try Conv2d(inChannels: 3, outChannels: 2, kernel: (3, 3), dilation: (2, 2))
        expectError(parmlError { _ = try layer.outputShape(for: Shape(1, 4, 9, 9)) }, "shape", mentions: ["(N, 3, H, W)"])
        expectError(parmlError { _ = try layer.outputShape(for: Shape(1, 3, 9)) }, "shape", mentions: ["(N, 3, H, W)"])
        expectError(parmlError { _ = try layer.outputShape(for: Shape(1, 3, 4, 9)) }, "shape", mentions: ["does not fit", "4x9"])
        expectError(parmlError { _ = try layer.outputShape(for: Shape(1, 3, 1 << 16, 1 << 16)) }, "shape", mentions: ["2^31-1 cells"])
    }
}
