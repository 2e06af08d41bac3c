/*
 * test_advisor.c — the strategy advisor through the C ABI: advice within a
 * memory budget, the prediction against parml_trainer_memory, refusals that
 * leave out-parameters untouched, parml_trainer_create_auto and its plan.
 * The calibration goes to a temporary cache directory.
 */
#include "test_common.h"

#include <stddef.h>
#include <stdlib.h>

#define SENTINEL ((parml_advice)(uintptr_t)0x5150)

static parml_model make_model(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, 16, 64, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, 64, 64, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, 64, 4, 1));
    OK(parml_model_init(m, 3));
    return m;
}

static const int64_t sample[] = {16};

static parml_advice_params params(const char *cache, int64_t budget) {
    parml_advice_params p;
    OK(parml_advice_params_init(&p));
    p.sample_dims = sample;
    p.sample_rank = 1;
    p.batch = 32;
    p.memory_budget = budget;
    p.cache_dir = cache;
    return p;
}

int main(void) {
    char dir[] = "/tmp/parml_advisor_c.XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    parml_model m = make_model();
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAM;

    /* Without a budget: the serial layout's peak sets one below it. */
    parml_advice_params p = params(dir, 0);
    parml_advice a = NULL;
    OK(parml_strategy_advise(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &a));
    ptrdiff_t ranked = 0, excluded = 0;
    OK(parml_advice_count(a, &ranked, &excluded));
    CHECK(ranked > 1, "%td ranked", ranked);
    int64_t serial_peak = 0;
    for (ptrdiff_t i = 0; i < ranked; i++) {
        parml_layout_prediction lp = {.struct_size = sizeof lp};
        const char *reason = NULL;
        OK(parml_advice_layout(a, i, &lp, &reason));
        CHECK(reason != NULL, "reason");
        CHECK(close_rel(lp.step_seconds,
                        lp.compute_seconds + lp.communication_seconds + lp.bubble_seconds + lp.optimizer_seconds + lp.overhead_seconds,
                        1e-9), "terms");
        if (lp.dp * lp.pp * lp.tp == 1) serial_peak = lp.peak_bytes;
    }
    CHECK(serial_peak > 0, "a serial layout is ranked");
    char *text = NULL;
    OK(parml_advice_text(a, &text));
    CHECK(text != NULL && strstr(text, "calibration:") != NULL, "table");
    parml_buffer_free(text);
    parml_advice_free(a);
    parml_advice_free(NULL);

    /* A budget below the serial peak: every ranked layout fits it, and the first builds,
       steps and reports the memory predicted (within 10 %). */
    p = params(dir, serial_peak * 3 / 4);
    OK(parml_strategy_advise(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &a));
    OK(parml_advice_count(a, &ranked, &excluded));
    CHECK(ranked >= 1 && excluded >= 1, "%td ranked, %td excluded", ranked, excluded);
    parml_layout_prediction first = {.struct_size = sizeof first};
    OK(parml_advice_layout(a, 0, &first, NULL));
    for (ptrdiff_t i = 0; i < ranked; i++) {
        parml_layout_prediction lp = {.struct_size = sizeof lp};
        OK(parml_advice_layout(a, i, &lp, NULL));
        CHECK(lp.peak_bytes <= p.memory_budget, "layout %td: %lld > budget", i, (long long)lp.peak_bytes);
    }
    const char *why = NULL;
    OK(parml_advice_excluded(a, 0, NULL, &why));
    CHECK(why != NULL && *why, "why");
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    OK(parml_advice_strategy(a, 0, &s));
    CHECK(s.dp == first.dp && s.pp == first.pp && s.tp == first.tp && s.zero_stage == first.zero_stage, "strategy");
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t));
    float xs[32 * 16];
    int32_t ys[32];
    for (int i = 0; i < 32 * 16; i++) xs[i] = (float)((i * 37) % 11) / 11.0f;
    for (int i = 0; i < 32; i++) ys[i] = i % 4;
    int64_t xd[] = {32, 16}, yd[] = {32};
    parml_tensor x = NULL, y = NULL;
    OK(parml_tensor_create(xd, 2, xs, &x));
    OK(parml_tensor_create_typed(PARML_DTYPE_INT32, yd, 1, ys, &y));
    OK(parml_trainer_step(t, x, y, NULL));
    int64_t worst = 0;
    for (int r = 0; r < first.dp * first.pp * first.tp; r++) {
        parml_memory_report mr = {.struct_size = sizeof mr};
        OK(parml_trainer_memory(t, r, &mr));
        int64_t total = mr.parameter_bytes + mr.gradient_bytes + mr.optimizer_bytes + mr.scratch_bytes + mr.activation_bytes;
        if (total > worst) worst = total;
    }
    CHECK(llabs(worst - first.peak_bytes) * 10 <= worst, "predicted %lld, trainer %lld", (long long)first.peak_bytes, (long long)worst);
    parml_trainer_free(t);

    /* Misuse: errors, out-parameters untouched. */
    ptrdiff_t n = -7;
    CHECK(parml_advice_layout(a, ranked, &first, NULL) == PARML_ERR_INVALID_ARGUMENT, "index");
    CHECK(parml_advice_count(NULL, &n, NULL) == PARML_ERR_INVALID_ARGUMENT && n == -7, "NULL advice");
    CHECK(parml_advice_excluded(a, 0, NULL, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL why");
    parml_advice_free(a);
    CHECK(parml_advice_count(a, &n, NULL) == PARML_ERR_INVALID_ARGUMENT && n == -7, "freed advice");
    parml_advice out = SENTINEL;
    p = params(dir, 0);
    p.batch = 0;
    CHECK(parml_strategy_advise(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &out) == PARML_ERR_INVALID_ARGUMENT && out == SENTINEL, "batch 0");
    p = params(dir, -5);
    CHECK(parml_strategy_advise(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &out) == PARML_ERR_INVALID_ARGUMENT && out == SENTINEL, "budget");
    CHECK(strstr(parml_last_error(), "memory_budget") != NULL, "%s", parml_last_error());
    p = params(dir, 0);
    p.sample_dims = NULL;
    CHECK(parml_strategy_advise(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &out) == PARML_ERR_INVALID_ARGUMENT && out == SENTINEL, "no shape");
    p = params(dir, 0);
    p.backend = PARML_BACKEND_MPI;
    CHECK(parml_strategy_advise(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &out) == PARML_ERR_UNSUPPORTED && out == SENTINEL, "mpi");
    p = params(dir, 0);
    p.struct_size = 8;
    CHECK(parml_strategy_advise(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &out) == PARML_ERR_INVALID_ARGUMENT && out == SENTINEL, "size");
    p = params(dir, 1); /* one byte per rank: nothing fits */
    parml_trainer none = NULL;
    CHECK(parml_trainer_create_auto(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &none) == PARML_ERR_INVALID_ARGUMENT && none == NULL, "nothing fits");
    CHECK(strstr(parml_last_error(), "no layout fits") != NULL, "%s", parml_last_error());

    /* Strategy auto: the plan says the advisor chose the layout. */
    p = params(dir, 0);
    OK(parml_trainer_create_auto(m, PARML_LOSS_CROSS_ENTROPY, &o, &p, &t));
    char *plan = NULL;
    OK(parml_trainer_plan(t, &plan));
    CHECK(plan != NULL && strstr(plan, "layout chosen by the strategy advisor") != NULL, "plan: %s", plan ? plan : "");
    parml_buffer_free(plan);
    OK(parml_trainer_step(t, x, y, NULL));
    parml_trainer_free(t);
    parml_tensor_free(x);
    parml_tensor_free(y);
    parml_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
