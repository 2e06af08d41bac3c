import ParmlTensor

/// Inverted dropout: in training, y = x·m/(1−p) with m ~ Bernoulli(1−p);
/// in inference, y = x. The mask element of (sample s, feature f) is a pure
/// function of (seed, layer id, step, s, f) through Philox, so any split of
/// the batch draws exactly the masks serial training draws.
public final class Dropout: Layer {
    public let probability: Float
    public var kind: String { "dropout" }
    /// Set by the model when it is built: the layer's index among its layers.
    public internal(set) var layerID: Int = 0

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

    public func replicate() throws -> Layer { try Dropout(probability: probability) }

    public func outputShape(for input: Shape) throws -> Shape { input }

    public func forward(_ x: Tensor, _ ctx: PassContext) throws -> Tensor {
        wasTraining = ctx.training && probability > 0
        guard wasTraining else { return x }
        let m = try mask.shaped(x.shape)
        let rowSize = x.shape.rowSize
        Philox(seed: ctx.seed).fillUniform(
            m.data, count: x.count, stream: RandomStream.dropout(layer: layerID, step: ctx.step),
            first: UInt64(ctx.sampleOffset) &* UInt64(rowSize))
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
