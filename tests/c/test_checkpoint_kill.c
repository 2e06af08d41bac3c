/*
 * test_checkpoint_kill.c — promise 4 ("nothing lost") for checkpoint files:
 * a process killed with SIGKILL at a random moment while it writes
 * checkpoints over and over never leaves an unreadable file behind.
 *
 * Each trial forks a child that trains a step and saves a checkpoint to the
 * same path in a loop (each save: temporary file, fsync, rename, fsync of
 * the directory); the parent kills it after a random 0-40 ms, then loads
 * the path into a fresh trainer. The load must succeed and give one of the
 * saved states: the step count it restores is one the child reached. The
 * first save is made before the child starts, so a file always exists.
 * Prints "checkpoint kill trials: N, N loaded; ..."; exits nonzero on a failure.
 */
#define _DEFAULT_SOURCE
#include "test_common.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { TRIALS = 60, N = 64, F = 16, K = 4 };

static parml_trainer make(parml_model *m_out, parml_tensor *x, parml_tensor *y) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, F, 256, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, 256, 256, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, 256, K, 1));
    OK(parml_model_init(m, 3));
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAM;
    /* One OpenBLAS thread: the child of fork() has only the forking thread. */
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.blas_threads = 1;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));
    static float xv[N * F], yv[N];
    for (int i = 0; i < N * F; i++) xv[i] = (float)((i * 7919) % 200) / 100.0f - 1.0f;
    for (int i = 0; i < N; i++) yv[i] = (float)(i % K);
    int64_t xd[2] = {N, F}, yd[1] = {N};
    OK(parml_tensor_create(xd, 2, xv, x));
    OK(parml_tensor_create(yd, 1, yv, y));
    *m_out = m;
    return tr;
}

int main(void) {
    char dir[] = "/tmp/parml-kill-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256];
    snprintf(path, sizeof path, "%s/run.ckpt", dir);
    srand((unsigned)time(NULL));
    int loaded = 0, later = 0;
    long max_step_seen = 0;
    for (int trial = 0; trial < TRIALS; trial++) {
        parml_model m;
        parml_tensor x, y;
        parml_trainer tr = make(&m, &x, &y);
        OK(parml_trainer_save_checkpoint(tr, path));
        fflush(stdout);
        pid_t child = fork();
        CHECK(child >= 0, "fork");
        if (child == 0) {
            /* Train and save forever; the parent's SIGKILL ends it. */
            for (;;) {
                if (parml_trainer_step(tr, x, y, NULL) != PARML_OK) _exit(3);
                if (parml_trainer_save_checkpoint(tr, path) != PARML_OK) _exit(4);
            }
        }
        usleep((useconds_t)(rand() % 40000));
        kill(child, SIGKILL);
        int status = 0;
        waitpid(child, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "trial %d: the writer ended by %s %d", trial,
              WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));

        parml_model m2;
        parml_tensor x2, y2;
        parml_trainer fresh = make(&m2, &x2, &y2);
        parml_status st = parml_trainer_load_checkpoint(fresh, path);
        int64_t steps = -1;
        if (st == PARML_OK) OK(parml_trainer_step_count(fresh, &steps));
        CHECK(st == PARML_OK && steps >= 0, "trial %d: the checkpoint left by a killed writer does not load: %s",
              trial, st == PARML_OK ? "bad step count" : parml_last_error());
        if (st == PARML_OK) loaded++;
        if (steps > 0) later++;
        if (steps > max_step_seen) max_step_seen = (long)steps;
        parml_trainer_free(fresh);
        parml_model_free(m2);
        parml_tensor_free(x2);
        parml_tensor_free(y2);
        parml_trainer_free(tr);
        parml_model_free(m);
        parml_tensor_free(x);
        parml_tensor_free(y);
    }
    /* The kills must have landed while the writer was busy, not only before its first save. */
    CHECK(max_step_seen > 0, "no trial got past the first checkpoint (max step %ld)", max_step_seen);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("checkpoint kill trials: %d, %d loaded; %d of them a later save than the first (largest step %ld)\n", TRIALS,
           loaded, later, max_step_seen);
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
