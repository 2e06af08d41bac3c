/* nonfinite_check.c — what the check for non-finite steps costs
 * (optimizer skip_nonfinite = 1, the default, against 0), measured in one
 * run: the 784-1024-1024-10 MLP at batch 128, serial fast mode, SGD with
 * momentum (the check also turns off folding the momentum into the
 * backward pass) and Adam; 9 alternating rounds of 20 steps, medians.
 *
 *   make lib && gcc -O2 -Iinclude bench/nonfinite_check.c -L.build/release -lparml -lm \
 *       -Wl,-rpath,$PWD/.build/release -o build/nonfinite_check && ./build/nonfinite_check
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "parml.h"

enum { N = 128, IN = 784, ROUNDS = 9, STEPS = 20 };

static parml_trainer make(int32_t kind, int64_t skip, parml_model *m) {
    parml_model_create(m);
    parml_model_add_linear(*m, IN, 1024, 1);
    parml_model_add_activation(*m, PARML_ACTIVATION_RELU);
    parml_model_add_linear(*m, 1024, 1024, 1);
    parml_model_add_activation(*m, PARML_ACTIVATION_RELU);
    parml_model_add_linear(*m, 1024, 10, 1);
    parml_model_init(*m, 1);
    parml_optimizer_params o;
    parml_optimizer_params_init(&o);
    o.kind = kind;
    o.learning_rate = kind == PARML_OPTIMIZER_SGD ? 0.01f : 1e-4f;
    o.momentum = kind == PARML_OPTIMIZER_SGD ? 0.9f : 0.0f;
    o.skip_nonfinite = skip;
    parml_trainer t = NULL;
    if (parml_trainer_create(*m, PARML_LOSS_CROSS_ENTROPY, &o, NULL, &t) != PARML_OK) {
        fprintf(stderr, "%s\n", parml_last_error());
        exit(1);
    }
    return t;
}

int main(void) {
    static float x[N * IN], y[N];
    for (int i = 0; i < N * IN; i++) x[i] = sinf((float)i * 0.01f);
    for (int i = 0; i < N; i++) y[i] = (float)(i % 10);
    int64_t xd[2] = {N, IN}, yd[1] = {N};
    parml_tensor xt = NULL, yt = NULL;
    parml_tensor_create(xd, 2, x, &xt);
    parml_tensor_create(yd, 1, y, &yt);
    const int32_t kinds[2] = {PARML_OPTIMIZER_SGD, PARML_OPTIMIZER_ADAM};
    const char *names[2] = {"SGD momentum", "Adam"};
    for (int k = 0; k < 2; k++) {
        parml_model m[2];
        parml_trainer t[2] = {make(kinds[k], 1, &m[0]), make(kinds[k], 0, &m[1])};
        double rate[2][ROUNDS];
        for (int r = 0; r < ROUNDS; r++)
            for (int c = 0; c < 2; c++) {
                for (int w = 0; w < 2; w++) parml_trainer_step(t[c], xt, yt, NULL);
                double t0 = now();
                for (int s = 0; s < STEPS; s++) parml_trainer_step(t[c], xt, yt, NULL);
                rate[c][r] = STEPS * N / (now() - t0);
            }
        double on = median(rate[0], ROUNDS), off = median(rate[1], ROUNDS);
        printf("{\"name\": \"nonfinite_check_%s\", \"check_on\": %.0f, \"check_off\": %.0f, \"ratio\": %.4f}\n",
               k == 0 ? "sgd_momentum" : "adam", on, off, on / off);
        fprintf(stderr, "%s: check on %.0f samples/s, off %.0f, on/off %.3f\n", names[k], on, off, on / off);
        for (int c = 0; c < 2; c++) {
            parml_trainer_free(t[c]);
            parml_model_free(m[c]);
        }
    }
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    return 0;
}
