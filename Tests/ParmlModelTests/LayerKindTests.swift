import Foundation
import ParmlTensor
import Testing
import _ParmlTestSupport

@testable import ParmlModel

/// A kind's attributes with a plain value for each required one (sizes 4,
/// floats 0.25, int lists [3]: a 3x3 kernel): enough to build any
/// registered kind on its `sampleInput`.
func sampleAttributes(_ kind: LayerKind) -> Attributes {
    Attributes(
        kind.attributes.compactMap { spec in
            if spec.defaultValue != nil { return nil }
            let v: AttributeValue =
                switch spec.type {
                case .int: .int(4)
                case .float: .float(0.25)
                case .bool: .bool(true)
                case .string: .string("")
                case .ints: .ints([3])
                }
            return Attributes.Entry(name: spec.name, value: v)
        })
}

/// The kinds that read image batches (N, C, H, W) (batch_norm takes others too).
let imageKinds: Set<String> = ["conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool", "batch_norm"]

/// An input of shape (1, 3, 4) for any kind built by `sampleAttributes` (a
/// batch of one sequence of 3 positions of 4 features: what sequence kinds
/// such as attention need, and any other kind takes), or (2, 4, 5, 5) for
/// an image kind: values at least 0.05 from 0 (where piecewise kinds have
/// their kinks), or token ids below 4 for a kind that reads ids. Image
/// values are 0.03 apart, shuffled: a step of 0.01 never changes which
/// cell a max pooling window takes.
func sampleInput(_ kind: LayerKind) throws -> Tensor {
    let image = imageKinds.contains(kind.name)
    let shape = image ? Shape(2, 4, 5, 5) : Shape(1, 3, 4)
    let x: [Float]
    if image {
        let keys = randomArray(shape.count, seed: 22)
        let order = (0..<shape.count).sorted { keys[$0] < keys[$1] }
        var v = [Float](repeating: 0, count: shape.count)
        for (rank, i) in order.enumerated() { v[i] = (Float(rank) - 99.5) * 0.03 }
        x = v
    } else if case .tokenIDs = try firstKind(kind).input {
        x = (0..<shape.count).map { Float(($0 * 7 + 3) % 4) }
    } else {
        x = randomArray(shape.count, seed: 22, low: -3, high: 3).map { $0 >= 0 ? $0 + 0.05 : $0 - 0.05 }
    }
    return try Tensor(x, shape: shape)
}

/// The layers of a sample model for `kind`: the kind it requires (built
/// from the same sample attributes), then the kind itself.
func sampleLayers(_ kind: LayerKind) throws -> [Layer] {
    let before = try kind.requires.map { try LayerKinds.kind(named: $0) }
    return try (before.map { [try $0.make(sampleAttributes($0))] } ?? []) + [try kind.make(sampleAttributes(kind))]
}

/// The kind whose input a sample model for `kind` reads.
func firstKind(_ kind: LayerKind) throws -> LayerKind { try kind.requires.map { try LayerKinds.kind(named: $0) } ?? kind }

/// What every registered kind promises, checked for each one from the
/// registry: a kind added later is covered with no test change here.
@Suite struct LayerKindTests {
    static let names = LayerKinds.all.map(\.name)

    @Test func namesAndClassNamesAreUnique() {
        #expect(Set(LayerKinds.all.map(\.name)).count == LayerKinds.all.count)
        #expect(Set(LayerKinds.all.map(\.className)).count == LayerKinds.all.count)
        for k in LayerKinds.all {
            // PyTorch's functional spellings: conv2d, max_pool2d.
            #expect(k.name.first!.isLowercase && k.name.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "_" }, "\(k.name): names are lower_snake_case")
            #expect(!Model.blockKinds.contains(k.name))
        }
    }

    @Test(arguments: names)
    func rebuildsFromItsAttributes(_ name: String) throws {
        let kind = try LayerKinds.kind(named: name)
        let layer = try kind.make(sampleAttributes(kind))
        #expect(layer.kind == name)
        #expect(layer.descriptor?.name == name)
        // Complete values, in the kind's declared order, defaults filled in.
        expectEqualElements(layer.attributes.entries.map(\.name), kind.attributes.map(\.name))
        let again = try kind.make(layer.attributes)
        #expect(again.attributes == layer.attributes)
        #expect(try layer.replicate().attributes == layer.attributes)
        expectEqualElements(again.parameterSpecs.map(\.shape), layer.parameterSpecs.map(\.shape))
    }

    /// Backward against central differences, parameters and input, in training mode.
    @Test(arguments: names)
    func gradientsMatchFiniteDifferences(_ name: String) throws {
        let kind = try LayerKinds.kind(named: name)
        // A tied classifier's two slots are checked one by one: each against
        // differences of that slot alone (the trainer sums them).
        let model = try makeModel(try sampleLayers(kind), seed: 21)
        let ctx = PassContext(training: true, step: 1, sampleOffset: 0, seed: 5)
        try gradientCheck(
            model: model, input: try sampleInput(kind), ctx: ctx, eps: 0.01, atol: 1e-3, rtol: 2e-3, checkInput: try firstKind(kind).input == .values)
    }

    @Test func badAttributesNameTheKindAndTheAttribute() throws {
        let linear = try LayerKinds.kind(named: "linear")
        expectError(parmlError { _ = try linear.make(["in_features": .int(4)]) }, "invalidArgument", mentions: ["linear", "'out_features'", "required"])
        expectError(
            parmlError { _ = try linear.make(["in_features": .int(4), "out_features": .int(2), "biass": .bool(true)]) },
            "invalidArgument", mentions: ["linear", "'biass'", "in_features, out_features, bias"])
        expectError(
            parmlError { _ = try linear.make(["in_features": .int(4), "out_features": .float(2)]) }, "invalidArgument",
            mentions: ["linear", "'out_features'", "is int", "got float"])
        expectError(
            parmlError { _ = try linear.make(["in_features": .int(0), "out_features": .int(2)]) }, "invalidArgument",
            mentions: ["linear", "'in_features'", "1...2^31-1", "got 0"])
        expectError(
            parmlError { _ = try linear.make(["in_features": .int(4), "out_features": .int(2), "in_features": .int(4)]) },
            "invalidArgument", mentions: ["'in_features'", "twice"])
        let norm = try LayerKinds.kind(named: "layer_norm")
        expectError(parmlError { _ = try norm.make(["features": .int(4), "eps": .float(.nan)]) }, "invalidArgument", mentions: ["layer_norm", "'eps'"])
        expectError(parmlError { _ = try LayerKinds.kind(named: "conv9d") }, "invalidArgument", mentions: ["conv9d", "linear", "layer_norm"])
        expectError(parmlError { _ = try LayerKinds.kind(named: "relu").make(["p": .float(0.1)]) }, "invalidArgument", mentions: ["relu", "takes none"])
    }

    @Test func defaultsAreFilledIn() throws {
        let layer = try LayerKinds.kind(named: "layer_norm").make(["features": .int(8)])
        #expect(layer.attributes == ["features": .int(8), "eps": .float(1e-5), "bias": .bool(true)])
        let lin = try LayerKinds.kind(named: "linear").make(["out_features": .int(3), "in_features": .int(5)])
        #expect(lin.attributes == ["in_features": .int(5), "out_features": .int(3), "bias": .bool(true)])
    }
}
