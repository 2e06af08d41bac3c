"""parml.Tensor: a tensor owned by libparml (float32, or int32/int64 class
indices and token ids).

Most code never needs one: Trainer.step, Model.predict and Dataset take
numpy arrays. A Tensor helps when the same batch is fed many times
(benchmarks, a fixed validation batch): the copy into library memory is made
once, at construction.
"""

from __future__ import annotations

from ctypes import byref

import numpy as np

from . import _arrays, _buffers, _capi
from ._handle import Handle
from .errors import check


class Tensor(Handle):
    """A copy of a numpy array in library-owned memory (row-major; float32,
    or int32/int64 as an integer array is).

    ``Tensor(array)`` copies `array` (by the rule in :mod:`parml._arrays`:
    int32 and int64 arrays keep their type) into a new tensor;
    ``Tensor.zeros(shape)`` makes one of float32 zeros.
    """

    _free_function = _capi.parml_tensor_free

    def __init__(self, data: object) -> None:
        arr = _arrays.as_model_array(data, "data")
        super().__init__(_arrays.tensor_from_array(arr))

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> "Tensor":
        shape = tuple(int(d) for d in shape)
        out = _capi.parml_tensor()
        check(_capi.parml_tensor_create(_arrays.dims_of(shape), len(shape), None, byref(out)))
        self = cls.__new__(cls)
        Handle.__init__(self, out)
        return self

    def to_bytes(self) -> bytes:
        """The tensor as a parml.Tensor protobuf message."""
        with self._use() as t:
            return _buffers.take_bytes(lambda buf, n: _capi.parml_tensor_serialize(t, buf, n))

    @classmethod
    def from_bytes(cls, data: object) -> "Tensor":
        """A new tensor from a parml.Tensor message."""
        raw = _buffers.as_bytes(data, "data")
        out = _capi.parml_tensor()
        check(_capi.parml_tensor_deserialize(raw, len(raw), byref(out)))
        self = cls.__new__(cls)
        Handle.__init__(self, out)
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        with self._use() as t:
            return _arrays.tensor_shape(t)

    @property
    def dtype(self) -> np.dtype:
        """float32, int32 or int64."""
        with self._use() as t:
            return _arrays.tensor_dtype(t)

    @property
    def size(self) -> int:
        """Number of elements."""
        n = _capi.c_int64()
        with self._use() as t:
            check(_capi.parml_tensor_numel(t, byref(n)))
        return n.value

    def numpy(self) -> np.ndarray:
        """A copy of the contents as a new numpy array."""
        with self._use() as t:
            return _arrays.array_from_tensor(t)

    def write(self, data: object) -> None:
        """Overwrites the contents from an array of the same number of elements."""
        arr = _arrays.as_float32(data, "data")
        with self._use() as t:
            check(_capi.parml_tensor_write(t, _arrays.float_pointer(arr), arr.size))

    def __repr__(self) -> str:
        if self.closed:
            return "<parml.Tensor closed>"
        return f"<parml.Tensor shape={self.shape} dtype={self.dtype}>"
