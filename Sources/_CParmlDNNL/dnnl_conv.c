// Convolution plans over oneDNN: per shape, the three primitives in the
// layouts oneDNN prefers (blocked, e.g. nChw16c, on AVX-512) and the
// reorders between those and parml's plain NCHW / (G)OIHW arrays, all
// created once; each call re-points memory objects at parml's buffers.
#define _GNU_SOURCE
#include "pml_dnnl.h"

#include "dnnl_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef PML_DNNL_HEADERS

// One tensor as a primitive sees it: parml's plain array, and, when the
// primitive wants another layout, its own buffer and a reorder each way
// (only the direction the data flows is created).
typedef struct {
    dnnl_memory_t plain, inner; // inner == plain when the layouts agree
    dnnl_primitive_t in, out;
    void *buffer;
} view;

enum { P_FWD, P_BWD_D, P_BWD_W, P_COUNT };
// x, w as forward reads them; y as it writes it; dy, w, dx for backward
// data; x, dy, dw for backward weights; plain bias.
enum { V_X, V_W, V_Y, V_DY_D, V_W_D, V_DX, V_X_W, V_DY_W, V_DW, V_BIAS, V_COUNT };

struct pml_conv_plan {
    dnnl_stream_t stream;
    dnnl_primitive_t prim[P_COUNT];
    view v[V_COUNT];
    dnnl_memory_t scratch_md_mem[P_COUNT];
    dnnl_memory_t reorder_scratch; // the same buffer as flat bytes, for the reorders
    void *scratch; // one scratchpad for all: nothing here runs at once
    size_t scratch_bytes;
    int has_bias, threads;
    // Where backward finds x, w and dy in the layout it wants: forward's
    // view (or backward data's) when the layouts agree, else its own.
    int x_for_w, w_for_d, dy_for_w;
    const float *forward_x, *forward_w; // what forward's views hold
    char impl[256];
};

static size_t scratch_size(const_dnnl_primitive_desc_t pd) {
    return pml_dnnl.dnnl_memory_desc_get_size(pml_dnnl.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
}

static int make_reorder(pml_conv_plan *p, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                        const_dnnl_primitive_attr_t attr, dnnl_primitive_t *out, char *err, size_t errlen) {
    dnnl_primitive_desc_t pd = NULL;
    TRY(pml_dnnl.dnnl_reorder_primitive_desc_create(&pd, from, pml_dnnl_engine, to, pml_dnnl_engine, attr), "reorder");
    size_t b = scratch_size(pd);
    if (b > p->scratch_bytes) p->scratch_bytes = b;
    dnnl_status_t st = pml_dnnl.dnnl_primitive_create(out, pd);
    pml_dnnl.dnnl_primitive_desc_destroy(pd);
    TRY(st, "reorder primitive");
    return 0;
}

// Fills view v for a primitive that wants `want` where parml holds `plain`;
// reads: parml → primitive (else primitive → parml).
static int make_view(pml_conv_plan *p, view *v, const dnnl_memory_desc_t *plain, const dnnl_memory_desc_t *want,
                     int reads, const_dnnl_primitive_attr_t attr, char *err, size_t errlen) {
    TRY(pml_dnnl.dnnl_memory_create(&v->plain, plain, pml_dnnl_engine, DNNL_MEMORY_NONE), "memory");
    if (pml_dnnl.dnnl_memory_desc_equal(plain, want)) {
        v->inner = v->plain;
        return 0;
    }
    size_t bytes = pml_dnnl.dnnl_memory_desc_get_size(want);
    if (posix_memalign(&v->buffer, 64, bytes ? bytes : 64) != 0) {
        v->buffer = NULL;
        snprintf(err, errlen, "out of memory for a oneDNN buffer of %zu bytes", bytes);
        return -1;
    }
    TRY(pml_dnnl.dnnl_memory_create(&v->inner, want, pml_dnnl_engine, v->buffer), "memory");
    return reads ? make_reorder(p, plain, want, attr, &v->in, err, errlen)
                 : make_reorder(p, want, plain, attr, &v->out, err, errlen);
}

static const dnnl_memory_desc_t *md(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
    return pml_dnnl.dnnl_primitive_desc_query_md(pd, what, 0);
}

static int build(pml_conv_plan *p, const pml_conv_shape *s, dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd,
                 char *err, size_t errlen) {
    const int64_t g = s->groups, og = s->out_channels / g, cg = s->in_channels / g;
    dnnl_memory_desc_t src, wei, bias, dst, src_any, wei_any, dst_any, dy_any;
    dnnl_dims_t src_dims = {s->batch, s->in_channels, s->height, s->width};
    dnnl_dims_t dst_dims = {s->batch, s->out_channels, s->out_height, s->out_width};
    dnnl_dims_t bias_dims = {s->out_channels};
    dnnl_dims_t wei_dims = {og, cg, s->kernel_h, s->kernel_w};
    dnnl_dims_t gwei_dims = {g, og, cg, s->kernel_h, s->kernel_w};
    const int wnd = g == 1 ? 4 : 5;
    const int64_t *wdims = g == 1 ? wei_dims : gwei_dims;
    // PARML_DNNL_LAYOUT=plain keeps parml's layouts (oneDNN then runs its
    // own im2col + GEMM): how docs/cnn.md measured that blocked pays.
    const char *layout = getenv("PARML_DNNL_LAYOUT");
    const dnnl_format_tag_t any = layout && strcmp(layout, "plain") == 0 ? dnnl_format_tag_undef : dnnl_format_tag_any;
    TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&src, 4, src_dims, dnnl_f32, dnnl_nchw), "source descriptor");
    TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&dst, 4, dst_dims, dnnl_f32, dnnl_nchw), "destination descriptor");
    TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&bias, 1, bias_dims, dnnl_f32, dnnl_x), "bias descriptor");
    TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&wei, wnd, wdims, dnnl_f32, g == 1 ? dnnl_oihw : dnnl_goihw),
        "weights descriptor");
    src_any = src, wei_any = wei, dst_any = dst;
    // bf16: what the primitives read (x, w, dy) in bf16, what they write in
    // float32; the views' reorders round parml's float32 arrays on the way in.
    const dnnl_data_type_t in_type = s->bf16 ? dnnl_bf16 : dnnl_f32;
    const dnnl_format_tag_t x_tag = any == dnnl_format_tag_any ? any : dnnl_nchw;
    const dnnl_format_tag_t w_tag = any == dnnl_format_tag_any ? any : g == 1 ? dnnl_oihw : dnnl_goihw;
    if (any == dnnl_format_tag_any || s->bf16) {
        TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&src_any, 4, src_dims, in_type, x_tag), "source descriptor");
        TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&dst_any, 4, dst_dims, dnnl_f32, x_tag), "destination descriptor");
        TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&wei_any, wnd, wdims, in_type, w_tag), "weights descriptor");
    }
    dy_any = dst_any;
    if (s->bf16) TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&dy_any, 4, dst_dims, dnnl_bf16, x_tag), "gradient descriptor");
    // Backward data writes dx in float32 whatever x's type.
    dnnl_memory_desc_t dx_any = src_any;
    if (s->bf16) TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&dx_any, 4, src_dims, dnnl_f32, x_tag), "source gradient descriptor");
    dnnl_memory_desc_t dw_any = wei_any;
    if (s->bf16) TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&dw_any, wnd, wdims, dnnl_f32, w_tag), "weight gradient descriptor");

    // oneDNN counts dilation from 0 and wants the right padding that gives
    // PyTorch's floor output size: negative when trailing rows are dropped.
    dnnl_dims_t strides = {s->stride_h, s->stride_w};
    dnnl_dims_t dilates = {s->dilation_h - 1, s->dilation_w - 1};
    dnnl_dims_t pad_l = {s->pad_h, s->pad_w};
    dnnl_dims_t pad_r = {
        (s->out_height - 1) * s->stride_h + (s->kernel_h - 1) * s->dilation_h + 1 - s->height - s->pad_h,
        (s->out_width - 1) * s->stride_w + (s->kernel_w - 1) * s->dilation_w + 1 - s->width - s->pad_w};
    const dnnl_memory_desc_t *bias_md = s->has_bias ? &bias : NULL;

    dnnl_convolution_desc_t fwd, bwd_d, bwd_w;
    TRY(pml_dnnl.dnnl_dilated_convolution_forward_desc_init(&fwd, dnnl_forward_training, dnnl_convolution_direct,
                                                            &src_any, &wei_any, bias_md, &dst_any, strides, dilates,
                                                            pad_l, pad_r),
        "forward descriptor");
    TRY(pml_dnnl.dnnl_primitive_desc_create(&pd[P_FWD], &fwd, attr, pml_dnnl_engine, NULL), "forward");
    TRY(pml_dnnl.dnnl_dilated_convolution_backward_data_desc_init(&bwd_d, dnnl_convolution_direct, &dx_any, &wei_any,
                                                                  &dy_any, strides, dilates, pad_l, pad_r),
        "backward-data descriptor");
    TRY(pml_dnnl.dnnl_primitive_desc_create(&pd[P_BWD_D], &bwd_d, attr, pml_dnnl_engine, pd[P_FWD]), "backward data");
    TRY(pml_dnnl.dnnl_dilated_convolution_backward_weights_desc_init(&bwd_w, dnnl_convolution_direct, &src_any,
                                                                     &dw_any, bias_md, &dy_any, strides, dilates,
                                                                     pad_l, pad_r),
        "backward-weights descriptor");
    TRY(pml_dnnl.dnnl_primitive_desc_create(&pd[P_BWD_W], &bwd_w, attr, pml_dnnl_engine, pd[P_FWD]),
        "backward weights");

    const dnnl_memory_desc_t *x_f = md(pd[P_FWD], dnnl_query_src_md), *x_w = md(pd[P_BWD_W], dnnl_query_src_md);
    const dnnl_memory_desc_t *w_f = md(pd[P_FWD], dnnl_query_weights_md), *w_d = md(pd[P_BWD_D], dnnl_query_weights_md);
    const dnnl_memory_desc_t *dy_d = md(pd[P_BWD_D], dnnl_query_diff_dst_md);
    const dnnl_memory_desc_t *dy_w = md(pd[P_BWD_W], dnnl_query_diff_dst_md);
    p->x_for_w = pml_dnnl.dnnl_memory_desc_equal(x_f, x_w) ? V_X : V_X_W;
    p->w_for_d = pml_dnnl.dnnl_memory_desc_equal(w_f, w_d) ? V_W : V_W_D;
    p->dy_for_w = pml_dnnl.dnnl_memory_desc_equal(dy_d, dy_w) ? V_DY_D : V_DY_W;
    if (make_view(p, &p->v[V_X], &src, x_f, 1, attr, err, errlen) ||
        make_view(p, &p->v[V_W], &wei, w_f, 1, attr, err, errlen) ||
        make_view(p, &p->v[V_Y], &dst, md(pd[P_FWD], dnnl_query_dst_md), 0, attr, err, errlen) ||
        make_view(p, &p->v[V_DY_D], &dst, dy_d, 1, attr, err, errlen) ||
        (p->w_for_d == V_W_D && make_view(p, &p->v[V_W_D], &wei, w_d, 1, attr, err, errlen)) ||
        make_view(p, &p->v[V_DX], &src, md(pd[P_BWD_D], dnnl_query_diff_src_md), 0, attr, err, errlen) ||
        (p->x_for_w == V_X_W && make_view(p, &p->v[V_X_W], &src, x_w, 1, attr, err, errlen)) ||
        (p->dy_for_w == V_DY_W && make_view(p, &p->v[V_DY_W], &dst, dy_w, 1, attr, err, errlen)) ||
        make_view(p, &p->v[V_DW], &wei, md(pd[P_BWD_W], dnnl_query_diff_weights_md), 0, attr, err, errlen) ||
        make_view(p, &p->v[V_BIAS], &bias, &bias, 1, attr, err, errlen))
        return -1;

    for (int i = 0; i < P_COUNT; i++) {
        size_t b = scratch_size(pd[i]);
        if (b > p->scratch_bytes) p->scratch_bytes = b;
    }
    if (posix_memalign(&p->scratch, 64, p->scratch_bytes ? p->scratch_bytes : 64) != 0) {
        p->scratch = NULL;
        snprintf(err, errlen, "out of memory for a oneDNN scratchpad of %zu bytes", p->scratch_bytes);
        return -1;
    }
    for (int i = 0; i < P_COUNT; i++) {
        TRY(pml_dnnl.dnnl_memory_create(&p->scratch_md_mem[i], md(pd[i], dnnl_query_scratchpad_md), pml_dnnl_engine,
                                        p->scratch),
            "scratchpad");
        TRY(pml_dnnl.dnnl_primitive_create(&p->prim[i], pd[i]), "primitive");
    }
    // A reorder's scratchpad (none for these layouts, but oneDNN may ask):
    // bytes, as one flat u8 array over the shared buffer.
    dnnl_memory_desc_t flat;
    dnnl_dims_t flat_dims = {(int64_t)(p->scratch_bytes ? p->scratch_bytes : 1)};
    TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&flat, 1, flat_dims, dnnl_u8, dnnl_x), "scratchpad descriptor");
    TRY(pml_dnnl.dnnl_memory_create(&p->reorder_scratch, &flat, pml_dnnl_engine, p->scratch), "scratchpad");
    TRY(pml_dnnl.dnnl_stream_create(&p->stream, pml_dnnl_engine, dnnl_stream_default_flags), "stream");
    snprintf(p->impl, sizeof p->impl, "%s / %s / %s%s", pml_dnnl_impl_name(pd[P_FWD]), pml_dnnl_impl_name(pd[P_BWD_D]),
             pml_dnnl_impl_name(pd[P_BWD_W]), p->v[V_X].in || p->v[V_Y].out ? " (reordered layouts)" : " (plain layouts)");
    return 0;
}

pml_conv_plan *pml_conv_plan_create(const pml_conv_shape *s, char *err, size_t errlen) {
    pml_conv_plan *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory for a oneDNN plan");
        return NULL;
    }
    p->has_bias = s->has_bias;
    p->threads = s->threads > 0 ? s->threads : 1;
    int before = pml_dnnl_use_threads(p->threads);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd[P_COUNT] = {NULL, NULL, NULL};
    int rc = -1;
    // User scratchpads: oneDNN then keeps no buffer of its own per primitive.
    if (pml_dnnl.dnnl_primitive_attr_create(&attr) != dnnl_success ||
        pml_dnnl.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success)
        snprintf(err, errlen, "oneDNN attributes could not be made");
    else
        rc = build(p, s, attr, pd, err, errlen);
    for (int i = 0; i < P_COUNT; i++)
        if (pd[i]) pml_dnnl.dnnl_primitive_desc_destroy(pd[i]);
    if (attr) pml_dnnl.dnnl_primitive_attr_destroy(attr);
    pml_dnnl_restore_threads(before);
    if (rc != 0) {
        pml_conv_plan_free(p);
        return NULL;
    }
    return p;
}

void pml_conv_plan_free(pml_conv_plan *p) {
    if (!p) return;
    for (int i = 0; i < P_COUNT; i++) {
        if (p->prim[i]) pml_dnnl.dnnl_primitive_destroy(p->prim[i]);
        if (p->scratch_md_mem[i]) pml_dnnl.dnnl_memory_destroy(p->scratch_md_mem[i]);
    }
    for (int i = 0; i < V_COUNT; i++) {
        view *v = &p->v[i];
        if (v->in) pml_dnnl.dnnl_primitive_destroy(v->in);
        if (v->out) pml_dnnl.dnnl_primitive_destroy(v->out);
        if (v->inner && v->inner != v->plain) pml_dnnl.dnnl_memory_destroy(v->inner);
        if (v->plain) pml_dnnl.dnnl_memory_destroy(v->plain);
        free(v->buffer);
    }
    if (p->reorder_scratch) pml_dnnl.dnnl_memory_destroy(p->reorder_scratch);
    if (p->stream) pml_dnnl.dnnl_stream_destroy(p->stream);
    free(p->scratch);
    free(p);
}

const char *pml_conv_plan_impl(const pml_conv_plan *p) { return p->impl; }

static int reorder(pml_conv_plan *p, dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, p->reorder_scratch}};
    return (int)pml_dnnl.dnnl_primitive_execute(r, p->stream, 3, args);
}

// Points view v at parml's array and, for an input in another layout,
// reorders it in; `skip` when the inner copy already holds this data.
static int enter(pml_conv_plan *p, int v, const float *data, int skip) {
    view *w = &p->v[v];
    int st = (int)pml_dnnl.dnnl_memory_set_data_handle(w->plain, (void *)data);
    if (st || !w->in || skip) return st;
    return reorder(p, w->in, w->plain, w->inner);
}

// Points view v at parml's array before a primitive writes it (directly,
// when the layouts agree)...
static int aim(pml_conv_plan *p, int v, float *data) {
    return (int)pml_dnnl.dnnl_memory_set_data_handle(p->v[v].plain, data);
}

// ...and afterwards reorders the result out to it when they do not.
static int leave(pml_conv_plan *p, int v) {
    view *w = &p->v[v];
    return w->out ? reorder(p, w->out, w->inner, w->plain) : 0;
}

static int conv_forward(pml_conv_plan *p, const float *x, const float *w, const float *b, float *y) {
    p->forward_x = p->forward_w = NULL;
    int st = enter(p, V_X, x, 0) | enter(p, V_W, w, 0) | (p->has_bias ? enter(p, V_BIAS, b, 0) : 0) | aim(p, V_Y, y);
    if (st) return st;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, p->v[V_X].inner},
                              {DNNL_ARG_WEIGHTS, p->v[V_W].inner},
                              {DNNL_ARG_DST, p->v[V_Y].inner},
                              {DNNL_ARG_SCRATCHPAD, p->scratch_md_mem[P_FWD]},
                              {DNNL_ARG_BIAS, p->v[V_BIAS].inner}};
    st = (int)pml_dnnl.dnnl_primitive_execute(p->prim[P_FWD], p->stream, p->has_bias ? 5 : 4, args);
    if (st) return st;
    p->forward_x = x, p->forward_w = w;
    return leave(p, V_Y);
}

static int conv_backward(pml_conv_plan *p, const float *x, const float *w, const float *dy, float *dw, float *db,
                         float *dx) {
    // Backward data first: when both want dy in the same layout, one reorder serves.
    if (dx) {
        int st = enter(p, V_DY_D, dy, 0) | enter(p, p->w_for_d, w, p->w_for_d == V_W && p->forward_w == w) |
                 aim(p, V_DX, dx);
        if (st) return st;
        dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, p->v[V_DY_D].inner},
                                  {DNNL_ARG_WEIGHTS, p->v[p->w_for_d].inner},
                                  {DNNL_ARG_DIFF_SRC, p->v[V_DX].inner},
                                  {DNNL_ARG_SCRATCHPAD, p->scratch_md_mem[P_BWD_D]}};
        st = (int)pml_dnnl.dnnl_primitive_execute(p->prim[P_BWD_D], p->stream, 4, args);
        if (st || (st = leave(p, V_DX))) return st;
    }
    if (!dw) return 0;  // input gradient only (private training's norm pass)
    int st = enter(p, p->dy_for_w, dy, p->dy_for_w == V_DY_D && dx) |
             enter(p, p->x_for_w, x, p->x_for_w == V_X && p->forward_x == x) |
             (p->has_bias ? aim(p, V_BIAS, db) : 0) | aim(p, V_DW, dw);
    if (st) return st;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, p->v[p->x_for_w].inner},
                              {DNNL_ARG_DIFF_DST, p->v[p->dy_for_w].inner},
                              {DNNL_ARG_DIFF_WEIGHTS, p->v[V_DW].inner},
                              {DNNL_ARG_SCRATCHPAD, p->scratch_md_mem[P_BWD_W]},
                              {DNNL_ARG_DIFF_BIAS, p->v[V_BIAS].inner}};
    st = (int)pml_dnnl.dnnl_primitive_execute(p->prim[P_BWD_W], p->stream, p->has_bias ? 5 : 4, args);
    return st ? st : leave(p, V_DW);
}

// The calling thread's OpenMP setting is the plan's during a call only.
int pml_conv_forward(pml_conv_plan *p, const float *x, const float *w, const float *b, float *y) {
    int before = pml_dnnl_use_threads(p->threads);
    int st = conv_forward(p, x, w, b, y);
    pml_dnnl_restore_threads(before);
    return st;
}

int pml_conv_backward(pml_conv_plan *p, const float *x, const float *w, const float *dy, float *dw,
                      float *db, float *dx) {
    int before = pml_dnnl_use_threads(p->threads);
    int st = conv_backward(p, x, w, dy, dw, db, dx);
    pml_dnnl_restore_threads(before);
    return st;
}

#else
// Built without oneDNN's headers: pml_dnnl_load fails, so no plan is ever made.
pml_conv_plan *pml_conv_plan_create(const pml_conv_shape *s, char *err, size_t errlen) {
    (void)s;
    snprintf(err, errlen, "parml was built without oneDNN");
    return NULL;
}
void pml_conv_plan_free(pml_conv_plan *p) { (void)p; }
const char *pml_conv_plan_impl(const pml_conv_plan *p) {
    (void)p;
    return "none";
}
int pml_conv_forward(pml_conv_plan *p, const float *x, const float *w, const float *b, float *y) {
    (void)p, (void)x, (void)w, (void)b, (void)y;
    return -1;
}
int pml_conv_backward(pml_conv_plan *p, const float *x, const float *w, const float *dy, float *dw, float *db,
                      float *dx) {
    (void)p, (void)x, (void)w, (void)dy, (void)dw, (void)db, (void)dx;
    return -1;
}
#endif
