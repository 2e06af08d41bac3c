/*
 * Trains an MLP on Fashion-MNIST through the parml C API and prints one line
 * per epoch, then "test accuracy: 0.NNNN".
 *
 * The last 10% of the training set (6,000 images) is held out for
 * validation: the per-epoch "val" figures come from it. The test set is
 * touched once, after training, for the final figure.
 *
 * usage: train_fashion_mnist [DATA_DIR] [EPOCHS] [DP]
 *   DATA_DIR defaults to /usr/share/datasets/fashion-mnist (Debian's
 *   dataset-fashion-mnist package): train-images-idx3-ubyte.gz, ...
 *   DP: data-parallel ranks (threads of this process), default 2.
 * Build: cc ... train_fashion_mnist.c -lparml -lz (zlib reads the .gz files).
 */
#include <parml.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fashion_mnist.h" /* CHECK, on_epoch, read_idx, rows_dataset */

static void path_join(char *out, size_t cap, const char *dir, const char *file) {
    snprintf(out, cap, "%s/%s", dir, file);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    int64_t epochs = argc > 2 ? atoll(argv[2]) : 8;
    int32_t dp = argc > 3 ? (int32_t)atoi(argv[3]) : 2;
    char ti[1024], tl[1024], vi[1024], vl[1024];
    path_join(ti, sizeof ti, dir, "train-images-idx3-ubyte.gz");
    path_join(tl, sizeof tl, dir, "train-labels-idx1-ubyte.gz");
    path_join(vi, sizeof vi, dir, "t10k-images-idx3-ubyte.gz");
    path_join(vl, sizeof vl, dir, "t10k-labels-idx1-ubyte.gz");

    /* Training set: the first 90% trains, the last 10% validates. */
    int64_t image_dims[3], label_dims[3];
    float *images = read_idx(ti, 3, 1, image_dims);
    float *labels = read_idx(tl, 1, 0, label_dims);
    if (label_dims[0] != image_dims[0]) {
        fprintf(stderr, "%s and %s hold different counts\n", ti, tl);
        return 1;
    }
    int64_t n_val = image_dims[0] / 10, n_train = image_dims[0] - n_val;
    parml_dataset train = rows_dataset(images, labels, image_dims, 0, n_train, 0);
    parml_dataset val = rows_dataset(images, labels, image_dims, n_train, n_val, 0);
    free(images);
    free(labels);

    parml_dataset test = NULL; /* used once, after training */
    CHECK(parml_dataset_load_idx(vi, vl, &test));
    int64_t n_test = 0;
    CHECK(parml_dataset_size(test, &n_test));

    /* 784 -> 512 -> ReLU -> residual(LayerNorm, 512 -> GELU -> 512) -> 10 */
    parml_model model = NULL;
    CHECK(parml_model_create(&model));
    CHECK(parml_model_add_flatten(model));
    CHECK(parml_model_add_linear(model, 784, 512, 1));
    CHECK(parml_model_add_activation(model, PARML_ACTIVATION_RELU));
    CHECK(parml_model_begin_residual(model));
    CHECK(parml_model_add_layer_norm(model, 512, 1e-5f));
    CHECK(parml_model_add_linear(model, 512, 512, 1));
    CHECK(parml_model_add_activation(model, PARML_ACTIVATION_GELU));
    CHECK(parml_model_add_dropout(model, 0.1f));
    CHECK(parml_model_end_residual(model));
    CHECK(parml_model_add_linear(model, 512, 10, 1));
    CHECK(parml_model_init(model, 42));

    const char *core = NULL;
    CHECK(parml_blas_core(&core));
    int64_t n_params = 0;
    CHECK(parml_model_num_params(model, &n_params));
    printf("parml %s  OpenBLAS kernels: %s  parameters: %lld  train %lld  validation %lld (held out of the "
           "training set)  test %lld  data-parallel ranks: %d\n",
           parml_version_string(), core, (long long)n_params, (long long)n_train, (long long)n_val,
           (long long)n_test, (int)dp);

    int64_t batch = 128;
    int64_t steps_per_epoch = (n_train + batch - 1) / batch;
    parml_optimizer_params opt;
    CHECK(parml_optimizer_params_init(&opt));
    opt.kind = PARML_OPTIMIZER_ADAMW;
    opt.learning_rate = 1e-3f;
    opt.weight_decay = 1e-4f;
    opt.schedule = PARML_SCHEDULE_COSINE;
    opt.warmup_steps = 100;
    opt.total_steps = epochs * steps_per_epoch;
    opt.min_lr = 1e-5f;
    opt.clip_grad_norm = 5.0f;
    parml_strategy_params strategy;
    CHECK(parml_strategy_params_init(&strategy));
    strategy.seed = 7;
    strategy.dp = dp; /* each rank takes half of every batch; gradients are averaged */

    parml_trainer trainer = NULL;
    CHECK(parml_trainer_create(model, PARML_LOSS_CROSS_ENTROPY, &opt, &strategy, &trainer));

    parml_fit_params fit;
    CHECK(parml_fit_params_init(&fit));
    fit.epochs = epochs;
    fit.batch_size = batch;
    fit.validation = val;
    fit.progress = on_epoch;
    CHECK(parml_trainer_fit(trainer, train, &fit, NULL));

    float loss = 0, acc = 0; /* the one use of the test set */
    CHECK(parml_trainer_evaluate(trainer, test, 1000, &loss, &acc));
    printf("test loss: %.4f\n", loss);
    printf("test accuracy: %.4f\n", acc);

    parml_trainer_free(trainer);
    parml_model_free(model);
    parml_dataset_free(train);
    parml_dataset_free(val);
    parml_dataset_free(test);
    return 0;
}
