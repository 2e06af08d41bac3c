/*
 * parml benchmarks (not tests): training throughput through the public C API
 * against the bound set by the same step's matrix products alone, timed in
 * the same run on the same libraries (one thread: the large products on
 * oneDNN as parml runs them, unless PARML_GEMM=openblas; more threads:
 * OpenBLAS's threaded sgemm). Writes bench/results.json and prints a
 * table. Medians of several repetitions; the machine is shared and noisy,
 * so compare ratios measured together, not times across runs.
 *
 * usage: bench [OUT_JSON [NAME_FILTER]]  (filter: run cases whose name contains it)
 */
#define _POSIX_C_SOURCE 200809L
#include <parml.h>

#include "bench_util.h"
#include "bf16_bound.h"
#include "pml_dnnl_sgemm.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK(call)                                                              \
    do {                                                                         \
        parml_status s_ = (call);                                                \
        if (s_ != PARML_OK) {                                                    \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call,         \
                    parml_last_error());                                         \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* Many short, interleaved repetitions: the host's memory bandwidth drifts
 * over seconds here, and short alternating blocks expose the engine and its
 * baseline to the same drift. */
enum { REPS = 21 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);
static sgemm_fn sgemm;
/* One thread's products as parml runs them: the large ones on oneDNN's
 * matmul (parml's own router, pml_dnnl_sgemm.h) where the library sends
 * them there (`routes_to_onednn`), the rest on OpenBLAS. OpenBLAS's
 * threaded bounds use `sgemm` itself. */
static sgemm_fn sgemm_one;
/* OpenBLAS's own thread count, for the GEMM-only baselines: parml keeps it
 * at 1 and splits products over its own threads (parml_blas_set_threads). */
static void (*openblas_threads)(int);
enum { ROW = 101, NT = 111, TR = 112 };


static float *randn(size_t n, unsigned seed) {
    float *p = malloc(n * sizeof *p);
    srand(seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

typedef struct {
    char name[64];
    double value;
    const char *unit;
    char baseline[96];
    double baseline_value;
} result;

static result results[32];
static int n_results;

/* An MLP whose layer widths are dims[0..n_dims-1], ReLU between layers. */
typedef struct {
    const char *name;
    const int64_t *dims;
    int n_dims;
    int64_t batch;
    int threads;
    int steps;
} mlp_case;

/* The step's products alone (on `gemm`): forward y = x·Wᵀ, dW = dyᵀ·x, dx = dy·W (no dx for layer 0).
 * With `start`, the timed steps begin when every thread waiting there has warmed up. */
static double gemm_only_steps_seconds(sgemm_fn gemm, const mlp_case *c, int steps, pthread_barrier_t *start) {
    int L = c->n_dims - 1;
    int64_t maxw = 0;
    for (int i = 0; i < c->n_dims; i++) maxw = c->dims[i] > maxw ? c->dims[i] : maxw;
    float *w[8], *dw[8], *act[9], *grad[9];
    for (int l = 0; l < L; l++) {
        w[l] = randn((size_t)(c->dims[l] * c->dims[l + 1]), 1u + (unsigned)l);
        dw[l] = calloc((size_t)(c->dims[l] * c->dims[l + 1]), sizeof(float));
    }
    for (int l = 0; l <= L; l++) {
        act[l] = randn((size_t)(c->batch * maxw), 10u + (unsigned)l);
        grad[l] = randn((size_t)(c->batch * maxw), 20u + (unsigned)l);
    }
    int m = (int)c->batch;
    double t0 = 0;
    for (int s = -3; s < steps; s++) {
        if (s == 0 && start) pthread_barrier_wait(start);
        if (s == 0) t0 = now();
        for (int l = 0; l < L; l++) {
            int in = (int)c->dims[l], out = (int)c->dims[l + 1];
            gemm(ROW, NT, TR, m, out, in, 1, act[l], in, w[l], in, 0, act[l + 1], out);
        }
        for (int l = L - 1; l >= 0; l--) {
            int in = (int)c->dims[l], out = (int)c->dims[l + 1];
            gemm(ROW, TR, NT, out, in, m, 1, grad[l + 1], out, act[l], in, 0, dw[l], in);
            if (l > 0) gemm(ROW, NT, NT, m, in, out, 1, grad[l + 1], out, w[l], in, 0, grad[l], in);
        }
    }
    double dt = (now() - t0) / steps;
    for (int l = 0; l < L; l++) { free(w[l]); free(dw[l]); }
    for (int l = 0; l <= L; l++) { free(act[l]); free(grad[l]); }
    return dt;
}

static double gemm_only_step_seconds(sgemm_fn gemm, const mlp_case *c, int steps) {
    return gemm_only_steps_seconds(gemm, c, steps, NULL);
}

/* The same products, half the batch on each of two threads at once, each
 * on one thread's products: both cores computing the step's flops side by
 * side, with no cut and no hand-over between them, so what the two vCPUs
 * cost each other while they compute is in it and nothing of parml's. */
typedef struct {
    const mlp_case *c;
    pthread_barrier_t *start;
    double seconds;
} halves_job;

static void *halves_run(void *arg) {
    halves_job *j = arg;
    j->seconds = gemm_only_steps_seconds(sgemm_one, j->c, j->c->steps, j->start);
    return NULL;
}

/* fn(b) on a new thread while fn(a) runs on this one; returns when both have. */
static void run_on_two_threads(void *(*fn)(void *), void *a, void *b) {
    pthread_t other;
    if (pthread_create(&other, NULL, fn, b) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        exit(1);
    }
    fn(a);
    pthread_join(other, NULL);
}

static double concurrent_halves_samples_per_second(const mlp_case *c) {
    mlp_case half = *c;
    half.batch = c->batch / 2;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    halves_job a = {.c = &half, .start = &start}, b = a;
    run_on_two_threads(halves_run, &a, &b);
    pthread_barrier_destroy(&start);
    return (double)c->batch / (a.seconds > b.seconds ? a.seconds : b.seconds);
}

static double engine_step_seconds(parml_trainer tr, parml_tensor x, parml_tensor y, int steps) {
    float loss;
    for (int s = 0; s < 1; s++) CHECK(parml_trainer_step(tr, x, y, &loss));
    double t0 = now();
    for (int s = 0; s < steps; s++) CHECK(parml_trainer_step(tr, x, y, &loss));
    return (now() - t0) / steps;
}

/* The precision make_trainer_det gives its trainers (bench_bf16 switches it). */
static int32_t bench_precision = PARML_PRECISION_FP32;

/* An MLP trainer: ReLU between layers, SGD momentum 0.9 (or Adam). */
static parml_trainer make_trainer_det(const int64_t *dims, int n_dims, int threads, int dp, int zero, int adam,
                                      int deterministic, parml_model *model_out);

static parml_trainer make_trainer(const int64_t *dims, int n_dims, int threads, int dp, int zero, int adam,
                                  parml_model *model_out) {
    return make_trainer_det(dims, n_dims, threads, dp, zero, adam, 0, model_out);
}

/* A trainer of `model` (initialised here): SGD momentum 0.9 (or Adam), lr 0.01. */
static parml_trainer trainer_for(parml_model model, int threads, int dp, int zero, int adam, int deterministic) {
    CHECK(parml_model_init(model, 1));
    parml_optimizer_params opt;
    CHECK(parml_optimizer_params_init(&opt));
    opt.learning_rate = 0.01f;
    opt.momentum = 0.9f;
    if (adam) opt.kind = PARML_OPTIMIZER_ADAM;
    parml_strategy_params st;
    CHECK(parml_strategy_params_init(&st));
    st.blas_threads = threads;
    st.dp = dp;
    st.zero_stage = zero;
    st.deterministic = deterministic;
    st.precision = bench_precision;
    parml_trainer tr;
    CHECK(parml_trainer_create(model, PARML_LOSS_CROSS_ENTROPY, &opt, &st, &tr));
    return tr;
}

static parml_trainer make_trainer_det(const int64_t *dims, int n_dims, int threads, int dp, int zero, int adam,
                                      int deterministic, parml_model *model_out) {
    parml_model model;
    CHECK(parml_model_create(&model));
    for (int l = 0; l + 1 < n_dims; l++) {
        CHECK(parml_model_add_linear(model, dims[l], dims[l + 1], 1));
        if (l + 2 < n_dims) CHECK(parml_model_add_activation(model, PARML_ACTIVATION_RELU));
    }
    *model_out = model;
    return trainer_for(model, threads, dp, zero, adam, deterministic);
}

static void make_batch(const int64_t *dims, int n_dims, int64_t batch, parml_tensor *x, parml_tensor *y) {
    int64_t xs[2] = {batch, dims[0]}, ys[1] = {batch};
    float *xd = randn((size_t)(batch * dims[0]), 7);
    float *yd = malloc((size_t)batch * sizeof *yd);
    for (int64_t i = 0; i < batch; i++) yd[i] = (float)(i % dims[n_dims - 1]);
    CHECK(parml_tensor_create(xs, 2, xd, x));
    CHECK(parml_tensor_create(ys, 1, yd, y));
    free(xd);
    free(yd);
}

static void bench_mlp(const mlp_case *c) {
    parml_model model;
    parml_trainer tr = make_trainer(c->dims, c->n_dims, c->threads, 1, 0, 0, &model);
    parml_tensor x, y;
    make_batch(c->dims, c->n_dims, c->batch, &x, &y);
    /* Interleave engine and GEMM-only repetitions so drift hits both alike. */
    /* With more than one thread, also the bound of perfect scaling: the
     * products alone on one thread, times the threads (same run). */
    double eng[REPS], gem[REPS], one[REPS], halves[REPS];
    for (int r = 0; r < REPS; r++) {
        CHECK(parml_blas_set_threads(c->threads));
        eng[r] = (double)c->batch / engine_step_seconds(tr, x, y, c->steps);
        openblas_threads(c->threads);
        gem[r] = (double)c->batch / gemm_only_step_seconds(c->threads > 1 ? sgemm : sgemm_one, c, c->steps);
        if (c->threads > 1) {
            openblas_threads(1);
            one[r] = c->threads * (double)c->batch / gemm_only_step_seconds(sgemm_one, c, c->steps);
            if (c->threads == 2) halves[r] = concurrent_halves_samples_per_second(c);
        }
    }
    result *res = &results[n_results++];
    snprintf(res->name, sizeof res->name, "%s", c->name);
    res->value = median(eng, REPS);
    res->unit = "samples/s";
    snprintf(res->baseline, sizeof res->baseline, "gemm_only (same %d-GEMM step, same run)",
             3 * (c->n_dims - 1) - 1);
    res->baseline_value = median(gem, REPS);
    if (c->threads > 1) {
        res = &results[n_results++];
        snprintf(res->name, sizeof res->name, "%s_of_%dx_t1_bound", c->name, c->threads);
        res->value = median(eng, REPS);
        res->unit = "samples/s";
        snprintf(res->baseline, sizeof res->baseline, "%d x the same GEMMs alone on 1 thread (same run)", c->threads);
        res->baseline_value = median(one, REPS);
    }
    if (c->threads == 2) {
        res = &results[n_results++];
        snprintf(res->name, sizeof res->name, "%s_of_concurrent_halves", c->name);
        res->value = median(eng, REPS);
        res->unit = "samples/s";
        snprintf(res->baseline, sizeof res->baseline, "same GEMMs, half batch on each of 2 threads at once (same run)");
        res->baseline_value = median(halves, REPS);
    }

    parml_tensor_free(x);
    parml_tensor_free(y);
    parml_trainer_free(tr);
    parml_model_free(model);
}

/* Two independent serial trainers, each on its half of the batch, stepped at
 * once on two threads: what dp = 2 would reach if its ranks never talked
 * (no reduction, no shared memory traffic but the GEMMs' own). */
typedef struct {
    parml_trainer t;
    parml_tensor x, y;
    int steps;
} half_job;

static void *half_steps(void *arg) {
    half_job *j = arg;
    float loss;
    for (int s = 0; s < j->steps; s++) CHECK(parml_trainer_step(j->t, j->x, j->y, &loss));
    return NULL;
}

static double independent_pair_samples_per_second(half_job *a, half_job *b, int64_t batch) {
    float loss;
    CHECK(parml_trainer_step(a->t, a->x, a->y, &loss));
    CHECK(parml_trainer_step(b->t, b->x, b->y, &loss));
    double t0 = now();
    run_on_two_threads(half_steps, a, b);
    return (double)batch * a->steps / (now() - t0);
}

/* Data parallelism on the threads backend (BLAS threads = cores / ranks)
 * against the same model trained serially on one thread, same run; and
 * against two independent half-batch trainers stepped at once (dp = 2 only),
 * the bound for ranks that share the machine. */
static void bench_dp(const char *name, const int64_t *dims, int n_dims, int64_t batch, int dp, int zero, int steps) {
    parml_model m1, m2, ma, mb;
    parml_trainer serial = make_trainer(dims, n_dims, 1, 1, 0, 0, &m1);
    parml_trainer par = make_trainer(dims, n_dims, 0, dp, zero, 0, &m2);
    half_job a = {.t = make_trainer(dims, n_dims, 1, 1, 0, 0, &ma), .steps = steps};
    half_job b = {.t = make_trainer(dims, n_dims, 1, 1, 0, 0, &mb), .steps = steps};
    parml_tensor x, y;
    make_batch(dims, n_dims, batch, &x, &y);
    make_batch(dims, n_dims, batch / 2, &a.x, &a.y);
    make_batch(dims, n_dims, batch / 2, &b.x, &b.y);
    double eng[REPS], base[REPS], pair[REPS];
    for (int r = 0; r < REPS; r++) {
        base[r] = (double)batch / engine_step_seconds(serial, x, y, steps);
        eng[r] = (double)batch / engine_step_seconds(par, x, y, steps);
        if (dp == 2) pair[r] = independent_pair_samples_per_second(&a, &b, batch);
    }
    double value = median(eng, REPS);
    result *res = &results[n_results++];
    snprintf(res->name, sizeof res->name, "%s", name);
    res->value = value;
    res->unit = "samples/s";
    snprintf(res->baseline, sizeof res->baseline, "serial, 1 BLAS thread (same run); dp=%d ZeRO-%d", dp, zero);
    res->baseline_value = median(base, REPS);
    if (dp == 2) {
        res = &results[n_results++];
        snprintf(res->name, sizeof res->name, "%s_of_bound", name);
        res->value = value;
        res->unit = "samples/s";
        snprintf(res->baseline, sizeof res->baseline, "2 serial trainers, half batch each, at once (no communication)");
        res->baseline_value = median(pair, REPS);
    }
    parml_tensor_free(x);
    parml_tensor_free(y);
    parml_tensor_free(a.x);
    parml_tensor_free(a.y);
    parml_tensor_free(b.x);
    parml_tensor_free(b.y);
    parml_trainer_free(serial);
    parml_trainer_free(par);
    parml_trainer_free(a.t);
    parml_trainer_free(b.t);
    parml_model_free(m1);
    parml_model_free(m2);
    parml_model_free(ma);
    parml_model_free(mb);
}

/* `other`'s samples/s against `plain`'s on the same batch, their steps
 * interleaved in one run so that drift hits both alike; frees both. */
static void compare_steps(const char *name, const char *baseline, int64_t batch, parml_tensor x, parml_tensor y,
                          parml_trainer plain, parml_trainer other) {
    double o[REPS], f[REPS];
    for (int r = 0; r < REPS; r++) {
        CHECK(parml_blas_set_threads(1));
        f[r] = (double)batch / engine_step_seconds(plain, x, y, 6);
        o[r] = (double)batch / engine_step_seconds(other, x, y, 6);
    }
    result *res = &results[n_results++];
    snprintf(res->name, sizeof res->name, "%s", name);
    res->value = median(o, REPS);
    res->unit = "samples/s";
    snprintf(res->baseline, sizeof res->baseline, "%s", baseline);
    res->baseline_value = median(f, REPS);
    parml_tensor_free(x);
    parml_tensor_free(y);
    parml_trainer_free(plain);
    parml_trainer_free(other);
}

static void bench_against_plain(const char *name, const char *baseline, const int64_t *dims, int n_dims, int64_t batch,
                                parml_trainer plain, parml_trainer other) {
    parml_tensor x, y;
    make_batch(dims, n_dims, batch, &x, &y);
    compare_steps(name, baseline, batch, x, y, plain, other);
}

/* What deterministic (layout-invariant) mode costs: chunks of 32 samples,
 * each with its own forward/backward, summed along the chunk tree. */
static void bench_deterministic(const int64_t *dims, int n_dims) {
    parml_model m1, m2;
    parml_trainer fast = make_trainer(dims, n_dims, 1, 1, 0, 0, &m1);
    parml_trainer det = make_trainer_det(dims, n_dims, 1, 1, 0, 0, 1, &m2);
    bench_against_plain("mlp_b128_t1_deterministic", "default mode, same layout, same run (grad_chunk 32)", dims, n_dims, 128,
                        fast, det);
    parml_model_free(m1);
    parml_model_free(m2);
}

/* bf16 mixed precision (issue 23): the same case's float32 and bf16
 * trainers stepped in turn, so drift hits both alike; ratio = bf16 samples/s
 * over float32's (target >= 1.6). And, in the same rounds, the step's bf16
 * products alone (bf16_bound.h: the same oneDNN matmuls on the same
 * threads): <name>_of_bound, the share of the products' speed the whole
 * step keeps. */
static void bench_bf16(const mlp_case *c) {
    parml_model m1, m2;
    parml_trainer f32 = make_trainer(c->dims, c->n_dims, c->threads, 1, 0, 0, &m1);
    bench_precision = PARML_PRECISION_BF16;
    parml_trainer bf = make_trainer(c->dims, c->n_dims, c->threads, 1, 0, 0, &m2);
    bench_precision = PARML_PRECISION_FP32;
    char *plan = NULL;
    CHECK(parml_trainer_plan(bf, &plan));
    const char *line = strstr(plan, "precision:");
    fprintf(stderr, "%s: %.*s\n", c->name, line ? (int)strcspn(line, "\n") : 0, line ? line : "");
    /* A CPU without AVX512-BF16 trains the bf16 trainer in float32; the
     * entry says so rather than pass a ratio near 1 off as bf16's. */
    int fell_back = line && strncmp(line, "precision: float32", strlen("precision: float32")) == 0;
    parml_buffer_free(plan);
    char err[512] = "";
    bf16_bound *bound = bf16_bound_create(c->dims, c->n_dims, c->batch, c->threads, err, sizeof err);
    if (!bound) fprintf(stderr, "%s: no bf16 products bound: %s\n", c->name, err);
    parml_tensor x, y;
    make_batch(c->dims, c->n_dims, c->batch, &x, &y);
    double o[REPS], f[REPS], b[REPS];
    for (int r = 0; r < REPS; r++) {
        CHECK(parml_blas_set_threads(c->threads));
        f[r] = (double)c->batch / engine_step_seconds(f32, x, y, c->steps);
        o[r] = (double)c->batch / engine_step_seconds(bf, x, y, c->steps);
        if (bound) b[r] = (double)c->batch / bf16_bound_step_seconds(bound, c->steps);
    }
    result *res = &results[n_results++];
    snprintf(res->name, sizeof res->name, "%s", c->name);
    res->value = median(o, REPS);
    res->unit = "samples/s";
    snprintf(res->baseline, sizeof res->baseline, "float32 run of the same case, same run%s",
             fell_back ? "; bf16 fell back to float32 (the plan says why)" : "");
    res->baseline_value = median(f, REPS);
    if (bound) {
        double value = res->value, products = median(b, REPS);
        res = &results[n_results++];
        snprintf(res->name, sizeof res->name, "%s_of_bound", c->name);
        res->value = value;
        res->unit = "samples/s";
        snprintf(res->baseline, sizeof res->baseline, "the step's oneDNN bf16 matmuls alone, %d thr, same run (%.0f GFLOP/s)",
                 c->threads, bf16_bound_step_flop(bound) * products / (double)c->batch / 1e9);
        res->baseline_value = products;
        bf16_bound_free(bound);
    }
    parml_tensor_free(x);
    parml_tensor_free(y);
    parml_trainer_free(f32);
    parml_trainer_free(bf);
    parml_model_free(m1);
    parml_model_free(m2);
}

/* What DP-SGD costs (issue 21): a private step (per-example norms, clipping,
 * noise on every parameter; sigma 1, C 1) against the ordinary step of the
 * same model and batch. ratio = private samples/s over ordinary samples/s,
 * the inverse of the step-time ratio (the target, a private step
 * <= 1.5x the ordinary one, is ratio >= 0.667). */
static void bench_dpsgd(const int64_t *dims, int n_dims) {
    parml_model m1, m2;
    parml_trainer plain = make_trainer(dims, n_dims, 1, 1, 0, 0, &m1);
    parml_trainer priv = make_trainer(dims, n_dims, 1, 1, 0, 0, &m2);
    parml_privacy_params p;
    CHECK(parml_privacy_params_init(&p));
    CHECK(parml_trainer_set_privacy(priv, &p));
    bench_against_plain("dpsgd_mlp_b256_t1", "ordinary step, same model and batch, same run (ratio = 1 / time ratio)", dims,
                        n_dims, 256, plain, priv);
    parml_model_free(m1);
    parml_model_free(m2);
}

/* Appends conv2d(in → out, k×k, stride, padding), tanh and 2×2 max pooling with stride 1. */
static void add_tanh_conv_block(parml_model model, int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
    int64_t kk[] = {k}, st[] = {stride}, pd[] = {pad}, k2[] = {2}, s1[] = {1};
    parml_attribute conv[] = {{.name = "in_channels", .type = PARML_ATTR_INT, .int_value = in},
                              {.name = "out_channels", .type = PARML_ATTR_INT, .int_value = out},
                              {.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = kk, .n_ints = 1},
                              {.name = "stride", .type = PARML_ATTR_INTS, .ints = st, .n_ints = 1},
                              {.name = "padding", .type = PARML_ATTR_INTS, .ints = pd, .n_ints = 1}};
    parml_attribute pool[] = {{.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = k2, .n_ints = 1},
                              {.name = "stride", .type = PARML_ATTR_INTS, .ints = s1, .n_ints = 1}};
    CHECK(parml_model_add_layer(model, "conv2d", conv, 5));
    CHECK(parml_model_add_activation(model, PARML_ACTIVATION_TANH));
    CHECK(parml_model_add_layer(model, "max_pool2d", pool, 2));
}

/* The tanh CNN of bench/privacy.md (TF Privacy's tutorial CNN, Papernot et
 * al. 2020's activations) on 28×28 images, SGD momentum 0.9, one BLAS thread. */
static parml_trainer make_cnn_trainer(parml_model *model_out) {
    parml_model model;
    CHECK(parml_model_create(&model));
    add_tanh_conv_block(model, 1, 16, 8, 2, 3); /* (N, 16, 13, 13) */
    add_tanh_conv_block(model, 16, 32, 4, 2, 0); /* (N, 32, 4, 4) */
    CHECK(parml_model_add_flatten(model));
    CHECK(parml_model_add_linear(model, 512, 32, 1));
    CHECK(parml_model_add_activation(model, PARML_ACTIVATION_TANH));
    CHECK(parml_model_add_linear(model, 32, 10, 1));
    *model_out = model;
    return trainer_for(model, 1, 1, 0, 0, 0);
}

/* DP-SGD's cost on that CNN, batch 256 (sigma 1, C 1): as bench_dpsgd. */
static void bench_dpsgd_cnn(void) {
    parml_model m1, m2;
    parml_trainer plain = make_cnn_trainer(&m1);
    parml_trainer priv = make_cnn_trainer(&m2);
    parml_privacy_params p;
    CHECK(parml_privacy_params_init(&p));
    CHECK(parml_trainer_set_privacy(priv, &p));
    int64_t batch = 256, xs[4] = {batch, 1, 28, 28}, ys[1] = {batch};
    float *xd = randn((size_t)(batch * 784), 7), *yd = malloc((size_t)batch * sizeof *yd);
    for (int64_t i = 0; i < batch; i++) yd[i] = (float)(i % 10);
    parml_tensor x, y;
    CHECK(parml_tensor_create(xs, 4, xd, &x));
    CHECK(parml_tensor_create(ys, 1, yd, &y));
    free(xd);
    free(yd);
    compare_steps("dpsgd_cnn_b256_t1", "ordinary step, same tanh CNN and batch, same run (ratio = 1 / time ratio)", batch, x,
                  y, plain, priv);
    parml_model_free(m1);
    parml_model_free(m2);
}

/* Optimizer state per rank under ZeRO-1 against ZeRO-0 (Adam: two moments). */
static void bench_zero1_bytes(const int64_t *dims, int n_dims) {
    parml_model m0, m1;
    parml_trainer t0 = make_trainer(dims, n_dims, 0, 2, 0, 1, &m0);
    parml_trainer t1 = make_trainer(dims, n_dims, 0, 2, 1, 1, &m1);
    parml_memory_report a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
    CHECK(parml_trainer_memory(t0, 0, &a));
    CHECK(parml_trainer_memory(t1, 0, &b));
    result *res = &results[n_results++];
    snprintf(res->name, sizeof res->name, "zero1_optimizer_bytes_per_rank");
    res->value = (double)b.optimizer_bytes;
    res->unit = "bytes";
    snprintf(res->baseline, sizeof res->baseline, "ZeRO-0, dp=2, Adam, 784-1024-1024-10 (rank 0)");
    res->baseline_value = (double)a.optimizer_bytes;
    parml_trainer_free(t0);
    parml_trainer_free(t1);
    parml_model_free(m0);
    parml_model_free(m1);
}

static void bench_sgemm(const char *core) {
    int n = 1024;
    float *a = randn((size_t)n * n, 3), *b = randn((size_t)n * n, 4), *c = calloc((size_t)n * n, sizeof(float));
    CHECK(parml_blas_set_threads(1));
    double g[REPS];
    for (int r = 0; r < REPS; r++) {
        sgemm(ROW, NT, NT, n, n, n, 1, a, n, b, n, 0, c, n);
        int iters = 10;
        double t0 = now();
        for (int i = 0; i < iters; i++) sgemm(ROW, NT, NT, n, n, n, 1, a, n, b, n, 0, c, n);
        g[r] = 2.0 * n * n * n * iters / (now() - t0) / 1e9;
    }
    result *res = &results[n_results++];
    snprintf(res->name, sizeof res->name, "sgemm_1024_t1");
    res->value = median(g, REPS);
    res->unit = "GFLOP/s";
    snprintf(res->baseline, sizeof res->baseline, "OpenBLAS core %s", core);
    res->baseline_value = 0;
    free(a);
    free(b);
    free(c);
}

static void cpu_model(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 2;
                v[strcspn(v, "\n")] = 0;
                snprintf(out, cap, "%s", v);
            }
            break;
        }
    }
    fclose(f);
}

/* Whether the library sends the large float32 products to oneDNN, as its
 * float32 plan says ("large products on oneDNN ..." against "products on
 * OpenBLAS (...)"), so the products-alone bounds take the same route. */
static int routes_to_onednn(void) {
    static const int64_t dims[] = {8, 8};
    parml_model model;
    parml_trainer tr = make_trainer(dims, 2, 1, 1, 0, 0, &model);
    char *plan = NULL;
    CHECK(parml_trainer_plan(tr, &plan));
    int onednn = strstr(plan, "large products on oneDNN") != NULL;
    parml_buffer_free(plan);
    parml_trainer_free(tr);
    parml_model_free(model);
    return onednn;
}

int main(int argc, char **argv) {
    /* An option where the output path goes would run every entry and write a file named like it. */
    if (argc > 1 && argv[1][0] == '-') {
        fprintf(stderr, "usage: %s [OUT.json [FILTER]]\n  runs the engine entries whose names contain FILTER (all by default)\n"
                        "  and writes them to OUT.json (bench/results.json by default)\n", argv[0]);
        return strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    const char *out_path = argc > 1 ? argv[1] : "bench/results.json";
    const char *core = NULL;
    CHECK(parml_blas_core(&core)); /* loads OpenBLAS with parml's kernel choice */
    /* Same library, same kernels: dlopen returns the copy parml loaded. */
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_NOLOAD);
    if (!h) h = dlopen("libopenblas.so.0", RTLD_NOW);
    if (!h || !(sgemm = (sgemm_fn)(size_t)dlsym(h, "cblas_sgemm")) ||
        !(openblas_threads = (void (*)(int))(size_t)dlsym(h, "openblas_set_num_threads"))) {
        fprintf(stderr, "cannot find cblas_sgemm: %s\n", dlerror());
        return 1;
    }
    sgemm_one = routes_to_onednn() ? pml_dnnl_sgemm_route(sgemm) : sgemm;

    static const int64_t mlp[] = {784, 1024, 1024, 10}, tiny[] = {784, 128, 10};
    mlp_case cases[] = {
        {"mlp_b128_t1", mlp, 4, 128, 1, 12},
        {"mlp_b512_t2", mlp, 4, 512, 2, 4},
        {"tiny_b32_t1", tiny, 3, 32, 1, 600},
    };
    const char *filter = argc > 2 ? argv[2] : "";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strstr(cases[i].name, filter)) bench_mlp(&cases[i]);
    int zero = getenv("BENCH_ZERO") ? atoi(getenv("BENCH_ZERO")) : 1;
    if (strstr("mlp_b128_dp2", filter)) bench_dp("mlp_b128_dp2", mlp, 4, 128, 2, zero, 12);
    if (strstr("mlp_b512_dp2", filter)) bench_dp("mlp_b512_dp2", mlp, 4, 512, 2, zero, 4);
    if (strstr("zero1_optimizer_bytes_per_rank", filter)) bench_zero1_bytes(mlp, 4);
    if (strstr("mlp_b128_t1_deterministic", filter)) bench_deterministic(mlp, 4);
    if (strstr("dpsgd_mlp_b256_t1", filter)) bench_dpsgd(mlp, 4);
    if (strstr("dpsgd_cnn_b256_t1", filter)) bench_dpsgd_cnn();
    if (strstr("sgemm_1024_t1", filter)) bench_sgemm(core);
    mlp_case bf16_cases[] = {
        {"mlp_b128_t1_bf16", mlp, 4, 128, 1, 12},
        {"mlp_b512_t2_bf16", mlp, 4, 512, 2, 4},
        {"tiny_b32_t1_bf16", tiny, 3, 32, 1, 600},
    };
    for (size_t i = 0; i < sizeof bf16_cases / sizeof bf16_cases[0]; i++)
        if (strstr(bf16_cases[i].name, filter)) bench_bf16(&bf16_cases[i]);

    char cpu[256], date[64];
    cpu_model(cpu, sizeof cpu);
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    FILE *f = fopen(out_path, "w");
    if (!f) {
        perror(out_path);
        return 1;
    }
    fprintf(f, "{\n  \"machine\": {\"cpu\": \"%s\", \"cores\": %ld, \"openblas_core\": \"%s\"},\n", cpu, cores, core);
    fprintf(f, "  \"date\": \"%s\",\n  \"parml\": \"%s\",\n  \"results\": [\n", date, parml_version_string());
    printf("%-16s %12s %-10s %12s %7s  %s\n", "name", "value", "unit", "baseline", "ratio", "baseline is");
    for (int i = 0; i < n_results; i++) {
        result *r = &results[i];
        double ratio = r->baseline_value > 0 ? r->value / r->baseline_value : 0;
        fprintf(f, "    {\"name\": \"%s\", \"value\": %.1f, \"unit\": \"%s\", \"baseline\": \"%s\", "
                   "\"baseline_value\": %.1f, \"ratio\": %.3f}%s\n",
                r->name, r->value, r->unit, r->baseline, r->baseline_value, ratio, i + 1 < n_results ? "," : "");
        printf("%-16s %12.1f %-10s %12.1f %7.3f  %s\n", r->name, r->value, r->unit, r->baseline_value, ratio,
               r->baseline);
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    printf("wrote %s\n", out_path);
    return 0;
}
