import ParmlTensor

/// A layer that states the arithmetic of its forward and backward pass:
/// matrix products, whose work grows faster than the data they touch.
/// A product of m×k by k×n costs 2mkn floating-point operations forward
/// and 4mkn backward (the input's and the weight's gradients).
public protocol CostedLayer: Layer {
    /// Floating-point operations of forward + backward at input `shape`.
    func trainingFlops(input: Shape) throws -> Double
}

/// What layers cost to train, in flops, for balancing pipeline stages.
///
/// A layer that states its products (`CostedLayer`) adds them to the
/// element-wise traffic every layer has: each float of its input and
/// output is read and written a few times forward and backward, which runs
/// at memory speed. On this machine an sgemm runs ~130 GFLOP/s on one core
/// and memory ~9 GB/s, so a float moved costs about as long as 50 flops;
/// with about three moves per element over forward and backward, an element
/// of input or output counts `elementFlops`.
public enum LayerCost {
    public static let elementFlops: Double = 150

    /// Forward + backward of `layer` at input `shape`; containers add their
    /// children's (residual blocks: the body's and the sum's).
    public static func of(_ layer: Layer, input: Shape) throws -> Double {
        let output = try layer.outputShape(for: input)
        var flops = elementFlops * Double(input.count + output.count)
        if let c = layer as? CostedLayer { flops += try c.trainingFlops(input: input) }
        if let body = layer as? Sequential {
            var s = input
            flops = 0
            for l in body.layers {
                flops += try of(l, input: s)
                s = try l.outputShape(for: s)
            }
        } else {
            for c in layer.children { flops += try of(c, input: input) }
        }
        return flops
    }

    /// The cost of each top-level layer of `model` for one input shaped
    /// `shape` (its batch dimension included).
    public static func topLevel(_ model: Model, input shape: Shape) throws -> [Double] {
        var s = shape
        return try model.root.layers.map { l in
            defer { s = (try? l.outputShape(for: s)) ?? s }
            return try of(l, input: s)
        }
    }

    /// One sample's input when the model implies it: a token model reads
    /// (1, T) with T its position embedding's length (nanoGPT's block_size,
    /// the length it trains at), or 1 without one; a model starting with a
    /// linear layer reads (1, in_features). Nil otherwise (images: their
    /// size is not in the model).
    public static func sampleInput(_ model: Model) -> Shape? {
        guard let first = model.root.layers.first else { return nil }
        if case .tokenIDs = first.descriptor?.input {
            let positions = model.allLayers.compactMap { ($0 as? PositionEmbedding)?.positions }.first
            return Shape(1, positions ?? 1)
        }
        if let linear = first as? Linear { return Shape(1, linear.inFeatures) }
        return nil
    }

    /// What pipeline stages balance: each top-level layer's cost for one
    /// sample when the model implies its input, else its parameter count
    /// (a proxy for its products' work per sample).
    public static func stageCosts(_ model: Model) -> (costs: [Int], measure: String) {
        if let s = sampleInput(model), let c = try? topLevel(model, input: s) {
            return (c.map { Int($0.rounded()) }, "flops per sample of \(s)")
        }
        return (model.topLevelParameterCounts, "parameter count")
    }
}
