/*
 * common.h — what the exchange test's writer and reader agree on: the
 * probe batch both predict on, and small file helpers.
 */
#ifndef PARML_EXCHANGE_COMMON_H
#define PARML_EXCHANGE_COMMON_H

#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parml.h"

enum { PROBE_N = 32, FEATURES = 10, CLASSES = 3 };

#define DIE_IF(cond, ...)                                  \
    do {                                                   \
        if (cond) {                                        \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, " (%s)\n", parml_last_error()); \
            exit(1);                                       \
        }                                                  \
    } while (0)

/* The inputs both processes predict on: deterministic, not random. */
static inline parml_tensor probe_inputs(void) {
    static float x[PROBE_N * FEATURES];
    for (int i = 0; i < PROBE_N * FEATURES; i++) x[i] = cosf((float)i * 0.61f) * 2.0f;
    int64_t dims[2] = {PROBE_N, FEATURES};
    parml_tensor t = NULL;
    DIE_IF(parml_tensor_create(dims, 2, x, &t) != PARML_OK, "tensor_create");
    return t;
}

/* Predictions of `m` on the probe, into out[PROBE_N * CLASSES]. */
static inline void probe_predict(parml_model m, float *out) {
    parml_tensor x = probe_inputs(), y = NULL;
    DIE_IF(parml_model_predict(m, x, &y) != PARML_OK, "predict");
    DIE_IF(parml_tensor_read(y, out, PROBE_N * CLASSES) != PARML_OK, "tensor_read");
    parml_tensor_free(x);
    parml_tensor_free(y);
}

static inline void write_floats(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    DIE_IF(!f || fwrite(v, sizeof *v, n, f) != n || fclose(f) != 0, "write %s", path);
}

#endif
