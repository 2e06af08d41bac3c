// Large float32 products on oneDNN's matmul, the rest on OpenBLAS
// (pml_dnnl_sgemm.h): a per-thread cache of single-threaded plans.
#define _GNU_SOURCE
#include "pml_dnnl_sgemm.h"
#include "pml_dnnl.h"
#include "pml_dnnl_matmul.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { ROW_MAJOR = 101, TRANS = 112, SLOTS = 64 };

static pml_dnnl_sgemm_fn fallback;
static unsigned long long taken, refused;

typedef struct {
    pml_matmul_shape key;
    pml_matmul_plan *plan; /* NULL: oneDNN refused the shape, OpenBLAS runs it */
    int used;
} slot;

typedef struct cache {
    slot slots[SLOTS];
    int next;            /* the slot a new shape replaces when all are used (round robin) */
    float *scratch;      /* contiguous C for a column block times a transposed B (pml_dnnl_sgemm_run) */
    size_t scratch_floats;
    struct cache *spare; /* next in the list of caches whose threads ended */
} cache;

static pthread_key_t cache_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int loaded = -1; /* pml_dnnl_load's outcome: 0 loaded */

// A thread's cache outlives the thread: at its exit the cache goes to a
// list that the next new thread takes it from. Freeing the plans there
// would call oneDNN while the exiting thread's other thread-local
// destructors (oneDNN's and OpenMP's own) run in no fixed order. The
// plans hold no thread state, and one thread uses a cache at a time.
static pthread_mutex_t spares_lock = PTHREAD_MUTEX_INITIALIZER;
static cache *spares;

static void keep_cache(void *p) {
    cache *c = p;
    pthread_mutex_lock(&spares_lock);
    c->spare = spares;
    spares = c;
    pthread_mutex_unlock(&spares_lock);
}

static cache *new_cache(void) {
    pthread_mutex_lock(&spares_lock);
    cache *c = spares;
    if (c) spares = c->spare;
    pthread_mutex_unlock(&spares_lock);
    if (c) c->spare = NULL;
    return c ? c : calloc(1, sizeof *c);
}

static void init_once(void) {
    char err[256];
    loaded = pml_dnnl_load(err, sizeof err);
    if (loaded == 0 && pthread_key_create(&cache_key, keep_cache) != 0) loaded = -1;
}

// A block of columns (ldc > n: ProductThreads cut a product of fewer rows
// than 256 by columns) times a transposed B: past a few rows oneDNN 2.6
// runs it on gemm:jit at a third to a half of its speed with C contiguous
// (brgemm), so it runs into contiguous scratch and is copied out.
static int through_scratch(int transB, int m, int n, int ldc) {
    return transB == TRANS && ldc != n && m > PML_DNNL_SGEMM_STRIDED_NT_ROWS;
}

int pml_dnnl_sgemm_takes(int transA, int transB, int m, int n, int k, int ldc, float alpha) {
    (void)transB;
    (void)ldc;
    if (alpha != 1.0f || (int64_t)m * n * k < PML_DNNL_SGEMM_MIN_VOLUME || n < PML_DNNL_SGEMM_MIN_SIDE ||
        k < PML_DNNL_SGEMM_MIN_SIDE)
        return 0;
    // Few rows (pml_dnnl_sgemm.h): y = x.W^T or dx = dy.W, not dy^T.x.
    return m >= PML_DNNL_SGEMM_MIN_SIDE || transA != TRANS;
}

static int same(const pml_matmul_shape *x, const pml_matmul_shape *y) {
    return x->m == y->m && x->n == y->n && x->k == y->k && x->lda == y->lda && x->ldb == y->ldb && x->ldc == y->ldc &&
           x->trans_a == y->trans_a && x->trans_b == y->trans_b && memcmp(&x->beta, &y->beta, sizeof x->beta) == 0;
}

// The calling thread's plan for s, made on first sight; NULL when oneDNN
// refuses the shape or memory runs out (then OpenBLAS runs it).
static cache *this_threads_cache(void) {
    cache *c = pthread_getspecific(cache_key);
    if (!c) {
        c = new_cache();
        if (!c) return NULL;
        if (pthread_setspecific(cache_key, c) != 0) {
            keep_cache(c);
            return NULL;
        }
    }
    return c;
}

// The calling thread's scratch of at least `floats` floats (grown, never
// shrunk: a step meets the same shapes every time); NULL when memory runs out.
static float *scratch_for(size_t floats) {
    cache *c = this_threads_cache();
    if (!c) return NULL;
    if (c->scratch_floats < floats) {
        float *grown = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        if (!grown) return NULL;
        free(c->scratch);
        c->scratch = grown;
        c->scratch_floats = floats;
    }
    return c->scratch;
}

static pml_matmul_plan *plan_for(const pml_matmul_shape *s) {
    cache *c = this_threads_cache();
    if (!c) return NULL;
    for (int i = 0; i < SLOTS; i++)
        if (c->slots[i].used && same(&c->slots[i].key, s)) return c->slots[i].plan;
    slot *victim = &c->slots[c->next];
    c->next = (c->next + 1) % SLOTS;
    pml_matmul_plan_free(victim->plan);
    char err[256];
    victim->key = *s;
    victim->plan = pml_matmul_plan_create(s, err, sizeof err);
    victim->used = 1;
    return victim->plan;
}

int pml_dnnl_sgemm_run(int transA, int transB, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                       float beta, float *c, int ldc) {
    pthread_once(&key_once, init_once);
    if (loaded != 0) return -1;
    if (through_scratch(transB, m, n, ldc)) {
        // C = scratch + beta C, row by row: the sum oneDNN's post-op makes.
        pml_matmul_shape s = {m, n, k, lda, ldb, n, transA == TRANS, 1, 0, 1, 1, 0};
        pml_matmul_plan *p = plan_for(&s);
        float *y = scratch_for((size_t)m * n);
        if (!p || !y || pml_matmul_run_f32(p, a, b, y) != 0) return -1;
        for (int i = 0; i < m; i++) {
            float *row = c + (size_t)i * ldc;
            const float *from = y + (size_t)i * n;
            if (beta == 0.0f)
                memcpy(row, from, (size_t)n * sizeof(float));
            else
                for (int j = 0; j < n; j++) row[j] = from[j] + beta * row[j];
        }
        __atomic_add_fetch(&taken, 1, __ATOMIC_RELAXED);
        return 0;
    }
    pml_matmul_shape s = {m, n, k, lda, ldb, ldc, transA == TRANS, transB == TRANS, beta, 1, 1, 0};
    pml_matmul_plan *p = plan_for(&s);
    // A refused shape or a failed execute (oneDNN checks its arguments
    // before it writes C) leaves C as it was, for OpenBLAS.
    if (!p || pml_matmul_run_f32(p, a, b, c) != 0) return -1;
    __atomic_add_fetch(&taken, 1, __ATOMIC_RELAXED);
    return 0;
}

// The calling thread's settings, one word so a product reads one
// thread-local: BYPASS (every product to OpenBLAS), SKIP (none computes).
enum { BYPASS = 1, SKIP = 2 };
static _Thread_local int settings;

static int set_on_this_thread(int bit, int on) {
    int before = (settings & bit) != 0;
    settings = on ? settings | bit : settings & ~bit;
    return before;
}

int pml_dnnl_sgemm_bypass_on_this_thread(int on) { return set_on_this_thread(BYPASS, on); }
int pml_dnnl_sgemm_skip_on_this_thread(int on) { return set_on_this_thread(SKIP, on); }

static void route(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) {
    int mine = settings;
    if (mine & SKIP) return;
    if (!(mine & BYPASS) && order == ROW_MAJOR && pml_dnnl_sgemm_takes(transA, transB, m, n, k, ldc, alpha)) {
        if (pml_dnnl_sgemm_run(transA, transB, m, n, k, a, lda, b, ldb, beta, c, ldc) == 0) return;
        __atomic_add_fetch(&refused, 1, __ATOMIC_RELAXED);
    }
    fallback(order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

pml_dnnl_sgemm_fn pml_dnnl_sgemm_route(pml_dnnl_sgemm_fn openblas) {
    fallback = openblas;
    return route;
}

void pml_dnnl_sgemm_counts(unsigned long long *onednn, unsigned long long *openblas) {
    if (onednn) *onednn = __atomic_load_n(&taken, __ATOMIC_RELAXED);
    if (openblas) *openblas = __atomic_load_n(&refused, __ATOMIC_RELAXED);
}
