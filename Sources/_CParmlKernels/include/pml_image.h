/*
 * Private image kernels: the loops around convolution's matrix products
 * (im2col, col2im) and the pooling windows. NCHW, as PyTorch.
 *
 * Shape legend: a plane is one channel of one sample, height x width,
 * row-major; a window kernel_h x kernel_w moves by stride, its taps are
 * dilation apart, and the input is padded by pad on each side with zeros
 * (convolution, average pooling) or ignored cells (max pooling). Every
 * reduction runs in one fixed order, so results do not depend on the clone
 * the loader picks. Not public API: nothing here starts with parml_.
 */
#ifndef PML_IMAGE_H
#define PML_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where a window sits: input planes of height x width, the window's size,
 * step, dilation and padding, and the output planes it gives. */
typedef struct {
    ptrdiff_t height, width;
    ptrdiff_t kernel_h, kernel_w;
    ptrdiff_t stride_h, stride_w;
    ptrdiff_t pad_h, pad_w;
    ptrdiff_t dilation_h, dilation_w;
    ptrdiff_t out_h, out_w;
} pml_window;

/* col (channels*kernel_h*kernel_w, out_h*out_w): row (c, i, j) holds tap
 * (i, j) of channel c at every output position, 0 where it falls in the
 * padding. x is channels planes. */
void pml_im2col(const float *x, size_t channels, const pml_window *w, float *col);
/* dx (channels planes) += the taps of col added back where they came from:
 * the adjoint of pml_im2col, in the same order. */
void pml_col2im(const float *col, size_t channels, const pml_window *w, float *dx);

/* y (planes, size) = b[p] on plane p */
void pml_fill_planes(const float *b, float *y, size_t planes, size_t size);
/* y (planes, size) += b[p] on plane p */
void pml_add_planes(const float *b, float *y, size_t planes, size_t size);
/* db[p] += sum of plane p of dy (planes, size), each plane summed in order */
void pml_add_plane_sums(const float *dy, float *db, size_t planes, size_t size);
/* y[p] = mean of plane p of x (planes, size), summed in order then divided */
void pml_plane_means(const float *x, float *y, size_t planes, size_t size);
/* dx (planes, size) = dy[p] / size on plane p: the gradient of pml_plane_means */
void pml_spread_plane_means(const float *dy, float *dx, size_t planes, size_t size);

/* Max pooling over planes (no dilation): y is the largest cell of each
 * window (the first one in scan order on ties, a NaN if the window has one,
 * as PyTorch), arg its index in the plane. */
void pml_max_pool_forward(const float *x, size_t planes, const pml_window *w, float *y, int32_t *arg);
/* dx (zeroed by the caller) += dy at each output's arg */
void pml_max_pool_backward(const float *dy, const int32_t *arg, size_t planes, const pml_window *w, float *dx);
/* Average pooling: the window's sum over kernel_h*kernel_w (count_include_pad)
 * or over its cells inside the input. */
void pml_avg_pool_forward(const float *x, size_t planes, const pml_window *w, int count_include_pad, float *y);
/* dx (zeroed by the caller) += each output's gradient spread over its window */
void pml_avg_pool_backward(const float *dy, size_t planes, const pml_window *w, int count_include_pad, float *dx);

#ifdef __cplusplus
}
#endif

#endif
