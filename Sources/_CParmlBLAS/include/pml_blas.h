/*
 * Private shim over OpenBLAS, loaded at run time with dlopen.
 *
 * Why dlopen: Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and
 * falls back to SSE3 kernels (6x slower). It reads OPENBLAS_CORETYPE only
 * while it is being loaded, so parml picks the kernel family from CPUID,
 * sets the variable (unless the user set it), then loads the library.
 * It loads with OPENBLAS_NUM_THREADS=1 (the host's value restored after):
 * parml calls OpenBLAS on one thread each, and the worker thread OpenBLAS
 * would start polls a core for its first few hundred milliseconds.
 * Not part of the public API: nothing here starts with parml_.
 */
#ifndef PML_BLAS_H
#define PML_BLAS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CBLAS enum values (cblas.h), fixed by the CBLAS standard. */
enum { PML_ROW_MAJOR = 101, PML_NO_TRANS = 111, PML_TRANS = 112 };

typedef void (*pml_sgemm_fn)(int order, int transA, int transB, int m, int n, int k,
                             float alpha, const float *a, int lda, const float *b, int ldb,
                             float beta, float *c, int ldc);
typedef void (*pml_sgemv_fn)(int order, int trans, int m, int n, float alpha,
                             const float *a, int lda, const float *x, int incx,
                             float beta, float *y, int incy);

extern pml_sgemm_fn pml_sgemm_ptr;
/* OpenBLAS's own cblas_sgemm, whatever wrapper pml_sgemm_ptr puts in front
 * of it (no recording, no skipping, no router): for a probe of its kernels'
 * arithmetic (BalancedRowCut.swift). */
extern pml_sgemm_fn pml_openblas_sgemm_ptr;
extern pml_sgemv_fn pml_sgemv_ptr;

/* Loads OpenBLAS once (thread-safe). Returns 0 on success; otherwise writes a
 * message into err (NUL-terminated, at most errlen bytes) and returns -1.
 * Later calls return the first outcome again. */
int pml_blas_load(char *err, size_t errlen);

/* Valid after a successful load. */
const char *pml_blas_core_name(void);     /* e.g. "SkylakeX" */
const char *pml_blas_config(void);        /* openblas_get_config() */
const char *pml_blas_coretype_source(void); /* "user", "parml" or "none" */
const char *pml_blas_library_path(void);
void pml_blas_set_threads(int n);
int pml_blas_get_threads(void);

/* The kernel family parml would pick for this CPU ("SkylakeX", "Haswell" or
 * NULL when OpenBLAS's own detection should decide). */
const char *pml_cpu_coretype(void);

/* pml_sgemm_ptr = wrap(pml_sgemm_ptr): puts a router in front of OpenBLAS's
 * sgemm (pml_dnnl_sgemm.h). Once, right after a successful load, before
 * any product runs. */
void pml_blas_wrap_sgemm(pml_sgemm_fn (*wrap)(pml_sgemm_fn));

/* A wrapper for when no router is in front of OpenBLAS (PARML_GEMM=openblas;
 * the router has the same switch, pml_dnnl_sgemm_skip_on_this_thread):
 * while the calling thread has pml_blas_skip_products_on_this_thread(1) in
 * force, every pml_sgemm it makes returns at once and leaves C as it was.
 * For a pass whose values nobody reads (the strategy advisor's probe of a
 * model's buffer sizes). Returns the previous setting, to restore. */
pml_sgemm_fn pml_blas_skippable(pml_sgemm_fn inner);
int pml_blas_skip_products_on_this_thread(int on);

/* One sgemm's arguments, as a benchmark records them (pml_gemm_record_start). */
typedef struct {
    int trans_a, trans_b, m, n, k, lda, ldb, ldc;
    float alpha, beta;
} pml_gemm_call;

/* Benchmarks only (a step's GEMM-only bound): until pml_gemm_record_stop,
 * every pml_sgemm appends its arguments to calls[0 ..< capacity], then runs.
 * Swaps pml_sgemm_ptr, so nothing costs anything while not recording; one
 * recording at a time, with no other thread calling sgemm meanwhile. Stop
 * returns how many calls were made (more than capacity: some were lost). */
void pml_gemm_record_start(pml_gemm_call *calls, size_t capacity);
size_t pml_gemm_record_stop(void);

static inline void pml_sgemm(int transA, int transB, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta,
                             float *c, int ldc) {
    pml_sgemm_ptr(PML_ROW_MAJOR, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static inline void pml_sgemm_openblas(int transA, int transB, int m, int n, int k, float alpha,
                                      const float *a, int lda, const float *b, int ldb, float beta,
                                      float *c, int ldc) {
    pml_openblas_sgemm_ptr(PML_ROW_MAJOR, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static inline void pml_sgemv(int trans, int m, int n, float alpha, const float *a, int lda,
                             const float *x, float beta, float *y) {
    pml_sgemv_ptr(PML_ROW_MAJOR, trans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}

#ifdef __cplusplus
}
#endif

#endif
