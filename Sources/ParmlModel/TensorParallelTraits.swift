import ParmlTensor

// What a layer kind declares about itself so that tensor parallelism
// (ParmlTraining/TensorParallel.swift) can split it without knowing the kind.

/// y = x·Wᵀ (+ b) with W (outFeatures, inFeatures) as parameter 0 and b
/// (outFeatures) as parameter 1: Megatron's column/row split applies.
public protocol MatrixLayer: Layer {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    var hasBias: Bool { get }
    /// The same kind over `outFeatures` rows of W (column-parallel), with a bias when this one has one.
    func columnSlice(outFeatures: Int) throws -> Layer
    /// The same kind over `inFeatures` columns of W (row-parallel), without a bias:
    /// it is added once after the partial outputs are summed.
    func rowSlice(inFeatures: Int) throws -> Layer
}

/// A convolution over NCHW channels: weight (outChannels, inChannels, taps…)
/// as parameter 0 and b (outChannels) as parameter 1. The column/row split
/// of a MatrixLayer applies to its channels: column-parallel keeps output
/// channels (weight rows), row-parallel input channels (a run of
/// `tapsPerChannel` weights per output channel).
public protocol ChannelMatrixLayer: Layer {
    var inChannels: Int { get }
    var outChannels: Int { get }
    var hasBias: Bool { get }
    /// Weights per (output channel, input channel) pair: kh·kw.
    var tapsPerChannel: Int { get }
    /// Why this layer cannot be split by channels (grouped convolutions), nil when it can.
    var channelSplitRefusal: String? { get }
    /// The same layer over `outChannels` output channels (column-parallel), with a bias when this one has one.
    func outputChannelSlice(outChannels: Int) throws -> Layer
    /// The same layer over `inChannels` input channels (row-parallel), without a
    /// bias: it is added once after the partial outputs are summed.
    func inputChannelSlice(inChannels: Int) throws -> Layer
}

/// Acts on each channel of an (N, C, …) input on its own (pooling, an
/// element-wise layer): it runs on a slice of the channels between a
/// column/row pair of ChannelMatrixLayers.
public protocol ChannelwiseLayer: Layer {
    /// A copy for channels [start, start + count) of `channels`, as the whole
    /// layer would treat them (random draws included). A layer with
    /// parameters must hold them as tensors whose first dimension is the
    /// channel: the copy's parameters are rows [start, start + count) of each.
    func channelSlice(start: Int, count: Int, of channels: Int) throws -> Layer
}

extension ChannelwiseLayer {
    public func channelSlice(start: Int, count: Int, of channels: Int) throws -> Layer { try replicate() }
}

/// Acts on each feature independently: it runs unchanged on a slice of the
/// features between a column/row pair (and on a slice of the channels).
public protocol ElementwiseLayer: ChannelwiseLayer {
    /// A copy for features [start, start + width) of rows `rowWidth` wide, as
    /// the whole layer would treat them (random draws included).
    func featureSlice(start: Int, rowWidth: Int) throws -> Layer
}

extension ElementwiseLayer {
    public func featureSlice(start: Int, rowWidth: Int) throws -> Layer { try replicate() }
}

/// Draws random numbers keyed on its index in the model (dropout masks).
public protocol RandomizedLayer: Layer {
    /// Set by the model when it is built: the layer's index among all its
    /// layers, unless `pinnedLayerID` fixes it.
    var layerID: Int { get set }
    /// The id to key draws on in whatever model holds the layer: a copy in a
    /// rewritten model (tensor parallelism) keeps the draws of the layer it copies.
    var pinnedLayerID: Int? { get set }
}

/// Independent heads whose outputs an output projection sums (multi-head
/// attention): Megatron splits it by heads. On tp rank t of tp, the layer
/// becomes f → its heads t·H/tp..<(t+1)·H/tp (the input projections'
/// rows for those heads: column-parallel; the output projection's columns
/// for them, without its bias: row-parallel) → g, then the output bias.
public protocol HeadParallelLayer: Layer {
    /// H, which tp must divide.
    var heads: Int { get }
    /// The width of the output (what g all-reduces and the bias it adds).
    var features: Int { get }
    /// Which of this layer's parameter tensors is the output bias (added
    /// once after the sum), nil without one.
    var outputBiasTensor: Int? { get }
    /// The layer computing heads rank·H/ranks..<(rank+1)·H/ranks, its output
    /// the partial sum of the output projection over them (no output bias),
    /// drawing the random numbers this layer draws for those heads.
    func headSlice(rank: Int, ranks: Int) throws -> HeadSlice
}

/// Where a run of a slice's parameter tensor comes from in the whole
/// layer's parameter tensor `tensor`: `rows` runs of `cols` floats,
/// `stride` apart, from element `offset` of that tensor.
public struct SliceRun: Sendable, Equatable {
    public let tensor: Int
    public let offset: Int
    public let stride: Int
    public let rows: Int
    public let cols: Int

    public init(tensor: Int, offset: Int, stride: Int, rows: Int, cols: Int) {
        (self.tensor, self.offset, self.stride, self.rows, self.cols) = (tensor, offset, stride, rows, cols)
    }
}

public struct HeadSlice {
    public let layer: Layer
    /// One entry per parameter tensor of `layer`, in its order: the runs it
    /// is made of, consecutively.
    public let sources: [[SliceRun]]

    public init(layer: Layer, sources: [[SliceRun]]) {
        self.layer = layer
        self.sources = sources
    }
}

/// A layer whose parameter 0 is a (vocabulary, features) table read by
/// token id (an embedding) or producing one logit per token (a classifier
/// tied to it): Megatron's vocabulary-parallel split gives tp rank t the
/// rows t·V/tp..<(t+1)·V/tp.
public protocol VocabularyParallelLayer: Layer {
    /// V, which tp must divide.
    var vocabulary: Int { get }
    /// The table's row width (an embedding's output width).
    var features: Int { get }
    /// The layer over rows rank·V/ranks..<(rank+1)·V/ranks of the table. An
    /// embedding slice outputs zeros for ids outside its rows (the sum over
    /// ranks is the whole lookup); a classifier slice outputs its rows' logits.
    func vocabularySlice(rank: Int, ranks: Int) throws -> Layer
}
