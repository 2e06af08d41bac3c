"""parml.Dataset: samples and targets held by libparml."""

from __future__ import annotations

import os
from ctypes import byref, c_int64

from . import _arrays, _capi
from ._handle import Handle
from .errors import check


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

    def __repr__(self) -> str:
        if self.closed:
            return "<parml.Dataset closed>"
        return f"<parml.Dataset {self.input_shape} classes={self.num_classes}>"


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


__all__ = ["Dataset", "load_idx"]
