/*
 * Trains a character-level GPT on tinyshakespeare through the parml C API,
 * as nanoGPT's train.py does with its CPU configuration, and prints the
 * train and validation loss, then a generated sample.
 *
 * usage: train_gpt [TEXT_FILE] [ITERATIONS] [MODEL_OUT]
 *   TEXT_FILE defaults to data/tinyshakespeare/input.txt, ITERATIONS to
 *   2000 (nanoGPT's), MODEL_OUT to gpt_char.pb.
 *
 * Model: token and position embeddings, 4 pre-LayerNorm blocks (causal
 * self-attention with 4 heads, then a 4x MLP with GELU), a final LayerNorm
 * and a head tied to the token embedding (nanoGPT's lm_head.weight =
 * wte.weight: logits over the 65 characters); n_embd 128, context 64, batch
 * 12. AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on matrices only
 * (decay_by_kind), 100 warm-up iterations and cosine decay to 1e-4 at
 * 2,000, gradient clip 1.0. Batches are random windows of the first 90 % of
 * the text, drawn by the library (a token dataset: parml_dataset_create_tokens);
 * validation windows come from the last 10 %.
 * Build: cc ... train_gpt.c -lparml
 */
#define _POSIX_C_SOURCE 200809L
#include <parml.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "check.h" /* CHECK */

enum { N_LAYER = 4, N_HEAD = 4, N_EMBD = 128, BLOCK = 64, BATCH = 12, EVAL_BATCHES = 20 };

/* `windows` random windows of BLOCK tokens per epoch over ids[0 .. n), drawn
 * by the library from `seed`: inputs ids[s .. s+BLOCK), targets one further,
 * as nanoGPT's get_batch cuts them. */
static parml_dataset token_windows(const int32_t *ids, int64_t n, uint64_t seed, int64_t windows) {
    parml_tensor t = NULL;
    CHECK(parml_tensor_create_typed(PARML_DTYPE_INT32, &n, 1, ids, &t));
    parml_token_params p;
    CHECK(parml_token_params_init(&p));
    p.seed = seed;
    p.windows_per_epoch = windows;
    parml_dataset d = NULL;
    CHECK(parml_dataset_create_tokens(t, BLOCK, &p, &d));
    parml_tensor_free(t); /* the dataset keeps its own copy of the ids */
    return d;
}

static parml_attribute int_attr(const char *name, int64_t v) {
    return (parml_attribute){.name = name, .type = PARML_ATTR_INT, .int_value = v};
}

static parml_attribute float_attr(const char *name, double v) {
    return (parml_attribute){.name = name, .type = PARML_ATTR_FLOAT, .float_value = v};
}

static parml_model build_gpt(int64_t vocab) {
    parml_model m = NULL;
    CHECK(parml_model_create(&m));
    parml_attribute tok[] = {int_attr("num_embeddings", vocab), int_attr("embedding_dim", N_EMBD), float_attr("init_std", 0.02)};
    parml_attribute pos[] = {int_attr("max_positions", BLOCK), int_attr("embedding_dim", N_EMBD), float_attr("init_std", 0.02)};
    parml_attribute attn[] = {int_attr("features", N_EMBD), int_attr("heads", N_HEAD)};
    CHECK(parml_model_add_layer(m, "embedding", tok, 3));
    CHECK(parml_model_add_layer(m, "position_embedding", pos, 3));
    for (int i = 0; i < N_LAYER; i++) {
        CHECK(parml_model_begin_residual(m)); /* x + attn(ln_1(x)) */
        CHECK(parml_model_add_layer_norm(m, N_EMBD, 1e-5f));
        CHECK(parml_model_add_layer(m, "causal_self_attention", attn, 2));
        CHECK(parml_model_end_residual(m));
        CHECK(parml_model_begin_residual(m)); /* x + mlp(ln_2(x)) */
        CHECK(parml_model_add_layer_norm(m, N_EMBD, 1e-5f));
        CHECK(parml_model_add_linear(m, N_EMBD, 4 * N_EMBD, 1));
        CHECK(parml_model_add_activation(m, PARML_ACTIVATION_GELU));
        CHECK(parml_model_add_linear(m, 4 * N_EMBD, N_EMBD, 1));
        CHECK(parml_model_end_residual(m));
    }
    CHECK(parml_model_add_layer_norm(m, N_EMBD, 1e-5f));
    parml_attribute head[] = {int_attr("num_embeddings", vocab), int_attr("embedding_dim", N_EMBD)};
    CHECK(parml_model_add_layer(m, "tied_classifier", head, 2));
    CHECK(parml_model_init(m, 1337));
    return m;
}

/* Mean loss over the windows of an evaluation dataset (the same windows at every call). */
static float estimate_loss(parml_trainer t, parml_dataset d) {
    float loss = 0;
    CHECK(parml_trainer_evaluate(t, d, BATCH, &loss, NULL));
    return loss;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "data/tinyshakespeare/input.txt";
    int iters = argc > 2 ? atoi(argv[2]) : 2000;
    const char *out_path = argc > 3 ? argv[3] : "gpt_char.pb";
    if (iters < 1) {
        fprintf(stderr, "usage: train_gpt [TEXT_FILE] [ITERATIONS >= 1] [MODEL_OUT]\n");
        return 2;
    }

    /* The text, and nanoGPT's tokenizer: the distinct characters, sorted. */
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *text = malloc((size_t)size);
    if (!text || fread(text, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read\n", path);
        return 1;
    }
    fclose(f);
    int seen[256] = {0}, stoi[256];
    char itos[256];
    for (long i = 0; i < size; i++) seen[text[i]] = 1;
    int vocab = 0;
    for (int c = 0; c < 256; c++)
        if (seen[c]) itos[vocab] = (char)c, stoi[c] = vocab++;
    int32_t *data = malloc((size_t)size * sizeof *data);
    for (long i = 0; i < size; i++) data[i] = stoi[text[i]];
    int64_t n_train = (int64_t)(0.9 * (double)size), n_val = (int64_t)size - n_train;
    printf("%ld characters, vocabulary %d; train %lld, val %lld\n", size, vocab, (long long)n_train, (long long)n_val);
    /* An epoch of `train` is one batch of fresh random windows, as nanoGPT
     * draws one batch per iteration; each evaluation reads EVAL_BATCHES fixed
     * batches of windows of each split. */
    parml_dataset train = token_windows(data, n_train, 1337, BATCH);
    parml_dataset train_eval = token_windows(data, n_train, 1, EVAL_BATCHES * BATCH);
    parml_dataset val_eval = token_windows(data + n_train, n_val, 2, EVAL_BATCHES * BATCH);

    parml_model model = build_gpt(vocab);
    int64_t params = 0;
    CHECK(parml_model_num_params(model, &params));
    printf("GPT: %d layers, %d heads, n_embd %d, context %d: %.2fM parameters\n", N_LAYER, N_HEAD, N_EMBD, BLOCK,
           (double)params / 1e6);

    parml_optimizer_params opt;
    CHECK(parml_optimizer_params_init(&opt));
    opt.kind = PARML_OPTIMIZER_ADAMW;
    opt.learning_rate = 1e-3f;
    opt.beta2 = 0.99f;
    opt.weight_decay = 0.1f;
    opt.decay_by_kind = 1;
    opt.clip_grad_norm = 1.0f;
    opt.schedule = PARML_SCHEDULE_COSINE;
    opt.warmup_steps = 100;
    opt.total_steps = 2000;
    opt.min_lr = 1e-4f;
    parml_trainer trainer = NULL;
    CHECK(parml_trainer_create(model, PARML_LOSS_CROSS_ENTROPY, &opt, NULL, &trainer));

    parml_fit_params fit;
    CHECK(parml_fit_params_init(&fit));
    fit.batch_size = BATCH;
    int eval_every = iters < 250 ? iters : 250;
    double t0 = now();
    for (int it = 0;; it += (int)fit.epochs) {
        printf("step %d: train loss %.4f, val loss %.4f (%.1f s)\n", it, estimate_loss(trainer, train_eval),
               estimate_loss(trainer, val_eval), now() - t0);
        fflush(stdout);
        if (it == iters) break;
        fit.epochs = iters - it < eval_every ? iters - it : eval_every; /* one iteration per epoch */
        CHECK(parml_trainer_fit(trainer, train, &fit, NULL));
    }
    double seconds = now() - t0;
    printf("%d iterations in %.1f s (%.1f ms/iteration, evaluation included)\n", iters, seconds, 1000 * seconds / iters);

    CHECK(parml_model_save(model, out_path));
    printf("saved %s\n", out_path);
    int64_t prompt[1] = {stoi['\n']}, sample[300];
    CHECK(parml_model_generate(model, prompt, 1, 300, 0.8f, 200, 1337, sample));
    printf("---\n");
    for (int i = 0; i < 300; i++) putchar(itos[sample[i]]);
    printf("\n---\n");

    parml_dataset_free(train);
    parml_dataset_free(train_eval);
    parml_dataset_free(val_eval);
    parml_trainer_free(trainer);
    parml_model_free(model);
    free(data);
    free(text);
    return 0;
}
