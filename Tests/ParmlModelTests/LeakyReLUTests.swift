import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// leaky_relu, the kind added by docs/adding-a-layer.md: values and
/// gradients by their closed forms. (The registry-driven suites also check
/// its finite differences, file round trip and ONNX export.)
@Suite struct LeakyReLUTests {
    let ctx = PassContext(training: true)

    @Test func forwardAndBackwardByTheFormula() throws {
        let layer = try LayerKinds.kind(named: "leaky_relu").make(["negative_slope": .float(0.2)])
        let model = try makeModel([layer])
        let xs: [Float] = [-3, -0.5, 0, 0.25, 2, -1e-30]
        let y = try model.forward(try Tensor(xs, shape: Shape(2, 3)), ctx).toArray()
        #expect(y == xs.map { $0 >= 0 ? $0 : 0.2 * $0 })
        let dy: [Float] = [1, 2, 3, 4, 5, 6]
        let dx = try model.root.backward(try Tensor(dy, shape: Shape(2, 3)), ctx, needInputGradient: true, accumulate: false)!.toArray()
        // At x = 0 the slope is 1, as PyTorch takes it.
        #expect(dx == [0.2, 0.4, 3, 4, 5, 0.2 * 6])
    }

    @Test func defaultSlopeIsPyTorchs() throws {
        let layer = try LayerKinds.kind(named: "leaky_relu").make()
        #expect(layer.attributes == ["negative_slope": .float(0.01)])
        #expect(layer is ElementwiseLayer, "tensor parallelism may run it inside a column/row pair")
    }

    @Test func slopeMustBeFinite() {
        let kind = LeakyReLU.descriptor
        for bad: Float in [.nan, .infinity, -.infinity] {
            expectError(parmlError { _ = try kind.make(["negative_slope": .float(bad)]) }, "invalidArgument", mentions: ["leaky_relu", "'negative_slope'"])
        }
    }
}
