import ParmlTensor

/// One projection's products in bf16 (docs/precision.md): y = x·Wᵀ forward,
/// dW = dyᵀ·x and dx = dy·W backward, as Linear and attention's c_attn and
/// c_proj compute them in float32, on bf16 copies of x, W and dy with
/// float32 accumulation. x's copy serves forward and dW; W's is rounded once
/// per step (keyed on PassContext.stepSerial) and serves forward and dx;
/// dy's serves dW and dx. Biases and their gradients stay float32 (the
/// caller's). Used by one thread at a time, like its layer.
final class BF16Projection {
    private let input = BF16Array()
    private let weight = BF16Array()
    private let gradOutput = BF16Array()
    private let products = BF16Products()
    /// The forward pass's thread count, for its backward.
    private var threads = 0

    /// y (rows × outF) = β·y + x·Wᵀ, with x (rows × inF) and W (outF × inF).
    func forward(
        _ x: UnsafePointer<Float>, weight w: UnsafePointer<Float>, rows: Int, inF: Int, outF: Int,
        beta: Float, into y: UnsafeMutablePointer<Float>, _ ctx: PassContext
    ) throws {
        input.fill(from: x, count: rows * inF)
        weight.fill(from: w, count: outF * inF, serial: ctx.stepSerial)
        try products.gemm(
            transA: false, transB: true, m: rows, n: outF, k: inF, input.data, lda: inF, weight.data, ldb: inF,
            beta: beta, y, ldc: outF, threads: ctx.threads)
        threads = ctx.threads
    }

    /// dW = β·dW + dyᵀ·x and, unless dx is nil, dx = dy·W, after a forward
    /// of this projection on the same x and W.
    func backward(
        _ dy: UnsafePointer<Float>, rows: Int, inF: Int, outF: Int, beta: Float,
        weightGradient dW: UnsafeMutablePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>?
    ) throws {
        guard input.count == rows * inF, weight.count == outF * inF else {
            throw ParmlError.state("bf16 backward without its forward")
        }
        gradOutput.fill(from: dy, count: rows * outF)
        try products.gemm(
            transA: true, transB: false, m: outF, n: inF, k: rows, gradOutput.data, lda: outF, input.data, ldb: inF,
            beta: beta, dW, ldc: inF, threads: threads)
        guard let dx else { return }
        try products.gemm(
            transA: false, transB: false, m: rows, n: inF, k: outF, gradOutput.data, lda: outF, weight.data, ldb: inF,
            beta: 0, dx, ldc: inF, threads: threads)
    }
}
