/*
 * test_concurrency.c — the C API's thread rule, tested (stated in
 * parml_types.h: "A handle is used by one thread at a time; distinct handles
 * are independent").
 *
 *   1. Independence: N = 4 host threads each create, train (parml_trainer_step
 *      then parml_trainer_fit) and read back their own model at the same time.
 *      Every thread's parameters must equal, bit for bit, those of the same
 *      run done alone, one after another on the main thread. Variants: all
 *      serial (dp = 1), all data-parallel (dp = 2 on the threads backend, so
 *      8 rank threads at once, ZeRO stages and deterministic mode varied),
 *      and a mix; each concurrent round runs several times.
 *   2. Handing a handle over: a model and trainer created on the main thread,
 *      stepped on thread A, then on thread B (one at a time, joined in
 *      between), then freed on the main thread, give the bits the same run
 *      on one thread gives.
 *
 * parml_last_error() being per thread is test_api's (test_last_error_per_thread).
 * Prints "N passed, N failed"; exits nonzero on any failure.
 */
#include "test_common.h"

#include <pthread.h>

enum { N_THREADS = 4, ROUNDS = 3, IN = 6, HIDDEN = 16, OUT = 3, BATCH = 24, STEPS = 8 };

/* One training run, fully described by its fields (so it can be repeated). */
struct job {
    int id;
    int dp;
    int zero_stage;
    int deterministic;
    /* filled by the run */
    parml_model model;
    parml_trainer trainer;
    parml_tensor x, y;
    float *params;
    int64_t count;
    int failed;
    char error[512];
    pthread_barrier_t *start; /* NULL when run alone */
};

static void job_fail(struct job *j, const char *what, parml_status st) {
    if (j->failed) return;
    j->failed = 1;
    snprintf(j->error, sizeof j->error, "job %d (dp=%d zero=%d det=%d): %s returned %d: %s", j->id, j->dp,
             j->zero_stage, j->deterministic, what, (int)st, parml_last_error());
}

#define J(call)                                           \
    do {                                                  \
        parml_status j_st_ = (call);                      \
        if (j_st_ != PARML_OK) {                          \
            job_fail(j, #call, j_st_);                    \
            return;                                       \
        }                                                 \
    } while (0)

/* Phase 1: the job's data, model and trainer. */
static void job_create(struct job *j) {
    float x[BATCH * IN], y[BATCH];
    uint32_t s = 2654435761u * (uint32_t)(j->id + 1);
    for (int i = 0; i < BATCH * IN; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    for (int i = 0; i < BATCH; i++) y[i] = (float)((i * 7 + j->id) % OUT);
    int64_t xd[2] = {BATCH, IN}, yd[1] = {BATCH};
    J(parml_tensor_create(xd, 2, x, &j->x));
    J(parml_tensor_create(yd, 1, y, &j->y));

    J(parml_model_create(&j->model));
    J(parml_model_add_linear(j->model, IN, HIDDEN, 1));
    J(parml_model_add_activation(j->model, j->id % 2 ? PARML_ACTIVATION_GELU : PARML_ACTIVATION_TANH));
    J(parml_model_begin_residual(j->model));
    J(parml_model_add_layer_norm(j->model, HIDDEN, 1e-5f));
    J(parml_model_add_linear(j->model, HIDDEN, HIDDEN, 1));
    J(parml_model_add_dropout(j->model, 0.1f));
    J(parml_model_end_residual(j->model));
    J(parml_model_add_linear(j->model, HIDDEN, OUT, 1));
    J(parml_model_init(j->model, 100 + (uint64_t)j->id));

    parml_optimizer_params o;
    J(parml_optimizer_params_init(&o));
    if (j->id % 2 == 0) {
        o.kind = PARML_OPTIMIZER_SGD;
        o.learning_rate = 0.05f;
        o.momentum = 0.9f;
    } else {
        o.kind = PARML_OPTIMIZER_ADAMW;
        o.learning_rate = 0.01f;
        o.clip_grad_norm = 0.5f;
        o.schedule = PARML_SCHEDULE_COSINE;
        o.total_steps = 40;
    }
    parml_strategy_params st;
    J(parml_strategy_params_init(&st));
    st.dp = j->dp;
    st.zero_stage = j->zero_stage;
    st.deterministic = j->deterministic;
    st.grad_chunk = 8;
    st.seed = 7 + (uint64_t)j->id;
    J(parml_trainer_create(j->model, PARML_LOSS_CROSS_ENTROPY, &o, &st, &j->trainer));
}

/* Phase 2: steps [from, to). */
static void job_steps(struct job *j, int from, int to) {
    if (j->failed) return;
    for (int i = from; i < to; i++) {
        float loss = 0;
        J(parml_trainer_step(j->trainer, j->x, j->y, &loss));
    }
}

/* Phase 3: two epochs of fit (shuffled, seeded), then the parameters; frees everything. */
static void job_finish(struct job *j) {
    if (!j->failed) {
        parml_dataset d = NULL;
        parml_status st = parml_dataset_create(j->x, j->y, &d);
        if (st != PARML_OK) job_fail(j, "parml_dataset_create", st);
        if (!j->failed) {
            parml_fit_params f;
            (void)parml_fit_params_init(&f);
            f.epochs = 2;
            f.batch_size = 10; /* 24 samples: batches of 10, 10, 4 */
            st = parml_trainer_fit(j->trainer, d, &f, NULL);
            if (st != PARML_OK) job_fail(j, "parml_trainer_fit", st);
        }
        parml_dataset_free(d);
    }
    if (!j->failed) {
        parml_status st = parml_model_num_params(j->model, &j->count);
        if (st != PARML_OK) job_fail(j, "parml_model_num_params", st);
        j->params = (float *)malloc((size_t)j->count * sizeof(float));
        st = parml_model_get_params(j->model, j->params, (ptrdiff_t)j->count);
        if (st != PARML_OK) job_fail(j, "parml_model_get_params", st);
    }
    parml_trainer_free(j->trainer);
    parml_model_free(j->model);
    parml_tensor_free(j->x);
    parml_tensor_free(j->y);
    j->trainer = NULL;
    j->model = NULL;
    j->x = j->y = NULL;
}

static void *job_thread(void *arg) {
    struct job *j = (struct job *)arg;
    if (j->start) pthread_barrier_wait(j->start); /* every thread creates its handles at once */
    job_create(j);
    job_steps(j, 0, STEPS);
    job_finish(j);
    return NULL;
}

static struct job make_job(int id, int dp, int zero, int det) {
    struct job j;
    memset(&j, 0, sizeof j);
    j.id = id;
    j.dp = dp;
    j.zero_stage = zero;
    j.deterministic = det;
    return j;
}

/* Variants: the layout of job `id`. */
enum variant { ALL_SERIAL, ALL_DP2, MIXED };
static const char *variant_name[] = {"serial (dp=1)", "dp=2", "mixed dp=1 / dp=2"};

static struct job job_for(enum variant v, int id) {
    switch (v) {
    case ALL_SERIAL: return make_job(id, 1, 0, id == 3);
    case ALL_DP2: return make_job(id, 2, id % 4, id % 2);
    default: return id % 2 ? make_job(id, 2, (id / 2) % 4, 0) : make_job(id, 1, 0, id == 2);
    }
}

static void free_job(struct job *j) {
    free(j->params);
    j->params = NULL;
}

static int runs_compared = 0;

static void test_independent_handles(enum variant v) {
    /* Reference: each job alone, one after another, on this thread. */
    struct job ref[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        ref[i] = job_for(v, i);
        job_thread(&ref[i]);
        CHECK(!ref[i].failed, "reference run: %s", ref[i].error);
    }
    /* The jobs differ (seeds, data, optimizers), so equal bits below are not a coincidence. */
    if (!ref[0].failed && !ref[1].failed)
        CHECK(ref[0].count == ref[1].count &&
                  memcmp(ref[0].params, ref[1].params, (size_t)ref[0].count * sizeof(float)) != 0,
              "%s: jobs 0 and 1 trained to the same parameters", variant_name[v]);
    for (int round = 0; round < ROUNDS; round++) {
        struct job con[N_THREADS];
        pthread_t th[N_THREADS];
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, N_THREADS);
        int started[N_THREADS];
        for (int i = 0; i < N_THREADS; i++) {
            con[i] = job_for(v, i);
            con[i].start = &start;
        }
        for (int i = 0; i < N_THREADS; i++) {
            started[i] = pthread_create(&th[i], NULL, job_thread, &con[i]) == 0;
            CHECK(started[i], "pthread_create %d", i);
        }
        for (int i = 0; i < N_THREADS; i++)
            if (started[i]) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&start);
        for (int i = 0; i < N_THREADS; i++) {
            CHECK(!con[i].failed, "%s, round %d, thread %d: %s", variant_name[v], round, i, con[i].error);
            if (con[i].failed || ref[i].failed) continue;
            CHECK(con[i].count == ref[i].count && con[i].count > 0 &&
                      memcmp(con[i].params, ref[i].params, (size_t)ref[i].count * sizeof(float)) == 0,
                  "%s, round %d: thread %d's parameters differ from the same run done alone", variant_name[v], round,
                  i);
            runs_compared++;
        }
        for (int i = 0; i < N_THREADS; i++) free_job(&con[i]);
    }
    for (int i = 0; i < N_THREADS; i++) free_job(&ref[i]);
}

/* ------------------------------------------------------------------------ */
/* A handle handed from thread to thread (one user at a time).               */
/* ------------------------------------------------------------------------ */

struct phase {
    struct job *job;
    int from, to;
};

static void *steps_thread(void *arg) {
    struct phase *p = (struct phase *)arg;
    job_steps(p->job, p->from, p->to);
    return NULL;
}

static void test_handle_handed_over(int dp) {
    struct job ref = make_job(11, dp, dp > 1 ? 1 : 0, 0);
    job_thread(&ref);
    CHECK(!ref.failed, "reference: %s", ref.error);

    struct job j = make_job(11, dp, dp > 1 ? 1 : 0, 0);
    job_create(&j); /* main thread */
    struct phase a = {&j, 0, STEPS / 2}, b = {&j, STEPS / 2, STEPS};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, steps_thread, &a) == 0, "pthread_create A");
    pthread_join(t, NULL);
    CHECK(pthread_create(&t, NULL, steps_thread, &b) == 0, "pthread_create B");
    pthread_join(t, NULL);
    job_finish(&j); /* main thread again */
    CHECK(!j.failed, "handed over (dp=%d): %s", dp, j.error);
    if (!j.failed && !ref.failed) {
        CHECK(j.count == ref.count && memcmp(j.params, ref.params, (size_t)ref.count * sizeof(float)) == 0,
              "dp=%d: a trainer stepped on two threads in turn differs from one stepped on one", dp);
        runs_compared++;
    }
    free_job(&j);
    free_job(&ref);
}

/* ------------------------------------------------------------------------ */
/* Misuse: two calls on one handle at once (the thread rule broken).         */
/* ------------------------------------------------------------------------ */

struct collision {
    struct job *job;
    parml_status other_thread_step, other_thread_model, same_thread_step, same_thread_free_params;
    char message[512];
    char same_thread_message[512];
    int calls;
};

static void *step_from_other_thread(void *arg) {
    struct collision *c = (struct collision *)arg;
    float loss = 0;
    c->other_thread_step = parml_trainer_step(c->job->trainer, c->job->x, c->job->y, &loss);
    snprintf(c->message, sizeof c->message, "%s", parml_last_error());
    int64_t n = 0;
    c->other_thread_model = parml_model_num_params(c->job->model, &n);
    return NULL;
}

/* Runs inside parml_trainer_fit, which holds the trainer and its model. */
static int collide(const parml_epoch_metrics *m, void *user) {
    (void)m;
    struct collision *c = (struct collision *)user;
    if (c->calls++ > 0) return 0;
    pthread_t t;
    if (pthread_create(&t, NULL, step_from_other_thread, c) == 0) pthread_join(t, NULL);
    float loss = 0;
    c->same_thread_step = parml_trainer_step(c->job->trainer, c->job->x, c->job->y, &loss);
    snprintf(c->same_thread_message, sizeof c->same_thread_message, "%s", parml_last_error());
    float p[4];
    c->same_thread_free_params = parml_model_get_params(c->job->model, p, 4);
    return 0;
}

/* A call on a handle that another call holds returns PARML_ERR_STATE, and
 * leaves both the handle and the running call intact: made certain here by
 * calling from inside a fit progress callback, on another thread and on
 * the same one. */
static void test_concurrent_call_is_refused(int dp) {
    struct job j = make_job(21, dp, 0, 0);
    job_create(&j);
    parml_dataset d = NULL;
    OK(parml_dataset_create(j.x, j.y, &d));
    struct collision c;
    memset(&c, 0, sizeof c);
    c.job = &j;
    c.other_thread_step = c.other_thread_model = c.same_thread_step = c.same_thread_free_params = -1;
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.epochs = 2;
    f.batch_size = 8;
    f.progress = collide;
    f.user_data = &c;
    OK(parml_trainer_fit(j.trainer, d, &f, NULL));
    CHECK(c.other_thread_step == PARML_ERR_STATE, "dp=%d: step from another thread during fit returned %d", dp,
          (int)c.other_thread_step);
    CHECK(strstr(c.message, "in use by a call to parml_trainer_fit") != NULL, "message: %s", c.message);
    CHECK(c.other_thread_model == PARML_ERR_STATE, "dp=%d: the trainer's model from another thread: %d", dp,
          (int)c.other_thread_model);
    CHECK(c.same_thread_step == PARML_ERR_STATE, "dp=%d: step from the callback: %d", dp, (int)c.same_thread_step);
    CHECK(strstr(c.same_thread_message, "inside the callback of the parml_trainer_fit") != NULL, "message: %s",
          c.same_thread_message);
    /* Reading the model is what a callback may do (docs/callbacks.md); the
     * model has more than 4 parameters, so this read is refused for its count. */
    CHECK(c.same_thread_free_params == PARML_ERR_SHAPE, "dp=%d: get_params from the callback: %d", dp,
          (int)c.same_thread_free_params);
    int64_t steps = 0;
    OK(parml_trainer_step_count(j.trainer, &steps));
    CHECK(steps == 6, "dp=%d: 2 epochs of 3 batches, %lld steps (a refused call must not step)", dp, (long long)steps);
    float loss = 0;
    OK(parml_trainer_step(j.trainer, j.x, j.y, &loss)); /* released when fit returned */
    parml_dataset_free(d);
    j.failed = 0;
    job_finish(&j);
    free_job(&j);
}

struct racer {
    struct job *job;
    pthread_barrier_t *start;
    int ok, refused, other;
    parml_status first_other;
};

static void *race_steps(void *arg) {
    struct racer *r = (struct racer *)arg;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < 60; i++) {
        float loss = 0;
        parml_status st = parml_trainer_step(r->job->trainer, r->job->x, r->job->y, &loss);
        if (st == PARML_OK) r->ok++;
        else if (st == PARML_ERR_STATE) r->refused++;
        else if (r->other++ == 0) r->first_other = st;
    }
    return NULL;
}

/* Two threads stepping one trainer (dp = 1 crashed the process, or trained
 * silently wrong, before calls held their handles): each call either steps
 * or is refused, and the steps taken give the bits of as many steps taken
 * on one thread. */
static void test_two_threads_stepping_one_trainer(int dp) {
    struct job j = make_job(22, dp, 0, 0);
    job_create(&j);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    struct racer a = {&j, &start, 0, 0, 0, 0}, b = {&j, &start, 0, 0, 0, 0};
    pthread_t ta, tb;
    int sa = pthread_create(&ta, NULL, race_steps, &a) == 0;
    int sb = sa && pthread_create(&tb, NULL, race_steps, &b) == 0;
    CHECK(sa && sb, "pthread_create");
    if (sa && !sb) race_steps(&b); /* the barrier needs its second party */
    if (sa) pthread_join(ta, NULL);
    if (sb) pthread_join(tb, NULL);
    pthread_barrier_destroy(&start);
    CHECK(a.other + b.other == 0, "dp=%d: a racing step returned %d (only OK or STATE are right)", dp,
          (int)(a.other ? a.first_other : b.first_other));
    int taken = a.ok + b.ok;
    int64_t steps = 0;
    OK(parml_trainer_step_count(j.trainer, &steps));
    CHECK(steps == taken, "dp=%d: %d steps returned OK, the trainer counts %lld", dp, taken, (long long)steps);
    printf("concurrency: dp=%d, two threads x 60 steps on one trainer: %d stepped, %d refused\n", dp, taken,
           a.refused + b.refused);
    job_finish(&j);

    struct job ref = make_job(22, dp, 0, 0);
    job_create(&ref);
    job_steps(&ref, 0, taken);
    job_finish(&ref);
    CHECK(!j.failed && !ref.failed, "dp=%d: %s %s", dp, j.error, ref.error);
    if (!j.failed && !ref.failed)
        CHECK(j.count == ref.count && memcmp(j.params, ref.params, (size_t)ref.count * sizeof(float)) == 0,
              "dp=%d: %d steps raced from two threads differ from %d steps on one", dp, taken, taken);
    free_job(&j);
    free_job(&ref);
}

int main(void) {
    test_independent_handles(ALL_SERIAL);
    test_independent_handles(ALL_DP2);
    test_independent_handles(MIXED);
    test_handle_handed_over(1);
    test_handle_handed_over(2);
    test_concurrent_call_is_refused(1);
    test_concurrent_call_is_refused(2);
    test_two_threads_stepping_one_trainer(1);
    test_two_threads_stepping_one_trainer(2);
    printf("concurrency: %d concurrent or handed-over runs compared bit for bit with runs done alone\n",
           runs_compared);
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed == 0 ? 0 : 1;
}
