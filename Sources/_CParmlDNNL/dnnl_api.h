// The oneDNN functions parml calls, found with dlsym (dnnl_loader.c); typed
// from <oneapi/dnnl/dnnl.h> so a wrong argument is a compile error, while
// nothing links libdnnl. Private to this target.
#ifndef PML_DNNL_API_H
#define PML_DNNL_API_H

#if __has_include(<oneapi/dnnl/dnnl.h>)
#define PML_DNNL_HEADERS 1
#include <oneapi/dnnl/dnnl.h>

#define PML_DNNL_FUNCTIONS(X)                                                                       \
    X(dnnl_version) X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_destroy)              \
    X(dnnl_memory_desc_init_by_tag) X(dnnl_memory_desc_get_size) X(dnnl_memory_create)              \
    X(dnnl_memory_set_data_handle) X(dnnl_memory_destroy)                                           \
    X(dnnl_dilated_convolution_forward_desc_init) X(dnnl_dilated_convolution_backward_data_desc_init) \
    X(dnnl_dilated_convolution_backward_weights_desc_init)                                          \
    X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy)                                    \
    X(dnnl_primitive_attr_set_scratchpad_mode)                                                      \
    X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_destroy) X(dnnl_primitive_desc_query)       \
    X(dnnl_primitive_desc_query_md) X(dnnl_primitive_create) X(dnnl_primitive_destroy)              \
    X(dnnl_primitive_execute) X(dnnl_reorder_primitive_desc_create) X(dnnl_memory_desc_equal)             \
    X(dnnl_matmul_desc_init) X(dnnl_memory_desc_init_by_strides) X(dnnl_post_ops_create)            \
    X(dnnl_post_ops_append_sum) X(dnnl_post_ops_destroy) X(dnnl_primitive_attr_set_post_ops)

struct pml_dnnl_api {
#define PML_DNNL_POINTER(name) __typeof__(name) *name;
    PML_DNNL_FUNCTIONS(PML_DNNL_POINTER)
#undef PML_DNNL_POINTER
    // libgomp's, reached through libdnnl's dependencies: oneDNN's OpenMP
    // threads per calling thread.
    void (*omp_set_num_threads)(int);
    int (*omp_get_max_threads)(void);
};

// Filled by a successful pml_dnnl_load; read-only afterwards.
extern struct pml_dnnl_api pml_dnnl;
extern dnnl_engine_t pml_dnnl_engine;
// Sets the calling thread's OpenMP thread count for a oneDNN call when it
// differs (threads > 0), and returns what pml_dnnl_restore_threads puts back
// after the call (0: nothing), so that the host's own setting survives: a
// host that shares libgomp with oneDNN (PyTorch's wheel brings one) sizes
// its own OpenMP teams by the same per-thread setting.
int pml_dnnl_use_threads(int threads);
void pml_dnnl_restore_threads(int before);
// A oneDNN status in words ("unimplemented", ...).
const char *pml_dnnl_status_name(dnnl_status_t st);
// The implementation oneDNN chose for a primitive ("?" if it will not say).
const char *pml_dnnl_impl_name(const_dnnl_primitive_desc_t pd);

// In a function with `char *err, size_t errlen` that returns int: on a
// failed oneDNN call, writes what failed into err and returns -1.
#define TRY(call, what)                                                                                  \
    do {                                                                                                 \
        dnnl_status_t st_ = (call);                                                                      \
        if (st_ != dnnl_success) {                                                                       \
            snprintf(err, errlen, "oneDNN %s: %s (status %d)", what, pml_dnnl_status_name(st_), (int)st_); \
            return -1;                                                                                   \
        }                                                                                                \
    } while (0)
#endif

#endif
