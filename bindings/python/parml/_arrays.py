"""numpy in and out of the C API.

The rule for arrays handed to parml (inputs, targets, parameters):

- A float32, C-contiguous, aligned, native-byte-order ndarray is used as it
  is: its data pointer goes to C, and no copy is made on the Python side.
  (The C functions that take data, parml_tensor_create and friends, copy it
  into library-owned memory once; the array may change afterwards. A
  Dataset instead borrows its arrays: see parml.Dataset's ``copy``.)
- Where integers mean something (targets: class indices; inputs: token ids;
  ``as_model_array``), int32 and int64 arrays go in as they are, as typed
  tensors (parml_tensor_create_typed): class indices are exact at any size,
  and the library narrows int64 where it trains on it. Other integer dtypes
  become int64.
- Any other real dtype (bool, float16, float64, longdouble; integers where
  floats are needed, ``as_float32``) is converted to a new float32 array.
  float64 values round to the nearest float32; integer values must be
  exactly representable (at most 2^24 in magnitude).
- A non-contiguous array (a slice with a step, a transpose, Fortran order) is
  copied to C order.
- Complex, object, string, datetime and structured dtypes raise TypeError;
  0-d arrays raise ValueError.
- Lists, tuples and other array-likes go through numpy.asarray first.

Arrays parml hands back are new, Python-owned numpy arrays.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_float, c_int64

import numpy as np

from . import _capi
from .errors import check

_MAX_EXACT_INT = 1 << 24
_FLOAT_P = POINTER(c_float)


def as_float32(value: object, name: str) -> np.ndarray:
    """`value` as a float32 C-contiguous ndarray, by the rule above."""
    if (
        type(value) is np.ndarray
        and value.dtype == np.float32
        and value.flags.c_contiguous
        and value.flags.aligned
    ):
        if value.ndim == 0:
            raise ValueError(f"{name}: a 0-d array has no sample axis; pass at least 1 dimension")
        return value
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise TypeError(
            f"{name}: dtype {arr.dtype} cannot be trained on; parml takes float32 "
            "(bool, integer and other floating dtypes are converted to float32)"
        )
    if arr.ndim == 0:
        raise ValueError(f"{name}: a 0-d array has no sample axis; pass at least 1 dimension")
    if kind in "iu" and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -_MAX_EXACT_INT or hi > _MAX_EXACT_INT:
            raise ValueError(
                f"{name}: integer values in [{lo}, {hi}] are not all exact in float32 "
                "(|value| <= 2^24 required)"
            )
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_model_array(value: object, name: str) -> np.ndarray:
    """`value` for a model's inputs or a loss's targets: int32/int64 arrays
    as they are (other integer dtypes as int64), anything else by
    `as_float32`."""
    if type(value) is np.ndarray and value.dtype in (np.int32, np.int64) and value.flags.c_contiguous and value.flags.aligned:
        if value.ndim == 0:
            raise ValueError(f"{name}: a 0-d array has no sample axis; pass at least 1 dimension")
        return value if value.dtype.isnative else value.astype(value.dtype.newbyteorder("="))
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        if arr.ndim == 0:
            raise ValueError(f"{name}: a 0-d array has no sample axis; pass at least 1 dimension")
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name}: uint64 values above 2^63-1 are no class index or token id")
        keep = arr.dtype if arr.dtype in (np.int32, np.int64) else np.int64
        return np.ascontiguousarray(arr, dtype=np.dtype(keep).newbyteorder("="))
    return as_float32(value, name)


_DTYPES = {np.dtype(np.float32): _capi.PARML_DTYPE_FLOAT32, np.dtype(np.int32): _capi.PARML_DTYPE_INT32,
           np.dtype(np.int64): _capi.PARML_DTYPE_INT64}
_NUMPY = {code: dt for dt, code in _DTYPES.items()}


def dtype_code(dt: object) -> int:
    """The PARML_DTYPE_* code of float32, int32 or int64."""
    return _DTYPES[np.dtype(dt)]  # type: ignore[arg-type]


def float_pointer(arr: np.ndarray) -> "ctypes._Pointer[c_float]":
    """A float* to a float32 C-contiguous array's data (keep `arr` alive)."""
    return arr.ctypes.data_as(_FLOAT_P)


def dims_of(shape: tuple[int, ...]) -> "ctypes.Array[c_int64]":
    return (c_int64 * len(shape))(*shape)


def tensor_from_array(arr: np.ndarray) -> object:
    """A new parml_tensor holding a copy (made in C) of a float32, int32 or
    int64 C-contiguous array; the caller frees it with parml_tensor_free."""
    out = _capi.parml_tensor()
    if arr.dtype == np.float32:
        check(_capi.parml_tensor_create(dims_of(arr.shape), arr.ndim, float_pointer(arr), byref(out)))
    else:
        code = _DTYPES[np.dtype(arr.dtype)]
        check(_capi.parml_tensor_create_typed(code, dims_of(arr.shape), arr.ndim, arr.ctypes.data, byref(out)))
    return out


def tensor_shape(tensor: object) -> tuple[int, ...]:
    ndim = _capi.c_ptrdiff_t()
    check(_capi.parml_tensor_shape(tensor, None, 0, byref(ndim)))
    dims = (c_int64 * max(ndim.value, 1))()
    check(_capi.parml_tensor_shape(tensor, dims, ndim.value, byref(ndim)))
    return tuple(dims[: ndim.value])


def tensor_dtype(tensor: object) -> np.dtype:
    code = ctypes.c_int32()
    check(_capi.parml_tensor_dtype(tensor, byref(code)))
    return _NUMPY[code.value]


def array_from_tensor(tensor: object) -> np.ndarray:
    """A new numpy array (of the tensor's dtype) with a copy of its contents."""
    dt = tensor_dtype(tensor)
    out = np.empty(tensor_shape(tensor), dtype=dt)
    if dt == np.float32:
        check(_capi.parml_tensor_read(tensor, float_pointer(out), out.size))
        return out
    data, nbytes = ctypes.c_void_p(), c_int64()
    check(_capi.parml_tensor_bytes(tensor, byref(data), byref(nbytes)))
    if nbytes.value:
        ctypes.memmove(out.ctypes.data, data.value, nbytes.value)
    return out
