// Loads OpenSSL's libcrypto with dlopen and computes HMAC-SHA-256.
// See pml_crypto.h for why it is loaded at run time.
#define _GNU_SOURCE
#include "pml_crypto.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The two libcrypto functions used, as OpenSSL 1.1 and 3.x declare them
// (<openssl/hmac.h>, <openssl/evp.h>); EVP_MD is opaque.
typedef struct evp_md_st EVP_MD;
typedef const EVP_MD *(*evp_sha256_fn)(void);
typedef unsigned char *(*hmac_fn)(const EVP_MD *md, const void *key, int key_len, const unsigned char *data,
                                  size_t n, unsigned char *out, unsigned int *out_len);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static char load_error[512];
static evp_sha256_fn evp_sha256;
static hmac_fn hmac;

static void load_once(void) {
    const char *override = getenv("PARML_CRYPTO_LIBRARY");
    if (override && strcmp(override, "none") == 0) {
        snprintf(load_error, sizeof load_error, "libcrypto not loaded: PARML_CRYPTO_LIBRARY=none");
        return;
    }
    const char *names[] = {override && override[0] ? override : "libcrypto.so.3", "libcrypto.so.1.1"};
    int tries = override && override[0] ? 1 : 2;
    void *h = NULL;
    for (int i = 0; i < tries && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof load_error,
                 "could not load OpenSSL's libcrypto (%s): %s; install it with: apt-get install libssl3", names[0],
                 dlerror());
        return;
    }
    evp_sha256 = (evp_sha256_fn)dlsym(h, "EVP_sha256");
    hmac = (hmac_fn)dlsym(h, "HMAC");
    if (!evp_sha256 || !hmac) {
        snprintf(load_error, sizeof load_error, "libcrypto lacks %s", evp_sha256 ? "HMAC" : "EVP_sha256");
        return;
    }
    load_status = 0;
}

int pml_crypto_load(char *err, size_t errlen) {
    pthread_once(&once, load_once);
    if (load_status != 0 && err && errlen > 0) snprintf(err, errlen, "%s", load_error);
    return load_status;
}

int pml_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n, uint8_t out[32]) {
    if (pml_crypto_load(NULL, 0) != 0 || key_len > INT_MAX) return -1;
    // HMAC reads `data` only when n > 0; a non-NULL pointer keeps it simple.
    static const unsigned char empty = 0;
    unsigned int len = 0;
    if (!hmac(evp_sha256(), key, (int)key_len, n ? (const unsigned char *)data : &empty, n, out, &len)) return -1;
    return len == 32 ? 0 : -1;
}

int pml_equal_constant_time(const uint8_t *a, const uint8_t *b, size_t n) {
    // Every byte is read whatever the earlier ones were; volatile keeps the
    // compiler from turning the loop into an early-exit comparison.
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) diff |= (uint8_t)(a[i] ^ b[i]);
    return diff == 0;
}
