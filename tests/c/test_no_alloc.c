/*
 * test_no_alloc.c — a training step allocates nothing once warmed up.
 *
 * The executable defines malloc, calloc, realloc, free, posix_memalign,
 * aligned_alloc and memalign itself. The dynamic linker binds every call in
 * the process to these (libparml.so, its statically linked Swift runtime,
 * OpenBLAS and glibc's own internal calls alike); they forward to glibc's
 * allocator (__libc_malloc, ...) and count calls while `counting` is on.
 *
 * Model: (64, 28, 28) -> flatten -> linear 784->256 -> layer_norm -> gelu ->
 * residual{ linear 256->256 -> gelu -> dropout 0.1 } -> linear 256->256 ->
 * relu -> linear 256->10; Adam, cosine schedule with warmup, clipping.
 * Then a small CNN (every image kind: conv2d, max_pool2d, avg_pool2d,
 * global_avg_pool) on (64, 1, 28, 28), serial, dp 2 x pp 2 and (its two
 * convolutions made a pair: cnn_pair) tp 2.
 * 3 warm-up steps, then 20 counted steps of parml_trainer_step, twice:
 *   1. with the default strategy (what every user gets: BLAS threads =
 *      cores / ranks), the check the promise is about;
 *   2. with strategy.blas_threads = 1, which isolates parml's own code from
 *      OpenBLAS's threaded driver.
 Then parml_trainer_fit over a token dataset and over an augmented image
 * dataset: 12 epochs allocate exactly what 2 do (windows are cut, and
 * images cropped and flipped, in the trainer's batch tensors).
 * Every check runs the products on OpenBLAS (PARML_GEMM=openblas), except
 * `test_no_alloc onednn-products` (a second process, run_c_tests.sh): the
 * default, large float32 products on oneDNN's matmul, whose execute
 * allocates inside oneDNN like the convolutions' below.
 * The CNN runs with each conv2d backend: im2col + OpenBLAS (PARML_CONV=im2col)
 * must allocate nothing; oneDNN (the default) allocates inside its own
 * dnnl_primitive_execute (oneDNN 2.x builds a std::unordered_map of the
 * call's arguments each time), which is counted and reported, like
 * OpenBLAS's threaded driver, while parml's own code must allocate nothing.
 * Each allocation's call stack is classified as it happens by whether a
 * frame lies in libopenblas or libdnnl (dladdr), and the first stacks are
 * printed with backtrace_symbols_fd: frames in libparml.so read
 * "libparml.so(+0xOFFSET)", which run_c_tests.sh turns into function names
 * with addr2line. Prints "N passed, N failed"; exits nonzero on any failure.
 */
#define _GNU_SOURCE /* dladdr */
#include "test_common.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <stdatomic.h>

/* glibc's allocator entry points (exported by libc.so.6 for exactly this use). */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *p);

static atomic_int counting;
static atomic_long allocs;
static atomic_long frees;

/* Call stacks of the first counted allocations. */
enum { MAX_TRACES = 512, MAX_FRAMES = 32 };
static void *traces[MAX_TRACES][MAX_FRAMES];
static int trace_depth[MAX_TRACES];
static const char *trace_kind[MAX_TRACES];
static size_t trace_size[MAX_TRACES];
static atomic_int traces_taken;
static _Thread_local int in_hook;

/* Whose allocation: parml's own, or a field library's (a frame in it). */
enum { FROM_PARML, FROM_OPENBLAS, FROM_ONEDNN, FROM_COUNT };
static int trace_from[MAX_TRACES];
static atomic_long allocs_from[FROM_COUNT];

static int classify(void **frames, int depth) {
    for (int f = 0; f < depth; f++) {
        Dl_info info;
        if (!dladdr(frames[f], &info) || !info.dli_fname) continue;
        if (strstr(info.dli_fname, "openblas")) return FROM_OPENBLAS;
        if (strstr(info.dli_fname, "libdnnl")) return FROM_ONEDNN;
    }
    return FROM_PARML;
}

static void note_alloc(const char *kind, size_t size) {
    if (!atomic_load_explicit(&counting, memory_order_relaxed) || in_hook) return;
    atomic_fetch_add(&allocs, 1);
    in_hook = 1; /* backtrace() may allocate on its first use; warmed up before counting */
    void *frames[MAX_FRAMES];
    int depth = backtrace(frames, MAX_FRAMES);
    int from = classify(frames, depth);
    atomic_fetch_add(&allocs_from[from], 1);
    int slot = atomic_fetch_add(&traces_taken, 1);
    if (slot < MAX_TRACES) {
        trace_kind[slot] = kind;
        trace_size[slot] = size;
        trace_from[slot] = from;
        trace_depth[slot] = depth;
        memcpy(traces[slot], frames, (size_t)depth * sizeof frames[0]);
    }
    in_hook = 0;
}

void *malloc(size_t size) {
    note_alloc("malloc", size);
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
    note_alloc("calloc", n * size);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size) {
    note_alloc("realloc", size);
    return __libc_realloc(p, size);
}

void free(void *p) {
    if (p && atomic_load_explicit(&counting, memory_order_relaxed) && !in_hook) atomic_fetch_add(&frees, 1);
    __libc_free(p);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    note_alloc("posix_memalign", size);
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (!p && size) return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    note_alloc("aligned_alloc", size);
    return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size);
void *memalign(size_t alignment, size_t size) {
    note_alloc("memalign", size);
    return __libc_memalign(alignment, size);
}

enum { B = 64, H = 28, W = 28, F = H * W, HID = 256, CLASSES = 10, WARMUP = 3, COUNTED = 20 };

/* Does trace k pass through OpenBLAS? */
static int trace_in_openblas(int k) { return trace_from[k] == FROM_OPENBLAS; }

static void print_trace(int k) {
    fprintf(stderr, "--- allocation %d: %s(%zu bytes), call stack:\n", k + 1, trace_kind[k], trace_size[k]);
    fflush(stderr);
    backtrace_symbols_fd(traces[k], trace_depth[k], 2);
}

static parml_model build_model(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_flatten(m));
    OK(parml_model_add_linear(m, F, HID, 1));
    OK(parml_model_add_layer_norm(m, HID, 1e-5f));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_GELU));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_linear(m, HID, HID, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_GELU));
    OK(parml_model_add_dropout(m, 0.1f));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_linear(m, HID, HID, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, HID, CLASSES, 1));
    OK(parml_model_init(m, 2024));
    return m;
}

/* A small CNN on (B, 1, 28, 28): conv 1->4 3x3 pad 1, batch norm, relu,
 * max pool 2, conv 4->8 3x3 stride 2 groups 2, relu, avg pool 2 (stride 1),
 * global average pool, batch norm (1-D), linear 8->10: every image kind.
 * With cnn_pair, the second conv is ungrouped and the first batch norm left
 * out, so that tensor parallelism splits the two convs as a pair
 * (batch_norm does not declare ChannelwiseLayer yet). */
static int64_t k3[] = {3}, pad1[] = {1}, two[] = {2}, one[] = {1};
/* 1: build_cnn's two convolutions form a tensor-parallel pair. */
static int cnn_pair;

static void add(parml_model m, const char *kind, parml_attribute *a, int64_t n) { OK(parml_model_add_layer(m, kind, a, n)); }

static parml_model build_cnn(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    parml_attribute c1[] = {{.name = "in_channels", .type = PARML_ATTR_INT, .int_value = 1},
                            {.name = "out_channels", .type = PARML_ATTR_INT, .int_value = 4},
                            {.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = k3, .n_ints = 1},
                            {.name = "padding", .type = PARML_ATTR_INTS, .ints = pad1, .n_ints = 1}};
    add(m, "conv2d", c1, 4);
    parml_attribute bn4[] = {{.name = "num_features", .type = PARML_ATTR_INT, .int_value = 4}};
    if (!cnn_pair) add(m, "batch_norm", bn4, 1);
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    parml_attribute pool[] = {{.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = two, .n_ints = 1}};
    add(m, "max_pool2d", pool, 1);
    parml_attribute c2[] = {{.name = "in_channels", .type = PARML_ATTR_INT, .int_value = 4},
                            {.name = "out_channels", .type = PARML_ATTR_INT, .int_value = 8},
                            {.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = k3, .n_ints = 1},
                            {.name = "stride", .type = PARML_ATTR_INTS, .ints = two, .n_ints = 1},
                            {.name = "groups", .type = PARML_ATTR_INT, .int_value = cnn_pair ? 1 : 2}};
    add(m, "conv2d", c2, 5);
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    parml_attribute avg[] = {{.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = two, .n_ints = 1},
                             {.name = "stride", .type = PARML_ATTR_INTS, .ints = one, .n_ints = 1}};
    add(m, "avg_pool2d", avg, 2);
    add(m, "global_avg_pool", NULL, 0);
    parml_attribute bn8[] = {{.name = "num_features", .type = PARML_ATTR_INT, .int_value = 8}};
    add(m, "batch_norm", bn8, 1);
    OK(parml_model_add_linear(m, 8, CLASSES, 1));
    OK(parml_model_init(m, 2024));
    return m;
}

/* Trains WARMUP + COUNTED steps; returns the allocations counted over the
   last COUNTED; *others_out gets those whose stack does not pass through
   OpenBLAS. */
typedef struct {
    int32_t dp, zero, deterministic, pp, micro_batches, tp;
} layout_t;

/* The input measure() trains on is an image batch: the CNN, not the MLP. */
static int xt_is_image;
/* Allocations inside oneDNN in the last measure(). */
static long last_in_dnnl;
/* The precision measure()'s trainers use (PARML_PRECISION_*). */
static int32_t measure_precision = PARML_PRECISION_FP32;
/* The overlap setting measure()'s trainers use (PARML_OVERLAP_*). */
static int32_t measure_overlap = PARML_OVERLAP_AUTO;

static long measure(const char *label, int32_t blas_threads, layout_t l, parml_tensor xt, parml_tensor yt,
                    long *others_out) {
    parml_model m = xt_is_image ? build_cnn() : build_model();
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAM;
    o.learning_rate = 1e-3f;
    o.schedule = PARML_SCHEDULE_COSINE;
    o.warmup_steps = 5;
    o.total_steps = 100;
    o.clip_grad_norm = 5.0f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.seed = 11;
    s.blas_threads = blas_threads;
    s.dp = l.dp;
    s.zero_stage = l.zero;
    s.deterministic = l.deterministic;
    s.pp = l.pp;
    s.micro_batches = l.micro_batches;
    s.tp = l.tp;
    s.precision = measure_precision;
    s.overlap = measure_overlap;
    if (measure_overlap == PARML_OVERLAP_ON) s.bucket_bytes = 64; /* a bucket per layer: several per step */
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));
    int32_t threads = 0;
    OK(parml_blas_threads(&threads));

    float loss = 0, first = 0;
    for (int i = 0; i < WARMUP; i++) OK(parml_trainer_step(tr, xt, yt, i == 0 ? &first : &loss));

    parml_status st = PARML_OK;
    atomic_store(&allocs, 0);
    atomic_store(&frees, 0);
    atomic_store(&traces_taken, 0);
    for (int k = 0; k < FROM_COUNT; k++) atomic_store(&allocs_from[k], 0);
    atomic_store(&counting, 1);
    for (int i = 0; i < COUNTED && st == PARML_OK; i++) st = parml_trainer_step(tr, xt, yt, &loss);
    atomic_store(&counting, 0);
    long n_allocs = atomic_load(&allocs), n_frees = atomic_load(&frees);

    CHECK(st == PARML_OK, "step failed: %s", parml_last_error());
    CHECK(isfinite(loss) && loss < first, "loss %g after %d steps (first %g)", loss, WARMUP + COUNTED, first);
    int64_t steps = 0;
    OK(parml_trainer_step_count(tr, &steps));
    CHECK(steps == WARMUP + COUNTED, "step count %lld", (long long)steps);

    int recorded = n_allocs < MAX_TRACES ? (int)n_allocs : MAX_TRACES;
    long in_blas = atomic_load(&allocs_from[FROM_OPENBLAS]), in_dnnl = atomic_load(&allocs_from[FROM_ONEDNN]);
    long others = atomic_load(&allocs_from[FROM_PARML]);
    printf("%s (%d BLAS threads): allocations during %d steps: %ld (frees: %ld); "
           "inside OpenBLAS: %ld, inside oneDNN: %ld, elsewhere: %ld\n",
           label, (int)threads, COUNTED, n_allocs, n_frees, in_blas, in_dnnl, others);
    fflush(stdout);
    if (n_allocs > 0) {
        /* Stacks outside OpenBLAS first (parml's own), then one from OpenBLAS. */
        int shown = 0, shown_blas = 0;
        for (int k = 0; k < recorded && shown < 6; k++)
            if (trace_from[k] == FROM_PARML) {
                print_trace(k);
                shown++;
            }
        for (int k = 0; k < recorded && shown_blas < 2; k++)
            if (trace_in_openblas(k)) {
                print_trace(k);
                shown_blas++;
            }
        fprintf(stderr, "--- (frames 'libparml.so(+0xOFFSET)': addr2line -f -e libparml.so 0xOFFSET | swift-demangle)\n");
    }
    parml_trainer_free(tr);
    parml_model_free(m);
    *others_out = others;
    last_in_dnnl = in_dnnl;
    return n_allocs + n_frees;
}

/* Allocations and frees of one parml_trainer_fit call of `epochs` epochs. */
static long fit_allocs(parml_trainer tr, parml_dataset d, int epochs) {
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.epochs = epochs;
    f.batch_size = 8;
    atomic_store(&allocs, 0);
    atomic_store(&frees, 0);
    atomic_store(&traces_taken, 0);
    atomic_store(&counting, 1);
    parml_status st = parml_trainer_fit(tr, d, &f, NULL);
    atomic_store(&counting, 0);
    CHECK(st == PARML_OK, "fit failed: %s", parml_last_error());
    return atomic_load(&allocs) + atomic_load(&frees);
}

/* fit over a token dataset cuts each batch of windows into the trainer's
 * batch tensors: a call may allocate to set up, its steps and epochs may
 * not, so 12 epochs (48 steps) allocate exactly what 2 epochs (8) do. */
/* After a warm-up fit of `d` (4 batches of 8 an epoch), 12 epochs must
 * allocate exactly what 2 do: nothing per step or epoch. */
static void check_epochs_allocate_alike(parml_trainer tr, parml_dataset d, const char *what) {
    fit_allocs(tr, d, 1);
    long two = fit_allocs(tr, d, 2), twelve = fit_allocs(tr, d, 12);
    printf("note: fit over %s: %ld allocations and frees for 2 epochs, %ld for 12\n", what, two, twelve);
    CHECK(two == twelve, "fit over %s allocates per step or epoch: %ld for 8 steps, %ld for 48", what, two, twelve);
}

static void test_token_fit(void) {
    enum { TV = 16, TC = 32, TT = 16, TN = 1025 };
    parml_model m = NULL;
    OK(parml_model_create(&m));
    parml_attribute tok[] = {{.name = "num_embeddings", .type = PARML_ATTR_INT, .int_value = TV},
                             {.name = "embedding_dim", .type = PARML_ATTR_INT, .int_value = TC}};
    OK(parml_model_add_layer(m, "embedding", tok, 2));
    OK(parml_model_add_linear(m, TC, TV, 1));
    OK(parml_model_init(m, 3));
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.blas_threads = 1;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &s, &tr));
    int32_t ids[TN];
    for (int i = 0; i < TN; i++) ids[i] = i * 7 % TV;
    int64_t n = TN;
    parml_tensor t = NULL;
    OK(parml_tensor_create_typed(PARML_DTYPE_INT32, &n, 1, ids, &t));
    parml_token_params p;
    OK(parml_token_params_init(&p));
    p.windows_per_epoch = 32; /* 4 batches of 8 */
    parml_dataset d = NULL;
    OK(parml_dataset_create_tokens(t, TT, &p, &d));
    check_epochs_allocate_alike(tr, d, "a token dataset");
    parml_dataset_free(d);
    parml_tensor_free(t);
    parml_trainer_free(tr);
    parml_model_free(m);
}

/* parml_trainer_fit over an augmented image dataset (random crop and flip,
 * since 0.3): the images are transformed in the trainer's batch tensor with
 * one plane of scratch made per fit call, so 12 epochs allocate what 2 do. */
static void test_augmented_fit(void) {
    enum { AN = 32 };
    setenv("PARML_CONV", "im2col", 1);
    parml_model m = build_cnn();
    unsetenv("PARML_CONV");
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.blas_threads = 1;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &s, &tr));
    static float pixels[AN * H * W], labels[AN];
    for (int i = 0; i < AN * H * W; i++) pixels[i] = (float)(i * 37 % 101) / 101.0f;
    for (int i = 0; i < AN; i++) labels[i] = (float)(i % CLASSES);
    int64_t xd[4] = {AN, 1, H, W}, yd[1] = {AN};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 4, pixels, &xt));
    OK(parml_tensor_create(yd, 1, labels, &yt));
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    parml_augment_params a;
    OK(parml_augment_params_init(&a));
    a.crop_padding = 4;
    a.horizontal_flip = 1;
    OK(parml_dataset_set_augmentation(d, &a));
    check_epochs_allocate_alike(tr, d, "an augmented image dataset");
    /* Sample weights ride with the batches in buffers the trainer keeps. */
    static float weights[AN];
    for (int i = 0; i < AN; i++) weights[i] = (float)(i % 3);
    parml_dataset dw = NULL;
    OK(parml_dataset_with_sample_weights(d, weights, AN, &dw));
    check_epochs_allocate_alike(tr, dw, "an augmented image dataset with sample weights");
    parml_dataset_free(dw);
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_trainer_free(tr);
    parml_model_free(m);
}

/* Generation: a GPT of 2 blocks (C 32, 4 heads, block 48, vocab 17).
 * Within the block a token is a one-token pass over the key/value caches,
 * sized when the prompt runs; sampling from the top 5 selects in a scratch
 * buffer. Returns the allocations and frees of one parml_model_generate of
 * n tokens from a 2-token prompt. */
static parml_model build_gpt(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    parml_attribute tok[] = {{.name = "num_embeddings", .type = PARML_ATTR_INT, .int_value = 17},
                             {.name = "embedding_dim", .type = PARML_ATTR_INT, .int_value = 32}};
    parml_attribute pos[] = {{.name = "max_positions", .type = PARML_ATTR_INT, .int_value = 48},
                             {.name = "embedding_dim", .type = PARML_ATTR_INT, .int_value = 32}};
    parml_attribute attn[] = {{.name = "features", .type = PARML_ATTR_INT, .int_value = 32},
                              {.name = "heads", .type = PARML_ATTR_INT, .int_value = 4}};
    OK(parml_model_add_layer(m, "embedding", tok, 2));
    OK(parml_model_add_layer(m, "position_embedding", pos, 2));
    for (int i = 0; i < 2; i++) {
        OK(parml_model_begin_residual(m));
        OK(parml_model_add_layer_norm(m, 32, 1e-5f));
        OK(parml_model_add_layer(m, "causal_self_attention", attn, 2));
        OK(parml_model_end_residual(m));
        OK(parml_model_begin_residual(m));
        OK(parml_model_add_layer_norm(m, 32, 1e-5f));
        OK(parml_model_add_linear(m, 32, 128, 1));
        OK(parml_model_add_activation(m, PARML_ACTIVATION_GELU));
        OK(parml_model_add_linear(m, 128, 32, 1));
        OK(parml_model_end_residual(m));
    }
    OK(parml_model_add_layer_norm(m, 32, 1e-5f));
    OK(parml_model_add_linear(m, 32, 17, 0));
    OK(parml_model_init(m, 5));
    return m;
}

static long generate_allocs(parml_model m, int64_t n) {
    int64_t prompt[2] = {3, 11}, out[46];
    atomic_store(&allocs, 0);
    atomic_store(&frees, 0);
    atomic_store(&traces_taken, 0);
    atomic_store(&counting, 1);
    parml_status st = parml_model_generate(m, prompt, 2, n, 1.0f, 5, 9, out);
    atomic_store(&counting, 0);
    CHECK(st == PARML_OK, "generate failed: %s", parml_last_error());
    return atomic_load(&allocs) + atomic_load(&frees);
}

/* The large float32 products on oneDNN's matmul (the default since 0.3 on
 * CPUs with AVX-512; this process sets PARML_GEMM=onednn so that they run
 * there on any CPU): oneDNN's execute allocates its
 * argument map each call, parml's own code nothing once each thread has
 * made its plans. With one thread per rank that is after the first step;
 * with several, a thread makes a plan the first time it meets a block
 * shape, which the pool's claiming may delay past the warm-up, so those
 * layouts are reported, not checked. */
static int onednn_products(parml_tensor xt, parml_tensor yt) {
    void *dnnl = dlopen("libdnnl.so.2", RTLD_NOW);
    if (!dnnl) {
        printf("skip: oneDNN products: libdnnl.so.2 does not load here (%s); OpenBLAS runs every product\n", dlerror());
        return 0;
    }
    dlclose(dnnl);
    long others = 0;
    const layout_t serial = {1, 0, 0, 1, 1, 1};
    measure("oneDNN products, blas_threads = 1", 1, serial, xt, yt, &others);
    printf("note: oneDNN products: %ld allocations per step inside oneDNN\n", last_in_dnnl / COUNTED);
    CHECK(last_in_dnnl > 0, "no allocation inside oneDNN: the large products did not run there");
    CHECK(others == 0, "oneDNN products allocated %ld times outside OpenBLAS and oneDNN in %d warmed-up steps", others,
          COUNTED);
    measure("oneDNN products, dp = 2 x pp = 2, m = 2, deterministic", 1, (layout_t){2, 0, 1, 2, 2, 1}, xt, yt, &others);
    CHECK(others == 0, "oneDNN products under dp=2 pp=2 allocated %ld times outside OpenBLAS and oneDNN in %d steps",
          others, COUNTED);
    measure("oneDNN products, default strategy", 0, serial, xt, yt, &others);
    printf("note: oneDNN products with the default threads: %ld allocations outside oneDNN in %d steps (plans a "
           "thread made on first meeting a block shape)\n",
           others, COUNTED);
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

int main(int argc, char **argv) {
    /* Warm backtrace() (it loads libgcc_s on first use, which allocates). */
    {
        void *frames[4];
        (void)backtrace(frames, 4);
    }
    /* Every check but onednn_products' runs the products on OpenBLAS, which
     * allocates nothing; PARML_GEMM is read once, when OpenBLAS loads, so
     * the oneDNN run is a second process (run_c_tests.sh). */
    int onednn = argc > 1 && strcmp(argv[1], "onednn-products") == 0;
    setenv("PARML_GEMM", onednn ? "onednn" : "openblas", 1);

    float *x = (float *)malloc((size_t)B * F * sizeof(float));
    float y[B];
    uint32_t r = 7;
    for (int i = 0; i < B * F; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)(r >> 9) / 8388608.0f;
    }
    for (int i = 0; i < B; i++) y[i] = (float)(i % CLASSES);
    int64_t xd[3] = {B, H, W}, yd[1] = {B};
    int64_t y64[B];
    for (int i = 0; i < B; i++) y64[i] = i % CLASSES;
    parml_tensor xt = NULL, yt = NULL, yt64 = NULL;
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    OK(parml_tensor_create_typed(PARML_DTYPE_INT64, yd, 1, y64, &yt64));
    free(x);
    if (onednn) return onednn_products(xt, yt);

    long others = 0;
    /* With several OpenBLAS threads, Debian's OpenBLAS (built for 64 threads,
     * above its 32-thread stack limit) mallocs a 512 KiB job array in every
     * threaded sgemm (level3_thread.c). That is OpenBLAS's, not parml's: only
     * allocations outside OpenBLAS count against parml here. */
    const layout_t serial = {1, 0, 0, 1, 1, 1};
    long total = measure("default strategy", 0, serial, xt, yt, &others);
    printf("note: default strategy: %ld allocations in %d steps, %ld of them outside OpenBLAS\n", total, COUNTED,
           others);
    CHECK(others == 0, "%ld allocations outside OpenBLAS (parml's own) in %d warmed-up steps", others, COUNTED);
    total = measure("blas_threads = 1", 1, serial, xt, yt, &others);
    CHECK(total == 0, "parml_trainer_step allocated or freed %ld times in %d warmed-up steps (1 BLAS thread)", total,
          COUNTED);
    /* Data parallelism: rank threads, collectives and the deterministic
     * chunk tree reuse their buffers too. */
    total = measure("dp = 2, ZeRO-1", 1, (layout_t){2, 1, 0, 1, 1, 1}, xt, yt, &others);
    CHECK(total == 0, "dp=2 ZeRO-1 allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    total = measure("dp = 3, deterministic", 1, (layout_t){3, 0, 1, 1, 1, 1}, xt, yt, &others);
    CHECK(total == 0, "dp=3 deterministic allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    /* Pipelines (slots, send/recv, the streaming chunk tree) and tensor
     * slices (their all-reduces, the copy back into the host's model). */
    total = measure("pp = 2, m = 4, deterministic", 1, (layout_t){1, 0, 1, 2, 4, 1}, xt, yt, &others);
    CHECK(total == 0, "pp=2 allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    total = measure("dp = 2 x tp = 2, ZeRO-2", 1, (layout_t){2, 2, 0, 1, 1, 2}, xt, yt, &others);
    CHECK(total == 0, "dp=2 tp=2 allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    /* Overlap: buckets handed to each rank's communication thread (a queue
     * sized once) and reduced there while backward goes on. */
    measure_overlap = PARML_OVERLAP_ON;
    total = measure("dp = 2, ZeRO-0, overlap on", 1, (layout_t){2, 0, 0, 1, 1, 1}, xt, yt, &others);
    CHECK(total == 0, "dp=2 with overlap allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    total = measure("dp = 3, ZeRO-2, overlap on", 1, (layout_t){3, 2, 0, 1, 1, 1}, xt, yt, &others);
    CHECK(total == 0, "dp=3 ZeRO-2 with overlap allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    /* ZeRO-2 with micro-batches: each micro-batch's buckets reduced into
     * the shard (the pages outside it zeroed and handed back, then made
     * resident again before the next micro-batch writes them). With m > 1
     * on one stage, Flatten allocates a view per piece here under every
     * ZeRO stage (a known issue of its own), so the check is that ZeRO-2's
     * path adds nothing to ZeRO-1's count. */
    long zero1 = measure("dp = 4, ZeRO-1, m = 2, overlap on", 1, (layout_t){4, 1, 0, 1, 2, 1}, xt, yt, &others);
    total = measure("dp = 4, ZeRO-2, m = 2, overlap on", 1, (layout_t){4, 2, 0, 1, 2, 1}, xt, yt, &others);
    CHECK(total == zero1, "dp=4 ZeRO-2 m=2 with overlap allocated or freed %ld times in %d warmed-up steps, ZeRO-1 %ld", total,
          COUNTED, zero1);
    measure_overlap = PARML_OVERLAP_AUTO;

    /* bf16 products (since 0.3): operand copies and oneDNN matmul plans are
     * made in the warm-up steps; oneDNN's execute allocates its argument
     * map each call (as for convolutions), parml's own code nothing. Where
     * bf16 cannot run the trainer runs float32, which allocates nothing. */
    measure_precision = PARML_PRECISION_BF16;
    total = measure("bf16", 1, serial, xt, yt, &others);
    printf("note: bf16: %ld allocations per step inside oneDNN\n", last_in_dnnl / COUNTED);
    CHECK(others == 0, "bf16 allocated %ld times outside OpenBLAS and oneDNN in %d warmed-up steps", others, COUNTED);
    /* On two threads the large products are cut into blocks on parml's
     * threads, each block its own plan, made in the warm-up too. */
    total = measure("bf16, products cut over 2 threads", 2, serial, xt, yt, &others);
    CHECK(others == 0, "bf16 on 2 threads allocated %ld times outside OpenBLAS and oneDNN in %d warmed-up steps", others, COUNTED);
    total = measure("bf16, dp = 2 x pp = 2, m = 2, deterministic", 1, (layout_t){2, 0, 1, 2, 2, 1}, xt, yt, &others);
    CHECK(others == 0, "bf16 under dp=2 pp=2 allocated %ld times outside OpenBLAS and oneDNN in %d warmed-up steps",
          others, COUNTED);
    measure_precision = PARML_PRECISION_FP32;

    /* int64 labels (since 0.3): narrowed into a buffer the trainer keeps. */
    total = measure("int64 labels", 1, serial, xt, yt64, &others);
    CHECK(total == 0, "int64 labels allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    total = measure("int64 labels, pp = 2, m = 4", 1, (layout_t){1, 0, 1, 2, 4, 1}, xt, yt64, &others);
    CHECK(total == 0, "int64 labels pp=2 allocated or freed %ld times in %d warmed-up steps", total, COUNTED);

    /* The image kinds (since 0.3): convolution's column buffer, pooling's
     * argmax and every gradient are reused from step to step. */
    int64_t xd4[4] = {B, 1, H, W};
    parml_tensor xt4 = NULL;
    float *pixels = NULL;
    OK(parml_tensor_data(xt, &pixels));
    OK(parml_tensor_create(xd4, 4, pixels, &xt4));
    xt_is_image = 1;
    const layout_t dp_pp = {2, 0, 1, 2, 2, 1};
    setenv("PARML_CONV", "im2col", 1); /* read when a conv2d layer is made */
    total = measure("cnn, im2col", 1, serial, xt4, yt, &others);
    CHECK(total == 0, "the CNN (im2col) allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    total = measure("cnn, im2col, dp = 2 x pp = 2, m = 2, deterministic", 1, dp_pp, xt4, yt, &others);
    CHECK(total == 0, "the CNN (im2col) under dp=2 pp=2 allocated or freed %ld times in %d warmed-up steps", total,
          COUNTED);
    /* Tensor parallelism over the convolutions (since 0.3): channel slices,
     * their all-reduces and the per-channel bias after them. */
    cnn_pair = 1;
    total = measure("cnn, im2col, tp = 2 (the convolutions split), deterministic", 1, (layout_t){1, 0, 1, 1, 1, 2}, xt4,
                    yt, &others);
    CHECK(total == 0, "the CNN (im2col) under tp=2 allocated or freed %ld times in %d warmed-up steps", total, COUNTED);
    cnn_pair = 0;
    unsetenv("PARML_CONV");
    total = measure("cnn, default backend", 1, serial, xt4, yt, &others);
    printf("note: the CNN with the default conv2d backend: %ld allocations per step inside oneDNN\n",
           last_in_dnnl / COUNTED);
    CHECK(others == 0, "the CNN allocated %ld times outside OpenBLAS and oneDNN in %d warmed-up steps", others, COUNTED);
    total = measure("cnn, default backend, dp = 2 x pp = 2, m = 2, deterministic", 1, dp_pp, xt4, yt, &others);
    CHECK(others == 0, "the CNN under dp=2 pp=2 allocated %ld times outside OpenBLAS and oneDNN in %d warmed-up steps",
          others, COUNTED);
    xt_is_image = 0;
    parml_tensor_free(xt4);

    test_token_fit();
    test_augmented_fit();
    /* Generation: 32 more tokens, no more allocations (each call allocates
     * its prompt and result arrays, the same for any length). */
    OK(parml_blas_set_threads(1));
    parml_model g = build_gpt();
    (void)generate_allocs(g, 46); /* sizes every buffer for the longest call */
    long short_run = generate_allocs(g, 8), long_run = generate_allocs(g, 40);
    printf("generate: %ld allocations and frees for 8 tokens, %ld for 40\n", short_run, long_run);
    CHECK(long_run == short_run, "generating 32 more tokens allocated or freed %ld more times", long_run - short_run);
    parml_model_free(g);

    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_tensor_free(yt64);
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
