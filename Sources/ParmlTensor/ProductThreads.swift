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
/// product bit for bit; with its Haswell kernels only where it starts at a
/// multiple of 12 rows, which is why the cut is fixed, except that
/// `BalancedRowCut` moves a cut in two by rows along such a granule.) So
/// deterministic mode's layouts, whose ranks have different thread counts,
/// run the same products alike.
enum ProductThreads {
    /// m·n·k below which a product stays one sgemm: about 40 µs of work at
    /// this machine's ~100 GFLOP/s per core, against a hand-over of a few µs
    /// and one more packing of the shared operand per block.
    static let minimumVolume = 1 << 21

    /// Rows or columns a block holds a multiple of (OpenBLAS's SkylakeX and
    /// Haswell sgemm kernels work on 16 × 4 and 16 × 2 tiles).
    static let alignment = 16

    /// The machine's cores.
    static let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Blocks a large product is cut into: the machine's cores, at most 4
    /// (every thread count up to 4 gets whole blocks; more blocks would cost
    /// one-thread runs more packing).
    static let blocks = min(cores, 4)

    /// The blocks `gemm` cuts this product into (1: one sgemm, uncut).
    @inline(__always)
    static func blockCount(m: Int, n: Int, k: Int) -> Int { blockCount(m: m, n: n, k: k, blocks: blocks) }

    /// At most `blocks` blocks of at least `alignment` rows or columns each,
    /// for a product of `minimumVolume` or more (1: uncut).
    @inline(__always)
    static func blockCount(m: Int, n: Int, k: Int, blocks: Int) -> Int {
        guard m &* n &* k >= minimumVolume else { return 1 }
        return max(1, min(blocks, max(m, n) / alignment))
    }

    /// The blocks `gemm` runs for this product and the largest one's rows
    /// and columns of C (one block: the whole product, one sgemm).
    static func blockShape(m: Int, n: Int, k: Int) -> (count: Int, m: Int, n: Int) {
        let cut = ProductCut(m: m, n: n, parts: blockCount(m: m, n: n, k: k))
        guard cut.parts > 1 else { return (1, m, n) }
        let per = min(cut.extent, cut.per)
        return cut.byRows ? (cut.parts, per, n) : (cut.parts, m, per)
    }

    /// The same contract as `BLAS.gemm`, for `blockCount(...) > 1`.
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let product = GemmArguments(
            transA: transA, transB: transB, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, alpha: alpha, beta: beta, a: a, b: b, c: c)
        let cut = ProductCut(m: m, n: n, parts: blockCount(m: m, n: n, k: k))
        if BalancedRowCut.runs(cut) {  // two blocks of rows whose boundary moves without moving a bit
            BalancedRowCut.gemm(product)
            return
        }
        WorkerPool.run(parts: cut.parts, Blocks(cut: cut, product: product))
    }

    /// Part p: one block of C (`ProductCut.block`), a single-threaded sgemm.
    private struct Blocks: WorkerTask {
        let cut: ProductCut
        let product: GemmArguments

        func run(part p: Int) {
            let g = product
            guard let blk = cut.block(p, m: g.m, n: g.n, transA: g.transA, lda: g.lda, transB: g.transB, ldb: g.ldb, ldc: g.ldc)
            else { return }
            g.run(m: blk.m, n: blk.n, a: blk.a, b: blk.b, c: blk.c)
        }
    }
}

/// One product's arguments, `BLAS.gemm`'s contract, for the blocks the
/// pool's threads run of it.
struct GemmArguments {
    let transA, transB: Bool
    let m, n, k, lda, ldb, ldc: Int
    let alpha, beta: Float
    let a, b: UnsafePointer<Float>
    let c: UnsafeMutablePointer<Float>

    /// One sgemm on the calling thread: an m × n block of C whose op(A),
    /// op(B) and C start `a`, `b` and `c` elements in, over all of k.
    @inline(__always)
    func run(m: Int, n: Int, a offsetA: Int, b offsetB: Int, c offsetC: Int) {
        pml_sgemm(
            Int32(transA ? PML_TRANS : PML_NO_TRANS), Int32(transB ? PML_TRANS : PML_NO_TRANS), Int32(m), Int32(n), Int32(k), alpha,
            a + offsetA, Int32(lda), b + offsetB, Int32(ldb), beta, c + offsetC, Int32(ldc))
    }

    /// C's rows [lo, hi): row lo of op(A) is column lo of A when A is transposed.
    @inline(__always)
    func runRows(_ lo: Int, _ hi: Int) {
        run(m: hi - lo, n: n, a: transA ? lo : lo * lda, b: 0, c: lo * ldc)
    }
}

/// How a large product is cut into `parts` blocks (`ProductThreads.blockCount`):
/// rows of C when B is the smaller operand to pack again per block (n ≤ m)
/// or each block keeps `rowsPerBlock` rows, else its columns, in blocks of
/// a multiple of `ProductThreads.alignment`.
/// Only m or n is ever cut, never k: each entry of C is one block's sum,
/// over the whole of k. Shared by the float32 products and the bf16 ones
/// (BF16Products.swift).
struct ProductCut {
    let byRows: Bool
    /// m or n, whichever is cut.
    let extent: Int
    /// Rows (or columns) per block, the last block holding the rest.
    let per: Int
    let parts: Int

    /// Rows of C a block keeps at least for a cut by rows where n > m.
    static let rowsPerBlock = 128

    init(m: Int, n: Int, parts: Int) {
        // Rows also where each block keeps rowsPerBlock of them: a block of
        // columns times a transposed B (every forward x·Wᵀ) ran on OpenBLAS
        // then, a block of rows on oneDNN. The 784-1024-1024-10 MLP at batch
        // 512 on two threads: 0.87–0.90 → 0.93–0.94 of twice its products on
        // one thread, and 1.4–1.9 % faster on one thread (bench/RESULTS.md,
        // 2026-12-05 22:22–22:24). float32 column blocks now go through a
        // dense scratch on oneDNN (pml_dnnl_sgemm.h); bf16 ones still run on
        // oneDNN's gemm:jit, 1.15× slower at 128 × 512 over 1024.
        byRows = n <= m || m >= max(parts, 1) * ProductCut.rowsPerBlock
        extent = byRows ? m : n
        self.parts = max(parts, 1)
        let a = ProductThreads.alignment
        per = ((extent + self.parts - 1) / self.parts + a - 1) / a * a
    }

    /// Block p: rows (or columns) [p·per, (p+1)·per) of C, as its m × n and
    /// the element offsets of op(A), op(B) and C where it starts; nil when
    /// the block is empty.
    @inline(__always)
    func block(
        _ p: Int, m: Int, n: Int, transA: Bool, lda: Int, transB: Bool, ldb: Int, ldc: Int
    ) -> (m: Int, n: Int, a: Int, b: Int, c: Int)? {
        let lo = min(p * per, extent), hi = min(lo + per, extent)
        guard lo < hi else { return nil }
        // Row lo of op(A) is column lo of A when A is transposed; column lo
        // of op(B) is row lo of B when B is.
        return byRows
            ? (hi - lo, n, transA ? lo : lo * lda, 0, lo * ldc)
            : (m, hi - lo, 0, transB ? lo * ldb : lo, lo)
    }
}
