/*
 * The CPU's bf16 dot-product peak (not a test): a tight loop of independent
 * VDPBF16PS zmm instructions (each 16 lanes x 2 bf16 products = 64 FLOP)
 * on 1 and on N threads at once, and the clock the core ran at, measured by
 * a chain of dependent integer adds (one per cycle on every x86 core since
 * the P6). FLOP/s over the measured clock gives instructions per cycle;
 * times are each thread's CPU time. The peak is that rate, the one compared with oneDNN's matmul GFLOP/s.
 *
 * usage: bf16_peak [THREADS]  (default 2; prints one JSON line per thread count)
 */
#define _POSIX_C_SOURCE 200809L
#include "bench_util.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The calling thread's CPU time: the machine is shared, and a wall clock
 * would count the time other jobs held the core. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { ITERS = 20 * 1000 * 1000, ADDS = 200 * 1000 * 1000, REPS = 7 };

/* 12 independent accumulators in registers (written in assembly so that
 * no compiler keeps them in memory): enough for 2 pipes x latency 6. */
__attribute__((target("avx512f,avx512bf16"))) static double dpbf16_loop(void) {
    float out[16];
    long n = ITERS;
    double t0 = cpu_now();
    __asm__ volatile(
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vpternlogd $0xff, %%zmm14, %%zmm14, %%zmm14\n\t"
        "vpsrlw $2, %%zmm14, %%zmm14\n\t" /* 0x3fff per bf16: 1.99 */
        "vmovdqa64 %%zmm14, %%zmm15\n\t"
        "vmovaps %%zmm0, %%zmm1\n\t vmovaps %%zmm0, %%zmm2\n\t vmovaps %%zmm0, %%zmm3\n\t"
        "vmovaps %%zmm0, %%zmm4\n\t vmovaps %%zmm0, %%zmm5\n\t vmovaps %%zmm0, %%zmm6\n\t"
        "vmovaps %%zmm0, %%zmm7\n\t vmovaps %%zmm0, %%zmm8\n\t vmovaps %%zmm0, %%zmm9\n\t"
        "vmovaps %%zmm0, %%zmm10\n\t vmovaps %%zmm0, %%zmm11\n\t"
        "1:\n\t"
        "vdpbf16ps %%zmm14, %%zmm15, %%zmm0\n\t vdpbf16ps %%zmm14, %%zmm15, %%zmm1\n\t"
        "vdpbf16ps %%zmm14, %%zmm15, %%zmm2\n\t vdpbf16ps %%zmm14, %%zmm15, %%zmm3\n\t"
        "vdpbf16ps %%zmm14, %%zmm15, %%zmm4\n\t vdpbf16ps %%zmm14, %%zmm15, %%zmm5\n\t"
        "vdpbf16ps %%zmm14, %%zmm15, %%zmm6\n\t vdpbf16ps %%zmm14, %%zmm15, %%zmm7\n\t"
        "vdpbf16ps %%zmm14, %%zmm15, %%zmm8\n\t vdpbf16ps %%zmm14, %%zmm15, %%zmm9\n\t"
        "vdpbf16ps %%zmm14, %%zmm15, %%zmm10\n\t vdpbf16ps %%zmm14, %%zmm15, %%zmm11\n\t"
        "dec %%rcx\n\t"
        "jnz 1b\n\t"
        "vaddps %%zmm1, %%zmm0, %%zmm0\n\t"
        "vmovups %%zmm0, (%1)\n\t"
        "vzeroupper"
        : "+c"(n)
        : "r"(out)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm14",
          "xmm15", "memory", "cc");
    double dt = cpu_now() - t0;
    return 12.0 * ITERS * 64 / dt / 1e9; /* GFLOP/s */
}

/* Dependent adds: one per cycle, so adds/s is the clock in Hz. */
static double clock_ghz(void) {
    uint64_t x = 0;
    double t0 = cpu_now();
    for (long n = 0; n < ADDS / 8; n++)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                         : "+r"(x));
    return (double)ADDS / (cpu_now() - t0) / 1e9;
}

typedef struct {
    double gflops[REPS], ghz[REPS];
} job;

static void *run(void *arg) {
    job *j = arg;
    for (int r = 0; r < REPS; r++) {
        j->ghz[r] = clock_ghz();
        j->gflops[r] = dpbf16_loop();
    }
    return NULL;
}

int main(int argc, char **argv) {
    int max_threads = argc > 1 ? atoi(argv[1]) : 2;
    if (max_threads < 1 || max_threads > 64) return 2;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512bf16")) {
        printf("{\"error\": \"no AVX512-BF16 on this CPU\"}\n");
        return 0;
    }
    for (int t = 1; t <= max_threads; t *= 2) {
        job jobs[64];
        pthread_t th[64];
        for (int i = 1; i < t; i++) pthread_create(&th[i], NULL, run, &jobs[i]);
        run(&jobs[0]);
        for (int i = 1; i < t; i++) pthread_join(th[i], NULL);
        double total = 0, ghz = 0;
        for (int i = 0; i < t; i++) {
            total += median(jobs[i].gflops, REPS);
            ghz += median(jobs[i].ghz, REPS) / t;
        }
        printf("{\"threads\": %d, \"vdpbf16ps_gflops\": %.1f, \"clock_ghz\": %.3f, \"flop_per_cycle_per_core\": %.1f, "
               "\"zmm_dpbf16_per_cycle\": %.3f}\n",
               t, total, ghz, total / t / ghz, total / t / ghz / 64);
        if (t * 2 > max_threads && t != max_threads) t = max_threads / 2;
    }
    return 0;
}
