/* The bf16 products-alone bound of an MLP step: see bf16_bound.h. */
#define _POSIX_C_SOURCE 200809L
#include "bf16_bound.h"

#include "bench_util.h"
#include "pml_dnnl.h"
#include "pml_dnnl_matmul.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LAYERS = 8 };

/* One product: its plan and the arrays it reads and writes. */
typedef struct {
    pml_matmul_plan *plan;
    const uint16_t *a, *b;
    float *c;
    double flop;
} product;

struct bf16_bound {
    /* split: product i's halves are p[2i] (caller) and p[2i + 1] (helper thread). */
    product p[6 * MAX_LAYERS];
    int n, split;
    /* The helper thread of a split timing (bf16_bound_step_seconds starts
     * and ends it, so that it spins only while timed): `go` counts
     * products released, `done` products finished; quit ends it. */
    int go, done, quit;
    double flop;
    void *arrays[4 * MAX_LAYERS + 2];
    int n_arrays;
};

static void *keep(bf16_bound *b, size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    if (p) b->arrays[b->n_arrays++] = p;
    return p;
}

/* bf16 values in [-0.5, 0.5), deterministic. */
static uint16_t *bf16_random(bf16_bound *b, size_t n, unsigned seed) {
    float *f = malloc(n * sizeof *f);
    uint16_t *h = keep(b, n * sizeof *h);
    if (!f || !h) {
        free(f);
        return NULL;
    }
    srand(seed);
    for (size_t i = 0; i < n; i++) f[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    pml_bf16_round(f, h, n);
    free(f);
    return h;
}

static int add(bf16_bound *b, const pml_matmul_shape *s, const uint16_t *x, const uint16_t *y, float *c, char *err,
               size_t errlen) {
    product *p = &b->p[b->n];
    if (!(p->plan = pml_matmul_plan_create(s, err, errlen))) return -1;
    p->a = x, p->b = y, p->c = c;
    p->flop = 2.0 * (double)s->m * (double)s->n * (double)s->k;
    b->n++;
    b->flop += p->flop;
    return 0;
}

/* The product of s cut in two by rows of C (m), each half a one-thread plan:
 * row r of C depends only on row r of op(A), so each half is the same sum. */
static int add_halves(bf16_bound *b, const pml_matmul_shape *s, const uint16_t *x, const uint16_t *y, float *c, char *err,
                      size_t errlen) {
    int64_t m0 = s->m / 2;
    pml_matmul_shape h0 = *s, h1 = *s;
    h0.m = m0, h1.m = s->m - m0, h0.threads = h1.threads = 1;
    /* op(A)'s row m0: column m0 of A when transposed. */
    const uint16_t *x1 = x + (s->trans_a ? m0 : m0 * s->lda);
    if (add(b, &h0, x, y, c, err, errlen) || add(b, &h1, x1, y, c + m0 * s->ldc, err, errlen)) return -1;
    return 0;
}

static int add_product(bf16_bound *b, const pml_matmul_shape *s, const uint16_t *x, const uint16_t *y, float *c, char *err,
                       size_t errlen) {
    return b->split ? add_halves(b, s, x, y, c, err, errlen) : add(b, s, x, y, c, err, errlen);
}

static void *helper_main(void *arg) {
    bf16_bound *b = arg;
    int seen = 0;
    for (;;) {
        int go;
        while ((go = __atomic_load_n(&b->go, __ATOMIC_ACQUIRE)) == seen)
            if (__atomic_load_n(&b->quit, __ATOMIC_ACQUIRE)) return NULL;
        for (; seen < go; seen++) {
            product *p = &b->p[2 * (seen % (b->n / 2)) + 1];
            pml_matmul_run(p->plan, p->a, p->b, p->c);
            __atomic_add_fetch(&b->done, 1, __ATOMIC_RELEASE);
        }
    }
}

bf16_bound *bf16_bound_create(const int64_t *dims, int n_dims, int64_t batch, int threads, char *err, size_t errlen) {
    return bf16_bound_create_split(dims, n_dims, batch, threads, 0, err, errlen);
}

bf16_bound *bf16_bound_create_split(const int64_t *dims, int n_dims, int64_t batch, int threads, int split, char *err,
                                    size_t errlen) {
    if (split && threads != 2) {
        snprintf(err, errlen, "bf16 bound: split needs 2 threads");
        return NULL;
    }
    if (n_dims < 2 || n_dims > MAX_LAYERS + 1 || batch < 1 || threads < 1) {
        snprintf(err, errlen, "bf16 bound: invalid MLP");
        return NULL;
    }
    if (!pml_cpu_has_avx512_bf16()) {
        snprintf(err, errlen, "this CPU has no AVX512-BF16 instructions");
        return NULL;
    }
    if (pml_dnnl_load(err, errlen) != 0) return NULL;
    bf16_bound *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->split = split;
    int L = n_dims - 1;
    uint16_t *w[MAX_LAYERS], *act[MAX_LAYERS + 1], *grad[MAX_LAYERS + 1];
    float *y[MAX_LAYERS], *dw[MAX_LAYERS], *dx[MAX_LAYERS];
    for (int l = 0; l <= L; l++) {
        size_t n = (size_t)(batch * dims[l]);
        act[l] = bf16_random(b, n, 10u + (unsigned)l);
        grad[l] = bf16_random(b, n, 20u + (unsigned)l);
        if (!act[l] || !grad[l]) goto fail;
    }
    for (int l = 0; l < L; l++) {
        size_t nw = (size_t)(dims[l] * dims[l + 1]);
        w[l] = bf16_random(b, nw, 1u + (unsigned)l);
        y[l] = keep(b, (size_t)(batch * dims[l + 1]) * sizeof(float));
        dw[l] = keep(b, nw * sizeof(float));
        dx[l] = keep(b, (size_t)(batch * dims[l]) * sizeof(float));
        if (!w[l] || !y[l] || !dw[l] || !dx[l]) goto fail;
    }
    /* In a step's order: the forward products, then each layer's dW and dx from the last. */
    for (int l = 0; l < L; l++) {
        int64_t in = dims[l], out = dims[l + 1];
        pml_matmul_shape s = {batch, out, in, in, in, out, 0, 1, 1.0f, threads, 0, 0};
        if (add_product(b, &s, act[l], w[l], y[l], err, errlen)) goto fail;
    }
    for (int l = L - 1; l >= 0; l--) {
        int64_t in = dims[l], out = dims[l + 1];
        pml_matmul_shape sw = {out, in, batch, out, in, in, 1, 0, 0.0f, threads, 0, 0};
        if (add_product(b, &sw, grad[l + 1], act[l], dw[l], err, errlen)) goto fail;
        pml_matmul_shape sx = {batch, in, out, out, in, in, 0, 0, 0.0f, threads, 0, 0};
        if (l > 0 && add_product(b, &sx, grad[l + 1], w[l], dx[l], err, errlen)) goto fail;
    }
    return b;
fail:
    if (!err[0]) snprintf(err, errlen, "out of memory");
    bf16_bound_free(b);
    return NULL;
}

void bf16_bound_free(bf16_bound *b) {
    if (!b) return;
    for (int i = 0; i < b->n; i++) pml_matmul_plan_free(b->p[i].plan);
    for (int i = 0; i < b->n_arrays; i++) free(b->arrays[i]);
    free(b);
}

static int one_step(bf16_bound *b) {
    if (b->split) {
        /* Each product's halves at once, the caller's and the helper's; the next product waits for both. */
        for (int i = 0; i < b->n; i += 2) {
            int target = __atomic_add_fetch(&b->go, 1, __ATOMIC_RELEASE);
            int st = pml_matmul_run(b->p[i].plan, b->p[i].a, b->p[i].b, b->p[i].c);
            while (__atomic_load_n(&b->done, __ATOMIC_ACQUIRE) < target) {
            }
            if (st) return st;
        }
        return 0;
    }
    for (int i = 0; i < b->n; i++) {
        int st = pml_matmul_run(b->p[i].plan, b->p[i].a, b->p[i].b, b->p[i].c);
        if (st) return st;
    }
    return 0;
}

static double timed_steps(bf16_bound *b, int steps) {
    if (one_step(b)) return -1;
    double t0 = now();
    for (int s = 0; s < steps; s++)
        if (one_step(b)) return -1;
    return (now() - t0) / steps;
}

double bf16_bound_step_seconds(bf16_bound *b, int steps) {
    if (!b || steps < 1) return -1;
    if (!b->split) return timed_steps(b, steps);
    pthread_t helper;
    b->go = b->done = b->quit = 0;
    if (pthread_create(&helper, NULL, helper_main, b) != 0) return -1;
    double dt = timed_steps(b, steps);
    __atomic_store_n(&b->quit, 1, __ATOMIC_RELEASE);
    pthread_join(helper, NULL);
    return dt;
}

double bf16_bound_step_flop(const bf16_bound *b) { return b ? b->flop : 0; }

const char *bf16_bound_impl(const bf16_bound *b) { return b && b->n ? pml_matmul_plan_impl(b->p[0].plan) : "none"; }

int bf16_bound_products(const bf16_bound *b) { return b && !b->split ? b->n : 0; }

double bf16_bound_product_flop(const bf16_bound *b, int i) {
    return b && !b->split && i >= 0 && i < b->n ? b->p[i].flop : 0;
}

int bf16_bound_product_run(bf16_bound *b, int i, int reps) {
    if (!b || b->split || i < 0 || i >= b->n) return -1;
    for (int r = 0; r < reps; r++) {
        int st = pml_matmul_run(b->p[i].plan, b->p[i].a, b->p[i].b, b->p[i].c);
        if (st) return st;
    }
    return 0;
}
