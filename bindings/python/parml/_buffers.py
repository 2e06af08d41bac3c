"""Buffers the library hands out (``void **buf_out, size_t *len_out``) and
paths handed in: the two shapes of the file functions' arguments."""

from __future__ import annotations

import ctypes
import os
from ctypes import byref, c_size_t, c_void_p
from typing import Any, Callable

from . import _capi
from .errors import check


def take_bytes(call: Callable[[Any, Any], int]) -> bytes:
    """Runs ``call(buf_out, len_out)``, copies the buffer into bytes and frees it."""
    buf = c_void_p()
    n = c_size_t()
    check(call(byref(buf), byref(n)))
    try:
        return ctypes.string_at(buf, n.value)
    finally:
        _capi.parml_buffer_free(buf)


def as_bytes(data: object, name: str) -> bytes:
    """bytes, bytearray or memoryview as bytes (the C side only reads them)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{name} must be bytes, bytearray or memoryview, got {type(data).__name__}")


def as_path(path: object) -> bytes:
    """A str or os.PathLike path as the bytes C expects."""
    return os.fsencode(os.fspath(path))  # type: ignore[arg-type]


def as_key(key: object) -> bytes:
    """A key for the authenticated file calls: bytes-like only (a str would
    leave its encoding to chance). The library checks its length (>= 16)."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"key must be bytes, bytearray or memoryview, got {type(key).__name__}")
