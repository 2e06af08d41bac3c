/* The smallest useful parml host: learn y = class of the larger of two inputs. */
#include <parml.h>
#include <stdio.h>

int main(void) {
    /* 64 samples of 2 features; the target is 1 when x0 > x1, else 0. */
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
    parml_advice_params auto_layout; /* strategy "auto": the advisor picks dp x pp x tp */
    int64_t sample[1] = {2};
    float loss = 0;

    if (parml_tensor_create(xs, 2, x, &inputs) != PARML_OK ||
        parml_tensor_create(ys, 1, y, &targets) != PARML_OK ||
        parml_model_create(&model) != PARML_OK ||
        parml_model_add_linear(model, 2, 16, 1) != PARML_OK ||
        parml_model_add_activation(model, PARML_ACTIVATION_TANH) != PARML_OK ||
        parml_model_add_linear(model, 16, 2, 1) != PARML_OK ||
        parml_model_init(model, 42) != PARML_OK ||
        parml_optimizer_params_init(&opt) != PARML_OK ||
        parml_advice_params_init(&auto_layout) != PARML_OK) {
        fprintf(stderr, "setup failed: %s\n", parml_last_error());
        return 1;
    }
    opt.kind = PARML_OPTIMIZER_ADAM;
    opt.learning_rate = 0.05f;
    auto_layout.sample_dims = sample; /* one sample's shape and the batch */
    auto_layout.sample_rank = 1;
    auto_layout.batch = 64;
    if (parml_trainer_create_auto(model, PARML_LOSS_CROSS_ENTROPY, &opt, &auto_layout, &trainer) != PARML_OK) {
        fprintf(stderr, "trainer: %s\n", parml_last_error());
        return 1;
    }
    for (int step = 1; step <= 200; step++) {
        if (parml_trainer_step(trainer, inputs, targets, &loss) != PARML_OK) {
            fprintf(stderr, "step: %s\n", parml_last_error());
            return 1;
        }
        if (step % 50 == 0) printf("step %3d  loss %.4f\n", step, loss);
    }
    parml_trainer_free(trainer);
    parml_model_free(model);
    parml_tensor_free(inputs);
    parml_tensor_free(targets);
    return loss < 0.2f ? 0 : 1;
}
