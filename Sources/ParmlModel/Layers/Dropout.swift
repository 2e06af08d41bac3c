import ParmlTensor

/// Inverted dropout: in training, y = x·m/(1−p) with m ~ Bernoulli(1−p);
/// in inference, y = x. The mask element of (sample s, feature f) is a pure
/// function of (seed, layer id, step, s, f) through Philox, so any split of
/// the batch draws exactly the masks serial training draws.
public final class Dropout: KindedLayer, ElementwiseLayer, RandomizedLayer {
    public static let descriptor = LayerKind(
        name: "dropout", className: "Dropout",
        doc: "inverted dropout, active in training only; masks drawn from the strategy's seed",
        attributes: [
            .float("p", doc: "drop probability", rule: "in [0, 1)") { $0 >= 0 && $0 < 1 }
        ]
    ) { a in try Dropout(probability: a.float("p")) }

    public let probability: Float
    public var layerID: Int = 0
    public var pinnedLayerID: Int?
    /// When the input holds features [start, start + width) of rows that are
    /// `rowWidth` wide (one rank's slice of a split layer), the mask is that
    /// slice of the whole row's mask.
    public var featureWindow: (start: Int, rowWidth: Int)?
    /// When the input (N, count, …) holds channels [start, start + count) of
    /// `channels` (a split convolution's slice), the mask is that slice of
    /// the whole (N, channels, …) input's mask.
    public var channelWindow: (start: Int, channels: Int)?

    private let mask = Buffer()
    private let output = Buffer()
    private let gradInput = Buffer()
    private var wasTraining = false

    public init(probability: Float) throws {
        guard probability >= 0, probability < 1 else {
            throw ParmlError.invalidArgument("dropout: probability must be in [0, 1), got \(probability)")
        }
        self.probability = probability
    }

    public func replicate() throws -> Layer {
        let d = try Dropout(probability: probability)
        d.pinnedLayerID = pinnedLayerID
        d.featureWindow = featureWindow
        d.channelWindow = channelWindow
        return d
    }

    public var attributes: Attributes { ["p": .float(probability)] }

    public func featureSlice(start: Int, rowWidth: Int) throws -> Layer {
        let d = try Dropout(probability: probability)
        d.pinnedLayerID = layerID  // the whole layer's id, set when its model was built
        d.featureWindow = (start: start, rowWidth: rowWidth)
        return d
    }

    public func channelSlice(start: Int, count: Int, of channels: Int) throws -> Layer {
        let d = try Dropout(probability: probability)
        d.pinnedLayerID = layerID
        d.channelWindow = (start: start, channels: channels)
        return d
    }

    /// The identity: ONNX exports are for inference.
    public func lowerToOnnx(_ g: OnnxLowering, input x: String, shape: Shape) throws -> String { x }

    public func outputShape(for input: Shape) throws -> Shape { input }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        wasTraining = ctx.training && probability > 0
        guard wasTraining else { return x }
        let m = try mask.shaped(x.shape)
        let rowSize = x.shape.rowSize
        let rng = Philox(seed: ctx.seed)
        let stream = RandomStream.dropout(layer: layerID, step: ctx.step)
        // A channel slice's window in features: its channels' planes are contiguous in each row.
        let window = featureWindow ?? channelWindow.map { c in
            let plane = x.shape.rank > 1 && x.shape[1] > 0 ? rowSize / x.shape[1] : 0
            return (start: c.start * plane, rowWidth: c.channels * plane)
        }
        if let w = window {
            let rows = x.count / max(rowSize, 1)
            for r in 0..<rows {
                let first = UInt64(ctx.sampleOffset + r) &* UInt64(w.rowWidth) &+ UInt64(w.start)
                rng.fillUniform(m.data + r * rowSize, count: rowSize, stream: stream, first: first)
            }
        } else {
            rng.fillUniform(m.data, count: x.count, stream: stream, first: UInt64(ctx.sampleOffset) &* UInt64(rowSize))
        }
        let keep = 1 / (1 - probability)
        for i in 0..<m.count { m.data[i] = m.data[i] >= probability ? keep : 0 }
        let y = try output.shaped(x.shape)
        Kernels.multiply(x.data, m.data, y.data, count: x.count)
        return y
    }

    public func backward(_ dy: Tensor, _ ctx: PassContext, needInputGradient: Bool, accumulate: Bool) throws -> Tensor? {
        guard needInputGradient else { return nil }
        guard wasTraining else { return dy }
        let dx = try gradInput.shaped(dy.shape)
        Kernels.multiply(dy.data, mask.tensor.data, dx.data, count: dy.count)
        return dx
    }
}

/// Generation decodes it with its forward: identity in inference.
extension Dropout: PositionwiseLayer {}
