"""parml.data: datasets for Trainer.fit and evaluate. parml.Dataset:
samples and targets from numpy arrays (borrowed by libparml, or one private
copy) or from files (load_npy, load_npz, load_csv, load_idx; docs/data.md);
parml.TokenDataset: training windows cut from token ids by libparml."""

from __future__ import annotations

import os
from ctypes import POINTER, byref, c_char_p, c_float, c_int64
from typing import Sequence

import numpy as np

from . import _arrays, _capi
from ._handle import Handle
from .errors import InvalidArgumentError, check, take_text


class Dataset(Handle):
    """Samples (N, ...) and targets, for Trainer.fit and Trainer.evaluate.

    ``Dataset(x, y)``: x (N, ...) inputs, y (N,) or (N, T) class indices for
    cross-entropy (integer arrays, exact at any size) or (N, ...) values for
    MSE. The library reads the arrays in place (parml_dataset_create_borrowed);
    this object keeps them alive until it is closed. ``copy`` says what may
    be borrowed, as numpy's ``asarray(copy=...)``:

    - ``True`` (default): the dataset never sees later changes to x and y.
      x is converted to float32 (integer inputs must be exact, |v| <= 2^24;
      uint8 is not scaled) or, already float32, copied once; y likewise
      (int64 class indices are narrowed by the library into an int32 copy,
      4 bytes a label). At most one extra copy of each array exists, held
      here; building allocates nothing else of their size.
    - ``None``: borrow x and y as they are when they are already float32
      (y: float32, int32 or int64) and C-contiguous, else convert as above.
      The caller must not change a borrowed array while the dataset lives.
    - ``False``: borrow, and raise ValueError when a conversion is needed.

    ``parml.load_npy``, ``load_npz``, ``load_csv`` and ``load_idx`` read
    files instead (see docs/data.md).
    """

    _free_function = _capi.parml_dataset_free
    # The arrays the library borrows, released after the handle.
    _borrowed: tuple[np.ndarray, ...] | None = None

    def __init__(self, x: object, y: object, *, copy: bool | None = True) -> None:
        if copy not in (True, False, None):
            raise ValueError(f"copy must be True, False or None, got {copy!r}")
        xa = _own_or_borrow(x, _arrays.as_float32(x, "x"), "x", copy)
        ya = _arrays.as_model_array(y, "y")
        if ya.dtype != np.int64:  # int64 targets are narrowed into a library copy anyway
            ya = _own_or_borrow(y, ya, "y", copy)
        out = _capi.parml_dataset()
        check(
            _capi.parml_dataset_create_borrowed(
                _capi.PARML_DTYPE_FLOAT32, _arrays.dims_of(xa.shape), xa.ndim, xa.ctypes.data,
                _arrays.dtype_code(ya.dtype), _arrays.dims_of(ya.shape), ya.ndim, ya.ctypes.data, byref(out),
            )
        )
        super().__init__(out)
        self._borrowed = (xa, ya)

    def _release(self, ptr: object) -> None:
        super()._release(ptr)
        self._borrowed = None  # after the free: the library no longer reads them

    def detach(self) -> object:
        if self._borrowed is not None:
            raise ValueError("a Dataset built from arrays borrows them and cannot be detached; "
                             "keep this object (or load the data from a file) instead")
        return super().detach()

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

    @classmethod
    def load_npy(cls, inputs: str | os.PathLike[str], targets: str | os.PathLike[str]) -> "Dataset":
        """See parml.load_npy."""
        out = _capi.parml_dataset()
        check(_capi.parml_dataset_load_npy(os.fsencode(inputs), os.fsencode(targets), byref(out)))
        return cls._adopt(out)

    @classmethod
    def load_npz(cls, path: str | os.PathLike[str], inputs: str = "x", targets: str = "y") -> "Dataset":
        """See parml.load_npz."""
        out = _capi.parml_dataset()
        check(_capi.parml_dataset_load_npz(os.fsencode(path), inputs.encode(), targets.encode(), byref(out)))
        return cls._adopt(out)

    @classmethod
    def load_csv(
        cls,
        path: str | os.PathLike[str],
        *,
        label: str | int = -1,
        features: Sequence[str] | Sequence[int] | None = None,
        header: bool = True,
        delimiter: str = ",",
        label_kind: str = "class",
    ) -> "Dataset":
        """Loads a dataset from a CSV table: inputs (N, F) float32 from the
        ``features`` columns (names or indices from 0; None: every column but
        the label), targets (N,) from the ``label`` column (name, or index; -1
        the last): class indices (label_kind "class"), float values
        ("value") or class names ("text": the distinct names in byte order
        become classes 0, 1, ...; ``class_names`` gives them back). Raises FormatError naming the line and column of a ragged
        row or a cell that is not a number, and InvalidArgumentError for a
        column the file does not have. ``parml.load_csv`` is this function."""
        params = _capi.parml_csv_params()
        check(_capi.parml_csv_params_init(params))
        if len(delimiter) != 1 or len(delimiter.encode()) != 1:
            raise ValueError(f"delimiter must be one ASCII character, got {delimiter!r}")
        params.delimiter = ord(delimiter)
        params.has_header = 1 if header else 0
        keep: list[object] = []  # C arrays and strings alive for the call
        if isinstance(label, str):
            name = label.encode()
            keep.append(name)
            params.label_name = name
        else:
            params.label_index = int(label)
        if features is not None:
            cols = list(features)
            if not cols:
                raise ValueError("features must name at least one column (None: every column but the label)")
            if all(isinstance(c, str) for c in cols):
                names = (c_char_p * len(cols))(*[c.encode() for c in cols])  # type: ignore[union-attr]
                keep.append(names)
                params.feature_names = names
            elif all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in cols):
                idx = (c_int64 * len(cols))(*[int(c) for c in cols])  # type: ignore[arg-type]
                keep.append(idx)
                params.feature_indices = idx
            else:
                raise TypeError("features must be all column names or all column indices")
            params.num_features = len(cols)
        if label_kind not in _CSV_LABELS:
            raise ValueError(f"label_kind must be one of {sorted(_CSV_LABELS)}, got {label_kind!r}")
        params.label_kind = _CSV_LABELS[label_kind]
        out = _capi.parml_dataset()
        check(_capi.parml_dataset_load_csv(os.fsencode(path), byref(params), byref(out)))
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

    @property
    def class_names(self) -> list[str] | None:
        """The names of classes 0, 1, ... when the labels were loaded as text
        (``load_csv(..., label_kind="text")``, and the parts ``split`` makes
        of such a dataset), else None."""
        n = c_int64()
        with self._use() as d:
            check(_capi.parml_dataset_num_class_names(d, byref(n)))
            if n.value == 0:
                return None
            return [
                take_text(lambda out, i=i: _capi.parml_dataset_class_name(d, i, out))  # type: ignore[misc]
                for i in range(n.value)
            ]

    def split(self, validation_fraction: float, seed: int = 0, stratify: bool = True) -> tuple["Dataset", "Dataset"]:
        """(train, validation): two new datasets holding copies of the rows,
        each in this dataset's order; validation takes round(n *
        validation_fraction) (halves up) of each class's n rows (``stratify``, the
        default: a rare class keeps its share in both) or of all rows,
        picked by a shuffle seeded by ``seed`` (parml_dataset_split)."""
        train, validation = _capi.parml_dataset(), _capi.parml_dataset()
        with self._use() as d:
            check(
                _capi.parml_dataset_split(
                    d, float(validation_fraction), int(seed), 1 if stratify else 0, byref(train), byref(validation)
                )
            )
        return Dataset._adopt(train), Dataset._adopt(validation)

    def with_sample_weight(self, sample_weight: object) -> "Dataset":
        """A new Dataset of the same samples (shared, not copied) carrying one
        loss weight per sample, as Keras's ``sample_weight=``: fit and
        evaluate then take each batch's weighted mean Σ wᵢ·lossᵢ / Σ wᵢ,
        wᵢ = the sample's weight times its class weight (docs/data.md,
        "Sample weights"). The weights follow their samples through
        shuffling, class-balanced sampling and ``split``. Raises
        InvalidArgumentError for a count other than len(self), a negative or
        non-finite weight, all weights 0, or a token dataset
        (parml_dataset_with_sample_weights)."""
        w = _sample_weight_array(sample_weight)
        out = _capi.parml_dataset()
        with self._use() as d:
            check(_capi.parml_dataset_with_sample_weights(d, w.ctypes.data_as(POINTER(c_float)), w.size, byref(out)))
        weighted = Dataset._adopt(out)
        weighted._borrowed = self._borrowed  # the same host arrays, read by the new handle too
        return weighted

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


_CSV_LABELS = {"class": _capi.PARML_CSV_LABEL_CLASS, "value": _capi.PARML_CSV_LABEL_VALUE, "text": _capi.PARML_CSV_LABEL_TEXT}


def _own_or_borrow(given: object, arr: np.ndarray, name: str, copy: bool | None) -> np.ndarray:
    """`arr` (given, or converted from it) as the dataset may keep it: a
    private copy when copy=True and it is the caller's memory; ValueError
    when copy=False and it had to be converted."""
    shared = isinstance(given, np.ndarray) and np.may_share_memory(arr, given)
    if copy is True and shared:
        arr = arr.copy()
    elif copy is False and not shared:
        raise ValueError(
            f"{name}: dtype {np.asarray(given).dtype} or its layout needs a conversion to be borrowed "
            "(float32 inputs; float32, int32 or int64 targets; C-contiguous): pass copy=None or True"
        )
    if arr is not given:
        arr.flags.writeable = False  # parml's own copy: nobody changes it
    return arr


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
    instead (nanoGPT's train.bin), memory-mapped and read in place at its
    own width: no copy.
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
        uint16 as nanoGPT's prepare.py writes, or uint8, uint32, int32),
        memory-mapped and read in place; the file must not change while the
        dataset lives. Raises ParmlIOError when it cannot be read and FormatError when its
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


def load_npy(inputs: str | os.PathLike[str], targets: str | os.PathLike[str]) -> Dataset:
    """Loads a dataset from two .npy files (numpy.save), memory-mapped:
    float32 inputs and float32 or int32 targets are read in place. Inputs of
    other dtypes are converted to float32 once (uint8 divided by 255, as
    load_idx does; other integers exact; float16/float64 rounded); integer
    and bool targets become class indices. Raises ParmlIOError when a file
    cannot be read, FormatError when it is truncated or corrupt, and
    UnsupportedError for Fortran order, object arrays, big-endian or
    complex dtypes."""
    return Dataset.load_npy(inputs, targets)


def load_npz(path: str | os.PathLike[str], inputs: str = "x", targets: str = "y") -> Dataset:
    """Loads a dataset from two arrays of an .npz archive (numpy.savez or
    savez_compressed), by key: ``np.savez(path, x=..., y=...)`` then
    ``load_npz(path)``. Stored members are memory-mapped, compressed ones
    inflated; conversions and errors as load_npy (FormatError names the
    missing key)."""
    return Dataset.load_npz(path, inputs, targets)


load_csv = Dataset.load_csv


def open_shards(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    shuffle_buffer: int = 16384,
    prefetch_rows: int = 0,
    rank: int = 0,
    ranks: int = 1,
) -> Dataset:
    """Opens a sharded dataset that streams from disk while training runs
    (parml_dataset_open_shards; docs/data.md, "Streaming"): ``path`` is a
    manifest or a directory holding ``manifest.txt`` (tools/make_shards.py
    writes both). One prefetch thread reads this rank's shards (i % ranks ==
    rank) through a shuffle buffer of ``shuffle_buffer`` rows (1: file
    order; the order of each epoch follows from ``seed`` and the epoch) into
    a ring of ``prefetch_rows`` rows (0: 4096). Memory: those buffers and
    the targets, not the inputs. ``fit``'s ``shuffle`` does not apply: the
    stream orders itself. Every shard's header is checked first: a missing
    shard is ParmlIOError, a truncated one or a dtype the manifest does not
    name is FormatError, and nothing stays open."""
    out = _capi.parml_dataset()
    check(
        _capi.parml_dataset_open_shards(
            os.fsencode(path), seed & 0xFFFF_FFFF_FFFF_FFFF, shuffle_buffer, prefetch_rows, rank, ranks, byref(out)
        )
    )
    return Dataset._adopt(out)


def _sample_weight_array(sample_weight: object) -> np.ndarray:
    """One float32 weight per sample, C-contiguous (the library copies it)."""
    w = np.ascontiguousarray(np.asarray(sample_weight, dtype=np.float32))
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D, one weight per sample; got shape {w.shape}")
    return w


def weighted_dataset(x: object, y: object | None, sample_weight: object | None, what: str) -> tuple[Dataset, list[Dataset]]:
    """as_dataset, then with_sample_weight when weights are given: the
    dataset to use and the ones the caller closes after the call."""
    data, owned = as_dataset(x, y, what)
    close = [data] if owned else []
    if sample_weight is None:
        return data, close
    try:
        weighted = data.with_sample_weight(sample_weight)
    except BaseException:
        for d in close:
            d.close()
        raise
    return weighted, close + [weighted]


def as_dataset(x: object, y: object | None, what: str) -> tuple[Dataset, bool]:
    """(dataset, owned): a Dataset given as is, or one built from arrays
    (owned: the caller closes it). Arrays already in the engine's types are
    borrowed for the call (copy=None), not copied."""
    if isinstance(x, Dataset):
        if y is not None:
            raise TypeError(f"{what}: y must be None when x is a Dataset")
        return x, False
    if y is None:
        raise TypeError(f"{what}: y is required when x is an array")
    return Dataset(x, y, copy=None), True


__all__ = ["Dataset", "TokenDataset", "load_idx", "load_npy", "load_npz", "load_csv", "open_shards"]
