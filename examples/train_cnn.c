/*
 * Trains a small CNN on Fashion-MNIST through the parml C API: one line per
 * epoch, then "test accuracy: 0.NNNN"; saves the model, loads it back and
 * checks that the loaded copy classifies the test set the same.
 *
 *   Conv(1→32, 3×3, pad 1) ReLU MaxPool2 · Conv(32→64, 3×3, pad 1) ReLU
 *   MaxPool2 · Flatten · Linear(3136→128) ReLU Dropout(0.3) · Linear(128→10)
 *
 * AdamW (lr 1e-3, cosine to 1e-5, weight decay 1e-4), batches of 64.
 * Images are (N, 1, 28, 28) (NCHW, one channel) scaled to [0, 1], as the
 * MLP demo scales them. The last 10% of the training set (6,000 images) is
 * held out: the per-epoch "val" figures come from it; the test set is
 * touched after training only.
 *
 * usage: train_cnn [DATA_DIR] [EPOCHS] [TRAIN_IMAGES] [MODEL_OUT] [DP] [CROP_PADDING] [FLIP]
 *   DATA_DIR: /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist).
 *   EPOCHS: default 15. TRAIN_IMAGES: train on the first N of the 54,000
 *   (a quick run); default all. MODEL_OUT: default build/cnn_fmnist.pb.
 *   DP: data-parallel ranks (threads of this process), default 2.
 *   CROP_PADDING, FLIP: augment the training images (a random crop of the
 *   image padded with CROP_PADDING zeros; FLIP 1: a horizontal flip with
 *   probability 1/2), default 0 0: none (docs/cnn.md).
 * Build: cc ... train_cnn.c -lparml -lz (zlib reads the .gz files).
 */
#define _POSIX_C_SOURCE 200809L
#include <parml.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fashion_mnist.h" /* CHECK, on_epoch, read_idx, rows_dataset */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Appends conv2d(in → out, 3×3, padding 1), ReLU and 2×2 max pooling. */
static void add_conv_block(parml_model model, int64_t in, int64_t out) {
    int64_t k3[] = {3}, pad1[] = {1}, k2[] = {2};
    parml_attribute conv[] = {{.name = "in_channels", .type = PARML_ATTR_INT, .int_value = in},
                              {.name = "out_channels", .type = PARML_ATTR_INT, .int_value = out},
                              {.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = k3, .n_ints = 1},
                              {.name = "padding", .type = PARML_ATTR_INTS, .ints = pad1, .n_ints = 1}};
    parml_attribute pool[] = {{.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = k2, .n_ints = 1}};
    CHECK(parml_model_add_layer(model, "conv2d", conv, 4));
    CHECK(parml_model_add_activation(model, PARML_ACTIVATION_RELU));
    CHECK(parml_model_add_layer(model, "max_pool2d", pool, 1));
}

/* Test accuracy of `model` by parml_model_predict, 500 images at a time (a
 * whole-set forward would hold 10,000 × 32 × 28 × 28 activations). */
static double predicted_accuracy(parml_model model, const float *images, const float *labels, int64_t n) {
    int64_t correct = 0;
    for (int64_t first = 0; first < n; first += 500) {
        int64_t rows = n - first < 500 ? n - first : 500;
        int64_t dims[4] = {rows, 1, 28, 28};
        parml_tensor x = NULL, logits = NULL;
        float *z = NULL;
        CHECK(parml_tensor_create(dims, 4, images + first * 784, &x));
        CHECK(parml_model_predict(model, x, &logits));
        CHECK(parml_tensor_data(logits, &z));
        for (int64_t i = 0; i < rows; i++) {
            int best = 0;
            for (int c = 1; c < 10; c++)
                if (z[i * 10 + c] > z[i * 10 + best]) best = c;
            correct += best == (int)labels[first + i];
        }
        parml_tensor_free(x);
        parml_tensor_free(logits);
    }
    return (double)correct / (double)n;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
    int64_t epochs = argc > 2 ? atoll(argv[2]) : 15;
    int64_t limit = argc > 3 ? atoll(argv[3]) : 0;
    const char *model_path = argc > 4 ? argv[4] : "build/cnn_fmnist.pb";
    int32_t dp = argc > 5 ? (int32_t)atoi(argv[5]) : 2;
    parml_augment_params augment;
    CHECK(parml_augment_params_init(&augment));
    augment.crop_padding = argc > 6 ? (int32_t)atoi(argv[6]) : 0;
    augment.horizontal_flip = argc > 7 ? (int32_t)atoi(argv[7]) : 0;
    char ti[1024], tl[1024], vi[1024], vl[1024];
    snprintf(ti, sizeof ti, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(tl, sizeof tl, "%s/train-labels-idx1-ubyte.gz", dir);
    snprintf(vi, sizeof vi, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(vl, sizeof vl, "%s/t10k-labels-idx1-ubyte.gz", dir);

    /* Training set: the first 90% trains (or its first `limit` images), the last 10% validates. */
    int64_t image_dims[3], label_dims[3], test_dims[3], test_label_dims[3];
    float *images = read_idx(ti, 3, 1, image_dims);
    float *labels = read_idx(tl, 1, 0, label_dims);
    float *test_images = read_idx(vi, 3, 1, test_dims);
    float *test_labels = read_idx(vl, 1, 0, test_label_dims);
    if (label_dims[0] != image_dims[0] || test_label_dims[0] != test_dims[0] || image_dims[1] != 28 ||
        image_dims[2] != 28 || test_dims[1] != 28 || test_dims[2] != 28) {
        fprintf(stderr, "%s: expected 28x28 images with one label each\n", dir);
        return 1;
    }
    int64_t n_val = image_dims[0] / 10, n_train = image_dims[0] - n_val, n_test = test_dims[0];
    if (limit > 0 && limit < n_train) n_train = limit;
    parml_dataset train = rows_dataset(images, labels, image_dims, 0, n_train, 1);
    CHECK(parml_dataset_set_augmentation(train, &augment)); /* fit transforms training batches only */
    parml_dataset val = rows_dataset(images, labels, image_dims, image_dims[0] - n_val, n_val, 1);
    parml_dataset test = rows_dataset(test_images, test_labels, test_dims, 0, n_test, 1);
    free(images);
    free(labels);

    parml_model model = NULL;
    CHECK(parml_model_create(&model));
    add_conv_block(model, 1, 32);  /* (N, 32, 14, 14) */
    add_conv_block(model, 32, 64); /* (N, 64, 7, 7) */
    CHECK(parml_model_add_flatten(model));
    CHECK(parml_model_add_linear(model, 64 * 7 * 7, 128, 1));
    CHECK(parml_model_add_activation(model, PARML_ACTIVATION_RELU));
    CHECK(parml_model_add_dropout(model, 0.3f));
    CHECK(parml_model_add_linear(model, 128, 10, 1));
    CHECK(parml_model_init(model, 42));

    int64_t n_params = 0;
    CHECK(parml_model_num_params(model, &n_params));
    printf("parml %s  parameters: %lld  train %lld  validation %lld (held out of the training set)  test %lld  "
           "data-parallel ranks: %d\n",
           parml_version_string(), (long long)n_params, (long long)n_train, (long long)n_val, (long long)n_test,
           (int)dp);

    int64_t batch = 64;
    int64_t steps_per_epoch = (n_train + batch - 1) / batch;
    parml_optimizer_params opt;
    CHECK(parml_optimizer_params_init(&opt));
    opt.kind = PARML_OPTIMIZER_ADAMW;
    opt.learning_rate = 1e-3f;
    opt.weight_decay = 1e-4f;
    opt.schedule = PARML_SCHEDULE_COSINE;
    opt.total_steps = epochs * steps_per_epoch;
    opt.warmup_steps = opt.total_steps < 1000 ? opt.total_steps / 10 : 100; /* a quick run warms up too */
    opt.min_lr = 1e-5f;
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
    double t0 = now();
    CHECK(parml_trainer_fit(trainer, train, &fit, NULL));
    printf("trained %lld epochs in %.1f s\n", (long long)epochs, now() - t0);

    float loss = 0, acc = 0; /* the test set, after training */
    CHECK(parml_trainer_evaluate(trainer, test, 500, &loss, &acc));
    printf("test loss: %.4f\n", loss);
    printf("test accuracy: %.4f\n", acc);

    /* The file is what another process would use: load it and classify again. */
    CHECK(parml_model_save(model, model_path));
    parml_model loaded = NULL;
    CHECK(parml_model_load(model_path, &loaded));
    printf("test accuracy of %s loaded back: %.4f\n", model_path,
           predicted_accuracy(loaded, test_images, test_labels, n_test));

    parml_model_free(loaded);
    parml_trainer_free(trainer);
    parml_model_free(model);
    parml_dataset_free(train);
    parml_dataset_free(val);
    parml_dataset_free(test);
    free(test_images);
    free(test_labels);
    return 0;
}
