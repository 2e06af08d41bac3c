// Internal to _CParmlKernels (not under include/, so not part of the module):
// what kernels.c and attention.c share: the clone list, Horner's rule and the
// vectorisable e^x. Every file that includes it turns contraction off, so each
// clone rounds alike.
#ifndef PML_VECMATH_H
#define PML_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

// Sanitizer runtimes are not ready when ifunc resolvers run: no clones there.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PML_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PML_SANITIZED 1
#endif

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__)) && !defined(PML_SANITIZED)
// Feature-named clones: the resolver tests CPU features, so new CPUs that
// the compiler cannot name (arch=...) still get the AVX-512 version.
#define PML_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
// For kernels that call fmaf: it must be an instruction (avx2 alone does not
// imply FMA); the default clone calls libm's, which rounds alike.
#define PML_FMA_CLONES __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define PML_CLONES
#define PML_FMA_CLONES
#endif

// c[0] + c[1] x + ... + c[n-1] x^(n-1) by Horner's rule (n is a constant at
// every call, so the loop unrolls and the caller's loop still vectorises).
static inline __attribute__((always_inline)) float pml_poly(float x, const float *c, int n) {
    float p = c[n - 1];
    for (int k = n - 2; k >= 0; k--) p = p * x + c[k];
    return p;
}

// The same by fused multiply-adds: one rounding a degree instead of two,
// at half the instructions (callers in PML_FMA_CLONES functions).
static inline __attribute__((always_inline)) float pml_poly_fma(float x, const float *c, int n) {
    float p = c[n - 1];
    for (int k = n - 2; k >= 0; k--) p = fmaf(p, x, c[k]);
    return p;
}

// Coefficients, lowest degree first (tools/activation_poly.py prints them).
static const float PML_EXP_C[7] = {1.0f, 1.0f, 4.999999106e-01f, 1.666642129e-01f, 4.166835919e-02f,
                                   8.374771103e-03f, 1.382942079e-03f};

// e^x for x in [-87.3, 88.0] (callers clamp; no NaN): x = n ln2 + r with
// |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n built in the exponent
// field. Coefficients: tools/activation_poly.py (relative error 1.9e-9 in
// double). ln2 is split so that n * LN2_HI is exact for |n| < 512.
static inline __attribute__((always_inline)) float pml_exp_clamped_with(float x, int fused) {
    const float LOG2E = 1.44269504088896341f, LN2_HI = 0.693145751953125f, LN2_LO = 1.428606765330187e-06f;
    const float ROUND = 12582912.0f; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    float n = (x * LOG2E + ROUND) - ROUND;
    float r = (x - n * LN2_HI) - n * LN2_LO;
    float p = fused ? pml_poly_fma(r, PML_EXP_C, 7) : pml_poly(r, PML_EXP_C, 7);
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline __attribute__((always_inline)) float pml_exp_clamped(float x) { return pml_exp_clamped_with(x, 0); }

// e^x with the polynomial by fused multiply-adds (PML_FMA_CLONES callers).
static inline __attribute__((always_inline)) float pml_exp_clamped_fma(float x) { return pml_exp_clamped_with(x, 1); }

#endif
