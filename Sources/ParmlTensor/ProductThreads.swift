import _CParmlBLAS

/// Large products split across `WorkerPool`'s threads: each thread runs
/// single-threaded sgemm on its block of rows or columns of C. OpenBLAS's own
/// threads stay at 1 (`BLAS.threads`).
///
/// Why the bits do not change: a block of C is the same sum over k as in the
/// whole product, in the same order (OpenBLAS's k-blocking depends on k
/// alone), so a split product equals the unsplit one bit for bit
/// (BLASTests.testSplitProductsMatchWholeProducts checks this OpenBLAS). That
/// keeps deterministic mode's layouts bit-identical whatever threads each
/// rank has.
enum ProductThreads {
    /// m·n·k below which a product stays on one thread: about 40 µs of work at
    /// this machine's ~100 GFLOP/s per core, against a hand-over of a few µs
    /// and one more packing of the shared operand (bench/RESULTS.md, "both
    /// cores on every product").
    static let minimumVolume = 1 << 21

    /// Rows or columns a block holds a multiple of (OpenBLAS's SkylakeX and
    /// Haswell sgemm kernels work on 16 × 4 and 16 × 2 tiles).
    static let alignment = 16

    /// Whether `gemm` splits this product (the pool has threads, the product is large).
    @inline(__always)
    static func splits(m: Int, n: Int, k: Int) -> Bool {
        m &* n &* k >= minimumVolume && WorkerPool.threads > 1 && max(m, n) >= 2 * alignment
    }

    /// The same contract as `BLAS.gemm`. Splits the rows of C when B is the
    /// smaller operand to pack again per block (n ≤ m), else the columns.
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let ta = Int32(transA ? PML_TRANS : PML_NO_TRANS), tb = Int32(transB ? PML_TRANS : PML_NO_TRANS)
        let byRows = n <= m
        let extent = byRows ? m : n
        let parts = min(WorkerPool.threads, extent / alignment)
        let per = ((extent + parts - 1) / parts + alignment - 1) / alignment * alignment
        WorkerPool.run(parts: parts) { p in
            let lo = min(p * per, extent), hi = min(lo + per, extent)
            guard lo < hi else { return }
            if byRows {
                let ap = transA ? a + lo : a + lo * lda
                pml_sgemm(ta, tb, Int32(hi - lo), Int32(n), Int32(k), alpha, ap, Int32(lda), b, Int32(ldb), beta, c + lo * ldc, Int32(ldc))
            } else {
                let bp = transB ? b + lo * ldb : b + lo
                pml_sgemm(ta, tb, Int32(m), Int32(hi - lo), Int32(k), alpha, a, Int32(lda), bp, Int32(ldb), beta, c + lo, Int32(ldc))
            }
        }
    }
}
