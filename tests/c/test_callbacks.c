/*
 * test_callbacks.c — fit callbacks that act (docs/callbacks.md): the built-in
 * early stopping, keep-best checkpoint and reduce-on-plateau of
 * parml_callback_params, a callback that evaluates and saves mid-fit
 * (the fit goes on exactly as without it), and the calls a callback may
 * not make (each PARML_ERR_STATE, no crash).
 */
#include "test_common.h"

#include <unistd.h>

#define N 96
#define D 4
#define C 3
#define MAX_EPOCHS 40

static float xs[N * D], ys[N];

/* Three noisy classes: feature k leans to class k. */
static void make_data(void) {
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        int c = i % C;
        ys[i] = (float)c;
        for (int k = 0; k < D; k++) {
            s = s * 1664525u + 1013904223u;
            float u = (float)(s >> 8) / 16777216.0f - 0.5f;
            xs[i * D + k] = 2.0f * u + (k == c ? 1.0f : 0.0f);
        }
    }
}

static parml_dataset dataset(int from, int count) {
    int64_t xd[2] = {count, D}, yd[1] = {count};
    parml_tensor x = NULL, y = NULL;
    parml_dataset d = NULL;
    OK(parml_tensor_create(xd, 2, xs + from * D, &x));
    OK(parml_tensor_create(yd, 1, ys + from, &y));
    OK(parml_dataset_create(x, y, &d));
    parml_tensor_free(x);
    parml_tensor_free(y);
    return d;
}

struct run {
    parml_model model;
    parml_trainer trainer;
    int64_t count;
};

static struct run make_run(int dp, float lr) {
    struct run r = {NULL, NULL, 0};
    OK(parml_model_create(&r.model));
    OK(parml_model_add_linear(r.model, D, 16, 1));
    OK(parml_model_add_activation(r.model, PARML_ACTIVATION_TANH));
    OK(parml_model_add_linear(r.model, 16, C, 1));
    OK(parml_model_init(r.model, 7));
    OK(parml_model_num_params(r.model, &r.count));
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.learning_rate = lr;
    o.momentum = 0.9f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = dp;
    s.seed = 3;
    OK(parml_trainer_create(r.model, PARML_LOSS_CROSS_ENTROPY, &o, &s, &r.trainer));
    return r;
}

static void free_run(struct run *r) {
    parml_trainer_free(r->trainer);
    parml_model_free(r->model);
}

static const char *dir;

/* fit options of these tests: batches of 16. */
static parml_fit_params fit_params(int64_t epochs, parml_dataset validation, parml_progress_fn progress, void *user) {
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.epochs = epochs;
    f.batch_size = 16;
    f.validation = validation;
    f.progress = progress;
    f.user_data = user;
    return f;
}

/* What the callback saw, epoch by epoch. */
struct seen {
    struct run *run;
    int epochs;
    float val_loss[MAX_EPOCHS];
    float lr[MAX_EPOCHS];
    float lr_now[MAX_EPOCHS];
    int32_t events[MAX_EPOCHS];
    float *params[MAX_EPOCHS];
    int file_matches; /* keep-best: epochs whose saved file held the current parameters */
    int file_checked;
    const char *file;
};

static int32_t record(const parml_epoch_metrics *m, void *user) {
    struct seen *s = (struct seen *)user;
    int e = s->epochs++;
    if (e >= MAX_EPOCHS) return 1;
    s->val_loss[e] = m->val_loss;
    s->lr[e] = m->learning_rate;
    s->events[e] = m->events;
    /* Reading the model and the rate from inside the callback is allowed. */
    OK(parml_trainer_learning_rate(s->run->trainer, &s->lr_now[e]));
    s->params[e] = (float *)malloc((size_t)s->run->count * sizeof(float));
    OK(parml_model_get_params(s->run->model, s->params[e], s->run->count));
    if (s->file && (m->events & PARML_EVENT_SAVED)) {
        parml_model loaded = NULL;
        OK(parml_model_load(s->file, &loaded));
        float *p = (float *)malloc((size_t)s->run->count * sizeof(float));
        if (loaded && parml_model_get_params(loaded, p, s->run->count) == PARML_OK)
            s->file_matches += memcmp(p, s->params[e], (size_t)s->run->count * sizeof(float)) == 0;
        s->file_checked++;
        free(p);
        parml_model_free(loaded);
    }
    return 0;
}

static void free_seen(struct seen *s) {
    for (int e = 0; e < s->epochs && e < MAX_EPOCHS; e++) free(s->params[e]);
}

/* Early stopping with restore stops where Keras's rule says on the val_loss
 * fit measured, and leaves the best epoch's parameters bit for bit. */
static void test_early_stopping(int dp) {
    struct run r = make_run(dp, 0.5f);
    parml_dataset train = dataset(0, 64), val = dataset(64, 32);
    parml_callback_params cb;
    OK(parml_callback_params_init(&cb));
    CHECK(cb.early_stopping_monitor == PARML_MONITOR_NONE && cb.reduce_lr_factor == 0.1f && cb.checkpoint_best_only == 1,
          "defaults");
    cb.early_stopping_monitor = PARML_MONITOR_VAL_LOSS;
    cb.early_stopping_min_delta = 0.02f;
    cb.early_stopping_patience = 2;
    cb.restore_best_weights = 1;
    struct seen s;
    memset(&s, 0, sizeof s);
    s.run = &r;
    parml_fit_params f = fit_params(MAX_EPOCHS, val, record, &s);
    f.callbacks = &cb;
    parml_epoch_metrics last;
    last.struct_size = sizeof last;
    OK(parml_trainer_fit(r.trainer, train, &f, &last));
    float best = INFINITY;
    int best_epoch = 0, wait = 0, stop = 0;
    for (int e = 0; e < s.epochs; e++) {
        if (s.val_loss[e] < best - 0.02f) {
            best = s.val_loss[e];
            best_epoch = e + 1;
            wait = 0;
        } else if (++wait >= 2) {
            stop = e + 1;
            break;
        }
    }
    CHECK(stop > 0 && stop < MAX_EPOCHS, "dp=%d: the run must stop early (stop %d)", dp, stop);
    CHECK(s.epochs == stop && last.epoch == stop, "dp=%d: stopped after %d epochs (last %lld), rule says %d", dp, s.epochs,
          (long long)last.epoch, stop);
    CHECK((last.events & PARML_EVENT_STOPPING) && last.best_epoch == best_epoch, "dp=%d: events %d best %lld vs %d", dp,
          last.events, (long long)last.best_epoch, best_epoch);
    if (best_epoch > 0 && stop > 0 && stop <= s.epochs) {
        CHECK((s.events[best_epoch - 1] & PARML_EVENT_BEST) != 0, "BEST event at the best epoch");
        float *now = (float *)malloc((size_t)r.count * sizeof(float));
        OK(parml_model_get_params(r.model, now, r.count));
        CHECK(memcmp(now, s.params[best_epoch - 1], (size_t)r.count * sizeof(float)) == 0,
              "dp=%d: restored parameters equal epoch %d's bit for bit", dp, best_epoch);
        CHECK(memcmp(now, s.params[stop - 1], (size_t)r.count * sizeof(float)) != 0, "dp=%d: and differ from the last epoch's", dp);
        free(now);
    }
    int64_t epochs = 0;
    OK(parml_trainer_epoch_count(r.trainer, &epochs));
    CHECK(epochs == stop, "epoch count %lld", (long long)epochs);
    free_seen(&s);
    parml_dataset_free(train);
    parml_dataset_free(val);
    free_run(&r);
}

/* Keep-best writes the model file exactly after the epochs whose val_loss
 * improved, the file then holds that epoch's parameters, and a training
 * checkpoint written the same way loads into a new trainer. */
static void test_keep_best(void) {
    struct run r = make_run(1, 0.5f);
    parml_dataset train = dataset(0, 64), val = dataset(64, 32);
    char path[128];
    snprintf(path, sizeof path, "%s/best.parml", dir);
    parml_callback_params cb;
    OK(parml_callback_params_init(&cb));
    cb.checkpoint_monitor = PARML_MONITOR_VAL_LOSS;
    cb.checkpoint_path = path;
    struct seen s;
    memset(&s, 0, sizeof s);
    s.run = &r;
    s.file = path;
    parml_fit_params f = fit_params(12, val, record, &s);
    f.callbacks = &cb;
    OK(parml_trainer_fit(r.trainer, train, &f, NULL));
    float best = INFINITY;
    int saves = 0, wrong = 0;
    for (int e = 0; e < s.epochs; e++) {
        int improved = s.val_loss[e] < best;
        if (improved) best = s.val_loss[e];
        saves += improved;
        wrong += improved != ((s.events[e] & PARML_EVENT_SAVED) != 0);
    }
    CHECK(s.epochs == 12 && wrong == 0, "SAVED exactly on improvement (%d wrong of %d)", wrong, s.epochs);
    CHECK(saves >= 2 && s.file_checked == saves && s.file_matches == saves, "file held the saved epoch's parameters %d/%d/%d",
          s.file_matches, s.file_checked, saves);
    free_seen(&s);

    /* A training checkpoint: every epoch (best_only 0) on train_loss, loads into a new trainer. */
    snprintf(path, sizeof path, "%s/best.ckpt", dir);
    cb.checkpoint_monitor = PARML_MONITOR_TRAIN_LOSS;
    cb.checkpoint_best_only = 0;
    cb.checkpoint_training_state = 1;
    f.epochs = 2;
    f.progress = NULL;
    OK(parml_trainer_fit(r.trainer, train, &f, NULL));
    struct run other = make_run(1, 0.5f);
    OK(parml_trainer_load_checkpoint(other.trainer, path));
    int64_t a = 0, b = 0;
    OK(parml_trainer_step_count(r.trainer, &a));
    OK(parml_trainer_step_count(other.trainer, &b));
    CHECK(a == b && a == 14 * 4, "checkpoint of the last epoch: steps %lld vs %lld", (long long)b, (long long)a);
    free_run(&other);
    unlink(path);
    snprintf(path, sizeof path, "%s/best.parml", dir);
    unlink(path);
    parml_dataset_free(train);
    parml_dataset_free(val);
    free_run(&r);
}

/* Reduce-on-plateau on a value that never improves after epoch 1 (min_delta
 * beyond reach), patience 1: the rate halves after epochs 2, 3 and 4 and
 * stops at min_lr. */
static void test_reduce_on_plateau(void) {
    struct run r = make_run(1, 0.2f);
    parml_dataset train = dataset(0, 64);
    parml_callback_params cb;
    OK(parml_callback_params_init(&cb));
    cb.reduce_lr_monitor = PARML_MONITOR_TRAIN_LOSS;
    cb.reduce_lr_min_delta = 100.0f;
    cb.reduce_lr_factor = 0.5f;
    cb.reduce_lr_patience = 1;
    cb.reduce_lr_min_lr = 0.03f;
    struct seen s;
    memset(&s, 0, sizeof s);
    s.run = &r;
    parml_fit_params f = fit_params(5, NULL, record, &s);
    f.callbacks = &cb;
    OK(parml_trainer_fit(r.trainer, train, &f, NULL));
    const float want[5] = {0.2f, 0.1f, 0.05f, 0.03f, 0.03f};
    const int reduced[5] = {0, 1, 1, 1, 0};
    for (int e = 0; e < 5 && e < s.epochs; e++) {
        CHECK(s.lr[e] == want[e] && s.lr_now[e] == want[e], "epoch %d: lr %g (trainer %g), want %g", e + 1, s.lr[e],
              s.lr_now[e], want[e]);
        CHECK(((s.events[e] & PARML_EVENT_LR_REDUCED) != 0) == reduced[e], "epoch %d: events %d", e + 1, s.events[e]);
    }
    float lr = 0;
    OK(parml_trainer_learning_rate(r.trainer, &lr));
    CHECK(lr == 0.03f, "after fit: %g", lr);
    /* set_learning_rate outside fit; 0 and NaN are refused. */
    OK(parml_trainer_set_learning_rate(r.trainer, 0.125f));
    OK(parml_trainer_learning_rate(r.trainer, &lr));
    CHECK(lr == 0.125f, "set: %g", lr);
    /* A checkpoint carries the factor: a trainer that loads it steps at the same rate. */
    void *bytes = NULL;
    size_t n = 0;
    OK(parml_trainer_serialize_checkpoint(r.trainer, &bytes, &n));
    struct run other = make_run(1, 0.2f);
    OK(parml_trainer_deserialize_checkpoint(other.trainer, bytes, n));
    parml_buffer_free(bytes);
    float other_lr = 0;
    OK(parml_trainer_learning_rate(other.trainer, &other_lr));
    CHECK(other_lr == 0.125f, "loaded checkpoint: lr %g", other_lr);
    free_run(&other);
    CHECK(parml_trainer_set_learning_rate(r.trainer, 0.0f) == PARML_ERR_INVALID_ARGUMENT, "lr 0");
    CHECK(parml_trainer_set_learning_rate(r.trainer, NAN) == PARML_ERR_INVALID_ARGUMENT, "lr NaN");
    CHECK(parml_trainer_set_learning_rate(NULL, 0.1f) == PARML_ERR_INVALID_ARGUMENT, "NULL trainer");
    free_seen(&s);
    parml_dataset_free(train);
    free_run(&r);
}

/* A callback that evaluates, saves a model and a checkpoint, serializes a
 * checkpoint and reads parameters every 3 steps and every epoch: the fit
 * ends with the same parameters, bit for bit, as a fit without it. */
struct busy {
    struct run *run;
    parml_dataset val;
    int step_calls, epoch_calls, failures;
};

static int32_t busy_callback(const parml_epoch_metrics *m, void *user) {
    struct busy *b = (struct busy *)user;
    if (m->end_of_epoch) b->epoch_calls++; else b->step_calls++;
    if (!m->end_of_epoch && m->steps % 3 != 0) b->failures++;
    float loss = 0, acc = 0;
    char path[128];
    snprintf(path, sizeof path, "%s/mid.parml", dir);
    b->failures += parml_trainer_evaluate(b->run->trainer, b->val, 5, &loss, &acc) != PARML_OK;
    b->failures += parml_model_save(b->run->model, path) != PARML_OK;
    snprintf(path, sizeof path, "%s/mid.ckpt", dir);
    b->failures += parml_trainer_save_checkpoint(b->run->trainer, path) != PARML_OK;
    size_t n = 0;
    void *bytes = NULL;
    b->failures += parml_trainer_serialize_checkpoint(b->run->trainer, &bytes, &n) != PARML_OK || n == 0;
    parml_buffer_free(bytes);
    int64_t steps = 0;
    b->failures += parml_trainer_step_count(b->run->trainer, &steps) != PARML_OK || steps != m->steps;
    return 0;
}

static void test_acting_callback_changes_nothing(int dp) {
    parml_dataset train = dataset(0, 64), val = dataset(64, 32);
    parml_fit_params f = fit_params(3, val, NULL, NULL);
    struct run plain = make_run(dp, 0.2f);
    OK(parml_trainer_fit(plain.trainer, train, &f, NULL));
    struct run acting = make_run(dp, 0.2f);
    struct busy b = {&acting, val, 0, 0, 0};
    f.progress = busy_callback;
    f.user_data = &b;
    f.callback_every_steps = 3;
    OK(parml_trainer_fit(acting.trainer, train, &f, NULL));
    CHECK(b.failures == 0, "dp=%d: %d calls from the callback failed: %s", dp, b.failures, parml_last_error());
    CHECK(b.epoch_calls == 3 && b.step_calls == 4, "dp=%d: 12 steps: calls after steps 3, 6, 9, 12 and 3 epochs (%d, %d)", dp,
          b.step_calls, b.epoch_calls);
    float *p = (float *)malloc((size_t)plain.count * sizeof(float)), *q = (float *)malloc((size_t)plain.count * sizeof(float));
    OK(parml_model_get_params(plain.model, p, plain.count));
    OK(parml_model_get_params(acting.model, q, plain.count));
    CHECK(memcmp(p, q, (size_t)plain.count * sizeof(float)) == 0, "dp=%d: same parameters bit for bit", dp);
    free(p);
    free(q);
    char path[128];
    snprintf(path, sizeof path, "%s/mid.parml", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/mid.ckpt", dir);
    unlink(path);
    free_run(&plain);
    free_run(&acting);
    parml_dataset_free(train);
    parml_dataset_free(val);
}

/* Calls that would change what fit runs on are refused from the callback. */
struct misuse {
    struct run *run;
    parml_dataset train;
    parml_status step, fit, set_params, load, add_layer, init, set_lr;
    int free_trainer;
    char message[512];
};

static int32_t misuse_callback(const parml_epoch_metrics *m, void *user) {
    struct misuse *u = (struct misuse *)user;
    if (m->epoch == 1) {
        int64_t xd[2] = {4, D}, yd[1] = {4};
        parml_tensor x = NULL, y = NULL;
        parml_tensor_create(xd, 2, xs, &x);
        parml_tensor_create(yd, 1, ys, &y);
        float loss = 0;
        u->step = parml_trainer_step(u->run->trainer, x, y, &loss);
        snprintf(u->message, sizeof u->message, "%s", parml_last_error());
        parml_tensor_free(x);
        parml_tensor_free(y);
        u->fit = parml_trainer_fit(u->run->trainer, u->train, NULL, NULL);
        float *p = (float *)calloc((size_t)u->run->count, sizeof(float));
        u->set_params = parml_model_set_params(u->run->model, p, u->run->count);
        free(p);
        u->load = parml_trainer_load_checkpoint(u->run->trainer, "/nonexistent");
        u->add_layer = parml_model_add_linear(u->run->model, C, 2, 1);
        u->init = parml_model_init(u->run->model, 1);
        u->set_lr = parml_trainer_set_learning_rate(u->run->trainer, 0.05f);
    }
    if (m->epoch == 2 && u->free_trainer) parml_trainer_free(u->run->trainer);
    return 0;
}

static void test_misuse(void) {
    struct run r = make_run(1, 0.2f);
    parml_dataset train = dataset(0, 64);
    struct misuse u;
    memset(&u, 0, sizeof u);
    u.run = &r;
    u.train = train;
    parml_fit_params f = fit_params(3, NULL, misuse_callback, &u);
    parml_epoch_metrics last;
    last.struct_size = sizeof last;
    OK(parml_trainer_fit(r.trainer, train, &f, &last));
    CHECK(u.step == PARML_ERR_STATE && strstr(u.message, "inside the callback") != NULL, "step: %d %s", (int)u.step, u.message);
    CHECK(u.fit == PARML_ERR_STATE, "fit inside fit: %d", (int)u.fit);
    CHECK(u.set_params == PARML_ERR_STATE, "set_params: %d", (int)u.set_params);
    CHECK(u.load == PARML_ERR_STATE, "load_checkpoint: %d", (int)u.load);
    CHECK(u.add_layer == PARML_ERR_STATE, "add_linear: %d", (int)u.add_layer);
    CHECK(u.init == PARML_ERR_STATE, "init: %d", (int)u.init);
    CHECK(u.set_lr == PARML_OK && last.learning_rate == 0.05f, "set_learning_rate: %d, lr %g", (int)u.set_lr,
          last.learning_rate);
    int64_t steps = 0;
    OK(parml_trainer_step_count(r.trainer, &steps));
    CHECK(steps == 12, "3 epochs of 4 steps, nothing more: %lld", (long long)steps);

    /* Freeing the trainer inside its callback stops fit with PARML_ERR_STATE. */
    u.free_trainer = 1;
    parml_status st = parml_trainer_fit(r.trainer, train, &f, NULL);
    CHECK(st == PARML_ERR_STATE && strstr(parml_last_error(), "freed") != NULL, "fit after free: %d %s", (int)st,
          parml_last_error());
    CHECK(parml_trainer_step_count(r.trainer, &steps) == PARML_ERR_INVALID_ARGUMENT, "the freed handle is dead");
    r.trainer = NULL;

    /* Bad options are refused before training. */
    struct run q = make_run(1, 0.2f);
    parml_callback_params cb;
    OK(parml_callback_params_init(&cb));
    parml_fit_params g;
    OK(parml_fit_params_init(&g));
    g.callbacks = &cb;
    cb.early_stopping_monitor = PARML_MONITOR_VAL_LOSS;
    CHECK(parml_trainer_fit(q.trainer, train, &g, NULL) == PARML_ERR_INVALID_ARGUMENT &&
              strstr(parml_last_error(), "validation") != NULL,
          "val_loss without validation: %s", parml_last_error());
    cb.early_stopping_monitor = 9;
    CHECK(parml_trainer_fit(q.trainer, train, &g, NULL) == PARML_ERR_INVALID_ARGUMENT, "unknown monitor");
    cb.early_stopping_monitor = PARML_MONITOR_NONE;
    cb.checkpoint_monitor = PARML_MONITOR_TRAIN_LOSS;
    CHECK(parml_trainer_fit(q.trainer, train, &g, NULL) == PARML_ERR_INVALID_ARGUMENT &&
              strstr(parml_last_error(), "checkpoint_path") != NULL,
          "no path: %s", parml_last_error());
    cb.checkpoint_monitor = PARML_MONITOR_NONE;
    cb.struct_size = 8;
    CHECK(parml_trainer_fit(q.trainer, train, &g, NULL) == PARML_ERR_INVALID_ARGUMENT, "small struct_size");
    g.callback_every_steps = -1;
    cb.struct_size = sizeof cb;
    CHECK(parml_trainer_fit(q.trainer, train, &g, NULL) == PARML_ERR_INVALID_ARGUMENT, "negative every_steps");
    CHECK(parml_callback_params_init(NULL) == PARML_ERR_INVALID_ARGUMENT, "init NULL");
    OK(parml_trainer_step_count(q.trainer, &steps));
    CHECK(steps == 0, "refused fits trained nothing: %lld", (long long)steps);
    free_run(&q);
    parml_dataset_free(train);
    parml_model_free(r.model);
}

int main(void) {
    dir = scratch_dir();
    make_data();
    test_early_stopping(1);
    test_early_stopping(2);
    test_keep_best();
    test_reduce_on_plateau();
    test_acting_callback_changes_nothing(1);
    test_acting_callback_changes_nothing(2);
    test_misuse();
    rmdir(dir);
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
