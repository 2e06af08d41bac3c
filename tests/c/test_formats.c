/*
 * test_formats.c — datasets from .npy, .npz and CSV files and from borrowed
 * host memory, through the C API. Files are written here byte by byte (the
 * .npy v1 layout, a stored zip); a loaded dataset must give, bit for bit,
 * the evaluation loss of a dataset built with parml_dataset_create from the
 * values the conversion rule promises. Bad files return the documented
 * codes, name the problem, and leave *out untouched.
 * Prints "N passed, N failed"; exits nonzero on any failure.
 */
#include "test_common.h"

enum { N = 12, F = 3, C = 4 };

/* What *out holds before a call that must leave it untouched on failure. */
#define SENTINEL ((parml_dataset)(uintptr_t)0x5150)

static float xs[N][F];
static int64_t labels[N];

static void make_data(void) {
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < F; j++) xs[i][j] = (float)((i * 7 + j * 3) % 11) * 0.25f - 1.0f;
        labels[i] = (i * 5) % C;
    }
}

/* A .npy v1 file: magic, version 1.0, header length, the dict padded with
 * spaces to a multiple of 64 bytes (newline last), then `n` data bytes. */
static size_t npy_image(unsigned char *buf, const char *descr, int fortran, const char *shape, const void *data, size_t n) {
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                       fortran ? "True" : "False", shape);
    size_t header = 10 + (size_t)len + 1;
    size_t padded = (header + 63) / 64 * 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((padded - 10) & 0xFF);
    buf[9] = (unsigned char)((padded - 10) >> 8);
    memcpy(buf + 10, dict, (size_t)len);
    memset(buf + 10 + len, ' ', padded - 10 - (size_t)len - 1);
    buf[padded - 1] = '\n';
    if (n) memcpy(buf + padded, data, n);
    return padded + n;
}

static unsigned char file_buf[1 << 16];

static const char *write_npy(const char *name, const char *descr, int fortran, const char *shape, const void *data,
                             size_t n) {
    static char paths[32][256];
    static int next = 0;
    char *path = paths[next++ % 32];
    scratch_path(path, 256, name);
    size_t len = npy_image(file_buf, descr, fortran, shape, data, n);
    CHECK(write_file(path, file_buf, len) == 0, "writing %s", path);
    return path;
}

/* The evaluation loss of a fixed linear model (F -> C, or -> outputs) over d. */
static float loss_of(parml_dataset d, int loss_kind, int outputs) {
    parml_model m = NULL;
    OK(parml_model_create(&m));
    OK(parml_model_add_flatten(m));
    OK(parml_model_add_linear(m, F, outputs, 1));
    OK(parml_model_init(m, 3));
    parml_optimizer_params o;
    OK(parml_optimizer_params_init(&o));
    parml_trainer t = NULL;
    OK(parml_trainer_create(m, loss_kind, &o, NULL, &t));
    float loss = NAN;
    OK(parml_trainer_evaluate(t, d, 5, &loss, NULL));
    parml_trainer_free(t);
    parml_model_free(m);
    return loss;
}

/* The loss over a dataset made by parml_dataset_create from x (N, F) and labels. */
static float reference_loss(const float *x) {
    int64_t xd[2] = {N, F}, yd[1] = {N};
    parml_tensor xt = NULL, yt = NULL;
    OK(parml_tensor_create(xd, 2, x, &xt));
    OK(parml_tensor_create_typed(PARML_DTYPE_INT64, yd, 1, labels, &yt));
    parml_dataset d = NULL;
    OK(parml_dataset_create(xt, yt, &d));
    float loss = loss_of(d, PARML_LOSS_CROSS_ENTROPY, C);
    parml_dataset_free(d);
    parml_tensor_free(xt);
    parml_tensor_free(yt);
    return loss;
}

/* Loads x and y .npy files, expecting `want`; returns the status and frees a dataset. */
static parml_status npy_status(const char *x, const char *y, parml_status want, const char *phrase) {
    parml_dataset d = SENTINEL;
    parml_status st = parml_dataset_load_npy(x, y, &d);
    CHECK(st == want, "load_npy(%s) = %d, expected %d: %s", x, (int)st, (int)want, parml_last_error());
    if (st == PARML_OK) {
        parml_dataset_free(d);
    } else {
        CHECK(d == SENTINEL, "*out changed on failure");
        CHECK(strstr(parml_last_error(), phrase) != NULL, "message '%s' lacks '%s'", parml_last_error(), phrase);
    }
    return st;
}

static void test_npy(void) {
    float want = reference_loss(&xs[0][0]);
    int32_t y32[N];
    for (int i = 0; i < N; i++) y32[i] = (int32_t)labels[i];
    const char *y = write_npy("y.npy", "<i4", 0, "(12,)", y32, sizeof y32);
    const char *x = write_npy("x.npy", "<f4", 0, "(12, 3)", xs, sizeof xs);

    parml_dataset d = NULL;
    OK(parml_dataset_load_npy(x, y, &d));
    int64_t n = 0, classes = 0;
    OK(parml_dataset_size(d, &n));
    OK(parml_dataset_num_classes(d, &classes));
    CHECK(n == N && classes == C, "size %lld classes %lld", (long long)n, (long long)classes);
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == want, "float32 .npy gives the reference loss");
    parml_dataset_free(d);

    /* uint8 images are divided by 255, as IDX images are. */
    unsigned char u8[N][F];
    float scaled[N][F];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < F; j++) {
            u8[i][j] = (unsigned char)((i * 37 + j * 101) % 256);
            scaled[i][j] = (float)u8[i][j] / 255.0f;
        }
    x = write_npy("u8.npy", "|u1", 0, "(12, 1, 3)", u8, sizeof u8);
    y = write_npy("y64.npy", "<i8", 0, "(12,)", labels, sizeof labels);
    OK(parml_dataset_load_npy(x, y, &d));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == reference_loss(&scaled[0][0]), "uint8 / 255");
    parml_dataset_free(d);

    /* float64 rounds to float32; int16 is kept exact. */
    double f64[N][F];
    int16_t i16[N][F];
    float rounded[N][F], exact[N][F];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < F; j++) {
            f64[i][j] = (i - 6) * 0.1 + j * 0.01;
            rounded[i][j] = (float)f64[i][j];
            i16[i][j] = (int16_t)((i - 6) * 1000 + j);
            exact[i][j] = (float)i16[i][j];
        }
    x = write_npy("f64.npy", "<f8", 0, "(12, 3)", f64, sizeof f64);
    OK(parml_dataset_load_npy(x, y, &d));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == reference_loss(&rounded[0][0]), "float64 rounds to float32");
    parml_dataset_free(d);
    x = write_npy("i16.npy", "<i2", 0, "(12, 3)", i16, sizeof i16);
    OK(parml_dataset_load_npy(x, y, &d));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == reference_loss(&exact[0][0]), "int16 kept exact");
    parml_dataset_free(d);

    /* Refusals: each a clear error, nothing built. */
    const char *good_x = write_npy("gx.npy", "<f4", 0, "(12, 3)", xs, sizeof xs);
    npy_status(write_npy("t.npy", "<f4", 0, "(12, 3)", xs, sizeof xs - 4), y, PARML_ERR_FORMAT, "truncated");
    npy_status(write_npy("l.npy", "<f4", 0, "(13, 3)", xs, sizeof xs), y, PARML_ERR_FORMAT, "needs 156 data bytes");
    npy_status(write_npy("s.npy", "<f4", 0, "(11, 3)", xs, sizeof xs), y, PARML_ERR_FORMAT, "12 bytes after the data");
    npy_status(write_npy("fo.npy", "<f4", 1, "(12, 3)", xs, sizeof xs), y, PARML_ERR_UNSUPPORTED, "Fortran order");
    npy_status(write_npy("o.npy", "|O", 0, "(12, 3)", xs, sizeof xs), y, PARML_ERR_UNSUPPORTED, "object array");
    npy_status(write_npy("be.npy", ">f4", 0, "(12, 3)", xs, sizeof xs), y, PARML_ERR_UNSUPPORTED, "big-endian");
    npy_status(write_npy("c8.npy", "<c8", 0, "(12, 3)", xs, sizeof xs), y, PARML_ERR_UNSUPPORTED, "not supported");
    npy_status(good_x, write_npy("y11.npy", "<i4", 0, "(11,)", y32, 44), PARML_ERR_SHAPE, "holds 12 samples");
    int32_t negative[N];
    memcpy(negative, y32, sizeof negative);
    negative[3] = -4;
    npy_status(good_x, write_npy("neg.npy", "<i4", 0, "(12,)", negative, sizeof negative), PARML_ERR_FORMAT,
               "label 3 is -4");
    char missing[256];
    scratch_path(missing, sizeof missing, "missing.npy");
    npy_status(missing, y, PARML_ERR_IO, "cannot open");
    CHECK(write_file(missing, (const unsigned char *)"hello", 5) == 0, "write");
    npy_status(missing, y, PARML_ERR_FORMAT, "too short for a .npy header");
    parml_dataset out = SENTINEL;
    CHECK(parml_dataset_load_npy(NULL, y, &out) == PARML_ERR_INVALID_ARGUMENT && out == SENTINEL, "NULL path");
    CHECK(parml_dataset_load_npy(good_x, y, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL out");
}

/* CRC-32 (IEEE), bit by bit: a stored zip member carries it. */
static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v) {
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}

/* A zip archive of stored members (what numpy.savez writes, less ZIP64). */
static size_t zip_stored(unsigned char *out, int count, const char *const *names, unsigned char *const *data,
                         const size_t *sizes) {
    size_t at = 0, offsets[4];
    for (int i = 0; i < count; i++) {
        size_t nl = strlen(names[i]);
        offsets[i] = at;
        unsigned char *h = out + at;
        memset(h, 0, 30);
        put32(h, 0x04034b50);
        put16(h + 4, 20);
        put32(h + 14, crc32_of(data[i], sizes[i]));
        put32(h + 18, (uint32_t)sizes[i]);
        put32(h + 22, (uint32_t)sizes[i]);
        put16(h + 26, (unsigned)nl);
        memcpy(h + 30, names[i], nl);
        memcpy(h + 30 + nl, data[i], sizes[i]);
        at += 30 + nl + sizes[i];
    }
    size_t dir = at;
    for (int i = 0; i < count; i++) {
        size_t nl = strlen(names[i]);
        unsigned char *h = out + at;
        memset(h, 0, 46);
        put32(h, 0x02014b50);
        put16(h + 4, 20);
        put16(h + 6, 20);
        put32(h + 16, crc32_of(data[i], sizes[i]));
        put32(h + 20, (uint32_t)sizes[i]);
        put32(h + 24, (uint32_t)sizes[i]);
        put16(h + 28, (unsigned)nl);
        put32(h + 42, (uint32_t)offsets[i]);
        memcpy(h + 46, names[i], nl);
        at += 46 + nl;
    }
    unsigned char *e = out + at;
    memset(e, 0, 22);
    put32(e, 0x06054b50);
    put16(e + 8, (unsigned)count);
    put16(e + 10, (unsigned)count);
    put32(e + 12, (uint32_t)(at - dir));
    put32(e + 16, (uint32_t)dir);
    return at + 22;
}

static void test_npz(void) {
    static unsigned char xb[4096], yb[1024], zip[8192];
    size_t xn = npy_image(xb, "<f4", 0, "(12, 3)", xs, sizeof xs);
    size_t yn = npy_image(yb, "<i8", 0, "(12,)", labels, sizeof labels);
    const char *names[] = {"pixels.npy", "y.npy"};
    unsigned char *data[] = {xb, yb};
    size_t sizes[] = {xn, yn};
    size_t zn = zip_stored(zip, 2, names, data, sizes);
    char path[256];
    scratch_path(path, sizeof path, "d.npz");
    CHECK(write_file(path, zip, zn) == 0, "write npz");

    parml_dataset d = NULL;
    OK(parml_dataset_load_npz(path, "pixels", "y", &d));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == reference_loss(&xs[0][0]), "npz gives the reference loss");
    parml_dataset_free(d);

    d = SENTINEL;
    CHECK(parml_dataset_load_npz(path, "x", "y", &d) == PARML_ERR_FORMAT && d == SENTINEL, "missing member");
    CHECK(strstr(parml_last_error(), "no array 'x' in the archive (it holds 'pixels', 'y')") != NULL, "%s",
          parml_last_error());
    CHECK(parml_dataset_load_npz(path, NULL, "y", &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL, "NULL key");
    CHECK(write_file(path, zip, zn - 30) == 0, "write a truncated npz");
    CHECK(parml_dataset_load_npz(path, "pixels", "y", &d) == PARML_ERR_FORMAT && d == SENTINEL, "truncated npz");
    CHECK(strstr(parml_last_error(), "end-of-central-directory") != NULL, "%s", parml_last_error());
}

static parml_status csv_status(const char *text, const parml_csv_params *p, parml_dataset *d) {
    char path[256];
    scratch_path(path, sizeof path, "t.csv");
    CHECK(write_file(path, (const unsigned char *)text, strlen(text)) == 0, "write csv");
    *d = SENTINEL;
    return parml_dataset_load_csv(path, p, d);
}

static void test_csv(void) {
    /* The same table twice: label last, and label first among shuffled names. */
    char last[2048], first[2048];
    int a = snprintf(last, sizeof last, "f0,f1,f2,label\n");
    int b = snprintf(first, sizeof first, "label;f2;f0;f1\r\n");
    for (int i = 0; i < N; i++) {
        a += snprintf(last + a, sizeof last - (size_t)a, "%.9g,%.9g,%.9g,%d\n", xs[i][0], xs[i][1], xs[i][2],
                      (int)labels[i]);
        b += snprintf(first + b, sizeof first - (size_t)b, "%d;%.9g;%.9g;\"%.9g\"\r\n", (int)labels[i], xs[i][2],
                      xs[i][0], xs[i][1]);
    }
    float want = reference_loss(&xs[0][0]);
    parml_dataset d = NULL;
    OK(csv_status(last, NULL, &d));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == want, "defaults: last column the label");
    parml_dataset_free(d);

    parml_csv_params p;
    OK(parml_csv_params_init(&p));
    CHECK(p.struct_size == sizeof p && p.delimiter == ',' && p.has_header == 1 && p.label_index == -1 &&
              p.num_features == 0 && p.label_kind == PARML_CSV_LABEL_CLASS,
          "CSV defaults");
    const char *const features[] = {"f0", "f1", "f2"};
    p.delimiter = ';';
    p.label_name = "label";
    p.feature_names = features;
    p.num_features = 3;
    OK(csv_status(first, &p, &d));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == want, "by name, ';', quotes, CRLF");
    parml_dataset_free(d);
    const int64_t indices[] = {2, 3, 1};
    p.label_name = NULL;
    p.label_index = 0;
    p.feature_names = NULL;
    p.feature_indices = indices;
    OK(csv_status(first, &p, &d));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == want, "by index");
    parml_dataset_free(d);

    /* Names as labels: "class 0" < "class 1" < ... in byte order, so the
       classes are the same indices and the loss the same. */
    char named[2048];
    int c = snprintf(named, sizeof named, "f0,f1,f2,label\n");
    for (int i = 0; i < N; i++)
        c += snprintf(named + c, sizeof named - (size_t)c, "%.9g,%.9g,%.9g,class %d\n", xs[i][0], xs[i][1],
                      xs[i][2], (int)labels[i]);
    OK(parml_csv_params_init(&p));
    p.label_kind = PARML_CSV_LABEL_TEXT;
    OK(csv_status(named, &p, &d));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == want, "text labels");
    int64_t names = -1;
    OK(parml_dataset_num_class_names(d, &names));
    CHECK(names == C, "%lld class names", (long long)names);
    char *name = NULL;
    OK(parml_dataset_class_name(d, C - 1, &name));
    char want_name[32];
    snprintf(want_name, sizeof want_name, "class %d", C - 1);
    CHECK(name != NULL && strcmp(name, want_name) == 0, "name of class %d: %s", C - 1, name ? name : "(null)");
    parml_buffer_free(name);
    name = (char *)SENTINEL;
    CHECK(parml_dataset_class_name(d, C, &name) == PARML_ERR_INVALID_ARGUMENT && name == (char *)SENTINEL,
          "class index past the names");
    CHECK(parml_dataset_class_name(d, -1, &name) == PARML_ERR_INVALID_ARGUMENT, "negative class index");
    CHECK(parml_dataset_class_name(d, 0, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL name_out");
    CHECK(parml_dataset_num_class_names(d, NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL count_out");
    parml_dataset_free(d);
    OK(csv_status(last, NULL, &d));
    OK(parml_dataset_num_class_names(d, &names));
    CHECK(names == 0, "class indices have no names");
    CHECK(parml_dataset_class_name(d, 0, &name) == PARML_ERR_STATE && name == (char *)SENTINEL, "no names: STATE");
    parml_dataset_free(d);
    CHECK(parml_dataset_class_name(NULL, 0, &name) == PARML_ERR_INVALID_ARGUMENT, "NULL dataset");
    CHECK(csv_status("a,y\n1,cat\n2,\n", &p, &d) == PARML_ERR_FORMAT && d == SENTINEL, "empty class name");

    /* Bad tables: the line and the column are named; nothing is built. */
    CHECK(csv_status("a,b,y\n1,2,0\n3,4\n", NULL, &d) == PARML_ERR_FORMAT && d == SENTINEL, "ragged row");
    CHECK(strstr(parml_last_error(), "t.csv:3: 2 columns, but the header (line 1) has 3") != NULL, "%s",
          parml_last_error());
    CHECK(csv_status("a,b,y\n1,2,0\n3,x1,1\n", NULL, &d) == PARML_ERR_FORMAT && d == SENTINEL, "non-numeric");
    CHECK(strstr(parml_last_error(), "t.csv:3: column 1 ('b') 'x1' is not a finite number") != NULL, "%s",
          parml_last_error());
    CHECK(csv_status("a,b,y\n1,2,1.5\n", NULL, &d) == PARML_ERR_FORMAT && d == SENTINEL, "fractional label");
    OK(parml_csv_params_init(&p));
    p.label_name = "nope";
    CHECK(csv_status("a,b,y\n1,2,1\n", &p, &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL, "unknown column");
    OK(parml_csv_params_init(&p));
    p.num_features = 2;
    CHECK(csv_status("a,b,y\n1,2,1\n", &p, &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL, "count, no list");
    OK(parml_csv_params_init(&p));
    p.label_kind = 7;
    CHECK(csv_status("a,b,y\n1,2,1\n", &p, &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL, "label kind");
    OK(parml_csv_params_init(&p));
    p.struct_size = 5;
    CHECK(csv_status("a,b,y\n1,2,1\n", &p, &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL, "struct_size 5");
    CHECK(parml_csv_params_init(NULL) == PARML_ERR_INVALID_ARGUMENT, "NULL params");
}

static void test_borrowed(void) {
    static float x[N][F];
    static int32_t y32[N];
    memcpy(x, xs, sizeof x);
    for (int i = 0; i < N; i++) y32[i] = (int32_t)labels[i];
    int64_t xd[2] = {N, F}, yd[1] = {N};
    float want = reference_loss(&xs[0][0]);

    parml_dataset d = NULL, wide = NULL;
    OK(parml_dataset_create_borrowed(PARML_DTYPE_FLOAT32, xd, 2, x, PARML_DTYPE_INT32, yd, 1, y32, &d));
    OK(parml_dataset_create_borrowed(PARML_DTYPE_FLOAT32, xd, 2, x, PARML_DTYPE_INT64, yd, 1, labels, &wide));
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == want, "borrowed gives the reference loss");
    CHECK(loss_of(wide, PARML_LOSS_CROSS_ENTROPY, C) == want, "int64 targets narrowed");
    /* The dataset reads the caller's memory in place: a change is seen. */
    x[0][0] += 3.0f;
    float changed = loss_of(d, PARML_LOSS_CROSS_ENTROPY, C);
    CHECK(changed != want && changed == reference_loss(&x[0][0]), "borrowed memory is read, not copied");
    parml_dataset_free(d);
    parml_dataset_free(wide);

    d = SENTINEL;
    CHECK(parml_dataset_create_borrowed(PARML_DTYPE_INT32, xd, 2, y32, PARML_DTYPE_INT32, yd, 1, y32, &d) ==
              PARML_ERR_INVALID_ARGUMENT && d == SENTINEL,
          "int32 inputs refused");
    CHECK(parml_dataset_create_borrowed(PARML_DTYPE_FLOAT32, xd, 2, (const char *)x + 2, PARML_DTYPE_INT32, yd, 1, y32,
                                        &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL,
          "misaligned");
    CHECK(parml_dataset_create_borrowed(PARML_DTYPE_FLOAT32, xd, 2, NULL, PARML_DTYPE_INT32, yd, 1, y32, &d) ==
              PARML_ERR_INVALID_ARGUMENT && d == SENTINEL,
          "NULL inputs");
    int64_t short_y[1] = {N - 1};
    CHECK(parml_dataset_create_borrowed(PARML_DTYPE_FLOAT32, xd, 2, x, PARML_DTYPE_INT32, short_y, 1, y32, &d) ==
              PARML_ERR_SHAPE && d == SENTINEL,
          "N differs");
    int64_t big[1] = {1};
    static int64_t huge[1] = {(int64_t)1 << 40};
    int64_t one[2] = {1, F};
    CHECK(parml_dataset_create_borrowed(PARML_DTYPE_FLOAT32, one, 2, x, PARML_DTYPE_INT64, big, 1, huge, &d) ==
              PARML_ERR_INVALID_ARGUMENT && d == SENTINEL,
          "int64 beyond int32");
}

/* Sharded datasets (parml_dataset_open_shards): two .npy shards and a
 * manifest; read in file order (shuffle buffer 1) they give the reference
 * loss bit for bit, shuffled the same mean (every row once); bad input
 * leaves *out untouched. */
static void test_shards(void) {
    int32_t y32[N];
    for (int i = 0; i < N; i++) y32[i] = (int32_t)labels[i];
    write_npy("sx0.npy", "<f4", 0, "(8, 3)", xs, 8 * sizeof xs[0]);
    write_npy("sy0.npy", "<i4", 0, "(8,)", y32, 8 * sizeof y32[0]);
    write_npy("sx1.npy", "<f4", 0, "(4, 3)", xs[8], 4 * sizeof xs[0]);
    write_npy("sy1.npy", "<i4", 0, "(4,)", y32 + 8, 4 * sizeof y32[0]);
    static const char manifest[] = "parml-shards 1\ninputs float32 3\nshard sx0.npy sy0.npy 8\nshard sx1.npy sy1.npy 4\n";
    char path[256];
    scratch_path(path, sizeof path, "shards.txt");
    CHECK(write_file(path, (const unsigned char *)manifest, sizeof manifest - 1) == 0, "writing %s", path);
    float want = reference_loss(&xs[0][0]);

    parml_dataset d = NULL;
    OK(parml_dataset_open_shards(path, 7, 1, 0, 0, 1, &d));
    int64_t n = 0, classes = 0;
    OK(parml_dataset_size(d, &n));
    OK(parml_dataset_num_classes(d, &classes));
    CHECK(n == N && classes == C, "a stream of %lld samples, %lld classes", (long long)n, (long long)classes);
    CHECK(loss_of(d, PARML_LOSS_CROSS_ENTROPY, C) == want, "shards in file order give the reference loss");
    parml_dataset_free(d);
    OK(parml_dataset_open_shards(path, 7, 5, 3, 0, 1, &d));
    float shuffled = loss_of(d, PARML_LOSS_CROSS_ENTROPY, C);
    CHECK(fabsf(shuffled - want) <= 1e-5f * fabsf(want), "shuffled shards give the same mean loss (%g, %g)", shuffled, want);
    parml_dataset_free(d);

    static const char missing[] = "parml-shards 1\nshard sx0.npy sy0.npy 8\nshard gone.npy sy1.npy 4\n";
    char bad[256];
    scratch_path(bad, sizeof bad, "missing.txt");
    CHECK(write_file(bad, (const unsigned char *)missing, sizeof missing - 1) == 0, "writing %s", bad);
    d = SENTINEL;
    CHECK(parml_dataset_open_shards(bad, 0, 1, 0, 0, 1, &d) == PARML_ERR_IO && d == SENTINEL, "a missing shard is PARML_ERR_IO");
    CHECK(strstr(parml_last_error(), "missing.txt:3") && strstr(parml_last_error(), "gone.npy"), "the error names the line and the shard: %s",
          parml_last_error());
    CHECK(parml_dataset_open_shards(NULL, 0, 1, 0, 0, 1, &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL, "a NULL path");
    CHECK(parml_dataset_open_shards(path, 0, 0, 0, 0, 1, &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL, "a shuffle buffer of 0");
    CHECK(parml_dataset_open_shards(path, 0, 1, 0, 1, 1, &d) == PARML_ERR_INVALID_ARGUMENT && d == SENTINEL, "rank 1 of 1");
    CHECK(parml_dataset_open_shards(path, 0, 1, 0, 0, 1, NULL) == PARML_ERR_INVALID_ARGUMENT, "a NULL out");
}

int main(void) {
    make_data();
    test_shards();
    test_npy();
    test_npz();
    test_csv();
    test_borrowed();
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}
