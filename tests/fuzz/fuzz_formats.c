/*
 * fuzz_formats.c — libFuzzer target for the .npy, .npz and CSV readers
 * behind parml_dataset_load_npy, _load_npz and _load_csv.
 *
 * Input: one byte choosing the reader (mod 3), then
 *   0 (.npy): 2 bytes (little-endian) giving the length L of the inputs
 *     file, L bytes of inputs file, then the targets file (the rest);
 *   1 (.npz): the archive, loaded with keys "x" and "y";
 *   2 (CSV):  the table, loaded with the defaults (header, ',' , label last).
 * Each file is written to an in-memory file (memfd) and loaded through the
 * C API by its /proc/self/fd path, so the whole path a host uses runs: the
 * mapping, the zip directory and inflate, the .npy header, the conversions,
 * the CSV splitter and number parser.
 *
 * What fails the run (abort, so libFuzzer records a crash): any sanitizer
 * report; a failure with a status other than FORMAT, IO, SHAPE,
 * UNSUPPORTED, OUT_OF_MEMORY (or, for CSV, INVALID_ARGUMENT: a table with
 * one column has no feature), an empty message, or *out written; a
 * success whose dataset is empty or inconsistent (size, shape).
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

static int a_fd = -1, b_fd = -1;
static char a_path[64], b_path[64];

static void fail(const char *what, parml_status st) {
    fprintf(stderr, "fuzz_formats: %s: status %d (%s): '%s'\n", what, (int)st, parml_status_string(st),
            parml_last_error());
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (a_fd < 0) {
        a_fd = open_memfd("a", a_path, sizeof a_path);
        b_fd = open_memfd("b", b_path, sizeof b_path);
    }
    if (size < 1) return 0;
    int mode = data[0] % 3;
    data++;
    size--;
    parml_dataset d = SENTINEL_DATASET;
    parml_status st;
    const char *call;
    if (mode == 0) {
        size_t a_len = size, at = 0;
        if (size >= 2) {
            a_len = (size_t)data[0] | (size_t)data[1] << 8;
            at = 2;
            if (a_len > size - at) a_len = size - at;
        }
        put(a_fd, data + at, a_len);
        put(b_fd, data + at + a_len, size - at - a_len);
        call = "parml_dataset_load_npy";
        st = parml_dataset_load_npy(a_path, b_path, &d);
    } else if (mode == 1) {
        put(a_fd, data, size);
        call = "parml_dataset_load_npz";
        st = parml_dataset_load_npz(a_path, "x", "y", &d);
    } else {
        put(a_fd, data, size);
        call = "parml_dataset_load_csv";
        st = parml_dataset_load_csv(a_path, NULL, &d);
    }
    if (st != PARML_OK) {
        const char *msg = parml_last_error();
        if (st != PARML_ERR_FORMAT && st != PARML_ERR_IO && st != PARML_ERR_SHAPE && st != PARML_ERR_UNSUPPORTED &&
            st != PARML_ERR_OUT_OF_MEMORY && !(mode == 2 && st == PARML_ERR_INVALID_ARGUMENT))
            fail("unexpected status", st);
        if (msg == NULL || strstr(msg, call) == NULL) fail("message does not name the call", st);
        if (d != SENTINEL_DATASET) fail("*out written on failure", st);
        return 0;
    }
    if (d == NULL || d == SENTINEL_DATASET) fail("no dataset on success", st);
    int64_t count = -1, classes = -1, dims[8];
    ptrdiff_t ndim = -1;
    if ((st = parml_dataset_size(d, &count)) != PARML_OK) fail("parml_dataset_size", st);
    if ((st = parml_dataset_num_classes(d, &classes)) != PARML_OK) fail("parml_dataset_num_classes", st);
    if ((st = parml_dataset_input_shape(d, dims, 8, &ndim)) != PARML_OK) fail("parml_dataset_input_shape", st);
    if (count < 1 || classes < 0 || ndim < 2 || ndim > 8 || dims[0] != count) fail("inconsistent dataset", st);
    parml_dataset_free(d);
    return 0;
}
