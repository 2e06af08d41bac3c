/*
 * test_exit_stalled.c — a host may exit right after a step that gave up on
 * a stalled rank, while that rank is waking up (docs/reliability.md).
 *
 * usage: test_exit_stalled STALL_SECONDS EXIT_OFFSET_SECONDS
 *
 * Rank 1 of a dp = 2 trainer sleeps STALL seconds at step 0
 * (PARML_TEST_FAULT, set here); the watchdog (0.2 s) gives up on it and the
 * step returns PARML_ERR_COMMUNICATION while it still sleeps. The program
 * then returns from main at STALL + OFFSET seconds after the step began,
 * around the moment the rank wakes. An abandoned rank used to run its
 * forward pass (OpenBLAS) after waking, and a process exiting meanwhile
 * tore OpenBLAS down under it (a crash at exit). Now the rank stops at its
 * first layer, and exit waits (bounded) for abandoned ranks: the exit
 * handler registered here, which runs after the library's, must see at
 * least STALL seconds gone. Prints "N passed, N failed"; exits nonzero on
 * a failure (a crash at exit shows as a signal in run_c_tests.sh).
 */
#include "test_common.h"

#include <time.h>
#include <unistd.h> /* _exit */

static double t0;
static double stall;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Registered before the library registers its own, so it runs after it. */
static void at_exit(void) {
    double waited = now() - t0;
    int ok = waited >= stall;
    printf("%s  the process exited %.3f s after the step began (the rank slept %.3f s)\n", ok ? "PASS" : "FAIL", waited,
           stall);
    printf("%d passed, %d failed\n", t_passed + ok, t_failed + !ok);
    fflush(stdout);
    if (!ok || t_failed) _exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s STALL_SECONDS EXIT_OFFSET_SECONDS\n", argv[0]);
        return 2;
    }
    stall = atof(argv[1]);
    double offset = atof(argv[2]);
    char fault[64];
    snprintf(fault, sizeof fault, "stall:1:0:%s", argv[1]);
    setenv("PARML_TEST_FAULT", fault, 1);
    atexit(at_exit);

    enum { N = 256, IN = 784, H = 1024 };
    static float x[N * IN], y[N];
    for (int i = 0; i < N * IN; i++) x[i] = sinf((float)i * 0.01f);
    for (int i = 0; i < N; i++) y[i] = (float)(i % 10);
    int64_t xd[2] = {N, IN}, yd[1] = {N};
    parml_tensor xt = NULL, yt = NULL;
    parml_model m = NULL;
    OK(parml_tensor_create(xd, 2, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, IN, H, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, H, H, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, H, 10, 1));
    OK(parml_model_init(m, 1));
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = 2;
    s.watchdog_seconds = 0.2;
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &s, &t));
    t0 = now();
    parml_status st = parml_trainer_step(t, xt, yt, NULL);
    CHECK(st == PARML_ERR_COMMUNICATION, "the step returned %d: %s", (int)st, parml_last_error());
    CHECK(now() - t0 < stall, "the step returned after the stalled rank woke (%.3f s): raise STALL_SECONDS",
          now() - t0);
    double until = t0 + stall + offset;
    struct timespec nap = {0, 200000};
    while (now() < until) nanosleep(&nap, NULL);
    /* Return without freeing anything: a host that exits as the rank wakes. */
    return 0;
}
