/*
 * writer.c — one side of the exchange test (run_exchange.sh): trains a small
 * classifier through the C API, then writes the model to a file
 * (parml_model_save) and to stdout, a pipe to the reader process
 * (parml_model_serialize), plus its own predictions on the probe batch and
 * its flat parameters for the other side to compare with.
 *
 * Usage: writer MODEL_PATH PREDICTIONS_PATH PARAMS_PATH > pipe
 */
#include "common.h"

int main(int argc, char **argv) {
    DIE_IF(argc != 4, "usage: writer MODEL_PATH PREDICTIONS_PATH PARAMS_PATH");
    parml_model m = NULL;
    DIE_IF(parml_model_create(&m) != PARML_OK, "model_create");
    DIE_IF(parml_model_add_linear(m, FEATURES, 24, 1) != PARML_OK, "linear");
    DIE_IF(parml_model_add_activation(m, PARML_ACTIVATION_GELU) != PARML_OK, "gelu");
    DIE_IF(parml_model_begin_residual(m) != PARML_OK, "begin_residual");
    DIE_IF(parml_model_add_layer_norm(m, 24, 1e-5f) != PARML_OK, "layer_norm");
    DIE_IF(parml_model_add_linear(m, 24, 24, 1) != PARML_OK, "linear");
    DIE_IF(parml_model_add_activation(m, PARML_ACTIVATION_TANH) != PARML_OK, "tanh");
    DIE_IF(parml_model_add_dropout(m, 0.1f) != PARML_OK, "dropout");
    DIE_IF(parml_model_end_residual(m) != PARML_OK, "end_residual");
    DIE_IF(parml_model_add_linear(m, 24, CLASSES, 1) != PARML_OK, "linear");
    DIE_IF(parml_model_init(m, 2024) != PARML_OK, "init");

    parml_optimizer_params o;
    DIE_IF(parml_optimizer_params_init(&o) != PARML_OK, "optimizer_params_init");
    o.kind = PARML_OPTIMIZER_ADAM;
    o.learning_rate = 1e-2f;
    parml_trainer t = NULL;
    DIE_IF(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, NULL, &t) != PARML_OK, "trainer_create");
    float x[64 * FEATURES], y[64];
    int64_t xd[2] = {64, FEATURES}, yd[1] = {64};
    for (int step = 0; step < 20; step++) {
        for (int i = 0; i < 64; i++) {
            y[i] = (float)((i + step) % CLASSES);
            for (int j = 0; j < FEATURES; j++) x[i * FEATURES + j] = sinf((float)(i * 13 + j * 7 + step)) + y[i];
        }
        parml_tensor xt = NULL, yt = NULL;
        DIE_IF(parml_tensor_create(xd, 2, x, &xt) != PARML_OK || parml_tensor_create(yd, 1, y, &yt) != PARML_OK, "batch");
        DIE_IF(parml_trainer_step(t, xt, yt, NULL) != PARML_OK, "step");
        parml_tensor_free(xt);
        parml_tensor_free(yt);
    }

    DIE_IF(parml_model_save(m, argv[1]) != PARML_OK, "model_save");
    void *buf = NULL;
    size_t len = 0;
    DIE_IF(parml_model_serialize(m, &buf, &len) != PARML_OK, "model_serialize");
    DIE_IF(fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0, "write to stdout");
    parml_buffer_free(buf);

    float pred[PROBE_N * CLASSES];
    probe_predict(m, pred);
    write_floats(argv[2], pred, PROBE_N * CLASSES);
    int64_t n = 0;
    DIE_IF(parml_model_num_params(m, &n) != PARML_OK, "num_params");
    float *p = malloc((size_t)n * sizeof *p);
    DIE_IF(!p || parml_model_get_params(m, p, (ptrdiff_t)n) != PARML_OK, "get_params");
    write_floats(argv[3], p, (size_t)n);
    fprintf(stderr, "writer: trained 20 steps, wrote %zu bytes (%lld parameters)\n", len, (long long)n);
    free(p);
    parml_trainer_free(t);
    parml_model_free(m);
    return 0;
}
