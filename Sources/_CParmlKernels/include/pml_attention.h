/*
 * Private kernels of causal self-attention (CausalSelfAttention.swift): the
 * softmax over a row's visible keys and its backward, vectorised in 16 fixed
 * lanes, and a (sample, head) pair's whole attention (the same bits in every
 * clone, on every thread). Not public API: nothing here starts with parml_.
 */
#ifndef PML_ATTENTION_H
#define PML_ATTENTION_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Row i of s (rows, cols), the query at position offset + i: softmax over
 * keys j <= offset + i in place, exactly 0 beyond. e^x by the polynomial
 * of pml_vecmath.h (1.31 ulp at worst on [-87, 0]); the row's sum in 16
 * fixed lanes folded in halves. A NaN score makes its row NaN. */
void pml_causal_softmax(float *s, size_t rows, size_t cols, size_t offset);

/* The softmax's backward on a (t, t) causal block: with P the softmax's
 * output and dP the gradient at it (in ds), row i becomes
 * dS = P ⊙ (dP − Σ_{j<=i} dP·P) on j <= i and 0 beyond. */
void pml_causal_softmax_backward(const float *p, float *ds, size_t t);

/* One (sample, head) pair of causal attention, in place of its four
 * per-head matrix products and the softmax: q, k, v (t, hs) with row
 * stride ld (the head's columns of the fused projection). Forward: P (t, t)
 * = causal softmax of q·kᵀ·scale into p (0 above the diagonal); with a
 * dropout mask (t, t), P̃ = P ⊙ mask into pv (pv unused without); y (t, hs,
 * ld ldy) = P̃·v. Backward, with dy (t, hs, ld lddy) the gradient at y:
 * dv = P̃ᵀ·dy, dS = P ⊙ (dP − rowsum(dP ⊙ P)) with dP = (dy·vᵀ) ⊙ mask,
 * dq = dS·k·scale, dk = dSᵀ·q·scale (t, hs each, ld ldd; written, not
 * added); the backward takes p as pv when there is no mask. Every
 * element is one chain of fused multiply-adds over its terms in ascending
 * order: the same bits on every thread and clone. scratch:
 * pml_attention_scratch(t, hs) floats. */
size_t pml_attention_scratch(size_t t, size_t hs);
void pml_attention_forward(size_t t, size_t hs, float scale, const float *q, const float *k, const float *v, size_t ld,
                           float *p, float *pv, const float *mask, float *y, size_t ldy, float *scratch);
void pml_attention_backward(size_t t, size_t hs, float scale, const float *q, const float *k, const float *v, size_t ld,
                            const float *p, const float *pv, const float *mask, const float *dy, size_t lddy, float *dq,
                            float *dk, float *dv, size_t ldd, float *scratch);

#ifdef __cplusplus
}
#endif

#endif
