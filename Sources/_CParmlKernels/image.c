// Image kernels: im2col/col2im around convolution's sgemm, and pooling.
// See pml_image.h. Short copies and comparisons: AVX2/AVX-512 versions
// (target_clones) measured no faster on conv2's shapes, so one baseline build
// serves; sums run in one fixed order.
#include "pml_image.h"

#include <math.h>

#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

// The outputs o in [*lo, *hi) of [0, n) whose input index o*stride + offset
// lies in [0, size): the taps that are not padding.
static void inside(ptrdiff_t offset, ptrdiff_t stride, ptrdiff_t size, ptrdiff_t n, ptrdiff_t *lo, ptrdiff_t *hi) {
    ptrdiff_t a = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    ptrdiff_t b = size - offset <= 0 ? 0 : (size - offset + stride - 1) / stride;
    if (a > n) a = n;
    if (b > n) b = n;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

// Runs of a row: short (a plane's width, often 1 or 2 cells of padding),
// so plain loops the compiler vectorises inline beat a memcpy or memset call
// each; PML_INLINE_RUNS keeps clang from turning them back into such calls.
#if defined(__has_attribute)
#if __has_attribute(no_builtin)
#define PML_INLINE_RUNS __attribute__((no_builtin("memset", "memcpy")))
#endif
#endif
#ifndef PML_INLINE_RUNS
#define PML_INLINE_RUNS
#endif

static inline __attribute__((always_inline)) void copy_run(float *restrict dst, const float *restrict src, ptrdiff_t n) {
    for (ptrdiff_t k = 0; k < n; k++) dst[k] = src[k];
}

static inline __attribute__((always_inline)) void add_run(float *restrict dst, const float *restrict src, ptrdiff_t n) {
    for (ptrdiff_t k = 0; k < n; k++) dst[k] += src[k];
}

static inline __attribute__((always_inline)) void zero_run(float *restrict dst, ptrdiff_t n) {
    for (ptrdiff_t k = 0; k < n; k++) dst[k] = 0;
}

// One walk over the taps serves both directions: im2col copies x's cells
// into col, col2im (its adjoint) adds col back into x's cells. Inlined into
// each caller, so the direction is a constant there.
static inline __attribute__((always_inline)) void walk(float *x, size_t channels, const pml_window *w, float *col, int adjoint) {
    const ptrdiff_t H = w->height, W = w->width, oh = w->out_h, ow = w->out_w, sw = w->stride_w;
    for (size_t c = 0; c < channels; c++) {
        float *plane = x + c * (size_t)(H * W);
        for (ptrdiff_t i = 0; i < w->kernel_h; i++) {
            for (ptrdiff_t j = 0; j < w->kernel_w; j++) {
                const ptrdiff_t dx0 = j * w->dilation_w - w->pad_w;
                ptrdiff_t lo, hi;
                inside(dx0, sw, W, ow, &lo, &hi);
                for (ptrdiff_t oy = 0; oy < oh; oy++, col += ow) {
                    const ptrdiff_t iy = oy * w->stride_h - w->pad_h + i * w->dilation_h;
                    const int padding_row = iy < 0 || iy >= H;
                    float *row = plane + iy * W + dx0;
                    if (adjoint) {
                        if (padding_row) continue;
                        if (sw == 1) {
                            add_run(row + lo, col + lo, hi - lo);
                        } else {
                            for (ptrdiff_t ox = lo; ox < hi; ox++) row[ox * sw] += col[ox];
                        }
                    } else if (padding_row) {
                        zero_run(col, ow);
                    } else {
                        zero_run(col, lo);
                        if (sw == 1) {
                            copy_run(col + lo, row + lo, hi - lo);
                        } else {
                            for (ptrdiff_t ox = lo; ox < hi; ox++) col[ox] = row[ox * sw];
                        }
                        zero_run(col + hi, ow - hi);
                    }
                }
            }
        }
    }
}

PML_INLINE_RUNS void pml_im2col(const float *x, size_t channels, const pml_window *w, float *col) { walk((float *)x, channels, w, col, 0); }

PML_INLINE_RUNS void pml_col2im(const float *col, size_t channels, const pml_window *w, float *dx) { walk(dx, channels, w, (float *)col, 1); }

void pml_fill_planes(const float *b, float *y, size_t planes, size_t size) {
    for (size_t p = 0; p < planes; p++, y += size) {
        const float v = b[p];
        for (size_t i = 0; i < size; i++) y[i] = v;
    }
}

void pml_add_planes(const float *b, float *y, size_t planes, size_t size) {
    for (size_t p = 0; p < planes; p++, y += size) {
        const float v = b[p];
        for (size_t i = 0; i < size; i++) y[i] += v;
    }
}

void pml_add_plane_sums(const float *dy, float *db, size_t planes, size_t size) {
    for (size_t p = 0; p < planes; p++, dy += size) {
        float s = 0;
        for (size_t i = 0; i < size; i++) s += dy[i];
        db[p] += s;
    }
}

void pml_plane_means(const float *x, float *y, size_t planes, size_t size) {
    for (size_t p = 0; p < planes; p++, x += size) {
        float s = 0;
        for (size_t i = 0; i < size; i++) s += x[i];
        y[p] = s / (float)size;
    }
}

void pml_spread_plane_means(const float *dy, float *dx, size_t planes, size_t size) {
    for (size_t p = 0; p < planes; p++, dx += size) {
        const float g = dy[p] / (float)size;
        for (size_t i = 0; i < size; i++) dx[i] = g;
    }
}

// The window of output (oy, ox), clipped to the input: rows [*h0, *h1),
// columns [*w0, *w1).
static void window(const pml_window *w, ptrdiff_t oy, ptrdiff_t ox, ptrdiff_t *h0, ptrdiff_t *h1, ptrdiff_t *w0, ptrdiff_t *w1) {
    ptrdiff_t hs = oy * w->stride_h - w->pad_h, ws = ox * w->stride_w - w->pad_w;
    ptrdiff_t he = hs + w->kernel_h, we = ws + w->kernel_w;
    *h0 = hs < 0 ? 0 : hs;
    *w0 = ws < 0 ? 0 : ws;
    *h1 = he > w->height ? w->height : he;
    *w1 = we > w->width ? w->width : we;
}

// Keeps (v, i) when v is larger than the best so far or is NaN: the first
// maximum in scan order, the last NaN. Written as selects, not branches:
// which cell of a window wins is data, and mispredicted branches took most
// of the pooling's time.
static inline void keep_larger(float v, ptrdiff_t i, float *best, ptrdiff_t *at) {
    const int take = (v > *best) | (v != v);
    *best = take ? v : *best;
    *at = take ? i : *at;
}

// 2x2 windows at stride 2 that lie inside the plane (no padding): the
// common case, with the window's four cells read directly.
static void max_pool_2x2(const float *x, size_t planes, const pml_window *w, float *y, int32_t *arg) {
    const ptrdiff_t W = w->width, in = w->height * W;
    for (size_t p = 0; p < planes; p++, x += in) {
        for (ptrdiff_t oy = 0; oy < w->out_h; oy++) {
            const ptrdiff_t top = 2 * oy * W;
            for (ptrdiff_t ox = 0; ox < w->out_w; ox++, y++, arg++) {
                const ptrdiff_t i = top + 2 * ox;
                float best = x[i];
                ptrdiff_t at = i;
                keep_larger(x[i + 1], i + 1, &best, &at);
                keep_larger(x[i + W], i + W, &best, &at);
                keep_larger(x[i + W + 1], i + W + 1, &best, &at);
                *y = best;
                *arg = (int32_t)at;
            }
        }
    }
}

void pml_max_pool_forward(const float *x, size_t planes, const pml_window *w, float *y, int32_t *arg) {
    if (w->kernel_h == 2 && w->kernel_w == 2 && w->stride_h == 2 && w->stride_w == 2 && w->pad_h == 0 && w->pad_w == 0
        && 2 * w->out_h <= w->height && 2 * w->out_w <= w->width) {
        max_pool_2x2(x, planes, w, y, arg);
        return;
    }
    const ptrdiff_t W = w->width, in = w->height * W;
    for (size_t p = 0; p < planes; p++, x += in) {
        for (ptrdiff_t oy = 0; oy < w->out_h; oy++) {
            for (ptrdiff_t ox = 0; ox < w->out_w; ox++, y++, arg++) {
                ptrdiff_t h0, h1, w0, w1;
                window(w, oy, ox, &h0, &h1, &w0, &w1);
                float best = -INFINITY;
                ptrdiff_t at = h0 * W + w0;
                for (ptrdiff_t ih = h0; ih < h1; ih++) {
                    for (ptrdiff_t iw = w0; iw < w1; iw++) keep_larger(x[ih * W + iw], ih * W + iw, &best, &at);
                }
                *y = best;
                *arg = (int32_t)at;
            }
        }
    }
}

void pml_max_pool_backward(const float *dy, const int32_t *arg, size_t planes, const pml_window *w, float *dx) {
    const ptrdiff_t in = w->height * w->width, out = w->out_h * w->out_w;
    for (size_t p = 0; p < planes; p++, dx += in) {
        for (ptrdiff_t o = 0; o < out; o++) dx[*arg++] += *dy++;
    }
}

// What a window's sum is divided by, as PyTorch's avg_pool2d: the padded
// window's size, or the number of its cells inside the input.
static float divisor(const pml_window *w, ptrdiff_t oy, ptrdiff_t ox, int count_include_pad) {
    ptrdiff_t h0, h1, w0, w1;
    window(w, oy, ox, &h0, &h1, &w0, &w1);
    if (!count_include_pad) return (float)((h1 - h0) * (w1 - w0));
    ptrdiff_t hs = oy * w->stride_h - w->pad_h, ws = ox * w->stride_w - w->pad_w;
    ptrdiff_t he = hs + w->kernel_h, we = ws + w->kernel_w;
    if (he > w->height + w->pad_h) he = w->height + w->pad_h;
    if (we > w->width + w->pad_w) we = w->width + w->pad_w;
    return (float)((he - hs) * (we - ws));
}

void pml_avg_pool_forward(const float *x, size_t planes, const pml_window *w, int count_include_pad, float *y) {
    const ptrdiff_t W = w->width, in = w->height * W;
    for (size_t p = 0; p < planes; p++, x += in) {
        for (ptrdiff_t oy = 0; oy < w->out_h; oy++) {
            for (ptrdiff_t ox = 0; ox < w->out_w; ox++, y++) {
                ptrdiff_t h0, h1, w0, w1;
                window(w, oy, ox, &h0, &h1, &w0, &w1);
                float s = 0;
                for (ptrdiff_t ih = h0; ih < h1; ih++) {
                    for (ptrdiff_t iw = w0; iw < w1; iw++) s += x[ih * W + iw];
                }
                *y = s / divisor(w, oy, ox, count_include_pad);
            }
        }
    }
}

void pml_avg_pool_backward(const float *dy, size_t planes, const pml_window *w, int count_include_pad, float *dx) {
    const ptrdiff_t W = w->width, in = w->height * W;
    for (size_t p = 0; p < planes; p++, dx += in) {
        for (ptrdiff_t oy = 0; oy < w->out_h; oy++) {
            for (ptrdiff_t ox = 0; ox < w->out_w; ox++, dy++) {
                ptrdiff_t h0, h1, w0, w1;
                window(w, oy, ox, &h0, &h1, &w0, &w1);
                const float g = *dy / divisor(w, oy, ox, count_include_pad);
                for (ptrdiff_t ih = h0; ih < h1; ih++) {
                    for (ptrdiff_t iw = w0; iw < w1; iw++) dx[ih * W + iw] += g;
                }
            }
        }
    }
}
