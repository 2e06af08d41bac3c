import ParmlTensor

/// The per-head products of causal attention, skipping the blocks that the
/// causal mask makes zero or unused. With the T rows cut in halves at
/// h = T/2:
/// - `.scores`, S (T, T) = α·A·Bᵀ: the top-right (h × T−h) block is never
///   read (the softmax and its backward write 0 there) and is left as it was;
/// - `.lower`, C (T, n) = α·L·B with L (T, T) lower-triangular: the top h
///   rows need L's first h columns only;
/// - `.lowerTransposed`, C = α·Lᵀ·B: the bottom T−h rows need L's last T−h
///   rows only.
/// Three quarters of the arithmetic of a whole product; the skipped terms
/// are exact zeros. Below `minimum` rows, one whole product (two calls would
/// cost more than the quarter saves).
enum CausalProducts {
    enum Kind { case scores, lower, lowerTransposed }

    static let minimum = 32

    /// C (t, n) for `kind`: A is (t, k) for `.scores` (B (n = t, k)), else L (t, t) with ld t and B (t, n).
    @inline(__always)
    static func gemm(
        _ kind: Kind, t: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let transA = kind == .lowerTransposed, transB = kind == .scores
        guard t >= minimum else {
            BLAS.gemm(transA: transA, transB: transB, m: t, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: 0, c, ldc: ldc)
            return
        }
        let h = t / 2
        // (columns, depth, A's and B's offsets) of the top and the bottom rows of C.
        let top: (n: Int, k: Int), bottom: (k: Int, a: Int, b: Int)
        switch kind {
        case .scores: (top, bottom) = ((h, k), (k, h * lda, 0))
        case .lower: (top, bottom) = ((n, h), (k, h * lda, 0))
        case .lowerTransposed: (top, bottom) = ((n, k), (t - h, h * lda + h, h * ldb))
        }
        BLAS.gemm(transA: transA, transB: transB, m: h, n: top.n, k: top.k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: 0, c, ldc: ldc)
        BLAS.gemm(
            transA: transA, transB: transB, m: t - h, n: n, k: bottom.k, alpha: alpha, a + bottom.a, lda: lda, b + bottom.b, ldb: ldb,
            beta: 0, c + h * ldc, ldc: ldc)
    }
}
