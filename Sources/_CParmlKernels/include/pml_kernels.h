/*
 * Private element-wise kernels: the loops around the matrix products
 * (activations, bias, reductions, optimizer updates).
 *
 * Why C: each function is compiled several times (AVX-512, AVX2, baseline
 * x86-64) with GCC/Clang target_clones and the loader picks the best one for
 * the running CPU; Swift cannot multiversion a function. Floating-point
 * contraction is off, so every version rounds exactly alike: results do not
 * depend on which one runs. Not public API: nothing here starts with parml_.
 *
 * Shape legend: n = element count; rows x cols matrices are row-major.
 */
#ifndef PML_KERNELS_H
#define PML_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = max(x[i], 0); NaN stays NaN */
void pml_relu_forward(const float *x, float *y, size_t n);
/* dx[i] = x[i] > 0 ? dy[i] : 0 */
void pml_relu_backward(const float *x, const float *dy, float *dx, size_t n);
// tanh, the logistic sigmoid and GELU in plain float arithmetic the compiler
// vectorises (libm's tanhf is a call per element): within 4 ulp of the
// exact values (KernelsTests), the same bits in every clone.
void pml_tanh_forward(const float *x, float *y, size_t n);
/* dx[i] = dy[i] * (1 - y[i]^2) */
void pml_tanh_backward(const float *y, const float *dy, float *dx, size_t n);
// Exact (erf) GELU and its derivative, likewise.
void pml_gelu_forward(const float *x, float *y, size_t n);
void pml_gelu_backward(const float *x, const float *dy, float *dx, size_t n);
/* Training's forward: y as pml_gelu_forward and d[i] the derivative at x[i]
 * (NaN for a NaN, 0 below -13), which pml_gelu_backward_cached multiplies
 * by dy: the backward pass then costs a product, not a second erf. The
 * same bits as pml_gelu_backward wherever d is not 0. */
void pml_gelu_forward_train(const float *x, float *y, float *d, size_t n);
/* dx[i] = d[i] == 0 ? 0 : dy[i] * d[i] */
void pml_gelu_backward_cached(const float *d, const float *dy, float *dx, size_t n);
void pml_sigmoid_forward(const float *x, float *y, size_t n);
/* dx[i] = dy[i] * y[i] * (1 - y[i]) */
void pml_sigmoid_backward(const float *y, const float *dy, float *dx, size_t n);

/* y[i] = a[i] + b[i] */
void pml_add(const float *a, const float *b, float *y, size_t n);
/* y[i] += b[i]. Use this, not pml_add(y, b, y): with y aliasing an input,
 * pml_add's vectoriser falls back to its scalar loop. */
void pml_add_inplace(float *y, const float *b, size_t n);
/* y[i] = a[i] * b[i] */
void pml_mul(const float *a, const float *b, float *y, size_t n);
/* x[i] *= s */
void pml_scale(float *x, float s, size_t n);

/* y (rows, cols) = broadcast of b (cols) */
void pml_broadcast_rows(const float *b, float *y, size_t rows, size_t cols);
/* y (rows, cols) += b (cols) on every row */
void pml_add_bias(float *y, const float *b, size_t rows, size_t cols);
/* db (cols) = beta * db + sum over rows of dy (rows, cols), on columns
 * lo..<hi only: each column sums its rows in order, so a cut into column
 * blocks changes no bit. */
void pml_sum_rows_columns(const float *dy, float *db, size_t rows, size_t cols, float beta, size_t lo, size_t hi);

/* Adds normal draws N(0, std²) to out[0..n) for elements first..first+n of
 * a Philox4x32-10 stream (key k0, k1; counter words 2 and 3 = s0, s1):
 * element e is Box–Muller of block e/4's words 2⌊(e mod 4)/2⌋ and +1
 * (cosine half for even e, sine half for odd), with the logarithm, sine
 * and cosine as polynomials (relative error below 1e-6) built from +, −,
 * ×, ÷ and sqrt only, so every clone gives the same bits. DP-SGD's noise. */
void pml_add_gaussian(float *out, size_t n, uint64_t first, uint32_t k0, uint32_t k1, uint32_t s0, uint32_t s1, float std);
/* Sum of squares in 16 fixed lanes combined in a fixed order: the same
 * result from every version of the function. */
float pml_sum_squares(const float *x, size_t n);
/* Layer normalisation over the rows of x (rows, cols): y = (x - m)·rs·γ + β
 * with m and rs = 1/sqrt(var + eps) written per row. Row sums run in 16
 * fixed lanes combined in order (as pml_sum_squares), so they vectorise
 * and give the same bits in every clone. */
void pml_layer_norm_forward(const float *x, const float *gamma, const float *beta, float eps, float *y, float *mean,
                            float *rstd, size_t rows, size_t cols);
/* Its backward: dx = rs·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂)), and dγ += dy·x̂,
 * dβ += dy over the rows (accumulated: micro-batches add up). */
void pml_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd, const float *gamma,
                             float *dx, float *dgamma, float *dbeta, size_t rows, size_t cols);
/* Batch normalisation over x (n, c, s): channel ch is the n·s values
 * x[i·c·s + ch·s + p]. Sums run in 16 fixed lanes per channel (a lane takes
 * the same plane offsets in every sample), combined in order, so a piece of
 * rows gives the same bits in every clone and every layout.
 * moments: sum[ch] = Σ x, m2[ch] = Σ (x − sum[ch]/(n·s))², both over the piece. */
void pml_batch_norm_moments(const float *x, size_t n, size_t c, size_t s, float *sum, float *m2);
/* y = x·scale[ch] + shift[ch] (training and evaluation: the caller folds
 * mean, 1/sqrt(var + eps), γ and β into the two) */
void pml_batch_norm_apply(const float *x, size_t n, size_t c, size_t s, const float *scale, const float *shift, float *y);
/* sum_dy[ch] = Σ dy, sum_dyx[ch] = Σ dy·(x − mean[ch]) over the piece */
void pml_batch_norm_grad_sums(const float *dy, const float *x, size_t n, size_t c, size_t s, const float *mean, float *sum_dy,
                              float *sum_dyx);
/* dx = a[ch]·(dy − mean_dy[ch] − (x − mean[ch])·b[ch]) */
void pml_batch_norm_input_grad(const float *dy, const float *x, size_t n, size_t c, size_t s, const float *mean, const float *a,
                               const float *mean_dy, const float *b, float *dx);
/* 16-bit gradient wire formats (format 1: bfloat16, 2: IEEE half), round to
 * nearest even. encode: out[i] = q(w[i]) and err[i] += w[i] − q(w[i]);
 * decode: w[i] = q⁻¹(in[i]), or w[i] += it when add is nonzero. */
void pml_wire_encode(int32_t format, const float *w, uint16_t *out, float *err, size_t n);
void pml_wire_decode(int32_t format, const uint16_t *in, float *w, int32_t add, size_t n);
/* 0 when every x[i] is finite, NaN when one is an infinity or a NaN */
float pml_nonfinite_probe(const float *x, size_t n);

/* SGD as torch.optim.SGD (dampening 0). buf may be NULL when momentum = 0.
 *   g' = g + wd*p; buf = mu*buf + g'; p -= lr * (nesterov ? g' + mu*buf : buf) */
void pml_sgd_update(float *p, const float *g, float *buf, size_t n, float lr, float mu, float wd, int nesterov);

/* SGD momentum whose gradient was already folded into buf (buf = mu*buf + g
 * computed by the backward pass): buf += wd*p (if wd != 0); p -= lr * buf. */
void pml_sgd_folded_update(float *p, float *buf, size_t n, float lr, float wd);

/* Adam / AdamW as torch.optim: l2 is added to the gradient (Adam),
 * shrink = 1 - lr*wd multiplies p first (AdamW; 1 for Adam).
 *   m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p = p*shrink - step * m / (sqrt(v)*rbc2 + eps) */
void pml_adam_update(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                     float step, float rbc2, float l2, float shrink);

/* pml_layer_norm_backward in two passes, for splitting over threads with the
 * same bits: dx for a block of rows; dgamma, dbeta += for columns c0..<c1
 * (every row, in order). */
void pml_layer_norm_backward_input(const float *dy, const float *x, const float *mean, const float *rstd,
                                   const float *gamma, float *dx, size_t rows, size_t cols);
void pml_layer_norm_backward_params(const float *dy, const float *x, const float *mean, const float *rstd,
                                    float *dgamma, float *dbeta, size_t rows, size_t cols, size_t c0, size_t c1);

#ifdef __cplusplus
}
#endif

/* The image kernels (convolution, pooling). Included from here too so that a
 * build whose module cache predates pml_image.h sees this header change and
 * rebuilds the module, rather than missing the new declarations. */
#include "pml_image.h"

#endif
