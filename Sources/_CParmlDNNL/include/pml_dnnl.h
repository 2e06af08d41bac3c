/*
 * Private shim over oneDNN (libdnnl.so.2, the 2.x C API), loaded at run time
 * with dlopen: convolution forward, backward data and backward weights in
 * float32 on plain NCHW / (G)OIHW layouts, one plan per shape.
 *
 * Why dlopen: libparml.so must not depend on libdnnl (nor on its libgomp and
 * libOpenCL), so a host without oneDNN loads and trains with im2col +
 * OpenBLAS instead. The oneDNN headers are used when the shim is compiled
 * (types and prototypes only; nothing links); a build without them keeps
 * the same functions, and pml_dnnl_load then says why it cannot load.
 *
 * Thread rule: pml_dnnl_load is thread-safe; a plan is used by one thread
 * at a time (it owns its stream and scratchpad); distinct plans are
 * independent. Not part of the public API: nothing here starts with parml_.
 */
#ifndef PML_DNNL_H
#define PML_DNNL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Loads libdnnl once: $PARML_DNNL_LIBRARY, else libdnnl.so.2. Returns 0, or
 * -1 with a message in err (NUL-terminated, at most errlen bytes); later
 * calls return the first outcome. PARML_DNNL_LIBRARY=none makes it fail
 * (what a host without oneDNN sees). */
int pml_dnnl_load(char *err, size_t errlen);
/* 1 once pml_dnnl_load has run (whatever its outcome), else 0; loads nothing. */
int pml_dnnl_tried(void);
/* "major.minor.patch (cpu runtime)" after a successful load, else "unloaded". */
const char *pml_dnnl_version(void);
/* Tests: the calling thread's OpenMP thread count as oneDNN's libgomp has it
 * (omp_get_max_threads), -1 unless oneDNN loaded. Every call of this shim
 * leaves it as it found it. */
int pml_dnnl_omp_threads(void);

/* One convolution's geometry, as parml's Conv2d holds it (dilation 1 = none). */
typedef struct {
    int64_t batch, in_channels, out_channels, groups;
    int64_t height, width, out_height, out_width;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
    int has_bias;
    /* OpenMP threads the plan runs on: oneDNN sizes its work split and
     * scratchpad by the count when it creates a primitive. */
    int threads;
    /* Nonzero: x, w and dy enter the primitives rounded to bf16 (float32
     * accumulation; y, dx, dw and db stay float32): bf16 precision. */
    int bf16;
} pml_conv_shape;

typedef struct pml_conv_plan pml_conv_plan;

/* Creates the three primitives of one shape (after pml_dnnl_load). Returns
 * NULL with a message in err when oneDNN refuses the shape or memory runs
 * out. Allocates; the calls below do not (beyond what oneDNN's execute does
 * itself). */
pml_conv_plan *pml_conv_plan_create(const pml_conv_shape *s, char *err, size_t errlen);
void pml_conv_plan_free(pml_conv_plan *p); /* NULL: no-op */
/* oneDNN's implementation names, "fwd / bwd_d / bwd_w" (static storage of the plan). */
const char *pml_conv_plan_impl(const pml_conv_plan *p);

/* Each runs on the plan's OpenMP threads (set for the calling thread:
 * OpenMP keeps the setting per thread) and returns 0, or a oneDNN
 * status. Arrays are dense NCHW x and y, weights (G·Og, Cg, kh, kw), bias
 * (O). Backward follows a forward of the same plan, x and w unchanged in
 * between (forward's reordered copies serve it); it overwrites dw and db
 * (db unused without a bias) and computes dx unless dx is NULL; with dw
 * NULL it computes dx only. */
int pml_conv_forward(pml_conv_plan *p, const float *x, const float *w, const float *b, float *y);
int pml_conv_backward(pml_conv_plan *p, const float *x, const float *w, const float *dy, float *dw,
                      float *db, float *dx);

#ifdef __cplusplus
}
#endif

#endif
