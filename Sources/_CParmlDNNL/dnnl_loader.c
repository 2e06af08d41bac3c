// Loads oneDNN 2.x with dlopen and finds the functions of dnnl_api.h.
// See pml_dnnl.h for why it is loaded at run time.
#define _GNU_SOURCE
#include "pml_dnnl.h"

#include "dnnl_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_status = -1;
static char load_error[512];
static char version_text[64] = "unloaded";

#ifdef PML_DNNL_HEADERS
struct pml_dnnl_api pml_dnnl;
dnnl_engine_t pml_dnnl_engine;

static void *must_sym(void *h, const char *name) {
    void *p = dlsym(h, name);
    if (!p && load_error[0] == 0) snprintf(load_error, sizeof load_error, "libdnnl lacks symbol %s", name);
    return p;
}

static void load_once(void) {
    const char *override = getenv("PARML_DNNL_LIBRARY");
    if (override && strcmp(override, "none") == 0) {
        snprintf(load_error, sizeof load_error, "oneDNN not loaded: PARML_DNNL_LIBRARY=none");
        return;
    }
    const char *name = override && override[0] ? override : "libdnnl.so.2";
    // OpenMP threads that spin between parallel regions (libgomp's default)
    // take the cores parml's other threads need, and crawl where the host
    // shares its cores (docs/cnn.md): unless the user chose, they sleep.
    // libgomp reads the variable when it loads: set only for this dlopen.
    const char *policy = getenv("OMP_WAIT_POLICY");
    int we_set = !policy || !policy[0];
    if (we_set) setenv("OMP_WAIT_POLICY", "passive", 1);
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (we_set) unsetenv("OMP_WAIT_POLICY");
    if (!h) {
        snprintf(load_error, sizeof load_error,
                 "could not load oneDNN (%s): %s; install it with: apt-get install libdnnl2", name, dlerror());
        return;
    }
    struct pml_dnnl_api api;
#define PML_DNNL_FIND(fn) api.fn = (__typeof__(fn) *)must_sym(h, #fn);
    PML_DNNL_FUNCTIONS(PML_DNNL_FIND)
#undef PML_DNNL_FIND
    api.omp_set_num_threads = (void (*)(int))must_sym(h, "omp_set_num_threads");
    api.omp_get_max_threads = (int (*)(void))must_sym(h, "omp_get_max_threads");
    if (load_error[0]) return;
    // The 2.x C API (operation descriptors) is what this shim speaks; 3.x removed it.
    const dnnl_version_t *v = api.dnnl_version();
    if (v->major != 2) {
        snprintf(load_error, sizeof load_error, "%s is oneDNN %d.%d; parml needs 2.x", name, v->major, v->minor);
        return;
    }
    dnnl_engine_t engine = NULL;
    dnnl_status_t st = api.dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (st != dnnl_success) {
        snprintf(load_error, sizeof load_error, "oneDNN could not create a CPU engine (status %d)", (int)st);
        return;
    }
    pml_dnnl = api;
    pml_dnnl_engine = engine;
    snprintf(version_text, sizeof version_text, "%d.%d.%d (%s)", v->major, v->minor, v->patch,
             v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other runtime");
    load_status = 0;
}

const char *pml_dnnl_status_name(dnnl_status_t st) {
    switch (st) {
    case dnnl_out_of_memory: return "out of memory";
    case dnnl_invalid_arguments: return "invalid arguments";
    case dnnl_unimplemented: return "unimplemented";
    case dnnl_iterator_ends: return "no implementation";
    case dnnl_runtime_error: return "runtime error";
    case dnnl_not_required: return "not required";
    default: return "error";
    }
}

const char *pml_dnnl_impl_name(const_dnnl_primitive_desc_t pd) {
    const char *name = "?";
    if (pml_dnnl.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)&name) != dnnl_success) return "?";
    return name;
}

// oneDNN's OpenMP runtime sizes its teams by the calling thread's setting.
int pml_dnnl_use_threads(int threads) {
    if (threads <= 0) return 0;
    int before = pml_dnnl.omp_get_max_threads();
    if (before == threads) return 0;
    pml_dnnl.omp_set_num_threads(threads);
    return before;
}

void pml_dnnl_restore_threads(int before) {
    if (before > 0) pml_dnnl.omp_set_num_threads(before);
}

int pml_dnnl_omp_threads(void) { return load_status == 0 ? pml_dnnl.omp_get_max_threads() : -1; }
#else
int pml_dnnl_omp_threads(void) { return -1; }
static void load_once(void) {
    snprintf(load_error, sizeof load_error,
             "parml was built without oneDNN's headers (apt-get install libdnnl-dev, then rebuild)");
}
#endif

static int tried; /* set once pml_dnnl_load's attempt has finished */

int pml_dnnl_load(char *err, size_t errlen) {
    pthread_once(&once, load_once);
    __atomic_store_n(&tried, 1, __ATOMIC_RELEASE);
    if (load_status != 0 && err && errlen) snprintf(err, errlen, "%s", load_error);
    return load_status;
}

int pml_dnnl_tried(void) { return __atomic_load_n(&tried, __ATOMIC_ACQUIRE); }

const char *pml_dnnl_version(void) { return version_text; }
