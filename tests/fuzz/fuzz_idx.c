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
#define FUZZ_NAME "fuzz_idx"
#include "fuzz_loader.h"

static int images_fd = -1, labels_fd = -1;
static char images_path[64], labels_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (images_fd < 0) {
        images_fd = open_memfd("images.idx", images_path, sizeof images_path);
        labels_fd = open_memfd("labels.idx", labels_path, sizeof labels_path);
    }
    put_pair(images_fd, labels_fd, data, size);
    parml_dataset d = SENTINEL_DATASET;
    parml_status st = parml_dataset_load_idx(images_path, labels_path, &d);
    check_load("parml_dataset_load_idx", st, d,
               ALLOW(PARML_ERR_FORMAT) | ALLOW(PARML_ERR_IO) | ALLOW(PARML_ERR_SHAPE) | ALLOW(PARML_ERR_OUT_OF_MEMORY), 1);
    return 0;
}
