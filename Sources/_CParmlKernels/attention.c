// Causal self-attention's softmax kernels. See pml_attention.h.
#include "pml_attention.h"

#include <stdint.h>
#include <string.h>

// Identical rounding in every clone: no fused multiply-add contraction.
#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#include "pml_vecmath.h"

// A row's visible keys [0, n) are walked in whole 16-lane chunks up to
// `vec` (n rounded up to 16, within the row), the lanes past n masked off,
// then one at a time up to n: rows of a causal block are short (i + 1
// keys), so a scalar tail of up to 15 would cost as much as the chunks.
static inline __attribute__((always_inline)) size_t pml_vector_end(size_t n, size_t cols) {
    size_t v = (n + 15) / 16 * 16;
    return v <= cols ? v : cols / 16 * 16;
}

// The 16 lanes folded in halves (8, 4, 2, 1): a fixed order, so the same
// bits everywhere, in four vector steps rather than 16 dependent adds.
static inline __attribute__((always_inline)) float pml_fold_sum(float *acc) {
    for (size_t w = 8; w >= 1; w /= 2)
        for (size_t l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

static inline __attribute__((always_inline)) float pml_fold_max(float *acc) {
    for (size_t w = 8; w >= 1; w /= 2)
        for (size_t l = 0; l < w; l++) acc[l] = acc[l + w] > acc[l] ? acc[l + w] : acc[l];
    return acc[0];
}

// max over x[0..<n) (n >= 1); order-free, so lanes change no bit. A NaN
// other than x[0] is skipped, as a plain `x[j] > m` scan skips it.
static inline __attribute__((always_inline)) float pml_row_max(const float *restrict x, size_t n, size_t vec) {
    float acc[16];
    for (size_t l = 0; l < 16; l++) acc[l] = x[0];
    for (size_t j = 0; j < vec; j += 16)
        for (size_t l = 0; l < 16; l++) {
            float v = j + l < n ? x[j + l] : x[0];
            acc[l] = v > acc[l] ? v : acc[l];
        }
    float m = pml_fold_max(acc);
    for (size_t j = vec; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

// e^(x - m) for a row's scores x <= m: 0 below -87 (e^-87 < 2e-38 of a sum
// that is at least 1), NaN for NaN.
static inline __attribute__((always_inline)) float pml_shifted_exp(float x, float m) {
    float d = x - m;
    float c = d > -87.0f ? d : -87.0f; // NaN compares false: -87, then restored below
    float e = pml_exp_clamped(c);
    return d != d ? d : (d > -87.0f ? e : 0.0f);
}

PML_CLONES void pml_causal_softmax(float *restrict s, size_t rows, size_t cols, size_t offset) {
    for (size_t i = 0; i < rows; i++) {
        float *restrict row = s + i * cols;
        size_t n = offset + i + 1;
        if (n > cols) n = cols;
        const size_t vec = pml_vector_end(n, cols);
        const float m = pml_row_max(row, n, vec);
        float acc[16] = {0};
        for (size_t j = 0; j < vec; j += 16)
            for (size_t l = 0; l < 16; l++) {
                float e = j + l < n ? pml_shifted_exp(row[j + l], m) : 0.0f;
                row[j + l] = e;
                acc[l] += e;
            }
        float sum = pml_fold_sum(acc);
        for (size_t j = vec; j < n; j++) {
            float e = pml_shifted_exp(row[j], m);
            row[j] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
        const size_t end = vec > n ? vec : n;
        for (size_t j = 0; j < end; j++) row[j] *= inv;
        for (size_t j = end; j < cols; j++) row[j] = 0.0f;
    }
}

PML_CLONES void pml_causal_softmax_backward(const float *restrict p, float *restrict ds, size_t t) {
    for (size_t i = 0; i < t; i++) {
        const float *restrict pr = p + i * t;
        float *restrict dr = ds + i * t;
        const size_t n = i + 1, vec = pml_vector_end(n, t);
        float acc[16] = {0};
        for (size_t j = 0; j < vec; j += 16)
            for (size_t l = 0; l < 16; l++) acc[l] += j + l < n ? pr[j + l] * dr[j + l] : 0.0f;
        float dot = pml_fold_sum(acc);
        for (size_t j = vec; j < n; j++) dot += pr[j] * dr[j];
        for (size_t j = 0; j < vec; j += 16)
            for (size_t l = 0; l < 16; l++) dr[j + l] = j + l < n ? pr[j + l] * (dr[j + l] - dot) : 0.0f;
        for (size_t j = vec; j < n; j++) dr[j] = pr[j] * (dr[j] - dot);
        const size_t end = vec > n ? vec : n;
        for (size_t j = end; j < t; j++) dr[j] = 0.0f;
    }
}
