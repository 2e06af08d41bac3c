import ParmlTensor

/// Private training. Both projections are sequence projections over the
/// example's T positions: c_proj maps the joined heads y (T, d) to the
/// output (its per-example gradient Σ_t δ_t y_tᵀ), c_attn maps the input x
/// (T, C) to qkv (Σ_t dqkv_t x_tᵀ). Each takes Linear's rule (Gram form or
/// materialised, `PerExampleNorms.addProjectionNorms`), biases included;
/// dqkv comes from the ordinary attention backward, which writes no
/// parameter gradient. The scores have no parameters of their own.
///
/// A tensor-parallel head slice adds the norms of its own rows of c_attn
/// and columns of c_proj (squared norms of disjoint parameter parts add
/// up); summing the slices' norms and adding c_proj's bias, which no slice
/// holds, is the trainer's part.
extension CausalSelfAttention: PerExampleNormLayer {
    public func addPerExampleSquaredNorms(
        _ dout: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        guard let attnWeight, let projWeight, let x = input else {
            throw ParmlError.state("causal_self_attention backward without forward")
        }
        let b = x.shape[0], t = x.shape[1], d = inner
        let y = heads_.tensor
        try PerExampleNorms.addProjectionNorms(
            input: y.data, inFeatures: d, outputGradient: dout.data, outFeatures: features, examples: b, positions: t,
            bias: projectionBias, scratch: normScratch, into: squaredNorms)
        let dy = try gradHeads.shaped(y.shape)
        headsGradient(dout, weight: projWeight, into: dy)
        let dq = try attentionBackward(dy)
        try PerExampleNorms.addProjectionNorms(
            input: x.data, inFeatures: features, outputGradient: dq.data, outFeatures: 3 * d, examples: b, positions: t,
            bias: hasBias, scratch: normScratch, into: squaredNorms)
        guard needInputGradient else { return nil }
        return try inputGradient(dq, weight: attnWeight, input: x)
    }

    /// Which form each projection's per-example norm takes at T positions
    /// (docs/privacy.md): c_attn (C → 3d), then c_proj (d → C).
    public func perExampleNormForms(positions t: Int) -> (attention: String, projection: String) {
        func form(_ inF: Int, _ outF: Int) -> String {
            t == 1 ? "ghost" : PerExampleNorms.usesGramForm(positions: t, inFeatures: inF, outFeatures: outF) ? "gram" : "materialised"
        }
        return (form(features, 3 * inner), form(inner, features))
    }
}
