/*
 * make_seeds.c — writes the committed seed corpora of the fuzz targets:
 *   corpus/fuzz_idx/       valid image/label pairs (ubyte, other element
 *                          types, gzip), truncated, over-long and corrupt ones
 *   corpus/fuzz_strategy/  valid layouts and optimizers on small models, and
 *                          a few invalid ones
 *   corpus/fuzz_files/     model, tensor and checkpoint buffers, whole and
 *                          as bodies for the harness to seal, and damaged ones
 *   corpus/fuzz_formats/   .npy pairs of several dtypes, .npz archives (stored
 *                          and deflated), CSV tables, and broken ones
 * Usage: make_seeds DIR   (DIR = tests/fuzz/corpus; `make fuzz-seeds` runs it).
 * Needs zlib only for the gzip seeds (linked with -lz).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "fuzz_files_input.h"
#include "fuzz_strategy_input.h"

static const char *root;

static void write_seed(const char *target, const char *name, const void *bytes, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(bytes, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ------------------------------------------------------------------------ */
/* IDX                                                                       */
/* ------------------------------------------------------------------------ */

struct buf {
    uint8_t b[4096];
    size_t n;
};

static void be32(struct buf *o, uint32_t v) {
    o->b[o->n++] = (uint8_t)(v >> 24);
    o->b[o->n++] = (uint8_t)(v >> 16);
    o->b[o->n++] = (uint8_t)(v >> 8);
    o->b[o->n++] = (uint8_t)v;
}

/* An IDX file: type byte, dims, then `payload` bytes of element data (a pattern). */
static struct buf idx(uint8_t type, int rank, const uint32_t *dims, size_t payload) {
    struct buf o = {{0}, 0};
    o.b[o.n++] = 0;
    o.b[o.n++] = 0;
    o.b[o.n++] = type;
    o.b[o.n++] = (uint8_t)rank;
    for (int i = 0; i < rank; i++) be32(&o, dims[i]);
    for (size_t i = 0; i < payload && o.n < sizeof o.b; i++) o.b[o.n++] = (uint8_t)(i * 31 % 251);
    return o;
}

/* Labels 0..k-1 repeating, as ubyte. */
static struct buf labels(uint32_t n, int k) {
    uint32_t d[1] = {n};
    struct buf o = idx(0x08, 1, d, 0);
    for (uint32_t i = 0; i < n; i++) o.b[o.n++] = (uint8_t)(i % (uint32_t)k);
    return o;
}

/* `in` deflated with zlib's window_bits: 15 + 16 a gzip file, -15 raw. */
static struct buf deflated(const struct buf *in, int window_bits) {
    struct buf o = {{0}, 0};
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(1);
    z.next_in = (Bytef *)in->b;
    z.avail_in = (uInt)in->n;
    z.next_out = o.b;
    z.avail_out = sizeof o.b;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) exit(1);
    o.n = sizeof o.b - z.avail_out;
    deflateEnd(&z);
    return o;
}

static struct buf gz(const struct buf *in) { return deflated(in, 15 + 16); }

/* A fuzz_idx input: images length (2 bytes LE), images, labels. */
static void idx_pair(const char *name, const struct buf *images, const struct buf *lab) {
    static uint8_t out[2 + 2 * 4096];
    out[0] = (uint8_t)images->n;
    out[1] = (uint8_t)(images->n >> 8);
    memcpy(out + 2, images->b, images->n);
    memcpy(out + 2 + images->n, lab->b, lab->n);
    write_seed("fuzz_idx", name, out, 2 + images->n + lab->n);
}

static void idx_seeds(void) {
    uint32_t d3[3] = {4, 3, 3}, d2[2] = {4, 5}, d4[4] = {2, 2, 2, 2};
    struct buf l4 = labels(4, 3), l2 = labels(2, 2);
    struct buf img = idx(0x08, 3, d3, 36);
    idx_pair("valid_ubyte_4x3x3", &img, &l4);
    struct buf f32 = idx(0x0D, 2, d2, 80);
    idx_pair("valid_float32_4x5", &f32, &l4);
    struct buf i16 = idx(0x0B, 2, d2, 40);
    idx_pair("valid_int16_4x5", &i16, &l4);
    struct buf i32 = idx(0x0C, 2, d2, 80);
    idx_pair("valid_int32_4x5", &i32, &l4);
    struct buf f64 = idx(0x0E, 4, d4, 128);
    idx_pair("valid_float64_2x2x2x2", &f64, &l2);
    struct buf s8 = idx(0x09, 2, d2, 20);
    idx_pair("valid_sbyte_4x5", &s8, &l4);
    struct buf zi = gz(&img), zl = gz(&l4);
    idx_pair("valid_gzip_both", &zi, &zl);
    idx_pair("valid_gzip_images", &zi, &l4);
    /* Broken ones. */
    struct buf cut = img;
    cut.n -= 5;
    idx_pair("truncated_payload", &cut, &l4);
    cut.n = 10;
    idx_pair("truncated_in_dims", &cut, &l4);
    struct buf zcut = zi;
    zcut.n -= 9;
    idx_pair("truncated_gzip", &zcut, &l4);
    struct buf longer = img;
    longer.b[longer.n++] = 7;
    idx_pair("trailing_byte", &longer, &l4);
    struct buf l3 = labels(3, 3);
    idx_pair("count_mismatch", &img, &l3);
    struct buf badlab = l4;
    badlab.b[badlab.n - 1] = 0xFF; /* still a class index (255) */
    idx_pair("label_255", &img, &badlab);
    struct buf fl = idx(0x0D, 1, (uint32_t[]){4}, 0);
    const uint8_t half[4] = {0x3F, 0x00, 0x00, 0x00}; /* 0.5: not a class index */
    for (int i = 0; i < 4; i++) memcpy(fl.b + fl.n + 4 * i, half, 4);
    fl.n += 16;
    idx_pair("label_not_integer", &img, &fl);
    struct buf badtype = img;
    badtype.b[2] = 0x0A;
    idx_pair("unknown_type", &badtype, &l4);
    uint32_t huge[3] = {0x7FFFFFFF, 0x7FFFFFFF, 4};
    struct buf big = idx(0x08, 3, huge, 8);
    idx_pair("huge_dims", &big, &l4);
    struct buf rank1 = idx(0x08, 1, (uint32_t[]){4}, 4);
    idx_pair("images_rank_1", &rank1, &l4);
    struct buf empty = {{0}, 0};
    idx_pair("empty_files", &empty, &empty);
}

/* ------------------------------------------------------------------------ */
/* Strategy / optimizer                                                      */
/* ------------------------------------------------------------------------ */

static void strategy_seed(const char *name, uint8_t flags, int32_t loss, const parml_optimizer_params *o,
                          const parml_strategy_params *s, const uint8_t *ops, size_t nops) {
    uint8_t out[FZ_MODEL_AT + 3 * FZ_MAX_OPS];
    memset(out, 0, sizeof out);
    out[0] = flags;
    out[1] = 0; /* sizeof */
    out[2] = 0;
    out[3] = 7; /* 8 rows */
    memcpy(out + 4, &loss, 4);
    uint64_t seed = 42;
    memcpy(out + 8, &seed, 8);
    memcpy(out + FZ_HEADER, (const uint8_t *)o + sizeof(size_t), FZ_OPT_BODY);
    memcpy(out + FZ_HEADER + FZ_OPT_BODY, (const uint8_t *)s + sizeof(size_t), FZ_STRAT_BODY);
    memcpy(out + FZ_MODEL_AT, ops, 3 * nops);
    write_seed("fuzz_strategy", name, out, FZ_MODEL_AT + 3 * nops);
}

static void strategy_seeds(void) {
    parml_optimizer_params o;
    parml_strategy_params s;
    /* 4 -> 8 -> relu -> residual(layer_norm 8, linear 8 -> 8, gelu, dropout) -> 3 */
    const uint8_t mlp[] = {FZ_LINEAR, 3, 7, FZ_ACTIVATION, 1, 0, FZ_BEGIN_RESIDUAL, 0, 0, FZ_LAYER_NORM, 7, 1,
                           FZ_LINEAR, 7, 7, FZ_ACTIVATION, 2, 0, FZ_DROPOUT, 20, 0, FZ_END_RESIDUAL, 0, 0};
    const uint8_t small[] = {FZ_LINEAR, 3, 2, FZ_ACTIVATION, 3, 0, FZ_LINEAR, 2, 2};
    const uint8_t flat[] = {FZ_FLATTEN, 0, 0, FZ_LINEAR, 3, 2};
    const uint8_t mse[] = {FZ_LINEAR, 3, 0x80 | 1, FZ_ACTIVATION, 4, 0, FZ_LINEAR, 1, 0};
    const size_t n_mlp = sizeof mlp / 3, n_small = sizeof small / 3;

    parml_optimizer_params_init(&o);
    parml_strategy_params_init(&s);
    strategy_seed("serial_sgd", 0, PARML_LOSS_CROSS_ENTROPY, &o, &s, small, n_small);
    strategy_seed("defaults_null_structs", 3, PARML_LOSS_CROSS_ENTROPY, &o, &s, small, n_small);
    strategy_seed("flatten_first", 0, PARML_LOSS_CROSS_ENTROPY, &o, &s, flat, 2);
    strategy_seed("mse", 4, PARML_LOSS_MSE, &o, &s, mse, 3);
    strategy_seed("uninitialised_model", 8, PARML_LOSS_CROSS_ENTROPY, &o, &s, small, n_small);

    o.kind = PARML_OPTIMIZER_SGD;
    o.momentum = 0.9f;
    o.nesterov = 1;
    o.schedule = PARML_SCHEDULE_STEP;
    o.step_size = 1;
    s.dp = 2;
    strategy_seed("dp2_nesterov_step_schedule", 4, PARML_LOSS_CROSS_ENTROPY, &o, &s, mlp, n_mlp);

    parml_optimizer_params_init(&o);
    o.kind = PARML_OPTIMIZER_ADAMW;
    o.clip_grad_norm = 0.5f;
    o.schedule = PARML_SCHEDULE_COSINE;
    o.warmup_steps = 1;
    o.total_steps = 4;
    for (int zero = 1; zero <= 3; zero++) {
        char name[64];
        parml_strategy_params_init(&s);
        s.dp = 1 + zero;
        s.zero_stage = zero;
        s.bucket_bytes = 64;
        snprintf(name, sizeof name, "dp%d_zero%d_adamw_clip", 1 + zero, zero);
        strategy_seed(name, 4, PARML_LOSS_CROSS_ENTROPY, &o, &s, mlp, n_mlp);
    }
    /* 4 -> 8 -> relu -> residual(layer_norm 8, linear 8 -> 8) -> 4 classes, split over tp 2 */
    const uint8_t classified[] = {FZ_LINEAR, 3, 7, FZ_ACTIVATION, 1, 0, FZ_BEGIN_RESIDUAL, 0, 0, FZ_LAYER_NORM, 7, 1,
                                  FZ_LINEAR, 7, 7, FZ_END_RESIDUAL, 0, 0, FZ_LINEAR, 7, 3};
    parml_strategy_params_init(&s);
    s.tp = 2;
    s.split_classifier = 1;
    strategy_seed("tp2_split_classifier", 4, PARML_LOSS_CROSS_ENTROPY, &o, &s, classified, sizeof classified / 3);
    parml_strategy_params_init(&s);
    s.dp = 3;
    s.deterministic = 1;
    s.grad_chunk = 2;
    s.zero_stage = 2;
    strategy_seed("dp3_deterministic_chunk2", 4, PARML_LOSS_CROSS_ENTROPY, &o, &s, mlp, n_mlp);

    parml_optimizer_params_init(&o);
    o.kind = PARML_OPTIMIZER_ADAM;
    o.weight_decay = 0.01f;
    parml_strategy_params_init(&s);
    s.tp = 2;
    s.pp = 2;
    s.micro_batches = 4;
    s.backend = PARML_BACKEND_MPI;
    strategy_seed("unsupported_tp_pp_mpi", 0, PARML_LOSS_CROSS_ENTROPY, &o, &s, small, n_small);
    parml_strategy_params_init(&s);
    s.watchdog_seconds = -1;
    s.zero_stage = 4;
    strategy_seed("invalid_watchdog_zero", 0, PARML_LOSS_CROSS_ENTROPY, &o, &s, small, n_small);
    parml_optimizer_params_init(&o);
    o.learning_rate = -1;
    o.beta1 = 1.5f;
    parml_strategy_params_init(&s);
    strategy_seed("invalid_optimizer", 0, 3, &o, &s, small, n_small);
    /* struct_size too small (an old host) */
    parml_optimizer_params_init(&o);
    uint8_t out[FZ_MODEL_AT + 9];
    memset(out, 0, sizeof out);
    out[1] = 0xF1; /* struct_size 8 */
    out[2] = 0xF3; /* struct_size 24 */
    out[4] = 1;
    memcpy(out + FZ_HEADER, (const uint8_t *)&o + sizeof(size_t), FZ_OPT_BODY);
    memcpy(out + FZ_MODEL_AT, small, 9);
    write_seed("fuzz_strategy", "small_struct_sizes", out, sizeof out);
}

/* ------------------------------------------------------------------------ */
/* Files                                                                     */
/* ------------------------------------------------------------------------ */

/* kind byte + bytes; with `sealed`, the bytes without their crc32 field
   (the harness appends it). */
static void files_seed(const char *name, int kind, const void *bytes, size_t n) {
    uint8_t *out = malloc(n + 1);
    if (!out) exit(1);
    out[0] = (uint8_t)kind;
    memcpy(out + 1, bytes, n);
    write_seed("fuzz_files", name, out, n + 1);
    free(out);
}

static void check_ok(parml_status st, const char *what) {
    if (st != PARML_OK) {
        fprintf(stderr, "make_seeds: %s: %s\n", what, parml_last_error());
        exit(1);
    }
}

/* Every layer kind, nested residual blocks. */
static parml_model every_kind_model(void) {
    parml_model m = NULL;
    check_ok(parml_model_create(&m), "model_create");
    check_ok(parml_model_add_flatten(m), "flatten");
    check_ok(parml_model_add_linear(m, 4, 5, 1), "linear");
    check_ok(parml_model_add_activation(m, PARML_ACTIVATION_GELU), "gelu");
    check_ok(parml_model_begin_residual(m), "begin");
    check_ok(parml_model_add_layer_norm(m, 5, 1e-3f), "layer_norm");
    check_ok(parml_model_begin_residual(m), "begin");
    check_ok(parml_model_add_linear(m, 5, 5, 0), "linear");
    check_ok(parml_model_add_activation(m, PARML_ACTIVATION_TANH), "tanh");
    check_ok(parml_model_end_residual(m), "end");
    check_ok(parml_model_add_dropout(m, 0.5f), "dropout");
    check_ok(parml_model_end_residual(m), "end");
    check_ok(parml_model_add_activation(m, PARML_ACTIVATION_SIGMOID), "sigmoid");
    check_ok(parml_model_add_activation(m, PARML_ACTIVATION_RELU), "relu");
    check_ok(parml_model_init(m, 3), "init");
    return m;
}

static void model_seeds(const char *name, parml_model m) {
    void *buf = NULL;
    size_t len = 0;
    char n[128];
    check_ok(parml_model_serialize(m, &buf, &len), "model_serialize");
    snprintf(n, sizeof n, "model_%s", name);
    files_seed(n, FF_MODEL, buf, len);
    snprintf(n, sizeof n, "model_%s_body", name);
    files_seed(n, FF_MODEL_SEALED, buf, len - 5);
    snprintf(n, sizeof n, "model_%s_truncated", name);
    files_seed(n, FF_MODEL, buf, len / 2);
    parml_buffer_free(buf);
}

static void files_seeds(void) {
    parml_model m = ff_model(), every = every_kind_model();
    model_seeds("ff", m);
    model_seeds("every_kind", every);

    int64_t dims[3] = {2, 3, 2};
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = (float)i / 3;
    parml_tensor t = NULL, empty = NULL;
    check_ok(parml_tensor_create(dims, 3, x, &t), "tensor_create");
    int64_t zero[2] = {0, 7};
    check_ok(parml_tensor_create(zero, 2, NULL, &empty), "tensor_create");
    void *buf = NULL;
    size_t len = 0;
    check_ok(parml_tensor_serialize(t, &buf, &len), "tensor_serialize");
    files_seed("tensor_2x3x2", FF_TENSOR, buf, len);
    parml_buffer_free(buf);
    check_ok(parml_tensor_serialize(empty, &buf, &len), "tensor_serialize");
    files_seed("tensor_0x7", FF_TENSOR, buf, len);
    parml_buffer_free(buf);

    parml_trainer tr = ff_trainer(m);
    int64_t xd[2] = {8, 4}, yd[1] = {8};
    float xs[32], ys[8];
    for (int i = 0; i < 32; i++) xs[i] = (float)(i % 5) - 2;
    for (int i = 0; i < 8; i++) ys[i] = (float)(i % 3);
    parml_tensor xt = NULL, yt = NULL;
    check_ok(parml_tensor_create(xd, 2, xs, &xt), "x");
    check_ok(parml_tensor_create(yd, 1, ys, &yt), "y");
    check_ok(parml_trainer_step(tr, xt, yt, NULL), "step");
    check_ok(parml_trainer_serialize_checkpoint(tr, &buf, &len), "serialize_checkpoint");
    files_seed("checkpoint_adamw", FF_CHECKPOINT, buf, len);
    files_seed("checkpoint_adamw_body", FF_CHECKPOINT_SEALED, buf, len - 5);
    parml_buffer_free(buf);

    parml_optimizer_params o;
    parml_optimizer_params_init(&o);
    o.momentum = 0.9f;
    parml_trainer sgd = NULL;
    check_ok(parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, NULL, &sgd), "trainer_create");
    check_ok(parml_trainer_serialize_checkpoint(sgd, &buf, &len), "serialize_checkpoint");
    files_seed("checkpoint_sgd_momentum_body", FF_CHECKPOINT_SEALED, buf, len - 5);
    parml_buffer_free(buf);

    parml_trainer_free(tr);
    parml_trainer_free(sgd);
    parml_tensor_free(t);
    parml_tensor_free(empty);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    parml_model_free(m);
    parml_model_free(every);
}


/* ------------------------------------------------------------------------ */
/* .npy, .npz, CSV                                                           */
/* ------------------------------------------------------------------------ */

/* A .npy v1 image: magic, version, header length, the dict padded to a
 * multiple of 64 bytes, then `payload` bytes (a pattern, or `bytes`). */
static struct buf npy_order(const char *descr, int fortran, const char *shape, size_t payload, const uint8_t *bytes) {
    struct buf o = {{0}, 0};
    char dict[160];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                       fortran ? "True" : "False", shape);
    size_t padded = (10 + (size_t)len + 1 + 63) / 64 * 64;
    memcpy(o.b, "\x93NUMPY\x01\x00", 8);
    o.b[8] = (uint8_t)(padded - 10);
    o.b[9] = (uint8_t)((padded - 10) >> 8);
    memcpy(o.b + 10, dict, (size_t)len);
    memset(o.b + 10 + len, ' ', padded - 11 - (size_t)len);
    o.b[padded - 1] = '\n';
    o.n = padded;
    for (size_t i = 0; i < payload; i++) o.b[o.n++] = bytes ? bytes[i] : (uint8_t)(i * 29 % 61);
    return o;
}

static struct buf npy(const char *descr, const char *shape, size_t payload, const uint8_t *bytes) {
    return npy_order(descr, 0, shape, payload, bytes);
}

/* A fuzz_formats input: the reader byte, then that reader's bytes. */
static void formats_seed(const char *name, int mode, const struct buf *a, const struct buf *b) {
    static uint8_t out[3 + 2 * 4096];
    size_t n = 0;
    out[n++] = (uint8_t)mode;
    if (mode == 0) {
        out[n++] = (uint8_t)a->n;
        out[n++] = (uint8_t)(a->n >> 8);
    }
    memcpy(out + n, a->b, a->n);
    n += a->n;
    if (b) {
        memcpy(out + n, b->b, b->n);
        n += b->n;
    }
    write_seed("fuzz_formats", name, out, n);
}

static void le16(struct buf *o, unsigned v) {
    o->b[o->n++] = (uint8_t)v;
    o->b[o->n++] = (uint8_t)(v >> 8);
}

static void le32(struct buf *o, uint32_t v) {
    le16(o, v & 0xFFFF);
    le16(o, v >> 16);
}

/* Raw deflate (as zip stores it) of `in`: gz's deflate without the gzip wrapper. */
static struct buf raw_deflate(const struct buf *in) { return deflated(in, -15); }

/* The fields a zip local header and central entry share: version needed,
 * flags, method, time, CRC, sizes, name length 5, extra length 0; then
 * the name, when given (the central entry puts more fields before it). */
static void zip_fields(struct buf *o, int compress, uint32_t crc, uint32_t packed, uint32_t size, const char *name) {
    le16(o, 20);
    le16(o, 0);
    le16(o, compress ? 8 : 0);
    le32(o, 0);
    le32(o, crc);
    le32(o, packed);
    le32(o, size);
    le16(o, 5);
    le16(o, 0);
    if (name) {
        memcpy(o->b + o->n, name, 5);
        o->n += 5;
    }
}

/* A zip of members x.npy and y.npy, stored or deflated. */
static struct buf npz(const struct buf *x, const struct buf *y, int compress) {
    struct buf o = {{0}, 0};
    const struct buf *plain[2] = {x, y};
    const char *names[2] = {"x.npy", "y.npy"};
    uint32_t offsets[2], crcs[2], sizes[2];
    struct buf packed[2];
    for (int i = 0; i < 2; i++) {
        packed[i] = compress ? raw_deflate(plain[i]) : *plain[i];
        crcs[i] = (uint32_t)crc32(0, plain[i]->b, (uInt)plain[i]->n);
        sizes[i] = (uint32_t)plain[i]->n;
        offsets[i] = (uint32_t)o.n;
        le32(&o, 0x04034b50);
        zip_fields(&o, compress, crcs[i], (uint32_t)packed[i].n, sizes[i], names[i]);
        memcpy(o.b + o.n, packed[i].b, packed[i].n);
        o.n += packed[i].n;
    }
    uint32_t dir = (uint32_t)o.n;
    for (int i = 0; i < 2; i++) {
        /* The central entry: "made by" version, the local header's fields,
         * then comment length, disk, attributes and the local offset. */
        le32(&o, 0x02014b50);
        le16(&o, 20);
        zip_fields(&o, compress, crcs[i], (uint32_t)packed[i].n, sizes[i], NULL);
        for (int k = 0; k < 3; k++) le16(&o, 0);
        le32(&o, 0);
        le32(&o, offsets[i]);
        memcpy(o.b + o.n, names[i], 5);
        o.n += 5;
    }
    uint32_t dir_size = (uint32_t)o.n - dir;
    le32(&o, 0x06054b50);
    le32(&o, 0);
    le16(&o, 2);
    le16(&o, 2);
    le32(&o, dir_size);
    le32(&o, dir);
    le16(&o, 0);
    return o;
}

static struct buf text(const char *t) {
    struct buf o = {{0}, 0};
    o.n = strlen(t);
    memcpy(o.b, t, o.n);
    return o;
}

static void formats_seeds(void) {
    const uint8_t y8[4] = {0, 1, 2, 1};
    struct buf x = npy("<f4", "(4, 3)", 48, NULL), y = npy("|u1", "(4,)", 4, y8);
    formats_seed("npy_float32_uint8", 0, &x, &y);
    struct buf xu8 = npy("|u1", "(4, 2, 2)", 16, NULL), y64 = npy("<i8", "(4,)", 32, NULL);
    formats_seed("npy_uint8_int64", 0, &xu8, &y64);
    struct buf xf16 = npy("<f2", "(4, 3)", 24, NULL), yf = npy("<f8", "(4, 2)", 64, NULL);
    formats_seed("npy_float16_float64", 0, &xf16, &yf);
    struct buf xb = npy("|b1", "(4, 1)", 4, y8), y32 = npy("<i4", "(4,)", 16, NULL);
    formats_seed("npy_bool_int32", 0, &xb, &y32);
    struct buf fortran = npy_order("<f4", 1, "(4, 3)", 48, NULL);
    formats_seed("npy_fortran", 0, &fortran, &y);
    struct buf cut = x;
    cut.n -= 7;
    formats_seed("npy_truncated", 0, &cut, &y);
    struct buf obj = npy("|O", "(4, 3)", 48, NULL);
    formats_seed("npy_object", 0, &obj, &y);
    struct buf stored = npz(&x, &y, 0), packed = npz(&x, &y, 1);
    formats_seed("npz_stored", 1, &stored, NULL);
    formats_seed("npz_deflated", 1, &packed, NULL);
    struct buf npz_cut = packed;
    npz_cut.n -= 30;
    formats_seed("npz_truncated", 1, &npz_cut, NULL);
    struct buf a = text("a,b,label\n1,2.5,0\n-3e2,4,1\n\n5,\"6\",2\r\n");
    formats_seed("csv_header", 2, &a, NULL);
    struct buf r = text("a,b,label\n1,2,0\n3,4\n");
    formats_seed("csv_ragged", 2, &r, NULL);
    struct buf w = text("a,b,label\n1,x,0\n");
    formats_seed("csv_word", 2, &w, NULL);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    root = argv[1];
    char path[1024];
    mkdir(root, 0755);
    snprintf(path, sizeof path, "%s/fuzz_idx", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/fuzz_strategy", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/fuzz_files", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/fuzz_formats", root);
    mkdir(path, 0755);
    idx_seeds();
    strategy_seeds();
    files_seeds();
    formats_seeds();
    return 0;
}
