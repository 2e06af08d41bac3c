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
#define FUZZ_NAME "fuzz_formats"
#include "fuzz_loader.h"

static int a_fd = -1, b_fd = -1;
static char a_path[64], b_path[64];

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
    unsigned allowed = ALLOW(PARML_ERR_FORMAT) | ALLOW(PARML_ERR_IO) | ALLOW(PARML_ERR_SHAPE) |
                       ALLOW(PARML_ERR_UNSUPPORTED) | ALLOW(PARML_ERR_OUT_OF_MEMORY);
    if (mode == 0) {
        put_pair(a_fd, b_fd, data, size);
        check_load("parml_dataset_load_npy", parml_dataset_load_npy(a_path, b_path, &d), d, allowed, 0);
    } else if (mode == 1) {
        put(a_fd, data, size);
        check_load("parml_dataset_load_npz", parml_dataset_load_npz(a_path, "x", "y", &d), d, allowed, 0);
    } else {
        put(a_fd, data, size);
        /* One column leaves no feature: INVALID_ARGUMENT, as documented. */
        check_load("parml_dataset_load_csv", parml_dataset_load_csv(a_path, NULL, &d), d,
                   allowed | ALLOW(PARML_ERR_INVALID_ARGUMENT), 0);
    }
    return 0;
}
