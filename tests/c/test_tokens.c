/*
 * test_tokens.c — token datasets through the C API: bad input returns the
 * documented codes and leaves *out untouched; the queries describe the
 * windows; a tiny GPT fits an epoch of windows; data parallel and pipeline
 * layouts give the serial parameters bit for bit in deterministic mode
 * (the windows depend on the global sample index only); the dataset keeps
 * the ids once, not the windows.
 * Prints "N passed, N failed"; exits nonzero on any failure.
 */
#include "test_common.h"

#include <unistd.h>

enum { V = 7, C = 16, T = 8, N_IDS = 2001, BATCH = 16 };

/* A learnable stream: each id is the one after its predecessor, mod V, with
 * a skip every 10 ids so that a window is not a pure rotation. */
static void make_ids(int64_t *ids, int n) {
    for (int i = 0; i < n; i++) ids[i] = (i + i / 10) % V;
}

static parml_tensor ids_tensor(int dtype, const void *data, int64_t n) {
    parml_tensor t = NULL;
    OK(parml_tensor_create_typed(dtype, &n, 1, data, &t));
    return t;
}

/* What *out holds before a call that must leave it untouched on failure. */
#define SENTINEL ((parml_dataset)(uintptr_t)0x5150)

/* Frees a dataset a call made, or checks that a failed call left *out untouched. */
static parml_status settle(parml_status st, parml_dataset d) {
    if (st == PARML_OK) parml_dataset_free(d);
    else CHECK(d == SENTINEL, "*out changed on failure (status %d)", (int)st);
    return st;
}

static parml_status create_status(parml_tensor ids, int64_t block, const parml_token_params *p) {
    parml_dataset d = SENTINEL;
    parml_status st = parml_dataset_create_tokens(ids, block, p, &d);
    return settle(st, d);
}

static parml_status load_status(const char *path, int32_t type, int64_t block) {
    parml_dataset d = SENTINEL;
    parml_status st = parml_dataset_load_tokens(path, type, block, NULL, &d);
    return settle(st, d);
}

static void test_bad_input(void) {
    CHECK(parml_token_params_init(NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL params");
    parml_token_params p;
    OK(parml_token_params_init(&p));
    CHECK(p.struct_size == sizeof p && p.mode == PARML_TOKENS_RANDOM && p.seed == 0 && p.windows_per_epoch == 0,
          "defaults: random, seed 0, (N-1)/T windows");

    int32_t ids[20];
    for (int i = 0; i < 20; i++) ids[i] = i % 5;
    parml_tensor t = ids_tensor(PARML_DTYPE_INT32, ids, 20);
    parml_dataset d = NULL;
    CHECK(parml_dataset_create_tokens(NULL, 4, NULL, &d) == PARML_ERR_INVALID_ARGUMENT && !d, "NULL ids");
    CHECK(parml_dataset_create_tokens(t, 4, NULL, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL out");
    CHECK(create_status(t, 0, NULL) == PARML_ERR_INVALID_ARGUMENT, "T = 0");
    CHECK(create_status(t, -3, NULL) == PARML_ERR_INVALID_ARGUMENT, "T < 0");
    CHECK(create_status(t, (int64_t)1 << 40, NULL) == PARML_ERR_INVALID_ARGUMENT, "T = 2^40");
    CHECK(create_status(t, 20, NULL) == PARML_ERR_INVALID_ARGUMENT, "20 ids make no window of 20");
    CHECK(create_status(t, 19, NULL) == PARML_OK, "20 ids make one window of 19");
    p.mode = 9;
    CHECK(create_status(t, 4, &p) == PARML_ERR_INVALID_ARGUMENT, "unknown mode");
    OK(parml_token_params_init(&p));
    p.windows_per_epoch = -1;
    CHECK(create_status(t, 4, &p) == PARML_ERR_INVALID_ARGUMENT, "negative windows");
    p.windows_per_epoch = (int64_t)1 << 40;
    CHECK(create_status(t, 4, &p) == PARML_ERR_INVALID_ARGUMENT, "2^40 windows");
    p.mode = PARML_TOKENS_SEQUENTIAL;
    p.windows_per_epoch = 2;
    CHECK(create_status(t, 4, &p) == PARML_ERR_INVALID_ARGUMENT, "a window count in sequential mode");
    p.struct_size = 3;
    CHECK(create_status(t, 4, &p) == PARML_ERR_INVALID_ARGUMENT, "struct_size 3");
    parml_tensor_free(t);

    ids[7] = -1;
    t = ids_tensor(PARML_DTYPE_INT32, ids, 20);
    CHECK(create_status(t, 4, NULL) == PARML_ERR_INVALID_ARGUMENT, "a negative id");
    parml_tensor_free(t);
    int64_t big[4] = {1, 2, (int64_t)1 << 40, 3};
    t = ids_tensor(PARML_DTYPE_INT64, big, 4);
    CHECK(create_status(t, 2, NULL) == PARML_ERR_INVALID_ARGUMENT, "an int64 id of 2^40");
    parml_tensor_free(t);
    big[2] = ((int64_t)1 << 24) + 1;
    t = ids_tensor(PARML_DTYPE_INT64, big, 4);
    CHECK(create_status(t, 2, NULL) == PARML_ERR_INVALID_ARGUMENT, "an id of 2^24 + 1");
    parml_tensor_free(t);
    float fl[4] = {1, 2.5f, 3, 4};
    t = ids_tensor(PARML_DTYPE_FLOAT32, fl, 4);
    CHECK(create_status(t, 2, NULL) == PARML_ERR_INVALID_ARGUMENT, "a float id of 2.5");
    parml_tensor_free(t);
    float huge[4] = {1, 2147483648.0f, 3, 4};
    t = ids_tensor(PARML_DTYPE_FLOAT32, huge, 4);
    CHECK(create_status(t, 2, NULL) == PARML_ERR_INVALID_ARGUMENT, "a float id of 2^31");
    parml_tensor_free(t);
    int64_t dims[2] = {4, 5};
    OK(parml_tensor_create_typed(PARML_DTYPE_INT32, dims, 2, ids, &t));
    CHECK(create_status(t, 2, NULL) == PARML_ERR_SHAPE, "ids of rank 2");
    parml_tensor_free(t);

    /* Files. */
    char path[512];
    CHECK(load_status(NULL, PARML_TOKEN_FILE_UINT16, 2) == PARML_ERR_INVALID_ARGUMENT, "NULL path");
    scratch_path(path, sizeof path, "missing.bin");
    CHECK(load_status(path, PARML_TOKEN_FILE_UINT16, 2) == PARML_ERR_IO, "a missing file");
    CHECK(load_status(scratch_dir(), PARML_TOKEN_FILE_UINT16, 2) == PARML_ERR_IO, "a directory");
    unsigned char odd[7] = {1, 0, 2, 0, 3, 0, 4};
    scratch_path(path, sizeof path, "odd.bin");
    CHECK(write_file(path, odd, sizeof odd) == 0, "write odd.bin");
    CHECK(load_status(path, PARML_TOKEN_FILE_UINT16, 2) == PARML_ERR_FORMAT, "a truncated uint16 file");
    CHECK(load_status(path, 0, 2) == PARML_ERR_INVALID_ARGUMENT, "file type 0");
    CHECK(load_status(path, PARML_TOKEN_FILE_UINT8, 2) == PARML_OK, "the same bytes as uint8");
    CHECK(load_status(path, PARML_TOKEN_FILE_UINT8, 7) == PARML_ERR_INVALID_ARGUMENT, "too short for T = 7");
    unsigned char wide[8] = {1, 0, 0, 0, 0, 0, 0, 2}; /* 1, then 2^25 */
    scratch_path(path, sizeof path, "wide.bin");
    CHECK(write_file(path, wide, sizeof wide) == 0, "write wide.bin");
    CHECK(load_status(path, PARML_TOKEN_FILE_UINT32, 1) == PARML_ERR_FORMAT, "a uint32 id of 2^25");
    CHECK(load_status(path, PARML_TOKEN_FILE_INT32, 1) == PARML_ERR_FORMAT, "the same as int32");
    remove(path);
    scratch_path(path, sizeof path, "empty.bin");
    CHECK(write_file(path, odd, 0) == 0, "write empty.bin");
    CHECK(load_status(path, PARML_TOKEN_FILE_UINT8, 1) == PARML_ERR_FORMAT, "an empty file");
    remove(path);
    scratch_path(path, sizeof path, "odd.bin");
    remove(path);
}

static void test_queries_and_files(void) {
    /* nanoGPT's train.bin layout: uint16 little-endian, no header. */
    uint16_t raw[41];
    int32_t ids[41];
    for (int i = 0; i < 41; i++) ids[i] = raw[i] = (uint16_t)(i * 37 % 300);
    char path[512];
    scratch_path(path, sizeof path, "train.bin");
    CHECK(write_file(path, (const unsigned char *)raw, sizeof raw) == 0, "write train.bin");
    parml_token_params p;
    OK(parml_token_params_init(&p));
    p.mode = PARML_TOKENS_SEQUENTIAL;
    parml_dataset a = NULL, b = NULL;
    OK(parml_dataset_load_tokens(path, PARML_TOKEN_FILE_UINT16, 8, &p, &a));
    parml_tensor t = ids_tensor(PARML_DTYPE_INT32, ids, 41);
    OK(parml_dataset_create_tokens(t, 8, &p, &b));
    parml_tensor_free(t); /* the dataset has its own copy */
    remove(path);
    for (int k = 0; k < 2; k++) {
        parml_dataset d = k ? b : a;
        int64_t n = 0, classes = 0, dims[4] = {0};
        ptrdiff_t nd = 0;
        OK(parml_dataset_size(d, &n));
        OK(parml_dataset_num_classes(d, &classes));
        OK(parml_dataset_input_shape(d, dims, 4, &nd));
        CHECK(n == 5, "(41 - 1) / 8 = 5 windows, got %lld", (long long)n);
        CHECK(classes == 297, "largest id 296 + 1, got %lld", (long long)classes);
        CHECK(nd == 2 && dims[0] == 5 && dims[1] == 8, "input shape (5, 8)");
    }
    parml_dataset_free(a);
    parml_dataset_free(b);
}

static parml_model tiny_gpt(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    parml_attribute tok[] = {{.name = "num_embeddings", .type = PARML_ATTR_INT, .int_value = V},
                             {.name = "embedding_dim", .type = PARML_ATTR_INT, .int_value = C}};
    parml_attribute pos[] = {{.name = "max_positions", .type = PARML_ATTR_INT, .int_value = T},
                             {.name = "embedding_dim", .type = PARML_ATTR_INT, .int_value = C}};
    parml_attribute attn[] = {{.name = "features", .type = PARML_ATTR_INT, .int_value = C},
                              {.name = "heads", .type = PARML_ATTR_INT, .int_value = 2}};
    OK(parml_model_add_layer(m, "embedding", tok, 2));
    OK(parml_model_add_layer(m, "position_embedding", pos, 2));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_layer_norm(m, C, 1e-5f));
    OK(parml_model_add_layer(m, "causal_self_attention", attn, 2));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_layer_norm(m, C, 1e-5f));
    OK(parml_model_add_linear(m, C, V, 0));
    OK(parml_model_init(m, 5));
    return m;
}

static parml_trainer gpt_trainer(parml_model m, int dp, int pp) {
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAMW;
    o.learning_rate = 1e-2f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = dp;
    s.pp = pp;
    s.micro_batches = pp;
    s.deterministic = 1;
    s.grad_chunk = 4;
    s.seed = 11;
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t));
    return t;
}

static parml_dataset gpt_data(int mode, int64_t windows, uint64_t seed) {
    static int64_t ids[N_IDS];
    make_ids(ids, N_IDS);
    parml_tensor t = ids_tensor(PARML_DTYPE_INT64, ids, N_IDS);
    parml_token_params p;
    OK(parml_token_params_init(&p));
    p.mode = mode;
    p.seed = seed;
    p.windows_per_epoch = windows;
    parml_dataset d = NULL;
    OK(parml_dataset_create_tokens(t, T, &p, &d));
    parml_tensor_free(t);
    return d;
}

enum { MAX_PARAMS = 4096 };

/* Trains a fresh tiny GPT under (dp, pp) for `epochs` epochs of `train`;
 * writes its parameters and returns the validation loss after. */
static float fit_gpt(int dp, int pp, parml_dataset train, parml_dataset val, int epochs, float *params, int64_t *count,
                     float *loss_before) {
    parml_model m = tiny_gpt();
    parml_trainer t = gpt_trainer(m, dp, pp);
    if (loss_before) OK(parml_trainer_evaluate(t, val, BATCH, loss_before, NULL));
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.epochs = epochs;
    f.batch_size = BATCH;
    parml_epoch_metrics last = {.struct_size = sizeof last};
    OK(parml_trainer_fit(t, train, &f, &last));
    CHECK(last.steps == epochs * 8 || last.steps == epochs * 16, "steps %lld", (long long)last.steps);
    float loss = NAN;
    OK(parml_trainer_evaluate(t, val, BATCH, &loss, NULL));
    OK(parml_model_num_params(m, count));
    CHECK(*count <= MAX_PARAMS, "%lld parameters", (long long)*count);
    OK(parml_model_get_params(m, params, (ptrdiff_t)*count));
    parml_trainer_free(t);
    parml_model_free(m);
    return loss;
}

static void test_gpt_fits_and_layouts_agree(void) {
    /* 128 random windows (8 batches) per epoch; validation: 64 other windows. */
    parml_dataset train = gpt_data(PARML_TOKENS_RANDOM, 128, 1);
    parml_dataset val = gpt_data(PARML_TOKENS_RANDOM, 64, 2);
    static float serial[MAX_PARAMS], other[MAX_PARAMS];
    int64_t n = 0, n2 = 0;
    float before = 0;
    float after = fit_gpt(1, 1, train, val, 1, serial, &n, &before);
    printf("note: tiny GPT, one epoch of 128 random windows: validation loss %.4f -> %.4f\n", before, after);
    CHECK(before > 1.6f && before < 2.4f, "the first loss is near ln 7 = 1.95 (%.4f)", before);
    CHECK(after < 0.75f * before, "one epoch lowers the loss by a quarter or more (%.4f -> %.4f)", before, after);

    int layouts[3][2] = {{2, 1}, {1, 2}, {2, 2}};
    for (int k = 0; k < 3; k++) {
        float loss = fit_gpt(layouts[k][0], layouts[k][1], train, val, 1, other, &n2, NULL);
        CHECK(n2 == n && memcmp(serial, other, (size_t)n * sizeof(float)) == 0 && loss == after,
              "dp %d x pp %d gives the serial parameters bit for bit", layouts[k][0], layouts[k][1]);
    }
    parml_dataset_free(train);

    /* Sequential windows, shuffled per epoch: (2001 - 1) / 8 = 250 windows, 16 batches. */
    parml_dataset seq = gpt_data(PARML_TOKENS_SEQUENTIAL, 0, 0);
    fit_gpt(1, 1, seq, val, 1, serial, &n, NULL);
    fit_gpt(2, 1, seq, val, 1, other, &n2, NULL);
    CHECK(memcmp(serial, other, (size_t)n * sizeof(float)) == 0, "sequential windows: dp 2 gives the serial parameters");

    /* A model whose vocabulary is smaller than the largest id is refused before any step. */
    parml_model m = NULL;
    OK(parml_model_create(&m));
    parml_attribute tok[] = {{.name = "num_embeddings", .type = PARML_ATTR_INT, .int_value = V},
                             {.name = "embedding_dim", .type = PARML_ATTR_INT, .int_value = C}};
    OK(parml_model_add_layer(m, "embedding", tok, 2));
    OK(parml_model_add_linear(m, C, V - 1, 0));
    OK(parml_model_init(m, 5));
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, NULL, &t));
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.batch_size = BATCH;
    CHECK(parml_trainer_fit(t, seq, &f, NULL) == PARML_ERR_INVALID_ARGUMENT, "id 6 is no class of a 6-way head");
    int64_t steps = -1;
    OK(parml_trainer_step_count(t, &steps));
    CHECK(steps == 0, "no step was taken (%lld)", (long long)steps);
    parml_trainer_free(t);
    parml_model_free(m);
    parml_dataset_free(seq);
    parml_dataset_free(val);
}

/* Resident memory in KiB (Linux), or -1. */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

static void test_windows_are_not_stored(void) {
    /* 1 M ids with T = 64: the windows would be 2 x 64 M values; the dataset holds 4 MB of ids. */
    enum { M = 1 << 20 };
    int32_t *ids = malloc((size_t)M * sizeof *ids);
    for (int i = 0; i < M; i++) ids[i] = i % 65;
    parml_tensor t = ids_tensor(PARML_DTYPE_INT32, ids, M);
    free(ids);
    long before = rss_kib();
    parml_dataset d = NULL;
    OK(parml_dataset_create_tokens(t, 64, NULL, &d));
    long grew = rss_kib() - before;
    if (before < 0) {
        printf("skip: /proc/self/status has no VmRSS\n");
    } else {
        printf("note: a dataset over 1 M ids (T = 64) grew resident memory by %ld KiB\n", grew);
        CHECK(grew < 12 * 1024, "at most the ids' 4 MiB and some slack, not the windows (%ld KiB)", grew);
    }
    int64_t n = 0;
    OK(parml_dataset_size(d, &n));
    CHECK(n == (M - 1) / 64, "(N - 1) / T windows (%lld)", (long long)n);
    parml_dataset_free(d);
    parml_tensor_free(t);
}

int main(void) {
    test_bad_input();
    test_queries_and_files();
    test_gpt_fits_and_layouts_agree();
    test_windows_are_not_stored();
    rmdir(scratch_dir());
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
