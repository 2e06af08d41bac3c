import ParmlTensor

// Private training with a classifier tied to the token embedding (one V × D
// matrix W used twice). Example i's gradient of W is G_emb,i + G_cls,i, so
//   ‖G_emb,i + G_cls,i‖² = ‖G_emb,i‖² + ‖G_cls,i‖² + 2⟨G_emb,i, G_cls,i⟩.
// The classifier adds ‖G_cls,i‖² (Linear's rule) and leaves its input h and
// output gradient dlogits for the embedding, which adds ‖G_emb,i‖² (its own
// grouped form) and the cross term, without forming a V × D matrix:
//   G_cls,i = Σ_p dlogits_p h_pᵀ,  G_emb,i = Σ_t e_{id_t} dE_tᵀ, so
//   ⟨G_emb,i, G_cls,i⟩ = Σ_t Σ_p dlogits_p[id_t] (h_p · dE_t),
// one P × T product H_i·dE_iᵀ per example (2PTD flops) and a gather.
// The norm pass runs the classifier before the embedding (last layer
// first); a rank holding the embedding without its classifier's pass (the
// two on different pipeline stages) is refused rather than clipped wrong.
// Under a vocabulary split each rank's pair covers the same rows, and the
// three terms of its rows add up across ranks like any disjoint parameters.

extension TiedClassifier: PerExampleNormLayer {
    public func addPerExampleSquaredNorms(
        _ dy: Tensor, _ ctx: PassContext, into squaredNorms: UnsafeMutablePointer<Float>, needInputGradient: Bool
    ) throws -> Tensor? {
        guard let h = product.input else { throw ParmlError.state("tied_classifier backward without forward") }
        pendingNormTerms = (h, dy)
        return try product.addPerExampleSquaredNorms(dy, ctx, into: squaredNorms, needInputGradient: needInputGradient)
    }
}

extension Embedding {
    /// Adds 2⟨G_emb,i, G_cls,i⟩ for each example i when a classifier is tied
    /// to this table; `dy` is this layer's output gradient in the norm pass.
    func addTiedCrossTerms(_ dy: Tensor, ids x: Tensor, into squaredNorms: UnsafeMutablePointer<Float>) throws {
        guard let classifier = tiedClassifier else { return }
        guard let (h, dlogits) = classifier.pendingNormTerms else {
            throw ParmlError.unsupported(
                "private training: the embedding's tied classifier took no per-example norm pass on this rank (the two on "
                    + "different pipeline stages); its cross term cannot be formed, use an untied linear classifier")
        }
        classifier.pendingNormTerms = nil  // one step's terms, used once
        let examples = dy.shape[0]
        guard examples > 0 else { return }
        let positions = x.count / examples, outputs = dlogits.count / (examples * count)
        guard dlogits.shape[0] == examples, h.count == examples * outputs * dim, dlogits.count == examples * outputs * count else {
            throw ParmlError.shape(
                "private training: the tied classifier's norm terms (input \(h.shape), output gradient \(dlogits.shape)) do not "
                    + "match the embedding's batch of \(examples) examples")
        }
        let a = try normScratch.shaped(Shape(outputs, positions)).data
        for i in 0..<examples {
            let hi = h.data + i * outputs * dim, di = dy.data + i * positions * dim
            let li = dlogits.data + i * outputs * count, ids = x.data + i * positions
            // a[p, t] = h_p · dE_t
            BLAS.gemm(
                transA: false, transB: true, m: outputs, n: positions, k: dim, hi, lda: dim, di, ldb: dim, beta: 0, a, ldc: positions)
            var cross: Float = 0
            for t in 0..<positions {
                let v = Int(ids[t]) - firstID
                guard v >= 0 && v < count else { continue }  // another rank's rows
                for p in 0..<outputs { cross += li[p * count + v] * a[p * positions + t] }
            }
            squaredNorms[i] += 2 * cross
        }
    }
}
