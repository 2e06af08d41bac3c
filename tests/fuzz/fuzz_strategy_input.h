/*
 * fuzz_strategy_input.h — how fuzz_strategy.c reads its input, shared with
 * make_seeds.c so the seed corpus always matches the harness.
 *
 *   offset  size  field
 *   0       1     flags: bit 0 optimizer = NULL, bit 1 strategy = NULL,
 *                 bit 2 a second step, bit 3 model_init before trainer_create
 *                 is skipped (a trainer on an uninitialised model)
 *   1       1     optimizer struct_size: < 0xF0 means sizeof, else (b - 0xF0) * 8
 *   2       1     strategy struct_size: the same
 *   3       1     batch rows: 1 + b % 8
 *   4       4     loss (int32, little-endian; passed raw)
 *   8       8     model seed
 *   16      FZ_OPT_BODY   optimizer struct after struct_size (raw bytes)
 *   ...     FZ_STRAT_BODY strategy struct after struct_size (raw bytes)
 *   ...     rest  model: up to FZ_MAX_OPS ops of 3 bytes (kind, a, b), see fuzz_strategy.c
 * Missing bytes read as zero.
 */
#ifndef PARML_FUZZ_STRATEGY_INPUT_H
#define PARML_FUZZ_STRATEGY_INPUT_H

#include <parml.h>
#include <stddef.h>

#define FZ_HEADER 16
#define FZ_OPT_BODY (sizeof(parml_optimizer_params) - sizeof(size_t))
#define FZ_STRAT_BODY (sizeof(parml_strategy_params) - sizeof(size_t))
#define FZ_MODEL_AT (FZ_HEADER + FZ_OPT_BODY + FZ_STRAT_BODY)
#define FZ_MAX_OPS 8

enum fz_op {
    FZ_LINEAR = 0,     /* a: in_features 1 + a % 8, b: out 1 + b % 8 (bit 7 of b: no bias) */
    FZ_ACTIVATION = 1, /* a: kind, raw (valid 1..4) */
    FZ_DROPOUT = 2,    /* a: p = a / 200 (valid < 1) */
    FZ_LAYER_NORM = 3, /* a: features 1 + a % 8, b: eps = b ? 1e-5 * b : 0 (invalid) */
    FZ_FLATTEN = 4,
    FZ_BEGIN_RESIDUAL = 5,
    FZ_END_RESIDUAL = 6,
    FZ_OP_KINDS = 7 /* kind byte % FZ_OP_KINDS */
};

#endif
