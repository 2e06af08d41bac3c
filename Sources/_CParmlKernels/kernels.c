// Element-wise kernels, multiversioned for the running CPU. See pml_kernels.h.
#include "pml_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

// Identical rounding in every clone: no fused multiply-add contraction.
#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#include "pml_vecmath.h"

// Loops below index within [0, n) or [0, rows*cols); restrict tells the
// vectoriser outputs do not alias inputs, except where a kernel updates in place.

PML_CLONES void pml_relu_forward(const float *restrict x, float *restrict y, size_t n) {
    // NaN < 0 is false: a NaN passes through, as in torch.relu, so divergence shows.
    for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

PML_CLONES void pml_relu_backward(const float *restrict x, const float *restrict dy, float *restrict dx, size_t n) {
    // Both loads happen on every element, so the select vectorises (a
    // conditional load of dy[i] would keep the loop scalar and branchy).
    for (size_t i = 0; i < n; i++) {
        float g = dy[i];
        dx[i] = x[i] > 0.0f ? g : 0.0f;
    }
}

// Coefficients, lowest degree first (tools/activation_poly.py prints them).
static const float PML_TANH_Q[6] = {-3.333333135e-01f, 1.333321184e-01f, -5.394746363e-02f,
                                    2.170403861e-02f,  -8.184744045e-03f, 2.149052918e-03f};
static const float PML_ERF_P[6] = {1.128379226e+00f,  -3.761263788e-01f, 1.128377616e-01f,
                                   -2.686337382e-02f, 5.201394204e-03f,  -7.709428901e-04f};
static const float PML_ERFCX_NEAR[13] = {3.215854168e-01f,  -1.636229157e-01f, 7.615104318e-02f,  -3.293096647e-02f,
                                         1.337730233e-02f,  -5.145455711e-03f, 1.886235201e-03f,  -6.636710023e-04f,
                                         2.233265113e-04f,  -6.976725126e-05f, 2.247865814e-05f,  -9.213594240e-06f,
                                         2.550726322e-06f};
static const float PML_ERFCX_FAR[9] = {-1.006160574e-06f, 5.642369390e-01f,  -9.684063261e-04f,
                                       -2.707944810e-01f, -8.270117640e-02f, 8.134135604e-01f,
                                       -1.152426600e+00f, 7.521409988e-01f,  -1.919261366e-01f};

PML_CLONES void pml_tanh_forward(const float *restrict x, float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        // On |x|, then x's sign (tanh is odd; -0 stays -0).
        float v = x[i], a = fabsf(v), u = a * a;
        // |x| < 0.625: |x| + |x|^3 q(x^2), exact near 0.
        float small = a + (a * u) * pml_poly(u, PML_TANH_Q, 6);
        // Otherwise 1 - 2 / (e^{2|x|} + 1); tanh(44) is 1 in float already.
        float a2 = a + a < 88.0f ? a + a : 88.0f; // NaN compares false: 88
        float big = 1.0f - 2.0f / (pml_exp_clamped(a2) + 1.0f);
        y[i] = copysignf((a < 0.625f || v != v) ? small : big, v); // NaN stays NaN
    }
}

PML_CLONES void pml_sigmoid_forward(const float *restrict x, float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float z = -v < 88.0f ? -v : 88.0f; // NaN compares false: 88
        z = z > -87.0f ? z : -87.0f;
        float s = 1.0f / (1.0f + pml_exp_clamped(z));
        // Below -88 the exact value is under 6e-39 (subnormal): 0, as libm's 1/(1+inf).
        y[i] = v != v ? v : (v < -88.0f ? 0.0f : s);
    }
}

// GELU's Φ(x) = (1 + erf(x/√2)) / 2, for |x| = a and x's sign, and
// *gauss = exp(-x²/2). With z = a/√2: erf(z) = z p(z²) below z = 0.5; above,
// erfc(z) = exp(-z²) erfcx(z), erfcx a polynomial in z - 1.5 up to 2.5 and in
// 1/z beyond (tools/activation_poly.py), so Φ of a negative x is computed
// without cancellation. x²/2 is split as a_hi²/2 (exact: a_hi keeps 12
// bits) plus the rest, so that exp(-x²/2) keeps its accuracy for large x².
// far = 0 skips the 1/z branch (a division and a polynomial) for a block
// whose every z is below 2.5 (pml_gelu_far), where no lane selects it.
static inline __attribute__((always_inline)) float pml_gelu_phi(float v, float a, float *gauss, int far_needed) {
    uint32_t bits;
    memcpy(&bits, &a, sizeof bits);
    bits &= 0xFFFFF000u;
    float hi;
    memcpy(&hi, &bits, sizeof hi);
    float h = -0.5f * (hi * hi), l = -0.5f * ((a - hi) * (a + hi));
    h = h > -87.0f ? h : -87.0f; // NaN compares false: -87
    l = l > -87.0f ? l : -87.0f;
    float e = pml_exp_clamped_fma(h) * pml_exp_clamped_fma(l);
    *gauss = e;
    float z = a * 0.707106781186547524f, u = z * z;
    float half_erf = 0.5f * (z * pml_poly_fma(u, PML_ERF_P, 6));
    float near = pml_poly_fma(z - 1.5f, PML_ERFCX_NEAR, 13);
    float far = far_needed ? pml_poly_fma(1.0f / (z > 2.5f ? z : 2.5f), PML_ERFCX_FAR, 9) : 0.0f;
    float half_erfc = 0.5f * (e * (z < 2.5f ? near : far));
    if (z < 0.5f) return v < 0.0f ? 0.5f - half_erf : 0.5f + half_erf;
    return v < 0.0f ? half_erfc : 1.0f - half_erfc;
}

// Whether some x[i] of the block takes the 1/z branch (or is NaN): the
// same z as pml_gelu_phi's, so a block answered 0 computes the same bits.
static inline __attribute__((always_inline)) int pml_gelu_far(const float *restrict x, size_t n) {
    int far = 0;
    for (size_t i = 0; i < n; i++) far |= !(fabsf(x[i]) * 0.707106781186547524f < 2.5f);
    return far;
}

// The GELU kernels walk blocks of 16 (one AVX-512 vector), each with the
// 1/z branch only when a lane needs it: |x| ≥ 3.54 is rare in a network's
// pre-activations, and that branch is about a fifth of the arithmetic.
#define PML_GELU_BLOCKS(n, x, body)                                  \
    do {                                                             \
        size_t i0 = 0;                                               \
        for (; i0 + 16 <= (n); i0 += 16) {                           \
            if (pml_gelu_far((x) + i0, 16)) body(i0, 16, 1);         \
            else body(i0, 16, 0);                                    \
        }                                                            \
        if (i0 < (n)) body(i0, (n) - i0, 1);                         \
    } while (0)

// Exact GELU, x Φ(x), as torch.nn.GELU(). Below x = -13, Φ(x) < 1e-38: -0.
static inline __attribute__((always_inline)) void pml_gelu_forward_block(const float *restrict x, float *restrict y,
                                                                        size_t n, int far) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i], gauss;
        float phi = pml_gelu_phi(v, fabsf(v), &gauss, far);
        y[i] = v != v ? v : (v < -13.0f ? -0.0f : v * phi);
    }
}

PML_FMA_CLONES void pml_gelu_forward(const float *restrict x, float *restrict y, size_t n) {
#define PML_BODY(at, count, far) pml_gelu_forward_block(x + (at), y + (at), (count), (far))
    PML_GELU_BLOCKS(n, x, PML_BODY);
#undef PML_BODY
}

// d/dx x Φ(x) = Φ(x) + x φ(x), φ(x) = exp(-x²/2) / √(2π).
static inline __attribute__((always_inline)) void pml_gelu_backward_block(const float *restrict x,
                                                                         const float *restrict dy,
                                                                         float *restrict dx, size_t n, int far) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i], g = dy[i], gauss;
        float phi = pml_gelu_phi(v, fabsf(v), &gauss, far);
        float d = phi + v * (gauss * 0.398942280401432678f);
        dx[i] = v != v ? v : (v < -13.0f ? 0.0f : g * d);
    }
}

PML_FMA_CLONES void pml_gelu_backward(const float *restrict x, const float *restrict dy, float *restrict dx, size_t n) {
#define PML_BODY(at, count, far) pml_gelu_backward_block(x + (at), dy + (at), dx + (at), (count), (far))
    PML_GELU_BLOCKS(n, x, PML_BODY);
#undef PML_BODY
}

static inline __attribute__((always_inline)) void pml_gelu_train_block(const float *restrict x, float *restrict y,
                                                                      float *restrict d, size_t n, int far) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i], gauss;
        float phi = pml_gelu_phi(v, fabsf(v), &gauss, far);
        float slope = phi + v * (gauss * 0.398942280401432678f);
        y[i] = v != v ? v : (v < -13.0f ? -0.0f : v * phi);
        d[i] = v != v ? v : (v < -13.0f ? 0.0f : slope);
    }
}

PML_FMA_CLONES void pml_gelu_forward_train(const float *restrict x, float *restrict y, float *restrict d, size_t n) {
#define PML_BODY(at, count, far) pml_gelu_train_block(x + (at), y + (at), d + (at), (count), (far))
    PML_GELU_BLOCKS(n, x, PML_BODY);
#undef PML_BODY
}

PML_CLONES void pml_gelu_backward_cached(const float *restrict d, const float *restrict dy, float *restrict dx, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] = d[i] == 0.0f ? 0.0f : dy[i] * d[i];
}

PML_CLONES void pml_tanh_backward(const float *restrict y, const float *restrict dy, float *restrict dx, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

PML_CLONES void pml_sigmoid_backward(const float *restrict y, const float *restrict dy, float *restrict dx, size_t n) {
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

PML_CLONES void pml_add(const float *a, const float *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

PML_CLONES void pml_add_inplace(float *restrict y, const float *restrict b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += b[i];
}

PML_CLONES void pml_mul(const float *a, const float *b, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

PML_CLONES void pml_scale(float *x, float s, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

PML_CLONES void pml_broadcast_rows(const float *restrict b, float *restrict y, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *restrict yr = y + r * cols;
        for (size_t c = 0; c < cols; c++) yr[c] = b[c];
    }
}

PML_CLONES void pml_add_bias(float *restrict y, const float *restrict b, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *restrict yr = y + r * cols;
        for (size_t c = 0; c < cols; c++) yr[c] += b[c];
    }
}

PML_CLONES void pml_sum_rows_columns(const float *restrict dy, float *restrict db, size_t rows, size_t cols, float beta,
                                     size_t lo, size_t hi) {
    const size_t w = hi - lo;
    float *restrict out = db + lo;
    if (beta == 0.0f) {
        for (size_t c = 0; c < w; c++) out[c] = 0.0f;
    } else if (beta != 1.0f) {
        for (size_t c = 0; c < w; c++) out[c] *= beta;
    }
    for (size_t r = 0; r < rows; r++) {
        const float *restrict row = dy + r * cols + lo;
        for (size_t c = 0; c < w; c++) out[c] += row[c];
    }
}

PML_CLONES float pml_sum_squares(const float *restrict x, size_t n) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t l = 0; l < 16; l++) acc[l] += x[i + l] * x[i + l];
    float s = 0.0f;
    for (size_t l = 0; l < 16; l++) s += acc[l];
    for (; i < n; i++) s += x[i] * x[i];
    return s;
}

// Σ x[0..<n) in 16 fixed lanes, then the lanes in order, then the tail.
static inline __attribute__((always_inline)) float pml_lane_sum(const float *restrict x, size_t n) {
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t l = 0; l < 16; l++) acc[l] += x[i + l];
    float s = 0.0f;
    for (size_t l = 0; l < 16; l++) s += acc[l];
    for (; i < n; i++) s += x[i];
    return s;
}

PML_CLONES void pml_layer_norm_forward(const float *restrict x, const float *restrict gamma, const float *restrict beta,
                                       float eps, float *restrict y, float *restrict mean, float *restrict rstd,
                                       size_t rows, size_t cols) {
    const float inv = 1.0f / (float)cols;
    for (size_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * cols;
        float *restrict yr = y + r * cols;
        float m = pml_lane_sum(xr, cols) * inv;
        float acc[16] = {0};
        size_t c = 0;
        for (; c + 16 <= cols; c += 16)
            for (size_t l = 0; l < 16; l++) {
                float dv = xr[c + l] - m;
                acc[l] += dv * dv;
            }
        float v = 0.0f;
        for (size_t l = 0; l < 16; l++) v += acc[l];
        for (; c < cols; c++) {
            float dv = xr[c] - m;
            v += dv * dv;
        }
        float rs = 1.0f / sqrtf(v * inv + eps);
        mean[r] = m;
        rstd[r] = rs;
        for (c = 0; c < cols; c++) yr[c] = (xr[c] - m) * rs * gamma[c] + beta[c];
    }
}

// One row of LayerNorm's backward: Σ g and Σ g·x̂ with g = dy·γ, in 16
// fixed lanes (the same bits in every clone and in both backward kernels).
static inline __attribute__((always_inline)) void pml_layer_norm_row_sums(const float *restrict xr, const float *restrict dyr,
                                                                         const float *restrict gamma, float m, float rs,
                                                                         size_t cols, float *sum_g, float *sum_gx) {
    float accG[16] = {0}, accGX[16] = {0};
    size_t c = 0;
    for (; c + 16 <= cols; c += 16)
        for (size_t l = 0; l < 16; l++) {
            float xh = (xr[c + l] - m) * rs, g = dyr[c + l] * gamma[c + l];
            accG[l] += g;
            accGX[l] += g * xh;
        }
    float sumG = 0.0f, sumGX = 0.0f;
    for (size_t l = 0; l < 16; l++) {
        sumG += accG[l];
        sumGX += accGX[l];
    }
    for (; c < cols; c++) {
        float xh = (xr[c] - m) * rs, g = dyr[c] * gamma[c];
        sumG += g;
        sumGX += g * xh;
    }
    *sum_g = sumG;
    *sum_gx = sumGX;
}

// dx for rows 0..<rows and, when params, dγ, dβ += over them: the fused
// kernel (params 1) and the rows pass of the split one (params 0), one body
// that each instantiates with a constant.
static inline __attribute__((always_inline)) void pml_layer_norm_backward_rows(
    const float *restrict dy, const float *restrict x, const float *restrict mean, const float *restrict rstd,
    const float *restrict gamma, float *restrict dx, float *restrict dgamma, float *restrict dbeta, size_t rows,
    size_t cols, int params) {
    const float inv = 1.0f / (float)cols;
    for (size_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * cols, *restrict dyr = dy + r * cols;
        float *restrict dxr = dx + r * cols;
        const float m = mean[r], rs = rstd[r];
        float sumG, sumGX;
        pml_layer_norm_row_sums(xr, dyr, gamma, m, rs, cols, &sumG, &sumGX);
        const float mg = sumG * inv, mgx = sumGX * inv;
        for (size_t c = 0; c < cols; c++) {
            float xh = (xr[c] - m) * rs;
            if (params) {
                dgamma[c] += dyr[c] * xh;
                dbeta[c] += dyr[c];
            }
            dxr[c] = rs * (dyr[c] * gamma[c] - mg - xh * mgx);
        }
    }
}

PML_CLONES void pml_layer_norm_backward(const float *restrict dy, const float *restrict x, const float *restrict mean,
                                        const float *restrict rstd, const float *restrict gamma, float *restrict dx,
                                        float *restrict dgamma, float *restrict dbeta, size_t rows, size_t cols) {
    pml_layer_norm_backward_rows(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, rows, cols, 1);
}

// Per-channel sums of F1 and F2 (expressions in x[k], dy[k] and ch) over
// n samples of c planes of s values: 16 lanes take the same plane offsets
// in every sample, a plane's tail adds into one scalar, and the lanes are
// combined in order. With s = 1 every value is a tail: one sequential sum
// per channel, taken across the channels at once (contiguous).
#define PML_BN_CHANNEL_SUMS(N, C, S, OUT1, OUT2, F1, F2)                              \
    do {                                                                              \
        if ((S) == 1) {                                                               \
            for (size_t ch = 0; ch < (C); ch++) (OUT1)[ch] = 0.0f, (OUT2)[ch] = 0.0f;   \
            for (size_t i = 0; i < (N); i++)                                          \
                for (size_t ch = 0; ch < (C); ch++) {                                 \
                    const size_t k = i * (C) + ch;                                    \
                    (OUT1)[ch] += (F1);                                               \
                    (OUT2)[ch] += (F2);                                               \
                }                                                                     \
            break;                                                                    \
        }                                                                             \
        for (size_t ch = 0; ch < (C); ch++) {                                         \
            float a1[16] = {0}, a2[16] = {0}, t1 = 0.0f, t2 = 0.0f;                   \
            for (size_t i = 0; i < (N); i++) {                                        \
                const size_t base = (i * (C) + ch) * (S);                             \
                size_t p = 0;                                                         \
                for (; p + 16 <= (S); p += 16)                                        \
                    for (size_t l = 0; l < 16; l++) {                                 \
                        const size_t k = base + p + l;                                \
                        a1[l] += (F1);                                                \
                        a2[l] += (F2);                                                \
                    }                                                                 \
                for (; p < (S); p++) {                                                \
                    const size_t k = base + p;                                        \
                    t1 += (F1);                                                       \
                    t2 += (F2);                                                       \
                }                                                                     \
            }                                                                         \
            float s1 = 0.0f, s2 = 0.0f;                                               \
            for (size_t l = 0; l < 16; l++) s1 += a1[l], s2 += a2[l];                 \
            (OUT1)[ch] = s1 + t1;                                                     \
            (OUT2)[ch] = s2 + t2;                                                     \
        }                                                                             \
    } while (0)

PML_CLONES void pml_batch_norm_moments(const float *restrict x, size_t n, size_t c, size_t s, float *restrict sum,
                                       float *restrict m2) {
    // Two passes, as PyTorch's CPU kernel: the mean first, then squared
    // deviations from it (no cancellation of E[x²] − E[x]²). Each pass has
    // one sum to take: the other slot is a zero written before the real one.
    PML_BN_CHANNEL_SUMS(n, c, s, m2, sum, 0.0f, x[k]);
    const float inv = n * s > 0 ? 1.0f / (float)(n * s) : 0.0f;
    const float *total = sum;
    PML_BN_CHANNEL_SUMS(n, c, s, m2, m2, 0.0f, (x[k] - total[ch] * inv) * (x[k] - total[ch] * inv));
}

PML_CLONES void pml_batch_norm_apply(const float *restrict x, size_t n, size_t c, size_t s, const float *restrict scale,
                                     const float *restrict shift, float *restrict y) {
    for (size_t i = 0; i < n; i++)
        for (size_t ch = 0; ch < c; ch++) {
            const float a = scale[ch], b = shift[ch];
            const float *restrict xp = x + (i * c + ch) * s;
            float *restrict yp = y + (i * c + ch) * s;
            for (size_t p = 0; p < s; p++) yp[p] = xp[p] * a + b;
        }
}

PML_CLONES void pml_batch_norm_grad_sums(const float *restrict dy, const float *restrict x, size_t n, size_t c, size_t s,
                                         const float *restrict mean, float *restrict sum_dy, float *restrict sum_dyx) {
    PML_BN_CHANNEL_SUMS(n, c, s, sum_dy, sum_dyx, dy[k], dy[k] * (x[k] - mean[ch]));
}

PML_CLONES void pml_batch_norm_input_grad(const float *restrict dy, const float *restrict x, size_t n, size_t c, size_t s,
                                          const float *restrict mean, const float *restrict a, const float *restrict mean_dy,
                                          const float *restrict b, float *restrict dx) {
    for (size_t i = 0; i < n; i++)
        for (size_t ch = 0; ch < c; ch++) {
            const float m = mean[ch], ac = a[ch], md = mean_dy[ch], bc = b[ch];
            const size_t base = (i * c + ch) * s;
            for (size_t p = 0; p < s; p++) dx[base + p] = ac * (dy[base + p] - md - (x[base + p] - m) * bc);
        }
}

PML_CLONES float pml_nonfinite_probe(const float *restrict x, size_t n) {
    /* x * 0 is 0 for a finite x and NaN for an infinity or a NaN; the sum
     * keeps a NaN, and sums of zeros cannot overflow. */
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t l = 0; l < 16; l++) acc[l] += x[i + l] * 0.0f;
    float s = 0.0f;
    for (size_t l = 0; l < 16; l++) s += acc[l];
    for (; i < n; i++) s += x[i] * 0.0f;
    return s;
}

PML_CLONES void pml_sgd_update(float *restrict p, const float *restrict g, float *restrict buf, size_t n, float lr,
                               float mu, float wd, int nesterov) {
    if (!buf) {
        for (size_t i = 0; i < n; i++) p[i] -= lr * (g[i] + wd * p[i]);
    } else if (nesterov) {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] + wd * p[i];
            float b = mu * buf[i] + gi;
            buf[i] = b;
            p[i] -= lr * (gi + mu * b);
        }
    } else if (wd != 0.0f) {
        for (size_t i = 0; i < n; i++) {
            float b = mu * buf[i] + (g[i] + wd * p[i]);
            buf[i] = b;
            p[i] -= lr * b;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float b = mu * buf[i] + g[i];
            buf[i] = b;
            p[i] -= lr * b;
        }
    }
}

PML_CLONES void pml_sgd_folded_update(float *restrict p, float *restrict buf, size_t n, float lr, float wd) {
    if (wd != 0.0f) {
        for (size_t i = 0; i < n; i++) {
            float b = buf[i] + wd * p[i];
            buf[i] = b;
            p[i] -= lr * b;
        }
    } else {
        for (size_t i = 0; i < n; i++) p[i] -= lr * buf[i];
    }
}

PML_CLONES void pml_adam_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                                size_t n, float b1, float b2, float eps, float step, float rbc2, float l2,
                                float shrink) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * p[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * shrink - step * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

// bfloat16: the top half of the float, rounded to nearest even; a NaN keeps
// a quiet bit so that rounding cannot turn it into an infinity.
static inline uint16_t pml_to_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((b >> 16) | 0x40u);
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

static inline float pml_from_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float x;
    memcpy(&x, &b, 4);
    return x;
}

PML_CLONES void pml_wire_encode(int32_t format, const float *restrict w, uint16_t *restrict out, float *restrict err, size_t n) {
    if (format == 2) {
        for (size_t i = 0; i < n; i++) {
            _Float16 h = (_Float16)w[i];
            memcpy(out + i, &h, 2);
            err[i] += w[i] - (float)h;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = pml_to_bf16(w[i]);
        out[i] = h;
        err[i] += w[i] - pml_from_bf16(h);
    }
}

PML_CLONES void pml_wire_decode(int32_t format, const uint16_t *restrict in, float *restrict w, int32_t add, size_t n) {
    if (format == 2) {
        for (size_t i = 0; i < n; i++) {
            _Float16 h;
            memcpy(&h, in + i, 2);
            w[i] = add ? w[i] + (float)h : (float)h;
        }
        return;
    }
    for (size_t i = 0; i < n; i++) w[i] = add ? w[i] + pml_from_bf16(in[i]) : pml_from_bf16(in[i]);
}

// ---------------------------------------------------------------------------
// Gaussian noise (DP-SGD): Philox4x32-10 blocks, Box–Muller in polynomials.

// sqrt without errno (its argument here is never negative), so the loop
// vectorises: an instruction in every clone, correctly rounded in each.
#if defined(__has_builtin)
#if __has_builtin(__builtin_elementwise_sqrt)
#define PML_SQRT(x) __builtin_elementwise_sqrt(x)
#endif
#endif
#ifndef PML_SQRT
#define PML_SQRT(x) sqrtf(x)
#endif

// ln v for v in (0, 1]: v = m·2^e with m in [√½, √2), ln m = 2 atanh(t),
// t = (m − 1)/(m + 1), |t| < 0.172: the odd series to t^11 (error < 4e-10).
static inline __attribute__((always_inline)) float pml_log_unit(float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    int32_t e = (int32_t)((bits >> 23) & 0xFF) - 127;
    uint32_t mb = (bits & 0x7FFFFF) | 0x3F800000;
    float m;
    memcpy(&m, &mb, 4);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e += big;
    float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    float series = 1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9 + t2 * (1.0f / 11)))));
    return (float)e * 0.693147181f + 2.0f * t * series;
}

PML_CLONES void pml_add_gaussian(float *out, size_t n, uint64_t first, uint32_t k0, uint32_t k1, uint32_t s0, uint32_t s1,
                                 float std) {
    enum { BLOCKS = 64 };
    float draws[4 * BLOCKS];
    uint64_t e = first, end = first + n;
    while (e < end) {
        uint64_t b0 = e >> 2;
        uint64_t blocks = ((end - 1) >> 2) - b0 + 1;
        if (blocks > BLOCKS) blocks = BLOCKS;
        // Branch-free over blocks, so the loop vectorises.
        for (uint64_t j = 0; j < blocks; j++) {
            uint64_t b = b0 + j;
            uint32_t x0 = (uint32_t)b, x1 = (uint32_t)(b >> 32), x2 = s0, x3 = s1, a = k0, c = k1;
            for (int r = 0; r < 10; r++) {
                uint64_t p0 = (uint64_t)0xD2511F53u * x0, p1 = (uint64_t)0xCD9E8D57u * x2;
                uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ a, y1 = (uint32_t)p1, y2 = (uint32_t)(p0 >> 32) ^ x3 ^ c, y3 = (uint32_t)p0;
                x0 = y0, x1 = y1, x2 = y2, x3 = y3;
                a += 0x9E3779B9u;
                c += 0xBB67AE85u;
            }
            uint32_t w[4] = {x0, x1, x2, x3};
            for (int pair = 0; pair < 2; pair++) {
                uint32_t w1 = w[2 * pair], w2 = w[2 * pair + 1];
                // u1 = 1 − (w1 >> 8)/2^24 in (0, 1]: exact in float.
                float v = 1.0f - (float)(w1 >> 8) * (1.0f / 16777216.0f);
                float radius = PML_SQRT(-2.0f * pml_log_unit(v)) * std;
                // θ = 2π (w2 >> 8)/2^24 = q·π/2 + φ: q the top 2 bits, φ in [0, π/2).
                uint32_t q = w2 >> 30;
                float phi = (float)((w2 >> 8) & 0x3FFFFF) * (1.5707963268f / 4194304.0f), p2 = phi * phi;
                float sn = phi * (1.0f + p2 * (-1.0f / 6 + p2 * (1.0f / 120 + p2 * (-1.0f / 5040 + p2 * (1.0f / 362880 + p2 * (-1.0f / 39916800))))));
                float cs = 1.0f + p2 * (-0.5f + p2 * (1.0f / 24 + p2 * (-1.0f / 720 + p2 * (1.0f / 40320 + p2 * (-1.0f / 3628800 + p2 * (1.0f / 479001600))))));
                float sine = (q == 0) ? sn : (q == 1) ? cs : (q == 2) ? -sn : -cs;
                float cosine = (q == 0) ? cs : (q == 1) ? -sn : (q == 2) ? -cs : sn;
                draws[4 * j + 2 * pair] = radius * cosine;
                draws[4 * j + 2 * pair + 1] = radius * sine;
            }
        }
        uint64_t stop = (b0 + blocks) * 4 < end ? (b0 + blocks) * 4 : end;
        for (uint64_t k = e; k < stop; k++) out[k - first] += draws[k - b0 * 4];
        e = stop;
    }
}

// pml_layer_norm_backward in two passes that split over threads without
// changing a bit: dx for rows (each row on its own, the same sums as the
// fused kernel), then dγ, dβ for columns c0..<c1 (each column's sum over
// the rows in row order, as the fused kernel adds them).
PML_CLONES void pml_layer_norm_backward_input(const float *restrict dy, const float *restrict x,
                                              const float *restrict mean, const float *restrict rstd,
                                              const float *restrict gamma, float *restrict dx, size_t rows,
                                              size_t cols) {
    pml_layer_norm_backward_rows(dy, x, mean, rstd, gamma, dx, NULL, NULL, rows, cols, 0);
}

PML_CLONES void pml_layer_norm_backward_params(const float *restrict dy, const float *restrict x,
                                               const float *restrict mean, const float *restrict rstd,
                                               float *restrict dgamma, float *restrict dbeta, size_t rows,
                                               size_t cols, size_t c0, size_t c1) {
    for (size_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * cols, *restrict dyr = dy + r * cols;
        const float m = mean[r], rs = rstd[r];
        for (size_t c = c0; c < c1; c++) {
            float xh = (xr[c] - m) * rs;
            dgamma[c] += dyr[c] * xh;
            dbeta[c] += dyr[c];
        }
    }
}
