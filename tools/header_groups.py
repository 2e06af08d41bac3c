"""The reading order of include/parml.h: groups of functions by object, each
opened by a short paragraph. tools/gen_header.py lays the @c functions out
in this order and fails when a function is in no group (or a listed one no
longer exists), so a new function is placed where a reader looks for it."""

GROUPS = [
    (
        "Version, status codes and errors",
        "What this library is, and what a failed call said. These never fail.",
        ["parml_version_number", "parml_version_string", "parml_status_string", "parml_last_error",
         "parml_buffer_free"],
    ),
    (
        "Tensors",
        "Row-major arrays the library owns: inputs, targets, predictions. Float32\n"
        "by default; int32/int64 for class indices and token ids. Create one from\n"
        "the host's data, read it back, free it.",
        ["parml_tensor_create", "parml_tensor_create_typed", "parml_tensor_free", "parml_tensor_shape",
         "parml_tensor_numel", "parml_tensor_dtype", "parml_tensor_read", "parml_tensor_write", "parml_tensor_data",
         "parml_tensor_bytes"],
    ),
    (
        "Layer kinds",
        "The kinds of layer this library builds, each with its typed attributes\n"
        "(names, types, defaults, rules): what parml_model_add_layer takes, listed\n"
        "so that hosts and bindings discover kinds instead of knowing them.",
        ["parml_layer_kind_count", "parml_layer_kind_info", "parml_layer_kind_attribute", "parml_layer_kind_requires"],
    ),
    (
        "Models",
        "A network, built layer by layer (residual blocks nest), then\n"
        "initialised from a seed. parml_model_add_layer adds any kind by name;\n"
        "the typed parml_model_add_* functions are shorthands for it. Parameters\n"
        "live in one flat array, in layer order; each tensor also has a stable\n"
        "dotted name (PyTorch's state_dict key for the same layers).",
        ["parml_model_create", "parml_model_free", "parml_model_add_layer", "parml_model_add_linear", "parml_model_add_activation",
         "parml_model_add_layer_norm", "parml_model_add_dropout", "parml_model_add_flatten",
         "parml_model_begin_residual", "parml_model_end_residual", "parml_model_add_stage_boundary",
         "parml_model_init", "parml_model_num_params", "parml_model_get_params", "parml_model_set_params",
         "parml_model_num_param_tensors", "parml_model_param_tensor_info", "parml_model_get_param",
         "parml_model_set_param", "parml_model_output_shape", "parml_model_predict", "parml_model_generate", "parml_model_summary"],
    ),
    (
        "Datasets",
        "Samples and labels for parml_trainer_fit and _evaluate: from tensors, or\n"
        "from IDX files (the MNIST format, gzipped or plain), NumPy .npy/.npz\n"
        "files (memory-mapped) or CSV tables; from host memory borrowed without\n"
        "a copy; or training windows cut from an array or file of token ids\n"
        "(docs/data.md). An image dataset may carry an augmentation (random\n"
        "crop and flip) that fit applies to training batches.",
        ["parml_dataset_create", "parml_dataset_create_borrowed", "parml_dataset_load_idx",
         "parml_dataset_load_npy", "parml_dataset_load_npz", "parml_dataset_load_csv", "parml_dataset_open_shards",
         "parml_dataset_create_tokens", "parml_dataset_load_tokens", "parml_dataset_free", "parml_dataset_size",
         "parml_dataset_num_classes", "parml_dataset_num_class_names", "parml_dataset_class_name",
         "parml_dataset_input_shape", "parml_dataset_split",
         "parml_dataset_set_augmentation", "parml_dataset_with_sample_weights"],
    ),
    (
        "Parameter structs",
        "Fill each struct with its defaults before changing fields; the structs\n"
        "grow at the end between versions (parml_types.h).",
        ["parml_optimizer_params_init", "parml_strategy_params_init", "parml_fit_params_init",
         "parml_token_params_init", "parml_csv_params_init", "parml_loss_params_init", "parml_metrics_params_init",
         "parml_augment_params_init", "parml_callback_params_init"],
    ),
    (
        "Trainers",
        "A model + loss + optimizer + parallel layout. Step on a batch, fit over\n"
        "a dataset, evaluate; the counters, the plan of who holds what, traces;\n"
        "class weights and per-class metrics for imbalanced data. fit's callbacks\n"
        "may evaluate, save and set the learning rate (docs/callbacks.md).",
        ["parml_trainer_create", "parml_trainer_free", "parml_trainer_step", "parml_trainer_step_weighted", "parml_trainer_fit",
         "parml_trainer_evaluate", "parml_trainer_step_count", "parml_trainer_epoch_count",
         "parml_trainer_skipped_steps", "parml_trainer_learning_rate", "parml_trainer_set_learning_rate",
         "parml_trainer_memory",
         "parml_trainer_plan", "parml_trainer_set_trace", "parml_trainer_write_trace",
         "parml_trainer_set_local_batches", "parml_trainer_set_local_data", "parml_trainer_data_rows", "parml_trainer_set_loss",
         "parml_trainer_evaluate_metrics"],
    ),
    (
        "Files",
        "Models, tensors and checkpoints as protobuf messages of proto/parml.proto,\n"
        "to a path (written atomically) or a buffer; ONNX export for inference\n"
        "elsewhere (docs/file-format.md). The *_authenticated calls add (or\n"
        "demand) an HMAC-SHA-256 tag under a key the caller holds; the *_with\n"
        "calls take both that key and bf16 weights (parml_model_file_params).",
        ["parml_model_save", "parml_model_load", "parml_model_serialize", "parml_model_deserialize",
         "parml_model_export_onnx", "parml_tensor_serialize", "parml_tensor_deserialize",
         "parml_trainer_save_checkpoint", "parml_trainer_load_checkpoint",
         "parml_trainer_serialize_checkpoint", "parml_trainer_deserialize_checkpoint", "parml_file_describe",
         "parml_model_save_authenticated", "parml_model_load_authenticated", "parml_model_serialize_authenticated",
         "parml_model_deserialize_authenticated", "parml_trainer_save_checkpoint_authenticated",
         "parml_trainer_load_checkpoint_authenticated", "parml_trainer_serialize_checkpoint_authenticated",
         "parml_trainer_deserialize_checkpoint_authenticated", "parml_model_file_params_init", "parml_model_save_with",
         "parml_model_serialize_with"],
    ),
    (
        "Privacy accounting",
        "The privacy DP-SGD spends: epsilon for delta after some steps of Poisson\n"
        "sampling and Gaussian noise, and the noise that reaches a target epsilon\n"
        "(docs/privacy.md). Arithmetic only: no handles.",
        ["parml_privacy_epsilon", "parml_privacy_noise_multiplier"],
    ),
    (
        "Private training",
        "DP-SGD in the trainer (docs/privacy.md): per-example clipping, Gaussian\n"
        "noise, Poisson-sampled batches in fit, and the epsilon spent so far.",
        ["parml_privacy_params_init", "parml_trainer_set_privacy", "parml_trainer_privacy_spent"],
    ),
    (
        "Strategy advisor",
        "Which layout to train with (docs/advisor.md): predicted step time and\n"
        "peak memory per rank of every dp x pp x tp layout, from a cost model\n"
        "calibrated on this machine (cached), ranked fastest first, with the\n"
        "excluded layouts and why; strategy auto builds a trainer with the first.",
        ["parml_advice_params_init", "parml_strategy_advise", "parml_advice_free", "parml_advice_count",
         "parml_advice_layout", "parml_advice_strategy", "parml_advice_excluded", "parml_advice_text",
         "parml_trainer_create_auto"],
    ),
    (
        "OpenBLAS",
        "The matrix library, loaded at first use with kernels for this CPU.",
        ["parml_blas_core", "parml_blas_set_threads", "parml_blas_threads"],
    ),
    (
        "MPI",
        "One rank per process under mpirun (docs/mpi.md): start and end MPI, or\n"
        "hand parml the host's communicator; this process's rank.",
        ["parml_mpi_init", "parml_mpi_use_comm", "parml_mpi_rank", "parml_mpi_world_size", "parml_mpi_finalize"],
    ),
]
