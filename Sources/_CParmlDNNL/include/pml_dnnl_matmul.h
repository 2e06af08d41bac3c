/*
 * Private shim: matrix products on oneDNN's matmul primitive (loaded with
 * pml_dnnl_load, see pml_dnnl.h): bf16 operands for parml's bf16 mixed
 * precision (docs/precision.md), or float32 ones for the large float32
 * products (pml_dnnl_sgemm.h). bf16 operands are the upper 16 bits of an
 * IEEE float32; products accumulate and land in float32. One plan per shape,
 * made once; a call re-points memory objects at the caller's arrays and
 * allocates nothing. A plan is used by one thread at a time. Not part of
 * the public API: nothing here starts with parml_.
 */
#ifndef PML_DNNL_MATMUL_H
#define PML_DNNL_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* C (m x n, float32, row stride ldc) = beta * C + op(A) * op(B), as sgemm
 * with row-major arrays: op(A) is m x k (A is k x m, row stride lda, when
 * trans_a), op(B) is k x n (B is n x k when trans_b). A and B are bf16. */
typedef struct {
    int64_t m, n, k, lda, ldb, ldc;
    int32_t trans_a, trans_b;
    float beta; /* 0 overwrites C; otherwise a fixed sum post-op of the plan */
    int32_t threads; /* OpenMP threads the plan runs on (oneDNN sizes its split by it) */
    int32_t f32;     /* nonzero: A and B are float32 (pml_matmul_run_f32), else bf16 */
    int32_t bias;    /* nonzero: a float32 row of n values is added to every row of
                      * op(A)·op(B) in the kernel (pml_matmul_run_bias); beta must be 0 */
} pml_matmul_shape;

typedef struct pml_matmul_plan pml_matmul_plan;

/* After a successful pml_dnnl_load. NULL with a message in err when oneDNN
 * has no matmul of these types for this CPU or shape, or memory runs out. */
pml_matmul_plan *pml_matmul_plan_create(const pml_matmul_shape *s, char *err, size_t errlen);
void pml_matmul_plan_free(pml_matmul_plan *p); /* NULL: no-op */
/* oneDNN's implementation name (static storage of the plan), e.g. "brg:avx512_core_bf16". */
const char *pml_matmul_plan_impl(const pml_matmul_plan *p);
/* Runs the product; returns 0 or a oneDNN status. bf16 plans: */
int pml_matmul_run(pml_matmul_plan *p, const uint16_t *a, const uint16_t *b, float *c);
/* bf16 plans made with bias set: C = op(A)·op(B) + bias (bias: n floats). */
int pml_matmul_run_bias(pml_matmul_plan *p, const uint16_t *a, const uint16_t *b, const float *bias, float *c);
/* float32 plans (made with f32 set): */
int pml_matmul_run_f32(pml_matmul_plan *p, const float *a, const float *b, float *c);

/* y[i] = x[i] rounded to bfloat16, to nearest even (NaN stays NaN). Uses
 * the CPU's conversion instruction where it has one (which flushes
 * float32 subnormals to zero, as oneDNN's own conversions do). */
void pml_bf16_round(const float *x, uint16_t *y, size_t n);
/* 1, 2, 3, ...: a process-wide counter, thread-safe (step serials). */
uint64_t pml_bf16_next_serial(void);
/* 1 when the CPU has the AVX512-BF16 instructions (dot products and conversion). */
int pml_cpu_has_avx512_bf16(void);

#ifdef __cplusplus
}
#endif

#endif
