/* vcpu_gemm.c: how fast each CPU runs the GEMM of a pipeline bubble stage
 * (64x1024 by 1024x1024, one OpenBLAS thread) while the other CPU runs it
 * too, each thread pinned to its CPU; prints GFLOP/s per CPU every 0.1 s
 * for 4 s and the means. Stages of a "balanced" pipeline run at these
 * speeds, so a gap between the CPUs is a gap between the stages.
 *
 *   cc -O2 tools/vcpu_gemm.c -o build/vcpu_gemm -lopenblas -lpthread
 *   OPENBLAS_CORETYPE=SkylakeX ./build/vcpu_gemm          (pinned)
 *   OPENBLAS_CORETYPE=SkylakeX ./build/vcpu_gemm unpinned
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { M = 64, N = 1024, K = 1024, WINDOWS = 40 };

static int pinned = 1;
static double rates[2][WINDOWS];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *run(void *arg) {
    int cpu = (int)(long)arg;
    if (pinned) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N), *c = malloc(sizeof(float) * M * N);
    if (!a || !b || !c) abort();
    for (int i = 0; i < M * K; i++) a[i] = 1e-3f * (float)(i % 7);
    for (int i = 0; i < K * N; i++) b[i] = 1e-3f * (float)(i % 5);
    for (int w = 0; w < WINDOWS; w++) {
        double t0 = now();
        int n = 0;
        while (now() - t0 < 0.1) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, a, K, b, N, 0, c, N);
            n++;
        }
        rates[cpu][w] = n * 2.0 * M * N * K / (now() - t0) / 1e9;
    }
    free(a);
    free(b);
    free(c);
    return NULL;
}

int main(int argc, char **argv) {
    pinned = !(argc > 1 && strcmp(argv[1], "unpinned") == 0);
    openblas_set_num_threads(1);
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, run, (void *)i);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    double sum[2] = {0, 0};
    for (int w = 0; w < WINDOWS; w++) {
        printf("%6.1f %6.1f\n", rates[0][w], rates[1][w]);
        sum[0] += rates[0][w];
        sum[1] += rates[1][w];
    }
    printf("mean GFLOP/s (%s): cpu0 %.1f  cpu1 %.1f\n", pinned ? "pinned" : "unpinned", sum[0] / WINDOWS, sum[1] / WINDOWS);
    return 0;
}
