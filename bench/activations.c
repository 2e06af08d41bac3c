/*
 * Element-wise activations (make bench): parml's vectorised tanh, sigmoid
 * and GELU (Sources/_CParmlKernels/kernels.c, compiled in with the same
 * flags' clones) against the libm forms they replaced, on 64K floats in
 * cache, repetitions alternating, medians. One JSON line each:
 * activation_{tanh,sigmoid,gelu}_64K, value = G elements/s, baseline = the
 * libm form in the same run.
 */
#define _POSIX_C_SOURCE 200809L
#include "bench_util.h"
#include "pml_kernels.h"

#include <math.h>
#include <stdio.h>

enum { N = 65536, INNER = 200, REPS = 11 };
static float x[N], y[N];

static void libm_tanh(void) { for (int i = 0; i < N; i++) y[i] = tanhf(x[i]); }
static void libm_sigmoid(void) { for (int i = 0; i < N; i++) y[i] = 1.0f / (1.0f + expf(-x[i])); }
static void libm_gelu(void) { for (int i = 0; i < N; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678f)); }
static void parml_tanh(void) { pml_tanh_forward(x, y, N); }
static void parml_sigmoid(void) { pml_sigmoid_forward(x, y, N); }
static void parml_gelu(void) { pml_gelu_forward(x, y, N); }

static double rate(void (*f)(void)) {
    double t0 = now();
    for (int r = 0; r < INNER; r++) f();
    return (double)N * INNER / (now() - t0) / 1e9;
}

int main(void) {
    for (int i = 0; i < N; i++) x[i] = (float)((i * 7919) % 2000) / 250.0f - 4.0f; /* [-4, 4) */
    const char *names[3] = {"tanh", "sigmoid", "gelu"};
    void (*ours[3])(void) = {parml_tanh, parml_sigmoid, parml_gelu};
    void (*theirs[3])(void) = {libm_tanh, libm_sigmoid, libm_gelu};
    const char *forms[3] = {"libm tanhf", "libm 1/(1+expf(-x))", "libm 0.5x(1+erff(x/sqrt2))"};
    for (int k = 0; k < 3; k++) {
        double a[REPS], b[REPS];
        for (int r = 0; r < REPS; r++) {
            a[r] = rate(ours[k]);
            b[r] = rate(theirs[k]);
        }
        double va = median(a, REPS), vb = median(b, REPS);
        printf("{\"name\": \"activation_%s_64K\", \"value\": %.3f, \"unit\": \"Gelem/s\", \"baseline\": \"%s, 64K floats in cache, same run\", "
               "\"baseline_value\": %.3f, \"ratio\": %.2f}\n",
               names[k], va, forms[k], vb, va / vb);
    }
    return 0;
}
