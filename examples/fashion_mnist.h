/*
 * What the Fashion-MNIST C examples share: CHECK (check.h), the per-epoch
 * line, reading an unsigned-byte IDX file into floats, and a parml dataset
 * of some of its rows. The C API has no way to split a dataset or give its
 * images a channel axis, so the examples read the files themselves and
 * build datasets with parml_dataset_create. Needs zlib (-lz) for the .gz
 * files.
 */
#ifndef EXAMPLES_FASHION_MNIST_H
#define EXAMPLES_FASHION_MNIST_H

#include <parml.h>

#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "check.h" /* CHECK */

/* parml_fit_params.progress: one line per epoch. */
static int32_t on_epoch(const parml_epoch_metrics *m, void *user_data) {
    (void)user_data;
    printf("epoch %lld/%lld  loss %.4f  train acc %.4f  val loss %.4f  val acc %.4f  lr %.4g  %.1fs  %.0f samples/s\n",
           (long long)m->epoch, (long long)m->epochs, m->train_loss, m->train_accuracy, m->val_loss,
           m->val_accuracy, m->learning_rate, m->seconds, m->samples_per_second);
    fflush(stdout);
    return 0;
}

/* Reads an unsigned-byte IDX file (gzipped or plain) of `rank` dimensions
 * into new floats: images scaled to [0, 1] as parml_dataset_load_idx does
 * (divided by 255), labels as they are. dims gets the sizes. */
static float *read_idx(const char *path, int rank, int scale, int64_t dims[3]) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    unsigned char head[4 + 4 * 3];
    int head_bytes = 4 + 4 * rank;
    if (gzread(f, head, (unsigned)head_bytes) != head_bytes || head[0] || head[1] || head[2] != 0x08 || head[3] != rank) {
        fprintf(stderr, "%s: not an unsigned-byte IDX file of %d dimensions\n", path, rank);
        exit(1);
    }
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        const unsigned char *d = head + 4 + 4 * i;
        dims[i] = (int64_t)d[0] << 24 | (int64_t)d[1] << 16 | (int64_t)d[2] << 8 | d[3];
        count *= (size_t)dims[i];
    }
    unsigned char *bytes = malloc(count);
    float *values = malloc(count * sizeof *values);
    if (!bytes || !values || gzread(f, bytes, (unsigned)count) != (int)count) {
        fprintf(stderr, "%s: truncated or out of memory\n", path);
        exit(1);
    }
    for (size_t i = 0; i < count; i++) values[i] = scale ? (float)bytes[i] / 255.0f : (float)bytes[i];
    free(bytes);
    gzclose(f);
    return values;
}

/* A dataset of rows [first, first + n) of images (N, H, W) and labels: its
 * inputs (n, H, W), or with `channel_axis` (n, 1, H, W), the NCHW form a
 * convolution takes. */
static parml_dataset rows_dataset(const float *images, const float *labels, const int64_t image_dims[3], int64_t first,
                                  int64_t n, int channel_axis) {
    int64_t per = image_dims[1] * image_dims[2];
    int64_t flat[3] = {n, image_dims[1], image_dims[2]}, nchw[4] = {n, 1, image_dims[1], image_dims[2]}, ys[1] = {n};
    parml_tensor x = NULL, y = NULL;
    parml_dataset d = NULL;
    CHECK(channel_axis ? parml_tensor_create(nchw, 4, images + first * per, &x)
                       : parml_tensor_create(flat, 3, images + first * per, &x));
    CHECK(parml_tensor_create(ys, 1, labels + first, &y));
    CHECK(parml_dataset_create(x, y, &d)); /* copies: the tensors can go */
    parml_tensor_free(x);
    parml_tensor_free(y);
    return d;
}

#endif
