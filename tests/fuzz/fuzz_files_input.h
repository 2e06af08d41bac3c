/*
 * fuzz_files_input.h — how fuzz_files.c reads its input, shared with
 * make_seeds.c so the seed corpus always matches the harness.
 *
 * Byte 0 (mod FF_KINDS) chooses the loader; the rest is its input:
 *   FF_MODEL             parml_model_deserialize(rest)
 *   FF_MODEL_SEALED      the same, after appending rest's correct crc32 field
 *                        (so mutations reach the parser behind the checksum)
 *   FF_TENSOR            parml_tensor_deserialize(rest)
 *   FF_CHECKPOINT        parml_trainer_deserialize_checkpoint(ff_trainer, rest)
 *   FF_CHECKPOINT_SEALED the same, with rest's crc32 field appended
 */
#ifndef PARML_FUZZ_FILES_INPUT_H
#define PARML_FUZZ_FILES_INPUT_H

#include <parml.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

enum { FF_MODEL, FF_MODEL_SEALED, FF_TENSOR, FF_CHECKPOINT, FF_CHECKPOINT_SEALED, FF_KINDS };

/* The model the checkpoints are for: 4 -> 6, relu, residual(layer_norm, 6 -> 6), 6 -> 3. */
static inline parml_model ff_model(void) {
    parml_model m = NULL;
    if (parml_model_create(&m) != PARML_OK) abort();
    if (parml_model_add_linear(m, 4, 6, 1) || parml_model_add_activation(m, PARML_ACTIVATION_RELU) ||
        parml_model_begin_residual(m) || parml_model_add_layer_norm(m, 6, 1e-5f) ||
        parml_model_add_linear(m, 6, 6, 0) || parml_model_end_residual(m) || parml_model_add_linear(m, 6, 3, 1) ||
        parml_model_init(m, 1))
        abort();
    return m;
}

/* An AdamW trainer of ff_model (two state tensors). */
static inline parml_trainer ff_trainer(parml_model m) {
    parml_optimizer_params o;
    if (parml_optimizer_params_init(&o) != PARML_OK) abort();
    o.kind = PARML_OPTIMIZER_ADAMW;
    parml_trainer t = NULL;
    if (parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, NULL, &t) != PARML_OK) abort();
    return t;
}

/* body + its crc32 field (field 15, fixed32, zlib's CRC-32 of body): malloc'd, *n set. */
static inline uint8_t *ff_seal(const uint8_t *body, size_t len, size_t *n) {
    uint8_t *out = malloc(len + 5);
    if (!out) abort();
    for (size_t i = 0; i < len; i++) out[i] = body[i];
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, body, (uInt)len);
    out[len] = 15 << 3 | 5;
    for (int i = 0; i < 4; i++) out[len + 1 + i] = (uint8_t)(c >> (8 * i));
    *n = len + 5;
    return out;
}

#endif
