// bf16 and float32 matrix products over oneDNN's matmul primitive (pml_dnnl_matmul.h):
// parml's row-major arrays described by strides, so transposed operands
// need no copy; float32 results, β by a sum post-op fixed in the plan.
#define _GNU_SOURCE
#include "pml_dnnl_matmul.h"
#include "pml_dnnl.h"

#include "dnnl_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
#define PML_HAVE_BF16_INTRINSICS 1
#endif

int pml_cpu_has_avx512_bf16(void) {
#ifdef PML_HAVE_BF16_INTRINSICS
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

// Round to nearest even, subnormals to signed zero, NaN kept quiet: what
// VCVTNEPS2BF16 does, so both paths give the same bits.
static uint16_t bf16_of(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((b >> 16) | 0x40u);
    if ((b & 0x7F800000u) == 0) return (uint16_t)((b >> 16) & 0x8000u);
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

#ifdef PML_HAVE_BF16_INTRINSICS
__attribute__((target("avx512f,avx512bf16"))) static void bf16_round_avx512(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void *)(y + i), (__m512i)v);
    }
    for (; i < n; i++) y[i] = bf16_of(x[i]);
}
#endif

void pml_bf16_round(const float *x, uint16_t *y, size_t n) {
#ifdef PML_HAVE_BF16_INTRINSICS
    static int fast = -1;  // a benign race: every thread computes the same value
    if (fast < 0) fast = pml_cpu_has_avx512_bf16();
    if (fast) {
        bf16_round_avx512(x, y, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) y[i] = bf16_of(x[i]);
}

uint64_t pml_bf16_next_serial(void) {
    static uint64_t last;
    return __atomic_add_fetch(&last, 1, __ATOMIC_RELAXED);
}

#ifdef PML_DNNL_HEADERS

struct pml_matmul_plan {
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_memory_t a, b, c, bias, scratch_mem;
    void *scratch;
    int threads;
    char impl[128];
};

static int build(pml_matmul_plan *p, const pml_matmul_shape *s, char *err, size_t errlen) {
    dnnl_memory_desc_t a, b, c, bias;
    dnnl_dims_t a_dims = {s->m, s->k}, b_dims = {s->k, s->n}, c_dims = {s->m, s->n}, bias_dims = {1, s->n};
    dnnl_dims_t a_strides = {s->trans_a ? 1 : s->lda, s->trans_a ? s->lda : 1};
    dnnl_dims_t b_strides = {s->trans_b ? 1 : s->ldb, s->trans_b ? s->ldb : 1};
    dnnl_dims_t c_strides = {s->ldc, 1};
    dnnl_data_type_t operands = s->f32 ? dnnl_f32 : dnnl_bf16;
    TRY(pml_dnnl.dnnl_memory_desc_init_by_strides(&a, 2, a_dims, operands, a_strides), "A descriptor");
    TRY(pml_dnnl.dnnl_memory_desc_init_by_strides(&b, 2, b_dims, operands, b_strides), "B descriptor");
    TRY(pml_dnnl.dnnl_memory_desc_init_by_strides(&c, 2, c_dims, dnnl_f32, c_strides), "C descriptor");
    if (s->bias) TRY(pml_dnnl.dnnl_memory_desc_init_by_tag(&bias, 2, bias_dims, dnnl_f32, dnnl_ab), "bias descriptor");
    dnnl_matmul_desc_t desc;
    TRY(pml_dnnl.dnnl_matmul_desc_init(&desc, &a, &b, s->bias ? &bias : NULL, &c), "matmul descriptor");

    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = pml_dnnl.dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = pml_dnnl.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && s->beta != 0) {
        st = pml_dnnl.dnnl_post_ops_create(&ops);
        if (st == dnnl_success) st = pml_dnnl.dnnl_post_ops_append_sum(ops, s->beta);
        if (st == dnnl_success) st = pml_dnnl.dnnl_primitive_attr_set_post_ops(attr, ops);
    }
    if (st == dnnl_success) st = pml_dnnl.dnnl_primitive_desc_create(&pd, &desc, attr, pml_dnnl_engine, NULL);
    if (ops) pml_dnnl.dnnl_post_ops_destroy(ops);
    if (attr) pml_dnnl.dnnl_primitive_attr_destroy(attr);
    TRY(st, s->f32 ? "float32 matmul" : "bf16 matmul");

    const char *impl = pml_dnnl_impl_name(pd);
    snprintf(p->impl, sizeof p->impl, "%s", impl);
    const dnnl_memory_desc_t *smd = pml_dnnl.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t bytes = pml_dnnl.dnnl_memory_desc_get_size(smd);
    if (posix_memalign(&p->scratch, 64, bytes ? bytes : 64) != 0) {
        p->scratch = NULL;
        pml_dnnl.dnnl_primitive_desc_destroy(pd);
        snprintf(err, errlen, "out of memory for a oneDNN scratchpad of %zu bytes", bytes);
        return -1;
    }
    st = pml_dnnl.dnnl_memory_create(&p->scratch_mem, smd, pml_dnnl_engine, p->scratch);
    if (st == dnnl_success) st = pml_dnnl.dnnl_primitive_create(&p->prim, pd);
    pml_dnnl.dnnl_primitive_desc_destroy(pd);
    TRY(st, "matmul primitive");
    TRY(pml_dnnl.dnnl_memory_create(&p->a, &a, pml_dnnl_engine, DNNL_MEMORY_NONE), "memory");
    TRY(pml_dnnl.dnnl_memory_create(&p->b, &b, pml_dnnl_engine, DNNL_MEMORY_NONE), "memory");
    TRY(pml_dnnl.dnnl_memory_create(&p->c, &c, pml_dnnl_engine, DNNL_MEMORY_NONE), "memory");
    if (s->bias) TRY(pml_dnnl.dnnl_memory_create(&p->bias, &bias, pml_dnnl_engine, DNNL_MEMORY_NONE), "memory");
    TRY(pml_dnnl.dnnl_stream_create(&p->stream, pml_dnnl_engine, dnnl_stream_default_flags), "stream");
    return 0;
}

pml_matmul_plan *pml_matmul_plan_create(const pml_matmul_shape *s, char *err, size_t errlen) {
    if (pml_dnnl_load(err, errlen) != 0) return NULL;
    if (!s || s->m < 1 || s->n < 1 || s->k < 1 || s->lda < (s->trans_a ? s->m : s->k) ||
        s->ldb < (s->trans_b ? s->k : s->n) || s->ldc < s->n || (s->bias && (s->beta != 0 || s->f32))) {
        snprintf(err, errlen, "matmul: invalid shape");
        return NULL;
    }
    pml_matmul_plan *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory for a oneDNN plan");
        return NULL;
    }
    p->threads = s->threads > 0 ? s->threads : 1;
    int before = pml_dnnl_use_threads(p->threads);
    int rc = build(p, s, err, errlen);
    pml_dnnl_restore_threads(before);
    if (rc != 0) {
        pml_matmul_plan_free(p);
        return NULL;
    }
    return p;
}

void pml_matmul_plan_free(pml_matmul_plan *p) {
    if (!p) return;
    if (p->prim) pml_dnnl.dnnl_primitive_destroy(p->prim);
    if (p->stream) pml_dnnl.dnnl_stream_destroy(p->stream);
    dnnl_memory_t mems[] = {p->a, p->b, p->c, p->bias, p->scratch_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) pml_dnnl.dnnl_memory_destroy(mems[i]);
    free(p->scratch);
    free(p);
}

const char *pml_matmul_plan_impl(const pml_matmul_plan *p) { return p->impl; }

// The operands' element type is the plan's: the pointers only travel. A
// plan made with a bias needs one (and one without ignores it).
static int run(pml_matmul_plan *p, const void *a, const void *b, const float *bias, float *c) {
    if (p->bias && !bias) return -1;
    int st = (int)pml_dnnl.dnnl_memory_set_data_handle(p->a, (void *)a) |
             (int)pml_dnnl.dnnl_memory_set_data_handle(p->b, (void *)b) |
             (int)pml_dnnl.dnnl_memory_set_data_handle(p->c, c);
    if (p->bias) st |= (int)pml_dnnl.dnnl_memory_set_data_handle(p->bias, (void *)bias);
    if (st) return st;
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, p->a},
                              {DNNL_ARG_WEIGHTS, p->b},
                              {DNNL_ARG_DST, p->c},
                              {DNNL_ARG_SCRATCHPAD, p->scratch_mem},
                              {DNNL_ARG_BIAS, p->bias}};
    int before = pml_dnnl_use_threads(p->threads);
    st = (int)pml_dnnl.dnnl_primitive_execute(p->prim, p->stream, p->bias ? 5 : 4, args);
    pml_dnnl_restore_threads(before);
    return st;
}

int pml_matmul_run(pml_matmul_plan *p, const uint16_t *a, const uint16_t *b, float *c) { return run(p, a, b, NULL, c); }
int pml_matmul_run_bias(pml_matmul_plan *p, const uint16_t *a, const uint16_t *b, const float *bias, float *c) {
    return run(p, a, b, bias, c);
}
int pml_matmul_run_f32(pml_matmul_plan *p, const float *a, const float *b, float *c) { return run(p, a, b, NULL, c); }

#else
// Built without oneDNN's headers: pml_dnnl_load fails, so no plan is ever made.
pml_matmul_plan *pml_matmul_plan_create(const pml_matmul_shape *s, char *err, size_t errlen) {
    (void)s;
    snprintf(err, errlen, "parml was built without oneDNN");
    return NULL;
}
void pml_matmul_plan_free(pml_matmul_plan *p) { (void)p; }
const char *pml_matmul_plan_impl(const pml_matmul_plan *p) {
    (void)p;
    return "none";
}
int pml_matmul_run(pml_matmul_plan *p, const uint16_t *a, const uint16_t *b, float *c) {
    (void)p, (void)a, (void)b, (void)c;
    return -1;
}
int pml_matmul_run_bias(pml_matmul_plan *p, const uint16_t *a, const uint16_t *b, const float *bias, float *c) {
    (void)p, (void)a, (void)b, (void)bias, (void)c;
    return -1;
}
int pml_matmul_run_f32(pml_matmul_plan *p, const float *a, const float *b, float *c) {
    (void)p, (void)a, (void)b, (void)c;
    return -1;
}
#endif
