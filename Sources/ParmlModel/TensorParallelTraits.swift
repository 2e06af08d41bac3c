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

/// Acts on each feature independently: it runs unchanged on a slice of the
/// features between a column/row pair.
public protocol ElementwiseLayer: Layer {
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
