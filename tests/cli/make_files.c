/*
 * make_files.c DIR — the files tests/cli/run_cli_tests.sh gives the parml
 * tool: DIR/model.pb (a model with a residual block), DIR/ckpt.pb (a
 * checkpoint after 3 steps, AdamW, dp 2 ZeRO-1, deterministic) and
 * DIR/tensor.pb (a 2 x 3 tensor message).
 */
#include <parml.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define OK(call)                                                                    \
    do {                                                                            \
        if ((call) != PARML_OK) {                                                   \
            fprintf(stderr, "make_files: %s: %s\n", #call, parml_last_error());     \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_files DIR\n");
        return 2;
    }
    char path[4096];
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, 8, 16, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_layer_norm(m, 16, 1e-5f));
    OK(parml_model_add_linear(m, 16, 16, 1));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_linear(m, 16, 4, 1));
    OK(parml_model_init(m, 7));
    snprintf(path, sizeof path, "%s/model.pb", argv[1]);
    OK(parml_model_save(m, path));

    float x[32 * 8], y[32];
    for (int i = 0; i < 32 * 8; i++) x[i] = sinf((float)i);
    for (int i = 0; i < 32; i++) y[i] = (float)(i % 4);
    int64_t xd[2] = {32, 8}, yd[1] = {32};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 2, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAMW;
    o.learning_rate = 0.01f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = 2;
    s.zero_stage = 1;
    s.deterministic = 1;
    s.seed = 11;
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t));
    for (int i = 0; i < 3; i++) OK(parml_trainer_step(t, xt, yt, NULL));
    snprintf(path, sizeof path, "%s/ckpt.pb", argv[1]);
    OK(parml_trainer_save_checkpoint(t, path));

    float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t vd[2] = {2, 3};
    parml_tensor vt = NULL;
    void *buf = NULL;
    size_t len = 0;
    OK(parml_tensor_create(vd, 2, v, &vt));
    OK(parml_tensor_serialize(vt, &buf, &len));
    snprintf(path, sizeof path, "%s/tensor.pb", argv[1]);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    parml_buffer_free(buf);
    parml_tensor_free(vt);
    parml_trainer_free(t);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_model_free(m);
    return 0;
}
