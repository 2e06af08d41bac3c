/* Experiment (not part of parml; bench/RESULTS.md, 2026-12-05 11:42): a
 * hand-written AVX512-BF16 GEMM (VDPBF16PS) against oneDNN 2.6's bf16 matmul
 * (parml's shim, one-thread plans) on the eight products of the MLP
 * 784-1024-1024-10 step (bench/bf16_bound.c's shapes), one thread, GFLOP/s
 * in thread CPU time, best of 5 rounds each.
 *
 * C (m x n, f32) = beta*C + op(A) (m x k, bf16) * op(B) (k x n, bf16),
 * row-major, k even. The kernel reads op(A) as rows with k contiguous
 * (pairs of k as 32-bit words) and op(B) packed in pairs of k per column
 * ("VNNI": Bp[p][j] = (B[2p][j], B[2p+1][j])) in panels of 64 columns;
 * op(A) is repacked when A is transposed (dW = dy^T x), B always; the
 * packing is timed with the product. Register tile MR x 16*NV (6 x 64:
 * 24 zmm accumulators), no k blocking unless BF16_KC (pairs) is set.
 *
 * Build and run (batch 512 or 128, repetitions per round):
 *   clang -std=c11 -O2 -march=native -ISources/_CParmlDNNL/include -ISources/_CParmlDNNL \
 *     bench/bf16_kernel.c Sources/_CParmlDNNL/dnnl_matmul.c Sources/_CParmlDNNL/dnnl_loader.c \
 *     -ldl -lm -pthread -o build/bf16_kernel && ./build/bf16_kernel 512 40
 * (-DMR=8 -DNV=3 for an 8 x 48 tile.) */
#define _GNU_SOURCE
#include "pml_dnnl.h"
#include "pml_dnnl_matmul.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef MR
#define MR 6
#endif
#ifndef NV
#define NV 4
#endif
#define NR (16 * NV)
static long KC = 1 << 30; /* pairs of k per block (env BF16_KC) */

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* acc[r][v] += sum over pairs p of A[r][2p..2p+1] . Bp[p][16v..16v+15]; rows < mr, columns masked. */
__attribute__((target("avx512f,avx512bf16,avx512bw"), always_inline)) static inline void
kernel(int mr, int nv, __mmask16 last, const uint32_t *a, long lda2, const uint32_t *bp, long pairs, float *c, long ldc,
       float beta) {
    __m512 acc[MR][NV];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++)
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (long p = 0; p < pairs; p++) {
        __m512bh b[NV];
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++)
            if (v < nv) b[v] = (__m512bh)_mm512_loadu_si512((const void *)(bp + p * NR + 16 * v));
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            if (r < mr) {
                __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a[r * lda2 + p]);
#pragma clang loop unroll(full)
                for (int v = 0; v < NV; v++)
                    if (v < nv) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], ar, b[v]);
            }
        }
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) {
        if (r >= mr) continue;
#pragma clang loop unroll(full)
        for (int v = 0; v < NV; v++) {
            if (v >= nv) continue;
            __mmask16 mk = v == nv - 1 ? last : 0xFFFF;
            float *cp = c + r * ldc + 16 * v;
            __m512 old = beta == 0 ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mk, cp));
            _mm512_mask_storeu_ps(cp, mk, _mm512_add_ps(old, acc[r][v]));
        }
    }
}

/* Full-width kernels for the common case, so the compiler sees constant mr and nv. */
__attribute__((target("avx512f,avx512bf16,avx512bw"))) static void kernel_full(const uint32_t *a, long lda2,
                                                                            const uint32_t *bp, long pairs, float *c,
                                                                            long ldc, float beta) {
    kernel(MR, NV, 0xFFFF, a, lda2, bp, pairs, c, ldc, beta);
}

__attribute__((target("avx512f,avx512bf16,avx512bw"))) static void kernel_edge(int mr, int nv, __mmask16 last,
                                                                            const uint32_t *a, long lda2,
                                                                            const uint32_t *bp, long pairs, float *c,
                                                                            long ldc, float beta) {
    switch (mr) {
#define ROWS(R)                                                                                                        \
    case R:                                                                                                            \
        switch (nv) {                                                                                                  \
        case 1: kernel(R, 1, last, a, lda2, bp, pairs, c, ldc, beta); break;                                           \
        case 2: kernel(R, 2, last, a, lda2, bp, pairs, c, ldc, beta); break;                                           \
        case 3: kernel(R, 3, last, a, lda2, bp, pairs, c, ldc, beta); break;                                           \
        default: kernel(R, 4, last, a, lda2, bp, pairs, c, ldc, beta); break;                                          \
        }                                                                                                              \
        break;
        ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6)
#if MR > 6
        ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
#endif
#undef ROWS
    }
}

typedef struct {
    long m, n, k;
    int trans_a, trans_b;
    float beta;
    uint16_t *a_rows;  /* op(A) as m rows of k (scratch when A is transposed) */
    uint32_t *b_pack;  /* ceil(n/64) panels of k/2 x 64 words */
} plan;

static void pack_b(plan *pl, const uint16_t *b, long ldb) {
    long pairs = pl->k / 2;
    for (long jb = 0; jb < pl->n; jb += NR) {
        uint32_t *panel = pl->b_pack + (jb / NR) * pairs * NR;
        long w = pl->n - jb < NR ? pl->n - jb : NR;
        if (pl->trans_b) {
            /* B^T rows hold k contiguous: each column's pairs are words of its row. */
            for (long j = 0; j < w; j++) {
                const uint32_t *row = (const uint32_t *)(b + (jb + j) * ldb);
                for (long p = 0; p < pairs; p++) panel[p * NR + j] = row[p];
            }
        } else {
            for (long p = 0; p < pairs; p++) {
                const uint16_t *r0 = b + (2 * p) * ldb + jb, *r1 = r0 + ldb;
                uint32_t *o = panel + p * NR;
                for (long j = 0; j < w; j++) o[j] = (uint32_t)r0[j] | (uint32_t)r1[j] << 16;
            }
        }
        for (long p = 0; p < pairs; p++)
            for (long j = w; j < NR; j++) panel[p * NR + j] = 0;
    }
}

static void pack_a_transposed(plan *pl, const uint16_t *a, long lda) {
    /* op(A)[i][kk] = A[kk][i], as pairs: word p of row i = (A[2p][i], A[2p+1][i]); blocks of 64 x 64 pairs. */
    long pairs = pl->k / 2;
    uint32_t *o = (uint32_t *)pl->a_rows;
    for (long pb = 0; pb < pairs; pb += 64)
        for (long ib = 0; ib < pl->m; ib += 64) {
            long pe = pb + 64 < pairs ? pb + 64 : pairs, ie = ib + 64 < pl->m ? ib + 64 : pl->m;
            for (long p = pb; p < pe; p++) {
                const uint16_t *r0 = a + (2 * p) * lda, *r1 = r0 + lda;
                for (long i = ib; i < ie; i++) o[i * pairs + p] = (uint32_t)r0[i] | (uint32_t)r1[i] << 16;
            }
        }
}

static void gemm(plan *pl, const uint16_t *a, long lda, const uint16_t *b, long ldb, float *c, long ldc) {
    pack_b(pl, b, ldb);
    const uint16_t *arows = a;
    long la = lda;
    if (pl->trans_a) {
        pack_a_transposed(pl, a, lda);
        arows = pl->a_rows;
        la = pl->k;
    }
    long pairs = pl->k / 2;
    for (long jb = 0; jb < pl->n; jb += NR) {
        const uint32_t *panel = pl->b_pack + (jb / NR) * pairs * NR;
        long w = pl->n - jb < NR ? pl->n - jb : NR;
        int nv = (int)((w + 15) / 16);
        __mmask16 last = (__mmask16)(w % 16 ? (1u << (w % 16)) - 1 : 0xFFFF);
        for (long pb = 0; pb < pairs; pb += KC) {
            long kc = pairs - pb < KC ? pairs - pb : KC;
            float beta = pb == 0 ? pl->beta : 1.0f;
            for (long ib = 0; ib < pl->m; ib += MR) {
                int mr = (int)(pl->m - ib < MR ? pl->m - ib : MR);
                const uint32_t *ap = (const uint32_t *)(arows + ib * la) + pb;
                float *cp = c + ib * ldc + jb;
                if (mr == MR && w == NR)
                    kernel_full(ap, la / 2, panel + pb * NR, kc, cp, ldc, beta);
                else
                    kernel_edge(mr, nv, last, ap, la / 2, panel + pb * NR, kc, cp, ldc, beta);
            }
        }
    }
}

static uint16_t *rnd(size_t n, unsigned seed) {
    float *f = malloc(n * 4);
    uint16_t *h = aligned_alloc(64, (n * 2 + 63) / 64 * 64);
    srand(seed);
    for (size_t i = 0; i < n; i++) f[i] = (float)rand() / 2147483648.0f - 0.5f;
    pml_bf16_round(f, h, n);
    free(f);
    return h;
}

int main(int argc, char **argv) {
    long batch = argc > 1 ? atol(argv[1]) : 512;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    if (getenv("BF16_KC")) KC = atol(getenv("BF16_KC"));
    char err[256];
    if (pml_dnnl_load(err, sizeof err)) {
        printf("%s\n", err);
        return 1;
    }
    /* The step's eight products (bench/bf16_bound.c's order). */
    struct { const char *name; long m, n, k; int ta, tb; float beta; } P[] = {
        {"fwd 784->1024", batch, 1024, 784, 0, 1, 1}, {"fwd 1024->1024", batch, 1024, 1024, 0, 1, 1},
        {"fwd 1024->10", batch, 10, 1024, 0, 1, 1},  {"dW 10x1024", 10, 1024, batch, 1, 0, 0.9f},
        {"dx k=10", batch, 1024, 10, 0, 0, 0},       {"dW 1024x1024", 1024, 1024, batch, 1, 0, 0.9f},
        {"dx k=1024", batch, 1024, 1024, 0, 0, 0},   {"dW 1024x784", 1024, 784, batch, 1, 0, 0.9f},
    };
    int np = (int)(sizeof P / sizeof P[0]);
    double tot_mine = 0, tot_dnnl = 0, tot_flop = 0;
    for (int i = 0; i < np; i++) {
        long m = P[i].m, n = P[i].n, k = P[i].k;
        int ta = P[i].ta, tb = P[i].tb;
        long lda = ta ? m : k, ldb = tb ? k : n;
        uint16_t *a = rnd((size_t)(m * k), 1 + i), *b = rnd((size_t)(k * n), 11 + i);
        float *c0 = malloc((size_t)(m * n) * 4), *c1 = malloc((size_t)(m * n) * 4), *cr = malloc((size_t)(m * n) * 4);
        for (long t = 0; t < m * n; t++) c0[t] = c1[t] = cr[t] = (float)(t % 13) * 0.01f;
        plan pl = {m, n, k, ta, tb, P[i].beta, NULL, NULL};
        pl.a_rows = ta ? aligned_alloc(64, (size_t)(m * k * 2 + 63) / 64 * 64) : NULL;
        pl.b_pack = aligned_alloc(64, (size_t)((n + NR - 1) / NR) * (k / 2) * NR * 4);
        pml_matmul_shape s = {m, n, k, lda, ldb, n, ta, tb, P[i].beta, 1, 0, 0};
        pml_matmul_plan *dp = pml_matmul_plan_create(&s, err, sizeof err);
        if (!dp) {
            printf("%s\n", err);
            return 1;
        }
        /* Correctness: one product each from the same C, against a double reference. */
        gemm(&pl, a, lda, b, ldb, c0, n);
        pml_matmul_run(dp, a, b, c1);
        double worst = 0, worst_d = 0;
        for (long r = 0; r < m; r += 7)
            for (long j = 0; j < n; j += 3) {
                double ref = P[i].beta * cr[r * n + j], mag = fabs(ref);
                for (long kk = 0; kk < k; kk++) {
                    uint32_t xa = (uint32_t)(ta ? a[kk * lda + r] : a[r * lda + kk]) << 16;
                    uint32_t xb = (uint32_t)(tb ? b[j * ldb + kk] : b[kk * ldb + j]) << 16;
                    float fa, fb;
                    memcpy(&fa, &xa, 4);
                    memcpy(&fb, &xb, 4);
                    ref += (double)fa * fb;
                    mag += fabs((double)fa * fb);
                }
                double e = fabs(c0[r * n + j] - ref) / mag, ed = fabs(c1[r * n + j] - ref) / mag;
                if (e > worst) worst = e;
                if (ed > worst_d) worst_d = ed;
            }
        double best_m = 1e9, best_d = 1e9;
        for (int round = 0; round < 5; round++) {
            double t0 = cpu_now();
            for (int r = 0; r < reps; r++) gemm(&pl, a, lda, b, ldb, c0, n);
            double t1 = cpu_now();
            for (int r = 0; r < reps; r++) pml_matmul_run(dp, a, b, c1);
            double t2 = cpu_now();
            if ((t1 - t0) / reps < best_m) best_m = (t1 - t0) / reps;
            if ((t2 - t1) / reps < best_d) best_d = (t2 - t1) / reps;
        }
        double flop = 2.0 * m * n * k;
        tot_mine += best_m, tot_dnnl += best_d, tot_flop += flop;
        printf("%-16s %5ldx%5ldx%5ld  mine %6.1f GFLOP/s  oneDNN %6.1f  mine/oneDNN %.3f  err %.1e (oneDNN %.1e)\n",
               P[i].name, m, n, k, flop / best_m / 1e9, flop / best_d / 1e9, best_d / best_m, worst, worst_d);
        pml_matmul_plan_free(dp);
        free(a), free(b), free(c0), free(c1), free(cr), free(pl.a_rows), free(pl.b_pack);
    }
    printf("all eight: mine %.1f GFLOP/s, oneDNN %.1f, mine/oneDNN %.3f (best of 5 rounds per product, thread CPU time)\n",
           tot_flop / tot_mine / 1e9, tot_flop / tot_dnnl / 1e9, tot_dnnl / tot_mine);
    return 0;
}
