/*
 * parml.h — the C API of libparml, a CPU training engine.
 *
 * GENERATED: tools/gen_header.py writes this file from the Swift @c functions
 * in Sources/Parml (swiftc -emit-clang-header-path) and this template,
 * tools/parml.h.in. Do not edit it; `make header` regenerates it and
 * `make check-header` fails when the committed copy drifts.
 * Types, status codes, enums, parameter structs and version macros are in
 * parml_types.h, which is hand-written and included below.
 *
 * Introduction
 * ------------
 * parml trains neural networks on CPUs. A host defines a model layer by
 * layer, picks a loss, an optimizer and a parallel layout, and trains it on
 * tensors or datasets. Matrix work runs in OpenBLAS, loaded with kernels
 * chosen for this CPU (see parml_blas_core).
 *
 * Intended usage
 * --------------
 *   1. parml_model_create, then parml_model_add_* for each layer
 *      (parml_model_begin_residual / _end_residual around residual blocks);
 *   2. parml_model_init(model, seed) draws the parameters;
 *   3. parml_optimizer_params_init / parml_strategy_params_init fill the
 *      parameter structs with defaults; change the fields you need;
 *   4. parml_trainer_create(model, PARML_LOSS_..., &opt, &strategy, &trainer);
 *   5. parml_trainer_step on tensors (parml_tensor_create), or
 *      parml_trainer_fit on a dataset (parml_dataset_load_idx / _create, or
 *      windows of token ids: parml_dataset_create_tokens / _load_tokens),
 *      then parml_trainer_evaluate (parml_trainer_evaluate_metrics for
 *      per-class precision, recall, F1, the confusion matrix, top-k) and
 *      parml_model_predict; parml_trainer_set_loss weighs classes;
 *   6. free every handle with its parml_X_free (NULL is a no-op).
 *
 * Conventions
 * -----------
 *   - Every fallible function returns parml_status (PARML_OK = 0). On
 *     failure, parml_last_error() describes it for the calling thread, and
 *     out-parameters are left untouched.
 *   - Out-parameters come last. Whoever creates a handle frees it; text
 *     buffers the library hands out are freed with parml_buffer_free.
 *   - Handles are checked: NULL, freed or wrong-kind handles return
 *     PARML_ERR_INVALID_ARGUMENT instead of crashing. A handle is a number
 *     the library never hands out twice, so a freed one stays invalid.
 *   - Each function's comment ends with "Errors:", the codes it can
 *     return. "handle" there means a NULL, freed or wrong-kind handle
 *     (PARML_ERR_INVALID_ARGUMENT). PARML_ERR_INTERNAL (a bug in parml;
 *     please report it) can come from any of them and is not listed, nor
 *     is the PARML_ERR_STATE of a handle that another call still holds
 *     (below).
 *   - Threads: a handle is used by one thread at a time; distinct handles
 *     are independent, except that a trainer and the model it trains share
 *     the model's state (use the pair from one thread at a time). A call
 *     holds the handles it is given until it returns (a trainer's call
 *     holds its model too); a second call on a held handle, from another
 *     thread or from a callback of the first, returns PARML_ERR_STATE and
 *     changes nothing. Functions marked "Thread-safe" may be called from
 *     any thread at any time.
 *   - Sizes and counts are ptrdiff_t/size_t; dimensions are int64_t.
 */
#ifndef PARML_H
#define PARML_H

#include "parml_types.h"

#if defined(__GNUC__) || defined(__clang__)
#define PARML_API extern __attribute__((visibility("default")))
#else
#define PARML_API extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version, status codes and errors                                         */
/* What this library is, and what a failed call said. These never fail.     */
/* ------------------------------------------------------------------------ */

/// The library's version as MAJOR*10000 + MINOR*100 + PATCH (compare with
/// PARML_VERSION_NUMBER). Thread-safe. Since: 0.1.
PARML_API int32_t parml_version_number(void);

/// The library's version as "MAJOR.MINOR.PATCH"; static storage, never NULL.
/// Compare with PARML_VERSION_STRING to detect a header/library mismatch.
/// Thread-safe. Since: 0.1.
PARML_API char const * parml_version_string(void);

/// A static English name for a status code ("PARML_OK", ...); never NULL,
/// "unknown status" for codes this version does not know. Thread-safe.
PARML_API char const * parml_status_string(parml_status status);

/// Returns the message of the calling thread's last failed call ("" if none).
/// The text stays valid until this thread's next failing call. Thread-safe.
PARML_API char const * parml_last_error(void);

/// Frees a buffer the library handed out (text from parml_model_summary,
/// ...). NULL is a no-op. Thread-safe. Since: 0.1.
PARML_API void parml_buffer_free(void * buffer);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                  */
/* Row-major arrays the library owns: inputs, targets, predictions. Float32 */
/* by default; int32/int64 for class indices and token ids. Create one from */
/* the host's data, read it back, free it.                                  */
/* ------------------------------------------------------------------------ */

/// Creates a tensor of the given shape (ndim 1...8, dims >= 0) holding a copy
/// of `data` (numel floats, row-major), or zeros when data is NULL.
/// The caller owns *out and frees it with parml_tensor_free; *out is
/// untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL dims or out, ndim outside 1...8,
/// a dimension outside 0...2^31-1, too many elements), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.1.
PARML_API parml_status parml_tensor_create(int64_t const * dims, ptrdiff_t ndim, float const * data, parml_tensor * out);

/// Creates a tensor of element type `dtype` (PARML_DTYPE_FLOAT32, _INT32 or
/// _INT64) and the given shape holding a copy of `data` (numel elements of
/// that type, row-major), or zeros when data is NULL. Integer tensors carry
/// class indices (targets of cross-entropy, exact at any size) and token
/// ids (inputs of an embedding); the engine narrows int64 to int32 where it
/// trains on them and refuses values that do not fit. The caller owns *out
/// (parml_tensor_free); *out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (unknown dtype, NULL dims or out, ndim
/// outside 1...8, a dimension outside 0...2^31-1, too many elements),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_tensor_create_typed(int32_t dtype, int64_t const * dims, ptrdiff_t ndim, void const * data, parml_tensor * out);

/// Releases a tensor. NULL, or a handle already freed, is a no-op. Since: 0.1.
PARML_API void parml_tensor_free(parml_tensor tensor);

/// The tensor's shape: writes up to `capacity` dimensions to dims_out and
/// the rank to *ndim_out. Pass dims_out = NULL, capacity = 0 to get the rank
/// only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL ndim_out, NULL dims_out
/// with capacity > 0, capacity below the rank). Since: 0.1.
PARML_API parml_status parml_tensor_shape(parml_tensor tensor, int64_t * dims_out, ptrdiff_t capacity, ptrdiff_t * ndim_out);

/// Number of elements in *numel_out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL numel_out). Since: 0.1.
PARML_API parml_status parml_tensor_numel(parml_tensor tensor, int64_t * numel_out);

/// The tensor's element type, PARML_DTYPE_*, in *dtype_out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL dtype_out). Since: 0.3.
PARML_API parml_status parml_tensor_dtype(parml_tensor tensor, int32_t * dtype_out);

/// Copies the tensor's `count` floats (count must equal its numel) into the
/// caller's buffer dst. Float32 tensors only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL dst, a tensor of another
/// dtype: since 0.3), PARML_ERR_SHAPE
/// (count differs from numel). Since: 0.1.
PARML_API parml_status parml_tensor_read(parml_tensor tensor, float * dst, ptrdiff_t count);

/// Overwrites the tensor's contents with `count` floats from src (count must
/// equal its numel). Float32 tensors only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL src, a tensor of another
/// dtype: since 0.3), PARML_ERR_SHAPE
/// (count differs from numel). Since: 0.1.
PARML_API parml_status parml_tensor_write(parml_tensor tensor, float const * src, ptrdiff_t count);

/// Borrows the tensor's storage: *data_out points to numel floats, row-major,
/// 64-byte aligned, owned by the tensor and valid until parml_tensor_free.
/// Writing through it changes the tensor. Float32 tensors only (others:
/// parml_tensor_bytes).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL data_out, a tensor of
/// another dtype: since 0.3). Since: 0.1.
PARML_API parml_status parml_tensor_data(parml_tensor tensor, float ** data_out);

/// Borrows the tensor's storage whatever its dtype: *data_out points to
/// *nbytes_out bytes (numel elements of its type, row-major, 64-byte
/// aligned), owned by the tensor and valid until parml_tensor_free. Writing
/// through it changes the tensor. Either out-pointer but data_out may be NULL.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL data_out). Since: 0.3.
PARML_API parml_status parml_tensor_bytes(parml_tensor tensor, void ** data_out, int64_t * nbytes_out);

/* ------------------------------------------------------------------------ */
/* Layer kinds                                                              */
/* The kinds of layer this library builds, each with its typed attributes   */
/* (names, types, defaults, rules): what parml_model_add_layer takes, listed */
/* so that hosts and bindings discover kinds instead of knowing them.       */
/* ------------------------------------------------------------------------ */

/// The number of layer kinds this library knows, in *count_out; index them
/// 0 ..< count with parml_layer_kind_info. Thread-safe.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL count_out). Since: 0.3.
PARML_API parml_status parml_layer_kind_count(int64_t * count_out);

/// Layer kind `index`: its name for parml_model_add_layer ("linear"), the
/// class name bindings give it ("Linear", PyTorch's spelling), a line on
/// what it computes, its number of attributes, and what it reads
/// (PARML_LAYER_INPUT_VALUES, or PARML_LAYER_INPUT_TOKEN_IDS for a kind
/// such as embedding whose input is token ids). The strings are static
/// (owned by the library, valid while it is loaded). Any out-pointer may be
/// NULL. Thread-safe.
/// Errors: PARML_ERR_INVALID_ARGUMENT (index outside 0 ..< count). Since: 0.3.
PARML_API parml_status parml_layer_kind_info(int64_t index, char const ** name_out, char const ** class_name_out, char const ** doc_out, int64_t * n_attributes_out, int32_t * input_out);

/// Attribute `attribute` of layer kind `index`, in the order the kind
/// declares them (the order bindings take positional arguments in): its
/// name, PARML_ATTR_* type, its default as text ("1e-05", "true"; NULL when
/// the attribute is required), the rule a value must meet in words ("in
/// 1...2^31-1"; NULL when any value of the type is valid), and a line on
/// what it does. The strings are static (owned by the library, valid while
/// it is loaded). Any out-pointer may be NULL. Thread-safe.
/// Errors: PARML_ERR_INVALID_ARGUMENT (index or attribute out of range). Since: 0.3.
PARML_API parml_status parml_layer_kind_attribute(int64_t index, int64_t attribute, char const ** name_out, int32_t * type_out, char const ** default_out, char const ** rule_out, char const ** doc_out);

/// The kind of an earlier layer that layer kind `index` needs in its
/// model, in *kind_out ("embedding" for tied_classifier, which uses that
/// layer's weight), or NULL when it needs none: adding it to a model
/// without one fails. The string is static (owned by the library, valid
/// while it is loaded). Thread-safe.
/// Errors: PARML_ERR_INVALID_ARGUMENT (index outside 0 ..< count, NULL
/// kind_out). Since: 0.3.
PARML_API parml_status parml_layer_kind_requires(int64_t index, char const ** kind_out);

/* ------------------------------------------------------------------------ */
/* Models                                                                   */
/* A network, built layer by layer (residual blocks nest), then             */
/* initialised from a seed. parml_model_add_layer adds any kind by name;    */
/* the typed parml_model_add_* functions are shorthands for it. Parameters  */
/* live in one flat array, in layer order; each tensor also has a stable    */
/* dotted name (PyTorch's state_dict key for the same layers).              */
/* ------------------------------------------------------------------------ */

/// Creates an empty model. Add layers with parml_model_add_*, then call
/// parml_model_init. The caller owns *out (parml_model_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL out). Since: 0.1.
PARML_API parml_status parml_model_create(parml_model * out);

/// Releases the caller's reference. A trainer built on the model keeps its
/// own, so freeing the model first is safe. NULL is a no-op. Since: 0.1.
PARML_API void parml_model_free(parml_model model);

/// Appends a layer of kind `kind` ("linear", "layer_norm", ...; see
/// parml_layer_kind_count) built from `n_attrs` attributes. Attributes left
/// out take their defaults; a required one left out, an unknown name, a name
/// given twice, a wrong type or a value out of range is refused with a
/// message naming the kind and the attribute. Residual blocks are opened
/// with parml_model_begin_residual, not here. `attrs` may be NULL when
/// n_attrs is 0; the library keeps nothing it points to.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL kind, unknown kind, NULL
/// attrs with n_attrs > 0, a NULL or unknown attribute name, an attribute
/// given twice or of the wrong type or out of range, a required attribute
/// missing), PARML_ERR_STATE (after init). Since: 0.3.
PARML_API parml_status parml_model_add_layer(parml_model model, char const * kind, parml_attribute const * attrs, ptrdiff_t n_attrs);

/// Appends y = x * W^T + b with W (out_features, in_features), as torch.nn.Linear.
/// `bias` nonzero adds b. Input (..., in_features) -> (..., out_features).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, sizes outside 1...2^31-1 or
/// too large together), PARML_ERR_STATE (after init). Since: 0.1.
PARML_API parml_status parml_model_add_linear(parml_model model, int64_t in_features, int64_t out_features, int32_t bias);

/// Appends an element-wise activation, kind = PARML_ACTIVATION_*.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, unknown kind), PARML_ERR_STATE
/// (after init). Since: 0.1.
PARML_API parml_status parml_model_add_activation(parml_model model, int32_t kind);

/// Appends layer normalisation over the last dimension (size `features`),
/// with learned scale (init 1) and shift (init 0); eps > 0 (PyTorch: 1e-5).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, features < 1, eps not
/// positive and finite), PARML_ERR_STATE (after init). Since: 0.1.
PARML_API parml_status parml_model_add_layer_norm(parml_model model, int64_t features, float eps);

/// Appends inverted dropout with drop probability p in [0, 1); active only
/// in training, masks drawn from the trainer's seed.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, p outside [0, 1)),
/// PARML_ERR_STATE (after init). Since: 0.1.
PARML_API parml_status parml_model_add_dropout(parml_model model, float p);

/// Appends a flatten: (N, d1, d2, ...) -> (N, d1*d2*...).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle), PARML_ERR_STATE (after init).
/// Since: 0.1.
PARML_API parml_status parml_model_add_flatten(parml_model model);

/// Opens a residual block: the layers added until parml_model_end_residual
/// form f, and the block computes y = x + f(x) (f must keep the shape).
/// Blocks nest.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle), PARML_ERR_STATE (after init).
/// Since: 0.1.
PARML_API parml_status parml_model_begin_residual(parml_model model);

/// Closes the innermost residual block.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle; the block is empty),
/// PARML_ERR_STATE (no block open, after init). Since: 0.1.
PARML_API parml_status parml_model_end_residual(parml_model model);

/// Marks a pipeline stage boundary: the next top-level layer starts a new
/// stage. With boundaries marked, a trainer with pp > 1 cuts there (pp must
/// be the number of boundaries + 1) instead of balancing stages by the
/// cost the layers state (docs/model-parallel.md); pp = 1 ignores them.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle), PARML_ERR_STATE (no layer
/// yet, inside a residual block, twice in a row, after init). Since: 0.2.
PARML_API parml_status parml_model_add_stage_boundary(parml_model model);

/// Allocates the parameters and draws them from `seed` (PyTorch's default
/// distributions: Linear U(-1/sqrt(in), 1/sqrt(in)), LayerNorm 1 and 0). Calling it again
/// redraws them. No layer can be added afterwards.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, too many parameters),
/// PARML_ERR_STATE (no layers, open residual block), PARML_ERR_OUT_OF_MEMORY,
/// PARML_ERR_BLAS (OpenBLAS cannot be loaded). Since: 0.1.
PARML_API parml_status parml_model_init(parml_model model, uint64_t seed);

/// Number of scalar parameters (also before init); a matrix two layers
/// share (a tied_classifier and its embedding) counts once, and
/// batch_norm's running statistics count (state in the parameter list,
/// which training updates from batch statistics, not by gradient).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL count_out). Since: 0.1.
PARML_API parml_status parml_model_num_params(parml_model model, int64_t * count_out);

/// Copies all parameters, flattened in layer order (each tensor row-major),
/// into dst; count must equal parml_model_num_params.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL dst), PARML_ERR_STATE
/// (before init), PARML_ERR_SHAPE (a wrong count). Since: 0.1.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_get_params(parml_model model, float * dst, ptrdiff_t count);

/// Overwrites all parameters from src, in the order of parml_model_get_params.
/// A NaN or an infinity in src is refused and leaves the model as it was.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL src, a value that is
/// not finite: the message names its index; since 0.3), PARML_ERR_STATE
/// (before init), PARML_ERR_SHAPE (a wrong count). Since: 0.1.
PARML_API parml_status parml_model_set_params(parml_model model, float const * src, ptrdiff_t count);

/// The number of parameter tensors in *count_out (a Linear with a bias
/// has two). Their names, in the order of parml_model_get_params, come
/// from parml_model_param_tensor_info.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL count_out),
/// PARML_ERR_STATE (before init). Since: 0.3.
PARML_API parml_status parml_model_num_param_tensors(parml_model model, int64_t * count_out);

/// Parameter tensor `index` (0-based, in the order of
/// parml_model_get_params): its stable dotted name in *name_out, as
/// PyTorch names an nn.Sequential's state_dict keys ("0.weight",
/// "3.1.bias" for layer 1 of the residual block at index 3; NUL-terminated,
/// freed by the caller with parml_buffer_free), and its shape written as in
/// parml_tensor_shape (dims_out may be NULL with capacity 0). name_out may
/// be NULL to ask for the shape only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, index out of range, NULL
/// ndim_out, capacity below the rank), PARML_ERR_STATE (before init),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_model_param_tensor_info(parml_model model, int64_t index, char ** name_out, int64_t * dims_out, ptrdiff_t capacity, ptrdiff_t * ndim_out);

/// Copies the parameter tensor named `name` (see
/// parml_model_param_tensor_info) into dst, row-major; count must be its
/// element count. The way to read one layer's weights, or to hand them to
/// another framework by name.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL name or dst, no such
/// name: the message lists the names), PARML_ERR_STATE (before init),
/// PARML_ERR_SHAPE (a wrong count: the message gives the shape). Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_get_param(parml_model model, char const * name, float * dst, ptrdiff_t count);

/// Overwrites the parameter tensor named `name` from src (row-major, count
/// = its element count): loads weights trained elsewhere, tensor by tensor.
/// A NaN or an infinity is refused. On error the model is unchanged.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL name or src, no such
/// name, a value that is not finite), PARML_ERR_STATE (before init),
/// PARML_ERR_SHAPE (a wrong count). Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_set_param(parml_model model, char const * name, float const * src, ptrdiff_t count);

/// The output shape for an input shape (dims, ndim), checked through every
/// layer; written as in parml_tensor_shape.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, bad dims or ndim, NULL
/// ndim_out, capacity below the rank), PARML_ERR_SHAPE (no samples, or
/// naming the layer that does not fit). Since: 0.1.
PARML_API parml_status parml_model_output_shape(parml_model model, int64_t const * dims, ptrdiff_t ndim, int64_t * dims_out, ptrdiff_t capacity, ptrdiff_t * ndim_out);

/// Runs the model in inference mode (dropout off) on `input` and returns a
/// new tensor in *out that the caller frees with parml_tensor_free.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, NULL out), PARML_ERR_STATE
/// (before init), PARML_ERR_SHAPE, PARML_ERR_OUT_OF_MEMORY, PARML_ERR_BLAS.
/// Since: 0.1.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_predict(parml_model model, parml_tensor input, parml_tensor * out);

/// Continues `prompt` (n_prompt token ids) by max_new_tokens ids written
/// to tokens_out (room for max_new_tokens). The model must start with a
/// layer that reads token ids (embedding) and give logits (1, T, vocabulary)
/// for ids (1, T); each step feeds it the latest tokens, at most its
/// position limit (position_embedding's max_positions), in inference mode.
/// The next token is the arg-max when temperature is 0; otherwise it is
/// drawn from softmax(logits / temperature) over the top_k largest logits
/// (top_k 0: all), with draw k keyed on (seed, k): a seed gives one
/// sequence. The layers keep a key/value cache: the prompt is one forward
/// pass, then each new token a pass over that token alone, attending over
/// the cached positions; once the context reaches the position limit, each
/// token is a pass over the latest limit tokens again (learned positions
/// shift), as without a cache. The tokens are those one full forward pass
/// per token gives; a model with a layer that cannot decode incrementally
/// runs that pass.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL prompt or tokens_out,
/// n_prompt < 1, max_new_tokens < 0, a prompt id that is no token id of the
/// model, temperature negative or not finite, top_k < 0, a model whose first
/// layer does not read token ids), PARML_ERR_STATE (before init),
/// PARML_ERR_SHAPE (the model's output is not (1, T, vocabulary)),
/// PARML_ERR_OUT_OF_MEMORY, PARML_ERR_BLAS. Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_generate(parml_model model, int64_t const * prompt, int64_t n_prompt, int64_t max_new_tokens, float temperature, int64_t top_k, uint64_t seed, int64_t * tokens_out);

/// A text description of the layers and parameter shapes in *text_out,
/// NUL-terminated; the caller frees it with parml_buffer_free.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL text_out),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.1.
PARML_API parml_status parml_model_summary(parml_model model, char ** text_out);

/* ------------------------------------------------------------------------ */
/* Datasets                                                                 */
/* Samples and labels for parml_trainer_fit and _evaluate: from tensors, or */
/* from IDX files (the MNIST format, gzipped or plain), NumPy .npy/.npz     */
/* files (memory-mapped) or CSV tables; from host memory borrowed without   */
/* a copy; or training windows cut from an array or file of token ids       */
/* (docs/data.md). An image dataset may carry an augmentation (random       */
/* crop and flip) that fit applies to training batches.                     */
/* ------------------------------------------------------------------------ */

/// A dataset from copies of `inputs` (N, ...) and `targets`: (N) or (N, T)
/// class indices for cross-entropy (int32 or int64 at any size, or float32
/// integers below 2^24) or (N, ...) float32 values for MSE and binary
/// cross-entropy. Integer inputs
/// (token ids) are kept as floats, exact below 2^24. The tensors stay the
/// caller's; parml_dataset_create_borrowed reads host memory without a
/// copy. The caller owns *out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, NULL out, N = 0, integer
/// inputs beyond 2^24, int64 targets beyond int32), PARML_ERR_SHAPE (inputs
/// of rank 1, N differs), PARML_ERR_OUT_OF_MEMORY. Since: 0.1.
PARML_API parml_status parml_dataset_create(parml_tensor inputs, parml_tensor targets, parml_dataset * out);

/// A dataset that reads the caller's memory in place instead of copying
/// it: inputs (inputs_dims, float32 only: PARML_DTYPE_FLOAT32) and targets
/// (targets_dims; PARML_DTYPE_FLOAT32 or _INT32 read in place, _INT64
/// narrowed into a library-owned int32 copy of the targets). Shapes and
/// meaning as in parml_dataset_create. Each pointer must be aligned to
/// its element size (4 bytes; 8 for int64 targets). Lifetime: the memory is borrowed, not owned: it must stay
/// valid until parml_dataset_free(*out) has returned and no call that uses
/// the dataset (parml_trainer_fit, _evaluate) is still running on another
/// thread, and must not change while such a call runs. The class count
/// (parml_dataset_num_classes) is read once, here. The caller owns *out;
/// *out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL data, dims or out, an unknown
/// dtype, inputs that are not float32, a misaligned pointer, a bad shape,
/// N = 0, int64 targets beyond int32), PARML_ERR_SHAPE (inputs of rank 1,
/// N differs), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_dataset_create_borrowed(int32_t inputs_dtype, int64_t const * inputs_dims, ptrdiff_t inputs_ndim, void const * inputs, int32_t targets_dtype, int64_t const * targets_dims, ptrdiff_t targets_ndim, void const * targets, parml_dataset * out);

/// Loads an image/label pair of IDX files (the MNIST format; gzipped or
/// plain): inputs (N, rows, cols) scaled to [0, 1], targets (N) int32 class
/// indices.
/// The caller owns *out (parml_dataset_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out), PARML_ERR_IO
/// (cannot open or read), PARML_ERR_FORMAT (corrupt, truncated, counts
/// differ, a label that is not a class index), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.1.
PARML_API parml_status parml_dataset_load_idx(char const * images_path, char const * labels_path, parml_dataset * out);

/// Loads a dataset from two NumPy .npy files (numpy.save): inputs
/// (N, sample dims...) and targets (N) or (N, ...), C order, little-endian
/// bool, int8...int64, uint8...uint64, float16, float32 or float64. The
/// files are memory-mapped: float32 inputs and int32 or float32 targets are
/// read in place, as batches touch them, so loading costs no memory for
/// them; other types are converted once into library memory. Inputs: uint8
/// divided by 255 (images, as parml_dataset_load_idx scales them), bool 0
/// or 1, other integers kept as exact floats (|value| <= 2^24), float16 and
/// float64 rounded to float32. Targets: integers and bool become int32 class
/// indices (0...2^31-1); floats are float32 values (class indices when they
/// are whole numbers, as in parml_dataset_create). The files must not be
/// changed or truncated while the dataset lives (a truncated mapped file
/// raises SIGBUS). The caller owns *out (parml_dataset_free); *out is
/// untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out), PARML_ERR_IO
/// (cannot open, map or read; not a regular file), PARML_ERR_FORMAT (not
/// .npy, truncated, a header that promises more or fewer bytes than follow,
/// a negative or non-integer label, an integer input beyond 2^24),
/// PARML_ERR_UNSUPPORTED (Fortran order, object or structured arrays,
/// big-endian, complex or other dtypes, more than 8 dimensions),
/// PARML_ERR_SHAPE (inputs of rank 1, N differs), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.3.
PARML_API parml_status parml_dataset_load_npy(char const * inputs_path, char const * targets_path, parml_dataset * out);

/// Loads a dataset from two arrays of one NumPy .npz archive
/// (numpy.savez or savez_compressed), named by their keys: "x" finds the
/// member x.npy (the name numpy gives the keyword argument x=). Stored
/// members (savez) are memory-mapped and read as parml_dataset_load_npy
/// reads a file (in place when float32 and 4-byte aligned in the archive;
/// savez does not align them, so most are copied once); deflated members
/// (savez_compressed) are inflated into library memory and checked against
/// their CRC-32. Types and conversions as in parml_dataset_load_npy. The
/// caller owns *out; *out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path, key or out), PARML_ERR_IO,
/// PARML_ERR_FORMAT (not a zip archive, truncated, no member for a key, a
/// size or CRC that does not match, and the .npy errors),
/// PARML_ERR_UNSUPPORTED (encrypted members, compression other than
/// deflate, and the .npy refusals), PARML_ERR_SHAPE,
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_dataset_load_npz(char const * path, char const * inputs_key, char const * targets_key, parml_dataset * out);

/// Loads a dataset from a CSV table (NULL params = the
/// parml_csv_params_init defaults): inputs (N, F) float32 from the feature
/// columns, targets (N) from the label column, int32 class indices
/// (PARML_CSV_LABEL_CLASS), float32 values (_VALUE), or class names
/// (_TEXT: the distinct names in byte order are classes 0, 1, ...; read them
/// back with parml_dataset_class_name). Fields may be
/// double-quoted (RFC 4180); blank lines are skipped; every cell read must
/// be a finite number (strtod syntax in the C locale: '.' is the decimal
/// point whatever setlocale says).
/// The whole file is checked before anything is built. The caller owns
/// *out; *out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out, a bad params
/// field, a column name or index the file does not have, a column both
/// label and feature), PARML_ERR_IO (cannot open or read), PARML_ERR_FORMAT
/// (empty, no data rows, a row with another number of columns than the
/// first, an empty or non-numeric cell, a label that is not a class index,
/// an empty class name; the message names the line, counted from 1, and the
/// column, from 0),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_dataset_load_csv(char const * path, parml_csv_params const * params, parml_dataset * out);

/// Opens a sharded dataset that streams from disk while training runs:
/// `path` is a manifest (docs/data.md, "Streaming"), or a directory holding
/// `manifest.txt`, naming shards of .npy pairs or stored (np.savez) .npz
/// archives. This process reads shards i with i % ranks == rank (ranks = 1,
/// rank = 0: all; a rank past the last shard gets an empty dataset, which
/// only parml_trainer_set_local_data training takes). One prefetch thread reads the inputs sequentially with
/// pread (pages dropped from the page cache once read) through a shuffle
/// buffer of shuffle_buffer rows (1: no shuffling, shards and rows in
/// manifest order; otherwise the shard order and the buffer's draws come
/// from seed and the epoch, so an epoch's order is reproducible) into a
/// ring of prefetch_rows float32 rows (0: 4096). Memory is those buffers
/// plus the targets of this rank's shards (4 bytes a value, read now), not
/// the inputs. Inputs are float32, float16, float64, uint8 (divided by 255,
/// as the .npy loader does), int8, int16, uint16 or bool; targets as in
/// parml_dataset_load_npy. parml_trainer_fit takes the dataset as any
/// other; it orders itself, so fit's shuffle flag and class-balanced
/// sampling do not apply (sampling is PARML_ERR_INVALID_ARGUMENT). Every
/// shard's header is checked before this returns: on an error *out is
/// untouched and nothing stays open. A shard truncated later is
/// PARML_ERR_IO from the fit that reads it. The caller owns *out
/// (parml_dataset_free, which ends the thread).
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out, rank outside
/// 0..ranks-1, shuffle_buffer outside 1...2^30, prefetch_rows outside
/// 0...2^30), PARML_ERR_IO (the manifest or a
/// shard it names is missing or unreadable), PARML_ERR_FORMAT (a bad
/// manifest line, a shard whose rows, dtype or dims disagree with the
/// manifest, a truncated shard or one whose header promises more or fewer
/// bytes than follow, a negative label), PARML_ERR_UNSUPPORTED (compressed
/// .npz members, int32/int64/uint32/uint64 inputs, and the .npy
/// refusals), PARML_ERR_SHAPE (inputs of rank 1), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.3.
PARML_API parml_status parml_dataset_open_shards(char const * path, uint64_t seed, int64_t shuffle_buffer, int64_t prefetch_rows, int32_t rank, int32_t ranks, parml_dataset * out);

/// A token dataset over a copy of `ids`, a 1-D tensor (N) of token ids
/// (int32, int64, or float32 integers), each in 0..2^24, with windows of
/// block_size T: sample j is inputs ids[s .. s+T) and targets
/// ids[s+1 .. s+T], s chosen by params->mode (NULL params = the
/// parml_token_params_init defaults). Windows are cut per batch, never
/// stored: the dataset holds the N ids (4 bytes each). parml_trainer_fit
/// and _evaluate take it as any dataset; evaluate reads epoch 0's windows,
/// the same at every call. The tensor stays the caller's; the caller owns
/// *out (parml_dataset_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, block_size outside
/// 1...2^31-1, fewer than T+1 ids, an id that is negative, above 2^24 or
/// not an integer, a bad params field), PARML_ERR_SHAPE (ids not 1-D),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_dataset_create_tokens(parml_tensor ids, int64_t block_size, parml_token_params const * params, parml_dataset * out);

/// A token dataset read from a flat file of ids with no header, as
/// nanoGPT's prepare.py writes train.bin: file_type PARML_TOKEN_FILE_UINT16
/// (or _UINT8, _UINT32, _INT32; little-endian). The file is memory-mapped
/// and read in place at its own width (no int32 copy): every id is read
/// once here, then the pages are released from the process and read again
/// as windows need them. The file must not change while the dataset lives
/// (a mapped file truncated underneath raises SIGBUS). Otherwise as
/// parml_dataset_create_tokens. The caller owns *out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL path or out, unknown
/// file_type, block_size outside 1...2^31-1, fewer than T+1 ids, a bad
/// params field), PARML_ERR_IO (cannot open or read, not a regular file),
/// PARML_ERR_FORMAT (empty, a size that is not a whole number of ids, an
/// id above 2^24 or negative), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_dataset_load_tokens(char const * path, int32_t file_type, int64_t block_size, parml_token_params const * params, parml_dataset * out);

/// Releases a dataset. NULL is a no-op. Since: 0.1.
PARML_API void parml_dataset_free(parml_dataset dataset);

/// Number of samples in *count_out (a token dataset: windows per epoch).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL count_out). Since: 0.1.
PARML_API parml_status parml_dataset_size(parml_dataset dataset, int64_t * count_out);

/// Number of classes (largest target + 1; a token dataset: largest id + 1)
/// in *classes_out, or 0 when the targets are not class indices.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL classes_out). Since: 0.1.
PARML_API parml_status parml_dataset_num_classes(parml_dataset dataset, int64_t * classes_out);

/// How many class names the dataset has in *count_out: the distinct labels
/// of a CSV table loaded with PARML_CSV_LABEL_TEXT (the parts
/// parml_dataset_split makes of it keep them all), else 0.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL count_out). Since: 0.3.
PARML_API parml_status parml_dataset_num_class_names(parml_dataset dataset, int64_t * count_out);

/// The name of class `index` (0 <= index < parml_dataset_num_class_names) in
/// a new NUL-terminated UTF-8 string *name_out, which the caller frees with
/// parml_buffer_free. *name_out is untouched on failure.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL name_out, index out of
/// range), PARML_ERR_STATE (the dataset's labels were not names).
/// Since: 0.3.
PARML_API parml_status parml_dataset_class_name(parml_dataset dataset, int64_t index, char ** name_out);

/// The shape of the whole inputs tensor (N, ...), written as in
/// parml_tensor_shape (a token dataset: (windows per epoch, T)).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL ndim_out, capacity below
/// the rank). Since: 0.1.
PARML_API parml_status parml_dataset_input_shape(parml_dataset dataset, int64_t * dims_out, ptrdiff_t capacity, ptrdiff_t * ndim_out);

/// Splits an in-memory dataset into two new ones holding copies of its rows:
/// a training part in *train_out and a validation part of about
/// validation_fraction of the samples in *validation_out, each in the
/// dataset's order. The validation rows are round(n * validation_fraction)
/// (halves up) of each class's n rows when `stratified` is nonzero (so a
/// rare class is in both parts in its share; targets must be (N) class
/// indices), or of all
/// rows when it is 0, picked by a shuffle seeded by `seed` (the same split
/// for the same seed, on any machine). The caller owns both outputs
/// (parml_dataset_free); on failure both are untouched.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out-pointer,
/// validation_fraction outside (0, 1), a split that leaves a part empty,
/// stratified with targets that are not class indices, a token dataset),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_dataset_split(parml_dataset dataset, double validation_fraction, uint64_t seed, int32_t stratified, parml_dataset * train_out, parml_dataset * validation_out);

/// Sets how parml_trainer_fit transforms this dataset's images when it forms
/// training batches: a random crop of the image padded with
/// params->crop_padding zeros on each side, then a horizontal flip with
/// probability 1/2 when params->horizontal_flip is 1. Sample s of epoch e
/// draws its offsets and flip from (the trainer's strategy seed, e, s), so
/// every layout (dp, pp, tp, MPI processes) and a resumed run train on the
/// same images. parml_trainer_evaluate, fit's validation and
/// parml_trainer_step never transform anything. NULL params (or all
/// fields 0) turns augmentation off. The setting stays with the dataset.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, a token dataset, small
/// struct_size, crop_padding negative or not below the images' height and
/// width, horizontal_flip not 0 or 1), PARML_ERR_SHAPE (samples that are
/// not (C, H, W) or (H, W)); the dataset keeps its setting on failure.
/// Since: 0.3.
PARML_API parml_status parml_dataset_set_augmentation(parml_dataset dataset, parml_augment_params const * params);

/// A dataset of the same samples as `dataset` (shared, not copied: the new
/// handle keeps them alive, and borrowed host memory must outlive it too)
/// carrying one loss weight per sample (Keras's sample_weight=), copied
/// from `weights` (`count` floats, the dataset's size). parml_trainer_fit
/// and parml_trainer_evaluate then take the weighted mean
/// sum(w[i] * loss[i]) / sum(w[i]) over each batch, w[i] = the sample's
/// weight times its target's class weight (docs/data.md, "Sample weights"). The weights
/// follow their samples through shuffling, class-balanced sampling and
/// parml_dataset_split. The augmentation comes along. NULL weights with
/// count 0 give the samples without weights. The caller owns *out
/// (parml_dataset_free); `dataset` stays the caller's, unchanged.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, a token dataset
/// or shard stream, count not the dataset's size, a weight negative or not
/// finite, every weight 0), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_dataset_with_sample_weights(parml_dataset dataset, float const * weights, int64_t count, parml_dataset * out);

/* ------------------------------------------------------------------------ */
/* Parameter structs                                                        */
/* Fill each struct with its defaults before changing fields; the structs   */
/* grow at the end between versions (parml_types.h).                        */
/* ------------------------------------------------------------------------ */

/// Fills *params with the defaults (SGD, lr 0.01, constant schedule, no
/// momentum, decay or clipping) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.1.
PARML_API parml_status parml_optimizer_params_init(parml_optimizer_params * params);

/// Fills *params with the serial layout (dp = tp = pp = 1, threads backend,
/// default (fast) mode, BLAS threads chosen from the cores, 4 MiB buckets,
/// 60 s watchdog, 32-sample chunks, seed 0) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.1.
PARML_API parml_status parml_strategy_params_init(parml_strategy_params * params);

/// Fills *params with fit defaults (1 epoch, batch 64, shuffled, no
/// validation, no callback) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.1.
PARML_API parml_status parml_fit_params_init(parml_fit_params * params);

/// Fills *params with token dataset defaults (random windows, seed 0,
/// (N-1)/T windows per epoch) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_token_params_init(parml_token_params * params);

/// Fills *params with the defaults (',' delimiter, a header line, the last
/// column the label as class indices, every other column a feature) and
/// sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_csv_params_init(parml_csv_params * params);

/// Fills *params with the loss defaults (no class weights, no label
/// smoothing, no pos_weight) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_loss_params_init(parml_loss_params * params);

/// Fills *params with the metrics defaults (top_k 5, no per-class buffers)
/// and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_metrics_params_init(parml_metrics_params * params);

/// Fills *params with no augmentation (crop_padding 0, horizontal_flip 0)
/// and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_augment_params_init(parml_augment_params * params);

/// Fills *params with the built-in callbacks off (every monitor
/// PARML_MONITOR_NONE) and Keras's defaults for the rest (early stopping:
/// patience 0, min_delta 0, no restore; keep-best: best only, a model
/// file; reduce-on-plateau: factor 0.1, patience 10, min_delta 1e-4,
/// cooldown 0, min_lr 0), and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_callback_params_init(parml_callback_params * params);

/* ------------------------------------------------------------------------ */
/* Trainers                                                                 */
/* A model + loss + optimizer + parallel layout. Step on a batch, fit over  */
/* a dataset, evaluate; the counters, the plan of who holds what, traces;   */
/* class weights and per-class metrics for imbalanced data. fit's callbacks */
/* may evaluate, save and set the learning rate (docs/callbacks.md).        */
/* ------------------------------------------------------------------------ */

/// Creates a trainer for an initialised model: `loss` is PARML_LOSS_*
/// (parml_trainer_set_loss adds class weights, label smoothing, pos_weight),
/// `optimizer` comes from parml_optimizer_params_init (NULL = its defaults),
/// `strategy` from parml_strategy_params_init (NULL = serial). The trainer
/// keeps its own reference to the model and updates its parameters in place.
/// The caller owns *out (parml_trainer_free). Under MPI every process
/// creates its trainer alike (collective).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, bad field, unknown
/// enum, small struct_size, pp (x virtual_stages) greater than the model's
/// top-level layers, interleaved 1F1B with micro_batches not a multiple of
/// pp, tp not dividing a split width: the message names the layer and the numbers;
/// MPI: a process count other than dp*pp*tp), PARML_ERR_STATE (model not
/// initialised; MPI already finalized), PARML_ERR_UNSUPPORTED (MPI backend
/// without Open MPI), PARML_ERR_BLAS (OpenBLAS cannot be loaded),
/// PARML_ERR_OUT_OF_MEMORY (also: a rank thread could not start),
/// PARML_ERR_COMMUNICATION (MPI: building the process groups failed or timed
/// out). Since: 0.1.
/// Also PARML_ERR_STATE while another ZeRO-3 trainer under MPI holds only
/// this process's shard of the model (until parml_trainer_gather_params).
PARML_API parml_status parml_trainer_create(parml_model model, int32_t loss, parml_optimizer_params const * optimizer, parml_strategy_params const * strategy, parml_trainer * out);

/// Releases a trainer (and its reference to the model). NULL is a no-op.
/// MPI backend: freeing a trainer whose step failed ends the whole job, on
/// purpose (messages may still be in flight and peers waiting): it writes the
/// reason to stderr and calls MPI_Abort, so this call does not return and
/// mpirun stops every process. Since: 0.1.
PARML_API void parml_trainer_free(parml_trainer trainer);

/// One optimizer step on a batch: inputs (N, ...) (float32, or integer token
/// ids for a model that starts with an embedding) and targets ((N) or (N, T)
/// class indices for cross-entropy: int32, int64 or float32; values of the
/// output's shape for MSE, and in [0, 1] for binary cross-entropy, integers
/// compared as floats). Integer tensors are
/// converted into buffers the
/// trainer keeps, so such steps allocate nothing once sized. Writes the batch's
/// mean loss (before the update) to *loss_out when it is not NULL.
/// A batch refused by the checks (shape, target, local rows) changes nothing.
/// A step whose loss or gradients hold a NaN or an infinity is skipped on
/// every rank: it changes nothing (parameters, optimizer state, step count),
/// returns PARML_ERR_NONFINITE naming the step and where the value first
/// showed up, and the trainer stays usable (optimizer skip_nonfinite = 0
/// turns the check off). Any other failure after the ranks have started
/// leaves the trainer unusable (its ranks may disagree): later steps return
/// PARML_ERR_STATE; create a new trainer (MPI: freeing this one ends the
/// job, see parml_trainer_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles; a target that is not a class
/// index), PARML_ERR_SHAPE, PARML_ERR_STATE (an earlier step failed),
/// PARML_ERR_NONFINITE (since 0.3), PARML_ERR_COMMUNICATION (a rank failed
/// or timed out: every rank returns it, the message names the rank and the
/// call), PARML_ERR_OUT_OF_MEMORY. Since: 0.1.
PARML_API parml_status parml_trainer_step(parml_trainer trainer, parml_tensor inputs, parml_tensor targets, float * loss_out);

/// parml_trainer_step with one loss weight per sample: `sample_weights`
/// holds `count` floats (N, the batch's rows; with local batches this
/// process's rows), finite and >= 0. The loss is
/// sum(w[i] * loss[i]) / sum(w[i]) over the global batch, w[i] the sample's
/// weight times its target's class weight (a
/// sequence's positions each count with their sample's weight), the same
/// in every layout; *loss_out gets it. The weights are read during the call
/// only. Local batches: every process passes weights or none does.
/// Errors: parml_trainer_step's, and PARML_ERR_INVALID_ARGUMENT (NULL
/// sample_weights, a weight negative or not finite, every weight of the
/// global batch 0, DP-SGD on), PARML_ERR_SHAPE (count is not N). Since: 0.3.
PARML_API parml_status parml_trainer_step_weighted(parml_trainer trainer, parml_tensor inputs, parml_tensor targets, float const * sample_weights, int64_t count, float * loss_out);

/// Trains over `train` for params->epochs more epochs of params->batch_size
/// samples (NULL params = parml_fit_params_init defaults). The data order
/// continues from the trainer's epoch count (parml_trainer_epoch_count), so
/// several calls, or a resumed checkpoint, train as one longer call
/// (params->class_sampling_weights, since 0.3, draws class-balanced epochs
/// with replacement instead, also from (seed, epoch)). A dataset with
/// sample weights (parml_dataset_with_sample_weights) weighs each sample's
/// loss (not with DP-SGD: PARML_ERR_INVALID_ARGUMENT). After
/// each epoch the built-in callbacks run (params->callbacks: early
/// stopping, keep-best checkpoint, reduce-on-plateau; since 0.3), then
/// params->progress (if set) gets that epoch's metrics (and, with
/// params->callback_every_steps, the running metrics after such steps);
/// returning nonzero stops training with PARML_ERR_CANCELLED (the epochs
/// done stay applied; a stop after a step leaves its epoch uncounted). A
/// skipped step (PARML_ERR_NONFINITE) stops it too; that epoch does not
/// count as completed. Early stopping ends fit with PARML_OK. The callback
/// runs on the calling thread and, since 0.3, may use this trainer, its
/// model and fit's datasets to read and save: evaluate, save a model or
/// checkpoint, read parameters, predict, and set the learning rate; calls
/// that would change what fit runs on (step, fit, load a checkpoint, set
/// parameters, add layers, init) return PARML_ERR_STATE. Freeing the trainer
/// from the callback makes fit stop after it with PARML_ERR_STATE (the
/// trainer lives until fit returns). MPI: the callback runs on every
/// process; collective calls in it (save a checkpoint) must be made by all.
/// When last_out is not NULL it receives the last epoch's metrics; set
/// last_out->struct_size to sizeof(parml_epoch_metrics) first (a 0.2 size
/// gets the 0.2 fields).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, a bad params or callbacks
/// field, a monitor of validation metrics without params->validation or of
/// accuracy under MSE, small last_out->struct_size, no batch with drop_last,
/// a target that is not a class index; class sampling weights that are
/// negative, not finite, all 0 for the dataset's classes, fewer than its
/// classes, or given for a dataset without class indices), PARML_ERR_SHAPE
/// (a dataset does not fit the model), PARML_ERR_CANCELLED, PARML_ERR_STATE
/// (the trainer was freed by the callback), PARML_ERR_IO (the keep-best
/// file could not be written), and a failing step's codes
/// (parml_trainer_step; the steps before it stay applied). Since: 0.1.
PARML_API parml_status parml_trainer_fit(parml_trainer trainer, parml_dataset train, parml_fit_params const * params, parml_epoch_metrics * last_out);

/// Mean loss and accuracy over a dataset in inference mode, in batches of
/// batch_size. Accuracy is over predictions: one per sample, or one per
/// position for a sequence's logits (N, T, C), one per output for binary
/// cross-entropy; accuracy_out gets NaN for MSE. With class weights or a
/// dataset's sample weights (parml_dataset_with_sample_weights) the loss is
/// the weighted mean over the whole dataset; accuracy is not weighted. Either output may be
/// NULL. parml_trainer_evaluate_metrics measures more.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, batch_size outside
/// 1...2^31-1, a target that is not a class index), PARML_ERR_SHAPE (the
/// dataset does not fit the model), PARML_ERR_OUT_OF_MEMORY. Since: 0.1.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_trainer_evaluate(parml_trainer trainer, parml_dataset dataset, int64_t batch_size, float * loss_out, float * accuracy_out);

/// Optimizer steps taken so far in *steps_out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL steps_out). Since: 0.1.
PARML_API parml_status parml_trainer_step_count(parml_trainer trainer, int64_t * steps_out);

/// Epochs parml_trainer_fit has completed on this trainer, over all its
/// calls and restored from checkpoints, in *epochs_out. With the strategy's
/// seed it fixes the next epoch's data order, so fit over 2 epochs twice
/// trains as fit over 4 once.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL epochs_out). Since: 0.3.
PARML_API parml_status parml_trainer_epoch_count(parml_trainer trainer, int64_t * epochs_out);

/// Steps this trainer skipped because their loss or gradients held a NaN or
/// an infinity (each returned PARML_ERR_NONFINITE and updated nothing), in
/// *skipped_out; skipped steps are not in parml_trainer_step_count.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL skipped_out). Since: 0.3.
PARML_API parml_status parml_trainer_skipped_steps(parml_trainer trainer, int64_t * skipped_out);

/// The learning rate the next step will use (after schedule and warmup).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL lr_out). Since: 0.1.
PARML_API parml_status parml_trainer_learning_rate(parml_trainer trainer, float * lr_out);

/// Makes the next step use learning rate `lr` (finite, > 0) and keeps the
/// schedule's shape from there: later steps use lr * schedule(s) /
/// schedule(now), so a step or cosine schedule goes on decaying from the
/// new rate (a constant one stays at lr). It is a factor on the schedule,
/// training state that checkpoints carry (loading one restores it). May
/// be called from a fit
/// callback (reduce-on-plateau does the same). MPI: call it on every
/// process alike.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, lr not finite or <= 0),
/// PARML_ERR_STATE (the schedule's rate is 0 now: a cosine past its end
/// with min_lr 0). Since: 0.3.
PARML_API parml_status parml_trainer_set_learning_rate(parml_trainer trainer, float lr);

/// Memory rank `rank` (0..dp*pp*tp-1) of the trainer holds: parameters
/// (its pipeline stage's slice; its shard of that under ZeRO-3 on the
/// threads backend; under ZeRO-3 with MPI and tp = 1, its shard plus the
/// largest layer's part outside it, gathered while that layer runs), gradients (its stage's slice; under ZeRO >= 2 in the
/// default mode, where handing pages back lowers the data group's peak,
/// its shard plus the largest gradient bucket, the rest of the slice's
/// pages being handed back as backward reduces each bucket, each
/// micro-batch's with several), optimizer state (1/dp of that under ZeRO >= 1),
/// scratch and activations (high-water, since 0.2). Set out->struct_size to sizeof(parml_memory_report) first (a 0.1
/// size gets the 0.1 fields). Under MPI a process answers for its own rank
/// only.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, small struct_size,
/// rank outside the mesh or, under MPI, another process's rank). Since: 0.1.
PARML_API parml_status parml_trainer_memory(parml_trainer trainer, int32_t rank, parml_memory_report * out);

/// Makes the trainer's model whole on this process. Under ZeRO-3 with the
/// MPI backend (dp > 1) each process keeps only its shard of the
/// parameters between steps, gathering each layer's just before it runs;
/// until this call, reads of the whole model on that process
/// (parml_model_get_params, _get_param, _set_param, _predict, _generate,
/// _save, _serialize and their _authenticated forms, _export_onnx,
/// parml_trainer_evaluate and _evaluate_metrics, parml_trainer_create on
/// the model) fail with PARML_ERR_STATE;
/// parml_model_set_params and parml_model_init make it whole. Collective, as
/// FSDP's summon_full_params: every process of the trainer must call it at
/// the same point; the model then stays whole until the next step. A
/// process calling it alone waits for the others until watchdog_seconds,
/// then gets PARML_ERR_COMMUNICATION and the trainer (the job) cannot go
/// on. parml_trainer_fit gathers by itself at the end of every epoch
/// (validation, callbacks) and parml_trainer_save_checkpoint before it
/// writes. Anywhere else (threads backend, ZeRO 0-2, dp = 1) the model is
/// whole already: it returns PARML_OK at once without communicating, so
/// portable host code may always call it.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle), PARML_ERR_STATE (an earlier
/// step failed), PARML_ERR_COMMUNICATION (MPI: a process failed or timed
/// out). Since: 0.3.
PARML_API parml_status parml_trainer_gather_params(parml_trainer trainer);

/// *whole_out = 1 when the trainer's model holds all its parameters on this
/// process, 0 while it holds only this process's ZeRO-3 shard (MPI, after a
/// step until parml_trainer_gather_params). Local: no communication.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL whole_out). Since: 0.3.
PARML_API parml_status parml_trainer_params_whole(parml_trainer trainer, int32_t * whole_out);

/// The execution plan as text in *text_out, NUL-terminated: the dp x pp x tp
/// mesh, which layers and parameter slice each rank holds, what a step
/// exchanges (send/recv, all-reduce, reduce-scatter, all-gather) and each
/// rank's memory. The caller frees it with parml_buffer_free. The wording is
/// for people and may change; do not parse it.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL text_out),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
PARML_API parml_status parml_trainer_plan(parml_trainer trainer, char ** text_out);

/// Starts (nonzero `enabled`, discarding what was recorded) or stops
/// recording every rank's timeline: forward and backward per micro-batch,
/// send, waits in receive (pipeline bubbles), gradient reduction, optimizer.
/// The environment variable PARML_TRACE=path turns recording on for every
/// trainer and writes the timeline to path when the trainer is freed.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle). Since: 0.2.
PARML_API parml_status parml_trainer_set_trace(parml_trainer trainer, int32_t enabled);

/// Writes the recorded timeline to `path` as Chrome trace JSON (open it in
/// Perfetto or chrome://tracing): one track per rank, one slice per event,
/// labelled with micro-batch, stage and step.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL path), PARML_ERR_IO.
/// Since: 0.2.
PARML_API parml_status parml_trainer_write_trace(parml_trainer trainer, char const * path);

/// MPI: with `enabled` nonzero, each process passes parml_trainer_step and
/// parml_trainer_fit only the rows of its data-parallel replica (the
/// processes of one replica pass the same rows) instead of the global
/// batch; the global batch is the replicas' rows in replica order, and its
/// rows must be the ones parml_trainer_data_rows gives (a step with other
/// rows fails on every process with PARML_ERR_SHAPE). Each step exchanges
/// the replicas' row counts.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle; enabling it on the threads
/// backend). Since: 0.2.
PARML_API parml_status parml_trainer_set_local_batches(parml_trainer trainer, int32_t enabled);

/// MPI: with `enabled` nonzero, each process trains on its own data, of any
/// size (docs/data.md, "Local data per process"): parml_trainer_fit and
/// parml_trainer_step take this process's rows only, in any count (zero
/// included), and the global batch is the replicas' rows in replica order.
/// Each epoch of fit lasts as long as the longest replica's data (the
/// replicas agree on it when the epoch starts, one all-reduce); a replica
/// whose data has run out passes empty batches, as PyTorch's Join does for
/// uneven inputs, so no process waits forever, and every step's mean is
/// over the rows actually passed. Turns local batches on; disabling local
/// batches turns this off. A rank with no data passes an empty dataset
/// (parml_dataset_open_shards gives one to a rank without shards).
/// parml_trainer_evaluate stays per process.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle; the threads backend),
/// PARML_ERR_UNSUPPORTED (pipeline or tensor parallelism, deterministic
/// mode). Since: 0.3.
PARML_API parml_status parml_trainer_set_local_data(parml_trainer trainer, int32_t enabled);

/// The rows [*start_out, *start_out + *count_out) of a global batch of
/// `global_samples` that this process's data-parallel replica trains on:
/// what to pass with local batches. On the threads backend every replica is
/// in the process: all rows.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, negative count, NULL
/// out-pointer). Since: 0.2.
PARML_API parml_status parml_trainer_data_rows(parml_trainer trainer, int64_t global_samples, int64_t * start_out, int64_t * count_out);

/// Sets what the trainer's loss weighs, for the steps, fits and evaluations
/// after this call (NULL params = the defaults: a plain mean): class weights
/// and label smoothing for PARML_LOSS_CROSS_ENTROPY (a split classifier's
/// sharded loss too), pos_weight for PARML_LOSS_BCE_WITH_LOGITS. The arrays
/// are copied. Every layout trains on the same weighted mean (under MPI with
/// local batches each step sums the replicas' class counts); every process
/// sets the same options. A class-weight count other than the model's
/// classes (or pos_weight count other than its outputs) is refused by the
/// next step or evaluation with PARML_ERR_SHAPE, as is a batch whose
/// targets all weigh 0 (PARML_ERR_INVALID_ARGUMENT); nothing is trained.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, small struct_size, a NULL
/// array with a nonzero count or the reverse, a weight negative or not
/// finite, label_smoothing outside [0, 1], an option the trainer's loss
/// does not take). Since: 0.3.
PARML_API parml_status parml_trainer_set_loss(parml_trainer trainer, parml_loss_params const * params);

/// Classification metrics over a dataset in inference mode, in batches of
/// batch_size (the pass of parml_trainer_evaluate): loss, accuracy, top-k
/// accuracy, macro and weighted precision, recall and F1 in *out (set
/// out->struct_size to sizeof(parml_metrics) first), and, into the
/// caller's buffers named in *params (NULL params = defaults, no buffers),
/// the confusion matrix and per-class support, precision, recall and F1.
/// out->classes says how many classes the buffers need; parml_model_output_shape
/// tells it before the call. Outputs are written only on success.
/// PARML_LOSS_CROSS_ENTROPY trainers: single-label, confusion is (C, C).
/// PARML_LOSS_BCE_WITH_LOGITS trainers: multi-label, each output a label
/// predicted when its logit is > 0 and present when its target is > 0.5;
/// "classes" are the outputs, confusion is (C, 2, 2) per label [[tn, fp],
/// [fn, tp]] (4 * C entries), accuracy is the share of label decisions that
/// are right (as parml_trainer_evaluate), top_k_accuracy is NaN, and the
/// macro means are over every label (scikit-learn's multilabel rules).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handles, NULL out, small
/// struct_size, batch_size outside 1...2^31-1, top_k < 1, a buffer with
/// capacity below the model's classes (the message says how many), another
/// loss, a target that is not a class index or, for binary cross-entropy,
/// not in [0, 1]), PARML_ERR_SHAPE (the dataset
/// does not fit the model), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_trainer_evaluate_metrics(parml_trainer trainer, parml_dataset dataset, int64_t batch_size, parml_metrics_params const * params, parml_metrics * out);

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* Models, tensors and checkpoints as protobuf messages of proto/parml.proto, */
/* to a path (written atomically) or a buffer; ONNX export for inference    */
/* elsewhere (docs/file-format.md). The *_authenticated calls add (or       */
/* demand) an HMAC-SHA-256 tag under a key the caller holds; the *_with     */
/* calls take both that key and bf16 weights (parml_model_file_params).     */
/* ------------------------------------------------------------------------ */

/// Writes an initialised model (layers, attributes, parameters) to `path`
/// atomically: a temporary file in the same directory, fsync, rename over
/// `path`, fsync of the directory. Uses the model handle (one thread at a
/// time).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL or empty path),
/// PARML_ERR_STATE (not initialised), PARML_ERR_IO (with the system's
/// reason), PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_save(parml_model model, char const * path);

/// Reads a model file (parml_model_save), or the model inside a checkpoint
/// file (parml_trainer_save_checkpoint), into a new, initialised model in
/// *out, which the caller frees with parml_model_free. Pipes and other
/// streams work too.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL or empty path, NULL out),
/// PARML_ERR_IO, PARML_ERR_FORMAT (truncated, damaged, not a model, or a
/// newer format version), PARML_ERR_AUTH_KEY (an authenticated file: use
/// parml_model_load_authenticated), PARML_ERR_BLAS (OpenBLAS cannot be
/// loaded), PARML_ERR_OUT_OF_MEMORY. Thread-safe. Since: 0.2.
PARML_API parml_status parml_model_load(char const * path, parml_model * out);

/// The bytes parml_model_save would write, in a new buffer: *buf_out (free
/// it with parml_buffer_free) of *len_out bytes.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL buf_out or len_out),
/// PARML_ERR_STATE (not initialised), PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_serialize(parml_model model, void ** buf_out, size_t * len_out);

/// A new model in *out from `len` bytes at `buf` (parml_model_serialize's
/// output, or a checkpoint's: its model); the caller keeps `buf`.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL buf or out, len 0),
/// PARML_ERR_FORMAT, PARML_ERR_AUTH_KEY (authenticated bytes),
/// PARML_ERR_BLAS (OpenBLAS cannot be loaded), PARML_ERR_OUT_OF_MEMORY.
/// Thread-safe. Since: 0.2.
PARML_API parml_status parml_model_deserialize(void const * buf, size_t len, parml_model * out);

/// Writes `model` as an ONNX file (IR version 8, opset 17) for inference,
/// for inputs of shape (input_dims, ndim); input_dims[0] becomes the
/// symbolic batch "N" and the other sizes are fixed. Dropout is left out;
/// GELU becomes Erf arithmetic (docs/file-format.md lists every layer's
/// ONNX form). Inputs are named "input", outputs "output". Written
/// atomically.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, bad dims or ndim, NULL or
/// empty path), PARML_ERR_STATE (not initialised), PARML_ERR_SHAPE (the
/// shape does not fit the model), PARML_ERR_IO, PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.2.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_export_onnx(parml_model model, int64_t const * input_dims, ptrdiff_t ndim, char const * path);

/// A tensor as a parml.Tensor message in a new buffer *buf_out (free it
/// with parml_buffer_free) of *len_out bytes.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL buf_out or len_out),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
PARML_API parml_status parml_tensor_serialize(parml_tensor tensor, void ** buf_out, size_t * len_out);

/// A new tensor in *out (free it with parml_tensor_free) from a parml.Tensor
/// message of `len` bytes at `buf`.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL buf or out, len 0),
/// PARML_ERR_FORMAT (bad dtype, rank, dims, or data size),
/// PARML_ERR_OUT_OF_MEMORY. Thread-safe. Since: 0.2.
PARML_API parml_status parml_tensor_deserialize(void const * buf, size_t len, parml_tensor * out);

/// Writes a checkpoint of the trainer to `path` atomically: the model, the
/// whole optimizer state (gathered from every rank, whatever the ZeRO
/// stage), the step count (also the schedule position), the seed and the
/// layout. It loads under any layout. On the MPI backend every process
/// must call it (collective) and world rank 0 writes the file.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL or empty path),
/// PARML_ERR_IO, PARML_ERR_OUT_OF_MEMORY, PARML_ERR_COMMUNICATION (MPI: a
/// process failed or timed out). Since: 0.2.
PARML_API parml_status parml_trainer_save_checkpoint(parml_trainer trainer, char const * path);

/// Restores a checkpoint into a trainer whose model has the same layers and
/// whose optimizer is of the same kind (any layout): parameters, optimizer
/// state and step count (and, since 0.3, the epoch count and the factor
/// parml_trainer_set_learning_rate put on the rate). Training then
/// continues as the saved run would have when the trainer has the
/// checkpoint's seed. Hyper-parameters are the trainer's own. On error nothing changes.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL or empty path, other
/// layers or optimizer kind), PARML_ERR_IO, PARML_ERR_FORMAT, PARML_ERR_SHAPE
/// (optimizer state of another size), PARML_ERR_AUTH_KEY (an authenticated
/// checkpoint: use parml_trainer_load_checkpoint_authenticated),
/// PARML_ERR_OUT_OF_MEMORY. Since: 0.2.
PARML_API parml_status parml_trainer_load_checkpoint(parml_trainer trainer, char const * path);

/// The bytes parml_trainer_save_checkpoint would write, in a new buffer
/// *buf_out (free it with parml_buffer_free) of *len_out bytes. Collective
/// on the MPI backend, like parml_trainer_save_checkpoint.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL buf_out or len_out),
/// PARML_ERR_OUT_OF_MEMORY, PARML_ERR_COMMUNICATION (MPI). Since: 0.2.
PARML_API parml_status parml_trainer_serialize_checkpoint(parml_trainer trainer, void ** buf_out, size_t * len_out);

/// parml_trainer_load_checkpoint from `len` bytes at `buf` (the caller
/// keeps them). On error nothing changes.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL buf, len 0, other
/// layers or optimizer kind), PARML_ERR_FORMAT, PARML_ERR_SHAPE,
/// PARML_ERR_AUTH_KEY (authenticated bytes), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.2.
PARML_API parml_status parml_trainer_deserialize_checkpoint(parml_trainer trainer, void const * buf, size_t len);

/// A report on the parml file at `path` (a model, a checkpoint or a tensor
/// message): kind, format version, checksum, layers and parameter tensors
/// with their names and shapes, and for a checkpoint its step and epoch
/// counts, seed, optimizer and the layout it was trained with. as_json
/// nonzero gives one JSON object, 0 text for people (which may change; do
/// not parse it). Reading runs every check loading would, so a report means
/// the file loads. *text_out is NUL-terminated; free it with
/// parml_buffer_free. This is what the `parml info` tool prints.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL or empty path, NULL text_out),
/// PARML_ERR_IO (cannot read), PARML_ERR_FORMAT (not a parml file, damaged,
/// truncated, or a newer format), PARML_ERR_AUTH_KEY (an authenticated file:
/// its tag cannot be checked without the key), PARML_ERR_OUT_OF_MEMORY.
/// Since: 0.3.
PARML_API parml_status parml_file_describe(char const * path, int32_t as_json, char ** text_out);

/// parml_model_save with an HMAC-SHA-256 tag under `key` (key_len >= 16
/// bytes, borrowed for the call): only parml_model_load_authenticated with
/// the same key loads the file. Packed in memory, then written atomically.
/// Errors: those of parml_model_save, PARML_ERR_INVALID_ARGUMENT (NULL key,
/// key_len < 16), PARML_ERR_UNSUPPORTED (OpenSSL's libcrypto cannot be
/// loaded). Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_save_authenticated(parml_model model, char const * path, void const * key, size_t key_len);

/// parml_model_load of a file saved with `key` (also the model inside a
/// checkpoint saved with it): the tag is checked before anything else of the
/// file is read. Each failure has its own code.
/// Errors: those of parml_model_load, PARML_ERR_INVALID_ARGUMENT (NULL key,
/// key_len < 16), PARML_ERR_AUTH_MISSING (the file has no tag),
/// PARML_ERR_AUTH_KEY (tagged under another key), PARML_ERR_AUTH_FAILED
/// (the tag does not verify: bytes altered), PARML_ERR_UNSUPPORTED (no
/// libcrypto). Thread-safe. Since: 0.3.
PARML_API parml_status parml_model_load_authenticated(char const * path, void const * key, size_t key_len, parml_model * out);

/// The bytes parml_model_save_authenticated would write, in a new buffer
/// *buf_out (free it with parml_buffer_free) of *len_out bytes.
/// Errors: those of parml_model_serialize, PARML_ERR_INVALID_ARGUMENT (NULL
/// key, key_len < 16), PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
/// Also PARML_ERR_STATE while a ZeRO-3 trainer under MPI holds only this
/// process's shard of the model (after a step, until parml_trainer_gather_params).
PARML_API parml_status parml_model_serialize_authenticated(parml_model model, void const * key, size_t key_len, void ** buf_out, size_t * len_out);

/// parml_model_deserialize of bytes authenticated with `key`; the caller
/// keeps `buf`.
/// Errors: those of parml_model_deserialize and of
/// parml_model_load_authenticated (PARML_ERR_AUTH_MISSING, _KEY, _FAILED).
/// Thread-safe. Since: 0.3.
PARML_API parml_status parml_model_deserialize_authenticated(void const * buf, size_t len, void const * key, size_t key_len, parml_model * out);

/// parml_trainer_save_checkpoint with an HMAC-SHA-256 tag under `key`
/// (key_len >= 16 bytes): only the *_authenticated loads with the same key
/// read it. Collective on the MPI backend; world rank 0 writes.
/// Errors: those of parml_trainer_save_checkpoint,
/// PARML_ERR_INVALID_ARGUMENT (NULL key, key_len < 16),
/// PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
PARML_API parml_status parml_trainer_save_checkpoint_authenticated(parml_trainer trainer, char const * path, void const * key, size_t key_len);

/// parml_trainer_load_checkpoint of a checkpoint saved with `key`; the tag
/// is checked first. On error nothing changes.
/// Errors: those of parml_trainer_load_checkpoint,
/// PARML_ERR_INVALID_ARGUMENT (NULL key, key_len < 16),
/// PARML_ERR_AUTH_MISSING, PARML_ERR_AUTH_KEY, PARML_ERR_AUTH_FAILED,
/// PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
PARML_API parml_status parml_trainer_load_checkpoint_authenticated(parml_trainer trainer, char const * path, void const * key, size_t key_len);

/// The bytes parml_trainer_save_checkpoint_authenticated would write, in a
/// new buffer *buf_out (free it with parml_buffer_free) of *len_out bytes.
/// Collective on the MPI backend.
/// Errors: those of parml_trainer_serialize_checkpoint,
/// PARML_ERR_INVALID_ARGUMENT (NULL key, key_len < 16),
/// PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
PARML_API parml_status parml_trainer_serialize_checkpoint_authenticated(parml_trainer trainer, void const * key, size_t key_len, void ** buf_out, size_t * len_out);

/// parml_trainer_deserialize_checkpoint of bytes authenticated with `key`
/// (the caller keeps `buf`). On error nothing changes.
/// Errors: those of parml_trainer_deserialize_checkpoint and
/// PARML_ERR_AUTH_MISSING, PARML_ERR_AUTH_KEY, PARML_ERR_AUTH_FAILED,
/// PARML_ERR_UNSUPPORTED (no libcrypto). Since: 0.3.
PARML_API parml_status parml_trainer_deserialize_checkpoint_authenticated(parml_trainer trainer, void const * buf, size_t len, void const * key, size_t key_len);

/// Fills *params with the model file defaults (float32 weights, no key)
/// and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_model_file_params_init(parml_model_file_params * params);

/// parml_model_save with options (NULL params: the defaults, the same file
/// as parml_model_save): params->weights_dtype PARML_DTYPE_BFLOAT16 writes
/// every parameter rounded to bfloat16 (half the bytes; the file says so in
/// each tensor's dtype, and parml_model_load widens them back to float32),
/// params->key adds an HMAC-SHA-256 tag (load it with
/// parml_model_load_authenticated). Written atomically.
/// Errors: those of parml_model_save, PARML_ERR_INVALID_ARGUMENT (bad
/// struct_size, weights_dtype, or key with key_len < 16),
/// PARML_ERR_UNSUPPORTED (a key and no libcrypto). Since: 0.3.
PARML_API parml_status parml_model_save_with(parml_model model, char const * path, parml_model_file_params const * params);

/// The bytes parml_model_save_with would write, in a new buffer *buf_out
/// (free it with parml_buffer_free) of *len_out bytes.
/// Errors: those of parml_model_serialize, PARML_ERR_INVALID_ARGUMENT (bad
/// struct_size, weights_dtype, or key with key_len < 16),
/// PARML_ERR_UNSUPPORTED (a key and no libcrypto). Since: 0.3.
PARML_API parml_status parml_model_serialize_with(parml_model model, parml_model_file_params const * params, void ** buf_out, size_t * len_out);

/* ------------------------------------------------------------------------ */
/* Privacy accounting                                                       */
/* The privacy DP-SGD spends: epsilon for delta after some steps of Poisson */
/* sampling and Gaussian noise, and the noise that reaches a target epsilon */
/* (docs/privacy.md). Arithmetic only: no handles.                          */
/* ------------------------------------------------------------------------ */

/// The epsilon of (epsilon, delta)-differential privacy spent by `steps`
/// steps of DP-SGD with Poisson sampling at rate q (each example in a batch
/// with probability q) and Gaussian noise of standard deviation sigma times
/// the clipping norm, in *epsilon_out: Renyi-DP accounting of the sampled Gaussian mechanism
/// (Mironov et al. 2019) converted as Google's dp-accounting RdpAccountant
/// does, over its orders (docs/privacy.md). Fixed-size shuffled batches are
/// not covered by this analysis.
/// Errors: PARML_ERR_INVALID_ARGUMENT (q outside (0, 1], sigma not > 0,
/// steps < 0, delta outside (0, 1), NULL epsilon_out). Thread-safe. Since: 0.3.
PARML_API parml_status parml_privacy_epsilon(double q, double sigma, int64_t steps, double delta, double * epsilon_out);

/// The smallest noise multiplier sigma (to a relative 1e-6, rounded up) for
/// which parml_privacy_epsilon(q, sigma, steps, delta) is at most
/// target_epsilon, in *sigma_out. For E epochs at rate q, steps = ceil(E / q).
/// Errors: PARML_ERR_INVALID_ARGUMENT (target_epsilon not > 0, q outside
/// (0, 1], steps < 1, delta outside (0, 1), no sigma up to 1e6 reaches the
/// target, NULL sigma_out). Thread-safe. Since: 0.3.
PARML_API parml_status parml_privacy_noise_multiplier(double target_epsilon, double q, int64_t steps, double delta, double * sigma_out);

/* ------------------------------------------------------------------------ */
/* Private training                                                         */
/* DP-SGD in the trainer (docs/privacy.md): per-example clipping, Gaussian  */
/* noise, Poisson-sampled batches in fit, and the epsilon spent so far.     */
/* ------------------------------------------------------------------------ */

/// Fills *params with the DP-SGD defaults (noise_multiplier 1, max_grad_norm
/// 1, delta 1e-5, Poisson sampling) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_privacy_params_init(parml_privacy_params * params);

/// Turns DP-SGD on for the trainer's next steps and fits (NULL params: off
/// again): each example's gradient clipped to max_grad_norm, Gaussian noise
/// of standard deviation noise_multiplier * max_grad_norm added once to the
/// clipped sum after the data-parallel reduction (keyed by seed, step and
/// parameter element, so every dp, pp and tp layout, threads or MPI, trains
/// the same model: bit for bit in deterministic mode, but for tp, which
/// splits sums), divided by the batch size (the expected one under Poisson
/// sampling). parml_trainer_fit then samples batches as params->sampling
/// says and reports epsilon after each epoch (parml_epoch_metrics.privacy_epsilon).
/// Models: linear, conv2d, layer_norm, embedding, position_embedding,
/// causal_self_attention and tied_classifier layers with parameters, any
/// layers without (activations, dropout, pooling, flatten), and residual
/// blocks of those.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, small struct_size,
/// noise_multiplier negative or not finite, max_grad_norm not > 0 or not
/// finite, delta outside (0, 1), unknown sampling), PARML_ERR_UNSUPPORTED
/// (a batch_norm layer: use layer_norm; interleaved 1F1B; split_classifier
/// with tp > 1; a tied classifier on another pipeline stage than its
/// embedding; local_steps > 1; gradient compression). Since: 0.3.
PARML_API parml_status parml_trainer_set_privacy(parml_trainer trainer, parml_privacy_params const * params);

/// The epsilon of (epsilon, delta)-DP the trainer's private steps have spent
/// so far, in *epsilon_out (0 before any; infinity after a step with
/// noise_multiplier 0): the RDP accountant over its runs of steps, at
/// q = batch_size / dataset size for steps parml_trainer_fit took and q = 1
/// for steps taken with parml_trainer_step (no amplification claimed for
/// batches the trainer did not sample). Counts this trainer's steps and,
/// after parml_trainer_load_checkpoint, those the checkpoint records.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, delta outside (0, 1), NULL
/// epsilon_out). Since: 0.3.
PARML_API parml_status parml_trainer_privacy_spent(parml_trainer trainer, double delta, double * epsilon_out);

/* ------------------------------------------------------------------------ */
/* Strategy advisor                                                         */
/* Which layout to train with (docs/advisor.md): predicted step time and    */
/* peak memory per rank of every dp x pp x tp layout, from a cost model     */
/* calibrated on this machine (cached), ranked fastest first, with the      */
/* excluded layouts and why; strategy auto builds a trainer with the first. */
/* ------------------------------------------------------------------------ */

/// Fills *params with the advisor's defaults (no shape, batch 0: both must
/// be set; this machine's cores, 4 ranks at most, no memory budget, threads
/// backend, default mode, the default cache directory) and sets struct_size.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL). Thread-safe. Since: 0.3.
PARML_API parml_status parml_advice_params_init(parml_advice_params * params);

/// Predicts step time and peak memory per rank of every dp x pp x tp layout
/// (micro-batches, ZeRO stage) of an initialised model for params->batch
/// samples shaped params->sample_dims, with `loss` (PARML_LOSS_*) and
/// `optimizer` (NULL = defaults), and ranks those that fit the constraints
/// fastest first (docs/advisor.md). The first call on a machine measures it
/// (a few seconds) and caches the figures in params->cache_dir; later calls
/// reuse them until the CPU, core count or library version changes (a
/// corrupt or foreign file is measured again). The model is read, not
/// changed (a copy runs a probe of 2 and 4 rows). The caller owns *out
/// (parml_advice_free).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL, small struct_size, no
/// sample shape, batch < 1, negative budget, cores or ranks, a bad machine
/// description), PARML_ERR_SHAPE (the model does not take such samples),
/// PARML_ERR_STATE (model not initialised), PARML_ERR_UNSUPPORTED (backend
/// MPI on this machine outside an MPI job, or in a job spanning machines:
/// describe them), PARML_ERR_COMMUNICATION (another process of the job
/// failed or did not call), PARML_ERR_BLAS, PARML_ERR_OUT_OF_MEMORY.
/// Backend MPI on this machine (params->nodes 0) is collective: every
/// process of the job calls it; the processes measure their collectives
/// together the first time (a second; rank 0 caches them), get rank 0's
/// calibration, and rank the same layouts: those of exactly the job's
/// processes (params->max_ranks 0 or that count). Since: 0.3.
PARML_API parml_status parml_strategy_advise(parml_model model, int32_t loss, parml_optimizer_params const * optimizer, parml_advice_params const * params, parml_advice * out);

/// Releases an advice and the texts it lent. NULL is a no-op. Since: 0.3.
PARML_API void parml_advice_free(parml_advice advice);

/// The number of ranked (feasible) layouts in *ranked_out and of excluded
/// ones in *excluded_out (either may be NULL).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle). Since: 0.3.
PARML_API parml_status parml_advice_count(parml_advice advice, ptrdiff_t * ranked_out, ptrdiff_t * excluded_out);

/// Ranked layout `index` (0 = the advisor's choice): its prediction in *out
/// (set out->struct_size first) and, when reason_out is not NULL, a
/// one-line reason in *reason_out, borrowed: valid until the advice is freed.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL out, small struct_size,
/// index out of range). Since: 0.3.
PARML_API parml_status parml_advice_layout(parml_advice advice, ptrdiff_t index, parml_layout_prediction * out, char const ** reason_out);

/// Ranked layout `index` as strategy params for parml_trainer_create (set
/// out->struct_size first, e.g. with parml_strategy_params_init).
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL, small struct_size,
/// index out of range). Since: 0.3.
PARML_API parml_status parml_advice_strategy(parml_advice advice, ptrdiff_t index, parml_strategy_params * out);

/// Excluded layout `index`: its dp, pp, tp, micro-batches and ZeRO stage in
/// *strategy_out (may be NULL; set struct_size first) and why it was left
/// out in *why_out, borrowed: valid until the advice is freed.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL why_out, index out of
/// range, small struct_size). Since: 0.3.
PARML_API parml_status parml_advice_excluded(parml_advice advice, ptrdiff_t index, parml_strategy_params * strategy_out, char const ** why_out);

/// The advice as a table for people in *text_out (NUL-terminated): the
/// calibration used, every ranked layout with its predicted terms, peak
/// memory and reason, then the excluded ones and why. The caller frees it
/// with parml_buffer_free. The wording may change; do not parse it.
/// Errors: PARML_ERR_INVALID_ARGUMENT (handle, NULL), PARML_ERR_OUT_OF_MEMORY. Since: 0.3.
PARML_API parml_status parml_advice_text(parml_advice advice, char ** text_out);

/// Strategy "auto": runs parml_strategy_advise with `params` and creates a
/// trainer (as parml_trainer_create) with the first ranked layout;
/// parml_trainer_plan then says the advisor chose it and why. The caller
/// owns *out (parml_trainer_free). On this machine only (params->nodes 0);
/// with backend MPI every process of the job calls it, and the layout
/// takes all of the job's processes.
/// Errors: those of parml_strategy_advise and parml_trainer_create, and
/// PARML_ERR_INVALID_ARGUMENT when no layout fits the constraints (the
/// message gives the first reasons). Since: 0.3.
PARML_API parml_status parml_trainer_create_auto(parml_model model, int32_t loss, parml_optimizer_params const * optimizer, parml_advice_params const * params, parml_trainer * out);

/* ------------------------------------------------------------------------ */
/* OpenBLAS                                                                 */
/* The matrix library, loaded at first use with kernels for this CPU.       */
/* ------------------------------------------------------------------------ */

/// Loads OpenBLAS if needed and reports the kernel family it runs
/// ("SkylakeX", "Haswell", ...) in *core_out: static text, never freed.
/// parml picks the kernels from the CPU unless OPENBLAS_CORETYPE is set.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL core_out), PARML_ERR_BLAS
/// (OpenBLAS cannot be loaded). Thread-safe. Since: 0.1.
PARML_API parml_status parml_blas_core(char const ** core_out);

/// Sets the threads this process's products and element-wise work use
/// (1...1024): parml's own persistent threads, with OpenBLAS single-threaded
/// inside each; the count changes no bit of a result. Trainers set it from
/// their strategy when created; this overrides it until the next one,
/// except for deterministic trainers, which set their own count again
/// before each step and evaluation. parml caps it at 64; read the value in
/// effect with parml_blas_threads.
/// Errors: PARML_ERR_INVALID_ARGUMENT (outside 1...1024), PARML_ERR_BLAS
/// (OpenBLAS cannot be loaded). Since: 0.1.
PARML_API parml_status parml_blas_set_threads(int32_t threads);

/// Loads OpenBLAS if needed and writes the number of threads in effect
/// (parml_blas_set_threads) to *threads_out.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL threads_out), PARML_ERR_BLAS
/// (OpenBLAS cannot be loaded). Since: 0.1.
PARML_API parml_status parml_blas_threads(int32_t * threads_out);

/* ------------------------------------------------------------------------ */
/* MPI                                                                      */
/* One rank per process under mpirun (docs/mpi.md): start and end MPI, or   */
/* hand parml the host's communicator; this process's rank.                 */
/* ------------------------------------------------------------------------ */

/// Loads Open MPI (libmpi.so.40, or $PARML_MPI_LIBRARY) and initialises MPI
/// with MPI_Init_thread(MPI_THREAD_SERIALIZED) unless the host or an earlier
/// call already did; idempotent. Collective when it initialises: every
/// process of the job calls it. A host that initialised MPI itself need not
/// call it. Errors: PARML_ERR_UNSUPPORTED (Open MPI not installed),
/// PARML_ERR_STATE (MPI was finalized), PARML_ERR_COMMUNICATION.
/// Thread-safe. Since: 0.2.
PARML_API parml_status parml_mpi_init(void);

/// Makes parml work inside the host's communicator instead of
/// MPI_COMM_WORLD. mpi_comm is an Open MPI MPI_Comm, which is a pointer
/// (struct ompi_communicator_t *): pass it cast to void *. MPI must be
/// initialised (by the host); the communicator must stay valid until
/// parml's MPI work ends (parml duplicates it when it builds a world, so
/// its messages never mix with the host's). Takes effect for worlds built
/// afterwards. Errors: PARML_ERR_INVALID_ARGUMENT (NULL, MPI_COMM_NULL or
/// an intercommunicator), PARML_ERR_STATE (MPI not initialised).
/// Thread-safe. Since: 0.2.
PARML_API parml_status parml_mpi_use_comm(void * mpi_comm);

/// This process's rank in parml's MPI world (the communicator given to
/// parml_mpi_use_comm, else MPI_COMM_WORLD) in *rank_out; 0 when MPI is not
/// initialised. Never initialises MPI nor loads Open MPI.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL), PARML_ERR_COMMUNICATION.
/// Thread-safe. Since: 0.2.
PARML_API parml_status parml_mpi_rank(int32_t * rank_out);

/// The number of processes in parml's MPI world in *size_out; 1 when MPI is
/// not initialised. Never initialises MPI nor loads Open MPI.
/// Errors: PARML_ERR_INVALID_ARGUMENT (NULL), PARML_ERR_COMMUNICATION.
/// Thread-safe. Since: 0.2.
PARML_API parml_status parml_mpi_world_size(int32_t * size_out);

/// Finalises MPI if parml_mpi_init (or the MPI backend) initialised it; does
/// nothing and returns PARML_OK when the host initialised MPI or nobody did.
/// This is the one point where parml finalises: call it on every process
/// after the last parml call that uses MPI (MPI_Finalize is collective);
/// MPI cannot be used, nor initialised again, afterwards.
/// Errors: PARML_ERR_COMMUNICATION. Thread-safe. Since: 0.2.
PARML_API parml_status parml_mpi_finalize(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PARML_H */
