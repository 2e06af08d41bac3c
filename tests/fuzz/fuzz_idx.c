/*
 * fuzz_idx.c — libFuzzer target for the IDX reader behind
 * parml_dataset_load_idx (plain and gzip-compressed files).
 *
 * Input: 2 bytes (little-endian) giving the length L of the images file,
 * then L bytes of images file, then the labels file (the rest). Each is
 * written to an in-memory file (memfd) and loaded through the C API by its
 * /proc/self/fd path, so the whole path a host uses runs: zlib's reader,
 * header and shape checks, payload conversion, label checks.
 *
 * What fails the run (abort, so libFuzzer records a crash): any sanitizer
 * report; a failure with a status other than FORMAT, IO, SHAPE or
 * OUT_OF_MEMORY, or with an empty parml_last_error(), or that wrote *out;
 * a success whose dataset is empty or inconsistent (size, shape).
 *
 * Build and run: make fuzz (docs/reliability.md).
 */
#define _GNU_SOURCE /* memfd_create */
#include <parml.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fuzz_memfd.h"

#define SENTINEL_DATASET ((parml_dataset)(uintptr_t)0xF011u)

static int images_fd = -1, labels_fd = -1;
static char images_path[64], labels_path[64];

static void fail(const char *what, parml_status st) {
    fprintf(stderr, "fuzz_idx: %s: status %d (%s): '%s'\n", what, (int)st, parml_status_string(st),
            parml_last_error());
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (images_fd < 0) {
        images_fd = open_memfd("images.idx", images_path, sizeof images_path);
        labels_fd = open_memfd("labels.idx", labels_path, sizeof labels_path);
    }
    size_t images_len = size, at = 0;
    if (size >= 2) {
        images_len = (size_t)data[0] | (size_t)data[1] << 8;
        at = 2;
        if (images_len > size - at) images_len = size - at;
    }
    put(images_fd, data + at, images_len);
    put(labels_fd, data + at + images_len, size - at - images_len);

    parml_dataset d = SENTINEL_DATASET;
    parml_status st = parml_dataset_load_idx(images_path, labels_path, &d);
    if (st != PARML_OK) {
        const char *msg = parml_last_error();
        if (st != PARML_ERR_FORMAT && st != PARML_ERR_IO && st != PARML_ERR_SHAPE && st != PARML_ERR_OUT_OF_MEMORY)
            fail("unexpected status", st);
        if (msg == NULL || strstr(msg, "parml_dataset_load_idx") == NULL) fail("message does not name the call", st);
        if (d != SENTINEL_DATASET) fail("*out written on failure", st);
        return 0;
    }
    if (d == NULL || d == SENTINEL_DATASET) fail("no dataset on success", st);
    int64_t count = -1, classes = -1, dims[8];
    ptrdiff_t ndim = -1;
    if ((st = parml_dataset_size(d, &count)) != PARML_OK) fail("parml_dataset_size", st);
    if ((st = parml_dataset_num_classes(d, &classes)) != PARML_OK) fail("parml_dataset_num_classes", st);
    if ((st = parml_dataset_input_shape(d, dims, 8, &ndim)) != PARML_OK) fail("parml_dataset_input_shape", st);
    if (count < 1 || classes < 1 || ndim < 2 || ndim > 8 || dims[0] != count) fail("inconsistent dataset", st);
    parml_dataset_free(d);
    return 0;
}
