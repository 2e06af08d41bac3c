"""parml.Dataset: samples and targets held by libparml; parml.TokenDataset:
training windows cut from token ids by libparml."""

from __future__ import annotations

import os
from ctypes import byref, c_int64

import numpy as np

from . import _arrays, _capi
from ._handle import Handle
from .errors import InvalidArgumentError, check


class Dataset(Handle):
    """Samples (N, ...) and targets in library memory, for Trainer.fit and
    Trainer.evaluate.

    ``Dataset(x, y)`` copies numpy arrays in: x (N, ...) inputs (or integer
    token ids), y (N,) or (N, T) class indices for cross-entropy (integer
    arrays go in as they are: exact at any size) or (N, ...) values for MSE. Arrays are converted by the
    rule in :mod:`parml._arrays`. The library copies the data twice while
    building (into a tensor, then into the dataset), so the peak is about
    three times the arrays' size; the copies are freed once the dataset
    exists. ``parml.load_idx`` reads MNIST-format files instead.
    """

    _free_function = _capi.parml_dataset_free

    def __init__(self, x: object, y: object) -> None:
        xa = _arrays.as_model_array(x, "x")
        ya = _arrays.as_model_array(y, "y")
        xt = yt = None
        out = _capi.parml_dataset()
        try:
            xt = _arrays.tensor_from_array(xa)
            yt = _arrays.tensor_from_array(ya)
            check(_capi.parml_dataset_create(xt, yt, byref(out)))
        finally:
            _capi.parml_tensor_free(xt)
            _capi.parml_tensor_free(yt)
        super().__init__(out)

    @classmethod
    def _adopt(cls, ptr: object) -> "Dataset":
        self = cls.__new__(cls)
        Handle.__init__(self, ptr)
        return self

    @classmethod
    def load_idx(cls, images: str | os.PathLike[str], labels: str | os.PathLike[str]) -> "Dataset":
        """See parml.load_idx."""
        out = _capi.parml_dataset()
        check(_capi.parml_dataset_load_idx(os.fsencode(images), os.fsencode(labels), byref(out)))
        return cls._adopt(out)

    def __len__(self) -> int:
        n = c_int64()
        with self._use() as d:
            check(_capi.parml_dataset_size(d, byref(n)))
        return n.value

    @property
    def size(self) -> int:
        """Number of samples."""
        return len(self)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of all inputs together, (N, ...)."""
        dims = (c_int64 * 8)()
        ndim = _capi.c_ptrdiff_t()
        with self._use() as d:
            check(_capi.parml_dataset_input_shape(d, dims, len(dims), byref(ndim)))
        return tuple(dims[: ndim.value])

    @property
    def num_classes(self) -> int | None:
        """Largest target + 1 when the targets are class indices, else None."""
        n = c_int64()
        with self._use() as d:
            check(_capi.parml_dataset_num_classes(d, byref(n)))
        return n.value or None

    def set_augmentation(self, crop_padding: int = 0, horizontal_flip: bool = False) -> "Dataset":
        """How Trainer.fit transforms these images (samples (C, H, W), or
        (H, W) as one channel) when it forms training batches, as
        torchvision's ``RandomCrop(size, padding=crop_padding)`` then
        ``RandomHorizontalFlip()``: pad ``crop_padding`` zeros on each side
        and cut the image's size back out at a random offset, then mirror
        left-right with probability 1/2 when ``horizontal_flip``. Sample s
        of epoch e draws from (the trainer's seed, e, s), so every layout
        trains on the same images. Evaluation (``Trainer.evaluate``, fit's
        validation) and ``Trainer.step`` never transform anything. With no
        arguments it turns augmentation off. Returns the dataset.

        Raises InvalidArgumentError (a token dataset; crop_padding negative
        or not below the images' height and width) or ShapeError (samples
        that are not images)."""
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, (int, np.integer)):
            raise TypeError(f"crop_padding must be an int, got {type(crop_padding).__name__}")
        if not isinstance(horizontal_flip, (bool, np.bool_)):
            raise TypeError(f"horizontal_flip must be a bool, got {type(horizontal_flip).__name__}")
        if not 0 <= crop_padding < 2**31:
            raise InvalidArgumentError(f"crop_padding must be 0 or positive and below 2^31, got {crop_padding}")
        params = _capi.parml_augment_params()
        check(_capi.parml_augment_params_init(params))
        params.crop_padding = int(crop_padding)
        params.horizontal_flip = 1 if horizontal_flip else 0
        with self._use() as d:
            check(_capi.parml_dataset_set_augmentation(d, byref(params)))
        return self

    def __repr__(self) -> str:
        if self.closed:
            return "<parml.Dataset closed>"
        return f"<parml.Dataset {self.input_shape} classes={self.num_classes}>"


_TOKEN_MODES = {"random": _capi.PARML_TOKENS_RANDOM, "sequential": _capi.PARML_TOKENS_SEQUENTIAL}
_TOKEN_FILES = {
    np.dtype(np.uint8): _capi.PARML_TOKEN_FILE_UINT8,
    np.dtype(np.uint16): _capi.PARML_TOKEN_FILE_UINT16,
    np.dtype(np.uint32): _capi.PARML_TOKEN_FILE_UINT32,
    np.dtype(np.int32): _capi.PARML_TOKEN_FILE_INT32,
}


def _token_params(mode: str, seed: int, windows_per_epoch: int | None) -> _capi.parml_token_params:
    if mode not in _TOKEN_MODES:
        raise ValueError(f"mode must be one of {sorted(_TOKEN_MODES)}, got {mode!r}")
    params = _capi.parml_token_params()
    check(_capi.parml_token_params_init(params))
    params.mode = _TOKEN_MODES[mode]
    params.seed = int(seed)
    params.windows_per_epoch = 0 if windows_per_epoch is None else int(windows_per_epoch)
    return params


class TokenDataset(Dataset):
    """Training windows over a 1-D array of token ids, cut by the library
    for each batch (nanoGPT's ``get_batch``, inside parml), for Trainer.fit
    and Trainer.evaluate.

    Sample j of an epoch is the window at s: inputs ``ids[s:s+T]``, targets
    ``ids[s+1:s+T+1]``. mode "random": s is drawn uniformly from
    0..N-T-1, keyed on (seed, epoch, j), so every parallel layout sees the
    same windows; ``windows_per_epoch`` of them (None: (N-1)//T). mode
    "sequential": the (N-1)//T non-overlapping windows s = j*T, covering
    the ids once per epoch (shuffled by fit's ``shuffle``). evaluate reads
    epoch 0's windows, the same set at every call.

    The library keeps one int32 copy of the ids, never the windows.
    ``TokenDataset.load(path, T, dtype=np.uint16)`` reads a flat file of ids
    instead (nanoGPT's train.bin).
    """

    def __init__(
        self,
        ids: object,
        block_size: int,
        *,
        mode: str = "random",
        seed: int = 0,
        windows_per_epoch: int | None = None,
    ) -> None:
        arr = _arrays.as_model_array(ids, "ids")
        if arr.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
        params = _token_params(mode, seed, windows_per_epoch)
        out = _capi.parml_dataset()
        t = None
        try:
            t = _arrays.tensor_from_array(arr)
            check(_capi.parml_dataset_create_tokens(t, int(block_size), byref(params), byref(out)))
        finally:
            _capi.parml_tensor_free(t)
        Handle.__init__(self, out)
        self.block_size = int(block_size)
        self.mode = mode

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        block_size: int,
        *,
        dtype: object = np.uint16,
        mode: str = "random",
        seed: int = 0,
        windows_per_epoch: int | None = None,
    ) -> "TokenDataset":
        """Reads a flat little-endian file of ids with no header (dtype
        uint16 as nanoGPT's prepare.py writes, or uint8, uint32, int32).
        Raises ParmlIOError when it cannot be read and FormatError when its
        size is not a whole number of ids or an id is out of range."""
        kind = _TOKEN_FILES.get(np.dtype(dtype))
        if kind is None:
            raise ValueError(f"dtype must be uint8, uint16, uint32 or int32, got {np.dtype(dtype)}")
        params = _token_params(mode, seed, windows_per_epoch)
        out = _capi.parml_dataset()
        check(_capi.parml_dataset_load_tokens(os.fsencode(path), kind, int(block_size), byref(params), byref(out)))
        self = cls._adopt(out)
        self.block_size = int(block_size)
        self.mode = mode
        return self

    def __repr__(self) -> str:
        if self.closed:
            return "<parml.TokenDataset closed>"
        return f"<parml.TokenDataset {len(self)} {self.mode} windows of {self.block_size} tokens, vocab {self.num_classes}>"


def load_idx(images: str | os.PathLike[str], labels: str | os.PathLike[str]) -> Dataset:
    """Loads an image/label pair of IDX files (the MNIST format, gzipped or
    plain): inputs (N, rows, cols) scaled to [0, 1], targets (N,) class
    indices. Raises ParmlIOError when a file cannot be opened and FormatError
    when it is corrupt or the counts differ."""
    return Dataset.load_idx(images, labels)


def as_dataset(x: object, y: object | None, what: str) -> tuple[Dataset, bool]:
    """(dataset, owned): a Dataset given as is, or one built from arrays
    (owned: the caller closes it)."""
    if isinstance(x, Dataset):
        if y is not None:
            raise TypeError(f"{what}: y must be None when x is a Dataset")
        return x, False
    if y is None:
        raise TypeError(f"{what}: y is required when x is an array")
    return Dataset(x, y), True


__all__ = ["Dataset", "TokenDataset", "load_idx"]
