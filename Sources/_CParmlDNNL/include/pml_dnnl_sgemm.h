/*
 * Private shim: the large float32 products on oneDNN's matmul primitive.
 *
 * Why: on the transformer's projection shapes (768 x 128..512 x 128..768)
 * oneDNN's brgemm matmul runs 2-13 % faster than OpenBLAS 0.3.21's SkylakeX
 * sgemm on one Zen4 core (bench/RESULTS.md, 2026-12-05); on small products
 * (attention's 32 x 32 x 32 blocks) it is 1.4-2x slower, so only products
 * of at least PML_DNNL_SGEMM_MIN_VOLUME multiply-adds, n and k at least
 * PML_DNNL_SGEMM_MIN_SIDE, with alpha = 1, go to oneDNN. A block of C's
 * columns (ldc > n) times a transposed B of more than
 * PML_DNNL_SGEMM_STRIDED_NT_ROWS rows (every forward x.W^T of fewer than
 * 256 rows, which ProductThreads cuts by columns) runs into a contiguous
 * scratch of the calling thread and is copied out: oneDNN 2.6 runs it on
 * gemm:jit with C strided, at the speed of OpenBLAS's transposed-B path,
 * and on brgemm with C contiguous (one Zen4 core, 16 x 512 over 1024 with
 * C at stride 1024: OpenBLAS 479 us, gemm:jit 477, brgemm 201; 128 rows:
 * 1636, 1509, 1224). Up to that many rows gemm:jit is the faster of the two.
 * The scratch, the largest such block the thread has met, grows once and
 * stays with the thread's plan cache.
 * Products of fewer rows than PML_DNNL_SGEMM_MIN_SIDE (a small batch, a
 * micro-batch, a data rank's share) go to oneDNN under the same floor when
 * A is not transposed: OpenBLAS 0.3.21 runs x.W^T of few rows on its
 * packed path at a fraction of its other rate (4 x 512 x 1024 with C at
 * stride 1024 in 353 us, oneDNN's gemm:jit 66 us), and dy.W of few rows
 * 1.6-2.6x slower than oneDNN (4 and 16 rows x 512 x 1024). A transposed
 * A (dy^T.x, whose k is the rows) stays on OpenBLAS: oneDNN ran 512 x 1024
 * over 4 rows 2.3x slower.
 *
 * pml_dnnl_sgemm_route(openblas) returns an sgemm with cblas_sgemm's
 * signature that runs such products on oneDNN and every other one, or any
 * whose plan oneDNN refuses, on `openblas`. oneDNN loads on the first large
 * product; where it cannot load, every product goes to `openblas`. parml
 * installs it on CPUs with AVX-512 unless PARML_GEMM=openblas, and elsewhere
 * only with PARML_GEMM=onednn (BLAS.largeProductsOnOneDNN). It allocates where
 * OpenBLAS does not: oneDNN 2.x's execute builds a map of its arguments on
 * every call (about 9 allocations and frees per product, as for
 * convolutions: docs/cnn.md "Allocations"), and a thread makes its plan
 * for a shape the first time it meets it, so with several threads per rank
 * a thread can meet one of a product's block shapes first after the warm-up
 * (at most once per thread and shape).
 *
 * Plans: one per shape (trans, m, n, k, leading dimensions, beta), made on
 * one OpenMP thread the first time the calling thread meets the shape, kept
 * in that thread's cache of 64 (when the thread ends, the next new thread
 * takes the cache over: nothing of oneDNN runs at thread exit). One thread per plan
 * keeps the bits independent of the thread count: ProductThreads cuts large
 * products into blocks the same way for any count, and each block is one
 * single-threaded product. The bits depend on the shape only, never on
 * which thread or cache slot runs it.
 *
 * Not part of the public API: nothing here starts with parml_.
 */
#ifndef PML_DNNL_SGEMM_H
#define PML_DNNL_SGEMM_H

#ifdef __cplusplus
extern "C" {
#endif

/* cblas_sgemm's signature (CBLAS enum values for order and trans). */
typedef void (*pml_dnnl_sgemm_fn)(int order, int transA, int transB, int m, int n, int k, float alpha,
                                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

enum { PML_DNNL_SGEMM_MIN_VOLUME = 1 << 20, PML_DNNL_SGEMM_MIN_SIDE = 32, PML_DNNL_SGEMM_STRIDED_NT_ROWS = 12 };

/* The routing sgemm over `openblas` (kept for every product oneDNN does
 * not take). Call once, before products run; a second call replaces the
 * fallback. */
pml_dnnl_sgemm_fn pml_dnnl_sgemm_route(pml_dnnl_sgemm_fn openblas);

/* C = op(A) op(B) + beta C on oneDNN's matmul (one thread, the calling
 * thread's plan for the shape), whatever the size; transA, transB are
 * CBLAS values (112: transposed). 0, or -1 with C untouched when oneDNN
 * does not load or refuses the shape. */
int pml_dnnl_sgemm_run(int transA, int transB, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                       float beta, float *c, int ldc);
/* 1: this thread's products all go to OpenBLAS (shapes seen once, for which
 * oneDNN would compile a plan that never runs again); 0: routed again. Returns the setting before. */
int pml_dnnl_sgemm_bypass_on_this_thread(int on);
/* 1: every product this thread makes through the router returns at once,
 * C as it was (BLAS.skippingProducts); 0: computed again. Returns the
 * setting before. Read with the bypass in one thread-local word. */
int pml_dnnl_sgemm_skip_on_this_thread(int on);

/* Whether a row-major product of this shape and C row stride goes to
 * oneDNN (given that it loads); transA, transB are CBLAS values. */
int pml_dnnl_sgemm_takes(int transA, int transB, int m, int n, int k, int ldc, float alpha);

/* Large products run by oneDNN and by the fallback, process-wide (relaxed counters). */
void pml_dnnl_sgemm_counts(unsigned long long *onednn, unsigned long long *fallback);

#ifdef __cplusplus
}
#endif

#endif
