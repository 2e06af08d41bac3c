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

#define PML_AI static inline __attribute__((always_inline))

typedef float pml_v16 __attribute__((vector_size(64)));
// The helpers below pass vectors by value but are always inlined: no call
// crosses the ABI that the warning is about.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#endif

PML_AI pml_v16 pml_load16(const float *p) {
    pml_v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

PML_AI void pml_store16(float *p, pml_v16 v) { memcpy(p, &v, sizeof v); }

// acc + a·b, one rounding per lane (fmaf's bits, on every target).
PML_AI pml_v16 pml_fma16(float a, pml_v16 b, pml_v16 acc) {
    pml_v16 s = {a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a};
#if defined(__has_builtin) && __has_builtin(__builtin_elementwise_fma)
    return __builtin_elementwise_fma(s, b, acc);
#else
    for (int l = 0; l < 16; l++) acc[l] = __builtin_fmaf(s[l], b[l], acc[l]);
    return acc;
#endif
}

typedef int32_t pml_i16 __attribute__((vector_size(64)));

// x with the lanes at or past n (lane l is element j + l) set to +0.
PML_AI pml_v16 pml_keep_below(pml_v16 x, size_t j, size_t n) {
    const pml_i16 lanes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    pml_i16 inside = lanes + (int32_t)j < (int32_t)n;
    return (pml_v16)((pml_i16)x & inside);
}


// A row's visible keys [0, n) are walked in whole 16-lane chunks up to
// `vec` (n rounded up to 16, within the row), the lanes past n masked off,
// then one at a time up to n: rows of a causal block are short (i + 1
// keys), so a scalar tail of up to 15 would cost as much as the chunks.
PML_AI size_t pml_vector_end(size_t n, size_t cols) {
    size_t v = (n + 15) / 16 * 16;
    return v <= cols ? v : cols / 16 * 16;
}

// The 16 lanes folded in halves (8, 4, 2, 1): a fixed order, so the same
// bits everywhere, in four vector steps rather than 16 dependent adds.
PML_AI float pml_fold_sum(float *acc) {
    for (size_t w = 8; w >= 1; w /= 2)
        for (size_t l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

PML_AI float pml_fold_max(float *acc) {
    for (size_t w = 8; w >= 1; w /= 2)
        for (size_t l = 0; l < w; l++) acc[l] = acc[l + w] > acc[l] ? acc[l + w] : acc[l];
    return acc[0];
}

// max over x[0..<n) (n >= 1); order-free, so lanes change no bit. A NaN
// other than x[0] is skipped, as a plain `x[j] > m` scan skips it. The
// masked lanes (within the row: vec <= cols) are loaded and then replaced,
// so that the loop is plain loads and blends rather than gathers.
PML_AI float pml_row_max(const float *restrict x, size_t n, size_t vec) {
    float acc[16];
    const float x0 = x[0];
    for (size_t l = 0; l < 16; l++) acc[l] = x0;
    for (size_t j = 0; j < vec; j += 16)
        for (size_t l = 0; l < 16; l++) {
            float xv = x[j + l];
            float v = j + l < n ? xv : x0;
            acc[l] = v > acc[l] ? v : acc[l];
        }
    float m = pml_fold_max(acc);
    for (size_t j = vec; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

// e^(x - m) for a row's scores x <= m: 0 below -87 (e^-87 < 2e-38 of a sum
// that is at least 1), NaN for NaN.
PML_AI float pml_shifted_exp(float x, float m) {
    float d = x - m;
    float c = d > -87.0f ? d : -87.0f; // NaN compares false: -87, then restored below
    float e = pml_exp_clamped(c);
    return d != d ? d : (d > -87.0f ? e : 0.0f);
}

// Rows [0, rows) of s (ld cols), the first the query at position offset:
// the softmax of pml_causal_softmax.
PML_AI void pml_softmax_rows(float *restrict s, size_t rows, size_t cols, size_t offset) {
    for (size_t i = 0; i < rows; i++) {
        float *restrict row = s + i * cols;
        size_t n = offset + i + 1;
        if (n > cols) n = cols;
        const size_t vec = pml_vector_end(n, cols);
        const float m = pml_row_max(row, n, vec);
        float acc[16] = {0};
        for (size_t j = 0; j < vec; j += 16)
            for (size_t l = 0; l < 16; l++) {
                float e = pml_shifted_exp(row[j + l], m); // masked lanes: computed, then dropped
                e = j + l < n ? e : 0.0f;
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
        for (size_t j = 0; j < vec; j += 16) pml_store16(row + j, pml_load16(row + j) * inv);
        for (size_t j = vec; j < end; j++) row[j] *= inv;
        for (size_t j = end; j < cols; j++) row[j] = 0.0f;
    }
}

PML_CLONES void pml_causal_softmax(float *restrict s, size_t rows, size_t cols, size_t offset) {
    pml_softmax_rows(s, rows, cols, offset);
}

// Rows [first, first + rows) of a (t, t) causal block (p and ds point at
// row 0): the softmax's backward of pml_causal_softmax_backward.
PML_AI void pml_softmax_backward_rows(const float *restrict p, float *restrict ds, size_t first, size_t rows,
                                      size_t t) {
    for (size_t i = first; i < first + rows; i++) {
        const float *restrict pr = p + i * t;
        float *restrict dr = ds + i * t;
        const size_t n = i + 1, vec = pml_vector_end(n, t);
        // Whole vectors with the lanes past n masked (written out: the
        // compiler otherwise turns these loops into gathers).
        pml_v16 sum = {0};
        for (size_t j = 0; j < vec; j += 16)
            sum += pml_keep_below(pml_load16(pr + j) * pml_load16(dr + j), j, n);
        float acc[16];
        memcpy(acc, &sum, sizeof acc);
        float dot = pml_fold_sum(acc);
        for (size_t j = vec; j < n; j++) dot += pr[j] * dr[j];
        for (size_t j = 0; j < vec; j += 16)
            pml_store16(dr + j, pml_keep_below(pml_load16(pr + j) * (pml_load16(dr + j) - dot), j, n));
        for (size_t j = vec; j < n; j++) dr[j] = pr[j] * (dr[j] - dot);
        const size_t end = vec > n ? vec : n;
        for (size_t j = end; j < t; j++) dr[j] = 0.0f;
    }
}

PML_CLONES void pml_causal_softmax_backward(const float *restrict p, float *restrict ds, size_t t) {
    pml_softmax_backward_rows(p, ds, 0, t, t);
}

// ---------------------------------------------------------------------------
// One (sample, head) pair's attention, forward and backward, on the strided
// q, k, v columns of the fused projection (pml_attention.h). Every output
// element is one chain of fused multiply-adds in a fixed order (its terms in
// ascending index), so the bits do not depend on the clone, the thread or
// how pairs are split; products over the causal triangle only.

// Rows r < R of out (ld ldo) = α · acc[r · stride + v], v < NV, the first n
// columns: whole vectors when n fills them, else through a tile (the
// output's row may end within the last vector).
PML_AI void pml_store_rows(size_t R, size_t NV, const pml_v16 *acc, size_t stride, float alpha, size_t n,
                           float *restrict out, size_t ldo) {
    for (size_t r = 0; r < R; r++) {
        if (n == 16 * NV) {
            for (size_t v = 0; v < NV; v++) pml_store16(out + r * ldo + 16 * v, acc[r * stride + v] * alpha);
        } else {
            float tile[64];
            for (size_t v = 0; v < NV; v++) pml_store16(tile + 16 * v, acc[r * stride + v] * alpha);
            for (size_t e = 0; e < n; e++) out[r * ldo + e] = tile[e];
        }
    }
}

static size_t pml_round16(size_t n) { return (n + 15) / 16 * 16; }

size_t pml_attention_scratch(size_t t, size_t hs) {
    // ds (t, t), a transposed operand (hs, t16) and two padded ones (t, hs16).
    return t * t + hs * pml_round16(t) + 2 * t * pml_round16(hs);
}

// bt (hs, ldt) = bᵀ for b (t, hs) with ld ldb; columns [t, ldt) zero.
PML_AI void pml_transpose_padded(const float *restrict b, size_t ldb, size_t t, size_t hs, float *restrict bt,
                                 size_t ldt) {
    for (size_t e = 0; e < hs; e++) {
        float *restrict row = bt + e * ldt;
        for (size_t j = 0; j < t; j++) row[j] = b[j * ldb + e];
        for (size_t j = t; j < ldt; j++) row[j] = 0.0f;
    }
}

// A (t, hs) operand read in whole 16-lane vectors: itself when hs is a
// multiple of 16, else a copy in `pad` (ld hs16) with zero columns after hs.
PML_AI const float *pml_padded(const float *b, size_t ldb, size_t t, size_t hs, float *restrict pad, size_t *ld) {
    size_t hs16 = pml_round16(hs);
    if (hs16 == hs) {
        *ld = ldb;
        return b;
    }
    for (size_t j = 0; j < t; j++) {
        memcpy(pad + j * hs16, b + j * ldb, hs * sizeof(float));
        for (size_t e = hs; e < hs16; e++) pad[j * hs16 + e] = 0.0f;
    }
    *ld = hs16;
    return pad;
}

// out row i0 + r (ld ldo) = α · Σ_e a[i0 + r][e] · bt[e][0, ncols), for
// r < R, ncols a multiple of 16 within bt's ld and the first `keep`
// columns stored. Scores q·kᵀ (and dy·vᵀ): the causal triangle's rows of a
// block end at ncols, the rest is never read.
PML_AI void pml_rows_by_transposed_block(size_t R, size_t NV, const float *restrict a, size_t lda, size_t hs,
                                         const float *restrict bt, size_t ldt, size_t n, float alpha,
                                         float *restrict out, size_t ldo) {
    pml_v16 acc[4][4];
    for (size_t r = 0; r < 4; r++)
        for (size_t v = 0; v < 4; v++) acc[r][v] = (pml_v16){0};
    for (size_t e = 0; e < hs; e++) {
        const float *restrict br = bt + e * ldt;
        for (size_t v = 0; v < NV; v++) {
            pml_v16 b = pml_load16(br + 16 * v);
            for (size_t r = 0; r < R; r++) acc[r][v] = pml_fma16(a[r * lda + e], b, acc[r][v]);
        }
    }
    pml_store_rows(R, NV, &acc[0][0], 4, alpha, n, out, ldo);
}

// R and the vector count are constants in each block's code, so that the
// accumulators stay in registers.
PML_AI void pml_rows_by_transposed(size_t R, const float *restrict a, size_t lda, size_t hs, const float *restrict bt,
                                   size_t ldt, size_t ncols, size_t keep, float alpha, float *restrict out, size_t ldo) {
    for (size_t j0 = 0; j0 < keep; j0 += 64) {
        const size_t nv = (ncols - j0) / 16, n = keep - j0 < 64 ? keep - j0 : 64;
        const float *b = bt + j0;
        float *o = out + j0;
        switch (nv) {
        case 1: pml_rows_by_transposed_block(R, 1, a, lda, hs, b, ldt, n, alpha, o, ldo); break;
        case 2: pml_rows_by_transposed_block(R, 2, a, lda, hs, b, ldt, n, alpha, o, ldo); break;
        case 3: pml_rows_by_transposed_block(R, 3, a, lda, hs, b, ldt, n, alpha, o, ldo); break;
        default: pml_rows_by_transposed_block(R, 4, a, lda, hs, b, ldt, n, alpha, o, ldo); break;
        }
    }
}

// out row i (ld ldo, hs columns) = α · Σ_{j ≤ i} c[i][j] · b[j] for rows
// i = i0..i0 + R − 1 (c and out point at row i0, b at row 0, ld ldb, read
// in 16-lane vectors up to hs16): P·V, dS·K. One chunk of NV vectors.
PML_AI void pml_lower_chunk(size_t R, size_t NV, size_t i0, const float *restrict c, size_t ldc,
                            const float *restrict b, size_t ldb, size_t n, float alpha, float *restrict out,
                            size_t ldo) {
    pml_v16 acc[4][2];
    for (size_t r = 0; r < 4; r++) acc[r][0] = acc[r][1] = (pml_v16){0};
    for (size_t j = 0; j <= i0; j++) {
        const float *restrict br = b + j * ldb;
        for (size_t v = 0; v < NV; v++) {
            pml_v16 bv = pml_load16(br + 16 * v);
            for (size_t r = 0; r < R; r++) acc[r][v] = pml_fma16(c[r * ldc + j], bv, acc[r][v]);
        }
    }
    // The triangle's tip: row r also takes j = i0 + 1 .. i0 + r.
    for (size_t j = i0 + 1; j < i0 + R; j++) {
        const float *restrict br = b + j * ldb;
        for (size_t v = 0; v < NV; v++) {
            pml_v16 bv = pml_load16(br + 16 * v);
            for (size_t r = 0; r < R; r++)
                if (r >= j - i0) acc[r][v] = pml_fma16(c[r * ldc + j], bv, acc[r][v]);
        }
    }
    pml_store_rows(R, NV, &acc[0][0], 2, alpha, n, out, ldo);
}

PML_AI void pml_lower_rows(size_t R, size_t i0, const float *restrict c, size_t ldc, const float *restrict b,
                           size_t ldb, size_t hs, float alpha, float *restrict out, size_t ldo) {
    for (size_t e0 = 0; e0 < hs; e0 += 32) {
        const size_t n = hs - e0 < 32 ? hs - e0 : 32;
        if (n > 16) pml_lower_chunk(R, 2, i0, c, ldc, b + e0, ldb, n, alpha, out + e0, ldo);
        else pml_lower_chunk(R, 1, i0, c, ldc, b + e0, ldb, n, alpha, out + e0, ldo);
    }
}

// out row j (ld ldo, hs columns) = α · Σ_{i ≥ j} c[i][j] · b[i] for
// j = j0..j0 + J − 1 (c (t, t) and b at row 0, out at row j0): Pᵀ·dy, dSᵀ·q.
PML_AI void pml_upper_chunk(size_t J, size_t NV, size_t j0, size_t t, const float *restrict c, size_t ldc,
                            const float *restrict b, size_t ldb, size_t n, float alpha, float *restrict out,
                            size_t ldo) {
    pml_v16 acc[4][2];
    for (size_t r = 0; r < 4; r++) acc[r][0] = acc[r][1] = (pml_v16){0};
    // The triangle's tip: column r takes i = j0 + r .. j0 + J − 2 here.
    for (size_t i = j0; i + 1 < j0 + J; i++) {
        const float *restrict br = b + i * ldb;
        for (size_t v = 0; v < NV; v++) {
            pml_v16 bv = pml_load16(br + 16 * v);
            for (size_t r = 0; r < J; r++)
                if (r <= i - j0) acc[r][v] = pml_fma16(c[i * ldc + j0 + r], bv, acc[r][v]);
        }
    }
    for (size_t i = j0 + J - 1; i < t; i++) {
        const float *restrict br = b + i * ldb;
        for (size_t v = 0; v < NV; v++) {
            pml_v16 bv = pml_load16(br + 16 * v);
            for (size_t r = 0; r < J; r++) acc[r][v] = pml_fma16(c[i * ldc + j0 + r], bv, acc[r][v]);
        }
    }
    pml_store_rows(J, NV, &acc[0][0], 2, alpha, n, out, ldo);
}

PML_AI void pml_upper_rows(size_t J, size_t j0, size_t t, const float *restrict c, size_t ldc,
                           const float *restrict b, size_t ldb, size_t hs, float alpha, float *restrict out,
                           size_t ldo) {
    for (size_t e0 = 0; e0 < hs; e0 += 32) {
        const size_t n = hs - e0 < 32 ? hs - e0 : 32;
        if (n > 16) pml_upper_chunk(J, 2, j0, t, c, ldc, b + e0, ldb, n, alpha, out + e0, ldo);
        else pml_upper_chunk(J, 1, j0, t, c, ldc, b + e0, ldb, n, alpha, out + e0, ldo);
    }
}

// Rows are taken 4 at a time: 4 rows share their 16-column end (4 | 16),
// and 4 × 4 accumulators fill AVX-512's registers in the scores. A last
// block of fewer rows goes one row at a time (the counts stay constants).
#define PML_ROW_BLOCK 4

// Scores rows i0..i0 + R − 1 of a (rows of a, ld lda) by bt: out (ld t),
// the causal triangle's columns of the block (the rest is never read).
PML_AI void pml_scores_block(size_t R, size_t i0, size_t t, const float *restrict a, size_t lda, size_t hs,
                             const float *restrict bt, float alpha, float *restrict out) {
    const size_t t16 = pml_round16(t), ncols = pml_vector_end(i0 + R, t16), keep = ncols < t ? ncols : t;
    if (R == PML_ROW_BLOCK)
        pml_rows_by_transposed(PML_ROW_BLOCK, a, lda, hs, bt, t16, ncols, keep, alpha, out, t);
    else
        for (size_t r = 0; r < R; r++)
            pml_rows_by_transposed(1, a + r * lda, lda, hs, bt, t16, ncols, keep, alpha, out + r * t, t);
}

PML_AI void pml_lower_block(size_t R, size_t i0, const float *restrict c, size_t t, const float *restrict b,
                            size_t ldb, size_t hs, float alpha, float *restrict out, size_t ldo) {
    if (R == PML_ROW_BLOCK)
        pml_lower_rows(PML_ROW_BLOCK, i0, c, t, b, ldb, hs, alpha, out, ldo);
    else
        for (size_t r = 0; r < R; r++) pml_lower_rows(1, i0 + r, c + r * t, t, b, ldb, hs, alpha, out + r * ldo, ldo);
}

PML_AI void pml_upper_block(size_t J, size_t j0, size_t t, const float *restrict c, const float *restrict b,
                            size_t ldb, size_t hs, float alpha, float *restrict out, size_t ldo) {
    if (J == PML_ROW_BLOCK)
        pml_upper_rows(PML_ROW_BLOCK, j0, t, c, t, b, ldb, hs, alpha, out, ldo);
    else
        for (size_t r = 0; r < J; r++) pml_upper_rows(1, j0 + r, t, c, t, b, ldb, hs, alpha, out + r * ldo, ldo);
}

// Each phase is its own loop over the row blocks, and the softmax is the
// exported (cloned) function: inlined into the products' loops, its
// e^x constants stayed in registers there and pushed an accumulator to the
// stack, which lengthened the FMA chain by a store and a load.
PML_FMA_CLONES void pml_attention_forward(size_t t, size_t hs, float scale, const float *q, const float *k,
                                          const float *v, size_t ld, float *p, float *pv, const float *mask,
                                          float *y, size_t ldy, float *scratch) {
    float *kt = scratch + t * t, *pad = kt + hs * pml_round16(t);
    pml_transpose_padded(k, ld, t, hs, kt, pml_round16(t));
    size_t ldv;
    const float *vp = pml_padded(v, ld, t, hs, pad, &ldv);
    for (size_t i0 = 0; i0 < t; i0 += PML_ROW_BLOCK) {
        const size_t R = t - i0 < PML_ROW_BLOCK ? t - i0 : PML_ROW_BLOCK;
        pml_scores_block(R, i0, t, q + i0 * ld, ld, hs, kt, scale, p + i0 * t);
    }
    pml_causal_softmax(p, t, t, 0);
    const float *c = p;
    if (mask) {
        for (size_t e = 0; e < t * t; e++) pv[e] = p[e] * mask[e];
        c = pv;
    }
    for (size_t i0 = 0; i0 < t; i0 += PML_ROW_BLOCK) {
        const size_t R = t - i0 < PML_ROW_BLOCK ? t - i0 : PML_ROW_BLOCK;
        pml_lower_block(R, i0, c + i0 * t, t, vp, ldv, hs, 1.0f, y + i0 * ldy, ldy);
    }
}

PML_FMA_CLONES void pml_attention_backward(size_t t, size_t hs, float scale, const float *q, const float *k,
                                           const float *v, size_t ld, const float *p, const float *pv,
                                           const float *mask, const float *dy, size_t lddy, float *dq, float *dk,
                                           float *dv, size_t ldd, float *scratch) {
    const size_t t16 = pml_round16(t), hs16 = pml_round16(hs);
    float *ds = scratch, *vt = ds + t * t, *pad1 = vt + hs * t16, *pad2 = pad1 + t * hs16;
    pml_transpose_padded(v, ld, t, hs, vt, t16);
    // dS = P ⊙ (dP − rowsum(dP ⊙ P)), dP = (dy·vᵀ) ⊙ M.
    for (size_t i0 = 0; i0 < t; i0 += PML_ROW_BLOCK) {
        const size_t R = t - i0 < PML_ROW_BLOCK ? t - i0 : PML_ROW_BLOCK;
        pml_scores_block(R, i0, t, dy + i0 * lddy, lddy, hs, vt, 1.0f, ds + i0 * t);
    }
    if (mask) // past a row's scores (its diagonal's 16-column end) the values are stale and never read
        for (size_t e = 0; e < t * t; e++) ds[e] *= mask[e];
    pml_causal_softmax_backward(p, ds, t);
    // dq = dS·k·scale by rows, dv = P̃ᵀ·dy and dk = dSᵀ·q·scale by columns of P̃ and dS.
    size_t ldk, lddyp, ldq;
    const float *kp = pml_padded(k, ld, t, hs, pad1, &ldk);
    for (size_t i0 = 0; i0 < t; i0 += PML_ROW_BLOCK) {
        const size_t R = t - i0 < PML_ROW_BLOCK ? t - i0 : PML_ROW_BLOCK;
        pml_lower_block(R, i0, ds + i0 * t, t, kp, ldk, hs, scale, dq + i0 * ldd, ldd);
    }
    const float *dyp = pml_padded(dy, lddy, t, hs, pad1, &lddyp);
    const float *qp = pml_padded(q, ld, t, hs, pad2, &ldq);
    for (size_t j0 = 0; j0 < t; j0 += PML_ROW_BLOCK) {
        const size_t J = t - j0 < PML_ROW_BLOCK ? t - j0 : PML_ROW_BLOCK;
        pml_upper_block(J, j0, t, pv, dyp, lddyp, hs, 1.0f, dv + j0 * ldd, ldd);
        pml_upper_block(J, j0, t, ds, qp, ldq, hs, scale, dk + j0 * ldd, ldd);
    }
}
