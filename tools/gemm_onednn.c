/* gemm_onednn.c: one thread's time per product, OpenBLAS's cblas_sgemm
 * against oneDNN's float32 matmul primitive (made once per shape, user
 * scratchpad, as _CParmlDNNL/dnnl_sgemm.c runs it), on the character GPT's
 * products (batch 12 x context 64 = 768 rows, n_embd 128, 4 heads of 32,
 * vocab 65); per shape the best of 5 runs of thread CPU time, and the
 * step-weighted sums of one layer (the count column) at the end. The first
 * 12 shapes are a layer's projections (forward NT, weight gradients TN,
 * input gradients NN), then attention's half-blocks (x 48 heads x 2), then
 * the tied classifier. bench/RESULTS.md (2026-12-05) has the figures.
 *
 *   cc -O2 tools/gemm_onednn.c -o build/gemm_onednn -ldnnl -ldl
 *   OMP_NUM_THREADS=1 OPENBLAS_CORETYPE=SkylakeX ./build/gemm_onednn 2>/dev/null
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
typedef void (*sgemm_t)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
static sgemm_t sg;
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
typedef struct { int ta, tb, m, n, k, lda, ldb, ldc; float beta; int count; } S;
static dnnl_engine_t eng; static dnnl_stream_t strm;
typedef struct { dnnl_primitive_t p; dnnl_memory_t a, b, c, s; } P;
static P mk(S s) {
  P r; dnnl_memory_desc_t a, b, c;
  dnnl_dims_t ad = {s.m, s.k}, bd = {s.k, s.n}, cd = {s.m, s.n};
  dnnl_dims_t as = {s.ta ? 1 : s.lda, s.ta ? s.lda : 1}, bs = {s.tb ? 1 : s.ldb, s.tb ? s.ldb : 1}, cs = {s.ldc, 1};
  dnnl_memory_desc_init_by_strides(&a, 2, ad, dnnl_f32, as);
  dnnl_memory_desc_init_by_strides(&b, 2, bd, dnnl_f32, bs);
  dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs);
  dnnl_matmul_desc_t d; dnnl_matmul_desc_init(&d, &a, &b, NULL, &c);
  dnnl_primitive_attr_t at; dnnl_primitive_attr_create(&at);
  dnnl_primitive_attr_set_scratchpad_mode(at, dnnl_scratchpad_mode_user);
  if (s.beta != 0) { dnnl_post_ops_t o; dnnl_post_ops_create(&o); dnnl_post_ops_append_sum(o, s.beta); dnnl_primitive_attr_set_post_ops(at, o); }
  dnnl_primitive_desc_t pd; int st = dnnl_primitive_desc_create(&pd, &d, at, eng, NULL);
  if (st) { printf("pd fail %d\n", st); exit(1); }
  const char *impl; dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  size_t by = dnnl_memory_desc_get_size(smd);
  void *sp = aligned_alloc(64, by ? (by + 63) / 64 * 64 : 64);
  dnnl_memory_create(&r.s, smd, eng, sp);
  dnnl_primitive_create(&r.p, pd);
  dnnl_memory_create(&r.a, &a, eng, DNNL_MEMORY_NONE);
  dnnl_memory_create(&r.b, &b, eng, DNNL_MEMORY_NONE);
  dnnl_memory_create(&r.c, &c, eng, DNNL_MEMORY_NONE);
  fprintf(stderr, "  impl %s scratch %zu\n", impl, by);
  return r;
}
int main(void) {
  void *h = dlopen("libopenblas.so.0", RTLD_NOW);
  sg = (sgemm_t)dlsym(h, "cblas_sgemm");
  char *(*cn)(void) = dlsym(h, "openblas_get_corename");
  void (*snt)(int) = dlsym(h, "openblas_set_num_threads"); snt(1);
  printf("core %s\n", cn());
  dnnl_engine_create(&eng, dnnl_cpu, 0); dnnl_stream_create(&strm, eng, dnnl_stream_default_flags);
  S sh[] = {
    {0,1,768,384,128,128,128,384,1,1},{0,1,768,128,128,128,128,128,1,1},{0,1,768,512,128,128,128,512,1,1},{0,1,768,128,512,512,512,128,1,1},
    {1,0,384,128,768,384,128,128,0,1},{1,0,128,128,768,128,128,128,0,1},{1,0,512,128,768,512,128,128,0,1},{1,0,128,512,768,128,512,512,0,1},
    {0,0,768,128,384,384,128,128,0,1},{0,0,768,128,128,128,128,128,0,1},{0,0,768,128,512,512,128,128,0,1},{0,0,768,512,128,128,512,512,0,1},
    {0,1,32,32,32,384,384,64,0,48*2},{0,1,32,64,32,384,384,64,0,48*2},
    {0,0,32,32,32,64,384,128,0,48*2},{0,0,32,32,64,64,384,128,0,48*2},
    {1,0,32,32,64,64,128,384,0,48*2},{1,0,32,32,32,64,128,384,0,48*2},
    {0,1,768,65,128,128,128,65,0,1},{1,0,65,128,768,65,128,128,0,1},{0,0,768,128,65,65,128,128,0,1},
  };
  int ns = sizeof sh / sizeof sh[0];
  float *A = aligned_alloc(64, 4 << 20), *B = aligned_alloc(64, 4 << 20), *C = aligned_alloc(64, 4 << 20);
  for (int i = 0; i < (1 << 20); i++) { A[i] = (i % 17) * 0.01f; B[i] = (i % 13) * 0.02f; C[i] = 0; }
  double tb = 0, td = 0;
  for (int i = 0; i < ns; i++) {
    S s = sh[i];
    P p = mk(s);
    int reps = 200000000 / (s.m * s.n * s.k) + 5;
    double best_b = 1e9, best_d = 1e9;
    for (int r = 0; r < 5; r++) {
      double t0 = now();
      for (int j = 0; j < reps; j++) sg(101, s.ta ? 112 : 111, s.tb ? 112 : 111, s.m, s.n, s.k, 1, A, s.lda, B, s.ldb, s.beta, C, s.ldc);
      double t1 = now();
      dnnl_memory_set_data_handle(p.a, A); dnnl_memory_set_data_handle(p.b, B); dnnl_memory_set_data_handle(p.c, C);
      dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, p.a}, {DNNL_ARG_WEIGHTS, p.b}, {DNNL_ARG_DST, p.c}, {DNNL_ARG_SCRATCHPAD, p.s}};
      for (int j = 0; j < reps; j++) {
        dnnl_memory_set_data_handle(p.a, A); dnnl_memory_set_data_handle(p.b, B); dnnl_memory_set_data_handle(p.c, C);
        dnnl_primitive_execute(p.p, strm, 4, args);
      }
      double t2 = now();
      if ((t1 - t0) / reps < best_b) best_b = (t1 - t0) / reps;
      if ((t2 - t1) / reps < best_d) best_d = (t2 - t1) / reps;
    }
    double fl = 2.0 * s.m * s.n * s.k;
    printf("%d%d %4d %4d %4d x%3d  blas %7.2f us %6.1f GF  dnnl %7.2f us %6.1f GF ratio %.3f\n", s.ta, s.tb, s.m, s.n, s.k, s.count, best_b * 1e6, fl / best_b * 1e-9, best_d * 1e6, fl / best_d * 1e-9, best_d / best_b);
    tb += best_b * s.count; td += best_d * s.count;
  }
  printf("per layer-ish total: blas %.3f ms dnnl %.3f ms ratio %.3f\n", tb * 1e3, td * 1e3, td / tb);
}
