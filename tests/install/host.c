/* A C host built against an installed libparml with nothing but
 * `pkg-config --cflags --libs parml` (or CMake's find_package / pkg_check_modules).
 * Checks that the header and the library agree on the version, then trains a
 * small classifier and requires the loss to fall. Prints "host ok" on success. */
#include <parml.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    if (parml_version_number() != PARML_VERSION_NUMBER ||
        strcmp(parml_version_string(), PARML_VERSION_STRING) != 0) {
        fprintf(stderr, "version mismatch: header %s (%d), library %s (%d)\n", PARML_VERSION_STRING,
                PARML_VERSION_NUMBER, parml_version_string(), (int)parml_version_number());
        return 1;
    }
    printf("parml %s (header %s)\n", parml_version_string(), PARML_VERSION_STRING);

    /* 64 samples of 2 features; the class is 1 when x0 > x1. */
    float x[64 * 2], y[64];
    for (int i = 0; i < 64; i++) {
        x[2 * i] = (float)((i * 37) % 64) / 64.0f;
        x[2 * i + 1] = (float)((i * 11) % 64) / 64.0f;
        y[i] = x[2 * i] > x[2 * i + 1] ? 1.0f : 0.0f;
    }
    int64_t xs[2] = {64, 2}, ys[1] = {64};
    parml_tensor inputs = NULL, targets = NULL;
    parml_model model = NULL;
    parml_trainer trainer = NULL;
    parml_optimizer_params opt;
    float first = 0, loss = 0;
    if (parml_tensor_create(xs, 2, x, &inputs) != PARML_OK ||
        parml_tensor_create(ys, 1, y, &targets) != PARML_OK ||
        parml_model_create(&model) != PARML_OK ||
        parml_model_add_linear(model, 2, 16, 1) != PARML_OK ||
        parml_model_add_activation(model, PARML_ACTIVATION_TANH) != PARML_OK ||
        parml_model_add_linear(model, 16, 2, 1) != PARML_OK ||
        parml_model_init(model, 42) != PARML_OK ||
        parml_optimizer_params_init(&opt) != PARML_OK) {
        fprintf(stderr, "setup failed: %s\n", parml_last_error());
        return 1;
    }
    opt.kind = PARML_OPTIMIZER_ADAM;
    opt.learning_rate = 0.05f;
    if (parml_trainer_create(model, PARML_LOSS_CROSS_ENTROPY, &opt, NULL, &trainer) != PARML_OK) {
        fprintf(stderr, "trainer: %s\n", parml_last_error());
        return 1;
    }
    for (int step = 1; step <= 200; step++) {
        if (parml_trainer_step(trainer, inputs, targets, &loss) != PARML_OK) {
            fprintf(stderr, "step: %s\n", parml_last_error());
            return 1;
        }
        if (step == 1) first = loss;
    }
    parml_trainer_free(trainer);
    parml_model_free(model);
    parml_tensor_free(inputs);
    parml_tensor_free(targets);
    printf("loss %.4f -> %.4f after 200 steps\n", first, loss);
    if (!(loss < 0.2f && loss < first)) {
        fprintf(stderr, "did not learn\n");
        return 1;
    }
    printf("host ok\n");
    return 0;
}
