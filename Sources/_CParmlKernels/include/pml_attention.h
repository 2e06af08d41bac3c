/*
 * Private kernels of causal self-attention (CausalSelfAttention.swift): the
 * softmax over a row's visible keys and its backward, vectorised in 16 fixed
 * lanes (the same bits in every clone, on every thread). Not public API:
 * nothing here starts with parml_.
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

#ifdef __cplusplus
}
#endif

#endif
