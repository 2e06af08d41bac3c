import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

@Suite struct ModelTests {
    init() throws { try BLAS.ensureLoaded() }

    private func mlp() throws -> Model {
        let m = Model()
        try m.add(try Linear(inFeatures: 10, outFeatures: 20))
        try m.add(try LayerNorm(features: 20))
        try m.add(Activation(.gelu))
        try m.beginResidual()
        try m.add(try Linear(inFeatures: 20, outFeatures: 20))
        try m.add(Activation(.tanh))
        try m.endResidual()
        try m.add(try Dropout(probability: 0.5))
        try m.add(try Linear(inFeatures: 20, outFeatures: 3, bias: false))
        return m
    }

    @Test func initialization() throws {
        let m = try mlp()
        #expect(!m.isBuilt && !m.isInitialized)
        #expect(m.declaredParameterCount == 220 + 40 + 420 + 60)
        try m.initialize(seed: 7)
        #expect(m.isBuilt && m.isInitialized && m.seed == 7)
        #expect(m.parameterCount == 740)
        let p = m.parameters!.toArray()
        let names = m.parameterInfo.map(\.name)
        // Indices among siblings, as PyTorch names an nn.Sequential's: 0 linear,
        // 1 layer_norm, 2 gelu, 3 residual (3.0 linear, 3.1 tanh), 4 dropout, 5 linear.
        #expect(names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.0.weight", "3.0.bias", "5.weight"])
        var offset = 0
        for info in m.parameterInfo {
            #expect(info.offset == offset)
            offset += info.count
            let v = Array(p[info.offset..<(info.offset + info.count)])
            switch info.initializer {
            case .uniform(let bound):
                let fanIn = info.name.hasPrefix("0.") ? 10 : 20
                #expect(bound == 1 / Float(fanIn).squareRoot())
                #expect(v.allSatisfy { $0 >= -bound && $0 < bound }, "\(info.name) outside ±1/√\(fanIn)")
                // Spread over the range, not all zero or constant.
                #expect(v.max()! > 0.5 * bound && v.min()! < -0.5 * bound, "\(info.name) range \(v.min()!)...\(v.max()!)")
            case .constant(let c):
                #expect(v.allSatisfy { $0 == c })
                #expect(c == (info.name.hasSuffix("weight") ? 1 : 0))
            case .normal:
                Issue.record("\(info.name): none of these layers draws from a normal")
            }
        }
        #expect(offset == 740)
        #expect(m.gradients!.toArray().allSatisfy { $0 == 0 })
    }

    @Test func seedsDecideParameters() throws {
        let a = try mlp(), b = try mlp(), c = try mlp()
        try a.initialize(seed: 123)
        try b.initialize(seed: 123)
        try c.initialize(seed: 124)
        expectEqualElements(a.parameters!.toArray().map(\.bitPattern), b.parameters!.toArray().map(\.bitPattern))
        #expect(a.parameters!.toArray() != c.parameters!.toArray())
        // Re-initialising redraws the same values.
        a.parameters!.fill(0.5)
        try a.initialize(seed: 123)
        expectEqualElements(a.parameters!.toArray(), b.parameters!.toArray())
        // Parameter i of tensor j is Philox(seed) stream j element i, whatever the model around it.
        let alone = Model()
        try alone.add(try Linear(inFeatures: 10, outFeatures: 20))
        try alone.initialize(seed: 123)
        expectEqualElements(Array(a.parameters!.toArray()[0..<220]), alone.parameters!.toArray())
    }

    @Test func summaryNamesLayers() throws {
        let m = try mlp()
        let s = m.summary
        for part in ["linear", "layer_norm", "gelu", "residual", "tanh", "dropout", "p=0.5", "weight(20, 10)", "params=220", "total parameters: 740"] {
            #expect(s.contains(part), "summary lacks \"\(part)\":\n\(s)")
        }
        // Residual body is indented under its block.
        #expect(s.contains("\n  linear"), "summary:\n\(s)")
    }

    @Test func noLayersAfterInitialization() throws {
        let m = try mlp()
        try m.initialize(seed: 1)
        expectError(parmlError { try m.add(Activation(.relu)) }, "state")
        expectError(parmlError { try m.beginResidual() }, "state")
        expectError(parmlError { try m.endResidual() }, "state")
    }

    @Test func residualBlocksMustBalance() throws {
        let m = Model()
        expectError(parmlError { try m.endResidual() }, "state", mentions: ["begin_residual"])
        try m.beginResidual()
        expectError(parmlError { try m.build() }, "state", mentions: ["end_residual"])
        expectError(parmlError { try m.endResidual() }, "invalidArgument")  // empty body
        expectError(parmlError { try Model().build() }, "state")  // no layers
    }

    @Test func residualBodyMustKeepTheShape() throws {
        let m = Model()
        try m.beginResidual()
        try m.add(try Linear(inFeatures: 4, outFeatures: 5))
        try m.endResidual()
        try m.initialize(seed: 1)
        expectError(parmlError { _ = try m.outputShape(for: Shape(2, 4)) }, "shape", mentions: ["residual"])
        expectError(parmlError { _ = try m.forward(try Tensor(shape: Shape(2, 4)), PassContext(training: false)) }, "shape")
    }

    @Test func forwardNeedsInitialization() throws {
        let m = try mlp()
        expectError(parmlError { _ = try m.forward(try Tensor(shape: Shape(2, 10)), PassContext(training: false)) }, "state")
        expectError(parmlError { try m.backward(try Tensor(shape: Shape(2, 3)), PassContext(training: false)) }, "state")
        var one: [Float] = [0]
        expectError(parmlError { try one.withUnsafeMutableBufferPointer { try m.copyParameters(to: $0.baseAddress!) } }, "state")
        // Built (arena allocated) but not initialised: still refused.
        try m.build()
        expectError(parmlError { _ = try m.forward(try Tensor(shape: Shape(2, 10)), PassContext(training: false)) }, "state")
    }

    @Test func inputShapeIsChecked() throws {
        let m = try mlp()
        try m.initialize(seed: 1)
        expectError(parmlError { _ = try m.forward(try Tensor(shape: Shape(2, 9)), PassContext(training: false)) }, "shape", mentions: ["10"])
        expectError(parmlError { _ = try m.forward(try Tensor(shape: Shape(10)), PassContext(training: false)) }, "shape")
        expectError(parmlError { _ = try m.forward(try Tensor(shape: Shape(0, 10)), PassContext(training: false)) }, "shape")
        #expect(try m.outputShape(for: Shape(5, 10)) == Shape(5, 3))
        #expect(try m.outputShape(for: Shape(2, 7, 10)) == Shape(2, 7, 3))
        let y = try m.forward(try randomTensor(Shape(5, 10), seed: 3), PassContext(training: false))
        #expect(y.shape == Shape(5, 3) && y.toArray().allSatisfy(\.isFinite))
    }

    @Test func layerConstructorsValidate() {
        expectError(parmlError { _ = try Linear(inFeatures: 0, outFeatures: 3) }, "invalidArgument")
        expectError(parmlError { _ = try Linear(inFeatures: 3, outFeatures: -1) }, "invalidArgument")
        expectError(parmlError { _ = try Linear(inFeatures: 1 << 20, outFeatures: 1 << 20) }, "invalidArgument")
        expectError(parmlError { _ = try LayerNorm(features: 0) }, "invalidArgument")
        expectError(parmlError { _ = try LayerNorm(features: 4, eps: 0) }, "invalidArgument")
        expectError(parmlError { _ = try LayerNorm(features: 4, eps: .infinity) }, "invalidArgument")
    }

    @Test func parametersRoundTrip() throws {
        let m = try mlp()
        try m.initialize(seed: 9)
        var buf = [Float](repeating: 0, count: m.parameterCount)
        try buf.withUnsafeMutableBufferPointer { try m.copyParameters(to: $0.baseAddress!) }
        expectEqualElements(buf, m.parameters!.toArray())
        let other = randomArray(m.parameterCount, seed: 10)
        try other.withUnsafeBufferPointer { try m.setParameters(from: $0.baseAddress!) }
        expectEqualElements(m.parameters!.toArray(), other)
    }
}

/// Initializer.normal: N(0, std²) by Box–Muller from Philox, the same value
/// for an element wherever the fill starts.
@Suite struct NormalInitTests {
    @Test func momentsAndPositionIndependence() {
        let rng = Philox(seed: 7)
        let n = 200_000
        var v = [Float](repeating: 0, count: n)
        rng.fillNormal(&v, count: n, stream: 3, std: 0.02)
        let mean = v.reduce(0.0) { $0 + Double($1) } / Double(n)
        let variance = v.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)
        // Standard errors: mean 0.02/√n ≈ 4.5e-5; variance ≈ 4e-4·√(2/n) ≈ 1.3e-6.
        #expect(abs(mean) < 2.5e-4)
        #expect(abs(variance.squareRoot() - 0.02) < 1e-4)
        #expect(v.allSatisfy { $0.isFinite })
        var tail = [Float](repeating: 0, count: 10)
        rng.fillNormal(&tail, count: 10, stream: 3, first: 1234, std: 0.02)
        expectEqualElements(tail, Array(v[1234..<1244]))
    }
}
