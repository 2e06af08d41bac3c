import ParmlTensor

/// A layer with parameters that can say, for each example of a batch, the
/// squared norm of that example's gradient of its parameters, without
/// writing its parameter gradients: what DP-SGD's per-example clipping
/// needs (pass 1 of a private step; docs/privacy.md).
///
/// An example is a row of the batch's leading dimension; a sequence
/// (N, T, ...) is one example of T positions.
public protocol PerExampleNormLayer: Layer {
    /// Adds ‖∂ℓᵢ/∂θ‖² of this layer's parameters θ to `squaredNorms[i]` for
    /// each example i < dy.shape[0], where ℓᵢ is the part of the loss whose
    /// output gradient is row i of `dy` (after the matching `forward`), and
    /// returns dL/dx when `needInputGradient`. Parameter gradients stay as
    /// they are.
    func addPerExampleSquaredNorms(
        _ dy: Tensor, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor?
}

public enum PerExampleNorms {
    /// Refuses a model DP-SGD cannot clip per example: a layer that mixes
    /// examples (batch_norm with batch statistics), or a layer with trained
    /// parameters and no per-example norm. Checks top-level layers, whose
    /// children must then have none.
    public static func checkSupported(_ model: Model) throws {
        for (l, layer) in model.root.layers.enumerated() {
            if let bad = ([layer] + descendants(of: layer)).first(where: { $0 is BatchStatisticsLayer }) {
                throw ParmlError.unsupported(
                    "private training: layer \(l) (\(bad.planLabel)) normalises with batch statistics, which mix the examples of a "
                        + "batch and break per-example privacy; use layer_norm instead (as Opacus requires)")
            }
            if layer is PerExampleNormLayer { continue }
            if let bad = ([layer] + descendants(of: layer)).first(where: { $0.parameterSpecs.contains(where: \.trained) }) {
                throw ParmlError.unsupported(
                    "private training: layer \(l) (\(bad.planLabel)) has parameters and no per-example gradient norm; "
                        + "the layers DP-SGD clips today are \(supportedKinds.joined(separator: ", "))")
            }
        }
    }

    /// The kinds that implement `PerExampleNormLayer`, for messages and docs.
    public static let supportedKinds = ["linear", "layer_norm"]

    private static func descendants(of layer: Layer) -> [Layer] {
        layer.children.flatMap { [$0] + descendants(of: $0) }
    }

    /// Pass 1 of a private step over `layers` (last first): each parameter
    /// layer adds its per-example squared norms into `squaredNorms`, every
    /// layer passes the input gradient back; parameter gradients are not
    /// touched. `needFirstInputGradient` is false when nothing reads the
    /// first layer's input gradient.
    public static func backward(
        _ layers: ArraySlice<Layer>, from dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>,
        needFirstInputGradient: Bool
    ) throws -> Tensor? {
        var g = dy
        for l in layers.indices.reversed() {
            let need = l > layers.startIndex || needFirstInputGradient
            let next: Tensor?
            if let p = layers[l] as? PerExampleNormLayer {
                next = try p.addPerExampleSquaredNorms(g, into: squaredNorms, needInputGradient: need)
            } else {
                // No trained parameters (checkSupported): its backward writes none.
                next = try layers[l].backward(g, ctx, needInputGradient: need, accumulate: true)
            }
            guard let next else { return nil }
            g = next
        }
        return g
    }
}
