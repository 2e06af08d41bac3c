import _CParmlBLAS

#if canImport(Glibc)
import Glibc
#endif

/// Large products cut into blocks of rows or columns of C, run on
/// `WorkerPool`'s threads: each block is a single-threaded sgemm. OpenBLAS's
/// own threads stay at 1 (`BLAS.threads`).
///
/// Why the bits do not depend on the thread count: the cut depends on the
/// product's shape and the machine's core count only, never on the threads
/// a rank has; one thread runs the same blocks one after another. (With
/// OpenBLAS's SkylakeX kernels a block even equals that part of the whole
/// product bit for bit; with its Haswell kernels it does not, which is why
/// the cut is fixed.) So deterministic mode's layouts, whose ranks have
/// different thread counts, run the same products alike.
enum ProductThreads {
    /// m·n·k below which a product stays one sgemm: about 40 µs of work at
    /// this machine's ~100 GFLOP/s per core, against a hand-over of a few µs
    /// and one more packing of the shared operand per block.
    static let minimumVolume = 1 << 21

    /// Rows or columns a block holds a multiple of (OpenBLAS's SkylakeX and
    /// Haswell sgemm kernels work on 16 × 4 and 16 × 2 tiles).
    static let alignment = 16

    /// Blocks a large product is cut into: the machine's cores, at most 4
    /// (every thread count up to 4 gets whole blocks; more blocks would cost
    /// one-thread runs more packing).
    static let blocks = max(1, min(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 4))

    /// The blocks `gemm` cuts this product into (1: one sgemm, uncut).
    @inline(__always)
    static func blockCount(m: Int, n: Int, k: Int) -> Int {
        guard m &* n &* k >= minimumVolume else { return 1 }
        return max(1, min(blocks, max(m, n) / alignment))
    }

    /// The largest block `gemm` runs for this product: its rows and columns
    /// of C (the whole product when it stays one sgemm).
    static func largestBlock(m: Int, n: Int, k: Int) -> (m: Int, n: Int) {
        let parts = blockCount(m: m, n: n, k: k)
        guard parts > 1 else { return (m, n) }
        let byRows = n <= m
        let extent = byRows ? m : n
        let per = min(extent, ((extent + parts - 1) / parts + alignment - 1) / alignment * alignment)
        return byRows ? (per, n) : (m, per)
    }

    /// The same contract as `BLAS.gemm`, for `blockCount(...) > 1`. Cuts the
    /// rows of C when B is the smaller operand to pack again per block
    /// (n ≤ m), else the columns.
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let byRows = n <= m
        let extent = byRows ? m : n
        let parts = blockCount(m: m, n: n, k: k)
        let per = ((extent + parts - 1) / parts + alignment - 1) / alignment * alignment
        WorkerPool.run(
            parts: parts,
            Blocks(
                transA: transA, transB: transB, byRows: byRows, m: m, n: n, k: k, extent: extent, per: per, lda: lda, ldb: ldb, ldc: ldc,
                alpha: alpha, beta: beta, a: a, b: b, c: c))
    }

    /// Part p: rows (or columns) [p·per, (p+1)·per) of C.
    private struct Blocks: WorkerTask {
        let transA, transB, byRows: Bool
        let m, n, k, extent, per, lda, ldb, ldc: Int
        let alpha, beta: Float
        let a, b: UnsafePointer<Float>
        let c: UnsafeMutablePointer<Float>

        func run(part p: Int) {
            let lo = min(p * per, extent), hi = min(lo + per, extent)
            guard lo < hi else { return }
            let ta = Int32(transA ? PML_TRANS : PML_NO_TRANS), tb = Int32(transB ? PML_TRANS : PML_NO_TRANS)
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
