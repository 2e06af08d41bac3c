import ParmlTensor

/// A Linear layer's state for bf16 products (docs/precision.md): the bf16
/// copies of its input (kept for dW), its weight (rounded once per step and
/// shared by forward's y = x·Wᵀ and backward's dx = dy·W) and of dy, and
/// the oneDNN plans of its three products.
final class LinearBF16 {
    let input = BF16Array()
    let weight = BF16Array()
    let gradOutput = BF16Array()
    let products = BF16Products()
}

// The same products as the float32 path (Linear.swift), on bf16 operands
// with float32 accumulation; the bias, its gradient and everything around
// the products stay float32.
extension Linear {
    /// y (holding the broadcast bias, or to be overwritten) += x·Wᵀ.
    func bf16Forward(_ x: Tensor, weight: Tensor, into y: Tensor, rows: Int, _ ctx: PassContext) throws {
        bf16.input.fill(from: x.data, count: x.count)
        bf16.weight.fill(from: weight.data, count: weight.count, serial: ctx.stepSerial)
        try bf16.products.gemm(
            transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures,
            bf16.input.data, lda: inFeatures, bf16.weight.data, ldb: inFeatures,
            beta: bias == nil ? 0 : 1, y.data, ldc: outFeatures)
    }

    /// dW = β·dW + dyᵀ·x, db = β·db + Σ_rows dy (float32), dx = dy·W.
    func bf16Backward(_ dy: Tensor, rows: Int, beta: Float, needInputGradient: Bool, _ ctx: PassContext) throws -> Tensor? {
        guard let weightGrad, let x = input, bf16.input.count == x.count else {
            throw ParmlError.state("linear backward without a bf16 forward")
        }
        bf16.gradOutput.fill(from: dy.data, count: dy.count)
        try bf16.products.gemm(
            transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
            bf16.gradOutput.data, lda: outFeatures, bf16.input.data, ldb: inFeatures,
            beta: beta, weightGrad.data, ldc: inFeatures)
        if let biasGrad {
            Kernels.sumRows(dy.data, rows: rows, cols: outFeatures, into: biasGrad.data, beta: beta)
        }
        guard needInputGradient else { return nil }
        let dx = try gradInput.shaped(x.shape)
        try bf16.products.gemm(
            transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures,
            bf16.gradOutput.data, lda: outFeatures, bf16.weight.data, ldb: inFeatures,
            beta: 0, dx.data, ldc: inFeatures)
        return dx
    }
}
