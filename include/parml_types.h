/*
 * parml_types.h — the hand-written half of the parml C API.
 *
 * What Swift's @c cannot express lives here: version macros, opaque handle
 * types, status codes, enum values and the parameter structs. The functions
 * are declared in parml.h, which the build generates from the Swift @c
 * functions and which includes this file. Include parml.h, not this file.
 *
 * ABI rules (see docs/ABI.md):
 *   - status codes and enum values are append-only; a number is never reused;
 *   - parameter structs start with `size_t struct_size` and only grow at the
 *     end; always fill them with the matching parml_*_params_init function;
 *     structs the library writes into (parml_memory_report, and
 *     parml_epoch_metrics through parml_trainer_fit's last_out) get
 *     struct_size = sizeof(the struct) from the caller first.
 */
#ifndef PARML_TYPES_H
#define PARML_TYPES_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */
/* ------------------------------------------------------------------------ */

#define PARML_VERSION_MAJOR 0
#define PARML_VERSION_MINOR 3
#define PARML_VERSION_PATCH 0
/* MAJOR*10000 + MINOR*100 + PATCH; compare with parml_version_number(). */
#define PARML_VERSION_NUMBER \
    (PARML_VERSION_MAJOR * 10000 + PARML_VERSION_MINOR * 100 + PARML_VERSION_PATCH)
#define PARML_VERSION_STRING "0.3.0"

/* ------------------------------------------------------------------------ */
/* Opaque handles. Each is created by a parml_X_create / _load function and  */
/* released by parml_X_free, which accepts NULL. A handle is a number that   */
/* is never handed out twice: a freed handle returns                         */
/* PARML_ERR_INVALID_ARGUMENT forever. A handle is used by one thread at a   */
/* time, and a trainer and its model count as one handle; distinct handles   */
/* are independent. A call on a handle that another call still holds (from   */
/* another thread) returns PARML_ERR_STATE and leaves the handle as it was.  */
/* Inside a fit callback the calls that read or save (and                    */
/* parml_trainer_set_learning_rate) may use the handles fit holds; the rest  */
/* return PARML_ERR_STATE (docs/callbacks.md).                               */
/* ------------------------------------------------------------------------ */

/** A tensor owned by the library (row-major, up to 8 dimensions) of float32,
 *  or of int32/int64 class indices and token ids (parml_tensor_create_typed). */
typedef struct parml_tensor_s *parml_tensor;
/** A network: a sequence of layers (with residual blocks) and its parameters. */
typedef struct parml_model_s *parml_model;
/** A model + loss + optimizer + parallel strategy: what trains. */
typedef struct parml_trainer_s *parml_trainer;
/** Samples and labels in memory (from tensors or IDX files), or training
 *  windows cut from an array of token ids (parml_dataset_create_tokens). */
typedef struct parml_dataset_s *parml_dataset;

/* ------------------------------------------------------------------------ */
/* Status codes. Every fallible call returns one; PARML_OK is 0. On failure  */
/* parml_last_error() holds a message for the calling thread.                */
/* ------------------------------------------------------------------------ */

typedef int32_t parml_status;

#define PARML_OK                   0  /* success */
#define PARML_ERR_INVALID_ARGUMENT 1  /* a NULL pointer, bad value or unknown enum */
#define PARML_ERR_SHAPE            2  /* tensor shapes do not fit together */
#define PARML_ERR_UNSUPPORTED      3  /* valid request this build cannot do yet */
#define PARML_ERR_OUT_OF_MEMORY    4  /* an allocation failed */
#define PARML_ERR_IO               5  /* a file could not be opened, read or written */
#define PARML_ERR_FORMAT           6  /* a file or buffer is corrupt or of the wrong kind */
#define PARML_ERR_STATE            7  /* call not valid now (e.g. model not initialised) */
#define PARML_ERR_BLAS             8  /* OpenBLAS could not be loaded */
#define PARML_ERR_CANCELLED        9  /* a callback asked to stop */
#define PARML_ERR_INTERNAL         10 /* a bug in parml; please report it */
#define PARML_ERR_COMMUNICATION    11 /* a rank failed or timed out; every rank returns this */
#define PARML_ERR_NONFINITE        12 /* a step's loss or gradients were not finite; it updated nothing (since 0.3) */
#define PARML_ERR_AUTH_MISSING     13 /* a key was given but the file carries no authentication tag (since 0.3) */
#define PARML_ERR_AUTH_KEY         14 /* the file is authenticated with another key, or was loaded without one (since 0.3) */
#define PARML_ERR_AUTH_FAILED      15 /* the file's authentication tag does not verify: its bytes were altered (since 0.3) */
/* New codes are added here, with new numbers. */

/* ------------------------------------------------------------------------ */
/* Enumerations (int32_t values; append-only)                                 */
/* ------------------------------------------------------------------------ */

/* Element-wise activation layers (parml_model_add_activation). */
#define PARML_ACTIVATION_RELU    1
#define PARML_ACTIVATION_GELU    2 /* exact (erf) form, as torch.nn.GELU() */
#define PARML_ACTIVATION_TANH    3
#define PARML_ACTIVATION_SIGMOID 4

/* Tensor element types (parml_tensor_create_typed, parml_tensor_dtype). */
#define PARML_DTYPE_FLOAT32 1 /* inputs, targets of regression, parameters */
#define PARML_DTYPE_INT32   2 /* class indices, token ids */
#define PARML_DTYPE_INT64   3 /* the same (numpy's default integer); narrowed to int32 where trained on */
#define PARML_DTYPE_BFLOAT16 4 /* since 0.3: model files only (parml_model_file_params.weights_dtype) */

/* Layer attribute types (parml_attribute.type, parml_layer_kind_attribute). */
#define PARML_ATTR_INT    1 /* int_value */
#define PARML_ATTR_FLOAT  2 /* float_value (stored as float32) */
#define PARML_ATTR_BOOL   3 /* int_value: 0 is false, anything else true */
#define PARML_ATTR_STRING 4 /* string_value, NUL-terminated UTF-8 */
#define PARML_ATTR_INTS   5 /* ints[0 .. n_ints) */

/* What a layer kind reads (parml_layer_kind_info). */
#define PARML_LAYER_INPUT_VALUES    1 /* real values it differentiates through */
#define PARML_LAYER_INPUT_TOKEN_IDS 2 /* token ids (integers; nothing flows back to them) */

/* Losses (parml_trainer_create). */
#define PARML_LOSS_CROSS_ENTROPY 1 /* softmax cross-entropy over the last dimension; targets are class
                                      indices, (N) for logits (N, C) or (N, T) for a sequence's (N, T, C):
                                      the mean over all N*T predictions */
#define PARML_LOSS_MSE           2 /* mean squared error; targets have the output's shape */
#define PARML_LOSS_BCE_WITH_LOGITS 3 /* since 0.3: sigmoid + binary cross-entropy per output (torch's
                                        BCEWithLogitsLoss), the mean over all outputs; targets in [0, 1]
                                        of the output's shape (multi-label); accuracy counts outputs whose
                                        sign (logit > 0) matches target > 0.5 */

/* Optimizers (parml_optimizer_params.kind). */
#define PARML_OPTIMIZER_SGD   1 /* with optional momentum, Nesterov, L2 weight decay */
#define PARML_OPTIMIZER_ADAM  2 /* L2 weight decay added to the gradient */
#define PARML_OPTIMIZER_ADAMW 3 /* decoupled weight decay */

/* Learning-rate schedules (parml_optimizer_params.schedule). */
#define PARML_SCHEDULE_CONSTANT 1
#define PARML_SCHEDULE_STEP     2 /* lr * gamma^floor(step / step_size) */
#define PARML_SCHEDULE_COSINE   3 /* cosine from lr to min_lr over total_steps */

/* Pipeline schedules (parml_strategy_params.pipeline_schedule). */
#define PARML_PIPELINE_GPIPE 1
#define PARML_PIPELINE_1F1B  2
#define PARML_PIPELINE_INTERLEAVED_1F1B 3 /* since 0.3: Megatron-LM's virtual pipeline; virtual_stages runs of
                                             layers per stage, micro_batches a multiple of pp */

/* How a token dataset picks its windows (parml_token_params.mode). */
#define PARML_TOKENS_RANDOM     1 /* starts drawn from (seed, epoch, sample), as nanoGPT's get_batch */
#define PARML_TOKENS_SEQUENTIAL 2 /* non-overlapping windows covering the ids once per epoch */

/* Element types of a flat token file (parml_dataset_load_tokens): little-endian, no header. */
#define PARML_TOKEN_FILE_UINT8  1 /* bytes (a text file read as byte ids) */
#define PARML_TOKEN_FILE_UINT16 2 /* nanoGPT's train.bin / val.bin */
#define PARML_TOKEN_FILE_UINT32 3
#define PARML_TOKEN_FILE_INT32  4

/* What a CSV label column holds (parml_csv_params.label_kind; since 0.3). */
#define PARML_CSV_LABEL_CLASS 1 /* class indices: integers 0...2^31-1, targets int32 */
#define PARML_CSV_LABEL_VALUE 2 /* numbers, targets float32 (regression) */
#define PARML_CSV_LABEL_TEXT  3 /* class names (any text): the distinct names in byte order are classes 0, 1, ...; targets int32 */

/* Communication backends (parml_strategy_params.backend). */
#define PARML_BACKEND_THREADS 1 /* ranks are threads of this process */
#define PARML_BACKEND_MPI     2 /* one rank per process under mpirun */

/* Wire formats of the data-parallel gradient sum (parml_strategy_params.gradient_compression; since 0.3). */
#define PARML_COMPRESSION_NONE 0 /* float32 */
#define PARML_COMPRESSION_BF16 1 /* bfloat16 with error feedback: half the bytes, float32's range */
#define PARML_COMPRESSION_FP16 2 /* IEEE half with error feedback: half the bytes, +-65504 */
#define PARML_COMPRESSION_POWERSGD 3 /* rank-compression_rank factors of each matrix (Vogels et al. 2019) */

/* Data-parallel reduction overlapped with backward (parml_strategy_params.overlap; since 0.3). */
#define PARML_OVERLAP_AUTO 0 /* on for MPI processes on more than one machine, else off (the measured default) */
#define PARML_OVERLAP_ON   1 /* a communication thread per rank reduces buckets during backward */
#define PARML_OVERLAP_OFF  2 /* gradients reduced after backward (ZeRO >= 2: buckets on the rank's thread) */

/* Arithmetic of matrix products (parml_strategy_params.precision; since 0.3). */
#define PARML_PRECISION_FP32 0 /* float32 products */
#define PARML_PRECISION_BF16 1 /* bf16 operands, float32 accumulation (oneDNN on AVX512-BF16; docs/precision.md) */

/* ------------------------------------------------------------------------ */
/* Layer attributes                                                           */
/* ------------------------------------------------------------------------ */

/** One named, typed attribute of a layer, for parml_model_add_layer (the
 *  pattern of a tagged value: set `name`, `type` and the field the type
 *  names; the other fields are ignored). The library copies what it keeps,
 *  so the strings and the array need live only for the call. The layout is
 *  fixed: a later type reuses these fields. Example:
 *    parml_attribute a[] = {{.name = "in_features", .type = PARML_ATTR_INT, .int_value = 784},
 *                           {.name = "out_features", .type = PARML_ATTR_INT, .int_value = 10}}; */
typedef struct parml_attribute {
    const char *name;           /* the attribute's name, as the kinds query lists it */
    int32_t type;               /* PARML_ATTR_* */
    int64_t int_value;          /* INT, BOOL */
    double float_value;         /* FLOAT */
    const char *string_value;   /* STRING */
    const int64_t *ints;        /* INTS: n_ints values (NULL when n_ints is 0) */
    int64_t n_ints;
} parml_attribute;

/* ------------------------------------------------------------------------ */
/* Parameter structs. Fill with parml_X_params_init(&p), then change fields. */
/* The library reads only the first struct_size bytes.                       */
/* ------------------------------------------------------------------------ */

/** Optimizer, learning-rate schedule and gradient clipping. */
typedef struct parml_optimizer_params {
    size_t struct_size;    /* set by parml_optimizer_params_init */
    int32_t kind;          /* PARML_OPTIMIZER_*; default SGD */
    float learning_rate;   /* base (peak) learning rate; default 0.01 */
    float momentum;        /* SGD momentum; default 0 */
    int32_t nesterov;      /* SGD: nonzero for Nesterov momentum; default 0 */
    float weight_decay;    /* L2 (SGD, Adam) or decoupled (AdamW); default 0 (torch's AdamW: 0.01) */
    float beta1;           /* Adam/AdamW; default 0.9 */
    float beta2;           /* Adam/AdamW; default 0.999 */
    float epsilon;         /* Adam/AdamW; default 1e-8 */
    int32_t schedule;      /* PARML_SCHEDULE_*; default CONSTANT */
    int64_t warmup_steps;  /* linear warmup from lr/warmup_steps to lr; default 0 */
    int64_t step_size;     /* STEP: steps between decays; default 1 */
    float gamma;           /* STEP: decay factor; default 0.1 */
    int64_t total_steps;   /* COSINE: steps (warmup included) to reach min_lr */
    float min_lr;          /* COSINE: final learning rate; default 0 */
    float clip_grad_norm;  /* clip gradients to this global L2 norm; 0 = off */
    /* since 0.3: nonzero (default) skips a step whose loss or gradients hold
     * a NaN or an infinity: nothing is updated and the step returns
     * PARML_ERR_NONFINITE (parml_trainer_skipped_steps counts them); 0 turns
     * the check off, and such a step updates with the non-finite values. */
    int64_t skip_nonfinite;
    /* since 0.3: nonzero applies weight_decay only to the parameters whose
     * layer kind decays them (linear weights; not biases or layer_norm
     * parameters: nanoGPT's and Megatron-LM's groups); default 0 decays
     * every parameter, as torch.optim does. */
    int64_t decay_by_kind;
} parml_optimizer_params;

/** How training is laid out on a dp x pp x tp mesh of ranks; by default
 *  ranks are threads of this process (threads backend). Data parallelism (ZeRO
 *  stages 0-3), pipeline stages of consecutive top-level layers (GPipe, 1F1B
 *  or interleaved 1F1B over micro_batches) and Megatron-style tensor parallelism of
 *  Linear -> element-wise -> Linear pairs run in any product;
 *  parml_trainer_plan describes the result. backend = PARML_BACKEND_MPI
 *  runs one rank per process under mpirun (docs/mpi.md). */
typedef struct parml_strategy_params {
    size_t struct_size;        /* set by parml_strategy_params_init */
    int32_t dp;                /* data-parallel ranks; default 1 */
    int32_t tp;                /* tensor-parallel ranks; default 1 */
    int32_t pp;                /* pipeline stages; default 1 */
    int32_t micro_batches;     /* micro-batches per step (gradient accumulation); default 1 */
    int32_t pipeline_schedule; /* PARML_PIPELINE_*; default 1F1B */
    int32_t zero_stage;        /* 0..3 on the dp axis; default 0 */
    int32_t backend;           /* PARML_BACKEND_*; default THREADS */
    int32_t deterministic;     /* nonzero: layout-invariant mode (below); default 0 */
    int32_t blas_threads;      /* threads per rank (parml's own; OpenBLAS runs 1 inside each); 0 = cores / ranks (the cores this process may run on), or 1 when deterministic */
    uint64_t seed;             /* dropout masks and shuffling; default 0 */
    int64_t bucket_bytes;      /* gradient all-reduce bucket size; default 4 MiB */
    double watchdog_seconds;   /* a rank waiting longer in a collective fails the step; default 60 */
    int32_t grad_chunk;        /* deterministic mode: samples per gradient chunk; default 32 */
    int64_t split_classifier;  /* since 0.2; tp > 1: nonzero splits the classifier (the model's last
                                  Linear, or a tied_classifier) by classes and computes the
                                  cross-entropy on the sharded logits, never gathered; since 0.3 it
                                  also splits token embeddings by vocabulary rows (tp must divide the
                                  vocabulary). 0 (default) runs them whole on every tp rank. Pays
                                  for many classes: it adds an all-reduce of the classifier's input
                                  gradient and of the embedding's output. 64 bits so that it follows
                                  the 0.1 struct's end. */
    int64_t virtual_stages;    /* since 0.3; PARML_PIPELINE_INTERLEAVED_1F1B: runs of layers (Megatron-LM's
                                  model chunks) per stage, >= 2; the model is cut into pp x virtual_stages
                                  runs and stage s holds runs s, s+pp, ... Bubble (pp-1)/(v*m+pp-1).
                                  Default 1 (the other schedules need 1). */
    int32_t gradient_compression; /* since 0.3; PARML_COMPRESSION_*: dp > 1 sums gradients in a ring
                                     (reduce-scatter, all-gather) carrying 16-bit values, each rounding's
                                     error added back at the next step by the rank that rounded. Default
                                     mode and zero_stage 0 only; not equivalent to serial training
                                     (docs/communication.md). Default NONE. */
    int32_t local_steps;       /* since 0.3; local SGD: dp replicas step on their own rows and average
                                  their parameters every local_steps steps (optimizer state stays each
                                  replica's). 1 (default) sums gradients every step. Default mode,
                                  zero_stage 0, no compression; clip_grad_norm with pp = tp = 1 only. */
    int32_t compression_rank;  /* since 0.3; PARML_COMPRESSION_POWERSGD: the rank r of each matrix's
                                  approximation, in 1..1024; default 4 */
    float outer_learning_rate; /* since 0.3; local SGD's outer optimizer (DiLoCo): at each average the outer
                                  gradient d = theta_last - mean(theta) takes a Nesterov SGD step,
                                  v = outer_momentum*v + d, theta = theta_last - outer_learning_rate*(d +
                                  outer_momentum*v). Default 1 with outer_momentum 0: plain averaging */
    float outer_momentum;      /* since 0.3; in [0, 1); default 0 (DiLoCo uses 0.7 and 0.9) */
    int32_t precision;         /* since 0.3; PARML_PRECISION_*: BF16 runs the products of Linear layers,
                                  attention projections and oneDNN convolutions (forward, dW, dx) on bf16
                                  operands with float32 accumulation; weights, optimizer
                                  state, losses, normalisation and reductions stay float32. A host without
                                  AVX512-BF16 or oneDNN trains in float32 instead and parml_trainer_plan
                                  says why (docs/precision.md). Default FP32. */
    int32_t overlap;           /* since 0.3; PARML_OVERLAP_*: dp > 1 in the default mode reduces gradient
                                  buckets (runs of whole top-level layers, bucket_bytes or more) on a
                                  communication thread per rank while backward computes earlier layers
                                  (PyTorch DDP's bucketing), at every zero_stage. The sums are the same
                                  bits either way. AUTO (default): on for MPI processes on more than
                                  one machine, off otherwise: on one machine's cores the communication
                                  thread competes with compute (docs/communication.md has the
                                  measurements); ON with
                                  deterministic mode, compression or local SGD is refused. */
} parml_strategy_params;
/* Two modes, both reproducible run after run for a given layout:
 *  - default: each rank runs one GEMM per layer on its slice; gradients are
 *    summed in rank order. Other layouts differ by float rounding only.
 *  - deterministic = 1: the batch is cut into chunks of grad_chunk samples,
 *    each chunk's gradient is computed alone, and chunk gradients are summed
 *    along a fixed binary tree over chunk indices. Every dp, pp, micro-batch
 *    count and ZeRO stage then gives bit-identical parameters to serial
 *    training in this mode (docs/parallel.md says what it costs); tp > 1
 *    splits inner sums and matches within float rounding (docs/model-parallel.md). */

/** Memory one rank holds, in bytes (parml_trainer_memory). */
typedef struct parml_memory_report {
    size_t struct_size;        /* set by the caller to sizeof(parml_memory_report) */
    int64_t parameter_bytes;   /* its pipeline stage's (tp: its slices'); ZeRO-3 on threads: its shard; on MPI: shard + one layer */
    int64_t gradient_bytes;
    int64_t optimizer_bytes;   /* optimizer state: 1/dp of the whole under ZeRO >= 1 */
    int64_t scratch_bytes;     /* deterministic-mode buffers */
    int64_t activation_bytes;  /* since 0.2: activations and their gradients, high-water (after a step) */
} parml_memory_report;

/** What one epoch of parml_trainer_fit measured. Fields that do not apply
 *  (no validation set, MSE accuracy) are NaN. */
typedef struct parml_epoch_metrics {
    size_t struct_size;     /* last_out of parml_trainer_fit: the caller sets it to
                               sizeof(parml_epoch_metrics) first; in the progress
                               callback's copy the library has set it */
    int64_t epoch;          /* 1-based */
    int64_t epochs;         /* total requested */
    int64_t steps;          /* optimizer steps taken so far in this trainer */
    float train_loss;       /* mean loss over the epoch's samples */
    float train_accuracy;   /* fraction of predictions correct (cross-entropy: N*T for sequences; since
                               0.3 also binary cross-entropy: per output, its sign against target > 0.5) */
    float val_loss;         /* on the validation dataset, if any */
    float val_accuracy;
    float learning_rate;    /* at the end of the epoch */
    double seconds;         /* wall time of the epoch's training */
    double samples_per_second;
    /* since 0.3: */
    int64_t epoch_step;     /* steps of this epoch done (all of them at its end) */
    int32_t end_of_epoch;   /* 1 at an epoch's end; 0 in a callback_every_steps call (the
                               epoch's running train metrics, no validation) */
    int32_t events;         /* PARML_EVENT_* bits: what the built-in callbacks did after this epoch */
    int64_t best_epoch;     /* early stopping's best epoch of this fit call so far, 0 = none */
    double privacy_epsilon; /* private training (parml_trainer_set_privacy): epsilon spent
                               so far at the privacy params' delta; NaN otherwise. Callers built
                               with an older header pass a smaller struct_size and do not get it */
} parml_epoch_metrics;

/* Bits of parml_epoch_metrics.events (since 0.3). */
#define PARML_EVENT_SAVED      1 /* the keep-best callback wrote its file */
#define PARML_EVENT_LR_REDUCED 2 /* reduce-on-plateau lowered the learning rate */
#define PARML_EVENT_STOPPING   4 /* early stopping ends fit after this epoch */
#define PARML_EVENT_BEST       8 /* early stopping's monitored value improved */

/** Called after each epoch (and, with callback_every_steps, after such
 *  steps); return 0 to go on, nonzero to stop (fit then returns
 *  PARML_ERR_CANCELLED). `metrics` is valid during the call only. The
 *  callback may evaluate, save, read parameters and set the learning rate
 *  of the trainer being fitted (docs/callbacks.md). */
typedef int32_t (*parml_progress_fn)(const parml_epoch_metrics *metrics, void *user_data);

/* What a built-in callback watches (parml_callback_params; since 0.3). */
#define PARML_MONITOR_NONE           0 /* the callback is off */
#define PARML_MONITOR_VAL_LOSS       1 /* needs params->validation */
#define PARML_MONITOR_VAL_ACCURACY   2
#define PARML_MONITOR_TRAIN_LOSS     3
#define PARML_MONITOR_TRAIN_ACCURACY 4

/* Which way a monitored value improves (since 0.3). */
#define PARML_MODE_AUTO 0 /* down for a loss, up for an accuracy */
#define PARML_MODE_MIN  1
#define PARML_MODE_MAX  2

/** Built-in callbacks of parml_trainer_fit (since 0.3), Keras's
 *  EarlyStopping, ModelCheckpoint and ReduceLROnPlateau. Each is off while
 *  its monitor is PARML_MONITOR_NONE. A value improves when it beats the
 *  best so far by more than min_delta (NaN never improves). They run at an
 *  epoch's end in this order: keep-best, reduce-on-plateau, early stopping,
 *  then params->progress; their counters start afresh with each fit call. */
typedef struct parml_callback_params {
    size_t struct_size;              /* set by parml_callback_params_init */
    /* Early stopping: ends fit (PARML_OK) once patience epochs in a row (at
     * least 1) did not improve the monitor. */
    int32_t early_stopping_monitor;  /* PARML_MONITOR_*; default NONE */
    int32_t early_stopping_mode;     /* PARML_MODE_*; default AUTO */
    float early_stopping_min_delta;  /* default 0 */
    int64_t early_stopping_patience; /* default 0 (stops at the first epoch without improvement) */
    /* Nonzero: when fit ends without an error (epochs done, early stop, or
     * the progress callback stopping it), the model gets the parameters of
     * the best epoch, copied at its end (bit for bit). Optimizer state and
     * the step count stay as they are. Default 0. */
    int32_t restore_best_weights;
    /* Keep-best checkpoint: writes checkpoint_path (atomically, replacing
     * it) after each epoch whose monitor improved (every epoch when
     * checkpoint_best_only is 0). MPI: every process takes part, world rank
     * 0 writes. */
    int32_t checkpoint_monitor;      /* PARML_MONITOR_*; default NONE */
    int32_t checkpoint_mode;         /* PARML_MODE_*; default AUTO */
    float checkpoint_min_delta;      /* default 0 */
    int32_t checkpoint_best_only;    /* default 1 */
    int32_t checkpoint_training_state; /* 0 (default): a model file (parml_model_load);
                                          1: a training checkpoint (parml_trainer_load_checkpoint) */
    const char *checkpoint_path;     /* read during fit; NULL with a monitor set is an error */
    /* Reduce-on-plateau: after patience epochs in a row (at least 1)
     * without improvement (the cooldown epochs after a reduction do not
     * count), sets the learning rate to max(lr * factor, min_lr) as
     * parml_trainer_set_learning_rate does; nothing when lr <= min_lr. */
    int32_t reduce_lr_monitor;       /* PARML_MONITOR_*; default NONE */
    int32_t reduce_lr_mode;          /* PARML_MODE_*; default AUTO */
    float reduce_lr_min_delta;       /* default 1e-4, as Keras */
    float reduce_lr_factor;          /* in (0, 1); default 0.1 */
    int64_t reduce_lr_patience;      /* default 10 */
    int64_t reduce_lr_cooldown;      /* default 0 */
    float reduce_lr_min_lr;          /* default 0 */
} parml_callback_params;

/** Options of parml_trainer_fit. */
typedef struct parml_fit_params {
    size_t struct_size;        /* set by parml_fit_params_init */
    int64_t epochs;            /* default 1 */
    int64_t batch_size;        /* global batch; default 64 */
    int32_t shuffle;           /* reshuffle each epoch (seeded); default 1 */
    int32_t drop_last;         /* skip a last partial batch; default 0 */
    parml_dataset validation;  /* borrowed for the call; NULL = none */
    parml_progress_fn progress;/* NULL = no callback */
    void *user_data;           /* passed to progress */
    /* since 0.3: class-balanced sampling (PyTorch's WeightedRandomSampler):
     * one weight (finite, >= 0) per class; each epoch draws as many samples
     * as the dataset holds, with replacement, sample i with probability
     * proportional to the weight of its class (shuffle is then moot). The
     * draws are a function of (seed, epoch), the same under every layout.
     * Needs a dataset of one class index per sample; the array is read
     * during the call only. NULL (default) = each sample once per epoch. */
    const float *class_sampling_weights;
    int64_t num_class_sampling_weights;
    /* since 0.3: progress also runs after every step whose trainer step
     * count is a multiple of this (end_of_epoch = 0); 0 (default) = only
     * after epochs. */
    int64_t callback_every_steps;
    /* since 0.3: the built-in callbacks; read during the call; NULL
     * (default) = none. */
    const parml_callback_params *callbacks;
} parml_fit_params;

/** Options of parml_dataset_create_tokens and _load_tokens. Sample j of
 *  epoch e is the window at s: inputs ids[s .. s+T), targets ids[s+1 .. s+T]. */
typedef struct parml_token_params {
    size_t struct_size;        /* set by parml_token_params_init */
    int32_t mode;              /* PARML_TOKENS_RANDOM (default) or _SEQUENTIAL */
    uint64_t seed;             /* random mode: s of sample j in epoch e is drawn from (seed, e, j),
                                  uniform in 0 .. N-T-1; default 0 */
    int64_t windows_per_epoch; /* random mode: samples per epoch; 0 (default) = (N-1)/T, which is
                                  also sequential mode's count (it takes 0 only) */
} parml_token_params;

/** Options of parml_dataset_load_csv. Columns are counted from 0. A column
 *  is chosen by header name or by index; the names are read during the
 *  call only. */
typedef struct parml_csv_params {
    size_t struct_size;            /* set by parml_csv_params_init */
    int32_t delimiter;             /* the field separator, one byte; default ',' */
    int32_t has_header;            /* 1 (default): the first non-blank line names the columns */
    const char *label_name;        /* the label column by header name; NULL (default): by label_index */
    int64_t label_index;           /* the label column by index; -1 (default) = the last column */
    const char *const *feature_names; /* num_features feature columns by header name, or NULL */
    const int64_t *feature_indices;   /* num_features feature columns by index, or NULL (one of the two) */
    int64_t num_features;          /* 0 (default): every column but the label, in file order */
    int32_t label_kind;            /* PARML_CSV_LABEL_CLASS (default), _VALUE or _TEXT */
} parml_csv_params;

/** Since 0.3: what a trainer's loss weighs (parml_trainer_set_loss), with
 *  PyTorch's meanings. The library copies the arrays; they need live only
 *  for the call. */
typedef struct parml_loss_params {
    size_t struct_size;          /* set by parml_loss_params_init */
    const float *class_weights;  /* CROSS_ENTROPY: one weight (finite, >= 0) per class, torch's weight=:
                                    the loss is sum w[y]*l / sum w[y] over the global batch's targets
                                    (every layout computes it from the whole batch). NULL (default) = none */
    int64_t num_class_weights;   /* entries in class_weights: the model's classes */
    float label_smoothing;       /* CROSS_ENTROPY: torch's label_smoothing=, in [0, 1]: the target is
                                    (1 - e) one-hot + e/C; default 0 */
    const float *pos_weight;     /* BCE_WITH_LOGITS: one weight (finite, >= 0) per output, multiplying
                                    the positive term (torch's pos_weight=); NULL (default) = none */
    int64_t num_pos_weight;      /* entries in pos_weight: the model's outputs (last dimension) */
} parml_loss_params;

/** Since 0.3: how parml_model_save_with and parml_model_serialize_with
 *  write a model file. */
typedef struct parml_model_file_params {
    size_t struct_size;      /* set by parml_model_file_params_init */
    int32_t weights_dtype;   /* PARML_DTYPE_FLOAT32 (default): the parameters exactly;
                                PARML_DTYPE_BFLOAT16: each rounded to bfloat16 (nearest even,
                                subnormals to zero), half the bytes, for exchange; loading widens
                                them back to float32. Checkpoints are always float32 */
    const void *key;         /* NULL (default): no tag; else an HMAC-SHA-256 key of key_len >= 16
                                bytes, borrowed for the call (parml_model_save_authenticated) */
    size_t key_len;
} parml_model_file_params;

/** Since 0.3: options of parml_trainer_evaluate_metrics, and where it
 *  writes per-class results: caller-owned buffers of `capacity` classes
 *  (confusion: capacity * capacity; a binary cross-entropy trainer's
 *  multi-label confusion: 4 * capacity), each NULL when not wanted. They
 *  are written only on success. */
typedef struct parml_metrics_params {
    size_t struct_size;   /* set by parml_metrics_params_init */
    int64_t top_k;        /* top_k_accuracy counts targets among the k largest logits; default 5 */
    int64_t capacity;     /* classes the buffers below hold; must be >= the model's classes
                             when any buffer is set; default 0 */
    int64_t *confusion;   /* [target * classes + predicted]: prediction counts, row-major classes x classes;
                             multi-label: [label * 4 + 2 * target + predicted], [[tn, fp], [fn, tp]] per label */
    int64_t *support;     /* per class: predictions whose target is the class (multi-label: rows with the label) */
    float *precision;     /* per class: tp / predicted (0 when nothing was predicted as it) */
    float *recall;        /* per class: tp / support (0 when the class never is a target) */
    float *f1;            /* per class: 2 tp / (support + predicted) (0 when both are 0) */
} parml_metrics_params;

/** Since 0.3: what parml_trainer_evaluate_metrics measured over a dataset,
 *  scikit-learn's definitions (precision_recall_fscore_support,
 *  top_k_accuracy_score). A prediction is a sample, or a position of a
 *  sequence's logits (N, T, C); its class is the first arg-max. For a binary
 *  cross-entropy trainer (multi-label) each output is a label decision:
 *  accuracy is the share of right ones, top_k_accuracy NaN, the macro means
 *  over every label. */
typedef struct parml_metrics {
    size_t struct_size;         /* set by the caller to sizeof(parml_metrics) */
    int64_t classes;            /* the model's classes C */
    int64_t predictions;
    float loss;                 /* mean loss, as parml_trainer_evaluate */
    float accuracy;
    float top_k_accuracy;
    float macro_precision;      /* unweighted means over the classes that occur as a target or a */
    float macro_recall;         /* prediction (scikit-learn's average="macro", default labels) */
    float macro_f1;
    float weighted_precision;   /* means weighted by each class's support (average="weighted") */
    float weighted_recall;
    float weighted_f1;
} parml_metrics;

/** Options of parml_dataset_set_augmentation: how parml_trainer_fit transforms
 *  a dataset's images (samples (C, H, W), or (H, W) as one channel) when it
 *  forms training batches, as torchvision's RandomCrop(padding) then
 *  RandomHorizontalFlip(). Sample s of epoch e draws from (the trainer's seed,
 *  e, s), so every layout trains on the same images. Since: 0.3. */
typedef struct parml_augment_params {
    size_t struct_size;        /* set by parml_augment_params_init */
    int32_t crop_padding;      /* p: pad p zeros on each side, crop back to H x W at a random offset;
                                  0 (default) = no crop; below H and W */
    int32_t horizontal_flip;   /* 1: mirror left-right with probability 1/2; default 0 */
} parml_augment_params;

/* How a private parml_trainer_fit draws its batches (parml_privacy_params.sampling). */
#define PARML_SAMPLING_POISSON  0 /* each example joins each batch with probability q = batch_size / n:
                                     batch sizes vary; what the accountant analyses */
#define PARML_SAMPLING_SHUFFLED 1 /* shuffled fixed-size batches, each example once per epoch: not
                                     the mechanism the accountant analyses (docs/privacy.md) */

/** DP-SGD settings of parml_trainer_set_privacy (docs/privacy.md): each
 *  example's gradient clipped to max_grad_norm C, Gaussian noise of standard
 *  deviation noise_multiplier * C added to the clipped sum, divided by the
 *  (expected) batch size. Since: 0.3. */
typedef struct parml_privacy_params {
    size_t struct_size;        /* set by parml_privacy_params_init */
    double noise_multiplier;   /* sigma, finite and >= 0 (0: clipping only, no guarantee); default 1.0 */
    double max_grad_norm;      /* C, finite and > 0; default 1.0 */
    double delta;              /* the delta parml_trainer_fit reports epsilon for, in (0, 1); default 1e-5 */
    int32_t sampling;          /* PARML_SAMPLING_*; default PARML_SAMPLING_POISSON */
} parml_privacy_params;

/* ------------------------------------------------------------------------ */
/* Strategy advisor (docs/advisor.md; since 0.3)                              */
/* ------------------------------------------------------------------------ */

/** The advisor's answer: layouts ranked by predicted step time, and those
 *  left out with why (parml_strategy_advise; free with parml_advice_free). */
typedef struct parml_advice_s *parml_advice;

/** What parml_strategy_advise and parml_trainer_create_auto are asked.
 *  sample_dims/sample_rank: one sample's input shape, no batch dimension
 *  ((784), (1, 28, 28), (T) token ids); the library copies it. Since: 0.3. */
typedef struct parml_advice_params {
    size_t struct_size;           /* set by parml_advice_params_init */
    const int64_t *sample_dims;   /* required: sample_rank dims, each >= 1 */
    int64_t sample_rank;          /* 1..7 */
    int64_t batch;                /* global batch per step; required, >= 1 */
    int32_t cores;                /* cores the ranks may use; 0 (default): this machine's online cores */
    int32_t max_ranks;            /* ranks at most; 0 (default): 4, or under MPI the job's processes */
    int64_t memory_budget;        /* peak bytes per rank as parml_trainer_memory counts them; 0 (default): none */
    int32_t deterministic;        /* 1: only deterministic-mode layouts; default 0 */
    int32_t backend;              /* PARML_BACKEND_*; default THREADS (MPI: inside the job, or with a machine description) */
    const char *cache_dir;        /* calibration cache directory; NULL (default): $PARML_CACHE_DIR, else
                                     $XDG_CACHE_HOME/parml, else ~/.cache/parml */
    int32_t nodes;                /* 0 (default): this machine. >= 1: predict for nodes x ranks_per_node ranks */
    int32_t ranks_per_node;       /* with nodes >= 1 */
    int32_t cores_per_node;       /* with nodes >= 1 */
    double inter_node_bandwidth;  /* bytes/s of one link between nodes; default 12.5e9 (100 Gb/s) */
    double inter_node_latency;    /* seconds per message between nodes; default 5e-6 */
} parml_advice_params;

/** One ranked layout's prediction (parml_advice_layout): seconds per step
 *  split into terms, and the fullest rank's bytes in parml_trainer_memory's
 *  accounting. Since: 0.3. */
typedef struct parml_layout_prediction {
    size_t struct_size;           /* set to sizeof(parml_layout_prediction) before the call */
    int32_t dp;
    int32_t pp;
    int32_t tp;
    int32_t micro_batches;
    int32_t zero_stage;
    int32_t blas_threads;         /* BLAS threads per rank this layout runs */
    double step_seconds;          /* the sum of the five terms below */
    double compute_seconds;       /* matrix and element-wise work of the slowest stage */
    double communication_seconds; /* dp, tp and pp exchanges on the critical path */
    double bubble_seconds;        /* pipeline fill and drain */
    double optimizer_seconds;     /* the update of the rank's parameters */
    double overhead_seconds;      /* thread hand-over, the step's statistics */
    int64_t parameter_bytes;      /* the fullest rank's, as parml_trainer_memory reports them */
    int64_t gradient_bytes;
    int64_t optimizer_bytes;
    int64_t scratch_bytes;
    int64_t activation_bytes;
    int64_t peak_bytes;           /* their sum on the fullest rank */
    int32_t peak_stage;           /* that rank's pipeline stage */
} parml_layout_prediction;

#endif /* PARML_TYPES_H */
