/*
 * test_sample_weights.c — per-sample loss weights through the C API:
 * parml_trainer_step_weighted's loss equals the weighted mean
 * sum(s[i] * w[y[i]] * l[i]) / sum(s[i] * w[y[i]]) computed here in double from
 * the model's own logits; integer weights train as repeated rows;
 * parml_dataset_with_sample_weights makes fit and evaluate weighted, and
 * data parallel in deterministic mode gives serial's parameters bit for bit;
 * bad input returns the documented codes and leaves outputs untouched.
 * Prints "N passed, N failed"; exits nonzero on any failure.
 */
#include "test_common.h"

enum { D = 4, C = 3, N = 24 };

static parml_model make_model(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, D, 8, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_TANH));
    OK(parml_model_add_linear(m, 8, C, 1));
    OK(parml_model_init(m, 7));
    return m;
}

static parml_trainer make_trainer(parml_model m, int dp) {
    parml_optimizer_params o;
    parml_strategy_params s;
    OK(parml_optimizer_params_init(&o));
    OK(parml_strategy_params_init(&s));
    o.learning_rate = 0.1f;
    s.dp = dp;
    s.deterministic = 1;
    s.grad_chunk = 8;
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t));
    return t;
}

static void make_data(float *x, float *y, float *s) {
    uint32_t r = 777;
    for (int i = 0; i < N * D; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((r >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    for (int i = 0; i < N; i++) {
        y[i] = (float)(i % 3);
        s[i] = (float)(i % 4); /* 0, 1, 2, 3: integer weights, some 0 */
    }
}

static parml_tensor tensor(const float *v, int64_t rows, int64_t cols) {
    int64_t dims[2] = {rows, cols};
    parml_tensor t = NULL;
    OK(parml_tensor_create(dims, cols ? 2 : 1, v, &t));
    return t;
}

static void set_class_weights(parml_trainer t, const float *w) {
    parml_loss_params p;
    OK(parml_loss_params_init(&p));
    p.class_weights = w;
    p.num_class_weights = C;
    OK(parml_trainer_set_loss(t, &p));
}

static void params_of(parml_model m, float *p, int64_t n) { OK(parml_model_get_params(m, p, n)); }

static const float class_w[C] = {0.5f, 2.0f, 1.0f};

/* The loss against the formula, and the gradient against repeated rows. */
static void test_step(void) {
    float x[N * D], y[N], s[N];
    make_data(x, y, s);
    parml_tensor xt = tensor(x, N, D), yt = tensor(y, N, 0);
    parml_model m = make_model();
    parml_trainer t = make_trainer(m, 1);
    set_class_weights(t, class_w);
    parml_tensor out = NULL;
    OK(parml_model_predict(m, xt, &out));
    float z[N * C];
    OK(parml_tensor_read(out, z, N * C));
    parml_tensor_free(out);
    double num = 0, den = 0;
    for (int i = 0; i < N; i++) {
        const float *r = z + i * C;
        double lse = log(exp((double)r[0]) + exp((double)r[1]) + exp((double)r[2]));
        int k = (int)y[i];
        num += (double)s[i] * class_w[k] * (lse - r[k]);
        den += (double)s[i] * class_w[k];
    }
    float loss = 0;
    OK(parml_trainer_step_weighted(t, xt, yt, s, N, &loss));
    CHECK(fabs(loss - num / den) <= 1e-5 * num / den, "weighted loss %.9g, formula %.9g", loss, num / den);

    /* The same step on the rows repeated s[i] times, unweighted. */
    int64_t np_ = 0;
    OK(parml_model_num_params(m, &np_));
    float *a = malloc((size_t)np_ * sizeof *a), *b = malloc((size_t)np_ * sizeof *b);
    params_of(m, a, np_);
    float xr[N * 3 * D], yr[N * 3];
    int n = 0;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < (int)s[i]; k++) {
            memcpy(xr + n * D, x + i * D, D * sizeof *x);
            yr[n++] = y[i];
        }
    parml_model m2 = make_model();
    parml_trainer t2 = make_trainer(m2, 1);
    set_class_weights(t2, class_w);
    parml_tensor xrt = tensor(xr, n, D), yrt = tensor(yr, n, 0);
    float loss2 = 0;
    OK(parml_trainer_step(t2, xrt, yrt, &loss2));
    params_of(m2, b, np_);
    double worst = 0;
    for (int64_t i = 0; i < np_; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    CHECK(fabs(loss - loss2) <= 1e-6 * loss2, "loss %.9g vs repeated rows %.9g", loss, loss2);
    CHECK(worst <= 1e-6, "parameters differ from training on repeated rows by %g", worst);

    /* Bad input: nothing trained, loss_out untouched. */
    float sentinel = -7;
    float bad[N];
    memcpy(bad, s, sizeof bad);
    bad[5] = -1;
    CHECK(parml_trainer_step_weighted(t2, xrt, yrt, s, N, &sentinel) == PARML_ERR_SHAPE, "count %d for %d rows", N, n);
    CHECK(parml_trainer_step_weighted(t, xt, yt, NULL, N, &sentinel) == PARML_ERR_INVALID_ARGUMENT, "NULL weights");
    CHECK(parml_trainer_step_weighted(t, xt, yt, bad, N, &sentinel) == PARML_ERR_INVALID_ARGUMENT, "a negative weight");
    CHECK(strstr(parml_last_error(), "row 5") != NULL, "the message names the row: %s", parml_last_error());
    bad[5] = NAN;
    CHECK(parml_trainer_step_weighted(t, xt, yt, bad, N, &sentinel) == PARML_ERR_INVALID_ARGUMENT, "a NaN weight");
    memset(bad, 0, sizeof bad);
    CHECK(parml_trainer_step_weighted(t, xt, yt, bad, N, &sentinel) == PARML_ERR_INVALID_ARGUMENT, "all weights 0");
    CHECK(parml_trainer_step_weighted(NULL, xt, yt, s, N, &sentinel) == PARML_ERR_INVALID_ARGUMENT, "NULL trainer");
    CHECK(sentinel == -7, "loss_out untouched on failure");
    int64_t steps = -1;
    OK(parml_trainer_step_count(t, &steps));
    CHECK(steps == 1, "refused steps train nothing (%lld steps)", (long long)steps);

    free(a);
    free(b);
    parml_tensor_free(xrt);
    parml_tensor_free(yrt);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_trainer_free(t);
    parml_trainer_free(t2);
    parml_model_free(m);
    parml_model_free(m2);
}

/* fit on a weighted dataset: dp=2 equals serial bit for bit, differs from unweighted. */
static void fit_params(int dp, int weighted, float *p, int64_t np_, float *eval_loss) {
    float x[N * D], y[N], s[N];
    make_data(x, y, s);
    s[0] = 0.25f; /* fractional weights too */
    parml_tensor xt = tensor(x, N, D), yt = tensor(y, N, 0);
    parml_dataset d = NULL, dw = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    OK(parml_dataset_with_sample_weights(d, s, N, &dw));
    parml_dataset_free(d); /* the weighted dataset keeps the samples */
    parml_model m = make_model();
    parml_trainer t = make_trainer(m, dp);
    parml_fit_params fp;
    OK(parml_fit_params_init(&fp));
    fp.epochs = 3;
    fp.batch_size = 8;
    if (weighted) {
        OK(parml_trainer_fit(t, dw, &fp, NULL));
    } else {
        parml_dataset plain = NULL;
        OK(parml_dataset_create(xt, yt, &plain));
        OK(parml_trainer_fit(t, plain, &fp, NULL));
        parml_dataset_free(plain);
    }
    OK(parml_trainer_evaluate(t, dw, 5, eval_loss, NULL));
    params_of(m, p, np_);
    parml_dataset_free(dw);
    parml_trainer_free(t);
    parml_model_free(m);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

static void test_fit(void) {
    parml_model m = make_model();
    int64_t np_ = 0;
    OK(parml_model_num_params(m, &np_));
    parml_model_free(m);
    float *serial = malloc((size_t)np_ * sizeof *serial), *dp2 = malloc((size_t)np_ * sizeof *dp2),
          *plain = malloc((size_t)np_ * sizeof *plain);
    float l1 = 0, l2 = 0, l3 = 0;
    fit_params(1, 1, serial, np_, &l1);
    fit_params(2, 1, dp2, np_, &l2);
    fit_params(1, 0, plain, np_, &l3);
    CHECK(memcmp(serial, dp2, (size_t)np_ * sizeof *serial) == 0, "dp=2 fit with sample weights differs from serial");
    CHECK(memcmp(serial, plain, (size_t)np_ * sizeof *serial) != 0, "the weights change the training");
    CHECK(l1 == l2 && isfinite(l1), "weighted evaluate: %g vs %g", l1, l2);
    free(serial);
    free(dp2);
    free(plain);
}

static void test_bad_dataset_weights(void) {
    float x[N * D], y[N], s[N];
    make_data(x, y, s);
    parml_tensor xt = tensor(x, N, D), yt = tensor(y, N, 0);
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    parml_dataset out = (parml_dataset)(uintptr_t)0x5150;
    CHECK(parml_dataset_with_sample_weights(d, s, N - 1, &out) == PARML_ERR_INVALID_ARGUMENT, "N - 1 weights");
    CHECK(strstr(parml_last_error(), "23 weights for 24 samples") != NULL, "message: %s", parml_last_error());
    s[3] = -2;
    CHECK(parml_dataset_with_sample_weights(d, s, N, &out) == PARML_ERR_INVALID_ARGUMENT, "a negative weight");
    s[3] = INFINITY;
    CHECK(parml_dataset_with_sample_weights(d, s, N, &out) == PARML_ERR_INVALID_ARGUMENT, "an infinite weight");
    memset(s, 0, sizeof s);
    CHECK(parml_dataset_with_sample_weights(d, s, N, &out) == PARML_ERR_INVALID_ARGUMENT, "all weights 0");
    CHECK(parml_dataset_with_sample_weights(d, NULL, N, &out) == PARML_ERR_INVALID_ARGUMENT, "NULL weights, count N");
    CHECK(parml_dataset_with_sample_weights(NULL, s, N, &out) == PARML_ERR_INVALID_ARGUMENT, "NULL dataset");
    CHECK(parml_dataset_with_sample_weights(d, s, N, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL out");
    CHECK(out == (parml_dataset)(uintptr_t)0x5150, "out untouched on failure");
    /* NULL with count 0: the samples without weights. */
    OK(parml_dataset_with_sample_weights(d, NULL, 0, &out));
    int64_t n = 0;
    OK(parml_dataset_size(out, &n));
    CHECK(n == N, "size %lld", (long long)n);
    parml_dataset_free(out);
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

int main(void) {
    test_step();
    test_fit();
    test_bad_dataset_weights();
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
