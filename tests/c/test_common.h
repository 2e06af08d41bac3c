/*
 * test_common.h — small helpers shared by the C ABI tests in tests/c/.
 * Header-only (static functions) so each test stays one translation unit.
 */
#ifndef PARML_TEST_COMMON_H
#define PARML_TEST_COMMON_H

#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parml.h"

static int t_passed = 0;
static int t_failed = 0;

/* CHECK(cond, "fmt", ...): one counted assertion; prints the failure with its line. */
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            t_passed++;                                                    \
        } else {                                                           \
            t_failed++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
        }                                                                  \
    } while (0)

/* OK(call): the call must return PARML_OK; on failure prints the status and last error. */
#define OK(call)                                                                       \
    do {                                                                               \
        parml_status ok_st_ = (call);                                                  \
        CHECK(ok_st_ == PARML_OK, "%s returned %d (%s): %s", #call, (int)ok_st_,       \
              parml_status_string(ok_st_), ok_st_ == PARML_OK ? "" : parml_last_error()); \
    } while (0)

/* Relative closeness with an absolute floor of `tol` near zero. */
static inline int close_rel(double a, double b, double tol) {
    double scale = fabs(b) > 1.0 ? fabs(b) : 1.0;
    return fabs(a - b) <= tol * scale;
}

/* Writes big-endian 32-bit values. */
static inline void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes a file of `n` bytes; returns 0 on success. */
static inline int write_file(const char *path, const unsigned char *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(bytes, 1, n, f) : 0;
    int rc = fclose(f);
    return (w == n && rc == 0) ? 0 : -1;
}

/*
 * Writes an unsigned-byte IDX file: magic 0x00 0x00 0x08 rank, big-endian
 * dims, then the payload. `payload_len` may differ from the product of dims
 * (to make truncated files). Returns 0 on success.
 */
static inline int write_idx_u8(const char *path, const uint32_t *dims, int rank, const unsigned char *payload,
                        size_t payload_len) {
    size_t header = 4 + 4 * (size_t)rank;
    unsigned char *buf = (unsigned char *)malloc(header + payload_len + 1);
    if (!buf) return -1;
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = 0x08;
    buf[3] = (unsigned char)rank;
    for (int i = 0; i < rank; i++) put_be32(buf + 4 + 4 * i, dims[i]);
    if (payload_len) memcpy(buf + header, payload, payload_len);
    int rc = write_file(path, buf, header + payload_len);
    free(buf);
    return rc;
}

/* A per-process scratch directory under /tmp (created on first use). */
static inline const char *scratch_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        char tmpl[] = "/tmp/parml_c_test_XXXXXX";
        char *d = mkdtemp(tmpl);
        if (!d) {
            perror("mkdtemp");
            exit(2);
        }
        snprintf(dir, sizeof dir, "%s", d);
    }
    return dir;
}

static inline void scratch_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", scratch_dir(), name);
}

#endif /* PARML_TEST_COMMON_H */
