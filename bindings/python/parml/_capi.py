"""Tier 2: the C API of libparml, bound 1:1 through ctypes.

Every function declared in include/parml.h is bound here, under its C
prototype, with explicit ``argtypes`` and ``restype``
(``tests/test_capi.py`` parses the header and checks that nothing is missing
or typed differently). Nothing here raises on a non-OK status: the functions
return the ``parml_status`` integer exactly as C does, and
:func:`parml.errors.check` turns it into an exception in the tier above.

Each handle kind is its own ctypes type, a POINTER to a distinct opaque
Structure, so passing a ``parml_model`` where a ``parml_trainer`` is expected
raises TypeError here instead of reaching C. (ctypes reports a bad argument
as ``ctypes.ArgumentError``; the binding re-raises it as TypeError.)

The parameter structs mirror include/parml_types.h field by field in header
order. Always fill them with the matching ``parml_*_params_init`` function,
never from Python-side defaults.
"""

from __future__ import annotations

import ctypes
import functools
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_int64,
    c_size_t,
    c_ssize_t,
    c_uint64,
    c_void_p,
)
from typing import Any, Callable, TypeVar

from ._lib import LIB

# ptrdiff_t: ctypes has no c_ptrdiff_t; on every platform parml supports it is
# the signed counterpart of size_t.
c_ptrdiff_t = c_ssize_t

#: name -> bound Python callable, for every C function bound below.
BOUND: dict[str, Callable[..., Any]] = {}

_F = TypeVar("_F", bound=Callable[..., Any])


def ctypes_function(name: str, argtypes: list[Any], restype: Any) -> Callable[[_F], _F]:
    """Binds C function `name` with `argtypes`/`restype` behind the typed stub.

    The stub's signature and docstring are kept (IDEs and type checkers see
    them); its body is never run. A wrong argument type (a model where a
    trainer is expected, a float where a pointer is) raises TypeError.
    """

    def decorator(stub: _F) -> _F:
        cfunc = getattr(LIB, name)
        cfunc.argtypes = argtypes
        cfunc.restype = restype

        def call(*args: Any) -> Any:
            try:
                return cfunc(*args)
            except ctypes.ArgumentError as e:
                raise _argument_error(name, e, args) from None

        functools.update_wrapper(call, stub)
        call.c_name = name  # type: ignore[attr-defined]
        call.c_function = cfunc  # type: ignore[attr-defined]
        call.argtypes = tuple(argtypes)  # type: ignore[attr-defined]
        call.restype = restype  # type: ignore[attr-defined]
        BOUND[name] = call
        return call  # type: ignore[return-value]

    return decorator


def _argument_error(name: str, error: Exception, args: tuple[Any, ...]) -> Exception:
    # A closed wrapper passed as its handle (through _as_parameter_) is a
    # ClosedError; anything else ctypes refused is a TypeError.
    for arg in args:
        if getattr(arg, "closed", False) is True and hasattr(type(arg), "_as_parameter_"):
            from .errors import ClosedError

            return ClosedError(f"{name}: {type(arg).__name__} is closed")
    return TypeError(f"{name}: {error}")


# ---------------------------------------------------------------------------
# Constants (parml_types.h; tests/test_capi.py checks them against the header)
# ---------------------------------------------------------------------------

PARML_VERSION_MAJOR = 0
PARML_VERSION_MINOR = 3
PARML_VERSION_PATCH = 0
PARML_VERSION_NUMBER = PARML_VERSION_MAJOR * 10000 + PARML_VERSION_MINOR * 100 + PARML_VERSION_PATCH
PARML_VERSION_STRING = "0.3.0"

PARML_OK = 0
PARML_ERR_INVALID_ARGUMENT = 1
PARML_ERR_SHAPE = 2
PARML_ERR_UNSUPPORTED = 3
PARML_ERR_OUT_OF_MEMORY = 4
PARML_ERR_IO = 5
PARML_ERR_FORMAT = 6
PARML_ERR_STATE = 7
PARML_ERR_BLAS = 8
PARML_ERR_CANCELLED = 9
PARML_ERR_INTERNAL = 10
PARML_ERR_COMMUNICATION = 11
PARML_ERR_NONFINITE = 12
PARML_ERR_AUTH_MISSING = 13
PARML_ERR_AUTH_KEY = 14
PARML_ERR_AUTH_FAILED = 15

PARML_ACTIVATION_RELU = 1
PARML_ACTIVATION_GELU = 2
PARML_ACTIVATION_TANH = 3
PARML_ACTIVATION_SIGMOID = 4

PARML_DTYPE_FLOAT32 = 1
PARML_DTYPE_INT32 = 2
PARML_DTYPE_INT64 = 3
PARML_DTYPE_BFLOAT16 = 4

PARML_ATTR_INT = 1
PARML_ATTR_FLOAT = 2
PARML_ATTR_BOOL = 3
PARML_ATTR_STRING = 4
PARML_ATTR_INTS = 5

PARML_LAYER_INPUT_VALUES = 1
PARML_LAYER_INPUT_TOKEN_IDS = 2

PARML_LOSS_CROSS_ENTROPY = 1
PARML_LOSS_MSE = 2
PARML_LOSS_BCE_WITH_LOGITS = 3

PARML_SAMPLING_POISSON = 0
PARML_SAMPLING_SHUFFLED = 1

PARML_OPTIMIZER_SGD = 1
PARML_OPTIMIZER_ADAM = 2
PARML_OPTIMIZER_ADAMW = 3

PARML_SCHEDULE_CONSTANT = 1
PARML_SCHEDULE_STEP = 2
PARML_SCHEDULE_COSINE = 3

PARML_PIPELINE_GPIPE = 1
PARML_PIPELINE_1F1B = 2
PARML_PIPELINE_INTERLEAVED_1F1B = 3

PARML_BACKEND_THREADS = 1
PARML_BACKEND_MPI = 2
PARML_COMPRESSION_NONE = 0
PARML_COMPRESSION_BF16 = 1
PARML_COMPRESSION_FP16 = 2
PARML_COMPRESSION_POWERSGD = 3
PARML_PRECISION_FP32 = 0
PARML_PRECISION_BF16 = 1
PARML_OVERLAP_AUTO = 0
PARML_OVERLAP_ON = 1
PARML_OVERLAP_OFF = 2

PARML_TOKENS_RANDOM = 1
PARML_TOKENS_SEQUENTIAL = 2

PARML_TOKEN_FILE_UINT8 = 1
PARML_TOKEN_FILE_UINT16 = 2
PARML_TOKEN_FILE_UINT32 = 3
PARML_TOKEN_FILE_INT32 = 4

# Bits of parml_epoch_metrics.events (since 0.3).
PARML_EVENT_SAVED = 1
PARML_EVENT_LR_REDUCED = 2
PARML_EVENT_STOPPING = 4
PARML_EVENT_BEST = 8

# What a built-in callback watches (parml_callback_params; since 0.3).
PARML_MONITOR_NONE = 0
PARML_MONITOR_VAL_LOSS = 1
PARML_MONITOR_VAL_ACCURACY = 2
PARML_MONITOR_TRAIN_LOSS = 3
PARML_MONITOR_TRAIN_ACCURACY = 4

PARML_MODE_AUTO = 0
PARML_MODE_MIN = 1
PARML_MODE_MAX = 2

# What a CSV label column holds (parml_csv_params.label_kind).
PARML_CSV_LABEL_CLASS = 1
PARML_CSV_LABEL_VALUE = 2
PARML_CSV_LABEL_TEXT = 3

# ---------------------------------------------------------------------------
# Opaque handles: one distinct pointer type per kind
# ---------------------------------------------------------------------------

parml_status = c_int32


class parml_tensor_s(Structure):
    """Opaque: struct parml_tensor_s."""


class parml_model_s(Structure):
    """Opaque: struct parml_model_s."""


class parml_trainer_s(Structure):
    """Opaque: struct parml_trainer_s."""


class parml_dataset_s(Structure):
    """Opaque: struct parml_dataset_s."""


# typedef struct parml_tensor_s *parml_tensor;
parml_tensor = POINTER(parml_tensor_s)
# typedef struct parml_model_s *parml_model;
parml_model = POINTER(parml_model_s)
# typedef struct parml_trainer_s *parml_trainer;
parml_trainer = POINTER(parml_trainer_s)
# typedef struct parml_dataset_s *parml_dataset;
parml_dataset = POINTER(parml_dataset_s)

HANDLE_TYPES = {
    "parml_tensor": parml_tensor,
    "parml_model": parml_model,
    "parml_trainer": parml_trainer,
    "parml_dataset": parml_dataset,
}

# ---------------------------------------------------------------------------
# Parameter structs, in header order
# ---------------------------------------------------------------------------


class parml_optimizer_params(Structure):
    """Optimizer, learning-rate schedule and gradient clipping.

    Attributes:
        struct_size: set by parml_optimizer_params_init
        kind: PARML_OPTIMIZER_*; default SGD
        learning_rate: base (peak) learning rate; default 0.01
        momentum: SGD momentum; default 0
        nesterov: SGD: nonzero for Nesterov momentum; default 0
        weight_decay: L2 (SGD, Adam) or decoupled (AdamW); default 0 (AdamW: 0.01)
        beta1: Adam/AdamW; default 0.9
        beta2: Adam/AdamW; default 0.999
        epsilon: Adam/AdamW; default 1e-8
        schedule: PARML_SCHEDULE_*; default CONSTANT
        warmup_steps: linear warmup from lr/warmup_steps to lr; default 0
        step_size: STEP: steps between decays; default 1
        gamma: STEP: decay factor; default 0.1
        total_steps: COSINE: steps (warmup included) to reach min_lr
        min_lr: COSINE: final learning rate; default 0
        clip_grad_norm: clip gradients to this global L2 norm; 0 = off
        skip_nonfinite: 1 (default) skips a step whose loss or gradients are not finite; 0 = no check
        decay_by_kind: 1 decays only parameters whose layer kind decays them; 0 (default) every parameter
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("kind", c_int32),
        ("learning_rate", c_float),
        ("momentum", c_float),
        ("nesterov", c_int32),
        ("weight_decay", c_float),
        ("beta1", c_float),
        ("beta2", c_float),
        ("epsilon", c_float),
        ("schedule", c_int32),
        ("warmup_steps", c_int64),
        ("step_size", c_int64),
        ("gamma", c_float),
        ("total_steps", c_int64),
        ("min_lr", c_float),
        ("clip_grad_norm", c_float),
        ("skip_nonfinite", c_int64),
        ("decay_by_kind", c_int64),
    ]


class parml_strategy_params(Structure):
    """How training is laid out on a dp x pp x tp mesh of ranks.

    Data, pipeline and tensor parallelism and their products (dp, pp, tp,
    micro-batches, ZeRO stages 0-3) run on the threads backend (ranks are
    threads of this process) and on the MPI backend (one rank per process
    under mpirun; docs/mpi.md).

    Attributes:
        struct_size: set by parml_strategy_params_init
        dp: data-parallel ranks; default 1
        tp: tensor-parallel ranks; default 1
        pp: pipeline stages; default 1
        micro_batches: pipeline micro-batches per step; default 1
        pipeline_schedule: PARML_PIPELINE_*; default 1F1B
        zero_stage: 0..3 on the dp axis; default 0
        backend: PARML_BACKEND_*; default THREADS
        deterministic: nonzero: layout-invariant mode; default 0
        blas_threads: threads per rank (parml's own; OpenBLAS runs 1 inside each); 0 = cores / ranks (the cores this process may run on), or 1 when deterministic
        seed: dropout masks and shuffling; default 0
        bucket_bytes: gradient all-reduce bucket size; default 4 MiB
        watchdog_seconds: a rank waiting longer in a collective fails the step; default 60
        grad_chunk: deterministic mode: samples per gradient chunk; default 32
        split_classifier: since 0.2; tp > 1: nonzero splits the classifier by
            classes, with the cross-entropy on the sharded logits, and (0.3)
            token embeddings by vocabulary rows; default 0
        virtual_stages: since 0.3; PARML_PIPELINE_INTERLEAVED_1F1B: runs of
            layers per stage (>= 2); default 1
        gradient_compression: since 0.3; PARML_COMPRESSION_*: the dp gradient
            sum's wire format (16-bit, with error feedback); default NONE
        local_steps: since 0.3; local SGD: steps between parameter averages;
            default 1 (gradients summed every step)
        compression_rank: since 0.3; PowerSGD's rank r; default 4
        outer_learning_rate: since 0.3; local SGD's outer Nesterov step (DiLoCo); default 1
        outer_momentum: since 0.3; its momentum, in [0, 1); default 0 (plain averaging)
        precision: since 0.3; PARML_PRECISION_*: BF16 runs Linear, attention
            projection and oneDNN convolution products on bf16 operands with
            float32 accumulation (float32 where the host
            cannot; the plan says); default FP32
        overlap: since 0.3; PARML_OVERLAP_*: dp gradient buckets reduced on a
            communication thread per rank while backward goes on; default
            AUTO (on for MPI processes on more than one machine, else off)
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("dp", c_int32),
        ("tp", c_int32),
        ("pp", c_int32),
        ("micro_batches", c_int32),
        ("pipeline_schedule", c_int32),
        ("zero_stage", c_int32),
        ("backend", c_int32),
        ("deterministic", c_int32),
        ("blas_threads", c_int32),
        ("seed", c_uint64),
        ("bucket_bytes", c_int64),
        ("watchdog_seconds", c_double),
        ("grad_chunk", c_int32),
        ("split_classifier", c_int64),
        ("virtual_stages", c_int64),
        ("gradient_compression", c_int32),
        ("local_steps", c_int32),
        ("compression_rank", c_int32),
        ("outer_learning_rate", c_float),
        ("outer_momentum", c_float),
        ("precision", c_int32),
        ("overlap", c_int32),
    ]


class parml_memory_report(Structure):
    """Memory one rank holds, in bytes (parml_trainer_memory).

    Attributes:
        struct_size: set by the caller to sizeof(parml_memory_report)
        parameter_bytes: its stage's (tp: its slices'); ZeRO-3 on threads:
            this rank's shard of the one shared copy; on MPI: its shard plus
            the largest layer's part outside it
        gradient_bytes: gradients
        optimizer_bytes: optimizer state: 1/dp of the whole under ZeRO >= 1
        scratch_bytes: deterministic-mode buffers
        activation_bytes: since 0.2: activations and their gradients, high-water (after a step)
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("parameter_bytes", c_int64),
        ("gradient_bytes", c_int64),
        ("optimizer_bytes", c_int64),
        ("scratch_bytes", c_int64),
        ("activation_bytes", c_int64),
    ]


class parml_epoch_metrics(Structure):
    """What one epoch of parml_trainer_fit measured. Fields that do not apply
    (no validation set, MSE accuracy) are NaN.

    Attributes:
        struct_size: the caller sets it to sizeof(parml_epoch_metrics) before
            passing last_out to parml_trainer_fit; set in the callback's copy
        epoch: 1-based
        epochs: total requested
        steps: optimizer steps taken so far in this trainer
        train_loss: mean loss over the epoch's samples
        train_accuracy: fraction correct (cross-entropy only)
        val_loss: on the validation dataset, if any
        val_accuracy: on the validation dataset, if any
        learning_rate: at the end of the epoch
        seconds: wall time of the epoch's training
        samples_per_second: training throughput of the epoch
        epoch_step: since 0.3: steps of this epoch done
        end_of_epoch: 1 at an epoch's end, 0 in a callback_every_steps call
        events: PARML_EVENT_* bits: what the built-in callbacks did
        best_epoch: early stopping's best epoch of this fit call, 0 = none
        privacy_epsilon: since 0.3: private training: epsilon spent so far; NaN otherwise
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("epoch", c_int64),
        ("epochs", c_int64),
        ("steps", c_int64),
        ("train_loss", c_float),
        ("train_accuracy", c_float),
        ("val_loss", c_float),
        ("val_accuracy", c_float),
        ("learning_rate", c_float),
        ("seconds", c_double),
        ("samples_per_second", c_double),
        ("epoch_step", c_int64),
        ("end_of_epoch", c_int32),
        ("events", c_int32),
        ("best_epoch", c_int64),
        ("privacy_epsilon", c_double),
    ]


# typedef int32_t (*parml_progress_fn)(const parml_epoch_metrics *metrics, void *user_data);
# Keep the CFUNCTYPE object referenced for as long as C may call it.
parml_progress_fn = CFUNCTYPE(c_int32, POINTER(parml_epoch_metrics), c_void_p)


class parml_callback_params(Structure):
    """Built-in callbacks of parml_trainer_fit (since 0.3): early stopping,
    keep-best checkpoint, reduce-on-plateau; each off while its monitor is
    PARML_MONITOR_NONE (docs/callbacks.md)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("early_stopping_monitor", c_int32),
        ("early_stopping_mode", c_int32),
        ("early_stopping_min_delta", c_float),
        ("early_stopping_patience", c_int64),
        ("restore_best_weights", c_int32),
        ("checkpoint_monitor", c_int32),
        ("checkpoint_mode", c_int32),
        ("checkpoint_min_delta", c_float),
        ("checkpoint_best_only", c_int32),
        ("checkpoint_training_state", c_int32),
        ("checkpoint_path", c_char_p),
        ("reduce_lr_monitor", c_int32),
        ("reduce_lr_mode", c_int32),
        ("reduce_lr_min_delta", c_float),
        ("reduce_lr_factor", c_float),
        ("reduce_lr_patience", c_int64),
        ("reduce_lr_cooldown", c_int64),
        ("reduce_lr_min_lr", c_float),
    ]


class parml_fit_params(Structure):
    """Options of parml_trainer_fit.

    Attributes:
        struct_size: set by parml_fit_params_init
        epochs: default 1
        batch_size: global batch; default 64
        shuffle: reshuffle each epoch (seeded); default 1
        drop_last: skip a last partial batch; default 0
        validation: borrowed for the call; NULL = none
        progress: NULL = no callback
        user_data: passed to progress
        class_sampling_weights: since 0.3: one weight per class for class-balanced
            sampling with replacement; NULL = each sample once per epoch
        num_class_sampling_weights: entries in class_sampling_weights
        callback_every_steps: since 0.3: progress also runs after every step
            whose step count is a multiple of it; 0 = after epochs only
        callbacks: since 0.3: the built-in callbacks; NULL = none
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("epochs", c_int64),
        ("batch_size", c_int64),
        ("shuffle", c_int32),
        ("drop_last", c_int32),
        ("validation", parml_dataset),
        ("progress", parml_progress_fn),
        ("user_data", c_void_p),
        ("class_sampling_weights", POINTER(c_float)),
        ("num_class_sampling_weights", c_int64),
        ("callback_every_steps", c_int64),
        ("callbacks", POINTER(parml_callback_params)),
    ]


class parml_token_params(Structure):
    """Options of parml_dataset_create_tokens and _load_tokens.

    Attributes:
        struct_size: set by parml_token_params_init
        mode: PARML_TOKENS_RANDOM (default) or _SEQUENTIAL
        seed: random mode: window starts are drawn from (seed, epoch, sample); default 0
        windows_per_epoch: random mode: samples per epoch; 0 (default) = (N-1)/T
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("mode", c_int32),
        ("seed", c_uint64),
        ("windows_per_epoch", c_int64),
    ]


class parml_augment_params(Structure):
    """Options of parml_dataset_set_augmentation: how parml_trainer_fit
    transforms a dataset's images when it forms training batches.

    Attributes:
        struct_size: set by parml_augment_params_init
        crop_padding: pad p zeros on each side, crop back to H x W at a random offset; 0 (default) = no crop
        horizontal_flip: 1: mirror left-right with probability 1/2; default 0
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("crop_padding", c_int32),
        ("horizontal_flip", c_int32),
    ]


class parml_csv_params(Structure):
    """Options of parml_dataset_load_csv. Columns are counted from 0.

    Attributes:
        struct_size: set by parml_csv_params_init
        delimiter: the field separator, one byte; default ','
        has_header: 1 (default): the first non-blank line names the columns
        label_name: the label column by header name; NULL (default): by label_index
        label_index: the label column by index; -1 (default) = the last column
        feature_names: num_features feature columns by header name, or NULL
        feature_indices: num_features feature columns by index, or NULL
        num_features: 0 (default): every column but the label, in file order
        label_kind: PARML_CSV_LABEL_CLASS (default), PARML_CSV_LABEL_VALUE or PARML_CSV_LABEL_TEXT
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("delimiter", c_int32),
        ("has_header", c_int32),
        ("label_name", c_char_p),
        ("label_index", c_int64),
        ("feature_names", POINTER(c_char_p)),
        ("feature_indices", POINTER(c_int64)),
        ("num_features", c_int64),
        ("label_kind", c_int32),
    ]


class parml_attribute(Structure):
    """One named, typed attribute of a layer, for parml_model_add_layer.

    Attributes:
        name: the attribute's name, as the kinds query lists it
        type: PARML_ATTR_*
        int_value: INT, BOOL
        float_value: FLOAT
        string_value: STRING
        ints: INTS: n_ints values (NULL when n_ints is 0)
        n_ints: the number of values in ints
    """

    _fields_ = [
        ("name", c_char_p),
        ("type", c_int32),
        ("int_value", c_int64),
        ("float_value", c_double),
        ("string_value", c_char_p),
        ("ints", POINTER(c_int64)),
        ("n_ints", c_int64),
    ]


class parml_loss_params(Structure):
    """What a trainer's loss weighs (parml_trainer_set_loss), PyTorch's meanings.

    Attributes:
        struct_size: set by parml_loss_params_init
        class_weights: CROSS_ENTROPY: one weight per class (torch's weight=), copied; NULL = none
        num_class_weights: entries in class_weights
        label_smoothing: CROSS_ENTROPY: torch's label_smoothing=, in [0, 1]; default 0
        pos_weight: BCE_WITH_LOGITS: one weight per output (torch's pos_weight=); NULL = none
        num_pos_weight: entries in pos_weight
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("class_weights", POINTER(c_float)),
        ("num_class_weights", c_int64),
        ("label_smoothing", c_float),
        ("pos_weight", POINTER(c_float)),
        ("num_pos_weight", c_int64),
    ]


class parml_model_file_params(Structure):
    """How parml_model_save_with and parml_model_serialize_with write a model file.

    Attributes:
        struct_size: set by parml_model_file_params_init
        weights_dtype: PARML_DTYPE_FLOAT32 (default) or PARML_DTYPE_BFLOAT16 (half the bytes, for exchange)
        key: NULL (default) or an HMAC-SHA-256 key of key_len >= 16 bytes, borrowed for the call
        key_len: bytes at key
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("weights_dtype", c_int32),
        ("key", c_void_p),
        ("key_len", c_size_t),
    ]


class parml_privacy_params(Structure):
    """DP-SGD settings of parml_trainer_set_privacy (docs/privacy.md).

    Attributes:
        struct_size: set by parml_privacy_params_init
        noise_multiplier: sigma, >= 0; default 1.0
        max_grad_norm: C, > 0; default 1.0
        delta: the delta fit reports epsilon for; default 1e-5
        sampling: PARML_SAMPLING_*; default PARML_SAMPLING_POISSON
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("noise_multiplier", c_double),
        ("max_grad_norm", c_double),
        ("delta", c_double),
        ("sampling", c_int32),
    ]


class parml_metrics_params(Structure):
    """Options of parml_trainer_evaluate_metrics and the caller's per-class buffers.

    Attributes:
        struct_size: set by parml_metrics_params_init
        top_k: top_k_accuracy counts targets among the k largest logits; default 5
        capacity: classes the buffers hold (confusion: capacity * capacity)
        confusion: [target * classes + predicted] counts, or NULL
        support: per class: predictions whose target is the class, or NULL
        precision: per class, or NULL
        recall: per class, or NULL
        f1: per class, or NULL
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("top_k", c_int64),
        ("capacity", c_int64),
        ("confusion", POINTER(c_int64)),
        ("support", POINTER(c_int64)),
        ("precision", POINTER(c_float)),
        ("recall", POINTER(c_float)),
        ("f1", POINTER(c_float)),
    ]


class parml_metrics(Structure):
    """What parml_trainer_evaluate_metrics measured (scikit-learn's definitions).

    Attributes:
        struct_size: the caller sets it to sizeof(parml_metrics)
        classes: the model's classes
        predictions: samples, or positions of a sequence's logits
        loss: mean loss, as parml_trainer_evaluate
        accuracy, top_k_accuracy: fractions of the predictions
        macro_precision, macro_recall, macro_f1: means over the classes seen
        weighted_precision, weighted_recall, weighted_f1: means weighted by support
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("classes", c_int64),
        ("predictions", c_int64),
        ("loss", c_float),
        ("accuracy", c_float),
        ("top_k_accuracy", c_float),
        ("macro_precision", c_float),
        ("macro_recall", c_float),
        ("macro_f1", c_float),
        ("weighted_precision", c_float),
        ("weighted_recall", c_float),
        ("weighted_f1", c_float),
    ]


STRUCT_TYPES = {
    "parml_attribute": parml_attribute,
    "parml_optimizer_params": parml_optimizer_params,
    "parml_strategy_params": parml_strategy_params,
    "parml_memory_report": parml_memory_report,
    "parml_epoch_metrics": parml_epoch_metrics,
    "parml_fit_params": parml_fit_params,
    "parml_callback_params": parml_callback_params,
    "parml_token_params": parml_token_params,
    "parml_augment_params": parml_augment_params,
    "parml_csv_params": parml_csv_params,
    "parml_loss_params": parml_loss_params,
    "parml_metrics_params": parml_metrics_params,
    "parml_privacy_params": parml_privacy_params,
    "parml_metrics": parml_metrics,
    "parml_model_file_params": parml_model_file_params,
}

# ---------------------------------------------------------------------------
# Functions, in the order of include/parml.h
# ---------------------------------------------------------------------------


# PARML_API parml_status parml_augment_params_init(parml_augment_params * params);
@ctypes_function("parml_augment_params_init", [POINTER(parml_augment_params)], parml_status)
def parml_augment_params_init(params: Any, /) -> int:
    """Fills *params with no augmentation and sets struct_size."""
    ...


# PARML_API parml_status parml_blas_core(char const ** core_out);
@ctypes_function("parml_blas_core", [POINTER(c_char_p)], parml_status)
def parml_blas_core(core_out: Any, /) -> int:
    """Loads OpenBLAS if needed; *core_out gets the kernel family (static text)."""
    ...


# PARML_API parml_status parml_blas_set_threads(int32_t threads);
@ctypes_function("parml_blas_set_threads", [c_int32], parml_status)
def parml_blas_set_threads(threads: int, /) -> int:
    """Sets the threads this process's products and element-wise work use (1...1024)."""
    ...


# PARML_API parml_status parml_blas_threads(int32_t * threads_out);
@ctypes_function("parml_blas_threads", [POINTER(c_int32)], parml_status)
def parml_blas_threads(threads_out: Any, /) -> int:
    """The number of threads in effect in *threads_out."""
    ...


# PARML_API void parml_buffer_free(void * buffer);
@ctypes_function("parml_buffer_free", [c_void_p], None)
def parml_buffer_free(buffer: Any, /) -> None:
    """Frees a buffer the library handed out. NULL is a no-op."""
    ...


# PARML_API parml_status parml_dataset_create(parml_tensor inputs, parml_tensor targets, parml_dataset * out);
@ctypes_function("parml_dataset_create", [parml_tensor, parml_tensor, POINTER(parml_dataset)], parml_status)
def parml_dataset_create(inputs: Any, targets: Any, out: Any, /) -> int:
    """A dataset from copies of inputs (N, ...) and targets; the caller owns *out."""
    ...


# PARML_API parml_status parml_dataset_create_borrowed(int32_t inputs_dtype, int64_t const * inputs_dims, ptrdiff_t inputs_ndim, void const * inputs, int32_t targets_dtype, int64_t const * targets_dims, ptrdiff_t targets_ndim, void const * targets, parml_dataset * out);
@ctypes_function(
    "parml_dataset_create_borrowed",
    [c_int32, POINTER(c_int64), c_ptrdiff_t, c_void_p, c_int32, POINTER(c_int64), c_ptrdiff_t, c_void_p, POINTER(parml_dataset)],
    parml_status,
)
def parml_dataset_create_borrowed(
    inputs_dtype: int, inputs_dims: Any, inputs_ndim: int, inputs: Any,
    targets_dtype: int, targets_dims: Any, targets_ndim: int, targets: Any, out: Any, /,
) -> int:
    """A dataset reading the caller's float32 inputs and targets in place (kept alive until freed); the caller owns *out."""
    ...


# PARML_API parml_status parml_dataset_create_tokens(parml_tensor ids, int64_t block_size, parml_token_params const * params, parml_dataset * out);
@ctypes_function(
    "parml_dataset_create_tokens",
    [parml_tensor, c_int64, POINTER(parml_token_params), POINTER(parml_dataset)],
    parml_status,
)
def parml_dataset_create_tokens(ids: Any, block_size: int, params: Any, out: Any, /) -> int:
    """A token dataset of windows over a copy of the 1-D ids; the caller owns *out."""
    ...


# PARML_API void parml_dataset_free(parml_dataset dataset);
@ctypes_function("parml_dataset_free", [parml_dataset], None)
def parml_dataset_free(dataset: Any, /) -> None:
    """Releases a dataset. NULL is a no-op."""
    ...


# PARML_API parml_status parml_dataset_input_shape(parml_dataset dataset, int64_t * dims_out, ptrdiff_t capacity, ptrdiff_t * ndim_out);
@ctypes_function(
    "parml_dataset_input_shape",
    [parml_dataset, POINTER(c_int64), c_ptrdiff_t, POINTER(c_ptrdiff_t)],
    parml_status,
)
def parml_dataset_input_shape(dataset: Any, dims_out: Any, capacity: int, ndim_out: Any, /) -> int:
    """The shape of the whole inputs tensor (N, ...)."""
    ...


# PARML_API parml_status parml_dataset_load_idx(char const * images_path, char const * labels_path, parml_dataset * out);
@ctypes_function("parml_dataset_load_idx", [c_char_p, c_char_p, POINTER(parml_dataset)], parml_status)
def parml_dataset_load_idx(images_path: bytes, labels_path: bytes, out: Any, /) -> int:
    """Loads an image/label pair of IDX files (gzipped or plain)."""
    ...


# PARML_API parml_status parml_dataset_load_npy(char const * inputs_path, char const * targets_path, parml_dataset * out);
@ctypes_function("parml_dataset_load_npy", [c_char_p, c_char_p, POINTER(parml_dataset)], parml_status)
def parml_dataset_load_npy(inputs_path: bytes, targets_path: bytes, out: Any, /) -> int:
    """Loads a dataset from two .npy files, memory-mapped; the caller owns *out."""
    ...


# PARML_API parml_status parml_dataset_load_npz(char const * path, char const * inputs_key, char const * targets_key, parml_dataset * out);
@ctypes_function("parml_dataset_load_npz", [c_char_p, c_char_p, c_char_p, POINTER(parml_dataset)], parml_status)
def parml_dataset_load_npz(path: bytes, inputs_key: bytes, targets_key: bytes, out: Any, /) -> int:
    """Loads a dataset from two arrays of an .npz archive; the caller owns *out."""
    ...


# PARML_API parml_status parml_dataset_load_csv(char const * path, parml_csv_params const * params, parml_dataset * out);
@ctypes_function("parml_dataset_load_csv", [c_char_p, POINTER(parml_csv_params), POINTER(parml_dataset)], parml_status)
def parml_dataset_load_csv(path: bytes, params: Any, out: Any, /) -> int:
    """Loads a dataset from a CSV table (NULL params: the defaults); the caller owns *out."""
    ...


# PARML_API parml_status parml_dataset_open_shards(char const * path, uint64_t seed, int64_t shuffle_buffer, int64_t prefetch_rows, int32_t rank, int32_t ranks, parml_dataset * out);
@ctypes_function(
    "parml_dataset_open_shards",
    [c_char_p, c_uint64, c_int64, c_int64, c_int32, c_int32, POINTER(parml_dataset)],
    parml_status,
)
def parml_dataset_open_shards(
    path: bytes, seed: int, shuffle_buffer: int, prefetch_rows: int, rank: int, ranks: int, out: Any, /
) -> int:
    """A sharded dataset streamed from disk (manifest or directory); the caller owns *out."""
    ...


# PARML_API parml_status parml_dataset_load_tokens(char const * path, int32_t file_type, int64_t block_size, parml_token_params const * params, parml_dataset * out);
@ctypes_function(
    "parml_dataset_load_tokens",
    [c_char_p, c_int32, c_int64, POINTER(parml_token_params), POINTER(parml_dataset)],
    parml_status,
)
def parml_dataset_load_tokens(path: bytes, file_type: int, block_size: int, params: Any, out: Any, /) -> int:
    """A token dataset read from a flat file of ids (PARML_TOKEN_FILE_*); the caller owns *out."""
    ...


# PARML_API parml_status parml_dataset_num_class_names(parml_dataset dataset, int64_t * count_out);
@ctypes_function("parml_dataset_num_class_names", [parml_dataset, POINTER(c_int64)], parml_status)
def parml_dataset_num_class_names(dataset: Any, count_out: Any, /) -> int:
    """How many class names the dataset has (a CSV table with text labels), else 0."""
    ...


# PARML_API parml_status parml_dataset_class_name(parml_dataset dataset, int64_t index, char ** name_out);
@ctypes_function("parml_dataset_class_name", [parml_dataset, c_int64, POINTER(POINTER(c_char))], parml_status)
def parml_dataset_class_name(dataset: Any, index: int, name_out: Any, /) -> int:
    """The name of class index in *name_out; the caller frees it with parml_buffer_free."""
    ...


# PARML_API parml_status parml_dataset_num_classes(parml_dataset dataset, int64_t * classes_out);
@ctypes_function("parml_dataset_num_classes", [parml_dataset, POINTER(c_int64)], parml_status)
def parml_dataset_num_classes(dataset: Any, classes_out: Any, /) -> int:
    """Number of classes (largest target + 1), or 0 when targets are not class indices."""
    ...


# PARML_API parml_status parml_dataset_set_augmentation(parml_dataset dataset, parml_augment_params const * params);
@ctypes_function("parml_dataset_set_augmentation", [parml_dataset, POINTER(parml_augment_params)], parml_status)
def parml_dataset_set_augmentation(dataset: Any, params: Any, /) -> int:
    """Sets the random crop and flip parml_trainer_fit applies to the dataset's training batches; NULL: none."""
    ...


# PARML_API parml_status parml_dataset_size(parml_dataset dataset, int64_t * count_out);
@ctypes_function("parml_dataset_size", [parml_dataset, POINTER(c_int64)], parml_status)
def parml_dataset_size(dataset: Any, count_out: Any, /) -> int:
    """Number of samples in *count_out."""
    ...


# PARML_API parml_status parml_file_describe(char const * path, int32_t as_json, char ** text_out);
@ctypes_function("parml_file_describe", [c_char_p, c_int32, POINTER(POINTER(c_char))], parml_status)
def parml_file_describe(path: bytes, as_json: int, text_out: Any, /) -> int:
    """A report on a parml file (text or JSON) in *text_out; free it with parml_buffer_free."""
    ...


# PARML_API parml_status parml_callback_params_init(parml_callback_params * params);
@ctypes_function("parml_callback_params_init", [POINTER(parml_callback_params)], parml_status)
def parml_callback_params_init(params: Any, /) -> int:
    """Fills *params with the built-in callbacks off and Keras's defaults."""
    ...


# PARML_API parml_status parml_fit_params_init(parml_fit_params * params);
@ctypes_function("parml_fit_params_init", [POINTER(parml_fit_params)], parml_status)
def parml_fit_params_init(params: Any, /) -> int:
    """Fills *params with fit defaults and sets struct_size."""
    ...


# PARML_API char const * parml_last_error(void);
@ctypes_function("parml_last_error", [], c_char_p)
def parml_last_error() -> bytes:
    """The calling thread's last error message ("" if none)."""
    ...


# PARML_API parml_status parml_model_add_activation(parml_model model, int32_t kind);
@ctypes_function("parml_model_add_activation", [parml_model, c_int32], parml_status)
def parml_model_add_activation(model: Any, kind: int, /) -> int:
    """Appends an element-wise activation, kind = PARML_ACTIVATION_*."""
    ...


# PARML_API parml_status parml_model_add_dropout(parml_model model, float p);
@ctypes_function("parml_model_add_dropout", [parml_model, c_float], parml_status)
def parml_model_add_dropout(model: Any, p: float, /) -> int:
    """Appends inverted dropout with drop probability p in [0, 1)."""
    ...


# PARML_API parml_status parml_model_add_flatten(parml_model model);
@ctypes_function("parml_model_add_flatten", [parml_model], parml_status)
def parml_model_add_flatten(model: Any, /) -> int:
    """Appends a flatten: (N, d1, d2, ...) -> (N, d1*d2*...)."""
    ...


# PARML_API parml_status parml_model_add_layer_norm(parml_model model, int64_t features, float eps);
@ctypes_function("parml_model_add_layer_norm", [parml_model, c_int64, c_float], parml_status)
def parml_model_add_layer_norm(model: Any, features: int, eps: float, /) -> int:
    """Appends layer normalisation over the last dimension."""
    ...


# PARML_API parml_status parml_layer_kind_count(int64_t * count_out);
@ctypes_function("parml_layer_kind_count", [POINTER(c_int64)], parml_status)
def parml_layer_kind_count(count_out: Any, /) -> int:
    """The number of layer kinds this library knows."""
    ...


# PARML_API parml_status parml_layer_kind_info(int64_t index, char const ** name_out, char const ** class_name_out, char const ** doc_out, int64_t * n_attributes_out, int32_t * input_out);
@ctypes_function(
    "parml_layer_kind_info",
    [c_int64, POINTER(c_char_p), POINTER(c_char_p), POINTER(c_char_p), POINTER(c_int64), POINTER(c_int32)],
    parml_status,
)
def parml_layer_kind_info(
    index: int, name_out: Any, class_name_out: Any, doc_out: Any, n_attributes_out: Any, input_out: Any, /
) -> int:
    """Layer kind `index`: name, class name, doc line, attribute count (static strings), PARML_LAYER_INPUT_*."""
    ...


# PARML_API parml_status parml_layer_kind_requires(int64_t index, char const ** kind_out);
@ctypes_function("parml_layer_kind_requires", [c_int64, POINTER(c_char_p)], parml_status)
def parml_layer_kind_requires(index: int, kind_out: Any, /) -> int:
    """The kind of an earlier layer kind `index` needs in its model (static string), or NULL."""
    ...


# PARML_API parml_status parml_layer_kind_attribute(int64_t index, int64_t attribute, char const ** name_out, int32_t * type_out, char const ** default_out, char const ** rule_out, char const ** doc_out);
@ctypes_function(
    "parml_layer_kind_attribute",
    [c_int64, c_int64, POINTER(c_char_p), POINTER(c_int32), POINTER(c_char_p), POINTER(c_char_p), POINTER(c_char_p)],
    parml_status,
)
def parml_layer_kind_attribute(
    index: int, attribute: int, name_out: Any, type_out: Any, default_out: Any, rule_out: Any, doc_out: Any, /
) -> int:
    """Attribute `attribute` of kind `index`: name, PARML_ATTR_* type, default text (NULL: required), rule, doc."""
    ...


# PARML_API parml_status parml_model_add_layer(parml_model model, char const * kind, parml_attribute const * attrs, ptrdiff_t n_attrs);
@ctypes_function("parml_model_add_layer", [parml_model, c_char_p, POINTER(parml_attribute), c_ptrdiff_t], parml_status)
def parml_model_add_layer(model: Any, kind: bytes, attrs: Any, n_attrs: int, /) -> int:
    """Appends a layer of kind `kind` built from `n_attrs` attributes (defaults for the rest)."""
    ...


# PARML_API parml_status parml_model_add_linear(parml_model model, int64_t in_features, int64_t out_features, int32_t bias);
@ctypes_function("parml_model_add_linear", [parml_model, c_int64, c_int64, c_int32], parml_status)
def parml_model_add_linear(model: Any, in_features: int, out_features: int, bias: int, /) -> int:
    """Appends y = x * W^T + b, as torch.nn.Linear."""
    ...


# PARML_API parml_status parml_model_add_stage_boundary(parml_model model);
@ctypes_function("parml_model_add_stage_boundary", [parml_model], parml_status)
def parml_model_add_stage_boundary(model: Any, /) -> int:
    """Marks a pipeline stage boundary before the next top-level layer."""
    ...


# PARML_API parml_status parml_model_begin_residual(parml_model model);
@ctypes_function("parml_model_begin_residual", [parml_model], parml_status)
def parml_model_begin_residual(model: Any, /) -> int:
    """Opens a residual block y = x + f(x)."""
    ...


# PARML_API parml_status parml_model_create(parml_model * out);
@ctypes_function("parml_model_create", [POINTER(parml_model)], parml_status)
def parml_model_create(out: Any, /) -> int:
    """Creates an empty model; the caller owns *out (parml_model_free)."""
    ...


# PARML_API parml_status parml_model_deserialize(void const * buf, size_t len, parml_model * out);
@ctypes_function("parml_model_deserialize", [c_void_p, c_size_t, POINTER(parml_model)], parml_status)
def parml_model_deserialize(buf: Any, len: int, out: Any, /) -> int:
    """A new model in *out from len bytes of a model file's contents."""
    ...


# PARML_API parml_status parml_model_deserialize_authenticated(void const * buf, size_t len, void const * key, size_t key_len, parml_model * out);
@ctypes_function(
    "parml_model_deserialize_authenticated", [c_void_p, c_size_t, c_void_p, c_size_t, POINTER(parml_model)], parml_status
)
def parml_model_deserialize_authenticated(buf: Any, len: int, key: Any, key_len: int, out: Any, /) -> int:
    """A new model from bytes authenticated with key."""
    ...


# PARML_API parml_status parml_model_end_residual(parml_model model);
@ctypes_function("parml_model_end_residual", [parml_model], parml_status)
def parml_model_end_residual(model: Any, /) -> int:
    """Closes the innermost residual block."""
    ...


# PARML_API parml_status parml_model_export_onnx(parml_model model, int64_t const * input_dims, ptrdiff_t ndim, char const * path);
@ctypes_function("parml_model_export_onnx", [parml_model, POINTER(c_int64), c_ptrdiff_t, c_char_p], parml_status)
def parml_model_export_onnx(model: Any, input_dims: Any, ndim: int, path: bytes, /) -> int:
    """Writes the model as an ONNX file (opset 17) for inputs of the given shape."""
    ...


# PARML_API void parml_model_free(parml_model model);
@ctypes_function("parml_model_free", [parml_model], None)
def parml_model_free(model: Any, /) -> None:
    """Releases the caller's reference (a trainer keeps its own). NULL is a no-op."""
    ...


# PARML_API parml_status parml_model_get_params(parml_model model, float * dst, ptrdiff_t count);
@ctypes_function("parml_model_get_params", [parml_model, POINTER(c_float), c_ptrdiff_t], parml_status)
def parml_model_get_params(model: Any, dst: Any, count: int, /) -> int:
    """Copies all parameters, flattened in layer order, into dst."""
    ...


# PARML_API parml_status parml_model_get_param(parml_model model, char const * name, float * dst, ptrdiff_t count);
@ctypes_function("parml_model_get_param", [parml_model, c_char_p, POINTER(c_float), c_ptrdiff_t], parml_status)
def parml_model_get_param(model: Any, name: bytes, dst: Any, count: int, /) -> int:
    """Copies the parameter tensor named `name` into dst (count = its size)."""
    ...


# PARML_API parml_status parml_model_init(parml_model model, uint64_t seed);
@ctypes_function("parml_model_init", [parml_model, c_uint64], parml_status)
def parml_model_init(model: Any, seed: int, /) -> int:
    """Allocates the parameters and draws them from seed."""
    ...


# PARML_API parml_status parml_model_load(char const * path, parml_model * out);
@ctypes_function("parml_model_load", [c_char_p, POINTER(parml_model)], parml_status)
def parml_model_load(path: bytes, out: Any, /) -> int:
    """Reads a model file into a new, initialised model in *out."""
    ...


# PARML_API parml_status parml_model_load_authenticated(char const * path, void const * key, size_t key_len, parml_model * out);
@ctypes_function("parml_model_load_authenticated", [c_char_p, c_void_p, c_size_t, POINTER(parml_model)], parml_status)
def parml_model_load_authenticated(path: bytes, key: Any, key_len: int, out: Any, /) -> int:
    """A new model read from a file authenticated with key."""
    ...


# PARML_API parml_status parml_model_num_params(parml_model model, int64_t * count_out);
@ctypes_function("parml_model_num_params", [parml_model, POINTER(c_int64)], parml_status)
def parml_model_num_params(model: Any, count_out: Any, /) -> int:
    """Number of scalar parameters (also before init)."""
    ...


# PARML_API parml_status parml_model_output_shape(parml_model model, int64_t const * dims, ptrdiff_t ndim, int64_t * dims_out, ptrdiff_t capacity, ptrdiff_t * ndim_out);
@ctypes_function(
    "parml_model_output_shape",
    [parml_model, POINTER(c_int64), c_ptrdiff_t, POINTER(c_int64), c_ptrdiff_t, POINTER(c_ptrdiff_t)],
    parml_status,
)
def parml_model_output_shape(
    model: Any, dims: Any, ndim: int, dims_out: Any, capacity: int, ndim_out: Any, /
) -> int:
    """The output shape for an input shape, checked through every layer."""
    ...


# PARML_API parml_status parml_model_predict(parml_model model, parml_tensor input, parml_tensor * out);
@ctypes_function("parml_model_predict", [parml_model, parml_tensor, POINTER(parml_tensor)], parml_status)
def parml_model_predict(model: Any, input: Any, out: Any, /) -> int:
    """Runs the model in inference mode; *out is a new tensor the caller frees."""
    ...


# PARML_API parml_status parml_model_generate(parml_model model, int64_t const * prompt, int64_t n_prompt, int64_t max_new_tokens, float temperature, int64_t top_k, uint64_t seed, int64_t * tokens_out);
@ctypes_function(
    "parml_model_generate",
    [parml_model, POINTER(c_int64), c_int64, c_int64, c_float, c_int64, c_uint64, POINTER(c_int64)],
    parml_status,
)
def parml_model_generate(
    model: Any, prompt: Any, n_prompt: int, max_new_tokens: int, temperature: float, top_k: int, seed: int,
    tokens_out: Any, /,
) -> int:
    """Continues the prompt by max_new_tokens ids (greedy at temperature 0, else top-k sampling keyed on seed)."""
    ...


# PARML_API parml_status parml_model_save(parml_model model, char const * path);
@ctypes_function("parml_model_save", [parml_model, c_char_p], parml_status)
def parml_model_save(model: Any, path: bytes, /) -> int:
    """Writes an initialised model to path atomically."""
    ...


# PARML_API parml_status parml_model_save_authenticated(parml_model model, char const * path, void const * key, size_t key_len);
@ctypes_function("parml_model_save_authenticated", [parml_model, c_char_p, c_void_p, c_size_t], parml_status)
def parml_model_save_authenticated(model: Any, path: bytes, key: Any, key_len: int, /) -> int:
    """parml_model_save with an HMAC-SHA-256 tag under key (>= 16 bytes)."""
    ...


# PARML_API parml_status parml_model_serialize(parml_model model, void ** buf_out, size_t * len_out);
@ctypes_function("parml_model_serialize", [parml_model, POINTER(c_void_p), POINTER(c_size_t)], parml_status)
def parml_model_serialize(model: Any, buf_out: Any, len_out: Any, /) -> int:
    """A model file's bytes in a new buffer (free it with parml_buffer_free)."""
    ...


# PARML_API parml_status parml_model_serialize_authenticated(parml_model model, void const * key, size_t key_len, void ** buf_out, size_t * len_out);
@ctypes_function(
    "parml_model_serialize_authenticated", [parml_model, c_void_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)], parml_status
)
def parml_model_serialize_authenticated(model: Any, key: Any, key_len: int, buf_out: Any, len_out: Any, /) -> int:
    """The bytes parml_model_save_authenticated would write, in a new buffer."""
    ...


# PARML_API parml_status parml_model_file_params_init(parml_model_file_params * params);
@ctypes_function("parml_model_file_params_init", [POINTER(parml_model_file_params)], parml_status)
def parml_model_file_params_init(params: Any, /) -> int:
    """Fills *params with the model file defaults (float32 weights, no key) and sets struct_size."""
    ...


# PARML_API parml_status parml_model_save_with(parml_model model, char const * path, parml_model_file_params const * params);
@ctypes_function("parml_model_save_with", [parml_model, c_char_p, POINTER(parml_model_file_params)], parml_status)
def parml_model_save_with(model: Any, path: bytes, params: Any, /) -> int:
    """parml_model_save with options: bfloat16 weights, an HMAC key."""
    ...


# PARML_API parml_status parml_model_serialize_with(parml_model model, parml_model_file_params const * params, void ** buf_out, size_t * len_out);
@ctypes_function(
    "parml_model_serialize_with", [parml_model, POINTER(parml_model_file_params), POINTER(c_void_p), POINTER(c_size_t)], parml_status
)
def parml_model_serialize_with(model: Any, params: Any, buf_out: Any, len_out: Any, /) -> int:
    """The bytes parml_model_save_with would write, in a new buffer."""
    ...


# PARML_API parml_status parml_model_set_params(parml_model model, float const * src, ptrdiff_t count);
@ctypes_function("parml_model_set_params", [parml_model, POINTER(c_float), c_ptrdiff_t], parml_status)
def parml_model_set_params(model: Any, src: Any, count: int, /) -> int:
    """Overwrites all parameters from src, in the order of parml_model_get_params."""
    ...


# PARML_API parml_status parml_model_set_param(parml_model model, char const * name, float const * src, ptrdiff_t count);
@ctypes_function("parml_model_set_param", [parml_model, c_char_p, POINTER(c_float), c_ptrdiff_t], parml_status)
def parml_model_set_param(model: Any, name: bytes, src: Any, count: int, /) -> int:
    """Overwrites the parameter tensor named `name` from src (count = its size)."""
    ...


# PARML_API parml_status parml_model_num_param_tensors(parml_model model, int64_t * count_out);
@ctypes_function("parml_model_num_param_tensors", [parml_model, POINTER(c_int64)], parml_status)
def parml_model_num_param_tensors(model: Any, count_out: Any, /) -> int:
    """The number of parameter tensors in *count_out."""
    ...


# PARML_API parml_status parml_model_param_tensor_info(parml_model model, int64_t index, char ** name_out, int64_t * dims_out, ptrdiff_t capacity, ptrdiff_t * ndim_out);
@ctypes_function(
    "parml_model_param_tensor_info",
    [parml_model, c_int64, POINTER(POINTER(c_char)), POINTER(c_int64), c_ptrdiff_t, POINTER(c_ptrdiff_t)],
    parml_status,
)
def parml_model_param_tensor_info(
    model: Any, index: int, name_out: Any, dims_out: Any, capacity: int, ndim_out: Any, /
) -> int:
    """Parameter tensor `index`: its dotted name (freed with parml_buffer_free) and shape."""
    ...


# PARML_API parml_status parml_model_summary(parml_model model, char ** text_out);
@ctypes_function("parml_model_summary", [parml_model, POINTER(POINTER(c_char))], parml_status)
def parml_model_summary(model: Any, text_out: Any, /) -> int:
    """A text description in *text_out; the caller frees it with parml_buffer_free."""
    ...


# PARML_API parml_status parml_mpi_finalize(void);
@ctypes_function("parml_mpi_finalize", [], parml_status)
def parml_mpi_finalize() -> int:
    """Finalises MPI if parml initialised it; a no-op when the host did or nobody did."""
    ...


# PARML_API parml_status parml_mpi_init(void);
@ctypes_function("parml_mpi_init", [], parml_status)
def parml_mpi_init() -> int:
    """Loads Open MPI and initialises MPI (MPI_THREAD_SERIALIZED) unless already done; idempotent."""
    ...


# PARML_API parml_status parml_mpi_rank(int32_t * rank_out);
@ctypes_function("parml_mpi_rank", [POINTER(c_int32)], parml_status)
def parml_mpi_rank(rank_out: Any, /) -> int:
    """This process's rank in parml's MPI world; 0 without MPI (never initialises it)."""
    ...


# PARML_API parml_status parml_mpi_use_comm(void * mpi_comm);
@ctypes_function("parml_mpi_use_comm", [c_void_p], parml_status)
def parml_mpi_use_comm(mpi_comm: Any, /) -> int:
    """Makes parml work inside the host's MPI_Comm (an Open MPI pointer) instead of MPI_COMM_WORLD."""
    ...


# PARML_API parml_status parml_mpi_world_size(int32_t * size_out);
@ctypes_function("parml_mpi_world_size", [POINTER(c_int32)], parml_status)
def parml_mpi_world_size(size_out: Any, /) -> int:
    """The number of processes in parml's MPI world; 1 without MPI (never initialises it)."""
    ...


# PARML_API parml_status parml_optimizer_params_init(parml_optimizer_params * params);
@ctypes_function("parml_optimizer_params_init", [POINTER(parml_optimizer_params)], parml_status)
def parml_optimizer_params_init(params: Any, /) -> int:
    """Fills *params with the optimizer defaults and sets struct_size."""
    ...


# PARML_API parml_status parml_privacy_epsilon(double q, double sigma, int64_t steps, double delta, double * epsilon_out);
@ctypes_function("parml_privacy_epsilon", [c_double, c_double, c_int64, c_double, POINTER(c_double)], parml_status)
def parml_privacy_epsilon(q: float, sigma: float, steps: int, delta: float, epsilon_out: Any, /) -> int:
    """The epsilon DP-SGD spends in `steps` steps (Poisson rate q, noise multiplier sigma) for delta."""
    ...


# PARML_API parml_status parml_privacy_noise_multiplier(double target_epsilon, double q, int64_t steps, double delta, double * sigma_out);
@ctypes_function("parml_privacy_noise_multiplier", [c_double, c_double, c_int64, c_double, POINTER(c_double)], parml_status)
def parml_privacy_noise_multiplier(target_epsilon: float, q: float, steps: int, delta: float, sigma_out: Any, /) -> int:
    """The smallest noise multiplier whose epsilon after `steps` steps is at most target_epsilon."""
    ...


# PARML_API parml_status parml_privacy_params_init(parml_privacy_params * params);
@ctypes_function("parml_privacy_params_init", [POINTER(parml_privacy_params)], parml_status)
def parml_privacy_params_init(params: Any, /) -> int:
    """Fills *params with the DP-SGD defaults and sets struct_size."""
    ...


# PARML_API parml_status parml_trainer_set_privacy(parml_trainer trainer, parml_privacy_params const * params);
@ctypes_function("parml_trainer_set_privacy", [parml_trainer, POINTER(parml_privacy_params)], parml_status)
def parml_trainer_set_privacy(trainer: Any, params: Any, /) -> int:
    """Turns DP-SGD on for the next steps and fits (NULL: off)."""
    ...


# PARML_API parml_status parml_trainer_privacy_spent(parml_trainer trainer, double delta, double * epsilon_out);
@ctypes_function("parml_trainer_privacy_spent", [parml_trainer, c_double, POINTER(c_double)], parml_status)
def parml_trainer_privacy_spent(trainer: Any, delta: float, epsilon_out: Any, /) -> int:
    """The epsilon the trainer's private steps have spent so far, for delta."""
    ...


# PARML_API char const * parml_status_string(parml_status status);
@ctypes_function("parml_status_string", [parml_status], c_char_p)
def parml_status_string(status: int, /) -> bytes:
    """A static English name for a status code ("PARML_OK", ...)."""
    ...


# PARML_API parml_status parml_strategy_params_init(parml_strategy_params * params);
@ctypes_function("parml_strategy_params_init", [POINTER(parml_strategy_params)], parml_status)
def parml_strategy_params_init(params: Any, /) -> int:
    """Fills *params with the serial layout and sets struct_size."""
    ...


# PARML_API parml_status parml_tensor_bytes(parml_tensor tensor, void ** data_out, int64_t * nbytes_out);
@ctypes_function("parml_tensor_bytes", [parml_tensor, POINTER(c_void_p), POINTER(c_int64)], parml_status)
def parml_tensor_bytes(tensor: Any, data_out: Any, nbytes_out: Any, /) -> int:
    """Borrows the tensor's storage whatever its dtype (*nbytes_out bytes)."""
    ...


# PARML_API parml_status parml_tensor_create_typed(int32_t dtype, int64_t const * dims, ptrdiff_t ndim, void const * data, parml_tensor * out);
@ctypes_function(
    "parml_tensor_create_typed",
    [c_int32, POINTER(c_int64), c_ptrdiff_t, c_void_p, POINTER(parml_tensor)],
    parml_status,
)
def parml_tensor_create_typed(dtype: int, dims: Any, ndim: int, data: Any, out: Any, /) -> int:
    """Creates a tensor of PARML_DTYPE_* `dtype` holding a copy of data (or zeros when data is NULL)."""
    ...


# PARML_API parml_status parml_tensor_create(int64_t const * dims, ptrdiff_t ndim, float const * data, parml_tensor * out);
@ctypes_function(
    "parml_tensor_create",
    [POINTER(c_int64), c_ptrdiff_t, POINTER(c_float), POINTER(parml_tensor)],
    parml_status,
)
def parml_tensor_create(dims: Any, ndim: int, data: Any, out: Any, /) -> int:
    """Creates a tensor holding a copy of data (or zeros when data is NULL)."""
    ...


# PARML_API parml_status parml_tensor_data(parml_tensor tensor, float ** data_out);
@ctypes_function("parml_tensor_data", [parml_tensor, POINTER(POINTER(c_float))], parml_status)
def parml_tensor_data(tensor: Any, data_out: Any, /) -> int:
    """Borrows the tensor's storage, valid until parml_tensor_free."""
    ...


# PARML_API parml_status parml_tensor_deserialize(void const * buf, size_t len, parml_tensor * out);
@ctypes_function("parml_tensor_deserialize", [c_void_p, c_size_t, POINTER(parml_tensor)], parml_status)
def parml_tensor_deserialize(buf: Any, len: int, out: Any, /) -> int:
    """A new tensor in *out from a parml.Tensor message."""
    ...


# PARML_API parml_status parml_tensor_dtype(parml_tensor tensor, int32_t * dtype_out);
@ctypes_function("parml_tensor_dtype", [parml_tensor, POINTER(c_int32)], parml_status)
def parml_tensor_dtype(tensor: Any, dtype_out: Any, /) -> int:
    """The tensor's PARML_DTYPE_* element type."""
    ...


# PARML_API void parml_tensor_free(parml_tensor tensor);
@ctypes_function("parml_tensor_free", [parml_tensor], None)
def parml_tensor_free(tensor: Any, /) -> None:
    """Releases a tensor. NULL, or a handle already freed, is a no-op."""
    ...


# PARML_API parml_status parml_tensor_numel(parml_tensor tensor, int64_t * numel_out);
@ctypes_function("parml_tensor_numel", [parml_tensor, POINTER(c_int64)], parml_status)
def parml_tensor_numel(tensor: Any, numel_out: Any, /) -> int:
    """Number of elements in *numel_out."""
    ...


# PARML_API parml_status parml_tensor_read(parml_tensor tensor, float * dst, ptrdiff_t count);
@ctypes_function("parml_tensor_read", [parml_tensor, POINTER(c_float), c_ptrdiff_t], parml_status)
def parml_tensor_read(tensor: Any, dst: Any, count: int, /) -> int:
    """Copies the tensor's count floats into dst."""
    ...


# PARML_API parml_status parml_tensor_serialize(parml_tensor tensor, void ** buf_out, size_t * len_out);
@ctypes_function("parml_tensor_serialize", [parml_tensor, POINTER(c_void_p), POINTER(c_size_t)], parml_status)
def parml_tensor_serialize(tensor: Any, buf_out: Any, len_out: Any, /) -> int:
    """A tensor as a parml.Tensor message in a new buffer (parml_buffer_free)."""
    ...


# PARML_API parml_status parml_tensor_shape(parml_tensor tensor, int64_t * dims_out, ptrdiff_t capacity, ptrdiff_t * ndim_out);
@ctypes_function(
    "parml_tensor_shape",
    [parml_tensor, POINTER(c_int64), c_ptrdiff_t, POINTER(c_ptrdiff_t)],
    parml_status,
)
def parml_tensor_shape(tensor: Any, dims_out: Any, capacity: int, ndim_out: Any, /) -> int:
    """The tensor's shape (dims_out may be NULL with capacity 0 for the rank only)."""
    ...


# PARML_API parml_status parml_tensor_write(parml_tensor tensor, float const * src, ptrdiff_t count);
@ctypes_function("parml_tensor_write", [parml_tensor, POINTER(c_float), c_ptrdiff_t], parml_status)
def parml_tensor_write(tensor: Any, src: Any, count: int, /) -> int:
    """Overwrites the tensor's contents with count floats from src."""
    ...


# PARML_API parml_status parml_csv_params_init(parml_csv_params * params);
@ctypes_function("parml_csv_params_init", [POINTER(parml_csv_params)], parml_status)
def parml_csv_params_init(params: Any, /) -> int:
    """Fills *params with the CSV defaults and sets struct_size."""
    ...


# PARML_API parml_status parml_token_params_init(parml_token_params * params);
@ctypes_function("parml_token_params_init", [POINTER(parml_token_params)], parml_status)
def parml_token_params_init(params: Any, /) -> int:
    """Fills *params with token dataset defaults and sets struct_size."""
    ...


# PARML_API parml_status parml_trainer_create(parml_model model, int32_t loss, parml_optimizer_params const * optimizer, parml_strategy_params const * strategy, parml_trainer * out);
@ctypes_function(
    "parml_trainer_create",
    [
        parml_model,
        c_int32,
        POINTER(parml_optimizer_params),
        POINTER(parml_strategy_params),
        POINTER(parml_trainer),
    ],
    parml_status,
)
def parml_trainer_create(model: Any, loss: int, optimizer: Any, strategy: Any, out: Any, /) -> int:
    """Creates a trainer for an initialised model; the caller owns *out."""
    ...


# PARML_API parml_status parml_trainer_deserialize_checkpoint(parml_trainer trainer, void const * buf, size_t len);
@ctypes_function("parml_trainer_deserialize_checkpoint", [parml_trainer, c_void_p, c_size_t], parml_status)
def parml_trainer_deserialize_checkpoint(trainer: Any, buf: Any, len: int, /) -> int:
    """Restores a checkpoint from len bytes at buf into the trainer."""
    ...


# PARML_API parml_status parml_trainer_deserialize_checkpoint_authenticated(parml_trainer trainer, void const * buf, size_t len, void const * key, size_t key_len);
@ctypes_function(
    "parml_trainer_deserialize_checkpoint_authenticated", [parml_trainer, c_void_p, c_size_t, c_void_p, c_size_t], parml_status
)
def parml_trainer_deserialize_checkpoint_authenticated(trainer: Any, buf: Any, len: int, key: Any, key_len: int, /) -> int:
    """Restores a checkpoint from bytes authenticated with key."""
    ...


# PARML_API parml_status parml_trainer_epoch_count(parml_trainer trainer, int64_t * epochs_out);
@ctypes_function("parml_trainer_epoch_count", [parml_trainer, POINTER(c_int64)], parml_status)
def parml_trainer_epoch_count(trainer: Any, epochs_out: Any, /) -> int:
    """Epochs parml_trainer_fit has completed, over all calls and checkpoints."""
    ...


# PARML_API parml_status parml_trainer_evaluate(parml_trainer trainer, parml_dataset dataset, int64_t batch_size, float * loss_out, float * accuracy_out);
@ctypes_function(
    "parml_trainer_evaluate",
    [parml_trainer, parml_dataset, c_int64, POINTER(c_float), POINTER(c_float)],
    parml_status,
)
def parml_trainer_evaluate(
    trainer: Any, dataset: Any, batch_size: int, loss_out: Any, accuracy_out: Any, /
) -> int:
    """Mean loss and accuracy over a dataset in inference mode."""
    ...


# PARML_API parml_status parml_trainer_fit(parml_trainer trainer, parml_dataset train, parml_fit_params const * params, parml_epoch_metrics * last_out);
@ctypes_function(
    "parml_trainer_fit",
    [parml_trainer, parml_dataset, POINTER(parml_fit_params), POINTER(parml_epoch_metrics)],
    parml_status,
)
def parml_trainer_fit(trainer: Any, train: Any, params: Any, last_out: Any, /) -> int:
    """Trains over a dataset for params->epochs epochs."""
    ...


# PARML_API void parml_trainer_free(parml_trainer trainer);
@ctypes_function("parml_trainer_free", [parml_trainer], None)
def parml_trainer_free(trainer: Any, /) -> None:
    """Releases a trainer (and its reference to the model). NULL is a no-op."""
    ...


# PARML_API parml_status parml_trainer_learning_rate(parml_trainer trainer, float * lr_out);
@ctypes_function("parml_trainer_learning_rate", [parml_trainer, POINTER(c_float)], parml_status)
def parml_trainer_learning_rate(trainer: Any, lr_out: Any, /) -> int:
    """The learning rate the next step will use."""
    ...


# PARML_API parml_status parml_trainer_set_learning_rate(parml_trainer trainer, float lr);
@ctypes_function("parml_trainer_set_learning_rate", [parml_trainer, c_float], parml_status)
def parml_trainer_set_learning_rate(trainer: Any, lr: float, /) -> int:
    """Makes the next step use learning rate lr, keeping the schedule's shape."""
    ...


# PARML_API parml_status parml_trainer_load_checkpoint(parml_trainer trainer, char const * path);
@ctypes_function("parml_trainer_load_checkpoint", [parml_trainer, c_char_p], parml_status)
def parml_trainer_load_checkpoint(trainer: Any, path: bytes, /) -> int:
    """Restores parameters, optimizer state and step count from a checkpoint file."""
    ...


# PARML_API parml_status parml_trainer_load_checkpoint_authenticated(parml_trainer trainer, char const * path, void const * key, size_t key_len);
@ctypes_function("parml_trainer_load_checkpoint_authenticated", [parml_trainer, c_char_p, c_void_p, c_size_t], parml_status)
def parml_trainer_load_checkpoint_authenticated(trainer: Any, path: bytes, key: Any, key_len: int, /) -> int:
    """Restores a checkpoint file authenticated with key."""
    ...


# PARML_API parml_status parml_trainer_memory(parml_trainer trainer, int32_t rank, parml_memory_report * out);
@ctypes_function("parml_trainer_memory", [parml_trainer, c_int32, POINTER(parml_memory_report)], parml_status)
def parml_trainer_memory(trainer: Any, rank: int, out: Any, /) -> int:
    """Memory rank `rank` of the trainer holds (set out->struct_size first)."""
    ...


# PARML_API parml_status parml_trainer_gather_params(parml_trainer trainer);
@ctypes_function("parml_trainer_gather_params", [parml_trainer], parml_status)
def parml_trainer_gather_params(trainer: Any, /) -> int:
    """Makes the trainer's model whole on this process (collective under MPI ZeRO-3)."""
    ...


# PARML_API parml_status parml_trainer_params_whole(parml_trainer trainer, int32_t * whole_out);
@ctypes_function("parml_trainer_params_whole", [parml_trainer, POINTER(c_int32)], parml_status)
def parml_trainer_params_whole(trainer: Any, whole_out: Any, /) -> int:
    """1 when the trainer's model holds all its parameters on this process."""
    ...


# PARML_API parml_status parml_trainer_plan(parml_trainer trainer, char ** text_out);
@ctypes_function("parml_trainer_plan", [parml_trainer, POINTER(POINTER(c_char))], parml_status)
def parml_trainer_plan(trainer: Any, text_out: Any, /) -> int:
    """The execution plan as text in *text_out; the caller frees it with parml_buffer_free."""
    ...


# PARML_API parml_status parml_trainer_set_local_batches(parml_trainer trainer, int32_t enabled);
@ctypes_function("parml_trainer_set_local_batches", [parml_trainer, c_int32], parml_status)
def parml_trainer_set_local_batches(trainer: Any, enabled: int, /) -> int:
    """MPI: each process passes only its data-parallel replica's rows."""
    ...


# PARML_API parml_status parml_trainer_set_local_data(parml_trainer trainer, int32_t enabled);
@ctypes_function("parml_trainer_set_local_data", [parml_trainer, c_int32], parml_status)
def parml_trainer_set_local_data(trainer: Any, enabled: int, /) -> int:
    """MPI: each process trains on its own data of any size; epochs end together."""
    ...


# PARML_API parml_status parml_trainer_data_rows(parml_trainer trainer, int64_t global_samples, int64_t * start_out, int64_t * count_out);
@ctypes_function("parml_trainer_data_rows", [parml_trainer, c_int64, POINTER(c_int64), POINTER(c_int64)], parml_status)
def parml_trainer_data_rows(trainer: Any, global_samples: int, start_out: Any, count_out: Any, /) -> int:
    """The rows of a global batch this process's replica trains on."""
    ...


# PARML_API parml_status parml_trainer_set_trace(parml_trainer trainer, int32_t enabled);
@ctypes_function("parml_trainer_set_trace", [parml_trainer, c_int32], parml_status)
def parml_trainer_set_trace(trainer: Any, enabled: int, /) -> int:
    """Starts (nonzero, discarding earlier events) or stops recording every rank's timeline."""
    ...


# PARML_API parml_status parml_trainer_write_trace(parml_trainer trainer, char const * path);
@ctypes_function("parml_trainer_write_trace", [parml_trainer, c_char_p], parml_status)
def parml_trainer_write_trace(trainer: Any, path: bytes, /) -> int:
    """Writes the recorded timeline to path as Chrome trace JSON."""
    ...


# PARML_API parml_status parml_trainer_save_checkpoint(parml_trainer trainer, char const * path);
@ctypes_function("parml_trainer_save_checkpoint", [parml_trainer, c_char_p], parml_status)
def parml_trainer_save_checkpoint(trainer: Any, path: bytes, /) -> int:
    """Writes a layout-free checkpoint of the trainer to path atomically."""
    ...


# PARML_API parml_status parml_trainer_save_checkpoint_authenticated(parml_trainer trainer, char const * path, void const * key, size_t key_len);
@ctypes_function("parml_trainer_save_checkpoint_authenticated", [parml_trainer, c_char_p, c_void_p, c_size_t], parml_status)
def parml_trainer_save_checkpoint_authenticated(trainer: Any, path: bytes, key: Any, key_len: int, /) -> int:
    """parml_trainer_save_checkpoint with an HMAC-SHA-256 tag under key (>= 16 bytes)."""
    ...


# PARML_API parml_status parml_trainer_serialize_checkpoint(parml_trainer trainer, void ** buf_out, size_t * len_out);
@ctypes_function("parml_trainer_serialize_checkpoint", [parml_trainer, POINTER(c_void_p), POINTER(c_size_t)], parml_status)
def parml_trainer_serialize_checkpoint(trainer: Any, buf_out: Any, len_out: Any, /) -> int:
    """A checkpoint's bytes in a new buffer (free it with parml_buffer_free)."""
    ...


# PARML_API parml_status parml_trainer_serialize_checkpoint_authenticated(parml_trainer trainer, void const * key, size_t key_len, void ** buf_out, size_t * len_out);
@ctypes_function(
    "parml_trainer_serialize_checkpoint_authenticated",
    [parml_trainer, c_void_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t)],
    parml_status,
)
def parml_trainer_serialize_checkpoint_authenticated(trainer: Any, key: Any, key_len: int, buf_out: Any, len_out: Any, /) -> int:
    """The bytes parml_trainer_save_checkpoint_authenticated would write, in a new buffer."""
    ...


# PARML_API parml_status parml_trainer_step(parml_trainer trainer, parml_tensor inputs, parml_tensor targets, float * loss_out);
@ctypes_function("parml_trainer_step", [parml_trainer, parml_tensor, parml_tensor, POINTER(c_float)], parml_status)
def parml_trainer_step(trainer: Any, inputs: Any, targets: Any, loss_out: Any, /) -> int:
    """One optimizer step on a batch; *loss_out gets the batch's mean loss."""
    ...


# PARML_API parml_status parml_trainer_skipped_steps(parml_trainer trainer, int64_t * skipped_out);
@ctypes_function("parml_trainer_skipped_steps", [parml_trainer, POINTER(c_int64)], parml_status)
def parml_trainer_skipped_steps(trainer: Any, skipped_out: Any, /) -> int:
    """Steps skipped because their loss or gradients were not finite."""
    ...


# PARML_API parml_status parml_trainer_step_count(parml_trainer trainer, int64_t * steps_out);
@ctypes_function("parml_trainer_step_count", [parml_trainer, POINTER(c_int64)], parml_status)
def parml_trainer_step_count(trainer: Any, steps_out: Any, /) -> int:
    """Optimizer steps taken so far in *steps_out."""
    ...


# PARML_API parml_status parml_loss_params_init(parml_loss_params * params);
@ctypes_function("parml_loss_params_init", [POINTER(parml_loss_params)], parml_status)
def parml_loss_params_init(params: Any, /) -> int:
    """Fills *params with the loss defaults (a plain mean) and sets struct_size."""
    ...


# PARML_API parml_status parml_metrics_params_init(parml_metrics_params * params);
@ctypes_function("parml_metrics_params_init", [POINTER(parml_metrics_params)], parml_status)
def parml_metrics_params_init(params: Any, /) -> int:
    """Fills *params with the metrics defaults (top_k 5, no buffers) and sets struct_size."""
    ...


# PARML_API parml_status parml_trainer_set_loss(parml_trainer trainer, parml_loss_params const * params);
@ctypes_function("parml_trainer_set_loss", [parml_trainer, POINTER(parml_loss_params)], parml_status)
def parml_trainer_set_loss(trainer: Any, params: Any, /) -> int:
    """Sets class weights, label smoothing or pos_weight for the next steps."""
    ...


# PARML_API parml_status parml_trainer_evaluate_metrics(parml_trainer trainer, parml_dataset dataset, int64_t batch_size, parml_metrics_params const * params, parml_metrics * out);
@ctypes_function(
    "parml_trainer_evaluate_metrics",
    [parml_trainer, parml_dataset, c_int64, POINTER(parml_metrics_params), POINTER(parml_metrics)],
    parml_status,
)
def parml_trainer_evaluate_metrics(trainer: Any, dataset: Any, batch_size: int, params: Any, out: Any, /) -> int:
    """Loss, accuracy, top-k, precision/recall/F1 and the confusion matrix over a dataset."""
    ...


# PARML_API parml_status parml_dataset_split(parml_dataset dataset, double validation_fraction, uint64_t seed, int32_t stratified, parml_dataset * train_out, parml_dataset * validation_out);
@ctypes_function(
    "parml_dataset_split",
    [parml_dataset, c_double, c_uint64, c_int32, POINTER(parml_dataset), POINTER(parml_dataset)],
    parml_status,
)
def parml_dataset_split(
    dataset: Any, validation_fraction: float, seed: int, stratified: int, train_out: Any, validation_out: Any, /
) -> int:
    """Training and validation datasets of copied rows, optionally stratified by class."""
    ...


# PARML_API parml_status parml_dataset_with_sample_weights(parml_dataset dataset, float const * weights, int64_t count, parml_dataset * out);
@ctypes_function(
    "parml_dataset_with_sample_weights", [parml_dataset, POINTER(c_float), c_int64, POINTER(parml_dataset)], parml_status
)
def parml_dataset_with_sample_weights(dataset: Any, weights: Any, count: int, out: Any, /) -> int:
    """A dataset of the same samples carrying one loss weight per sample."""
    ...


# PARML_API parml_status parml_trainer_step_weighted(parml_trainer trainer, parml_tensor inputs, parml_tensor targets, float const * sample_weights, int64_t count, float * loss_out);
@ctypes_function(
    "parml_trainer_step_weighted",
    [parml_trainer, parml_tensor, parml_tensor, POINTER(c_float), c_int64, POINTER(c_float)],
    parml_status,
)
def parml_trainer_step_weighted(trainer: Any, inputs: Any, targets: Any, sample_weights: Any, count: int, loss_out: Any, /) -> int:
    """One optimizer step with one loss weight per sample; *loss_out gets the weighted mean."""
    ...


# PARML_API int32_t parml_version_number(void);
@ctypes_function("parml_version_number", [], c_int32)
def parml_version_number() -> int:
    """The library's version as MAJOR*10000 + MINOR*100 + PATCH."""
    ...


# PARML_API char const * parml_version_string(void);
@ctypes_function("parml_version_string", [], c_char_p)
def parml_version_string() -> bytes:
    """The library's version as "MAJOR.MINOR.PATCH" (static storage)."""
    ...


# ---------------------------------------------------------------------------
# Strategy advisor (since 0.3; docs/advisor.md)
# ---------------------------------------------------------------------------


class parml_advice_s(Structure):
    """Opaque: struct parml_advice_s."""


# typedef struct parml_advice_s *parml_advice;
parml_advice = POINTER(parml_advice_s)
HANDLE_TYPES["parml_advice"] = parml_advice


class parml_advice_params(Structure):
    """What parml_strategy_advise and parml_trainer_create_auto are asked.

    Attributes:
        struct_size: set by parml_advice_params_init
        sample_dims, sample_rank: one sample's input shape (no batch dimension)
        batch: global batch per step (required)
        cores: cores the ranks may use; 0: this machine's
        max_ranks: ranks at most; 0: 4
        memory_budget: peak bytes per rank (parml_trainer_memory's count); 0: none
        deterministic: 1: deterministic-mode layouts only
        backend: PARML_BACKEND_*
        cache_dir: calibration cache directory; NULL: the default
        nodes, ranks_per_node, cores_per_node: machines other than this one (nodes 0: this one)
        inter_node_bandwidth, inter_node_latency: bytes/s and seconds of a link between nodes
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("sample_dims", POINTER(c_int64)),
        ("sample_rank", c_int64),
        ("batch", c_int64),
        ("cores", c_int32),
        ("max_ranks", c_int32),
        ("memory_budget", c_int64),
        ("deterministic", c_int32),
        ("backend", c_int32),
        ("cache_dir", c_char_p),
        ("nodes", c_int32),
        ("ranks_per_node", c_int32),
        ("cores_per_node", c_int32),
        ("inter_node_bandwidth", c_double),
        ("inter_node_latency", c_double),
    ]


class parml_layout_prediction(Structure):
    """One ranked layout's prediction (parml_advice_layout).

    Attributes:
        struct_size: the caller sets it to sizeof(parml_layout_prediction)
        dp, pp, tp, micro_batches, zero_stage, blas_threads: the layout
        step_seconds: the sum of the five terms
        compute_seconds, communication_seconds, bubble_seconds, optimizer_seconds, overhead_seconds: the terms
        parameter_bytes, gradient_bytes, optimizer_bytes, scratch_bytes, activation_bytes: the fullest rank's
        peak_bytes: their sum
        peak_stage: that rank's pipeline stage
    """

    _fields_ = [
        ("struct_size", c_size_t),
        ("dp", c_int32),
        ("pp", c_int32),
        ("tp", c_int32),
        ("micro_batches", c_int32),
        ("zero_stage", c_int32),
        ("blas_threads", c_int32),
        ("step_seconds", c_double),
        ("compute_seconds", c_double),
        ("communication_seconds", c_double),
        ("bubble_seconds", c_double),
        ("optimizer_seconds", c_double),
        ("overhead_seconds", c_double),
        ("parameter_bytes", c_int64),
        ("gradient_bytes", c_int64),
        ("optimizer_bytes", c_int64),
        ("scratch_bytes", c_int64),
        ("activation_bytes", c_int64),
        ("peak_bytes", c_int64),
        ("peak_stage", c_int32),
    ]


STRUCT_TYPES["parml_advice_params"] = parml_advice_params
STRUCT_TYPES["parml_layout_prediction"] = parml_layout_prediction


# PARML_API parml_status parml_advice_params_init(parml_advice_params * params);
@ctypes_function("parml_advice_params_init", [POINTER(parml_advice_params)], parml_status)
def parml_advice_params_init(params: Any, /) -> int:
    """Fills *params with the advisor's defaults and sets struct_size."""
    ...


# PARML_API parml_status parml_strategy_advise(parml_model model, int32_t loss, parml_optimizer_params const * optimizer, parml_advice_params const * params, parml_advice * out);
@ctypes_function(
    "parml_strategy_advise",
    [parml_model, c_int32, POINTER(parml_optimizer_params), POINTER(parml_advice_params), POINTER(parml_advice)],
    parml_status,
)
def parml_strategy_advise(model: Any, loss: int, optimizer: Any, params: Any, out: Any, /) -> int:
    """Predicts and ranks every layout; the caller frees *out with parml_advice_free."""
    ...


# PARML_API void parml_advice_free(parml_advice advice);
@ctypes_function("parml_advice_free", [parml_advice], None)
def parml_advice_free(advice: Any, /) -> None:
    """Releases an advice. NULL is a no-op."""
    ...


# PARML_API parml_status parml_advice_count(parml_advice advice, ptrdiff_t * ranked_out, ptrdiff_t * excluded_out);
@ctypes_function("parml_advice_count", [parml_advice, POINTER(c_ptrdiff_t), POINTER(c_ptrdiff_t)], parml_status)
def parml_advice_count(advice: Any, ranked_out: Any, excluded_out: Any, /) -> int:
    """Ranked and excluded layout counts."""
    ...


# PARML_API parml_status parml_advice_layout(parml_advice advice, ptrdiff_t index, parml_layout_prediction * out, char const ** reason_out);
@ctypes_function(
    "parml_advice_layout", [parml_advice, c_ptrdiff_t, POINTER(parml_layout_prediction), POINTER(c_char_p)], parml_status
)
def parml_advice_layout(advice: Any, index: int, out: Any, reason_out: Any, /) -> int:
    """Ranked layout `index`: its prediction and a borrowed one-line reason."""
    ...


# PARML_API parml_status parml_advice_strategy(parml_advice advice, ptrdiff_t index, parml_strategy_params * out);
@ctypes_function("parml_advice_strategy", [parml_advice, c_ptrdiff_t, POINTER(parml_strategy_params)], parml_status)
def parml_advice_strategy(advice: Any, index: int, out: Any, /) -> int:
    """Ranked layout `index` as strategy params."""
    ...


# PARML_API parml_status parml_advice_excluded(parml_advice advice, ptrdiff_t index, parml_strategy_params * strategy_out, char const ** why_out);
@ctypes_function(
    "parml_advice_excluded", [parml_advice, c_ptrdiff_t, POINTER(parml_strategy_params), POINTER(c_char_p)], parml_status
)
def parml_advice_excluded(advice: Any, index: int, strategy_out: Any, why_out: Any, /) -> int:
    """Excluded layout `index` and why (borrowed)."""
    ...


# PARML_API parml_status parml_advice_text(parml_advice advice, char ** text_out);
@ctypes_function("parml_advice_text", [parml_advice, POINTER(POINTER(c_char))], parml_status)
def parml_advice_text(advice: Any, text_out: Any, /) -> int:
    """The advice as a table; the caller frees it with parml_buffer_free."""
    ...


# PARML_API parml_status parml_trainer_create_auto(parml_model model, int32_t loss, parml_optimizer_params const * optimizer, parml_advice_params const * params, parml_trainer * out);
@ctypes_function(
    "parml_trainer_create_auto",
    [parml_model, c_int32, POINTER(parml_optimizer_params), POINTER(parml_advice_params), POINTER(parml_trainer)],
    parml_status,
)
def parml_trainer_create_auto(model: Any, loss: int, optimizer: Any, params: Any, out: Any, /) -> int:
    """Strategy auto: a trainer with the advisor's first layout."""
    ...
