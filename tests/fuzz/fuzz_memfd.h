/*
 * fuzz_memfd.h — in-memory files for the loader fuzz targets (fuzz_idx,
 * fuzz_formats): the input is written to a memfd and loaded through the C
 * API by its /proc/self/fd path, so the whole path a host uses runs.
 * Define _GNU_SOURCE before any include (memfd_create).
 */
#ifndef PARML_FUZZ_MEMFD_H
#define PARML_FUZZ_MEMFD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

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

#endif /* PARML_FUZZ_MEMFD_H */
