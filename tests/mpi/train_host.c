/*
 * train_host.c — one training run of a given layout, for the MPI-vs-threads
 * comparison of tests/mpi/run_mpi_tests.sh.
 *
 * usage: train_host BACKEND DP PP TP MICRO SCHEDULE ZERO OUT [STEPS [SAVE [LOAD]]]
 *   BACKEND threads | mpi; SCHEDULE gpipe | 1f1b | interleaved (two runs of
 *   layers per stage). Trains STEPS (default 4)
 *   deterministic steps of an MLP with a residual block and a column/row
 *   pair on fixed data (every process passes the whole batch; each rank
 *   takes its rows), then rank 0 writes the host model's parameters (raw
 *   float32) to OUT and every process prints "rank R: ok loss L". LOAD (not
 *   "-") restores a checkpoint first; SAVE (not "-") saves one at the end
 *   (every process calls it; on MPI, rank 0 writes the file). With
 *   TRAIN_HOST_LOCAL=1 each process passes only its replica's rows
 *   (parml_trainer_set_local_batches, parml_trainer_data_rows). With
 *   TRAIN_HOST_DEFAULTS=1 blas_threads is left at its default and the
 *   layers are wide enough for OpenBLAS to thread their products.
 *   TRAIN_HOST_OPT=sgd trains with SGD and momentum instead of AdamW;
 *   TRAIN_HOST_FAST=1 in default mode instead of deterministic mode;
 *   TRAIN_HOST_WATCHDOG=S sets the watchdog (default 30 s).
 *   TRAIN_HOST_SAMPLE_WEIGHTS=1 steps with per-row loss weights
 *   (parml_trainer_step_weighted). Every rank
 *   other than 0 writes its parameters to OUT.RANK too, so each process's
 *   copy of the host model can be compared. TRAIN_HOST_EXPECT_FAIL=1 (with
 *   PARML_TEST_FAULT set) reports a failing step as "rank R: step failed:
 *   STATUS: message" and frees the trainer, which must end the job
 *   (MPI_Abort): "rank R: free returned" means it did not.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "parml.h"

#define OK(call)                                                                              \
    do {                                                                                      \
        parml_status st_ = (call);                                                            \
        if (st_ != PARML_OK) {                                                                \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, parml_last_error()); \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

enum { N = 40, C = 4 };

int main(int argc, char **argv) {
    if (argc < 9 || argc > 12) {
        fprintf(stderr, "usage: %s threads|mpi DP PP TP MICRO gpipe|1f1b ZERO OUT [STEPS [SAVE [LOAD]]]\n", argv[0]);
        return 2;
    }
    int steps = argc > 9 ? atoi(argv[9]) : 4;
    const char *save = argc > 10 && strcmp(argv[10], "-") != 0 ? argv[10] : NULL;
    const char *load = argc > 11 && strcmp(argv[11], "-") != 0 ? argv[11] : NULL;
    const char *defaults = getenv("TRAIN_HOST_DEFAULTS");
    int wide = defaults && strcmp(defaults, "1") == 0;
    const int F = wide ? 784 : 12, H = wide ? 512 : 32;
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, F, H, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, H, 16, 1));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_layer_norm(m, 16, 1e-5f));
    OK(parml_model_add_linear(m, 16, 16, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_GELU));
    OK(parml_model_add_dropout(m, 0.2f));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_linear(m, 16, C, 1));
    OK(parml_model_init(m, 17));

    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    const char *opt = getenv("TRAIN_HOST_OPT");
    if (opt && strcmp(opt, "sgd") == 0) {
        o.kind = PARML_OPTIMIZER_SGD;
        o.learning_rate = 0.05f;
        o.momentum = 0.9f;
    } else {
        o.kind = PARML_OPTIMIZER_ADAMW;
        o.learning_rate = 0.01f;
        o.clip_grad_norm = 0.5f;
    }
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.backend = strcmp(argv[1], "mpi") == 0 ? PARML_BACKEND_MPI : PARML_BACKEND_THREADS;
    /* PARML_TEST_SPLIT_CLASSIFIER=1: the last Linear split by classes (tp > 1). */
    const char *split = getenv("PARML_TEST_SPLIT_CLASSIFIER");
    s.split_classifier = split && strcmp(split, "1") == 0;
    s.dp = atoi(argv[2]);
    s.pp = atoi(argv[3]);
    s.tp = atoi(argv[4]);
    s.micro_batches = atoi(argv[5]);
    s.pipeline_schedule = strcmp(argv[6], "gpipe") == 0         ? PARML_PIPELINE_GPIPE
                          : strcmp(argv[6], "interleaved") == 0 ? PARML_PIPELINE_INTERLEAVED_1F1B
                                                                : PARML_PIPELINE_1F1B;
    if (s.pipeline_schedule == PARML_PIPELINE_INTERLEAVED_1F1B) s.virtual_stages = 2;
    s.zero_stage = atoi(argv[7]);
    const char *fast = getenv("TRAIN_HOST_FAST");
    s.deterministic = !(fast && strcmp(fast, "1") == 0);
    s.grad_chunk = 8;
    s.seed = 5;
    s.blas_threads = wide ? 0 : 1;
    const char *watchdog = getenv("TRAIN_HOST_WATCHDOG");
    s.watchdog_seconds = watchdog ? atof(watchdog) : 30;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));
    /* TRAIN_HOST_CLASS_WEIGHTS=1: a class-weighted, smoothed loss (its mean
     * is over the global batch's weight, which local batches must sum). */
    const char *weighted = getenv("TRAIN_HOST_CLASS_WEIGHTS");
    if (weighted && strcmp(weighted, "1") == 0) {
        static const float class_weights[C] = {0.25f, 2.0f, 1.0f, 4.0f};
        parml_loss_params lp;
        OK(parml_loss_params_init(&lp));
        lp.class_weights = class_weights;
        lp.num_class_weights = C;
        lp.label_smoothing = 0.1f;
        OK(parml_trainer_set_loss(tr, &lp));
    }

    float *x = malloc((size_t)N * (size_t)F * sizeof *x), y[N], loss = 0;
    if (!x) return 1;
    for (int i = 0; i < N * F; i++) x[i] = sinf((float)i * 0.37f);
    for (int i = 0; i < N; i++) y[i] = (float)((i * 3) % C);
    /* Weighted: class 3 only in the first rows, so replicas of local batches see other mixes. */
    if (weighted && strcmp(weighted, "1") == 0)
        for (int i = N / 2; i < N; i++) y[i] = y[i] == 3 ? 1 : y[i];
    /* TRAIN_HOST_LOCAL=1 (MPI): pass only this replica's rows. */
    int64_t first = 0, rows = N;
    const char *local = getenv("TRAIN_HOST_LOCAL");
    if (local && (strcmp(local, "1") == 0 || strcmp(local, "wrong") == 0)) {
        OK(parml_trainer_set_local_batches(tr, 1));
        OK(parml_trainer_data_rows(tr, N, &first, &rows));
        if (strcmp(local, "wrong") == 0) rows -= 1; /* not the rows the plan gives: every process must fail */
    }
    int64_t xd[2] = {rows, F}, yd[1] = {rows};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 2, x + first * F, &xt));
    OK(parml_tensor_create(yd, 1, y + first, &yt));
    if (load) OK(parml_trainer_load_checkpoint(tr, load));
    /* TRAIN_HOST_SAMPLE_WEIGHTS=1: one loss weight per row (some 0), this
     * process's rows of them with local batches (their sum crosses replicas). */
    const char *sample_weighted = getenv("TRAIN_HOST_SAMPLE_WEIGHTS");
    float sw[N];
    for (int i = 0; i < N; i++) sw[i] = 0.5f * (float)((i * 7) % 5);
    const float *weights = sample_weighted && strcmp(sample_weighted, "1") == 0 ? sw + first : NULL;
    const char *expect_fail = getenv("TRAIN_HOST_EXPECT_FAIL");
    for (int k = 0; k < steps; k++) {
        parml_status st = weights ? parml_trainer_step_weighted(tr, xt, yt, weights, rows, &loss) : parml_trainer_step(tr, xt, yt, &loss);
        if (st != PARML_OK && expect_fail && strcmp(expect_fail, "1") == 0) {
            int32_t r = -1;
            (void)parml_mpi_rank(&r);
            printf("rank %d: step failed: %s: %s\n", (int)r, parml_status_string(st), parml_last_error());
            fflush(stdout);
            parml_trainer_free(tr); /* documented: ends the job after a failed step */
            printf("rank %d: free returned\n", (int)r);
            return 3;
        }
        OK(st);
    }
    if (save) OK(parml_trainer_save_checkpoint(tr, save));

    int64_t n = 0;
    OK(parml_model_num_params(m, &n));
    float *p = malloc((size_t)n * sizeof *p);
    /* ZeRO-3 under MPI keeps only each process's shard between steps (of
       its tp slices with tp > 1): reads fail with PARML_ERR_STATE until
       every process gathers (collective; PARML_OK at once on threads or
       ZeRO < 3). */
    int32_t whole = -1;
    OK(parml_trainer_params_whole(tr, &whole));
    int partial = s.backend == PARML_BACKEND_MPI && s.zero_stage == 3 && s.dp > 1 && steps > 0 && !save;
    if (whole != !partial || (partial && parml_model_get_params(m, p, n) != PARML_ERR_STATE)) {
        fprintf(stderr, "params_whole %d, expected %d (or get_params did not refuse a partial model)\n", (int)whole, !partial);
        return 1;
    }
    OK(parml_trainer_gather_params(tr));
    OK(parml_trainer_params_whole(tr, &whole));
    if (whole != 1) {
        fprintf(stderr, "params_whole %d after gathering\n", (int)whole);
        return 1;
    }
    OK(parml_model_get_params(m, p, n));
    int32_t rank = 0;
    OK(parml_mpi_rank(&rank));
    char path[4096];
    if (rank == 0) snprintf(path, sizeof path, "%s", argv[8]);
    else snprintf(path, sizeof path, "%s.%d", argv[8], (int)rank);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, sizeof *p, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    printf("rank %d: ok loss %.9g\n", (int)rank, (double)loss);
    free(p);
    free(x);
    parml_trainer_free(tr);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_model_free(m);
    OK(parml_mpi_finalize());
    return 0;
}
