/*
 * test_metrics.c — class imbalance through the C API: parml_trainer_set_loss
 * (class weights, label smoothing, pos_weight) and
 * parml_trainer_evaluate_metrics. Bad input returns the documented codes
 * and leaves outputs untouched; the step's loss equals the torch formulas
 * computed here in double from the model's own logits; data parallel in
 * deterministic mode gives serial's parameters bit for bit with class
 * weights; the metrics equal those counted here from the predictions; a
 * stratified split keeps each class's share; class-balanced sampling in
 * fit is layout-free.
 * Prints "N passed, N failed"; exits nonzero on any failure.
 */
#include "test_common.h"

#include <stddef.h>

enum { D = 4, C = 3, N = 24 };

/* What an out-pointer holds before a call that must leave it untouched on failure. */
#define SPLIT_SENTINEL ((parml_dataset)(uintptr_t)0x5150)

static parml_model make_model(int outputs) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, D, 8, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_TANH));
    OK(parml_model_add_linear(m, 8, outputs, 1));
    OK(parml_model_init(m, 7));
    return m;
}

static parml_trainer make_trainer(parml_model m, int32_t loss, int dp, int deterministic) {
    parml_optimizer_params o;
    parml_strategy_params s;
    OK(parml_optimizer_params_init(&o));
    OK(parml_strategy_params_init(&s));
    o.learning_rate = 0.1f;
    s.dp = dp;
    s.deterministic = deterministic;
    s.grad_chunk = 8;
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, loss, &o, &s, &t));
    return t;
}

/* Inputs in [-1, 1) and labels skewed toward class 0 (15 of 24). */
static void make_data(float *x, float *y) {
    uint32_t r = 12345;
    for (int i = 0; i < N * D; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((r >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
    for (int i = 0; i < N; i++) y[i] = (float)(i % 8 < 5 ? 0 : i % 8 == 5 ? 1 : 2);
}

static parml_tensor tensor2(const float *v, int64_t rows, int64_t cols) {
    int64_t dims[2] = {rows, cols};
    parml_tensor t = NULL;
    OK(parml_tensor_create(dims, cols ? 2 : 1, v, &t));
    return t;
}

/* The skewed data as tensors and a dataset; free with free_data. */
typedef struct {
    parml_tensor x, y;
    parml_dataset d;
} data_set;

static data_set load_data(void) {
    float x[N * D], y[N];
    make_data(x, y);
    data_set s = {tensor2(x, N, D), tensor2(y, N, 0), NULL};
    OK(parml_dataset_create(s.x, s.y, &s.d));
    return s;
}

static void free_data(data_set s) {
    parml_dataset_free(s.d);
    parml_tensor_free(s.x);
    parml_tensor_free(s.y);
}

/* The model's logits for x, as doubles. */
static void logits_of(parml_model m, parml_tensor x, int outputs, double *z) {
    parml_tensor out = NULL;
    OK(parml_model_predict(m, x, &out));
    float f[N * C];
    OK(parml_tensor_read(out, f, N * outputs));
    for (int i = 0; i < N * outputs; i++) z[i] = f[i];
    parml_tensor_free(out);
}

static void test_bad_input(void) {
    CHECK(parml_loss_params_init(NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL params");
    CHECK(parml_metrics_params_init(NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL params");
    parml_loss_params p;
    OK(parml_loss_params_init(&p));
    CHECK(p.struct_size == sizeof p && !p.class_weights && p.num_class_weights == 0 && p.label_smoothing == 0 && !p.pos_weight,
          "loss defaults: plain");
    parml_metrics_params mp;
    OK(parml_metrics_params_init(&mp));
    CHECK(mp.struct_size == sizeof mp && mp.top_k == 5 && mp.capacity == 0 && !mp.confusion, "metrics defaults");

    parml_model m = make_model(C);
    parml_trainer t = make_trainer(m, PARML_LOSS_CROSS_ENTROPY, 1, 0);
    CHECK(parml_trainer_set_loss(NULL, &p) == PARML_ERR_INVALID_ARGUMENT, "NULL trainer");
    OK(parml_trainer_set_loss(t, NULL));
    float w[3] = {1, -2, 1};
    p.class_weights = w;
    p.num_class_weights = 3;
    CHECK(parml_trainer_set_loss(t, &p) == PARML_ERR_INVALID_ARGUMENT, "a negative weight");
    w[1] = NAN;
    CHECK(parml_trainer_set_loss(t, &p) == PARML_ERR_INVALID_ARGUMENT, "a NaN weight");
    w[1] = 2;
    p.num_class_weights = 0;
    CHECK(parml_trainer_set_loss(t, &p) == PARML_ERR_INVALID_ARGUMENT, "weights with count 0");
    p.class_weights = NULL;
    p.num_class_weights = 3;
    CHECK(parml_trainer_set_loss(t, &p) == PARML_ERR_INVALID_ARGUMENT, "NULL weights with count 3");
    OK(parml_loss_params_init(&p));
    p.label_smoothing = 1.5f;
    CHECK(parml_trainer_set_loss(t, &p) == PARML_ERR_INVALID_ARGUMENT, "smoothing 1.5");
    OK(parml_loss_params_init(&p));
    p.pos_weight = w;
    p.num_pos_weight = 3;
    CHECK(parml_trainer_set_loss(t, &p) == PARML_ERR_INVALID_ARGUMENT, "pos_weight on cross-entropy");
    OK(parml_loss_params_init(&p));
    p.struct_size = 5;
    CHECK(parml_trainer_set_loss(t, &p) == PARML_ERR_INVALID_ARGUMENT, "struct_size 5");
    CHECK(parml_trainer_create(m, 4, NULL, NULL, &(parml_trainer){NULL}) == PARML_ERR_INVALID_ARGUMENT, "loss kind 4");

    data_set data = load_data();
    parml_tensor xt = data.x, yt = data.y;
    parml_dataset d = data.d;
    parml_metrics out;
    memset(&out, 0x5a, sizeof out);
    out.struct_size = sizeof out;
    int64_t confusion[4] = {-1, -1, -1, -1};
    mp.confusion = confusion;
    mp.capacity = 2;
    CHECK(parml_trainer_evaluate_metrics(t, d, 8, &mp, &out) == PARML_ERR_INVALID_ARGUMENT, "capacity 2 for 3 classes");
    CHECK(strstr(parml_last_error(), "3 classes") != NULL, "the message says how many: %s", parml_last_error());
    CHECK(confusion[0] == -1 && out.classes == 0x5a5a5a5a5a5a5a5a, "outputs untouched on failure");
    mp.capacity = 3;
    mp.confusion = NULL;
    mp.top_k = 0;
    CHECK(parml_trainer_evaluate_metrics(t, d, 8, &mp, &out) == PARML_ERR_INVALID_ARGUMENT, "top_k 0");
    CHECK(parml_trainer_evaluate_metrics(t, d, 0, NULL, &out) == PARML_ERR_INVALID_ARGUMENT, "batch 0");
    CHECK(parml_trainer_evaluate_metrics(t, d, 8, NULL, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL out");
    out.struct_size = 8;
    CHECK(parml_trainer_evaluate_metrics(t, d, 8, NULL, &out) == PARML_ERR_INVALID_ARGUMENT, "small out struct_size");
    out.struct_size = sizeof out;
    CHECK(parml_trainer_evaluate_metrics(t, NULL, 8, NULL, &out) == PARML_ERR_INVALID_ARGUMENT, "NULL dataset");

    /* Weights for 2 classes: the step refuses, nothing trained. */
    OK(parml_loss_params_init(&p));
    p.class_weights = w;
    p.num_class_weights = 2;
    OK(parml_trainer_set_loss(t, &p));
    CHECK(parml_trainer_step(t, xt, yt, NULL) == PARML_ERR_SHAPE, "2 weights for 3 classes");
    int64_t steps = -1;
    OK(parml_trainer_step_count(t, &steps));
    CHECK(steps == 0, "nothing trained");

    parml_trainer mse = make_trainer(m, PARML_LOSS_MSE, 1, 0);
    CHECK(parml_trainer_evaluate_metrics(mse, d, 8, NULL, &out) == PARML_ERR_INVALID_ARGUMENT, "metrics of an MSE trainer");
    parml_trainer_free(mse);
    free_data(data);
    parml_trainer_free(t);
    parml_model_free(m);
}

/* The step's loss (before the update) against torch's formulas in double. */
static void test_loss_values(void) {
    float x[N * D], y[N];
    make_data(x, y);
    parml_tensor xt = tensor2(x, N, D), yt = tensor2(y, N, 0);
    const double w[C] = {0.2, 3.0, 1.5}, eps = 0.1;
    double z[N * C];

    parml_model m = make_model(C);
    parml_trainer t = make_trainer(m, PARML_LOSS_CROSS_ENTROPY, 1, 0);
    parml_loss_params p;
    OK(parml_loss_params_init(&p));
    float wf[C] = {0.2f, 3.0f, 1.5f};
    p.class_weights = wf;
    p.num_class_weights = C;
    p.label_smoothing = (float)eps;
    OK(parml_trainer_set_loss(t, &p));
    logits_of(m, xt, C, z);
    double num = 0, den = 0;
    for (int i = 0; i < N; i++) {
        const double *r = z + i * C;
        double lse = log(exp(r[0]) + exp(r[1]) + exp(r[2]));
        int k = (int)y[i];
        num += (1 - eps) * w[k] * (lse - r[k]);
        for (int c = 0; c < C; c++) num += eps / C * w[c] * (lse - r[c]);
        den += w[k];
    }
    float loss = 0;
    OK(parml_trainer_step(t, xt, yt, &loss));
    CHECK(close_rel(loss, num / den, 1e-6), "weighted smoothed cross-entropy %.9g vs %.9g", loss, num / den);
    parml_trainer_free(t);
    parml_model_free(m);

    /* Binary cross-entropy with pos_weight on multi-label targets. */
    m = make_model(C);
    t = make_trainer(m, PARML_LOSS_BCE_WITH_LOGITS, 1, 0);
    OK(parml_loss_params_init(&p));
    float pw[C] = {3.0f, 0.5f, 1.0f};
    p.pos_weight = pw;
    p.num_pos_weight = C;
    OK(parml_trainer_set_loss(t, &p));
    float labels[N * C];
    for (int i = 0; i < N * C; i++) labels[i] = (i * 7 % 5 == 0) ? 1.0f : (i % 11 == 0 ? 0.25f : 0.0f);
    parml_tensor lt = tensor2(labels, N, C);
    logits_of(m, xt, C, z);
    double bce = 0;
    for (int i = 0; i < N * C; i++) {
        double s = 1 / (1 + exp(-z[i])), l = labels[i];
        bce -= pw[i % C] * l * log(s) + (1 - l) * log(1 - s);
    }
    bce /= N * C;
    OK(parml_trainer_step(t, xt, lt, &loss));
    CHECK(close_rel(loss, bce, 1e-6), "binary cross-entropy %.9g vs %.9g", loss, bce);
    labels[4] = 2;
    parml_tensor bad = tensor2(labels, N, C);
    CHECK(parml_trainer_step(t, xt, bad, NULL) == PARML_ERR_INVALID_ARGUMENT, "a target of 2");
    parml_tensor_free(bad);
    parml_tensor_free(lt);
    parml_trainer_free(t);
    parml_model_free(m);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* dp = 2 in deterministic mode: serial's parameters bit for bit. */
static void test_layouts(void) {
    float x[N * D], y[N];
    make_data(x, y);
    parml_tensor xt = tensor2(x, N, D), yt = tensor2(y, N, 0);
    float wf[C] = {0.2f, 3.0f, 1.5f};
    float params[2][128];
    int64_t count = 0;
    for (int dp = 1; dp <= 2; dp++) {
        parml_model m = make_model(C);
        parml_trainer t = make_trainer(m, PARML_LOSS_CROSS_ENTROPY, dp, 1);
        parml_loss_params p;
        OK(parml_loss_params_init(&p));
        p.class_weights = wf;
        p.num_class_weights = C;
        p.label_smoothing = 0.05f;
        OK(parml_trainer_set_loss(t, &p));
        for (int k = 0; k < 3; k++) OK(parml_trainer_step(t, xt, yt, NULL));
        OK(parml_model_num_params(m, &count));
        CHECK(count <= 128, "%lld parameters", (long long)count);
        OK(parml_model_get_params(m, params[dp - 1], count));
        parml_trainer_free(t);
        parml_model_free(m);
    }
    CHECK(memcmp(params[0], params[1], (size_t)count * sizeof(float)) == 0, "dp 2 differs from serial");
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* The metrics against counts made here from the model's predictions. */
/* Metrics params (defaults otherwise) that write into these C-entry buffers. */
static parml_metrics_params buffers_for(int64_t *confusion, int64_t *support, float *precision, float *recall, float *f1) {
    parml_metrics_params mp;
    OK(parml_metrics_params_init(&mp));
    mp.capacity = C;
    mp.confusion = confusion;
    mp.support = support;
    mp.precision = precision;
    mp.recall = recall;
    mp.f1 = f1;
    return mp;
}

static void test_metrics(void) {
    float x[N * D], y[N];
    make_data(x, y);
    data_set data = load_data();
    parml_tensor xt = data.x, yt = data.y;
    parml_dataset d = data.d;
    parml_model m = make_model(C);
    parml_trainer t = make_trainer(m, PARML_LOSS_CROSS_ENTROPY, 1, 0);
    for (int k = 0; k < 5; k++) OK(parml_trainer_step(t, xt, yt, NULL));

    double z[N * C];
    logits_of(m, xt, C, z);
    int64_t want[C * C] = {0};
    int top2 = 0;
    for (int i = 0; i < N; i++) {
        const double *r = z + i * C;
        int arg = 0, k = (int)y[i], ahead = 0;
        for (int c = 1; c < C; c++)
            if (r[c] > r[arg]) arg = c;
        for (int c = 0; c < C; c++)
            if (r[c] > r[k] || (r[c] == r[k] && c < k)) ahead++;
        want[k * C + arg]++;
        if (ahead < 2) top2++;
    }
    int64_t confusion[C * C], support[C];
    float precision[C], recall[C], f1[C];
    parml_metrics_params mp = buffers_for(confusion, support, precision, recall, f1);
    mp.top_k = 2;
    parml_metrics out = {.struct_size = sizeof out};
    OK(parml_trainer_evaluate_metrics(t, d, 5, &mp, &out));
    CHECK(out.classes == C && out.predictions == N, "classes %lld predictions %lld", (long long)out.classes, (long long)out.predictions);
    CHECK(memcmp(confusion, want, sizeof want) == 0, "confusion matrix");
    CHECK(close_rel(out.top_k_accuracy, top2 / (double)N, 1e-7), "top-2 %g vs %g", out.top_k_accuracy, top2 / (double)N);
    double correct = 0, macro_f1 = 0, seen = 0;
    for (int c = 0; c < C; c++) {
        int64_t tp = want[c * C + c], sup = 0, pred = 0;
        for (int k = 0; k < C; k++) sup += want[c * C + k], pred += want[k * C + c];
        correct += (double)tp;
        CHECK(support[c] == sup, "support of %d", c);
        CHECK(close_rel(precision[c], pred ? (double)tp / (double)pred : 0, 1e-7), "precision of %d", c);
        CHECK(close_rel(recall[c], sup ? (double)tp / (double)sup : 0, 1e-7), "recall of %d", c);
        double f = sup + pred ? 2.0 * (double)tp / (double)(sup + pred) : 0;
        CHECK(close_rel(f1[c], f, 1e-7), "f1 of %d", c);
        if (sup + pred) macro_f1 += f, seen++;
    }
    CHECK(close_rel(out.accuracy, correct / N, 1e-7), "accuracy");
    CHECK(close_rel(out.macro_f1, macro_f1 / seen, 1e-6), "macro F1 %g vs %g", out.macro_f1, macro_f1 / seen);
    float loss = 0, acc = 0;
    OK(parml_trainer_evaluate(t, d, 5, &loss, &acc));
    CHECK(out.loss == loss && out.accuracy == acc, "loss and accuracy as parml_trainer_evaluate");

    free_data(data);
    parml_trainer_free(t);
    parml_model_free(m);
}

/* A stratified split: each class's share in validation, copies of the rows, bad input. */
/* A binary cross-entropy trainer's metrics are per label: C labels, each a
   yes/no decision (logit > 0) against its target (> 0.5). */
static void test_multi_label_metrics(void) {
    float x[N * D], y[N], multi[N * C];
    make_data(x, y);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) multi[i * C + c] = (int)y[i] == c || (c == 2 && x[i * D] > 0) ? 1.0f : 0.0f;
    parml_tensor xt = tensor2(x, N, D), yt = tensor2(multi, N, C);
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    parml_model m = make_model(C);
    parml_trainer t = make_trainer(m, PARML_LOSS_BCE_WITH_LOGITS, 1, 0);
    for (int k = 0; k < 5; k++) OK(parml_trainer_step(t, xt, yt, NULL));
    double z[N * C];
    logits_of(m, xt, C, z);
    int64_t want[C * 4] = {0};
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) want[c * 4 + 2 * (multi[i * C + c] > 0.5f) + (z[i * C + c] > 0)]++;
    int64_t confusion[C * 4], support[C];
    float precision[C], recall[C], f1[C];
    parml_metrics_params mp = buffers_for(confusion, support, precision, recall, f1);
    parml_metrics out = {.struct_size = sizeof out};
    OK(parml_trainer_evaluate_metrics(t, d, 7, &mp, &out));
    CHECK(out.classes == C && out.predictions == N * C, "labels %lld decisions %lld", (long long)out.classes,
          (long long)out.predictions);
    CHECK(memcmp(confusion, want, sizeof want) == 0, "multi-label confusion [[tn, fp], [fn, tp]] per label");
    CHECK(out.top_k_accuracy != out.top_k_accuracy, "top-k is NaN for multi-label");
    double right = 0, macro_f1 = 0;
    for (int c = 0; c < C; c++) {
        int64_t tn = want[c * 4], fp = want[c * 4 + 1], fn = want[c * 4 + 2], tp = want[c * 4 + 3];
        right += (double)(tn + tp);
        CHECK(support[c] == tp + fn, "support of label %d", c);
        CHECK(close_rel(precision[c], tp + fp ? (double)tp / (double)(tp + fp) : 0, 1e-7), "precision of label %d", c);
        CHECK(close_rel(recall[c], tp + fn ? (double)tp / (double)(tp + fn) : 0, 1e-7), "recall of label %d", c);
        double f = 2 * tp + fp + fn ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0;
        CHECK(close_rel(f1[c], f, 1e-7), "f1 of label %d", c);
        macro_f1 += f;
    }
    CHECK(close_rel(out.macro_f1, macro_f1 / C, 1e-6), "macro F1 over every label %g vs %g", out.macro_f1, macro_f1 / C);
    float loss = 0, acc = 0;
    OK(parml_trainer_evaluate(t, d, 7, &loss, &acc));
    CHECK(out.loss == loss && out.accuracy == acc && close_rel(acc, right / (N * C), 1e-7),
          "loss and per-label accuracy as parml_trainer_evaluate");
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_trainer_free(t);
    parml_model_free(m);
}

static void test_split(void) {
    float x[N * D], y[N];
    make_data(x, y);
    for (int i = 0; i < N; i++) x[i * D] = (float)i; /* row i says which it is */
    parml_tensor xt = tensor2(x, N, D), yt = tensor2(y, N, 0);
    parml_dataset d = NULL, train = SPLIT_SENTINEL, val = SPLIT_SENTINEL;
    OK(parml_dataset_create(xt, yt, &d));
    CHECK(parml_dataset_split(d, 0.0, 1, 1, &train, &val) == PARML_ERR_INVALID_ARGUMENT, "fraction 0");
    CHECK(parml_dataset_split(d, 1.0, 1, 1, &train, &val) == PARML_ERR_INVALID_ARGUMENT, "fraction 1");
    CHECK(parml_dataset_split(d, 0.01, 1, 0, &train, &val) == PARML_ERR_INVALID_ARGUMENT, "an empty validation part");
    CHECK(parml_dataset_split(NULL, 0.5, 1, 1, &train, &val) == PARML_ERR_INVALID_ARGUMENT, "NULL dataset");
    CHECK(parml_dataset_split(d, 0.5, 1, 1, NULL, &val) == PARML_ERR_INVALID_ARGUMENT, "NULL train_out");
    CHECK(train == SPLIT_SENTINEL && val == SPLIT_SENTINEL, "outputs untouched on failure");
    /* 24 labels: 15 of class 0, 3 of class 1, 6 of class 2; a third of each. */
    OK(parml_dataset_split(d, 1.0 / 3, 1, 1, &train, &val));
    int64_t nt = 0, nv = 0;
    OK(parml_dataset_size(train, &nt));
    OK(parml_dataset_size(val, &nv));
    CHECK(nt == 16 && nv == 8, "train %lld, validation %lld", (long long)nt, (long long)nv);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    /* The validation rows hold class 0, 1, 2 as 5, 1, 2 (round(15/3), round(3/3), round(6/3)). */
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, D, C, 0));
    OK(parml_model_init(m, 1));
    parml_trainer t = make_trainer(m, PARML_LOSS_CROSS_ENTROPY, 1, 0);
    int64_t support[C];
    parml_metrics_params mp;
    OK(parml_metrics_params_init(&mp));
    mp.capacity = C;
    mp.support = support;
    parml_metrics out = {.struct_size = sizeof out};
    OK(parml_trainer_evaluate_metrics(t, val, 8, &mp, &out));
    CHECK(support[0] == 5 && support[1] == 1 && support[2] == 2, "validation classes %lld %lld %lld", (long long)support[0],
          (long long)support[1], (long long)support[2]);
    OK(parml_trainer_evaluate_metrics(t, train, 8, &mp, &out));
    CHECK(support[0] == 10 && support[1] == 2 && support[2] == 4, "training classes");
    parml_trainer_free(t);
    parml_model_free(m);
    parml_dataset_free(train);
    parml_dataset_free(val);
    parml_dataset_free(d);
}

/* Class-balanced sampling in fit: dp 2 equals serial bit for bit; a 0.2
 * caller's smaller struct still fits as before; bad weights are refused. */
static void test_sampling(void) {
    data_set data = load_data();
    parml_dataset d = data.d;
    const float balanced[C] = {24.0f / (3 * 15), 24.0f / (3 * 3), 24.0f / (3 * 6)};
    float params[3][128];
    int64_t count = 0;
    for (int run = 0; run < 3; run++) {
        parml_model m = make_model(C);
        parml_trainer t = make_trainer(m, PARML_LOSS_CROSS_ENTROPY, run == 1 ? 2 : 1, 1);
        parml_fit_params fp;
        OK(parml_fit_params_init(&fp));
        CHECK(fp.class_sampling_weights == NULL && fp.num_class_sampling_weights == 0, "sampling off by default");
        fp.epochs = 2;
        fp.batch_size = 8;
        if (run < 2) {
            fp.class_sampling_weights = balanced;
            fp.num_class_sampling_weights = C;
        } else {
            fp.struct_size = offsetof(parml_fit_params, class_sampling_weights); /* a 0.2 struct */
        }
        OK(parml_trainer_fit(t, d, &fp, NULL));
        OK(parml_model_num_params(m, &count));
        OK(parml_model_get_params(m, params[run], count));
        if (run == 0) {
            fp.num_class_sampling_weights = 2;
            CHECK(parml_trainer_fit(t, d, &fp, NULL) == PARML_ERR_INVALID_ARGUMENT, "2 weights for labels up to 2");
            const float negative[C] = {1, -1, 1};
            fp.class_sampling_weights = negative;
            fp.num_class_sampling_weights = C;
            CHECK(parml_trainer_fit(t, d, &fp, NULL) == PARML_ERR_INVALID_ARGUMENT, "a negative weight");
            fp.class_sampling_weights = NULL;
            CHECK(parml_trainer_fit(t, d, &fp, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL weights with a count");
        }
        parml_trainer_free(t);
        parml_model_free(m);
    }
    CHECK(memcmp(params[0], params[1], (size_t)count * sizeof(float)) == 0, "dp 2 differs from serial");
    CHECK(memcmp(params[0], params[2], (size_t)count * sizeof(float)) != 0, "sampling changed nothing");
    free_data(data);
}

int main(void) {
    test_bad_input();
    test_loss_values();
    test_layouts();
    test_metrics();
    test_multi_label_metrics();
    test_split();
    test_sampling();
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
