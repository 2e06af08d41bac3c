/*
 * Private shim over OpenSSL's libcrypto, loaded at run time with dlopen:
 * HMAC-SHA-256 for authenticated model and checkpoint files
 * (docs/file-format.md, docs/privacy.md).
 *
 * Why dlopen: libparml.so must not depend on libcrypto, so a host without it
 * loads, trains and reads unauthenticated files; only the authenticated
 * save and load calls need it, and they say why it cannot load. The two
 * functions used (HMAC, EVP_sha256) have had the same signatures from
 * OpenSSL 1.1 to 3.x, so they are declared here and no OpenSSL header is
 * needed to build.
 *
 * Thread-safe. Not part of the public API: nothing here starts with parml_.
 */
#ifndef PML_CRYPTO_H
#define PML_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Loads libcrypto once: $PARML_CRYPTO_LIBRARY, else libcrypto.so.3, else
 * libcrypto.so.1.1. Returns 0, or -1 with a message in err (NUL-terminated,
 * at most errlen bytes); later calls return the first outcome.
 * PARML_CRYPTO_LIBRARY=none makes it fail (what a host without it sees). */
int pml_crypto_load(char *err, size_t errlen);

/* HMAC-SHA-256 of the `n` bytes at `data` under `key` (key_len bytes) into
 * out[32]. Returns 0, or -1 when libcrypto is not loaded or fails. */
int pml_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n, uint8_t out[32]);

/* 1 when the `n` bytes at a and b are equal, else 0, in time that depends
 * on n only (never on where they differ). */
int pml_equal_constant_time(const uint8_t *a, const uint8_t *b, size_t n);

#ifdef __cplusplus
}
#endif
#endif
