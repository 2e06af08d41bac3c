/*
 * fuzz_loader.h — what the dataset-loader fuzz targets (fuzz_idx,
 * fuzz_formats) share: the input goes to in-memory files (memfds) that are
 * loaded through the C API by their /proc/self/fd paths, so the whole path
 * a host uses runs; and one oracle judges each load.
 * Define _GNU_SOURCE (memfd_create) before any include and FUZZ_NAME (the
 * target's name, for failure messages) before this one.
 */
#ifndef PARML_FUZZ_LOADER_H
#define PARML_FUZZ_LOADER_H

#include <parml.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* What *out holds before a load, to see that a failing one left it alone. */
#define SENTINEL_DATASET ((parml_dataset)(uintptr_t)0xF011u)

/* The bit of a status in check_load's `allowed` mask. */
#define ALLOW(status) (1u << (status))

static void fail(const char *what, parml_status st) {
    fprintf(stderr, "%s: %s: status %d (%s): '%s'\n", FUZZ_NAME, what, (int)st, parml_status_string(st),
            parml_last_error());
    abort();
}

/* A new memfd; its /proc/self/fd path goes to `path`. */
static int open_memfd(const char *name, char *path, size_t cap) {
    int fd = memfd_create(name, 0);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

/* Replaces the memfd's contents with the n bytes at p. */
static void put(int fd, const uint8_t *p, size_t n) {
    if (ftruncate(fd, 0) != 0) abort();
    size_t off = 0;
    while (off < n) {
        ssize_t w = pwrite(fd, p + off, n - off, (off_t)off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
}

/* Two files from one input: a 2-byte little-endian length L, L bytes for
 * the first, the rest for the second. */
static void put_pair(int first, int second, const uint8_t *data, size_t size) {
    size_t len = size, at = 0;
    if (size >= 2) {
        len = (size_t)data[0] | (size_t)data[1] << 8;
        at = 2;
        if (len > size - at) len = size - at;
    }
    put(first, data + at, len);
    put(second, data + at + len, size - at - len);
}

/* The oracle of one load by `call`: a failure has an allowed status, a
 * message naming the call, and left *out alone; a success is a dataset of
 * consistent size and shape with at least min_classes classes (then freed). */
static void check_load(const char *call, parml_status st, parml_dataset d, unsigned allowed, int64_t min_classes) {
    if (st != PARML_OK) {
        const char *msg = parml_last_error();
        if (st < 0 || st > 31 || !(allowed & ALLOW(st))) fail("unexpected status", st);
        if (msg == NULL || strstr(msg, call) == NULL) fail("message does not name the call", st);
        if (d != SENTINEL_DATASET) fail("*out written on failure", st);
        return;
    }
    if (d == NULL || d == SENTINEL_DATASET) fail("no dataset on success", st);
    int64_t count = -1, classes = -1, dims[8];
    ptrdiff_t ndim = -1;
    if ((st = parml_dataset_size(d, &count)) != PARML_OK) fail("parml_dataset_size", st);
    if ((st = parml_dataset_num_classes(d, &classes)) != PARML_OK) fail("parml_dataset_num_classes", st);
    if ((st = parml_dataset_input_shape(d, dims, 8, &ndim)) != PARML_OK) fail("parml_dataset_input_shape", st);
    if (count < 1 || classes < min_classes || ndim < 2 || ndim > 8 || dims[0] != count) fail("inconsistent dataset", st);
    parml_dataset_free(d);
}

#endif /* PARML_FUZZ_LOADER_H */
