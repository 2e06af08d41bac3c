"""parml.Model and parml.Sequential: a network in libparml."""

from __future__ import annotations

import os
from ctypes import byref, c_char_p, c_int64, c_void_p, cast
from typing import Iterable

import numpy as np

from . import _arrays, _buffers, _capi
from ._handle import Handle
from .errors import check, take_text
from .layers import Layer, require_layers


def _check_seed(seed: int) -> int:
    seed = int(seed)
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be in 0...2^64-1, got {seed}")
    return seed


_STORED_WEIGHTS = {"float32": _capi.PARML_DTYPE_FLOAT32, "bfloat16": _capi.PARML_DTYPE_BFLOAT16}


def _file_params(key: bytes | None, weights: str) -> "tuple[_capi.parml_model_file_params, bytes | None]":
    """parml_model_file_params for a save, and the key bytes its `key` points
    at (the caller keeps them alive for the call)."""
    if weights not in _STORED_WEIGHTS:
        raise ValueError(f"weights must be 'float32' or 'bfloat16', got {weights!r}")
    p = _capi.parml_model_file_params()
    check(_capi.parml_model_file_params_init(byref(p)))
    p.weights_dtype = _STORED_WEIGHTS[weights]
    k = None
    if key is not None:
        k = _buffers.as_key(key)
        p.key = cast(c_char_p(k), c_void_p)
        p.key_len = len(k)
    return p, k


class Model(Handle):
    """A network: layers added in order (with residual blocks) and their
    parameters. ``Model()`` is empty; ``add`` appends layers and
    ``initialize(seed)`` draws the parameters, after which no layer can be
    added. :class:`Sequential` does both from a list.

    A model may be shared by several trainers; each keeps it alive and trains
    its parameters in place. A model and its trainers share one lock, so
    Python threads using them are serialised.

    ``save``/``load`` write and read model files (docs/file-format.md);
    ``to_bytes``/``from_bytes`` do the same in memory; ``export_onnx``
    writes an ONNX file for inference elsewhere. A loaded model is
    initialised; its ``layers`` list is empty (the file holds the layers,
    ``summary()`` shows them). The execution plan and traces belong to a
    trainer: ``Trainer.plan()``, ``Trainer.start_trace()``.
    """

    _free_function = _capi.parml_model_free

    def __init__(self) -> None:
        out = _capi.parml_model()
        check(_capi.parml_model_create(byref(out)))
        super().__init__(out)
        self._layers: list[Layer] = []
        self._initialized = False

    # -- building --------------------------------------------------------

    def add(self, *layers: Layer) -> "Model":
        """Appends layers; returns the model. If a layer is rejected, the
        layers before it stay added (the model is then best discarded)."""
        require_layers(layers)
        with self._use() as m:
            for layer in layers:
                layer._emit(m)
                self._layers.append(layer)
        return self

    def initialize(self, seed: int = 0) -> "Model":
        """Allocates the parameters and draws them from `seed` (PyTorch's
        default distributions); calling it again redraws them."""
        seed = _check_seed(seed)
        with self._use() as m:
            check(_capi.parml_model_init(m, seed))
            self._initialized = True
        return self

    @property
    def layers(self) -> list[Layer]:
        """The layer specifications added so far (a copy of the list)."""
        return list(self._layers)

    @property
    def initialized(self) -> bool:
        return self._initialized

    # -- inspecting ------------------------------------------------------

    @property
    def num_params(self) -> int:
        """Number of scalar parameters (known before initialize too)."""
        n = c_int64()
        with self._use() as m:
            check(_capi.parml_model_num_params(m, byref(n)))
        return n.value

    @property
    def parameters(self) -> np.ndarray:
        """A copy of all parameters, flattened in layer order (each tensor
        row-major: Linear W (out, in) then b). Changing it changes nothing;
        use set_parameters."""
        with self._use() as m:
            n = c_int64()
            check(_capi.parml_model_num_params(m, byref(n)))
            out = np.empty(n.value, dtype=np.float32)
            check(_capi.parml_model_get_params(m, _arrays.float_pointer(out), out.size))
        return out

    def set_parameters(self, values: object) -> None:
        """Overwrites all parameters from a flat array of num_params values
        (any shape with that many elements; converted to float32)."""
        arr = _arrays.as_float32(values, "values")
        with self._use() as m:
            check(_capi.parml_model_set_params(m, _arrays.float_pointer(arr), arr.size))

    @property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each parameter tensor's stable dotted name and shape, in the flat
        order of `parameters`: the keys PyTorch gives an nn.Sequential's
        state_dict ("0.weight", "0.bias"; "3.1.weight" for layer 1 of the
        residual block at index 3)."""
        out: dict[str, tuple[int, ...]] = {}
        dims = (c_int64 * 8)()
        ndim = _capi.c_ptrdiff_t()
        with self._use() as m:
            n = c_int64()
            check(_capi.parml_model_num_param_tensors(m, byref(n)))
            for i in range(n.value):
                name = take_text(lambda p: _capi.parml_model_param_tensor_info(m, i, p, dims, len(dims), byref(ndim)))
                out[name] = tuple(int(dims[k]) for k in range(ndim.value))
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter tensor, shaped, by name (see
        parameter_shapes): what torch.nn.Module.load_state_dict takes for a
        torch model with the same layers."""
        out: dict[str, np.ndarray] = {}
        shapes = self.parameter_shapes
        with self._use() as m:
            for name, shape in shapes.items():
                arr = np.empty(shape, dtype=np.float32)
                check(_capi.parml_model_get_param(m, name.encode(), _arrays.float_pointer(arr), arr.size))
                out[name] = arr
        return out

    def load_state_dict(self, state: dict[str, object], strict: bool = True) -> None:
        """Overwrites parameter tensors by name from arrays of their shapes
        (numpy, or anything np.asarray takes, torch tensors included via
        .detach().numpy()). strict: the names must be exactly this model's.
        Checked before anything is written: on error the model is unchanged."""
        shapes = self.parameter_shapes
        if strict and set(state) != set(shapes):
            missing, extra = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
            raise KeyError(f"state_dict keys differ: missing {missing}, unexpected {extra}")
        arrays = {}
        for name, value in state.items():
            if name not in shapes:
                raise KeyError(f"the model has no parameter named {name!r}")
            arr = _arrays.as_float32(value, name)
            if tuple(arr.shape) != shapes[name]:
                raise ValueError(f"{name}: shape {tuple(arr.shape)}, the model's is {shapes[name]}")
            if not np.isfinite(arr).all():
                raise ValueError(f"{name}: holds a NaN or an infinity")
            arrays[name] = arr
        with self._use() as m:
            for name, arr in arrays.items():
                check(_capi.parml_model_set_param(m, name.encode(), _arrays.float_pointer(arr), arr.size))

    def summary(self) -> str:
        """The library's text description of the layers and parameter shapes."""
        with self._use() as m:
            return take_text(lambda out: _capi.parml_model_summary(m, out))

    def output_shape(self, input_shape: Iterable[int]) -> tuple[int, ...]:
        """The output shape for an input shape (N, ...), checked through every
        layer (ShapeError names the layer that does not fit)."""
        dims = tuple(int(d) for d in input_shape)
        out = (c_int64 * 8)()
        ndim = _capi.c_ptrdiff_t()
        with self._use() as m:
            check(
                _capi.parml_model_output_shape(
                    m, _arrays.dims_of(dims), len(dims), out, len(out), byref(ndim)
                )
            )
        return tuple(out[: ndim.value])

    # -- files -----------------------------------------------------------

    def save(self, path: object, key: bytes | None = None, weights: str = "float32") -> None:
        """Writes the model (layers and parameters) to `path` atomically.
        With `key` (bytes, at least 16), the file carries an HMAC-SHA-256 tag
        and loads only with the same key (docs/file-format.md). With
        ``weights="bfloat16"`` each parameter is stored rounded to bfloat16
        (half the bytes, for exchange); loading widens them back to float32."""
        with self._use() as m:
            params, _key = _file_params(key, weights)  # _key keeps the bytes params.key points at alive
            check(_capi.parml_model_save_with(m, _buffers.as_path(path), byref(params)))

    def to_bytes(self, key: bytes | None = None, weights: str = "float32") -> bytes:
        """The bytes ``save`` would write (`key` and `weights` as there)."""
        with self._use() as m:
            params, _key = _file_params(key, weights)
            return _buffers.take_bytes(lambda buf, n: _capi.parml_model_serialize_with(m, byref(params), buf, n))

    def export_onnx(self, path: object, input_shape: Iterable[int]) -> None:
        """Writes the model as an ONNX file (opset 17) for inference on inputs
        of `input_shape` (its first size becomes the symbolic batch "N")."""
        dims = tuple(int(d) for d in input_shape)
        with self._use() as m:
            check(_capi.parml_model_export_onnx(m, _arrays.dims_of(dims), len(dims), _buffers.as_path(path)))

    @classmethod
    def load(cls, path: object, key: bytes | None = None) -> "Model":
        """A new model read from a model file (or a checkpoint's model).
        With `key`, the file must carry a tag that verifies under it
        (MissingTagError, WrongKeyError, TamperedError otherwise); without,
        an authenticated file is refused (WrongKeyError)."""
        out = _capi.parml_model()
        if key is None:
            check(_capi.parml_model_load(_buffers.as_path(path), byref(out)))
        else:
            k = _buffers.as_key(key)
            check(_capi.parml_model_load_authenticated(_buffers.as_path(path), k, len(k), byref(out)))
        return cls._adopt(out)

    @classmethod
    def from_bytes(cls, data: object, key: bytes | None = None) -> "Model":
        """A new model from a model file's bytes (`key` as in ``load``)."""
        raw = _buffers.as_bytes(data, "data")
        out = _capi.parml_model()
        if key is None:
            check(_capi.parml_model_deserialize(raw, len(raw), byref(out)))
        else:
            k = _buffers.as_key(key)
            check(_capi.parml_model_deserialize_authenticated(raw, len(raw), k, len(k), byref(out)))
        return cls._adopt(out)

    @classmethod
    def _adopt(cls, handle: object) -> "Model":
        self = Model.__new__(Model)
        Handle.__init__(self, handle)
        self._layers = []
        self._initialized = True
        return self

    # -- running ---------------------------------------------------------

    def predict(self, x: object, batch_size: int | None = None) -> np.ndarray:
        """Runs the model in inference mode (dropout off) on x (N, ...) and
        returns a new float32 array. With batch_size, x is fed in slices of
        that many samples (no copy of x: slices of a C-contiguous array are
        contiguous) and the outputs are concatenated."""
        arr = _arrays.as_model_array(x, "x")
        if batch_size is None or arr.shape[0] <= batch_size:
            return self._predict(arr)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        parts = [self._predict(arr[i : i + batch_size]) for i in range(0, arr.shape[0], batch_size)]
        return np.concatenate(parts, axis=0)

    def generate(
        self, prompt: object, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, seed: int = 0
    ) -> np.ndarray:
        """Continues `prompt` (a 1-D sequence of token ids) by max_new_tokens
        ids and returns them (int64). The model must start with an embedding
        and give logits (1, T, vocabulary). temperature 0 picks the arg-max;
        otherwise tokens are drawn from softmax(logits / temperature) over
        the top_k largest logits (None: all), reproducibly for a seed, as
        nanoGPT's generate does. Attention keeps a key/value cache: within
        the position limit a new token is a pass over that token alone."""
        ids = np.ascontiguousarray(np.asarray(prompt), dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError(f"prompt must be a 1-D sequence of token ids, got shape {ids.shape}")
        n = int(max_new_tokens)
        out = np.empty(max(n, 1), dtype=np.int64)
        ptr = ids.ctypes.data_as(_capi.POINTER(c_int64))
        with self._use() as m:
            check(
                _capi.parml_model_generate(
                    m, ptr, ids.size, n, float(temperature), 0 if top_k is None else int(top_k), int(seed),
                    out.ctypes.data_as(_capi.POINTER(c_int64)),
                )
            )
        return out[:n]

    def _predict(self, arr: np.ndarray) -> np.ndarray:
        inp = _arrays.tensor_from_array(arr)
        out = _capi.parml_tensor()
        try:
            with self._use() as m:
                check(_capi.parml_model_predict(m, inp, byref(out)))
            return _arrays.array_from_tensor(out)
        finally:
            _capi.parml_tensor_free(out)
            _capi.parml_tensor_free(inp)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("initialized" if self._initialized else "not initialized")
        inner = ", ".join(repr(layer) for layer in self._layers)
        return f"<parml.{type(self).__name__} [{inner}] {state}>"


class Sequential(Model):
    """A model built from a list of layers and initialised from `seed`
    (``seed=None`` leaves it uninitialised, to call initialize later).

    >>> model = parml.Sequential([parml.Linear(4, 8), parml.ReLU(), parml.Linear(8, 3)])
    """

    def __init__(self, layers: Iterable[Layer], seed: int | None = 0) -> None:
        layers = list(layers)
        require_layers(layers)
        super().__init__()
        try:
            self.add(*layers)
            if seed is not None:
                self.initialize(seed)
        except BaseException:
            self.close()
            raise


def file_info(path: "str | os.PathLike[str]") -> dict:
    """What the parml file at `path` holds (a model, checkpoint or tensor
    message), as `parml info --json` prints it: kind, format_version,
    checksum, layers, parameter_tensors, parameters, stored_weights
    ("float32" or "bfloat16"); for a checkpoint also
    step, epoch, seed, optimizer, optimizer_state and layout. Raises
    FormatError for a damaged or foreign file, ParmlIOError when unreadable."""
    import json

    text = take_text(lambda out: _capi.parml_file_describe(os.fsencode(path), 1, out))
    return json.loads(text)
