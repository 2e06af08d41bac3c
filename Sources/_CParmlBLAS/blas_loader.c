// Loads OpenBLAS with the right kernels for this CPU. See pml_blas.h for why.
#define _GNU_SOURCE
#include "pml_blas.h"

#include <cpuid.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pml_sgemm_fn pml_sgemm_ptr;
pml_sgemm_fn pml_openblas_sgemm_ptr;
pml_sgemv_fn pml_sgemv_ptr;

static void (*set_threads_ptr)(int);
static int (*get_threads_ptr)(void);
static char *(*corename_ptr)(void);
static char *(*config_ptr)(void);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static char load_error[512];
static const char *coretype_source = "none";
static char library_path[512];

// XCR0 bits the OS must enable before AVX/AVX-512 registers may be used.
static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

const char *pml_cpu_coretype(void) {
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return NULL;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1;
    if (!osxsave) return NULL;
    unsigned long long xcr0 = read_xcr0();
    int avx_os = (xcr0 & 0x6) == 0x6, avx512_os = (xcr0 & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return NULL;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
    int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    if (avx512_os && avx512f && avx512dq && avx512bw && avx512vl) return "SkylakeX";
    if (avx_os && avx2 && fma) return "Haswell";
#endif
    return NULL;
}

static void *must_sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p && load_error[0] == 0)
        snprintf(load_error, sizeof load_error, "OpenBLAS at %s lacks symbol %s", library_path, name);
    return p;
}

static void load_once(void) {
    const char *user = getenv("OPENBLAS_CORETYPE");
    const char *pick = pml_cpu_coretype();
    int we_set = 0;
    if (user && user[0]) {
        coretype_source = "user";
    } else if (pick) {
        // Set only for the load, then restore: the process environment is the host's.
        setenv("OPENBLAS_CORETYPE", pick, 1);
        we_set = 1;
        coretype_source = "parml";
    }
    // One OpenBLAS thread from the load on: parml runs OpenBLAS on one thread
    // per call (its own pool splits products), and the worker OpenBLAS would
    // start otherwise polls with sched_yield for its first few hundred ms,
    // holding a core: a one-rank step of the 784-256-256-10 MLP took 0.87 ms
    // in that time, 0.54 after (5 of 6 fresh processes; 0 of 6 with this).
    // The host's own setting comes back after the load.
    const char *host_threads = getenv("OPENBLAS_NUM_THREADS");
    char *saved_threads = host_threads ? strdup(host_threads) : NULL;
    int set_threads = !host_threads || saved_threads;  // never lose the host's value
    if (set_threads) setenv("OPENBLAS_NUM_THREADS", "1", 1);
    const char *override = getenv("PARML_OPENBLAS_LIBRARY");
    const char *candidates[] = {override, "libopenblas.so.0", "libopenblas.so"};
    void *h = NULL;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0] && !h; i++) {
        if (!candidates[i] || !candidates[i][0]) continue;
        h = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
        if (h) snprintf(library_path, sizeof library_path, "%s", candidates[i]);
    }
    if (we_set) unsetenv("OPENBLAS_CORETYPE");
    if (saved_threads) setenv("OPENBLAS_NUM_THREADS", saved_threads, 1);
    else if (set_threads) unsetenv("OPENBLAS_NUM_THREADS");
    free(saved_threads);
    if (!h) {
        snprintf(load_error, sizeof load_error,
                 "could not load OpenBLAS (tried $PARML_OPENBLAS_LIBRARY, libopenblas.so.0, "
                 "libopenblas.so): %s; install it with: apt-get install libopenblas0",
                 dlerror());
        return;
    }
    pml_sgemm_ptr = (pml_sgemm_fn)must_sym(h, "cblas_sgemm");
    pml_openblas_sgemm_ptr = pml_sgemm_ptr;
    pml_sgemv_ptr = (pml_sgemv_fn)must_sym(h, "cblas_sgemv");
    set_threads_ptr = (void (*)(int))must_sym(h, "openblas_set_num_threads");
    get_threads_ptr = (int (*)(void))must_sym(h, "openblas_get_num_threads");
    corename_ptr = (char *(*)(void))must_sym(h, "openblas_get_corename");
    config_ptr = (char *(*)(void))must_sym(h, "openblas_get_config");
    if (load_error[0]) return;
    load_status = 0;
}

int pml_blas_load(char *err, size_t errlen) {
    pthread_once(&once, load_once);
    if (load_status != 0 && err && errlen) snprintf(err, errlen, "%s", load_error);
    return load_status;
}

const char *pml_blas_core_name(void) { return corename_ptr ? corename_ptr() : "unloaded"; }
const char *pml_blas_config(void) { return config_ptr ? config_ptr() : "unloaded"; }
const char *pml_blas_coretype_source(void) { return coretype_source; }
const char *pml_blas_library_path(void) { return library_path; }
void pml_blas_set_threads(int n) { if (set_threads_ptr) set_threads_ptr(n); }
int pml_blas_get_threads(void) { return get_threads_ptr ? get_threads_ptr() : 0; }

static pml_sgemm_fn recorded_sgemm;
static pml_gemm_call *record_calls;
static size_t record_capacity, record_count;

static void recording_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                            const float *b, int ldb, float beta, float *c, int ldc) {
    if (record_count < record_capacity) {
        record_calls[record_count] = (pml_gemm_call){transA == PML_TRANS, transB == PML_TRANS, m, n, k, lda, ldb, ldc, alpha, beta};
    }
    record_count++;
    recorded_sgemm(order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void pml_blas_wrap_sgemm(pml_sgemm_fn (*wrap)(pml_sgemm_fn)) { pml_sgemm_ptr = wrap(pml_sgemm_ptr); }

static _Thread_local int skipping;
static pml_sgemm_fn unskipped_sgemm;

static void skippable_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                            const float *b, int ldb, float beta, float *c, int ldc) {
    if (skipping) return;
    unskipped_sgemm(order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

pml_sgemm_fn pml_blas_skippable(pml_sgemm_fn inner) {
    unskipped_sgemm = inner;
    return skippable_sgemm;
}

int pml_blas_skip_products_on_this_thread(int on) {
    int before = skipping;
    skipping = on != 0;
    return before;
}

void pml_gemm_record_start(pml_gemm_call *calls, size_t capacity) {
    if (pml_sgemm_ptr == recording_sgemm) return;
    record_calls = calls;
    record_capacity = capacity;
    record_count = 0;
    recorded_sgemm = pml_sgemm_ptr;
    pml_sgemm_ptr = recording_sgemm;
}

size_t pml_gemm_record_stop(void) {
    if (pml_sgemm_ptr == recording_sgemm) pml_sgemm_ptr = recorded_sgemm;
    return record_count;
}
