/*
 * parml — look at, check and convert parml files, and plan a layout,
 * without writing a program. A small host of libparml (docs/cli.md).
 *
 *   parml info FILE [--json]      what a model, checkpoint or tensor file holds
 *   parml verify FILE...          every check loading does; one line per file
 *   parml convert FILE --to onnx OUT --input-shape N,D,...
 *                                 a model (or a checkpoint's model) as ONNX
 *   parml plan FILE [--dp N] [--tp N] [--pp N] [--micro-batches N]
 *              [--zero N] [--schedule gpipe|1f1b|interleaved] [--virtual-stages N]
 *              [--split-classifier]
 *                                 who holds what, what a step exchanges
 *   parml --version | --help | COMMAND --help
 *
 * Exit codes: 0 success; 1 a file or the library refused (the library's
 * message on stderr); 2 a usage error.
 */
#include <parml.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2 };

static const char *USAGE =
    "usage: parml COMMAND [ARGS]\n"
    "  info FILE [--json]        what a model, checkpoint or tensor file holds\n"
    "  verify FILE...            check files as loading would (checksum, schema, shapes)\n"
    "  convert FILE --to onnx OUT --input-shape N,D,...\n"
    "                            export a model (or a checkpoint's model) to ONNX\n"
    "  plan FILE [--dp N] [--tp N] [--pp N] [--micro-batches N] [--zero N]\n"
    "       [--schedule gpipe|1f1b|interleaved] [--virtual-stages N] [--split-classifier]\n"
    "                            the execution plan and memory per rank of a layout\n"
    "  --version                 the library's version\n"
    "Exit codes: 0 success, 1 a file or the library refused, 2 usage.\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "parml: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", USAGE);
    return EXIT_USAGE;
}

/* Prints the library's message for a refused call on FILE. */
static int refused(const char *file) {
    fprintf(stderr, "parml: %s: %s\n", file, parml_last_error());
    return EXIT_REFUSED;
}

static int wants_help(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    return 0;
}

static int cmd_info(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        printf("usage: parml info FILE [--json]\n"
               "Kind (model, checkpoint, tensor), format version, checksum, layers with\n"
               "parameter counts, parameter tensors by name and shape; for a checkpoint\n"
               "also step, epoch, seed, optimizer and the layout it was trained with.\n"
               "--json prints one JSON object for scripts.\n");
        return 0;
    }
    const char *file = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (argv[i][0] == '-') return usage_error("info: unknown option %s", argv[i]);
        else if (!file) file = argv[i];
        else return usage_error("info: one FILE at a time (%s is extra)", argv[i]);
    }
    if (!file) return usage_error("info: %s", "FILE is missing");
    char *text = NULL;
    if (parml_file_describe(file, json, &text) != PARML_OK) return refused(file);
    printf("%s\n", text);
    parml_buffer_free(text);
    return 0;
}

static int cmd_verify(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        printf("usage: parml verify FILE...\n"
               "Reads each file with every check loading does (checksum, schema, shapes)\n"
               "and prints \"FILE: ok\" or \"FILE: the library's message\". Exits 1 when\n"
               "any file fails.\n");
        return 0;
    }
    if (argc == 0) return usage_error("verify: %s", "FILE is missing");
    int bad = 0;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-') return usage_error("verify: unknown option %s", argv[i]);
        char *text = NULL;
        if (parml_file_describe(argv[i], 1, &text) == PARML_OK) {
            /* The JSON starts {"kind": "model", ...: name the kind. */
            const char *kind = strstr(text, "\"kind\": \"");
            char what[16] = "file";
            if (kind) sscanf(kind + 9, "%15[a-z]", what);
            printf("%s: ok (%s)\n", argv[i], what);
            parml_buffer_free(text);
        } else {
            printf("%s: %s\n", argv[i], parml_last_error());
            bad = 1;
        }
    }
    return bad ? EXIT_REFUSED : 0;
}

/* Parses "N,D,..." into dims; returns the count, or -1. */
static int parse_dims(const char *s, int64_t *dims, int cap) {
    int n = 0;
    while (*s) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 1 || n == cap) return -1;
        dims[n++] = v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

static int cmd_convert(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        printf("usage: parml convert FILE --to onnx OUT --input-shape N,D,...\n"
               "Writes the model in FILE (a model file, or a checkpoint's model) as an\n"
               "ONNX graph (opset 17) for inputs of the given shape (N is the batch size\n"
               "recorded in the graph).\n");
        return 0;
    }
    const char *file = NULL, *to = NULL, *out = NULL, *shape = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 2 < argc) {
            to = argv[++i];
            out = argv[++i];
        } else if (strcmp(argv[i], "--input-shape") == 0 && i + 1 < argc) {
            shape = argv[++i];
        } else if (argv[i][0] == '-') {
            return usage_error("convert: unknown or incomplete option %s", argv[i]);
        } else if (!file) {
            file = argv[i];
        } else {
            return usage_error("convert: unexpected argument %s", argv[i]);
        }
    }
    if (!file) return usage_error("convert: %s", "FILE is missing");
    if (!to) return usage_error("convert: %s", "--to FORMAT OUT is missing");
    if (strcmp(to, "onnx") != 0) return usage_error("convert: no conversion to '%s' (onnx is the one there is)", to);
    if (!shape) return usage_error("convert: %s", "--input-shape N,D,... is missing");
    int64_t dims[8];
    int nd = parse_dims(shape, dims, 8);
    if (nd < 1) return usage_error("convert: --input-shape %s is not sizes like 1,784", shape);
    parml_model m = NULL;
    if (parml_model_load(file, &m) != PARML_OK) return refused(file);
    int rc = 0;
    if (parml_model_export_onnx(m, dims, nd, out) != PARML_OK) rc = refused(out);
    else printf("%s: written (ONNX, input shape %s)\n", out, shape);
    parml_model_free(m);
    return rc;
}

static int parse_count(const char *opt, const char *s, int64_t *v) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || errno || x < 0 || x > INT32_MAX) {
        usage_error("plan: %s needs a whole number", opt);
        return -1;
    }
    *v = x;
    return 0;
}

static int cmd_plan(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        printf("usage: parml plan FILE [--dp N] [--tp N] [--pp N] [--micro-batches N] [--zero N]\n"
               "                  [--schedule gpipe|1f1b|interleaved] [--virtual-stages N] [--split-classifier]\n"
               "Builds a trainer for the model in FILE (threads backend, AdamW, cross-\n"
               "entropy) with the layout given, and prints its execution plan: which\n"
               "layers and parameter slice each rank holds, what a step exchanges, and\n"
               "memory per rank. Nothing is trained.\n");
        return 0;
    }
    parml_strategy_params s;
    if (parml_strategy_params_init(&s) != PARML_OK) return refused("strategy");
    const char *file = NULL;
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        int64_t v = 0;
        int has_value = i + 1 < argc;
        if (strcmp(o, "--split-classifier") == 0) {
            s.split_classifier = 1;
        } else if (strcmp(o, "--schedule") == 0 && has_value) {
            const char *k = argv[++i];
            if (strcmp(k, "gpipe") == 0) s.pipeline_schedule = PARML_PIPELINE_GPIPE;
            else if (strcmp(k, "1f1b") == 0) s.pipeline_schedule = PARML_PIPELINE_1F1B;
            else if (strcmp(k, "interleaved") == 0) s.pipeline_schedule = PARML_PIPELINE_INTERLEAVED_1F1B;
            else return usage_error("plan: --schedule is gpipe, 1f1b or interleaved, not %s", k);
        } else if (has_value && (strcmp(o, "--dp") == 0 || strcmp(o, "--tp") == 0 || strcmp(o, "--pp") == 0 ||
                                 strcmp(o, "--micro-batches") == 0 || strcmp(o, "--zero") == 0 ||
                                 strcmp(o, "--virtual-stages") == 0)) {
            if (parse_count(o, argv[++i], &v) != 0) return EXIT_USAGE;
            if (strcmp(o, "--dp") == 0) s.dp = (int32_t)v;
            else if (strcmp(o, "--tp") == 0) s.tp = (int32_t)v;
            else if (strcmp(o, "--pp") == 0) s.pp = (int32_t)v;
            else if (strcmp(o, "--micro-batches") == 0) s.micro_batches = (int32_t)v;
            else if (strcmp(o, "--virtual-stages") == 0) s.virtual_stages = v;
            else s.zero_stage = (int32_t)v;
        } else if (o[0] == '-') {
            return usage_error("plan: unknown or incomplete option %s", o);
        } else if (!file) {
            file = o;
        } else {
            return usage_error("plan: unexpected argument %s", o);
        }
    }
    if (!file) return usage_error("plan: %s", "FILE is missing");
    parml_model m = NULL;
    if (parml_model_load(file, &m) != PARML_OK) return refused(file);
    parml_optimizer_params o;
    parml_trainer t = NULL;
    char *text = NULL;
    int rc = 0;
    if (parml_optimizer_params_init(&o) != PARML_OK) {
        rc = refused(file);
    } else {
        o.kind = PARML_OPTIMIZER_ADAMW;
        if (parml_trainer_create(m, PARML_LOSS_CROSS_ENTROPY, &o, &s, &t) != PARML_OK ||
            parml_trainer_plan(t, &text) != PARML_OK)
            rc = refused(file);
        else
            printf("%s\n", text);
    }
    parml_buffer_free(text);
    parml_trainer_free(t);
    parml_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "%s", USAGE);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        printf("%s", USAGE);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("parml %s (library %s)\n", PARML_VERSION_STRING, parml_version_string());
        return 0;
    }
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 2, argv + 2);
    if (strcmp(cmd, "verify") == 0) return cmd_verify(argc - 2, argv + 2);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc - 2, argv + 2);
    if (strcmp(cmd, "plan") == 0) return cmd_plan(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", cmd);
}
