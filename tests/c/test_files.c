/*
 * test_files.c — models, tensors and checkpoints through files and buffers
 * (docs/file-format.md): round trips are exact, files are replaced
 * atomically, and a checkpoint written under one layout resumes under
 * another exactly as the uninterrupted run (deterministic mode).
 * Prints "N passed, N failed" and exits nonzero on any failure.
 */
#include "test_common.h"

#include <dirent.h>
#include <unistd.h>

enum { IN = 12, HID = 16, OUT = 4, BATCH = 16 };

/* flatten, 12->16, relu, residual(layer_norm, residual(16->16 no bias, gelu),
   dropout), tanh, 16->4, sigmoid: every layer kind and nested blocks. */
static parml_model every_kind(uint64_t seed) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_flatten(m));
    OK(parml_model_add_linear(m, IN, HID, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_layer_norm(m, HID, 1e-3f));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_linear(m, HID, HID, 0));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_GELU));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_dropout(m, 0.25f));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_TANH));
    OK(parml_model_add_linear(m, HID, OUT, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_SIGMOID));
    OK(parml_model_init(m, seed));
    return m;
}

static parml_tensor inputs(int step) {
    int64_t d[3] = {BATCH, 3, 4};
    float x[BATCH * IN];
    for (int i = 0; i < BATCH * IN; i++) x[i] = sinf((float)(i + 31 * step) * 0.37f);
    parml_tensor t = NULL;
    OK(parml_tensor_create(d, 3, x, &t));
    return t;
}

static parml_tensor targets(int step) {
    int64_t d[1] = {BATCH};
    float y[BATCH];
    for (int i = 0; i < BATCH; i++) y[i] = (float)((i * 7 + step) % OUT);
    parml_tensor t = NULL;
    OK(parml_tensor_create(d, 1, y, &t));
    return t;
}

/* The model's prediction on inputs(99), as a malloc'd array of BATCH*OUT floats. */
static float *predict(parml_model m) {
    parml_tensor x = inputs(99), y = NULL;
    OK(parml_model_predict(m, x, &y));
    float *out = calloc(BATCH * OUT, sizeof *out);
    if (y) OK(parml_tensor_read(y, out, BATCH * OUT));
    parml_tensor_free(x);
    parml_tensor_free(y);
    return out;
}

static float *params(parml_model m, int64_t *n) {
    OK(parml_model_num_params(m, n));
    float *p = calloc((size_t)*n, sizeof *p);
    OK(parml_model_get_params(m, p, (ptrdiff_t)*n));
    return p;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_model_round_trip(void) {
    parml_model m = every_kind(5);
    char path[512];
    scratch_path(path, sizeof path, "model.pb");
    OK(parml_model_save(m, path));
    OK(parml_model_save(m, path)); /* replaces the file */
    CHECK(count_entries(scratch_dir()) == 1, "a temporary file was left behind (%d entries)", count_entries(scratch_dir()));

    parml_model back = NULL;
    OK(parml_model_load(path, &back));
    int64_t n1 = 0, n2 = 0;
    float *p1 = params(m, &n1), *p2 = back ? params(back, &n2) : NULL;
    CHECK(n1 == n2 && p2 && memcmp(p1, p2, (size_t)n1 * sizeof *p1) == 0, "loaded parameters differ");
    float *y1 = predict(m), *y2 = back ? predict(back) : NULL;
    CHECK(y2 && memcmp(y1, y2, BATCH * OUT * sizeof *y1) == 0, "loaded model predicts other bits");
    char *s1 = NULL, *s2 = NULL;
    OK(parml_model_summary(m, &s1));
    if (back) OK(parml_model_summary(back, &s2));
    CHECK(s1 && s2 && strcmp(s1, s2) == 0, "summaries differ:\n%s\n%s", s1, s2);

    /* The buffer form is the file's bytes. */
    void *buf = NULL;
    size_t len = 0, flen = 0;
    OK(parml_model_serialize(m, &buf, &len));
    unsigned char *file = read_all(path, &flen);
    CHECK(file && len == flen && memcmp(buf, file, len) == 0, "serialize gives %zu bytes, the file has %zu", len, flen);
    parml_model again = NULL;
    OK(parml_model_deserialize(buf, len, &again));
    float *y3 = again ? predict(again) : NULL;
    CHECK(y3 && memcmp(y1, y3, BATCH * OUT * sizeof *y1) == 0, "deserialized model predicts other bits");

    /* ONNX export (onnxruntime runs such files in bindings/python/tests/test_onnx.py). */
    char onnx[512];
    scratch_path(onnx, sizeof onnx, "model.onnx");
    int64_t in_dims[3] = {1, 3, 4};
    OK(parml_model_export_onnx(m, in_dims, 3, onnx));
    size_t olen = 0;
    unsigned char *obytes = read_all(onnx, &olen);
    CHECK(obytes && olen > (size_t)n1 * 4, "ONNX file of %zu bytes for %lld parameters", olen, (long long)n1);
    free(obytes);
    remove(onnx);

    free(file);
    parml_buffer_free(buf);
    parml_buffer_free(s1);
    parml_buffer_free(s2);
    free(p1);
    free(p2);
    free(y1);
    free(y2);
    free(y3);
    remove(path);
    parml_model_free(m);
    parml_model_free(back);
    parml_model_free(again);
}

static void test_tensor_round_trip(void) {
    parml_tensor t = inputs(3), back = NULL;
    void *buf = NULL;
    size_t len = 0;
    OK(parml_tensor_serialize(t, &buf, &len));
    CHECK(len > BATCH * IN * 4, "%zu bytes for %d floats", len, BATCH * IN);
    OK(parml_tensor_deserialize(buf, len, &back));
    int64_t dims[8] = {0};
    ptrdiff_t ndim = 0;
    if (back) OK(parml_tensor_shape(back, dims, 8, &ndim));
    CHECK(ndim == 3 && dims[0] == BATCH && dims[1] == 3 && dims[2] == 4, "shape after round trip");
    float a[BATCH * IN], b[BATCH * IN];
    OK(parml_tensor_read(t, a, BATCH * IN));
    if (back) OK(parml_tensor_read(back, b, BATCH * IN));
    CHECK(memcmp(a, b, sizeof a) == 0, "tensor data differs after round trip");
    parml_buffer_free(buf);
    parml_tensor_free(t);
    parml_tensor_free(back);
}

static parml_trainer make_trainer(parml_model m, int32_t dp, int32_t zero) {
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAMW;
    o.learning_rate = 1e-2f;
    o.weight_decay = 0.01f;
    o.schedule = PARML_SCHEDULE_COSINE;
    o.warmup_steps = 2;
    o.total_steps = 12;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = dp;
    s.zero_stage = zero;
    s.deterministic = 1;
    s.grad_chunk = 8;
    s.seed = 11;
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t));
    return t;
}

static void run_steps(parml_trainer t, int from, int to) {
    for (int k = from; k < to; k++) {
        parml_tensor x = inputs(k), y = targets(k);
        OK(parml_trainer_step(t, x, y, NULL));
        parml_tensor_free(x);
        parml_tensor_free(y);
    }
}

/* Uninterrupted serial run of 6 steps vs dp2 ZeRO-2 (3 steps) -> file ->
   serial (3 steps), resumed with a model loaded out of the checkpoint. */
static void test_checkpoint_resume(void) {
    parml_model ref_m = every_kind(5);
    parml_trainer ref = make_trainer(ref_m, 1, 0);
    run_steps(ref, 0, 6);

    parml_model a_m = every_kind(5);
    parml_trainer a = make_trainer(a_m, 2, 2);
    run_steps(a, 0, 3);
    char ckpt[512], model_path[512];
    scratch_path(ckpt, sizeof ckpt, "train.ckpt");
    scratch_path(model_path, sizeof model_path, "arch.pb");
    OK(parml_trainer_save_checkpoint(a, ckpt));
    OK(parml_model_save(a_m, model_path));
    parml_model from_file = NULL;
    OK(parml_model_load(model_path, &from_file));
    int64_t nf = 0, na = 0;
    float *pf = from_file ? params(from_file, &nf) : NULL, *pa = params(a_m, &na);
    CHECK(pf && nf == na && memcmp(pf, pa, (size_t)na * sizeof *pa) == 0, "model file parameters differ");
    free(pf);
    free(pa);
    parml_model_free(from_file);

    /* The resuming process needs only the checkpoint: its model comes from it. */
    parml_model b_m = NULL;
    OK(parml_model_load(ckpt, &b_m));
    parml_trainer b = b_m ? make_trainer(b_m, 1, 0) : NULL;
    OK(parml_trainer_load_checkpoint(b, ckpt));
    int64_t steps = -1;
    OK(parml_trainer_step_count(b, &steps));
    CHECK(steps == 3, "step count after load is %lld", (long long)steps);
    float lr_a = 0, lr_b = 0;
    OK(parml_trainer_learning_rate(a, &lr_a));
    OK(parml_trainer_learning_rate(b, &lr_b));
    CHECK(lr_a == lr_b, "schedule position: lr %g vs %g", (double)lr_a, (double)lr_b);
    run_steps(b, 3, 6);

    int64_t n1 = 0, n2 = 0;
    float *p_ref = params(ref_m, &n1), *p_b = b_m ? params(b_m, &n2) : NULL;
    CHECK(n1 == n2 && p_b && memcmp(p_ref, p_b, (size_t)n1 * sizeof *p_ref) == 0,
          "dp2 ZeRO-2 -> checkpoint -> serial differs from the uninterrupted serial run");

    /* Buffer form: the same restore. */
    void *buf = NULL;
    size_t len = 0;
    OK(parml_trainer_serialize_checkpoint(ref, &buf, &len));
    parml_model c_m = every_kind(77);
    parml_trainer c = make_trainer(c_m, 3, 3);
    OK(parml_trainer_deserialize_checkpoint(c, buf, len));
    int64_t n3 = 0;
    float *p_c = params(c_m, &n3);
    CHECK(n3 == n1 && memcmp(p_c, p_ref, (size_t)n1 * sizeof *p_c) == 0, "deserialize_checkpoint parameters differ");
    run_steps(c, 6, 7);
    run_steps(ref, 6, 7);
    free(p_ref);
    p_ref = params(ref_m, &n1);
    free(p_c);
    p_c = params(c_m, &n3);
    CHECK(memcmp(p_c, p_ref, (size_t)n1 * sizeof *p_c) == 0, "a step after restoring under dp3 ZeRO-3 differs");

    parml_buffer_free(buf);
    free(p_ref);
    free(p_b);
    free(p_c);
    remove(ckpt);
    remove(model_path);
    parml_trainer_free(ref);
    parml_trainer_free(a);
    parml_trainer_free(b);
    parml_trainer_free(c);
    parml_model_free(ref_m);
    parml_model_free(a_m);
    parml_model_free(b_m);
    parml_model_free(c_m);
}

/* fit continues the data order: with shuffling on (the default), fit(4)
 * equals fit(2) then fit(2), and equals fit(2) under dp 2 ZeRO-1, a
 * checkpoint, then fit(2) under serial training, bit for bit. Before the
 * trainer counted epochs, every fit call restarted the shuffle at epoch 0. */
enum { FIT_N = 40 };

static parml_dataset fit_data(void) {
    float x[FIT_N * IN], y[FIT_N];
    for (int i = 0; i < FIT_N * IN; i++) x[i] = sinf((float)i * 0.71f) + 0.1f * (float)(i % 5);
    for (int i = 0; i < FIT_N; i++) y[i] = (float)((i * 5 + i / 7) % OUT);
    int64_t xd[3] = {FIT_N, 3, 4}, yd[1] = {FIT_N};
    parml_tensor xt = NULL, yt = NULL;
    parml_dataset d = NULL;
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    OK(parml_dataset_create(xt, yt, &d));
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    return d;
}

static void fit_epochs(parml_trainer t, parml_dataset d, int64_t epochs) {
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.epochs = epochs;
    f.batch_size = 8;
    OK(parml_trainer_fit(t, d, &f, NULL));
}

static void test_fit_continues_across_calls_and_checkpoints(void) {
    parml_dataset d = fit_data();
    parml_model whole_m = every_kind(9);
    parml_trainer whole = make_trainer(whole_m, 1, 0);
    fit_epochs(whole, d, 4);

    parml_model split_m = every_kind(9);
    parml_trainer split = make_trainer(split_m, 1, 0);
    fit_epochs(split, d, 2);
    fit_epochs(split, d, 2);
    int64_t epochs = -1;
    OK(parml_trainer_epoch_count(split, &epochs));
    CHECK(epochs == 4, "epoch count after fit(2) twice: %lld", (long long)epochs);

    parml_model a_m = every_kind(9);
    parml_trainer a = make_trainer(a_m, 2, 1);
    fit_epochs(a, d, 2);
    char ckpt[512];
    scratch_path(ckpt, sizeof ckpt, "fit.ckpt");
    OK(parml_trainer_save_checkpoint(a, ckpt));
    parml_model b_m = NULL;
    OK(parml_model_load(ckpt, &b_m));
    parml_trainer b = b_m ? make_trainer(b_m, 1, 0) : NULL;
    OK(parml_trainer_load_checkpoint(b, ckpt));
    OK(parml_trainer_epoch_count(b, &epochs));
    CHECK(epochs == 2, "epoch count restored from the checkpoint: %lld", (long long)epochs);
    fit_epochs(b, d, 2);

    int64_t n0 = 0, n1 = 0, n2 = 0;
    float *p_whole = params(whole_m, &n0), *p_split = params(split_m, &n1), *p_b = b_m ? params(b_m, &n2) : NULL;
    CHECK(n0 == n1 && memcmp(p_whole, p_split, (size_t)n0 * sizeof *p_whole) == 0,
          "fit(2) then fit(2) differs from fit(4)");
    CHECK(p_b && n0 == n2 && memcmp(p_whole, p_b, (size_t)n0 * sizeof *p_whole) == 0,
          "fit(2) under dp 2 ZeRO-1, checkpoint, fit(2) serial differs from fit(4)");
    free(p_whole);
    free(p_split);
    free(p_b);
    remove(ckpt);
    parml_trainer_free(whole);
    parml_trainer_free(split);
    parml_trainer_free(a);
    parml_trainer_free(b);
    parml_model_free(whole_m);
    parml_model_free(split_m);
    parml_model_free(a_m);
    parml_model_free(b_m);
    parml_dataset_free(d);
}

/* Files parml 0.2 wrote (tests/fixtures/v0.2, format version 1) still load:
 * the model's parameters and predictions are the recorded bits, and its
 * checkpoint restores into a trainer (step count, then a step). */
static float *read_floats(const char *path, size_t n) {
    size_t got = 0;
    unsigned char *bytes = read_all(path, &got);
    CHECK(bytes && got == n * sizeof(float), "%s: %zu bytes, expected %zu", path, got, n * sizeof(float));
    return (float *)bytes;
}

static void test_files_written_by_0_2(void) {
    /* run_c_tests.sh and run_sanitizers.sh set PARML_FIXTURES; by hand, run
     * from the repository's root. */
    const char *root = getenv("PARML_FIXTURES") ? getenv("PARML_FIXTURES") : "tests/fixtures";
    char dir[900], path[1024];
    snprintf(dir, sizeof dir, "%s/v0.2", root);
    snprintf(path, sizeof path, "%s/model.pb", dir);
    parml_model m = NULL;
    OK(parml_model_load(path, &m));
    if (!m) return;
    int64_t n = 0;
    OK(parml_model_num_params(m, &n));
    CHECK(n == 564, "%lld parameters", (long long)n);
    snprintf(path, sizeof path, "%s/parameters.f32", dir);
    float *want = read_floats(path, 564), *have = malloc(564 * sizeof *have);
    OK(parml_model_get_params(m, have, 564));
    CHECK(want && memcmp(want, have, 564 * sizeof *have) == 0, "0.2 model file: parameters differ");
    snprintf(path, sizeof path, "%s/inputs.f32", dir);
    float *x = read_floats(path, 96);
    snprintf(path, sizeof path, "%s/predictions.f32", dir);
    float *pred = read_floats(path, 32);
    int64_t xd[3] = {8, 3, 4};
    parml_tensor xt = NULL, out = NULL;
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_model_predict(m, xt, &out));
    float z[32];
    OK(parml_tensor_read(out, z, 32));
    /* The same parameters, bit for bit (above); the products' last bits
     * follow the CPU's kernels (recorded with AVX-512's, AVX2's sum in
     * another order), so the outputs match to float rounding. */
    int off = 0;
    for (int i = 0; pred && i < 32; i++) off += !close_rel(z[i], pred[i], 1e-5);
    CHECK(pred && off == 0, "0.2 model file: %d of 32 predictions differ from those 0.2 recorded by more than 1e-5", off);

    snprintf(path, sizeof path, "%s/checkpoint.pb", dir);
    parml_model cm = NULL;
    OK(parml_model_load(path, &cm));
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAMW;
    o.learning_rate = 0.01f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.deterministic = 1;
    s.grad_chunk = 4;
    s.seed = 3;
    parml_trainer t = NULL;
    if (cm) OK(parml_trainer_create(cm, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t));
    OK(parml_trainer_load_checkpoint(t, path));
    int64_t steps = -1, epochs = -1;
    OK(parml_trainer_step_count(t, &steps));
    OK(parml_trainer_epoch_count(t, &epochs));
    CHECK(steps == 3 && epochs == 0, "0.2 checkpoint: step %lld epoch %lld", (long long)steps, (long long)epochs);
    OK(parml_model_get_params(cm, have, 564));
    CHECK(want && memcmp(want, have, 564 * sizeof *have) == 0, "0.2 checkpoint: parameters differ");
    float y[8];
    for (int i = 0; i < 8; i++) y[i] = (float)(i % 4);
    int64_t yd[1] = {8};
    parml_tensor yt = NULL;
    OK(parml_tensor_create(yd, 1, y, &yt));
    OK(parml_trainer_step(t, xt, yt, NULL));
    free(want);
    free(have);
    free(x);
    free(pred);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_tensor_free(out);
    parml_trainer_free(t);
    parml_model_free(m);
    parml_model_free(cm);
}

/* Authenticated files: the keyed calls round-trip; each mismatch has its
   code; the key never shows in a message. The bytes are changed and their
   crc32 recomputed, as an attacker who knows CRC-32 but not the key would. */
static void reseal(unsigned char *b, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i + 5 < n; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    c ^= 0xFFFFFFFFu;
    for (int i = 0; i < 4; i++) b[n - 4 + i] = (unsigned char)(c >> (8 * i));
}

static void test_authenticated_files(void) {
    static const char key[] = "c-test-key-0123456789abcdefghij", other[] = "c-other-key-0123456789abcdefghi";
    parml_model m = every_kind(5), back = NULL;
    char path[512];
    scratch_path(path, sizeof path, "signed.pb");
    OK(parml_model_save_authenticated(m, path, key, strlen(key)));
    OK(parml_model_load_authenticated(path, key, strlen(key), &back));
    float *y1 = predict(m), *y2 = back ? predict(back) : NULL;
    CHECK(y2 && memcmp(y1, y2, BATCH * OUT * sizeof *y1) == 0, "the authenticated model predicts other bits");
    parml_model none = NULL;
    CHECK(parml_model_load(path, &none) == PARML_ERR_AUTH_KEY && none == NULL, "loaded without its key: %s", parml_last_error());
    CHECK(parml_model_load_authenticated(path, other, strlen(other), &none) == PARML_ERR_AUTH_KEY, "other key: %s", parml_last_error());
    CHECK(strstr(parml_last_error(), other) == NULL && strstr(parml_last_error(), key) == NULL, "a key in the message");
    CHECK(parml_model_load_authenticated(path, key, 15, &none) == PARML_ERR_INVALID_ARGUMENT, "a 15-byte key was taken");
    CHECK(parml_model_load_authenticated(path, NULL, 32, &none) == PARML_ERR_INVALID_ARGUMENT, "a NULL key was taken");

    void *buf = NULL, *plain = NULL;
    size_t len = 0, plen = 0, flen = 0;
    OK(parml_model_serialize_authenticated(m, key, strlen(key), &buf, &len));
    OK(parml_model_serialize(m, &plain, &plen));
    unsigned char *file = read_all(path, &flen);
    CHECK(file && flen == len && memcmp(file, buf, len) == 0 && len == plen + 46, "serialized %zu, file %zu, plain %zu", len, flen, plen);
    CHECK(parml_model_deserialize_authenticated(plain, plen, key, strlen(key), &none) == PARML_ERR_AUTH_MISSING,
          "a plain file with a key: %s", parml_last_error());
    if (len > 100) {
        unsigned char *b = buf;
        b[len / 2] ^= 0x20; /* a parameter bit */
        CHECK(parml_model_deserialize_authenticated(buf, len, key, strlen(key), &none) == PARML_ERR_FORMAT, "damage past the CRC");
        reseal(b, len);
        CHECK(parml_model_deserialize_authenticated(buf, len, key, strlen(key), &none) == PARML_ERR_AUTH_FAILED,
              "an altered file: %s", parml_last_error());
    }

    /* Checkpoints. */
    parml_trainer t = make_trainer(m, 1, 0), u = make_trainer(back ? back : m, 1, 0);
    run_steps(t, 0, 1);
    char ckpt[512];
    scratch_path(ckpt, sizeof ckpt, "signed.ckpt");
    OK(parml_trainer_save_checkpoint_authenticated(t, ckpt, key, strlen(key)));
    CHECK(parml_trainer_load_checkpoint(u, ckpt) == PARML_ERR_AUTH_KEY, "checkpoint without its key: %s", parml_last_error());
    OK(parml_trainer_load_checkpoint_authenticated(u, ckpt, key, strlen(key)));
    int64_t steps = 0;
    OK(parml_trainer_step_count(u, &steps));
    CHECK(steps == 1, "resumed at step %lld", (long long)steps);
    void *cb = NULL;
    size_t clen = 0;
    OK(parml_trainer_serialize_checkpoint_authenticated(t, key, strlen(key), &cb, &clen));
    OK(parml_trainer_deserialize_checkpoint_authenticated(u, cb, clen, key, strlen(key)));
    CHECK(parml_trainer_deserialize_checkpoint_authenticated(u, cb, clen, other, strlen(other)) == PARML_ERR_AUTH_KEY, "other key");

    parml_buffer_free(cb);
    parml_trainer_free(t);
    parml_trainer_free(u);
    remove(ckpt);
    free(file);
    parml_buffer_free(buf);
    parml_buffer_free(plain);
    free(y1);
    free(y2);
    remove(path);
    parml_model_free(m);
    parml_model_free(back);
}

/* A float32 rounded to bfloat16 (nearest even, subnormals to zero) and back:
 * the reference for bfloat16 model files, written from the format's text. */
static float bf16_reference(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7F800000u) == 0) b &= 0x80000000u;
    else b = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    float y;
    memcpy(&y, &b, 4);
    return y;
}

static void test_bfloat16_model_files(void) {
    static const char key[] = "c-test-key-0123456789abcdefghij";
    parml_model m = every_kind(6), back = NULL, none = NULL;
    parml_model_file_params fp;
    OK(parml_model_file_params_init(&fp));
    CHECK(fp.weights_dtype == PARML_DTYPE_FLOAT32 && fp.key == NULL && fp.key_len == 0, "defaults");

    /* NULL params and the defaults write parml_model_save's bytes. */
    void *plain = NULL, *dflt = NULL, *nul = NULL, *half = NULL;
    size_t plen = 0, dlen = 0, nlen = 0, hlen = 0;
    OK(parml_model_serialize(m, &plain, &plen));
    OK(parml_model_serialize_with(m, &fp, &dflt, &dlen));
    OK(parml_model_serialize_with(m, NULL, &nul, &nlen));
    CHECK(dlen == plen && nlen == plen && memcmp(plain, dflt, plen) == 0 && memcmp(plain, nul, plen) == 0, "defaults differ");

    /* bfloat16: half the parameter bytes, read back as the rounded values. */
    fp.weights_dtype = PARML_DTYPE_BFLOAT16;
    OK(parml_model_serialize_with(m, &fp, &half, &hlen));
    int64_t n = 0, nb = 0;
    float *p = params(m, &n);
    CHECK(hlen + (size_t)n * 2 == plen, "bf16 file %zu bytes, float32 %zu, %lld parameters", hlen, plen, (long long)n);
    OK(parml_model_deserialize(half, hlen, &back));
    float *pb = back ? params(back, &nb) : NULL;
    int same = pb && nb == n;
    for (int64_t i = 0; same && i < n; i++) same = bf16_reference(p[i]) == pb[i];
    CHECK(same, "loaded bf16 parameters are not the rounded float32 ones");
    /* Saving the loaded model again in bf16 is exact: the values are already bf16. */
    void *again = NULL;
    size_t alen = 0;
    if (back) OK(parml_model_serialize_with(back, &fp, &again, &alen));
    CHECK(again && alen == hlen && memcmp(again, half, hlen) == 0, "bf16 re-save differs");

    /* With a key, and to a file. */
    char path[512];
    scratch_path(path, sizeof path, "half.pb");
    fp.key = key;
    fp.key_len = strlen(key);
    OK(parml_model_save_with(m, path, &fp));
    CHECK(parml_model_load(path, &none) == PARML_ERR_AUTH_KEY, "a keyed bf16 file loaded without its key");
    parml_model keyed = NULL;
    OK(parml_model_load_authenticated(path, key, strlen(key), &keyed));
    int64_t nk = 0;
    float *pk = keyed ? params(keyed, &nk) : NULL;
    CHECK(pk && pb && nk == nb && memcmp(pk, pb, (size_t)nb * sizeof *pb) == 0, "keyed bf16 file loads other values");

    /* Misuse. */
    fp.weights_dtype = 2; /* INT32 */
    CHECK(parml_model_save_with(m, path, &fp) == PARML_ERR_INVALID_ARGUMENT && strstr(parml_last_error(), "weights_dtype"),
          "INT32 weights: %s", parml_last_error());
    fp.weights_dtype = PARML_DTYPE_BFLOAT16;
    fp.key_len = 8;
    CHECK(parml_model_save_with(m, path, &fp) == PARML_ERR_INVALID_ARGUMENT, "an 8-byte key: %s", parml_last_error());
    fp.key = NULL;
    CHECK(parml_model_save_with(m, path, &fp) == PARML_ERR_INVALID_ARGUMENT, "NULL key, key_len 8: %s", parml_last_error());
    fp.struct_size = 3;
    CHECK(parml_model_serialize_with(m, &fp, &again, &alen) == PARML_ERR_INVALID_ARGUMENT, "struct_size 3");
    CHECK(parml_model_file_params_init(NULL) == PARML_ERR_INVALID_ARGUMENT, "init(NULL)");
    CHECK(parml_model_save_with(NULL, path, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL model");

    free(p);
    free(pb);
    free(pk);
    parml_buffer_free(plain);
    parml_buffer_free(dflt);
    parml_buffer_free(nul);
    parml_buffer_free(half);
    parml_buffer_free(again);
    remove(path);
    parml_model_free(m);
    parml_model_free(back);
    parml_model_free(keyed);
}

int main(void) {
    test_model_round_trip();
    test_tensor_round_trip();
    test_checkpoint_resume();
    test_fit_continues_across_calls_and_checkpoints();
    test_files_written_by_0_2();
    test_authenticated_files();
    test_bfloat16_model_files();
    rmdir(scratch_dir());
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
