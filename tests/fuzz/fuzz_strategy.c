/*
 * fuzz_strategy.c — libFuzzer target for the layout / optimizer validation
 * of parml_trainer_create, and one or two training steps on what it accepts.
 *
 * The input (layout in fuzz_strategy_input.h) is read as a
 * parml_optimizer_params, a parml_strategy_params (raw bytes, struct_size
 * chosen by the input too), a loss kind and a tiny model of up to 8 layers.
 * The harness builds the model (bad layer arguments must be refused), then
 * calls parml_trainer_create; when that succeeds it runs parml_trainer_step
 * on a batch of 1-8 rows.
 *
 * What fails the run (abort, so libFuzzer records a crash): any sanitizer
 * report; PARML_ERR_INTERNAL (a bug by the header's own definition) or a
 * status outside the known codes; a failing call with an empty
 * parml_last_error(); a failing create that wrote its out-parameter.
 *
 * Values that only cost time are folded into cheap ones, so that runs stay
 * fast; values outside the valid range pass unchanged, so validation sees
 * them: dp, tp and pp in 5..4096 become 1..4, micro_batches in 9..65536
 * becomes 1..8, blas_threads in 0..1024 becomes 0..2, and a valid
 * watchdog_seconds becomes 0.5..2 s (no step may time out).
 *
 * Build and run: make fuzz (docs/reliability.md).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_strategy_input.h"

#define SENTINEL_TRAINER ((parml_trainer)(uintptr_t)0xF022u)

static void fail(const char *what, parml_status st) {
    fprintf(stderr, "fuzz_strategy: %s: status %d (%s): '%s'\n", what, (int)st, parml_status_string(st),
            parml_last_error());
    abort();
}

/* A failing call must leave a message and use a known code other than
 * INTERNAL. NONFINITE is an expected outcome: fuzzed learning rates and
 * inputs overflow, and such a step is skipped. */
static void check_error(const char *fn, parml_status st) {
    if (st == PARML_OK) return;
    const char *msg = parml_last_error();
    if (st == PARML_ERR_INTERNAL || st < 0 || st > PARML_ERR_NONFINITE) fail(fn, st);
    if (msg == NULL || msg[0] == 0) fail("empty parml_last_error()", st);
}

struct reader {
    const uint8_t *data;
    size_t size, at;
};

static void take(struct reader *r, void *dst, size_t n) {
    size_t have = r->at < r->size ? r->size - r->at : 0;
    size_t k = have < n ? have : n;
    if (k) memcpy(dst, r->data + r->at, k);
    if (k < n) memset((uint8_t *)dst + k, 0, n - k);
    r->at += n;
}

static uint8_t byte(struct reader *r) {
    uint8_t b;
    take(r, &b, 1);
    return b;
}

static size_t struct_size(uint8_t mode, size_t full) { return mode < 0xF0 ? full : (size_t)(mode - 0xF0) * 8; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct reader r = {data, size, 0};
    uint8_t flags = byte(&r), opt_mode = byte(&r), strat_mode = byte(&r);
    int rows = 1 + byte(&r) % 8;
    int32_t loss;
    uint64_t seed;
    take(&r, &loss, sizeof loss);
    take(&r, &seed, sizeof seed);

    parml_optimizer_params opt;
    parml_strategy_params st;
    take(&r, (uint8_t *)&opt + sizeof(size_t), FZ_OPT_BODY);
    take(&r, (uint8_t *)&st + sizeof(size_t), FZ_STRAT_BODY);
    opt.struct_size = struct_size(opt_mode, sizeof opt);
    st.struct_size = struct_size(strat_mode, sizeof st);
    /* The MPI backend would start an MPI runtime inside the fuzzer (a
       singleton world for a layout of 1 rank); its layouts are checked by
       tests/mpi instead. */
    if (st.backend == PARML_BACKEND_MPI) st.backend = PARML_BACKEND_THREADS;
    if (st.dp >= 5 && st.dp <= 4096) st.dp = 1 + st.dp % 4;
    if (st.tp >= 5 && st.tp <= 4096) st.tp = 1 + st.tp % 4;
    if (st.pp >= 5 && st.pp <= 4096) st.pp = 1 + st.pp % 4;
    if (st.micro_batches >= 9 && st.micro_batches <= 65536) st.micro_batches = 1 + st.micro_batches % 8;
    if (st.blas_threads >= 0 && st.blas_threads <= 1024) st.blas_threads %= 3;
    if (isfinite(st.watchdog_seconds) && st.watchdog_seconds > 0 && st.watchdog_seconds <= 86400)
        st.watchdog_seconds = 0.5 + fmod(st.watchdog_seconds, 1.5);

    /* The model. */
    parml_model model = NULL;
    parml_status s = parml_model_create(&model);
    if (s != PARML_OK) fail("parml_model_create", s);
    int in_features = 0, flatten_first = 0;
    for (int i = 0; i < FZ_MAX_OPS && r.at < r.size; i++) {
        uint8_t kind = byte(&r) % FZ_OP_KINDS, a = byte(&r), b = byte(&r);
        switch (kind) {
        case FZ_LINEAR:
            if (i == 0) in_features = 1 + a % 8;
            s = parml_model_add_linear(model, 1 + a % 8, 1 + (b & 0x7F) % 8, (b & 0x80) == 0);
            break;
        case FZ_ACTIVATION: s = parml_model_add_activation(model, (int32_t)a); break;
        case FZ_DROPOUT: s = parml_model_add_dropout(model, (float)a / 200.0f); break;
        case FZ_LAYER_NORM:
            if (i == 0) in_features = 1 + a % 8;
            s = parml_model_add_layer_norm(model, 1 + a % 8, b ? 1e-5f * (float)b : 0.0f);
            break;
        case FZ_FLATTEN:
            if (i == 0) flatten_first = 1;
            s = parml_model_add_flatten(model);
            break;
        case FZ_BEGIN_RESIDUAL: s = parml_model_begin_residual(model); break;
        default: s = parml_model_end_residual(model); break;
        }
        check_error("parml_model_add_*", s);
    }
    if (!(flags & 8)) check_error("parml_model_init", parml_model_init(model, seed));

    parml_trainer trainer = SENTINEL_TRAINER;
    s = parml_trainer_create(model, loss, (flags & 1) ? NULL : &opt, (flags & 2) ? NULL : &st, &trainer);
    check_error("parml_trainer_create", s);
    if (s != PARML_OK) {
        if (trainer != SENTINEL_TRAINER) fail("parml_trainer_create wrote *out on failure", s);
        parml_model_free(model);
        return 0;
    }
    if (trainer == SENTINEL_TRAINER || trainer == NULL) fail("parml_trainer_create returned no trainer", s);

    /* One batch: (rows, F) or, when the model starts with a flatten, (rows, 2, 2). */
    int64_t xdims[3] = {rows, in_features ? in_features : 4, 2};
    ptrdiff_t xnd = 2;
    if (flatten_first) {
        xdims[1] = 2;
        xnd = 3;
    }
    float xv[8 * 8 * 2];
    for (size_t i = 0; i < sizeof xv / sizeof xv[0]; i++) xv[i] = (float)((int)(i * 37 % 17) - 8) / 8.0f;
    parml_tensor x = NULL, y = NULL;
    s = parml_tensor_create(xdims, xnd, xv, &x);
    if (s != PARML_OK) fail("parml_tensor_create (inputs)", s);
    int64_t odims[8];
    ptrdiff_t ond = 0;
    s = parml_model_output_shape(model, xdims, xnd, odims, 8, &ond);
    check_error("parml_model_output_shape", s);
    float yv[8 * 8 * 2 * 8];
    if (s == PARML_OK && loss == PARML_LOSS_MSE) {
        int64_t n = 1;
        for (ptrdiff_t i = 0; i < ond; i++) n *= odims[i];
        if (n > (int64_t)(sizeof yv / sizeof yv[0])) n = 0; /* cannot happen with these sizes */
        for (int64_t i = 0; i < n; i++) yv[i] = 0.5f;
        if (n) s = parml_tensor_create(odims, ond, yv, &y);
    } else {
        int64_t classes = s == PARML_OK && ond > 0 ? odims[ond - 1] : 2;
        for (int i = 0; i < rows; i++) yv[i] = (float)(i % (classes > 0 ? classes : 1));
        int64_t ydims[1] = {rows};
        s = parml_tensor_create(ydims, 1, yv, &y);
    }
    if (s != PARML_OK) fail("parml_tensor_create (targets)", s);

    for (int step = 0; step < ((flags & 4) ? 2 : 1); step++) {
        float l = 0;
        s = parml_trainer_step(trainer, x, y, &l);
        check_error("parml_trainer_step", s);
        if (s != PARML_OK) break;
    }
    parml_tensor_free(x);
    parml_tensor_free(y);
    parml_trainer_free(trainer);
    parml_model_free(model);
    return 0;
}
