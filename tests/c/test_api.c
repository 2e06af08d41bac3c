/*
 * test_api.c — every exported function of libparml on good input, checked
 * against numbers computed here in C.
 *
 * Build: cc -std=c11 -I include test_api.c -L LIB -lparml -lm -Wl,-rpath,LIB
 * Prints "N passed, N failed" and exits nonzero on any failure.
 */
#include "test_common.h"
#include <stddef.h>

#include <cpuid.h>
#include <errno.h>
#include <pthread.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Version, status strings, last error                                       */
/* ------------------------------------------------------------------------ */

static void test_version_and_status(void) {
    CHECK(parml_version_number() == PARML_VERSION_NUMBER, "library %d, header %d", (int)parml_version_number(),
          PARML_VERSION_NUMBER);
    CHECK(PARML_VERSION_NUMBER == PARML_VERSION_MAJOR * 10000 + PARML_VERSION_MINOR * 100 + PARML_VERSION_PATCH, "macro");
    const char *vs = parml_version_string();
    CHECK(vs != NULL && strcmp(vs, PARML_VERSION_STRING) == 0, "library '%s', header '%s'", vs ? vs : "(null)",
          PARML_VERSION_STRING);

    static const struct {
        parml_status code;
        const char *name;
    } codes[] = {
        {PARML_OK, "PARML_OK"},
        {PARML_ERR_INVALID_ARGUMENT, "PARML_ERR_INVALID_ARGUMENT"},
        {PARML_ERR_SHAPE, "PARML_ERR_SHAPE"},
        {PARML_ERR_UNSUPPORTED, "PARML_ERR_UNSUPPORTED"},
        {PARML_ERR_OUT_OF_MEMORY, "PARML_ERR_OUT_OF_MEMORY"},
        {PARML_ERR_IO, "PARML_ERR_IO"},
        {PARML_ERR_FORMAT, "PARML_ERR_FORMAT"},
        {PARML_ERR_STATE, "PARML_ERR_STATE"},
        {PARML_ERR_BLAS, "PARML_ERR_BLAS"},
        {PARML_ERR_CANCELLED, "PARML_ERR_CANCELLED"},
        {PARML_ERR_INTERNAL, "PARML_ERR_INTERNAL"},
        {PARML_ERR_COMMUNICATION, "PARML_ERR_COMMUNICATION"},
        {PARML_ERR_NONFINITE, "PARML_ERR_NONFINITE"},
        {PARML_ERR_AUTH_MISSING, "PARML_ERR_AUTH_MISSING"},
        {PARML_ERR_AUTH_KEY, "PARML_ERR_AUTH_KEY"},
        {PARML_ERR_AUTH_FAILED, "PARML_ERR_AUTH_FAILED"},
    };
    const char *seen[sizeof codes / sizeof codes[0]];
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = parml_status_string(codes[i].code);
        seen[i] = s;
        CHECK(s != NULL && strncmp(s, codes[i].name, strlen(codes[i].name)) == 0, "status %d -> '%s', expected '%s...'",
              (int)codes[i].code, s ? s : "(null)", codes[i].name);
        /* The name must be followed by its end or a non-identifier character
           (PARML_ERR_SHAPE must not match a longer name). */
        if (s) {
            char next = s[strlen(codes[i].name)];
            CHECK(next == 0 || next == ':' || next == ' ', "status %d -> '%s'", (int)codes[i].code, s);
        }
        for (size_t j = 0; j < i; j++) CHECK(seen[j] != s && (s == NULL || strcmp(seen[j], s) != 0), "codes %zu and %zu share text", i, j);
    }
    const char *unknown[] = {parml_status_string(PARML_ERR_AUTH_FAILED + 1), parml_status_string(-1), parml_status_string(1000),
                             parml_status_string(INT32_MIN)};
    for (size_t i = 0; i < 4; i++)
        CHECK(unknown[i] != NULL && strcmp(unknown[i], "unknown status") == 0, "unknown code -> '%s'",
              unknown[i] ? unknown[i] : "(null)");

    /* parml_last_error is never NULL, and names the failing function. */
    CHECK(parml_last_error() != NULL, "last_error NULL");
    CHECK(parml_tensor_numel(NULL, NULL) == PARML_ERR_INVALID_ARGUMENT, "numel(NULL)");
    CHECK(strstr(parml_last_error(), "parml_tensor_numel") != NULL, "last_error '%s'", parml_last_error());
    /* A successful call does not clear it (documented: "last failed call"). */
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    CHECK(strstr(parml_last_error(), "parml_tensor_numel") != NULL, "last_error after success '%s'", parml_last_error());
}

/* parml_last_error is per thread: a new thread starts with "", and its
   failures do not change the message the main thread sees. */
struct thread_result {
    int empty_at_start;
    int names_own_failure;
};

static void *error_thread(void *arg) {
    struct thread_result *r = (struct thread_result *)arg;
    const char *e = parml_last_error();
    r->empty_at_start = e != NULL && e[0] == 0;
    (void)parml_model_num_params(NULL, NULL);
    r->names_own_failure = strstr(parml_last_error(), "parml_model_num_params") != NULL;
    return NULL;
}

static void test_last_error_per_thread(void) {
    (void)parml_dataset_size(NULL, NULL);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", parml_last_error());
    CHECK(strstr(mine, "parml_dataset_size") != NULL, "main thread error '%s'", mine);
    pthread_t th;
    struct thread_result r = {0, 0};
    CHECK(pthread_create(&th, NULL, error_thread, &r) == 0, "pthread_create");
    pthread_join(th, NULL);
    CHECK(r.empty_at_start, "a new thread's parml_last_error() is \"\"");
    CHECK(r.names_own_failure, "the thread sees its own failure");
    CHECK(strcmp(parml_last_error(), mine) == 0, "the main thread's message is unchanged: '%s'", parml_last_error());
}

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

static void test_tensors(void) {
    int64_t dims[3] = {2, 3, 4};
    float src[24];
    for (int i = 0; i < 24; i++) src[i] = (float)i * 0.37f - 3.0f + (i == 5 ? 1e-30f : 0.0f);
    src[7] = -0.0f;
    src[8] = 3.4028235e38f;
    src[9] = 1.17549435e-38f;

    parml_tensor t = NULL;
    OK(parml_tensor_create(dims, 3, src, &t));
    CHECK(t != NULL, "tensor handle");

    int64_t shp[8] = {0};
    ptrdiff_t nd = -1;
    OK(parml_tensor_shape(t, shp, 8, &nd));
    CHECK(nd == 3 && shp[0] == 2 && shp[1] == 3 && shp[2] == 4, "shape (%td: %lld %lld %lld)", nd, (long long)shp[0],
          (long long)shp[1], (long long)shp[2]);
    nd = -1;
    OK(parml_tensor_shape(t, NULL, 0, &nd)); /* rank only */
    CHECK(nd == 3, "rank only: %td", nd);
    int64_t exact[3] = {0};
    OK(parml_tensor_shape(t, exact, 3, &nd)); /* capacity == rank is enough */
    CHECK(exact[2] == 4, "exact capacity");

    int64_t numel = -1;
    OK(parml_tensor_numel(t, &numel));
    CHECK(numel == 24, "numel %lld", (long long)numel);

    float back[24];
    memset(back, 0xAB, sizeof back);
    OK(parml_tensor_read(t, back, 24));
    CHECK(memcmp(back, src, sizeof src) == 0, "read round-trips bit for bit");

    float *data = NULL;
    OK(parml_tensor_data(t, &data));
    CHECK(data != NULL && ((uintptr_t)data % 64) == 0, "data %p 64-byte aligned", (void *)data);
    if (data) {
        CHECK(memcmp(data, src, sizeof src) == 0, "data matches");
        data[3] = 42.5f; /* writing through the borrowed pointer changes the tensor */
        OK(parml_tensor_read(t, back, 24));
        CHECK(back[3] == 42.5f, "write through data: %g", back[3]);
    }

    float w[24];
    for (int i = 0; i < 24; i++) w[i] = -(float)i / 7.0f;
    OK(parml_tensor_write(t, w, 24));
    OK(parml_tensor_read(t, back, 24));
    CHECK(memcmp(back, w, sizeof w) == 0, "write then read");
    if (data) CHECK(data[10] == w[10], "data pointer sees the write");

    /* NULL data -> zeros; 8-D; zero-sized dimension. */
    int64_t d8[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    parml_tensor z = NULL;
    OK(parml_tensor_create(d8, 8, NULL, &z));
    float zb[16];
    memset(zb, 0xFF, sizeof zb);
    OK(parml_tensor_read(z, zb, 16));
    int allzero = 1;
    for (int i = 0; i < 16; i++) allzero &= (zb[i] == 0.0f && !signbit(zb[i]));
    CHECK(allzero, "NULL data gives +0.0");
    OK(parml_tensor_shape(z, shp, 8, &nd));
    CHECK(nd == 8 && shp[7] == 2, "8-D shape");

    int64_t d0[2] = {0, 5};
    parml_tensor e = NULL;
    OK(parml_tensor_create(d0, 2, NULL, &e));
    OK(parml_tensor_numel(e, &numel));
    CHECK(numel == 0, "empty numel %lld", (long long)numel);
    float dummy = 9.0f;
    OK(parml_tensor_read(e, &dummy, 0));
    CHECK(dummy == 9.0f, "reading 0 floats writes nothing");

    int64_t d1[1] = {5};
    parml_tensor one = NULL;
    OK(parml_tensor_create(d1, 1, src, &one));
    OK(parml_tensor_read(one, back, 5));
    CHECK(memcmp(back, src, 5 * sizeof(float)) == 0, "1-D");

    parml_tensor_free(t);
    parml_tensor_free(t); /* documented: a handle already freed is a no-op */
    parml_tensor_free(z);
    parml_tensor_free(e);
    parml_tensor_free(one);
    CHECK(parml_tensor_numel(t, &numel) == PARML_ERR_INVALID_ARGUMENT, "freed handle is rejected");
}

/* A freed handle stays dead: the allocator hands the freed model's memory to
 * the next model at once, and before handles were numbers that were never
 * reused, the old handle then answered for the new model. */
static void test_freed_handle_never_aliases(void) {
    parml_model old = NULL;
    OK(parml_model_create(&old));
    OK(parml_model_add_linear(old, 2, 3, 1));
    parml_model_free(old);
    enum { CREATES = 200000 };
    int same = 0, wrong = 0;
    for (int i = 0; i < CREATES; i++) {
        parml_model m = NULL;
        if (parml_model_create(&m) != PARML_OK) {
            wrong++;
            break;
        }
        if (m == old) same++;
        if (i % 1000 == 0 || i == CREATES - 1) {
            /* The newest model has a parameter the old one never had. */
            (void)parml_model_add_linear(m, 5, 7, 1);
            int64_t count = -1;
            if (parml_model_num_params(old, &count) != PARML_ERR_INVALID_ARGUMENT || count != -1) wrong++;
        }
        parml_model_free(m);
    }
    CHECK(same == 0, "%d of %d new models got the freed model's handle", same, CREATES);
    CHECK(wrong == 0, "the freed handle answered %d times instead of PARML_ERR_INVALID_ARGUMENT", wrong);
    CHECK(strstr(parml_last_error(), "not a live parml handle") != NULL, "message: %s", parml_last_error());
}

/* ------------------------------------------------------------------------ */
/* Parameter-struct defaults                                                 */
/* ------------------------------------------------------------------------ */

static void test_param_defaults(void) {
    parml_optimizer_params o;
    memset(&o, 0x5A, sizeof o);
    OK(parml_optimizer_params_init(&o));
    CHECK(o.struct_size == sizeof o, "optimizer struct_size %zu vs %zu", o.struct_size, sizeof o);
    CHECK(o.kind == PARML_OPTIMIZER_SGD, "kind %d", (int)o.kind);
    CHECK(o.learning_rate == 0.01f, "lr %g", o.learning_rate);
    CHECK(o.momentum == 0.0f && o.nesterov == 0 && o.weight_decay == 0.0f, "momentum/nesterov/decay");
    CHECK(o.beta1 == 0.9f && o.beta2 == 0.999f && o.epsilon == 1e-8f, "betas %g %g eps %g", o.beta1, o.beta2, o.epsilon);
    CHECK(o.schedule == PARML_SCHEDULE_CONSTANT, "schedule %d", (int)o.schedule);
    CHECK(o.warmup_steps == 0 && o.step_size == 1 && o.gamma == 0.1f, "warmup/step_size/gamma");
    CHECK(o.total_steps == 0 && o.min_lr == 0.0f && o.clip_grad_norm == 0.0f, "total/min/clip");

    parml_strategy_params s;
    memset(&s, 0x5A, sizeof s);
    OK(parml_strategy_params_init(&s));
    CHECK(s.struct_size == sizeof s, "strategy struct_size %zu vs %zu", s.struct_size, sizeof s);
    CHECK(s.dp == 1 && s.tp == 1 && s.pp == 1, "dp %d tp %d pp %d", (int)s.dp, (int)s.tp, (int)s.pp);
    CHECK(s.micro_batches == 1 && s.pipeline_schedule == PARML_PIPELINE_1F1B, "micro %d sched %d", (int)s.micro_batches,
          (int)s.pipeline_schedule);
    CHECK(s.zero_stage == 0 && s.backend == PARML_BACKEND_THREADS && s.deterministic == 0, "zero/backend/det");
    CHECK(s.blas_threads == 0 && s.seed == 0, "blas_threads %d seed %llu", (int)s.blas_threads,
          (unsigned long long)s.seed);
    CHECK(s.bucket_bytes == 4 << 20 && s.watchdog_seconds == 60.0 && s.grad_chunk == 32, "bucket %lld watchdog %g chunk %d",
          (long long)s.bucket_bytes, s.watchdog_seconds, (int)s.grad_chunk);
    CHECK(s.split_classifier == 0, "split_classifier %lld", (long long)s.split_classifier);
    CHECK(s.virtual_stages == 1, "virtual_stages %lld", (long long)s.virtual_stages);

    parml_fit_params f;
    memset(&f, 0x5A, sizeof f);
    OK(parml_fit_params_init(&f));
    CHECK(f.struct_size == sizeof f, "fit struct_size %zu vs %zu", f.struct_size, sizeof f);
    CHECK(f.epochs == 1 && f.batch_size == 64 && f.shuffle == 1 && f.drop_last == 0, "fit defaults");
    CHECK(f.validation == NULL && f.progress == NULL && f.user_data == NULL, "fit pointers NULL");
}

/* ------------------------------------------------------------------------ */
/* Models: every layer kind, nested residual blocks                          */
/* ------------------------------------------------------------------------ */

/*
 * Input (N, 3, 4):
 *   flatten                          -> (N, 12)
 *   linear 12->16 (bias)             208
 *   layer_norm 16                     32
 *   relu
 *   residual {
 *     linear 16->16 (bias)           272
 *     gelu
 *     residual {
 *       linear 16->16 (no bias)      256
 *       tanh
 *       dropout 0.1
 *     }
 *     layer_norm 16                   32
 *   }
 *   sigmoid
 *   dropout 0.2
 *   linear 16->3 (bias)               51
 * total                              851
 */
#define FULL_PARAMS 851

static parml_model build_full_model(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_flatten(m));
    OK(parml_model_add_linear(m, 12, 16, 1));
    OK(parml_model_add_layer_norm(m, 16, 1e-5f));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_linear(m, 16, 16, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_GELU));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_linear(m, 16, 16, 0));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_TANH));
    OK(parml_model_add_dropout(m, 0.1f));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_layer_norm(m, 16, 1e-5f));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_SIGMOID));
    OK(parml_model_add_dropout(m, 0.2f));
    OK(parml_model_add_linear(m, 16, 3, 1));
    return m;
}

/* build_full_model through parml_model_add_layer by kind name. */
static parml_model build_full_model_by_name(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    parml_attribute lin12[] = {{.name = "in_features", .type = PARML_ATTR_INT, .int_value = 12},
                               {.name = "out_features", .type = PARML_ATTR_INT, .int_value = 16}};
    parml_attribute lin16[] = {{.name = "out_features", .type = PARML_ATTR_INT, .int_value = 16},
                               {.name = "in_features", .type = PARML_ATTR_INT, .int_value = 16},
                               {.name = "bias", .type = PARML_ATTR_BOOL, .int_value = 1}};
    parml_attribute lin16_nobias[] = {{.name = "in_features", .type = PARML_ATTR_INT, .int_value = 16},
                                      {.name = "out_features", .type = PARML_ATTR_INT, .int_value = 16},
                                      {.name = "bias", .type = PARML_ATTR_BOOL, .int_value = 0}};
    parml_attribute lin3[] = {{.name = "in_features", .type = PARML_ATTR_INT, .int_value = 16},
                              {.name = "out_features", .type = PARML_ATTR_INT, .int_value = 3}};
    parml_attribute norm[] = {{.name = "features", .type = PARML_ATTR_INT, .int_value = 16}}; /* eps: its default */
    parml_attribute drop1[] = {{.name = "p", .type = PARML_ATTR_FLOAT, .float_value = 0.1}};
    parml_attribute drop2[] = {{.name = "p", .type = PARML_ATTR_FLOAT, .float_value = 0.2}};
    OK(parml_model_add_layer(m, "flatten", NULL, 0));
    OK(parml_model_add_layer(m, "linear", lin12, 2));
    OK(parml_model_add_layer(m, "layer_norm", norm, 1));
    OK(parml_model_add_layer(m, "relu", NULL, 0));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_layer(m, "linear", lin16, 3));
    OK(parml_model_add_layer(m, "gelu", NULL, 0));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_layer(m, "linear", lin16_nobias, 3));
    OK(parml_model_add_layer(m, "tanh", NULL, 0));
    OK(parml_model_add_layer(m, "dropout", drop1, 1));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_layer(m, "layer_norm", norm, 1));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_layer(m, "sigmoid", NULL, 0));
    OK(parml_model_add_layer(m, "dropout", drop2, 1));
    OK(parml_model_add_layer(m, "linear", lin3, 2));
    return m;
}

/* The generic path builds what the typed functions build (they are
   shorthands for it), and the kinds query describes every kind. */
static void test_layers_by_kind_name(void) {
    parml_model typed = build_full_model(), named = build_full_model_by_name();
    OK(parml_model_init(typed, 77));
    OK(parml_model_init(named, 77));
    static float a[FULL_PARAMS], b[FULL_PARAMS];
    OK(parml_model_get_params(typed, a, FULL_PARAMS));
    OK(parml_model_get_params(named, b, FULL_PARAMS));
    CHECK(memcmp(a, b, sizeof a) == 0, "add_layer by name builds the typed model's parameters bit for bit");
    char *s1 = NULL, *s2 = NULL;
    OK(parml_model_summary(typed, &s1));
    OK(parml_model_summary(named, &s2));
    CHECK(s1 && s2 && strcmp(s1, s2) == 0, "same summary:\n%s\n---\n%s", s1 ? s1 : "", s2 ? s2 : "");
    CHECK(s1 && strstr(s1, "linear in_features=12 out_features=16 bias=true") && strstr(s1, "dropout p=0.1") &&
              strstr(s1, "layer_norm features=16 eps=1e-05"),
          "the summary lists each layer's attributes:\n%s", s1 ? s1 : "");
    parml_buffer_free(s1);
    parml_buffer_free(s2);
    parml_model_free(typed);
    parml_model_free(named);

    int64_t count = 0;
    OK(parml_layer_kind_count(&count));
    const char *want[] = {"linear", "relu", "gelu", "tanh", "sigmoid", "layer_norm", "dropout", "flatten"};
    int found = 0, linear = -1, norm = -1;
    for (int64_t i = 0; i < count; i++) {
        const char *name = NULL, *cls = NULL, *doc = NULL;
        int64_t n = -1;
        int32_t input = 0;
        OK(parml_layer_kind_info(i, &name, &cls, &doc, &n, &input));
        CHECK(input == PARML_LAYER_INPUT_VALUES || input == PARML_LAYER_INPUT_TOKEN_IDS, "kind %lld input %d", (long long)i, input);
        CHECK(name && cls && doc && strlen(doc) > 5 && n >= 0, "kind %lld is described", (long long)i);
        if (!name) continue;
        for (size_t k = 0; k < sizeof want / sizeof *want; k++) found += strcmp(name, want[k]) == 0;
        if (strcmp(name, "linear") == 0) {
            linear = (int)i;
            CHECK(strcmp(cls, "Linear") == 0 && n == 3, "linear: class Linear, 3 attributes (%s, %lld)", cls, (long long)n);
        }
        if (strcmp(name, "layer_norm") == 0) norm = (int)i;
        if (strcmp(name, "embedding") == 0) CHECK(input == PARML_LAYER_INPUT_TOKEN_IDS, "embedding reads token ids");
        if (strcmp(name, "linear") == 0) CHECK(input == PARML_LAYER_INPUT_VALUES, "linear reads values");
        const char *requires = "unset";
        OK(parml_layer_kind_requires(i, &requires));
        if (strcmp(name, "tied_classifier") == 0) {
            CHECK(requires && strcmp(requires, "embedding") == 0, "tied_classifier requires an embedding (%s)", requires ? requires : "NULL");
        } else {
            CHECK(requires == NULL, "%s requires no other kind (%s)", name, requires ? requires : "NULL");
        }
    }
    CHECK(found == 8, "the query lists the eight kinds of 0.2 (found %d of %lld)", found, (long long)count);
    if (linear >= 0) {
        const char *expect[] = {"in_features", "out_features", "bias"};
        for (int j = 0; j < 3; j++) {
            const char *name = NULL, *def = (const char *)1, *rule = NULL, *doc = NULL;
            int32_t type = 0;
            OK(parml_layer_kind_attribute(linear, j, &name, &type, &def, &rule, &doc));
            CHECK(name && strcmp(name, expect[j]) == 0, "linear attribute %d is %s (got %s)", j, expect[j], name ? name : "NULL");
            if (j < 2) {
                CHECK(type == PARML_ATTR_INT && def == NULL && rule && strstr(rule, "2^31"), "%s: a required int size", expect[j]);
            } else {
                CHECK(type == PARML_ATTR_BOOL && def && strcmp(def, "true") == 0 && rule == NULL, "bias: a bool, default true");
            }
        }
    }
    if (norm >= 0) {
        const char *name = NULL, *def = NULL;
        int32_t type = 0;
        OK(parml_layer_kind_attribute(norm, 1, &name, &type, &def, NULL, NULL));
        CHECK(name && strcmp(name, "eps") == 0 && type == PARML_ATTR_FLOAT && def && (float)strtod(def, NULL) == 1e-5f,
              "layer_norm eps: float, default 1e-5 (%s)", def ? def : "NULL");
    }
}

/* Typed tensors: int32/int64 keep their values and dtype through the API
   and tensor files; float calls refuse them; int labels train as float ones. */
static void test_integer_tensors(void) {
    int64_t dims[1] = {4};
    int64_t big[4] = {0, 1, (int64_t)1 << 40, -7};
    parml_tensor t = NULL, back = NULL;
    OK(parml_tensor_create_typed(PARML_DTYPE_INT64, dims, 1, big, &t));
    int32_t dt = 0;
    OK(parml_tensor_dtype(t, &dt));
    CHECK(dt == PARML_DTYPE_INT64, "dtype int64 (%d)", dt);
    void *raw = NULL;
    int64_t nbytes = 0;
    OK(parml_tensor_bytes(t, &raw, &nbytes));
    CHECK(nbytes == 32 && raw && memcmp(raw, big, 32) == 0, "int64 values as given (%lld bytes)", (long long)nbytes);
    float f[4];
    CHECK(parml_tensor_read(t, f, 4) == PARML_ERR_INVALID_ARGUMENT, "parml_tensor_read refuses an int64 tensor");
    CHECK(strstr(parml_last_error(), "int64") != NULL, "the message names the dtype: %s", parml_last_error());
    void *buf = NULL;
    size_t len = 0;
    OK(parml_tensor_serialize(t, &buf, &len));
    OK(parml_tensor_deserialize(buf, len, &back));
    OK(parml_tensor_dtype(back, &dt));
    OK(parml_tensor_bytes(back, &raw, &nbytes));
    CHECK(dt == PARML_DTYPE_INT64 && nbytes == 32 && memcmp(raw, big, 32) == 0, "a tensor file keeps int64 values and dtype");
    parml_buffer_free(buf);
    parml_tensor_free(t);
    parml_tensor_free(back);

    /* int32 labels and float labels: the same training, bit for bit. */
    enum { N = 24 };
    float x[N * 3], yf[N], pf[68], pi[68];
    int32_t yi[N];
    for (int i = 0; i < N * 3; i++) x[i] = sinf((float)i * 0.7f);
    for (int i = 0; i < N; i++) yi[i] = i % 4, yf[i] = (float)(i % 4);
    int64_t xd[2] = {N, 3}, yd[1] = {N};
    float losses[2][3];
    for (int run = 0; run < 2; run++) {
        parml_model m = NULL;
        OK(parml_model_create(&m));
        OK(parml_model_add_linear(m, 3, 8, 1));
        OK(parml_model_add_activation(m, PARML_ACTIVATION_TANH));
        OK(parml_model_add_linear(m, 8, 4, 1));
        OK(parml_model_init(m, 3));
        parml_trainer tr = NULL;
        OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, NULL, &tr));
        parml_tensor xt = NULL, yt = NULL;
        OK(parml_tensor_create(xd, 2, x, &xt));
        if (run == 0) OK(parml_tensor_create(yd, 1, yf, &yt));
        else OK(parml_tensor_create_typed(PARML_DTYPE_INT32, yd, 1, yi, &yt));
        for (int s = 0; s < 3; s++) OK(parml_trainer_step(tr, xt, yt, &losses[run][s]));
        int64_t n = 0;
        OK(parml_model_num_params(m, &n));
        OK(parml_model_get_params(m, run == 0 ? pf : pi, (size_t)n));
        parml_tensor_free(xt);
        parml_tensor_free(yt);
        parml_trainer_free(tr);
        parml_model_free(m);
    }
    CHECK(memcmp(losses[0], losses[1], sizeof losses[0]) == 0 && memcmp(pf, pi, 68 * sizeof(float)) == 0,
          "int32 labels train bit-identically to float labels");
}

/* Greedy generation is the arg-max of predict's last position, token by
   token; a seed fixes a sampled sequence. */
static void test_generate(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    parml_attribute emb[] = {{.name = "num_embeddings", .type = PARML_ATTR_INT, .int_value = 7},
                             {.name = "embedding_dim", .type = PARML_ATTR_INT, .int_value = 5}};
    parml_attribute pos[] = {{.name = "max_positions", .type = PARML_ATTR_INT, .int_value = 4},
                             {.name = "embedding_dim", .type = PARML_ATTR_INT, .int_value = 5}};
    OK(parml_model_add_layer(m, "embedding", emb, 2));
    OK(parml_model_add_layer(m, "position_embedding", pos, 2));
    OK(parml_model_add_linear(m, 5, 7, 1));
    OK(parml_model_init(m, 8));
    int64_t prompt[2] = {2, 5}, out[6] = {0}, again[6] = {0};
    OK(parml_model_generate(m, prompt, 2, 6, 0.0f, 0, 0, out));
    /* The same by hand: predict on the latest <= 4 tokens, take the arg-max. */
    float ctx[10];
    int n = 2, ok = 1;
    ctx[0] = 2, ctx[1] = 5;
    for (int k = 0; k < 6; k++) {
        int start = n > 4 ? n - 4 : 0, len = n - start;
        int64_t dims[2] = {1, len};
        parml_tensor x = NULL, y = NULL;
        OK(parml_tensor_create(dims, 2, ctx + start, &x));
        OK(parml_model_predict(m, x, &y));
        float logits[4 * 7];
        OK(parml_tensor_read(y, logits, (size_t)len * 7));
        const float *last = logits + (len - 1) * 7;
        int best = 0;
        for (int v = 1; v < 7; v++)
            if (last[v] > last[best]) best = v;
        ok &= out[k] == best;
        ctx[n++] = (float)best;
        parml_tensor_free(x);
        parml_tensor_free(y);
    }
    CHECK(ok, "greedy generation is predict's arg-max step by step");
    OK(parml_model_generate(m, prompt, 2, 6, 1.5f, 3, 42, out));
    OK(parml_model_generate(m, prompt, 2, 6, 1.5f, 3, 42, again));
    CHECK(memcmp(out, again, sizeof out) == 0, "a seed gives one sampled sequence");
    int in_range = 1;
    for (int k = 0; k < 6; k++) in_range &= out[k] >= 0 && out[k] < 7;
    CHECK(in_range, "sampled ids are in the vocabulary");
    parml_model_free(m);
}

static void test_full_model(void) {
    parml_model m = build_full_model();

    int64_t count = -1;
    OK(parml_model_num_params(m, &count)); /* also before init */
    CHECK(count == FULL_PARAMS, "num_params before init %lld, expected %d", (long long)count, FULL_PARAMS);

    int64_t in[3] = {5, 3, 4}, out[8] = {0};
    ptrdiff_t nd = -1;
    OK(parml_model_output_shape(m, in, 3, out, 8, &nd));
    CHECK(nd == 2 && out[0] == 5 && out[1] == 3, "output shape (%td: %lld, %lld)", nd, (long long)out[0],
          (long long)out[1]);
    nd = -1;
    OK(parml_model_output_shape(m, in, 3, NULL, 0, &nd));
    CHECK(nd == 2, "output rank only %td", nd);

    OK(parml_model_init(m, 1234));
    OK(parml_model_num_params(m, &count));
    CHECK(count == FULL_PARAMS, "num_params after init %lld", (long long)count);

    float *a = (float *)malloc(FULL_PARAMS * sizeof(float));
    float *b = (float *)malloc(FULL_PARAMS * sizeof(float));
    float *c = (float *)malloc(FULL_PARAMS * sizeof(float));
    OK(parml_model_get_params(m, a, FULL_PARAMS));

    /* Layout: linear(12->16) weight [0,192) in U(-1/sqrt(12), 1/sqrt(12)), bias [192,208);
       layer_norm weight [208,224) = 1, bias [224,240) = 0; then the residual block. */
    double bound12 = 1.0 / sqrt(12.0), bound16 = 0.25;
    int in_bounds = 1, varied = 0;
    for (int i = 0; i < 208; i++) {
        in_bounds &= fabs(a[i]) <= bound12 + 1e-7;
        varied |= a[i] != a[0];
    }
    CHECK(in_bounds && varied, "first linear drawn from U(-1/sqrt(12), 1/sqrt(12))");
    int ln_ok = 1;
    for (int i = 208; i < 224; i++) ln_ok &= a[i] == 1.0f;
    for (int i = 224; i < 240; i++) ln_ok &= a[i] == 0.0f;
    CHECK(ln_ok, "layer_norm initialised to weight 1, bias 0");
    int last_ok = 1;
    for (int i = FULL_PARAMS - 51; i < FULL_PARAMS; i++) last_ok &= fabs(a[i]) <= bound16 + 1e-7;
    CHECK(last_ok, "last linear in U(-1/4, 1/4)");

    /* Same seed -> identical parameters (bitwise), different seed -> different. */
    OK(parml_model_init(m, 1234));
    OK(parml_model_get_params(m, b, FULL_PARAMS));
    CHECK(memcmp(a, b, FULL_PARAMS * sizeof(float)) == 0, "re-init with the same seed is bitwise identical");
    parml_model m2 = build_full_model();
    OK(parml_model_init(m2, 1234));
    OK(parml_model_get_params(m2, c, FULL_PARAMS));
    CHECK(memcmp(a, c, FULL_PARAMS * sizeof(float)) == 0, "another model with the same seed is identical");
    OK(parml_model_init(m2, 1235));
    OK(parml_model_get_params(m2, c, FULL_PARAMS));
    int differ = 0;
    for (int i = 0; i < 208; i++) differ += a[i] != c[i];
    CHECK(differ > 150, "a different seed changes the draws (%d of 208 differ)", differ);

    /* set_params / get_params round trip. */
    for (int i = 0; i < FULL_PARAMS; i++) c[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    OK(parml_model_set_params(m2, c, FULL_PARAMS));
    OK(parml_model_get_params(m2, b, FULL_PARAMS));
    CHECK(memcmp(b, c, FULL_PARAMS * sizeof(float)) == 0, "set/get round trip");

    /* Summary. */
    char *text = NULL;
    OK(parml_model_summary(m, &text));
    CHECK(text != NULL && strstr(text, "linear") != NULL, "summary: %s", text ? text : "(null)");
    if (text) {
        CHECK(strstr(text, "layer_norm") && strstr(text, "residual") && strstr(text, "dropout") &&
                  strstr(text, "gelu") && strstr(text, "flatten"),
              "summary names every kind:\n%s", text);
        CHECK(strstr(text, "851") != NULL, "summary states the total:\n%s", text);
    }
    parml_buffer_free(text);

    /* Predict: inference mode (dropout off) is deterministic and the output has the right shape. */
    int64_t xd[3] = {5, 3, 4};
    float x[60];
    for (int i = 0; i < 60; i++) x[i] = sinf((float)i);
    parml_tensor xt = NULL, y1 = NULL, y2 = NULL;
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_model_predict(m, xt, &y1));
    OK(parml_model_predict(m, xt, &y2));
    int64_t yd[8];
    OK(parml_tensor_shape(y1, yd, 8, &nd));
    CHECK(nd == 2 && yd[0] == 5 && yd[1] == 3, "predict shape");
    float o1[15], o2[15];
    OK(parml_tensor_read(y1, o1, 15));
    OK(parml_tensor_read(y2, o2, 15));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "predict is deterministic (dropout off)");
    int finite = 1;
    for (int i = 0; i < 15; i++) finite &= isfinite(o1[i]);
    CHECK(finite, "predict output finite");

    parml_tensor_free(xt);
    parml_tensor_free(y1);
    parml_tensor_free(y2);
    parml_model_free(m);
    parml_model_free(m2);
    free(a);
    free(b);
    free(c);
}

/* Linear-only model: predict against y = (x W1^T + b1) W2^T computed here. */
static void test_predict_by_hand(void) {
    enum { N = 4, I = 5, H = 3, O = 2 };
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, I, H, 1));
    OK(parml_model_add_linear(m, H, O, 0));
    int64_t count = 0;
    OK(parml_model_num_params(m, &count));
    CHECK(count == H * I + H + O * H, "count %lld", (long long)count);
    OK(parml_model_init(m, 7));
    float p[H * I + H + O * H];
    OK(parml_model_get_params(m, p, (ptrdiff_t)count));
    const float *W1 = p, *b1 = p + H * I, *W2 = p + H * I + H;

    float x[N * I];
    for (int i = 0; i < N * I; i++) x[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    int64_t xd[2] = {N, I};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 2, x, &xt));
    OK(parml_model_predict(m, xt, &yt));
    float y[N * O];
    OK(parml_tensor_read(yt, y, N * O));
    int good = 1;
    for (int n = 0; n < N; n++) {
        double h[H];
        for (int j = 0; j < H; j++) {
            double s = b1[j];
            for (int k = 0; k < I; k++) s += (double)x[n * I + k] * W1[j * I + k];
            h[j] = s;
        }
        for (int o = 0; o < O; o++) {
            double s = 0;
            for (int j = 0; j < H; j++) s += h[j] * W2[o * H + j];
            if (!close_rel(y[n * O + o], s, 1e-5)) {
                good = 0;
                fprintf(stderr, "  predict[%d,%d] = %.9g, by hand %.9g\n", n, o, y[n * O + o], s);
            }
        }
    }
    CHECK(good, "Linear-only prediction equals the hand computation (rel 1e-5)");

    /* After set_params, predict follows the new parameters. */
    float q[H * I + H + O * H];
    memset(q, 0, sizeof q);
    for (int j = 0; j < H; j++) q[H * I + j] = (float)(j + 1); /* b1 = 1,2,3 */
    for (int j = 0; j < H; j++) q[H * I + H + j] = 1.0f;       /* W2 row 0 = 1,1,1 -> 6 */
    OK(parml_model_set_params(m, q, (ptrdiff_t)count));
    parml_tensor_free(yt);
    yt = NULL;
    OK(parml_model_predict(m, xt, &yt));
    OK(parml_tensor_read(yt, y, N * O));
    CHECK(y[0] == 6.0f && y[1] == 0.0f && y[6] == 6.0f && y[7] == 0.0f, "predict after set_params: %g %g", y[0], y[1]);

    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* Datasets                                                                  */
/* ------------------------------------------------------------------------ */

static void test_dataset_create(void) {
    int64_t xd[3] = {6, 2, 2}, yd[1] = {6};
    float x[24] = {0}, y[6] = {0, 1, 2, 4, 1, 0};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    /* The dataset holds copies: freeing or changing the tensors does not affect it. */
    float big[6] = {9, 9, 9, 9, 9, 9};
    OK(parml_tensor_write(yt, big, 6));
    parml_tensor_free(xt);
    parml_tensor_free(yt);

    int64_t n = -1, k = -1;
    OK(parml_dataset_size(d, &n));
    CHECK(n == 6, "size %lld", (long long)n);
    OK(parml_dataset_num_classes(d, &k));
    CHECK(k == 5, "num_classes %lld (largest label 4 + 1)", (long long)k);
    int64_t s[8];
    ptrdiff_t nd = -1;
    OK(parml_dataset_input_shape(d, s, 8, &nd));
    CHECK(nd == 3 && s[0] == 6 && s[1] == 2 && s[2] == 2, "input shape");
    nd = -1;
    OK(parml_dataset_input_shape(d, NULL, 0, &nd));
    CHECK(nd == 3, "input rank only");
    parml_dataset_free(d);

    /* Regression targets (N, 2): not class indices -> 0 classes. */
    int64_t rd[2] = {6, 2};
    float r[12] = {0.5f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_tensor_create(rd, 2, r, &yt));
    OK(parml_dataset_create(xt, yt, &d));
    OK(parml_dataset_num_classes(d, &k));
    CHECK(k == 0, "regression targets -> %lld classes", (long long)k);
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* IDX files written here; the loaded data is checked through a model whose
   parameters are chosen so that the loss is a known function of the pixels. */
static void test_dataset_idx(void) {
    enum { N = 5, R = 2, C = 3 };
    unsigned char pix[N * R * C];
    for (int i = 0; i < N * R * C; i++) pix[i] = (unsigned char)((i * 53) % 256);
    pix[0] = 255;
    pix[1] = 0;
    unsigned char lab[N] = {0, 2, 1, 2, 0};
    uint32_t idims[3] = {N, R, C};
    char ipath[512], lpath[512];
    scratch_path(ipath, sizeof ipath, "api-images.idx");
    scratch_path(lpath, sizeof lpath, "api-labels.idx");
    CHECK(write_idx_u8(ipath, idims, 3, pix, sizeof pix) == 0, "write %s", ipath);
    /* labels: magic 0x00000801 */
    unsigned char lbuf[8 + N];
    put_be32(lbuf, 0x00000801);
    put_be32(lbuf + 4, N);
    memcpy(lbuf + 8, lab, N);
    CHECK(write_file(lpath, lbuf, sizeof lbuf) == 0, "write %s", lpath);

    parml_dataset d = NULL;
    OK(parml_dataset_load_idx(ipath, lpath, &d));
    int64_t n = -1, k = -1;
    OK(parml_dataset_size(d, &n));
    CHECK(n == N, "idx size %lld", (long long)n);
    OK(parml_dataset_num_classes(d, &k));
    CHECK(k == 3, "idx classes %lld", (long long)k);
    int64_t s[4];
    ptrdiff_t nd = -1;
    OK(parml_dataset_input_shape(d, s, 4, &nd));
    CHECK(nd == 3 && s[0] == N && s[1] == R && s[2] == C, "idx input shape (%td: %lld %lld %lld)", nd,
          (long long)s[0], (long long)s[1], (long long)s[2]);

    /* flatten -> linear(6 -> 3) with W[c][p] = 1 if p == c else 0, b = 0:
       logits of sample i are its first three pixels / 255. */
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_flatten(m));
    OK(parml_model_add_linear(m, R * C, 3, 1));
    OK(parml_model_init(m, 0));
    float p[3 * R * C + 3];
    memset(p, 0, sizeof p);
    for (int c = 0; c < 3; c++) p[c * R * C + c] = 1.0f;
    OK(parml_model_set_params(m, p, 3 * R * C + 3));
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, NULL, &tr));
    float loss = -1, acc = -1;
    OK(parml_trainer_evaluate(tr, d, 2, &loss, &acc)); /* batch 2: 3 batches, the last partial */
    double expect = 0;
    int correct = 0;
    for (int i = 0; i < N; i++) {
        double z[3], mx = -1e30, sum = 0;
        int arg = 0;
        for (int c = 0; c < 3; c++) {
            z[c] = pix[i * R * C + c] / 255.0;
            if (z[c] > mx) {
                mx = z[c];
                arg = c;
            }
        }
        for (int c = 0; c < 3; c++) sum += exp(z[c] - mx);
        expect += -(z[lab[i]] - mx - log(sum));
        correct += arg == lab[i];
    }
    expect /= N;
    CHECK(close_rel(loss, expect, 1e-5), "idx evaluate loss %.8g, by hand %.8g (pixels scaled by 1/255)", loss, expect);
    CHECK(fabsf(acc - (float)correct / N) < 1e-6f, "idx accuracy %g, by hand %g", acc, (double)correct / N);
    float loss_null = -1;
    OK(parml_trainer_evaluate(tr, d, 100, &loss_null, NULL)); /* accuracy_out may be NULL; batch > N */
    CHECK(close_rel(loss_null, expect, 1e-5), "evaluate batch 100: %g", loss_null);
    OK(parml_trainer_evaluate(tr, d, 1, NULL, NULL));

    /* The same files gzipped (the loader reads both). gzip is required
       (Debian package gzip, Essential; tools/install-deps.sh lists it). */
    char cmd[2200];
    int have_gzip = system("command -v gzip >/dev/null 2>&1") == 0;
    CHECK(have_gzip, "gzip not found: install Debian's gzip package (tools/install-deps.sh); the gzipped IDX case needs it");
    snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s.gz' && gzip -c '%s' > '%s.gz'", ipath, ipath, lpath, lpath);
    if (have_gzip) {
        CHECK(system(cmd) == 0, "gzip -c of the IDX files failed");
        char igz[520], lgz[520];
        snprintf(igz, sizeof igz, "%s.gz", ipath);
        snprintf(lgz, sizeof lgz, "%s.gz", lpath);
        parml_dataset g = NULL;
        OK(parml_dataset_load_idx(igz, lgz, &g));
        float gloss = -1, gacc = -1;
        OK(parml_trainer_evaluate(tr, g, 2, &gloss, &gacc));
        CHECK(gloss == loss && gacc == acc, "gzipped IDX gives the same data: loss %g vs %g", gloss, loss);
        parml_dataset_free(g);
        remove(igz);
        remove(lgz);
    }

    /* Linux paths are bytes: a file whose name is not valid UTF-8 (Latin-1
       "caf\xe9") must load like any other. */
    char latin[600];
    snprintf(latin, sizeof latin, "%s/images-caf\xe9.idx", scratch_dir());
    int renamed = rename(ipath, latin) == 0;
    /* Linux file systems (ext4, tmpfs, xfs, btrfs) take any bytes but '/' and NUL. */
    CHECK(renamed, "rename to a name that is not valid UTF-8 failed in %s: %s", scratch_dir(), strerror(errno));
    if (renamed) {
        parml_dataset l = NULL;
        parml_status st = parml_dataset_load_idx(latin, lpath, &l);
        CHECK(st == PARML_OK, "load_idx of a path that is not valid UTF-8 returned %d: %s", (int)st,
              st ? parml_last_error() : "");
        parml_dataset_free(l);
        rename(latin, ipath);
    }

    parml_trainer_free(tr);
    parml_model_free(m);
    parml_dataset_free(d);
    remove(ipath);
    remove(lpath);
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */
/* ------------------------------------------------------------------------ */

/* A separable 2-class problem: class = (x0 + 0.5*x1 > 0). */
enum { TOY_N = 64, TOY_D = 2 };
static void toy_data(float *x, float *y) {
    uint32_t s = 12345;
    for (int i = 0; i < TOY_N; i++) {
        for (int j = 0; j < TOY_D; j++) {
            s = s * 1664525u + 1013904223u;
            x[i * TOY_D + j] = (float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
        }
        float v = x[i * TOY_D] + 0.5f * x[i * TOY_D + 1];
        if (fabsf(v) < 0.1f) x[i * TOY_D] += v >= 0 ? 0.2f : -0.2f; /* keep a margin */
        y[i] = (x[i * TOY_D] + 0.5f * x[i * TOY_D + 1]) > 0 ? 1.0f : 0.0f;
    }
}

/* toy_data into x and y, and as the inputs and targets of a step (the
   caller frees them). */
static void toy_tensors(float x[TOY_N * TOY_D], float y[TOY_N], parml_tensor *xt, parml_tensor *yt) {
    toy_data(x, y);
    int64_t xd[2] = {TOY_N, TOY_D}, yd[1] = {TOY_N};
    OK(parml_tensor_create(xd, 2, x, xt));
    OK(parml_tensor_create(yd, 1, y, yt));
}

/* Linear(D→16) ReLU [Linear(16→16) ReLU] Linear(16→2): with `deep`, one
 * column/row pair and then a classifier with no partner, which
 * split_classifier cuts by classes; without, the classifier is the pair's
 * row half. */
static parml_model toy_model_of_depth(uint64_t seed, int deep) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, TOY_D, 16, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    if (deep) {
        OK(parml_model_add_linear(m, 16, 16, 1));
        OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    }
    OK(parml_model_add_linear(m, 16, 2, 1));
    OK(parml_model_init(m, seed));
    return m;
}

static parml_model toy_model(uint64_t seed) { return toy_model_of_depth(seed, 0); }
static parml_model toy_deep_model(void) { return toy_model_of_depth(8, 1); }

static void test_step_and_evaluate(void) {
    float x[TOY_N * TOY_D], y[TOY_N];
    parml_tensor xt = NULL, yt = NULL;
    toy_tensors(x, y, &xt, &yt);

    parml_model m = toy_model(3);
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAM;
    o.learning_rate = 0.05f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.blas_threads = 1;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));

    int64_t steps = -1;
    OK(parml_trainer_step_count(tr, &steps));
    CHECK(steps == 0, "new trainer step count %lld", (long long)steps);
    float lr = -1;
    OK(parml_trainer_learning_rate(tr, &lr));
    CHECK(lr == 0.05f, "constant lr %g", lr);

    float first = -1, loss = -1;
    OK(parml_trainer_step(tr, xt, yt, &first));
    CHECK(isfinite(first) && first > 0.3f && first < 2.0f, "first loss %g (about ln 2)", first);
    for (int i = 1; i < 100; i++) {
        parml_status st = parml_trainer_step(tr, xt, yt, &loss);
        if (st != PARML_OK) {
            CHECK(st == PARML_OK, "step %d: %s", i, parml_last_error());
            break;
        }
    }
    OK(parml_trainer_step(tr, xt, yt, NULL)); /* loss_out may be NULL */
    CHECK(loss < 0.5f * first, "loss falls over 100 steps: %g -> %g", first, loss);
    OK(parml_trainer_step_count(tr, &steps));
    CHECK(steps == 101, "step count %lld", (long long)steps);

    /* The trainer updates the model it was given, in place. */
    int64_t count = 0;
    OK(parml_model_num_params(m, &count));
    float *p = (float *)malloc((size_t)count * sizeof(float));
    OK(parml_model_get_params(m, p, (ptrdiff_t)count));
    parml_model fresh = toy_model(3);
    float *q = (float *)malloc((size_t)count * sizeof(float));
    OK(parml_model_get_params(fresh, q, (ptrdiff_t)count));
    CHECK(memcmp(p, q, (size_t)count * sizeof(float)) != 0, "trained parameters differ from the initial ones");

    /* evaluate on the training set: high accuracy, loss consistent with step's. */
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    float eloss = -1, acc = -1;
    OK(parml_trainer_evaluate(tr, d, 16, &eloss, &acc));
    CHECK(acc >= 0.95f && acc <= 1.0f, "accuracy %g", acc);
    CHECK(isfinite(eloss) && eloss < 0.5f * first, "evaluate loss %g", eloss);
    /* Predict agrees with evaluate's arg-max. */
    parml_tensor out = NULL;
    OK(parml_model_predict(m, xt, &out));
    float logits[TOY_N * 2];
    OK(parml_tensor_read(out, logits, TOY_N * 2));
    int correct = 0;
    double ce = 0;
    for (int i = 0; i < TOY_N; i++) {
        int arg = logits[2 * i + 1] > logits[2 * i] ? 1 : 0;
        correct += arg == (int)y[i];
        double mx = fmax(logits[2 * i], logits[2 * i + 1]);
        double lse = mx + log(exp(logits[2 * i] - mx) + exp(logits[2 * i + 1] - mx));
        ce += lse - logits[2 * i + (int)y[i]];
    }
    CHECK(fabsf(acc - (float)correct / TOY_N) < 1e-6f, "evaluate accuracy %g vs predict %g", acc,
          (double)correct / TOY_N);
    CHECK(close_rel(eloss, ce / TOY_N, 1e-5), "evaluate loss %g vs predict %g", eloss, ce / TOY_N);
    parml_tensor_free(out);

    /* Free the model before the trainer: the trainer keeps its own reference. */
    parml_model_free(m);
    float after = -1;
    OK(parml_trainer_step(tr, xt, yt, &after));
    CHECK(isfinite(after), "step after the model was freed: %g", after);
    OK(parml_trainer_step_count(tr, &steps));
    CHECK(steps == 102, "step count %lld", (long long)steps);
    OK(parml_trainer_evaluate(tr, d, 64, &eloss, NULL));

    parml_trainer_free(tr);
    parml_model_free(fresh);
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    free(p);
    free(q);
}

/* A batch holding a NaN or an infinity: the step returns
 * PARML_ERR_NONFINITE naming where it showed up, updates nothing (not the
 * parameters, not the optimizer's state, not the step count), and the
 * trainer goes on as if the batch had never come: the next good steps give
 * the bits of a trainer that never saw it. Before, the step returned OK and
 * every parameter became NaN. */
enum { NF_N = 16, NF_D = 6, NF_P = NF_D * 8 + 8 + 8 * 3 + 3 };

static parml_trainer nf_trainer(parml_model *m_out, int32_t kind, int32_t dp, int32_t pp, int32_t det, int64_t skip) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, NF_D, 8, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_TANH));
    OK(parml_model_add_linear(m, 8, 3, 1));
    OK(parml_model_init(m, 3));
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    CHECK(o.skip_nonfinite == 1, "skip_nonfinite defaults to %lld", (long long)o.skip_nonfinite);
    o.kind = kind;
    o.learning_rate = 0.05f;
    o.momentum = kind == PARML_OPTIMIZER_SGD ? 0.9f : 0.0f;
    o.skip_nonfinite = skip;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = dp;
    s.pp = pp;
    s.micro_batches = pp;
    s.deterministic = det;
    s.grad_chunk = 4;
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t));
    *m_out = m;
    return t;
}

static parml_tensor nf_inputs(int step, int bad_sample, float bad_value) {
    float x[NF_N * NF_D];
    for (int i = 0; i < NF_N * NF_D; i++) x[i] = cosf((float)(i + 3 * step) * 0.7f);
    if (bad_sample >= 0) x[bad_sample * NF_D + 2] = bad_value;
    int64_t d[2] = {NF_N, NF_D};
    parml_tensor t = NULL;
    OK(parml_tensor_create(d, 2, x, &t));
    return t;
}

static void test_nonfinite_steps_are_skipped(void) {
    float y[NF_N];
    for (int i = 0; i < NF_N; i++) y[i] = (float)(i % 3);
    int64_t yd[1] = {NF_N};
    parml_tensor yt = NULL;
    OK(parml_tensor_create(yd, 1, y, &yt));
    /* serial fast mode (SGD momentum would fold into the gradient buffer),
     * serial Adam, dp 2, pp 2 and dp 2 x pp 2 (deterministic). */
    const int32_t cases[][4] = {
        {PARML_OPTIMIZER_SGD, 1, 1, 0}, {PARML_OPTIMIZER_ADAM, 1, 1, 0}, {PARML_OPTIMIZER_SGD, 2, 1, 1},
        {PARML_OPTIMIZER_ADAMW, 1, 2, 1}, {PARML_OPTIMIZER_SGD, 2, 2, 1}, {PARML_OPTIMIZER_ADAM, 2, 1, 0},
    };
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int32_t *k = cases[c];
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            parml_model m = NULL, rm = NULL;
            parml_trainer t = nf_trainer(&m, k[0], k[1], k[2], k[3], 1);
            parml_trainer ref = nf_trainer(&rm, k[0], k[1], k[2], k[3], 1);
            for (int i = 0; i < 2; i++) {
                parml_tensor x = nf_inputs(i, -1, 0);
                OK(parml_trainer_step(t, x, yt, NULL));
                OK(parml_trainer_step(ref, x, yt, NULL));
                parml_tensor_free(x);
            }
            float before[NF_P], after[NF_P], loss = -7;
            OK(parml_model_get_params(m, before, NF_P));
            parml_tensor xb = nf_inputs(2, 5, bad[b]);
            parml_status st = parml_trainer_step(t, xb, yt, &loss);
            CHECK(st == PARML_ERR_NONFINITE, "case %zu, bad %g: the step returned %d", c, (double)bad[b], (int)st);
            const char *msg = parml_last_error();
            CHECK(strstr(msg, "step 2 was skipped") && strstr(msg, "nothing was updated") && strstr(msg, "rank "),
                  "case %zu: message: %s", c, msg);
            CHECK(strstr(msg, "inputs") && strstr(msg, "sample 5"), "case %zu: the inputs should be named: %s", c, msg);
            CHECK(loss == -7, "case %zu: loss_out was written on failure: %g", c, (double)loss);
            OK(parml_model_get_params(m, after, NF_P));
            CHECK(memcmp(before, after, sizeof before) == 0, "case %zu, bad %g: the parameters changed", c, (double)bad[b]);
            int64_t steps = 0, skipped = 0;
            OK(parml_trainer_step_count(t, &steps));
            OK(parml_trainer_skipped_steps(t, &skipped));
            CHECK(steps == 2 && skipped == 1, "case %zu: step count %lld, skipped %lld", c, (long long)steps,
                  (long long)skipped);
            parml_tensor_free(xb);
            for (int i = 2; i < 4; i++) {
                parml_tensor x = nf_inputs(i, -1, 0);
                OK(parml_trainer_step(t, x, yt, NULL));
                OK(parml_trainer_step(ref, x, yt, NULL));
                parml_tensor_free(x);
            }
            float r[NF_P];
            OK(parml_model_get_params(m, after, NF_P));
            OK(parml_model_get_params(rm, r, NF_P));
            CHECK(memcmp(after, r, sizeof r) == 0,
                  "case %zu, bad %g: after the skipped step, training differs from a run that never saw the batch", c,
                  (double)bad[b]);
            parml_trainer_free(t);
            parml_trainer_free(ref);
            parml_model_free(m);
            parml_model_free(rm);
        }
    }

    /* Parameters that are already poisoned are named as such. */
    parml_model m = NULL;
    parml_trainer t = nf_trainer(&m, PARML_OPTIMIZER_SGD, 1, 1, 0, 1);
    float p[NF_P], q[NF_P];
    OK(parml_model_get_params(m, p, NF_P));
    memcpy(q, p, sizeof p);
    q[NF_D * 8 + 8 + 4] = INFINITY;
    CHECK(parml_model_set_params(m, q, NF_P) == PARML_ERR_INVALID_ARGUMENT, "an infinite parameter is accepted");
    CHECK(strstr(parml_last_error(), "src[60] is inf"), "message: %s", parml_last_error());
    OK(parml_model_get_params(m, q, NF_P));
    CHECK(memcmp(p, q, sizeof p) == 0, "a refused set_params changed the model");

    /* Finite gradients whose squares overflow the clip's norm: skipped too,
     * and said so (nothing on any rank is itself NaN or infinite). */
    {
        parml_model lm = NULL;
        OK(parml_model_create(&lm));
        OK(parml_model_add_linear(lm, NF_D, 3, 1));
        OK(parml_model_init(lm, 2));
        parml_optimizer_params o;
        OK(parml_optimizer_params_init(&o));
        o.clip_grad_norm = 1.0f;
        parml_trainer lt = NULL;
        OK(parml_trainer_create(lm, PARML_LOSS_CROSS_ENTROPY, &o, NULL, &lt));
        parml_tensor big = nf_inputs(0, 3, 1e21f);
        CHECK(parml_trainer_step(lt, big, yt, NULL) == PARML_ERR_NONFINITE &&
                  strstr(parml_last_error(), "the global gradient norm overflowed"),
              "an overflowing norm: %s", parml_last_error());
        parml_tensor_free(big);
        parml_trainer_free(lt);
        parml_model_free(lm);
    }

    /* skip_nonfinite = 0: no check, the old behaviour (NaN everywhere). */
    parml_model m0 = NULL;
    parml_trainer t0 = nf_trainer(&m0, PARML_OPTIMIZER_SGD, 1, 1, 0, 0);
    parml_tensor xb = nf_inputs(0, 1, NAN);
    float loss = 0;
    OK(parml_trainer_step(t0, xb, yt, &loss));
    OK(parml_model_get_params(m0, q, NF_P));
    CHECK(isnan(loss) && isnan(q[0]), "skip_nonfinite = 0: loss %g, parameter %g", (double)loss, (double)q[0]);

    /* fit stops at the skipped step with the same status. */
    parml_dataset d = NULL;
    OK(parml_dataset_create(xb, yt, &d));
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.batch_size = 4;
    CHECK(parml_trainer_fit(t, d, &f, NULL) == PARML_ERR_NONFINITE, "fit over a NaN: %s", parml_last_error());
    int64_t skipped = 0;
    OK(parml_trainer_skipped_steps(t, &skipped));
    CHECK(skipped == 1, "fit skipped %lld steps", (long long)skipped);

    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.skip_nonfinite = 2;
    parml_trainer bad_t = NULL;
    CHECK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, NULL, &bad_t) == PARML_ERR_INVALID_ARGUMENT && !bad_t,
          "skip_nonfinite = 2 accepted");
    OK(parml_optimizer_params_init(&o));
    CHECK(o.decay_by_kind == 0, "decay_by_kind defaults to %lld (torch.optim: decay every parameter)", (long long)o.decay_by_kind);
    o.decay_by_kind = -1;
    CHECK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, NULL, &bad_t) == PARML_ERR_INVALID_ARGUMENT && !bad_t,
          "decay_by_kind = -1 accepted");
    parml_dataset_free(d);
    parml_tensor_free(xb);
    parml_trainer_free(t);
    parml_trainer_free(t0);
    parml_model_free(m);
    parml_model_free(m0);
    parml_tensor_free(yt);
}

/* MSE: loss by hand on a linear model; evaluate's accuracy is NaN. */
static void test_mse(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, 2, 2, 1));
    OK(parml_model_init(m, 1));
    float p[6] = {1, 0, 0, 1, 0, 0}; /* identity, zero bias */
    OK(parml_model_set_params(m, p, 6));
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_MSE, NULL, NULL, &tr));
    int64_t d2[2] = {3, 2};
    float x[6] = {1, 2, 3, 4, 5, 6}, t[6] = {1, 1, 1, 1, 1, 1};
    parml_tensor xt = NULL, tt = NULL;
    OK(parml_tensor_create(d2, 2, x, &xt));
    OK(parml_tensor_create(d2, 2, t, &tt));
    double expect = 0;
    for (int i = 0; i < 6; i++) expect += (x[i] - t[i]) * (x[i] - t[i]);
    expect /= 6; /* mean over elements, as torch.nn.MSELoss */
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, tt, &d));
    float loss = -1, acc = 0;
    OK(parml_trainer_evaluate(tr, d, 2, &loss, &acc));
    CHECK(close_rel(loss, expect, 1e-6), "mse evaluate %g, by hand %g", loss, expect);
    CHECK(isnan(acc), "mse accuracy is NaN: %g", acc);
    float sl = -1;
    OK(parml_trainer_step(tr, xt, tt, &sl));
    CHECK(close_rel(sl, expect, 1e-6), "mse step loss (before the update) %g, by hand %g", sl, expect);
    /* One SGD step, lr 0.01: W -= lr * dL/dW with dL/dy = 2 (y - t) / 6. */
    float q[6];
    OK(parml_model_get_params(m, q, 6));
    int good = 1;
    for (int o = 0; o < 2; o++) {
        double gb = 0, gw[2] = {0, 0};
        for (int n = 0; n < 3; n++) {
            double dy = 2.0 * (x[n * 2 + o] - t[n * 2 + o]) / 6.0;
            gb += dy;
            gw[0] += dy * x[n * 2];
            gw[1] += dy * x[n * 2 + 1];
        }
        for (int i = 0; i < 2; i++) good &= close_rel(q[o * 2 + i], p[o * 2 + i] - 0.01 * gw[i], 1e-5);
        good &= close_rel(q[4 + o], p[4 + o] - 0.01 * gb, 1e-5);
    }
    CHECK(good, "one SGD step on MSE matches the hand gradient");
    parml_trainer_free(tr);
    parml_model_free(m);
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(tt);
}

/* The schedule formula of Sources/ParmlModel/Schedule.swift, in double. */
static double expected_lr(int kind, double lr, int64_t W, int64_t step_size, double gamma, int64_t T, double min_lr,
                          int64_t s) {
    if (s < W) return lr * (double)(s + 1) / (double)W;
    int64_t u = s - W;
    switch (kind) {
    case PARML_SCHEDULE_STEP:
        return lr * pow(gamma, (double)(u / step_size));
    case PARML_SCHEDULE_COSINE: {
        int64_t span = T - W;
        if (u >= span) return min_lr;
        return min_lr + (lr - min_lr) * (1 + cos(3.14159265358979323846 * (double)u / (double)span)) / 2;
    }
    default:
        return lr;
    }
}

static void check_schedule(int kind, int64_t warmup, int64_t step_size, float gamma, int64_t total, float min_lr,
                           int steps) {
    parml_model m = toy_model(1);
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.learning_rate = 0.1f;
    o.schedule = kind;
    o.warmup_steps = warmup;
    o.step_size = step_size;
    o.gamma = gamma;
    o.total_steps = total;
    o.min_lr = min_lr;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, NULL, &tr));
    float x[8 * TOY_D] = {0}, y[8] = {0, 1, 0, 1, 0, 1, 0, 1};
    int64_t xd[2] = {8, TOY_D}, yd[1] = {8};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 2, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    int good = 1;
    for (int s = 0; s < steps; s++) {
        float lr = -1;
        OK(parml_trainer_learning_rate(tr, &lr));
        double e = expected_lr(kind, 0.1, warmup, step_size, gamma, total, min_lr, s);
        if (!close_rel(lr, e, 1e-6)) {
            good = 0;
            fprintf(stderr, "  schedule %d step %d: lr %.9g, formula %.9g\n", kind, s, lr, e);
        }
        OK(parml_trainer_step(tr, xt, yt, NULL));
    }
    CHECK(good, "schedule %d (warmup %lld) follows the formula for %d steps", kind, (long long)warmup, steps);
    parml_trainer_free(tr);
    parml_model_free(m);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

static void test_schedules(void) {
    /* warmup 4 then cosine to 0.01 at step 14; steps past the end stay at min_lr. */
    check_schedule(PARML_SCHEDULE_COSINE, 4, 1, 0.1f, 14, 0.01f, 18);
    /* spot values the formula predicts, written out: */
    CHECK(fabs(expected_lr(PARML_SCHEDULE_COSINE, 0.1, 4, 1, 0.1, 14, 0.01, 0) - 0.025) < 1e-12, "warmup 1/4");
    CHECK(fabs(expected_lr(PARML_SCHEDULE_COSINE, 0.1, 4, 1, 0.1, 14, 0.01, 4) - 0.1) < 1e-12, "peak");
    CHECK(fabs(expected_lr(PARML_SCHEDULE_COSINE, 0.1, 4, 1, 0.1, 14, 0.01, 9) - 0.055) < 1e-12, "half way");
    check_schedule(PARML_SCHEDULE_STEP, 2, 3, 0.5f, 0, 0.0f, 12);
    check_schedule(PARML_SCHEDULE_CONSTANT, 3, 1, 0.1f, 0, 0.0f, 6);
}

/* fit with a progress callback. */
struct progress_log {
    int magic;
    int calls;
    int stop_after; /* 0: never */
    int bad;
    int64_t last_epoch;
    parml_epoch_metrics last;
};

static int32_t on_progress(const parml_epoch_metrics *m, void *user_data) {
    struct progress_log *log = (struct progress_log *)user_data;
    if (!log || log->magic != 0x5EED) return 1; /* user_data not passed through: stop */
    log->calls++;
    if (!m || m->struct_size != sizeof(parml_epoch_metrics) || m->epoch != log->last_epoch + 1) log->bad++;
    log->last_epoch = m ? m->epoch : -1;
    if (m) log->last = *m;
    return (log->stop_after && log->calls >= log->stop_after) ? 1 : 0;
}

static void test_fit(void) {
    float x[TOY_N * TOY_D], y[TOY_N];
    parml_tensor xt = NULL, yt = NULL;
    toy_tensors(x, y, &xt, &yt);
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, yt, &d));

    parml_model m = toy_model(5);
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_SGD;
    o.learning_rate = 0.2f;
    o.momentum = 0.9f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.seed = 99;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));

    struct progress_log log;
    memset(&log, 0, sizeof log);
    log.magic = 0x5EED;
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.epochs = 5;
    f.batch_size = 10; /* 64 samples -> 7 batches, the last of 4 */
    f.validation = d;
    f.progress = on_progress;
    f.user_data = &log;
    parml_epoch_metrics last;
    memset(&last, 0, sizeof last);
    last.struct_size = sizeof last;
    OK(parml_trainer_fit(tr, d, &f, &last));
    CHECK(log.calls == 5, "progress called %d times for 5 epochs", log.calls);
    CHECK(log.bad == 0, "metrics struct_size/epoch sequence wrong %d times", log.bad);
    CHECK(last.struct_size == sizeof last, "last_out struct_size %zu", last.struct_size);
    CHECK(last.epoch == 5 && last.epochs == 5, "last epoch %lld/%lld", (long long)last.epoch, (long long)last.epochs);
    CHECK(last.steps == 35, "steps after 5 epochs of 7 batches: %lld", (long long)last.steps);
    CHECK(isfinite(last.train_loss) && last.train_loss > 0 && last.train_loss < 0.69f, "train_loss %g",
          last.train_loss);
    CHECK(last.train_accuracy >= 0.8f && last.train_accuracy <= 1.0f, "train_accuracy %g", last.train_accuracy);
    CHECK(isfinite(last.val_loss) && last.val_loss > 0, "val_loss %g", last.val_loss);
    CHECK(last.val_accuracy >= 0.8f && last.val_accuracy <= 1.0f, "val_accuracy %g", last.val_accuracy);
    CHECK(last.learning_rate == 0.2f, "learning_rate %g", last.learning_rate);
    CHECK(last.seconds >= 0 && last.seconds < 60, "seconds %g", last.seconds);
    CHECK(last.samples_per_second > 0, "samples/s %g", last.samples_per_second);
    CHECK(last.train_loss == log.last.train_loss && last.val_loss == log.last.val_loss && last.steps == log.last.steps,
          "last_out equals the last callback's metrics");
    /* validation is the training set here: its evaluate() must agree. */
    float eloss = -1, eacc = -1;
    OK(parml_trainer_evaluate(tr, d, 10, &eloss, &eacc));
    CHECK(eloss == last.val_loss && eacc == last.val_accuracy, "val metrics %g/%g vs evaluate %g/%g", last.val_loss,
          last.val_accuracy, eloss, eacc);

    /* Without validation: val fields are NaN; NULL params = defaults (1 epoch of 64). */
    int64_t before = 0, after = 0;
    OK(parml_trainer_step_count(tr, &before));
    OK(parml_trainer_fit(tr, d, NULL, NULL));
    OK(parml_trainer_step_count(tr, &after));
    CHECK(after - before == 1, "default fit: 1 epoch of batch 64 = 1 step, got %lld", (long long)(after - before));
    f.validation = NULL;
    f.epochs = 1;
    f.drop_last = 1;
    f.shuffle = 0;
    memset(&log, 0, sizeof log);
    log.magic = 0x5EED;
    OK(parml_trainer_fit(tr, d, &f, &last));
    CHECK(isnan(last.val_loss) && isnan(last.val_accuracy), "no validation -> NaN (%g, %g)", last.val_loss,
          last.val_accuracy);
    CHECK(log.calls == 1 && log.last.steps == after + 6, "drop_last: 6 full batches of 10 (steps %lld)",
          (long long)log.last.steps);

    /* Returning nonzero stops with PARML_ERR_CANCELLED; the epochs done stay applied. */
    memset(&log, 0, sizeof log);
    log.magic = 0x5EED;
    log.stop_after = 2;
    f.epochs = 4;
    f.drop_last = 0;
    OK(parml_trainer_step_count(tr, &before));
    parml_epoch_metrics untouched;
    memset(&untouched, 0x77, sizeof untouched);
    untouched.struct_size = sizeof untouched;
    parml_epoch_metrics copy = untouched;
    parml_status st = parml_trainer_fit(tr, d, &f, &untouched);
    CHECK(st == PARML_ERR_CANCELLED, "cancelled fit returned %d: %s", (int)st, parml_last_error());
    CHECK(strlen(parml_last_error()) > 0, "cancel message");
    CHECK(log.calls == 2, "callback calls before stop: %d", log.calls);
    OK(parml_trainer_step_count(tr, &after));
    CHECK(after - before == 14, "2 epochs of 7 steps stay applied: %lld", (long long)(after - before));
    CHECK(memcmp(&copy, &untouched, sizeof copy) == 0, "last_out untouched on cancel");

    /* MSE fit: train_accuracy NaN. */
    parml_model mm = NULL;
    OK(parml_model_create(&mm));
    OK(parml_model_add_linear(mm, TOY_D, 1, 1));
    OK(parml_model_init(mm, 2));
    parml_trainer mt = NULL;
    OK(parml_trainer_create(mm, PARML_LOSS_MSE, NULL, NULL, &mt));
    int64_t td[2] = {TOY_N, 1};
    parml_tensor t2 = NULL;
    OK(parml_tensor_create(td, 2, y, &t2));
    parml_dataset d2 = NULL;
    OK(parml_dataset_create(xt, t2, &d2));
    parml_fit_params f2;
    OK(parml_fit_params_init(&f2));
    f2.epochs = 2;
    f2.batch_size = 16;
    OK(parml_trainer_fit(mt, d2, &f2, &last));
    CHECK(isnan(last.train_accuracy) && isfinite(last.train_loss), "mse fit: acc %g loss %g", last.train_accuracy,
          last.train_loss);
    parml_trainer_free(mt);
    parml_model_free(mm);
    parml_dataset_free(d2);
    parml_tensor_free(t2);

    parml_trainer_free(tr);
    parml_model_free(m);
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* Same seed and data -> bitwise identical training (promise 2), dropout included. */
static void test_determinism(void) {
    float out[2][FULL_PARAMS];
    int64_t xd[3] = {8, 3, 4}, yd[1] = {8};
    float x[96], y[8];
    for (int i = 0; i < 96; i++) x[i] = cosf((float)i * 0.3f);
    for (int i = 0; i < 8; i++) y[i] = (float)(i % 3);
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    for (int run = 0; run < 2; run++) {
        parml_model m = build_full_model();
        OK(parml_model_init(m, 42));
        parml_optimizer_params o;
        OK(parml_optimizer_params_init(&o));
        o.kind = PARML_OPTIMIZER_ADAMW;
        o.learning_rate = 1e-3f;
        o.clip_grad_norm = 1.0f;
        parml_strategy_params s;
        OK(parml_strategy_params_init(&s));
        s.seed = 7;
        parml_trainer tr = NULL;
        OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));
        for (int i = 0; i < 5; i++) OK(parml_trainer_step(tr, xt, yt, NULL));
        OK(parml_model_get_params(m, out[run], FULL_PARAMS));
        parml_trainer_free(tr);
        parml_model_free(m);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0, "two identical runs give bitwise identical parameters");
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* Data and pipeline parallelism through the C API (the shipped release
 * library, where the Swift suites run the debug build): in deterministic
 * mode, dp = 2 and 3 with every ZeRO stage, pipelines of 2 and 4 stages
 * under both schedules, and a 2 x 2 hybrid give the serial parameters bit
 * for bit, for SGD with momentum, Adam and AdamW with clipping; in default
 * mode they agree within rounding; ZeRO-1 keeps 1/dp of the optimizer state
 * per rank. */
typedef struct {
    int32_t dp, pp, micro_batches, schedule, zero;
    int32_t virtual_stages; /* 1 but for interleaved 1F1B */
} layout_t;

/* The optimizer run_layout trains with. */
static int32_t layout_optimizer = PARML_OPTIMIZER_ADAM;

static void run_layout(layout_t l, int32_t deterministic, float *params_out, parml_memory_report *mem) {
    int64_t xd[3] = {20, 3, 4}, yd[1] = {20};
    float x[240], y[20];
    for (int i = 0; i < 240; i++) x[i] = sinf((float)i * 0.7f);
    for (int i = 0; i < 20; i++) y[i] = (float)(i % 3);
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    parml_model m = build_full_model();
    OK(parml_model_init(m, 42));
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = layout_optimizer;
    o.learning_rate = 1e-3f;
    if (layout_optimizer == PARML_OPTIMIZER_SGD) {
        o.learning_rate = 0.05f;
        o.momentum = 0.9f;
        o.weight_decay = 1e-3f;
    } else if (layout_optimizer == PARML_OPTIMIZER_ADAMW) {
        o.weight_decay = 0.01f;
        o.clip_grad_norm = 0.05f;
    }
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = l.dp;
    s.pp = l.pp;
    s.micro_batches = l.micro_batches;
    s.pipeline_schedule = l.schedule;
    s.zero_stage = l.zero;
    s.virtual_stages = l.virtual_stages;
    s.deterministic = deterministic;
    s.grad_chunk = 4;
    s.seed = 7;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));
    for (int i = 0; i < 4; i++) OK(parml_trainer_step(tr, xt, yt, NULL));
    OK(parml_model_get_params(m, params_out, FULL_PARAMS));
    int32_t dp = l.dp * l.pp;
    if (mem) {
        for (int32_t r = 0; r < dp; r++) {
            mem[r].struct_size = sizeof *mem;
            OK(parml_trainer_memory(tr, r, &mem[r]));
        }
        parml_memory_report bad = {.struct_size = sizeof bad};
        CHECK(parml_trainer_memory(tr, dp, &bad) == PARML_ERR_INVALID_ARGUMENT, "rank %d is out of range", (int)dp);
    }
    parml_trainer_free(tr);
    parml_model_free(m);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* Parameters by name: PyTorch's state_dict keys for an nn.Sequential (the
 * index among siblings per level, then weight/bias), in the flat order of
 * parml_model_get_params; get and set one tensor; errors for bad names,
 * counts and values leave the model unchanged. */
static void test_parameters_by_name(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, 4, 6, 1));
    OK(parml_model_add_layer_norm(m, 6, 1e-5f));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_GELU));
    OK(parml_model_begin_residual(m));
    OK(parml_model_add_linear(m, 6, 6, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_TANH));
    OK(parml_model_end_residual(m));
    OK(parml_model_add_dropout(m, 0.5f));
    OK(parml_model_add_linear(m, 6, 3, 0));
    int64_t n = -1;
    CHECK(parml_model_num_param_tensors(m, &n) == PARML_ERR_STATE && n == -1, "before init");
    OK(parml_model_init(m, 3));
    OK(parml_model_num_param_tensors(m, &n));
    const char *names[] = {"0.weight", "0.bias", "1.weight", "1.bias", "3.0.weight", "3.0.bias", "5.weight"};
    const int64_t shapes[][2] = {{6, 4}, {6, 0}, {6, 0}, {6, 0}, {6, 6}, {6, 0}, {3, 6}};
    CHECK(n == 7, "%lld parameter tensors", (long long)n);
    int64_t total = 0;
    OK(parml_model_num_params(m, &total));
    float *flat = malloc((size_t)total * sizeof *flat), *back = malloc((size_t)total * sizeof *back);
    OK(parml_model_get_params(m, flat, total));
    int64_t offset = 0;
    for (int64_t i = 0; i < n && i < 7; i++) {
        char *name = NULL;
        int64_t dims[4] = {0};
        ptrdiff_t nd = 0;
        OK(parml_model_param_tensor_info(m, i, &name, dims, 4, &nd));
        CHECK(name && strcmp(name, names[i]) == 0, "tensor %lld is '%s', expected '%s'", (long long)i, name ? name : "(null)",
              names[i]);
        int64_t count = dims[0] * (nd == 2 ? dims[1] : 1);
        CHECK(dims[0] == shapes[i][0] && (nd == 2 ? dims[1] == shapes[i][1] : shapes[i][1] == 0), "shape of %s", names[i]);
        float buf[64];
        OK(parml_model_get_param(m, names[i], buf, count));
        CHECK(memcmp(buf, flat + offset, (size_t)count * sizeof *buf) == 0, "%s is not at offset %lld of the flat order",
              names[i], (long long)offset);
        offset += count;
        parml_buffer_free(name);
    }
    CHECK(offset == total, "the named tensors cover %lld of %lld parameters", (long long)offset, (long long)total);

    /* Set one tensor: exactly its slice of the flat order changes. */
    float w[36];
    for (int i = 0; i < 36; i++) w[i] = 0.01f * (float)i;
    OK(parml_model_set_param(m, "3.0.weight", w, 36));
    OK(parml_model_get_params(m, back, total));
    int64_t at = 24 + 6 + 6 + 6;
    CHECK(memcmp(back + at, w, sizeof w) == 0, "3.0.weight was not written at its offset");
    CHECK(memcmp(back, flat, (size_t)at * sizeof *back) == 0 &&
              memcmp(back + at + 36, flat + at + 36, (size_t)(total - at - 36) * sizeof *back) == 0,
          "set_param changed another tensor");

    /* Errors leave the model as it was. */
    CHECK(parml_model_set_param(m, "3.weight", w, 36) == PARML_ERR_INVALID_ARGUMENT &&
              strstr(parml_last_error(), "no parameter named '3.weight'") && strstr(parml_last_error(), "3.0.weight"),
          "unknown name: %s", parml_last_error());
    CHECK(parml_model_set_param(m, "0.bias", w, 5) == PARML_ERR_SHAPE && strstr(parml_last_error(), "shape (6) (6 values), not 5") != NULL,
          "wrong count: %s", parml_last_error());
    w[7] = NAN;
    CHECK(parml_model_set_param(m, "3.0.weight", w, 36) == PARML_ERR_INVALID_ARGUMENT &&
              strstr(parml_last_error(), "src[7] is nan"),
          "NaN: %s", parml_last_error());
    CHECK(parml_model_set_param(m, NULL, w, 36) == PARML_ERR_INVALID_ARGUMENT, "NULL name");
    CHECK(parml_model_get_param(m, "0.weight", NULL, 24) == PARML_ERR_INVALID_ARGUMENT, "NULL dst");
    char *name = NULL;
    ptrdiff_t nd = 0;
    CHECK(parml_model_param_tensor_info(m, 7, &name, NULL, 0, &nd) == PARML_ERR_INVALID_ARGUMENT && name == NULL,
          "index 7 of 7");
    OK(parml_model_get_params(m, flat, total));
    CHECK(memcmp(back, flat, (size_t)total * sizeof *back) == 0, "a refused call changed the model");
    free(flat);
    free(back);
    parml_model_free(m);
}

/* Largest |a - b| relative to the largest |b|. */
static double max_rel_diff(const float *a, const float *b, int n) {
    double scale = 0, worst = 0;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
    return worst / scale;
}

/* Deterministic mode against references outside the chunk tree: every
 * layout is compared with deterministic serial training, which runs the same
 * chunked code, so a bug all chunked runs share (a wrong per-chunk loss
 * scale, a dropped tail chunk) would pass those comparisons. Here
 * deterministic serial training is held against (1) default mode, one GEMM
 * per layer, for each optimizer: within 1e-6 of the largest parameter
 * after 4 steps; and (2) central finite differences of the loss computed
 * here in double from parml_model_predict: one plain SGD step with lr = 1
 * gives the gradient as before - after (measured worst 1.5e-3 relative,
 * bound 2e-2). 22 samples in chunks of 4 make a short tail chunk. A loss
 * scale wrong by one sample in 22 in deterministic mode only moved SGD's
 * parameters 1.8e-3 from default mode's and the gradient 4.8e-2 from the
 * differences: both checks failed (Adam, nearly scale-free, did not). */
enum { REF_N = 22, REF_D = 5, REF_H = 7, REF_C = 3, REF_P = REF_D * REF_H + REF_H + 2 * REF_H + REF_H * REF_C + REF_C };

static void ref_data(float *x, float *y) {
    for (int i = 0; i < REF_N * REF_D; i++) x[i] = sinf((float)i * 0.37f) + 0.3f * cosf((float)i * 1.3f);
    for (int i = 0; i < REF_N; i++) y[i] = (float)((i * 2 + i / 5) % REF_C);
}

static parml_model ref_model(void) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, REF_D, REF_H, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_TANH));
    OK(parml_model_add_layer_norm(m, REF_H, 1e-5f));
    OK(parml_model_add_linear(m, REF_H, REF_C, 1));
    OK(parml_model_init(m, 11));
    return m;
}

/* Mean cross-entropy in double over the logits parml_model_predict gives. */
static double ref_loss(parml_model m, parml_tensor xt, const float *y) {
    parml_tensor out = NULL;
    OK(parml_model_predict(m, xt, &out));
    float z[REF_N * REF_C];
    OK(parml_tensor_read(out, z, REF_N * REF_C));
    parml_tensor_free(out);
    double total = 0;
    for (int i = 0; i < REF_N; i++) {
        double mx = z[i * REF_C];
        for (int c = 1; c < REF_C; c++) mx = fmax(mx, z[i * REF_C + c]);
        double se = 0;
        for (int c = 0; c < REF_C; c++) se += exp(z[i * REF_C + c] - mx);
        total += mx + log(se) - z[i * REF_C + (int)y[i]];
    }
    return total / REF_N;
}

static void ref_train(int32_t kind, int32_t det, int steps, float lr, float *params, int32_t momentum) {
    float x[REF_N * REF_D], y[REF_N];
    ref_data(x, y);
    int64_t xd[2] = {REF_N, REF_D}, yd[1] = {REF_N};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 2, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    parml_model m = ref_model();
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = kind;
    o.learning_rate = lr;
    if (momentum) {
        o.momentum = 0.9f;
        o.nesterov = 1;
        o.weight_decay = 1e-3f;
    }
    if (kind == PARML_OPTIMIZER_ADAMW) o.clip_grad_norm = 0.1f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.deterministic = det;
    s.grad_chunk = 4;
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t));
    for (int i = 0; i < steps; i++) OK(parml_trainer_step(t, xt, yt, NULL));
    OK(parml_model_get_params(m, params, REF_P));
    parml_trainer_free(t);
    parml_model_free(m);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

static void test_deterministic_against_references(void) {
    float det[REF_P], fast[REF_P];
    const struct {
        int32_t kind, momentum;
        float lr;
    } opts[] = {{PARML_OPTIMIZER_SGD, 0, 0.1f},
                {PARML_OPTIMIZER_SGD, 1, 0.05f},
                {PARML_OPTIMIZER_ADAM, 0, 0.01f},
                {PARML_OPTIMIZER_ADAMW, 0, 0.01f}};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        ref_train(opts[k].kind, 1, 4, opts[k].lr, det, opts[k].momentum);
        ref_train(opts[k].kind, 0, 4, opts[k].lr, fast, opts[k].momentum);
        double d = max_rel_diff(det, fast, REF_P);
        CHECK(d <= 1e-6, "optimizer %d (momentum %d): deterministic serial differs from default mode by %g",
              (int)opts[k].kind, (int)opts[k].momentum, d);
    }

    /* The deterministic gradient against finite differences. */
    float before[REF_P], after[REF_P];
    parml_model m = ref_model();
    OK(parml_model_get_params(m, before, REF_P));
    ref_train(PARML_OPTIMIZER_SGD, 1, 1, 1.0f, after, 0);
    float x[REF_N * REF_D], y[REF_N];
    ref_data(x, y);
    int64_t xd[2] = {REF_N, REF_D};
    parml_tensor xt = NULL;
    OK(parml_tensor_create(xd, 2, x, &xt));
    float p[REF_P];
    double worst = 0;
    int checked = 0;
    for (int i = 0; i < REF_P; i++) {
        const double h = 1e-2;
        memcpy(p, before, sizeof p);
        p[i] = before[i] + (float)h;
        OK(parml_model_set_params(m, p, REF_P));
        double up = ref_loss(m, xt, y);
        p[i] = before[i] - (float)h;
        OK(parml_model_set_params(m, p, REF_P));
        double down = ref_loss(m, xt, y);
        double fd = (up - down) / (2 * h), g = (double)before[i] - (double)after[i];
        worst = fmax(worst, fabs(fd - g) / fmax(1e-2, fabs(fd)));
        checked++;
    }
    CHECK(checked == REF_P && worst <= 2e-2, "deterministic gradient against finite differences: worst relative error %g",
          worst);
    printf("note: deterministic gradient vs central differences over %d parameters: worst %.2e\n", checked, worst);
    parml_tensor_free(xt);
    parml_model_free(m);
}

/* Deterministic mode with every other setting left alone (blas_threads = 0):
 * every rank of every layout, serial included, gets one thread (oneDNN's
 * convolutions round by their thread count; parml's own threads would not:
 * WorkerThreadsTests). When serial training got two OpenBLAS threads and
 * each rank of dp = 2 one, a threaded sgemm added in another order and the
 * two differed after one step. */
static void det_default_run(int32_t dp, int32_t pp, float *params, int64_t n, int32_t *threads_out) {
    enum { N = 128, IN = 784, H = 256 };
    static float x[N * IN], y[N];
    for (int i = 0; i < N * IN; i++) x[i] = sinf((float)i * 0.013f) * (float)((i % 7) + 1) * 0.2f;
    for (int i = 0; i < N; i++) y[i] = (float)((i * 7) % 10);
    int64_t xd[2] = {N, IN}, yd[1] = {N};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 2, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_linear(m, IN, H, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, H, H, 1));
    OK(parml_model_add_activation(m, PARML_ACTIVATION_RELU));
    OK(parml_model_add_linear(m, H, 10, 1));
    OK(parml_model_init(m, 5));
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_SGD;
    o.learning_rate = 0.05f;
    o.momentum = 0.9f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.deterministic = 1;
    s.dp = dp;
    s.pp = pp;
    s.micro_batches = pp > 1 ? 2 : 1;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));
    for (int i = 0; i < 3; i++) OK(parml_trainer_step(tr, xt, yt, NULL));
    OK(parml_blas_threads(threads_out));
    OK(parml_model_get_params(m, params, n));
    parml_trainer_free(tr);
    parml_model_free(m);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

static void test_determinism_with_default_threads(void) {
    enum { P = 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10 };
    static float serial[P], p[P];
    int32_t threads = 0;
    det_default_run(1, 1, serial, P, &threads);
    CHECK(threads == 1, "deterministic serial training ran %d threads", (int)threads);
    const int32_t layouts[][2] = {{2, 1}, {1, 2}, {2, 2}};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        det_default_run(layouts[i][0], layouts[i][1], p, P, &threads);
        int differ = 0;
        for (int k = 0; k < P; k++) differ += memcmp(&p[k], &serial[k], sizeof(float)) != 0;
        CHECK(differ == 0, "deterministic, default threads: dp=%d pp=%d differs from serial in %d of %d parameters",
              (int)layouts[i][0], (int)layouts[i][1], differ, (int)P);
    }
}

static void test_data_parallel(void) {
    static float serial[FULL_PARAMS], fast_serial[FULL_PARAMS], p[FULL_PARAMS];
    parml_memory_report z0[2], z1[2];
    const int32_t F1B = PARML_PIPELINE_1F1B, GPIPE = PARML_PIPELINE_GPIPE, IL = PARML_PIPELINE_INTERLEAVED_1F1B;
    const layout_t layouts[] = {
        {2, 1, 1, F1B, 0, 1},   {2, 1, 1, F1B, 1, 1},   {2, 1, 1, F1B, 2, 1}, {2, 1, 1, F1B, 3, 1}, {3, 1, 1, F1B, 0, 1},
        {3, 1, 1, F1B, 1, 1},   {3, 1, 1, F1B, 2, 1},   {3, 1, 1, F1B, 3, 1}, {1, 2, 1, GPIPE, 0, 1}, {1, 2, 3, F1B, 0, 1},
        {1, 4, 5, GPIPE, 0, 1}, {1, 4, 9, F1B, 0, 1},   {2, 2, 2, F1B, 2, 1}, {2, 2, 3, GPIPE, 3, 1},
        /* interleaved 1F1B: pp x v runs of the 8 top-level layers */
        {1, 2, 4, IL, 0, 2}, {1, 2, 2, IL, 0, 4}, {2, 2, 2, IL, 2, 2},
    };
    const int32_t optimizers[] = {PARML_OPTIMIZER_SGD, PARML_OPTIMIZER_ADAM, PARML_OPTIMIZER_ADAMW};
    for (size_t k = 0; k < sizeof optimizers / sizeof optimizers[0]; k++) {
        layout_optimizer = optimizers[k];
        run_layout((layout_t){1, 1, 1, F1B, 0, 1}, 1, serial, NULL);
        run_layout((layout_t){1, 1, 1, F1B, 0, 1}, 0, fast_serial, NULL);
        for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
            layout_t l = layouts[i];
            run_layout(l, 1, p, NULL);
            CHECK(memcmp(p, serial, sizeof p) == 0,
                  "optimizer %d: deterministic dp=%d pp=%d m=%d schedule=%d zero=%d equals serial bit for bit",
                  (int)layout_optimizer, (int)l.dp, (int)l.pp, (int)l.micro_batches, (int)l.schedule, (int)l.zero);
            /* Default mode sums in another order: within rounding (the bound
             * the Swift suites state, 1e-6 of the largest parameter). */
            run_layout(l, 0, p, NULL);
            double d = max_rel_diff(p, fast_serial, FULL_PARAMS);
            CHECK(d <= 1e-6, "optimizer %d: default mode dp=%d pp=%d m=%d zero=%d differs from serial by %g",
                  (int)layout_optimizer, (int)l.dp, (int)l.pp, (int)l.micro_batches, (int)l.zero, d);
        }
    }
    layout_optimizer = PARML_OPTIMIZER_ADAM;
    run_layout((layout_t){2, 1, 1, F1B, 0, 1}, 0, p, z0);
    run_layout((layout_t){2, 1, 1, F1B, 1, 1}, 0, p, z1);
    CHECK(z0[0].parameter_bytes == (int64_t)FULL_PARAMS * 4, "parameter bytes %lld", (long long)z0[0].parameter_bytes);
    CHECK(z0[0].optimizer_bytes == 2 * (int64_t)FULL_PARAMS * 4 && z0[1].optimizer_bytes == z0[0].optimizer_bytes,
          "ZeRO-0: each rank keeps Adam's two moments whole: %lld bytes", (long long)z0[0].optimizer_bytes);
    /* Shards are cut on 1024-element blocks, so this 851-parameter model's
     * state lands whole on one rank; what ZeRO-1 promises is the partition. */
    CHECK(z1[0].optimizer_bytes + z1[1].optimizer_bytes == z0[0].optimizer_bytes,
          "ZeRO-1 shards add up to one whole state: %lld + %lld vs %lld", (long long)z1[0].optimizer_bytes,
          (long long)z1[1].optimizer_bytes, (long long)z0[0].optimizer_bytes);
    /* Pipeline stages split the parameters between them. */
    parml_memory_report pm[2];
    run_layout((layout_t){1, 2, 2, F1B, 0, 1}, 0, p, pm);
    CHECK(pm[0].parameter_bytes + pm[1].parameter_bytes == (int64_t)FULL_PARAMS * 4 && pm[0].parameter_bytes > 0 &&
              pm[1].parameter_bytes > 0,
          "two stages hold %lld + %lld parameter bytes", (long long)pm[0].parameter_bytes, (long long)pm[1].parameter_bytes);
}

/* Interleaved 1F1B refuses numbers it cannot run, naming them. */
static void test_interleaved_refusals(void) {
    parml_model m = build_full_model();
    OK(parml_model_init(m, 1));
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.pp = 2;
    s.pipeline_schedule = PARML_PIPELINE_INTERLEAVED_1F1B;
    s.virtual_stages = 2;
    s.micro_batches = 3;
    parml_trainer tr = NULL;
    CHECK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &s, &tr) == PARML_ERR_INVALID_ARGUMENT &&
              strstr(parml_last_error(), "multiple of pp") && strstr(parml_last_error(), "micro_batches=3"),
          "m = 3 with pp = 2: %s", parml_last_error());
    s.micro_batches = 4;
    s.virtual_stages = 5;
    CHECK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &s, &tr) == PARML_ERR_INVALID_ARGUMENT &&
              strstr(parml_last_error(), "2 × 5 = 10 runs") && strstr(parml_last_error(), "8 top-level"),
          "10 runs of 8 layers: %s", parml_last_error());
    s.pipeline_schedule = PARML_PIPELINE_1F1B;
    s.virtual_stages = 2;
    CHECK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &s, &tr) == PARML_ERR_INVALID_ARGUMENT &&
              strstr(parml_last_error(), "virtual_stages=2"),
          "virtual stages with 1F1B: %s", parml_last_error());
    CHECK(tr == NULL, "no trainer on failure");
    parml_model_free(m);
}

/* Tensor parallelism through the C API: the toy model's Linear-ReLU-Linear
 * is split over 2 and 4 ranks (tp alone and with dp and pp); parameters stay
 * within 2e-6 x steps (relative to the largest) of serial training, the
 * bound Tests/ParmlTrainingTests/TensorParallelTests.swift justifies.
 * `m` is trained 4 steps and freed; its parameters land in `params`. */
static void toy_train(parml_model m, int32_t dp, int32_t pp, int32_t tp, int64_t split, float *params, int64_t n_params) {
    float x[TOY_N * TOY_D], y[TOY_N];
    parml_tensor xt = NULL, yt = NULL;
    toy_tensors(x, y, &xt, &yt);
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.kind = PARML_OPTIMIZER_ADAMW;
    o.learning_rate = 0.01f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = dp;
    s.pp = pp;
    s.tp = tp;
    s.micro_batches = 2;
    s.blas_threads = 1;
    s.split_classifier = split;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));
    for (int i = 0; i < 4; i++) OK(parml_trainer_step(tr, xt, yt, NULL));
    OK(parml_model_get_params(m, params, n_params));
    parml_trainer_free(tr);
    parml_model_free(m);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* Largest |p - serial| against 2e-6 x 4 steps x the largest |serial|. */
static void check_near_serial(const float *p, const float *serial, int n, const char *what) {
    float scale = 0, worst = 0;
    for (int i = 0; i < n; i++) scale = fmaxf(scale, fabsf(serial[i]));
    for (int i = 0; i < n; i++) worst = fmaxf(worst, fabsf(p[i] - serial[i]));
    CHECK(worst <= 2e-6f * 4 * scale, "%s: max |diff| %g vs scale %g", what, worst, scale);
}

static void test_tensor_parallel(void) {
    enum { P = TOY_D * 16 + 16 + 16 * 2 + 2 };
    float serial[P], p[P];
    toy_train(toy_model(5), 1, 1, 1, 0, serial, P);
    const int32_t layouts[][3] = {{1, 1, 2}, {1, 1, 4}, {2, 1, 2}, {1, 2, 2}, {2, 2, 2}};
    for (size_t k = 0; k < sizeof layouts / sizeof layouts[0]; k++) {
        toy_train(toy_model(5), layouts[k][0], layouts[k][1], layouts[k][2], 0, p, P);
        char what[64];
        snprintf(what, sizeof what, "dp=%d pp=%d tp=%d", (int)layouts[k][0], (int)layouts[k][1], (int)layouts[k][2]);
        check_near_serial(p, serial, P, what);
    }
}

/* conv2d 1->8 3x3 pad 1, relu, max_pool2d 2, conv2d 8->4 3x3 pad 1, relu,
 * global_avg_pool, linear 4->2, added by kind name: the two convolutions
 * form a tensor-parallel pair (output channels, then input channels). */
enum { CONV_N = 16, CONV_HW = 6, CONV_P = 8 * 9 + 8 + 4 * 8 * 9 + 4 + 4 * 2 + 2 };
static parml_model conv_pair_model(void) {
    static int64_t k3[] = {3}, pad1[] = {1}, two[] = {2};
    parml_model m = NULL;
    OK(parml_model_create(&m));
    /* im2col + OpenBLAS (read when a conv2d is made): this program also
     * runs under valgrind, where oneDNN's JIT kernels crawl; the Swift and
     * Python suites cover the pair on both backends. */
    setenv("PARML_CONV", "im2col", 1);
    parml_attribute c1[] = {{.name = "in_channels", .type = PARML_ATTR_INT, .int_value = 1},
                            {.name = "out_channels", .type = PARML_ATTR_INT, .int_value = 8},
                            {.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = k3, .n_ints = 1},
                            {.name = "padding", .type = PARML_ATTR_INTS, .ints = pad1, .n_ints = 1}};
    OK(parml_model_add_layer(m, "conv2d", c1, 4));
    OK(parml_model_add_layer(m, "relu", NULL, 0));
    parml_attribute pool[] = {{.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = two, .n_ints = 1}};
    OK(parml_model_add_layer(m, "max_pool2d", pool, 1));
    parml_attribute c2[] = {{.name = "in_channels", .type = PARML_ATTR_INT, .int_value = 8},
                            {.name = "out_channels", .type = PARML_ATTR_INT, .int_value = 4},
                            {.name = "kernel_size", .type = PARML_ATTR_INTS, .ints = k3, .n_ints = 1},
                            {.name = "padding", .type = PARML_ATTR_INTS, .ints = pad1, .n_ints = 1}};
    OK(parml_model_add_layer(m, "conv2d", c2, 4));
    OK(parml_model_add_layer(m, "relu", NULL, 0));
    OK(parml_model_add_layer(m, "global_avg_pool", NULL, 0));
    OK(parml_model_add_linear(m, 4, 2, 1));
    OK(parml_model_init(m, 21));
    unsetenv("PARML_CONV");
    return m;
}

/* CONV_N images (1, CONV_HW, CONV_HW) in [-1, 1) and labels i mod 2, as
 * tensors (the caller frees them). */
static void conv_tensors(parml_tensor *xt, parml_tensor *yt) {
    float x[CONV_N * CONV_HW * CONV_HW], y[CONV_N];
    uint32_t r = 777;
    for (int i = 0; i < CONV_N * CONV_HW * CONV_HW; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = (float)((r >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
    for (int i = 0; i < CONV_N; i++) y[i] = (float)(i % 2);
    int64_t xd[4] = {CONV_N, 1, CONV_HW, CONV_HW}, yd[1] = {CONV_N};
    OK(parml_tensor_create(xd, 4, x, xt));
    OK(parml_tensor_create(yd, 1, y, yt));
}

/* A trainer for conv_pair_model (its model in *m): SGD momentum,
 * deterministic mode, laid out dp x pp x tp. */
static parml_trainer conv_trainer(int32_t dp, int32_t pp, int32_t tp, parml_model *m) {
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    o.learning_rate = 0.1f;
    o.momentum = 0.9f;
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = dp;
    s.pp = pp;
    s.tp = tp;
    s.micro_batches = 2;
    s.deterministic = 1;
    *m = conv_pair_model();
    parml_trainer tr = NULL;
    OK(parml_trainer_create(*m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &tr));
    return tr;
}

/* conv_pair_model trained 4 SGD-momentum steps (deterministic mode) under
 * dp x pp x tp; its parameters land in `params`. */
static void conv_train(int32_t dp, int32_t pp, int32_t tp, float params[CONV_P]) {
    parml_tensor xt = NULL, yt = NULL;
    conv_tensors(&xt, &yt);
    parml_model m = NULL;
    parml_trainer tr = conv_trainer(dp, pp, tp, &m);
    for (int i = 0; i < 4; i++) OK(parml_trainer_step(tr, xt, yt, NULL));
    OK(parml_model_get_params(m, params, CONV_P));
    parml_trainer_free(tr);
    parml_model_free(m);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* Tensor parallelism over convolutions: tp 2, dp 2 x tp 2 and pp 2 x tp 2
 * stay within the tp bound of serial training, and the plan names the
 * split convolutions (tp 4 and the other hybrids: the Swift suite). */
static void test_conv_tensor_parallel(void) {
    float serial[CONV_P], p[CONV_P];
    conv_train(1, 1, 1, serial);
    const int32_t layouts[][3] = {{1, 1, 2}, {2, 1, 2}, {1, 2, 2}};
    for (size_t k = 0; k < sizeof layouts / sizeof layouts[0]; k++) {
        conv_train(layouts[k][0], layouts[k][1], layouts[k][2], p);
        char what[64];
        snprintf(what, sizeof what, "conv pair, dp=%d pp=%d tp=%d", (int)layouts[k][0], (int)layouts[k][1],
                 (int)layouts[k][2]);
        check_near_serial(p, serial, CONV_P, what);
    }
    parml_model m = conv_pair_model();
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.tp = 2;
    char *text = NULL;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &s, &tr));
    OK(parml_trainer_plan(tr, &text));
    CHECK(text && strstr(text, "0: column-parallel conv2d(1→8, 3x3), 4 output channels per rank") &&
              strstr(text, "2: max_pool2d on each rank's 4 of 8 channels") &&
              strstr(text, "3: row-parallel conv2d(8→4, 3x3), 4 input channels per rank"),
          "plan text:\n%s", text ? text : "(null)");
    parml_buffer_free(text);
    parml_trainer_free(tr);
    parml_model_free(m);
}

/* conv_pair_model fit 2 epochs (batches of 8) under dp x pp on `d`; its
 * parameters land in `params`. */
static void conv_fit(parml_dataset d, int32_t dp, int32_t pp, float params[CONV_P]) {
    parml_model m = NULL;
    parml_trainer tr = conv_trainer(dp, pp, 1, &m);
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.epochs = 2;
    f.batch_size = 8;
    OK(parml_trainer_fit(tr, d, &f, NULL));
    OK(parml_model_get_params(m, params, CONV_P));
    parml_trainer_free(tr);
    parml_model_free(m);
}

/* Augmentation through the C API: defaults, refusals (the setting stays),
 * every layout fitting the same images, evaluation unchanged. */
static void test_augmentation(void) {
    parml_augment_params a;
    memset(&a, 0x5A, sizeof a);
    OK(parml_augment_params_init(&a));
    CHECK(a.struct_size == sizeof a && a.crop_padding == 0 && a.horizontal_flip == 0, "augment defaults");
    CHECK(parml_augment_params_init(NULL) == PARML_ERR_INVALID_ARGUMENT, "init(NULL)");
    parml_tensor xt = NULL, yt = NULL;
    conv_tensors(&xt, &yt);
    parml_dataset d = NULL, plain = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    OK(parml_dataset_create(xt, yt, &plain));
    a.crop_padding = 1;
    a.horizontal_flip = 1;
    CHECK(parml_dataset_set_augmentation(NULL, &a) == PARML_ERR_INVALID_ARGUMENT, "NULL dataset");
    OK(parml_dataset_set_augmentation(d, &a));
    parml_augment_params bad = a;
    bad.crop_padding = CONV_HW;
    CHECK(parml_dataset_set_augmentation(d, &bad) == PARML_ERR_INVALID_ARGUMENT && strstr(parml_last_error(), "below the images"),
          "padding of the image's size: %s", parml_last_error());
    bad.crop_padding = -1;
    CHECK(parml_dataset_set_augmentation(d, &bad) == PARML_ERR_INVALID_ARGUMENT, "negative padding");
    bad = a;
    bad.horizontal_flip = 2;
    CHECK(parml_dataset_set_augmentation(d, &bad) == PARML_ERR_INVALID_ARGUMENT && strstr(parml_last_error(), "horizontal_flip"),
          "flip 2: %s", parml_last_error());
    bad = a;
    bad.struct_size = 4;
    CHECK(parml_dataset_set_augmentation(d, &bad) == PARML_ERR_INVALID_ARGUMENT, "struct_size 4");
    float tx[TOY_N * TOY_D], ty[TOY_N];
    parml_tensor txt = NULL, tyt = NULL;
    toy_tensors(tx, ty, &txt, &tyt);
    parml_dataset flat = NULL;
    OK(parml_dataset_create(txt, tyt, &flat));
    CHECK(parml_dataset_set_augmentation(flat, &a) == PARML_ERR_SHAPE, "samples of 2 features: %s", parml_last_error());
    OK(parml_dataset_set_augmentation(flat, NULL)); /* off: fine for any dataset */

    /* The refusals left crop 1 + flip on d: serial, dp 2 and pp 2 fit the
     * same images (bit for bit in deterministic mode), unlike no augmentation. */
    float serial[CONV_P], p[CONV_P], none[CONV_P];
    conv_fit(d, 1, 1, serial);
    conv_fit(plain, 1, 1, none);
    CHECK(memcmp(serial, none, sizeof serial) != 0, "augmentation changed nothing");
    conv_fit(d, 2, 1, p);
    CHECK(memcmp(p, serial, sizeof p) == 0, "dp=2 fit other images or sums than serial");
    conv_fit(d, 1, 2, p);
    CHECK(memcmp(p, serial, sizeof p) == 0, "pp=2 fit other images or sums than serial");
    /* Evaluation sees the images unchanged. */
    parml_model m = NULL;
    parml_trainer tr = conv_trainer(1, 1, 1, &m);
    float l1 = 0, l2 = 0, a1 = 0, a2 = 0;
    OK(parml_trainer_evaluate(tr, d, 8, &l1, &a1));
    OK(parml_trainer_evaluate(tr, plain, 8, &l2, &a2));
    CHECK(l1 == l2 && a1 == a2, "evaluate: %g/%g on the augmented dataset, %g/%g without", l1, a1, l2, a2);
    parml_trainer_free(tr);
    parml_model_free(m);
    parml_dataset_free(flat);
    parml_dataset_free(d);
    parml_dataset_free(plain);
    parml_tensor_free(txt);
    parml_tensor_free(tyt);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

/* The plan of a cross-entropy trainer for `m` laid out by `s` (free it
 * with parml_buffer_free). */
static char *plan_text(parml_model m, const parml_strategy_params *s) {
    parml_trainer tr = NULL;
    char *text = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, s, &tr));
    OK(parml_trainer_plan(tr, &text));
    parml_trainer_free(tr);
    return text;
}

static void test_split_classifier(void) {
    enum { P = TOY_D * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2 };
    float serial[P], p[P];
    toy_train(toy_deep_model(), 1, 1, 1, 0, serial, P);
    toy_train(toy_deep_model(), 1, 1, 2, 1, p, P);
    check_near_serial(p, serial, P, "tp=2, split classifier");
    toy_train(toy_deep_model(), 2, 1, 2, 1, p, P);
    check_near_serial(p, serial, P, "dp=2 tp=2, split classifier");

    parml_model m = toy_deep_model();
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.tp = 2;
    s.split_classifier = 1;
    char *text = plan_text(m, &s);
    CHECK(text && strstr(text, "column-parallel classifier linear(16→2), 1 classes per rank") && strstr(text, "logits stay sharded"),
          "plan text:\n%s", text ? text : "(null)");
    parml_buffer_free(text);
    parml_trainer tr = NULL;
    CHECK(parml_trainer_create(m, PARML_LOSS_MSE, NULL, &s, &tr) == PARML_ERR_INVALID_ARGUMENT &&
              strstr(parml_last_error(), "cross-entropy"),
          "split classifier with MSE: %s", parml_last_error());
    /* A host built against the 0.1 struct (no split_classifier) still
     * works: whatever follows its end is not read. */
    parml_strategy_params old;
    memset(&old, 0x5A, sizeof old);
    OK(parml_strategy_params_init(&old));
    old.tp = 2;
    memset(&old.split_classifier, 0x5A, sizeof old.split_classifier);
    old.struct_size = offsetof(parml_strategy_params, split_classifier);
    text = plan_text(m, &old);
    CHECK(text && strstr(text, "logits are whole"), "0.1 struct: plan text:\n%s", text ? text : "(null)");
    parml_buffer_free(text);
    old.struct_size += 4;
    CHECK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &old, &tr) == PARML_ERR_INVALID_ARGUMENT,
          "a struct_size inside split_classifier is refused");
    /* The 0.2 struct ends before virtual_stages: it is not read. */
    OK(parml_strategy_params_init(&old));
    old.tp = 2;
    old.split_classifier = 1;
    memset(&old.virtual_stages, 0x5A, sizeof old.virtual_stages);
    old.struct_size = offsetof(parml_strategy_params, virtual_stages);
    text = plan_text(m, &old);
    CHECK(text && strstr(text, "logits stay sharded"), "0.2 struct: plan text:\n%s", text ? text : "(null)");
    parml_buffer_free(text);
    parml_model_free(m);
}

/* The plan names the mesh, each stage's layers and each rank. */
static void test_plan(void) {
    parml_model m = build_full_model();
    OK(parml_model_init(m, 1));
    parml_strategy_params s;
    OK(parml_strategy_params_init(&s));
    s.dp = 2;
    s.pp = 2;
    s.micro_batches = 4;
    s.zero_stage = 1;
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, &s, &tr));
    char *text = NULL;
    OK(parml_trainer_plan(tr, &text));
    CHECK(text && strstr(text, "dp 2") && strstr(text, "pp 2") && strstr(text, "stage 1: layers") &&
              strstr(text, "rank 3 (dp 1, stage 1") && strstr(text, "1F1B") && strstr(text, "reduce-scatter"),
          "plan text:\n%s", text ? text : "(null)");
    parml_buffer_free(text);

    /* A timeline of two steps, written as Chrome trace JSON. */
    int64_t xd[3] = {16, 3, 4}, yd[1] = {16};
    float x[192], y[16];
    for (int i = 0; i < 192; i++) x[i] = cosf((float)i * 0.3f);
    for (int i = 0; i < 16; i++) y[i] = (float)(i % 3);
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 3, x, &xt));
    OK(parml_tensor_create(yd, 1, y, &yt));
    OK(parml_trainer_set_trace(tr, 1));
    for (int i = 0; i < 2; i++) OK(parml_trainer_step(tr, xt, yt, NULL));
    char path[] = "/tmp/parml-trace-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    OK(parml_trainer_write_trace(tr, path));
    FILE *f = fopen(path, "r");
    static char json[1 << 20];
    size_t n = f ? fread(json, 1, sizeof json - 1, f) : 0;
    json[n] = 0;
    if (f) fclose(f);
    CHECK(strncmp(json, "{\"displayTimeUnit\"", 18) == 0 && strstr(json, "\"forward mb 3\"") &&
              strstr(json, "rank 3 (dp 1, stage 1)") && strstr(json, "recv (waiting)"),
          "trace file starts %.60s", json);
    OK(parml_trainer_set_trace(tr, 0));
    /* On threads every replica is in this process: all rows. */
    int64_t row_start = -1, row_count = -1;
    OK(parml_trainer_data_rows(tr, 16, &row_start, &row_count));
    CHECK(row_start == 0 && row_count == 16, "threads data rows %lld+%lld", (long long)row_start, (long long)row_count);
    /* The memory report: activations after steps; a 0.1-sized struct gets
     * the 0.1 fields and nothing past them. */
    parml_memory_report full = {.struct_size = sizeof full}, old;
    OK(parml_trainer_memory(tr, 3, &full));
    CHECK(full.activation_bytes > 0 && full.parameter_bytes > 0, "rank 3 activations %lld bytes",
          (long long)full.activation_bytes);
    memset(&old, 0x5A, sizeof old);
    old.struct_size = offsetof(parml_memory_report, activation_bytes);
    OK(parml_trainer_memory(tr, 3, &old));
    int64_t untouched;
    memset(&untouched, 0x5A, sizeof untouched);
    CHECK(old.scratch_bytes == full.scratch_bytes && old.activation_bytes == untouched &&
              old.struct_size == offsetof(parml_memory_report, activation_bytes),
          "a 0.1 caller's report is filled up to scratch_bytes only");
    CHECK(parml_trainer_write_trace(tr, "/nonexistent-dir/trace.json") == PARML_ERR_IO, "unwritable path is an I/O error");
    unlink(path);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_trainer_free(tr);
    parml_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* OpenBLAS                                                                  */
/* ------------------------------------------------------------------------ */

static int cpuinfo_has_avx512(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[8192];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0) continue;
        const char *need[] = {" avx512f", " avx512bw", " avx512vl", " avx512dq"};
        found = 1;
        for (int i = 0; i < 4; i++) {
            const char *p = line;
            int hit = 0;
            size_t len = strlen(need[i]);
            while ((p = strstr(p, need[i])) != NULL) {
                char after = p[len];
                if (after == ' ' || after == '\n' || after == 0) {
                    hit = 1;
                    break;
                }
                p += len;
            }
            found &= hit;
        }
        break;
    }
    fclose(f);
    return found;
}

/* The OpenBLAS kernels this process's CPU calls for, from CPUID and the
   registers the OS enables (XCR0), worked out here independently of parml:
   "SkylakeX" with AVX-512 F/DQ/BW/VL, "Haswell" with AVX2 and FMA, NULL
   otherwise. Under valgrind CPUID is virtualised (no AVX-512), so parml then
   rightly picks Haswell, and so does this. */
static const char *cpuid_expected_core(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return NULL;
    int fma = (c >> 12) & 1;
    if (!((c >> 27) & 1)) return NULL; /* no OSXSAVE: no AVX state */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    unsigned long long xcr0 = ((unsigned long long)hi << 32) | lo;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return NULL;
    int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);
    if (avx512 && (xcr0 & 0xe6) == 0xe6) return "SkylakeX";
    if (((b >> 5) & 1) && fma && (xcr0 & 0x6) == 0x6) return "Haswell";
    return NULL;
}

static void test_blas(void) {
    const char *core = NULL;
    OK(parml_blas_core(&core));
    CHECK(core != NULL && core[0] != 0, "blas core '%s'", core ? core : "(null)");
    const char *again = NULL;
    OK(parml_blas_core(&again));
    CHECK(again == core || (again && core && strcmp(again, core) == 0), "stable core name");
    const char *env = getenv("OPENBLAS_CORETYPE");
    const char *expected = cpuid_expected_core();
    if (env && env[0]) {
        /* The user's choice wins (run_c_tests.sh runs this with OPENBLAS_CORETYPE=Haswell). */
        CHECK(core && strcasecmp(core, env) == 0, "OPENBLAS_CORETYPE=%s: core '%s'", env, core ? core : "(null)");
        printf("note: OPENBLAS_CORETYPE=%s; core is '%s'\n", env, core ? core : "(null)");
    } else if (expected) {
        CHECK(core && strcmp(core, expected) == 0, "CPUID calls for %s kernels (/proc/cpuinfo: %s AVX-512); core is '%s'",
              expected, cpuinfo_has_avx512() ? "with" : "without", core ? core : "(null)");
        if (strcmp(expected, "SkylakeX") != 0 && cpuinfo_has_avx512())
            printf("note: /proc/cpuinfo has AVX-512 but CPUID here does not (valgrind?); %s checked\n", expected);
    } else {
        /* An optional skip: counted in run_c_tests.sh's summary line. */
        printf("skip: CPU has neither AVX-512 nor AVX2+FMA; OpenBLAS's own choice '%s' not checked\n", core ? core : "(null)");
    }
    /* The process environment is the host's: parml restores it after loading. */
    const char *env_after = getenv("OPENBLAS_CORETYPE");
    CHECK((env == NULL) == (env_after == NULL), "OPENBLAS_CORETYPE left as it was");
    /* parml loads OpenBLAS with one thread and puts the host's setting back
       (run_c_tests.sh also runs this with OPENBLAS_NUM_THREADS=3). */
    const char *host_threads = getenv("OPENBLAS_NUM_THREADS");
    if (host_threads) printf("note: OPENBLAS_NUM_THREADS=%s after the load\n", host_threads);
    const char *expected_threads = getenv("PARML_TEST_OPENBLAS_NUM_THREADS");
    if (expected_threads)
        CHECK(host_threads && strcmp(expected_threads, host_threads) == 0, "OPENBLAS_NUM_THREADS left as it was ('%s', expected '%s')",
              host_threads ? host_threads : "(unset)", expected_threads);

    int32_t th = -1, saved = -1;
    OK(parml_blas_threads(&saved));
    CHECK(saved >= 1, "threads %d", (int)saved);
    OK(parml_blas_set_threads(1));
    OK(parml_blas_threads(&th));
    CHECK(th == 1, "set 1 -> %d", (int)th);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores >= 2) {
        OK(parml_blas_set_threads(2));
        OK(parml_blas_threads(&th));
        CHECK(th == 2, "set 2 -> %d", (int)th);
    }
    OK(parml_blas_set_threads(saved));
    OK(parml_blas_threads(&th));
    CHECK(th == saved, "restore %d -> %d", (int)saved, (int)th);
}

/* ------------------------------------------------------------------------ */
/* NULL frees                                                                */
/* ------------------------------------------------------------------------ */

static void test_null_frees(void) {
    parml_tensor_free(NULL);
    parml_model_free(NULL);
    parml_trainer_free(NULL);
    parml_dataset_free(NULL);
    parml_buffer_free(NULL);
    t_passed++; /* reaching here is the check */
}

/* The DP accountant: the issue's points as Google's dp-accounting 0.6.0
   computes them (q = 256/60000, delta = 1e-5), the inverse, and refusals
   that leave the output untouched. */
static void test_privacy_accounting(void) {
    const double q = 256.0 / 60000.0;
    const struct { double sigma; int64_t steps; double eps; } pts[] = {
        {1.12, 14062, 2.5185897836275464}, {0.6, 7031, 8.776576174145774}, {1.2, 2343, 0.9316224823355022}};
    for (size_t i = 0; i < sizeof pts / sizeof pts[0]; i++) {
        double eps = -1;
        OK(parml_privacy_epsilon(q, pts[i].sigma, pts[i].steps, 1e-5, &eps));
        CHECK(fabs(eps - pts[i].eps) < 1e-6, "sigma %g, %lld steps: epsilon %.9f, dp-accounting %.9f", pts[i].sigma,
              (long long)pts[i].steps, eps, pts[i].eps);
        double sigma = -1;
        OK(parml_privacy_noise_multiplier(pts[i].eps, q, pts[i].steps, 1e-5, &sigma));
        CHECK(fabs(sigma - pts[i].sigma) < 1e-4, "noise for epsilon %g: %.6f, expected %g", pts[i].eps, sigma, pts[i].sigma);
    }
    double out = 42;
    CHECK(parml_privacy_epsilon(0, 1, 10, 1e-5, &out) == PARML_ERR_INVALID_ARGUMENT && out == 42, "q = 0 accepted");
    CHECK(strstr(parml_last_error(), "sampling rate q") != NULL, "message: %s", parml_last_error());
    CHECK(parml_privacy_epsilon(0.1, -1, 10, 1e-5, &out) == PARML_ERR_INVALID_ARGUMENT && out == 42, "sigma < 0 accepted");
    CHECK(parml_privacy_epsilon(0.1, 1, -1, 1e-5, &out) == PARML_ERR_INVALID_ARGUMENT && out == 42, "steps < 0 accepted");
    CHECK(parml_privacy_epsilon(0.1, 1, 10, 1.0, &out) == PARML_ERR_INVALID_ARGUMENT && out == 42, "delta = 1 accepted");
    CHECK(parml_privacy_epsilon(0.1, 1, 10, 1e-5, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL epsilon_out accepted");
    CHECK(parml_privacy_noise_multiplier(0, 0.1, 10, 1e-5, &out) == PARML_ERR_INVALID_ARGUMENT && out == 42, "target 0 accepted");
    CHECK(parml_privacy_noise_multiplier(1, 0.1, 0, 1e-5, &out) == PARML_ERR_INVALID_ARGUMENT && out == 42, "0 steps accepted");
}

/* DP-SGD in the trainer: fit with Poisson sampling reports the accountant's
   epsilon per epoch (an older last_out without privacy_epsilon still
   works), parml_trainer_privacy_spent agrees, NULL params turn it off, and
   bad settings are refused with the trainer left as it was. */
static void test_private_training(void) {
    float x[TOY_N * TOY_D], y[TOY_N];
    parml_tensor xt = NULL, yt = NULL;
    toy_tensors(x, y, &xt, &yt);
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    parml_model m = toy_model(5);
    parml_trainer tr = NULL;
    OK(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, NULL, NULL, &tr));
    double eps = -1;
    OK(parml_trainer_privacy_spent(tr, 1e-5, &eps));
    CHECK(eps == 0, "epsilon before any private step: %g", eps);

    parml_privacy_params p;
    OK(parml_privacy_params_init(&p));
    CHECK(p.struct_size == sizeof p && p.noise_multiplier == 1 && p.max_grad_norm == 1 && p.delta == 1e-5
              && p.sampling == PARML_SAMPLING_POISSON, "privacy defaults");
    p.noise_multiplier = 1.1;
    OK(parml_trainer_set_privacy(tr, &p));
    parml_fit_params f;
    OK(parml_fit_params_init(&f));
    f.epochs = 2;
    f.batch_size = 16; /* 64 samples: q = 1/4, 4 batches an epoch */
    parml_epoch_metrics last;
    memset(&last, 0, sizeof last);
    last.struct_size = sizeof last;
    OK(parml_trainer_fit(tr, d, &f, &last));
    double want = -1;
    OK(parml_privacy_epsilon(16.0 / TOY_N, 1.1, 2 * ((TOY_N + 15) / 16), 1e-5, &want));
    CHECK(fabs(last.privacy_epsilon - want) < 1e-9 * want, "fit's epsilon %g, accountant's %g", last.privacy_epsilon, want);
    OK(parml_trainer_privacy_spent(tr, 1e-5, &eps));
    CHECK(eps == last.privacy_epsilon, "privacy_spent %g vs fit's %g", eps, last.privacy_epsilon);

    /* A caller built before privacy_epsilon: its smaller struct is filled up to its end. */
    unsigned char older[sizeof(parml_epoch_metrics)];
    memset(older, 0xAB, sizeof older);
    ((parml_epoch_metrics *)older)->struct_size = offsetof(parml_epoch_metrics, privacy_epsilon);
    f.epochs = 1;
    OK(parml_trainer_fit(tr, d, &f, (parml_epoch_metrics *)older));
    CHECK(older[offsetof(parml_epoch_metrics, privacy_epsilon)] == 0xAB, "wrote past an older struct_size");

    /* Refusals leave the settings as they were. */
    parml_privacy_params bad = p;
    bad.noise_multiplier = -1;
    CHECK(parml_trainer_set_privacy(tr, &bad) == PARML_ERR_INVALID_ARGUMENT, "negative sigma accepted");
    CHECK(strstr(parml_last_error(), "noise_multiplier") != NULL, "message: %s", parml_last_error());
    bad = p;
    bad.max_grad_norm = 0;
    CHECK(parml_trainer_set_privacy(tr, &bad) == PARML_ERR_INVALID_ARGUMENT, "max_grad_norm 0 accepted");
    bad = p;
    bad.sampling = 7;
    CHECK(parml_trainer_set_privacy(tr, &bad) == PARML_ERR_INVALID_ARGUMENT, "sampling 7 accepted");
    bad = p;
    bad.struct_size = 8;
    CHECK(parml_trainer_set_privacy(tr, &bad) == PARML_ERR_INVALID_ARGUMENT, "struct_size 8 accepted");
    CHECK(parml_trainer_set_privacy(NULL, &p) == PARML_ERR_INVALID_ARGUMENT, "NULL trainer accepted");
    CHECK(parml_trainer_privacy_spent(tr, 0, &eps) == PARML_ERR_INVALID_ARGUMENT, "delta 0 accepted");
    CHECK(parml_trainer_privacy_spent(tr, 1e-5, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL epsilon_out accepted");

    /* Off again: steps no longer count. */
    OK(parml_trainer_privacy_spent(tr, 1e-5, &want));
    OK(parml_trainer_set_privacy(tr, NULL));
    OK(parml_trainer_step(tr, xt, yt, NULL));
    OK(parml_trainer_privacy_spent(tr, 1e-5, &eps));
    CHECK(eps == want, "a step after turning privacy off changed epsilon: %g -> %g", want, eps);
    parml_trainer_free(tr);
    parml_model_free(m);
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
}

int main(void) {
    test_freed_handle_never_aliases();
    test_version_and_status();
    test_last_error_per_thread();
    test_tensors();
    test_param_defaults();
    test_full_model();
    test_layers_by_kind_name();
    test_generate();
    test_integer_tensors();
    test_predict_by_hand();
    test_dataset_create();
    test_dataset_idx();
    test_step_and_evaluate();
    test_mse();
    test_schedules();
    test_fit();
    test_determinism();
    test_data_parallel();
    test_determinism_with_default_threads();
    test_parameters_by_name();
    test_deterministic_against_references();
    test_nonfinite_steps_are_skipped();
    test_plan();
    test_tensor_parallel();
    test_conv_tensor_parallel();
    test_augmentation();
    test_split_classifier();
    test_interleaved_refusals();
    test_blas();
    test_privacy_accounting();
    test_private_training();
    test_null_frees();
    rmdir(scratch_dir());
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
