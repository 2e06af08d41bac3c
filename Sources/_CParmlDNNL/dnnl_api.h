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
    X(dnnl_primitive_execute) X(dnnl_reorder_primitive_desc_create) X(dnnl_memory_desc_equal)

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
#endif

#endif
