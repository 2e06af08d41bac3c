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
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor?
}

public enum PerExampleNorms {
    /// Refuses a model DP-SGD cannot clip per example: a layer that mixes
    /// examples (batch_norm with batch statistics), or a layer with trained
    /// parameters and no per-example norm, at any depth.
    public static func checkSupported(_ model: Model) throws {
        for (l, layer) in model.root.layers.enumerated() {
            guard let bad = unsupported(layer) else { continue }
            if bad is BatchStatisticsLayer {
                throw ParmlError.unsupported(
                    "private training: layer \(l) (\(bad.planLabel)) normalises with batch statistics, which mix the examples of a "
                        + "batch and break per-example privacy; use layer_norm instead (as Opacus requires)")
            }
            throw ParmlError.unsupported(
                "private training: layer \(l) (\(bad.planLabel)) has parameters and no per-example gradient norm; "
                    + "the layers DP-SGD clips today are \(supportedKinds.joined(separator: ", ")) (also inside residual blocks)")
        }
    }

    /// The Gram ("ghost") form of one example's ‖Σ_p d_p a_pᵀ‖² over its P
    /// positions: Σ_{p,p'} (a_p·a_p')(d_p·d_p'), from two P × P products.
    /// a holds P vectors of `aFeatures`, d P of `dFeatures`, each position a
    /// row (`positionsAreRows`, a sequence's (T, features)) or a column (an
    /// im2col or NCHW plane's (features, P)). `scratch`: 2P² floats.
    public static func gramSquaredNorm(
        _ a: UnsafePointer<Float>, aFeatures: Int, _ d: UnsafePointer<Float>, dFeatures: Int, positions p: Int,
        positionsAreRows: Bool, scratch: UnsafeMutablePointer<Float>
    ) -> Float {
        let ga = scratch, gd = scratch + p * p
        for (v, k, g) in [(a, aFeatures, ga), (d, dFeatures, gd)] {
            BLAS.gemm(
                transA: !positionsAreRows, transB: positionsAreRows, m: p, n: p, k: k,
                v, lda: positionsAreRows ? k : p, v, ldb: positionsAreRows ? k : p, beta: 0, g, ldc: p)
        }
        var sum: Float = 0
        for e in 0..<(p * p) { sum += ga[e] * gd[e] }
        return sum
    }

    /// A projection y = x·Wᵀ (+ b) over `positions` rows per example: adds
    /// each example's ‖Σ_t δ_t x_tᵀ‖² (+ ‖Σ_t δ_t‖² with `bias`). One
    /// position: the ghost norm ‖x‖²·‖δ‖² (Goodfellow 2015). More: the Gram
    /// form (Li et al. 2021), 2T²(in + out) flops, when that is at most
    /// materialising the out × in gradient (2T·in·out); else materialised.
    /// Linear's rule, also used for attention's two projections.
    public static func addProjectionNorms(
        input x: UnsafePointer<Float>, inFeatures: Int, outputGradient dy: UnsafePointer<Float>, outFeatures: Int,
        examples: Int, positions: Int, bias: Bool, scratch: Buffer, into squaredNorms: UnsafeMutablePointer<Float>
    ) throws {
        if positions == 1 {
            for i in 0..<examples {
                let d = Kernels.sumOfSquares(dy + i * outFeatures, count: outFeatures)
                let a = Kernels.sumOfSquares(x + i * inFeatures, count: inFeatures)
                squaredNorms[i] += a * d + (bias ? d : 0)
            }
            return
        }
        guard positions > 1 else { return }
        let gram = usesGramForm(positions: positions, inFeatures: inFeatures, outFeatures: outFeatures)
        let work = gram ? 2 * positions * positions : inFeatures * outFeatures
        let s = try scratch.shaped(Shape(work + outFeatures)).data
        for i in 0..<examples {
            let xi = x + i * positions * inFeatures, di = dy + i * positions * outFeatures
            if gram {
                squaredNorms[i] += gramSquaredNorm(
                    xi, aFeatures: inFeatures, di, dFeatures: outFeatures, positions: positions, positionsAreRows: true, scratch: s)
            } else {
                BLAS.gemm(
                    transA: true, transB: false, m: outFeatures, n: inFeatures, k: positions,
                    di, lda: outFeatures, xi, ldb: inFeatures, beta: 0, s, ldc: inFeatures)
                squaredNorms[i] += Kernels.sumOfSquares(s, count: inFeatures * outFeatures)
            }
            if bias {
                Kernels.sumRows(di, rows: positions, cols: outFeatures, into: s + work, beta: 0)
                squaredNorms[i] += Kernels.sumOfSquares(s + work, count: outFeatures)
            }
        }
    }

    /// Whether a projection's per-example norm over T positions takes the
    /// Gram form: 2T²(in + out) ≤ 2T·in·out flops.
    public static func usesGramForm(positions: Int, inFeatures: Int, outFeatures: Int) -> Bool {
        positions * (inFeatures + outFeatures) <= inFeatures * outFeatures
    }

    /// The kinds that implement `PerExampleNormLayer`, for messages and docs.
    public static let supportedKinds = [
        "linear", "conv2d", "layer_norm", "embedding", "position_embedding", "causal_self_attention", "tied_classifier",
    ]

    /// The first layer in `layer` (itself or nested) that DP-SGD cannot
    /// clip, or nil. Containers pass when all their layers do.
    static func unsupported(_ layer: Layer) -> Layer? {
        if layer is BatchStatisticsLayer { return layer }
        if layer is Sequential || layer is Residual { return layer.children.lazy.compactMap(unsupported).first }
        if layer is PerExampleNormLayer { return nil }
        let hasParameters = layer.parameterSpecs.contains(where: \.trained) || descendants(of: layer).contains {
            $0.parameterSpecs.contains(where: \.trained) || $0 is BatchStatisticsLayer
        }
        return hasParameters ? layer : nil
    }

    private static func descendants(of layer: Layer) -> [Layer] {
        layer.children.flatMap { [$0] + descendants(of: $0) }
    }

    /// Pass 1 of a private step over `layers` (last first): each parameter
    /// layer adds its per-example squared norms into `squaredNorms`, every
    /// layer passes the input gradient back; parameter gradients are not
    /// touched. `needFirstInputGradient` is false when nothing reads the
    /// first layer's input gradient; then no layer up to `firstTraining`
    /// (the index of the first that trains parameters, as
    /// `Sequential.firstTrainingLayer` gives it) computes one either.
    public static func backward(
        _ layers: ArraySlice<Layer>, from dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>,
        needFirstInputGradient: Bool, firstTraining: Int
    ) throws -> Tensor? {
        var g = dy
        for l in layers.indices.reversed() {
            let need = needFirstInputGradient || l > max(firstTraining, layers.startIndex)
            let next: Tensor?
            if let p = layers[l] as? PerExampleNormLayer {
                next = try p.addPerExampleSquaredNorms(g, ctx, into: squaredNorms, needInputGradient: need)
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

/// A block's layers in order: their norms, last first.
extension Sequential: PerExampleNormLayer {
    public func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        try PerExampleNorms.backward(
            layers[...], from: dy, ctx, into: squaredNorms, needFirstInputGradient: needInputGradient, firstTraining: firstTrainingLayer)
    }
}
