/*
 * fuzz_files.c — libFuzzer target for the file loaders behind
 * parml_model_deserialize, parml_tensor_deserialize and
 * parml_trainer_deserialize_checkpoint (the _load functions read a file and
 * call the same code). Input layout: fuzz_files_input.h.
 *
 * What fails the run (abort, so libFuzzer records a crash): any sanitizer
 * report; a failure with a status other than FORMAT, OUT_OF_MEMORY, (a
 * checkpoint of another model or optimizer) INVALID_ARGUMENT, (a checkpoint
 * whose optimizer state is not the model's size) SHAPE, or (an input
 * with an auth field, or any input given a key) AUTH_MISSING, AUTH_KEY and
 * AUTH_FAILED, or with a
 * message that does not name the call, or that wrote *out; a loaded model
 * or tensor that cannot be inspected; a failed checkpoint restore that
 * changed the trainer.
 *
 * Build and run: make fuzz (docs/reliability.md).
 */
#include "fuzz_files_input.h"

#include <stdio.h>
#include <string.h>

#define SENTINEL ((void *)(uintptr_t)0xF11Eu)

static parml_model model;
static parml_trainer trainer;

static void fail(const char *what, parml_status st) {
    fprintf(stderr, "fuzz_files: %s: status %d (%s): '%s'\n", what, (int)st, parml_status_string(st), parml_last_error());
    abort();
}

/* shape_ok: the checkpoint loader documents PARML_ERR_SHAPE for optimizer
   state of another size than the model; the model and tensor loaders don't. */
static void expect_clean_failure(parml_status st, const char *fn, int out_untouched, int shape_ok) {
    if (st != PARML_ERR_FORMAT && st != PARML_ERR_OUT_OF_MEMORY && st != PARML_ERR_INVALID_ARGUMENT &&
        st != PARML_ERR_AUTH_MISSING && st != PARML_ERR_AUTH_KEY && st != PARML_ERR_AUTH_FAILED &&
        !(shape_ok && st == PARML_ERR_SHAPE))
        fail("unexpected status", st);
    if (strstr(parml_last_error(), fn) == NULL) fail("message does not name the call", st);
    if (!out_untouched) fail("*out written on failure", st);
}

static void load_model(const uint8_t *p, size_t n) {
    parml_model m = (parml_model)SENTINEL;
    parml_status st = parml_model_deserialize(p, n, &m);
    if (st != PARML_OK) {
        expect_clean_failure(st, "parml_model_deserialize", m == (parml_model)SENTINEL, 0);
        return;
    }
    int64_t count = -1;
    char *text = NULL;
    if ((st = parml_model_num_params(m, &count)) != PARML_OK || count < 0) fail("num_params of a loaded model", st);
    if ((st = parml_model_summary(m, &text)) != PARML_OK) fail("summary of a loaded model", st);
    parml_buffer_free(text);
    parml_model_free(m);
}

/* The authenticated loader with a fixed key: the tag is checked before the
   parser runs, so a fuzzer cannot reach it without the key; this walks the
   field-locating code in front of it. */
static void load_model_with_key(const uint8_t *p, size_t n) {
    static const char key[] = "fuzz-files-key-0123456789abcdef";
    parml_model m = (parml_model)SENTINEL;
    parml_status st = parml_model_deserialize_authenticated(p, n, key, sizeof key - 1, &m);
    if (st != PARML_OK) {
        expect_clean_failure(st, "parml_model_deserialize_authenticated", m == (parml_model)SENTINEL, 0);
        return;
    }
    parml_model_free(m);
}

static void load_tensor(const uint8_t *p, size_t n) {
    parml_tensor t = (parml_tensor)SENTINEL;
    parml_status st = parml_tensor_deserialize(p, n, &t);
    if (st != PARML_OK) {
        expect_clean_failure(st, "parml_tensor_deserialize", t == (parml_tensor)SENTINEL, 0);
        return;
    }
    int64_t count = -1;
    if ((st = parml_tensor_numel(t, &count)) != PARML_OK || count < 0) fail("numel of a loaded tensor", st);
    parml_tensor_free(t);
}

static void load_checkpoint(const uint8_t *p, size_t n) {
    float before[128], after[128];
    int64_t np = 0, steps = -1;
    if (parml_model_num_params(model, &np) != PARML_OK || np > 128) abort();
    parml_model_get_params(model, before, (ptrdiff_t)np);
    parml_status st = parml_trainer_deserialize_checkpoint(trainer, p, n);
    if (st == PARML_OK) return;
    parml_model_get_params(model, after, (ptrdiff_t)np);
    parml_trainer_step_count(trainer, &steps);
    expect_clean_failure(st, "parml_trainer_deserialize_checkpoint", memcmp(before, after, (size_t)np * sizeof *before) == 0, 1);
    (void)steps;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model) {
        model = ff_model();
        trainer = ff_trainer(model);
    }
    if (size < 1) return 0;
    int kind = data[0] % FF_KINDS;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    uint8_t *sealed = NULL;
    if (kind == FF_MODEL_SEALED || kind == FF_CHECKPOINT_SEALED) {
        sealed = ff_seal(p, n, &n);
        p = sealed;
    }
    switch (kind) {
    case FF_MODEL:
    case FF_MODEL_SEALED:
        load_model(p, n);
        load_model_with_key(p, n);
        break;
    case FF_TENSOR: load_tensor(p, n); break;
    default: load_checkpoint(p, n); break;
    }
    free(sealed);
    return 0;
}
