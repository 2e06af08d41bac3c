import ParmlTensor

/// What layers cost to train, in flops, for balancing pipeline stages.
///
/// Every layer moves its input and output through memory a few times
/// forward and backward; a layer that declares its work
/// (`WorkDescribingLayer`, LayerWork.swift) adds its matrix products, each
/// 2mkn flops forward and 4mkn backward (the input's and the weight's
/// gradients), and the floats its other element-wise passes touch. On this
/// machine an sgemm runs ~130 GFLOP/s on one core and memory ~9 GB/s, so a
/// float moved costs about as long as 50 flops; with about three moves per
/// element over forward and backward, an element counts `elementFlops`.
public enum LayerCost {
    public static let elementFlops: Double = 150

    /// Forward + backward of `layer` at input `shape`; containers add their
    /// children's (residual blocks: the body's and the sum's).
    public static func of(_ layer: Layer, input: Shape) throws -> Double {
        let output = try layer.outputShape(for: input)
        var flops = elementFlops * Double(input.count + output.count)
        if let w = layer as? WorkDescribingLayer {
            let work = try w.forwardWork(input: input)
            flops += 3 * work.productFLOPs + elementFlops * work.elementwiseFloats
        }
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
