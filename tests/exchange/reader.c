/*
 * reader.c — the other side of the exchange test: a separate process that
 * loads the writer's model from a pipe (stdin) and from its file, predicts
 * on the probe batch, and compares with the writer's predictions bit for bit.
 *
 * Usage: writer ... | reader MODEL_PATH PREDICTIONS_PATH
 * Exits 0 when both loaded models predict exactly the writer's bits.
 */
#include "common.h"

static int same_bits(parml_model m, const float *want, const char *what) {
    float got[PROBE_N * CLASSES];
    probe_predict(m, got);
    if (memcmp(got, want, sizeof got) != 0) {
        fprintf(stderr, "reader: the model from %s predicts other bits than the writer\n", what);
        return 0;
    }
    fprintf(stderr, "reader: the model from %s predicts the writer's %d values bit for bit\n", what, PROBE_N * CLASSES);
    return 1;
}

int main(int argc, char **argv) {
    DIE_IF(argc != 3, "usage: reader MODEL_PATH PREDICTIONS_PATH < pipe");
    /* The pipe first: reading it to its end waits for the writer to exit,
       after which its other files are complete. */
    parml_model from_pipe = NULL, from_file = NULL;
    DIE_IF(parml_model_load("/dev/stdin", &from_pipe) != PARML_OK, "model_load from the pipe");
    float want[PROBE_N * CLASSES];
    FILE *f = fopen(argv[2], "rb");
    DIE_IF(!f || fread(want, sizeof *want, PROBE_N * CLASSES, f) != PROBE_N * CLASSES, "read %s", argv[2]);
    fclose(f);
    DIE_IF(parml_model_load(argv[1], &from_file) != PARML_OK, "model_load %s", argv[1]);
    int ok = same_bits(from_pipe, want, "the pipe") & same_bits(from_file, want, argv[1]);
    parml_model_free(from_pipe);
    parml_model_free(from_file);
    return ok ? 0 : 1;
}
