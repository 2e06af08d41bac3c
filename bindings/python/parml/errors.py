"""Exceptions: one ParmlError subclass per parml_status code.

Every non-OK status a C function returns becomes the subclass for its code,
carrying parml_last_error()'s message (read on the same thread, right after
the call). Each subclass also derives from the closest built-in exception, so
``except ValueError`` catches a shape error and ``except MemoryError`` an
allocation failure.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, byref, c_char
from typing import Any, Callable

from . import _capi
from ._lib import LibraryNotFoundError, LibraryVersionError


class ParmlError(Exception):
    """A libparml call failed.

    Attributes:
        code: the parml_status code (None for errors the binding raises itself)
        status: the code's name, e.g. "PARML_ERR_SHAPE"
        message: parml_last_error()'s text
    """

    code: int | None = None

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    @property
    def status(self) -> str | None:
        if self.code is None:
            return None
        return _capi.parml_status_string(self.code).decode().split(":")[0]

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(ParmlError, ValueError):
    """PARML_ERR_INVALID_ARGUMENT: a NULL pointer, bad value or unknown enum."""

    code = _capi.PARML_ERR_INVALID_ARGUMENT


class ShapeError(ParmlError, ValueError):
    """PARML_ERR_SHAPE: tensor shapes do not fit together."""

    code = _capi.PARML_ERR_SHAPE


class UnsupportedError(ParmlError, NotImplementedError):
    """PARML_ERR_UNSUPPORTED: a valid request this build cannot do yet."""

    code = _capi.PARML_ERR_UNSUPPORTED


class OutOfMemoryError(ParmlError, MemoryError):
    """PARML_ERR_OUT_OF_MEMORY: an allocation failed."""

    code = _capi.PARML_ERR_OUT_OF_MEMORY


class ParmlIOError(ParmlError, OSError):
    """PARML_ERR_IO: a file could not be opened, read or written."""

    code = _capi.PARML_ERR_IO


class FormatError(ParmlError, ValueError):
    """PARML_ERR_FORMAT: a file or buffer is corrupt or of the wrong kind."""

    code = _capi.PARML_ERR_FORMAT


class StateError(ParmlError, RuntimeError):
    """PARML_ERR_STATE: the call is not valid now (e.g. model not initialised)."""

    code = _capi.PARML_ERR_STATE


class BLASError(ParmlError, RuntimeError):
    """PARML_ERR_BLAS: OpenBLAS could not be loaded."""

    code = _capi.PARML_ERR_BLAS


class CancelledError(ParmlError):
    """PARML_ERR_CANCELLED: a callback asked to stop."""

    code = _capi.PARML_ERR_CANCELLED


class InternalError(ParmlError, RuntimeError):
    """PARML_ERR_INTERNAL: a bug in parml; please report it."""

    code = _capi.PARML_ERR_INTERNAL


class CommunicationError(ParmlError, RuntimeError):
    """PARML_ERR_COMMUNICATION: a rank failed or timed out."""

    code = _capi.PARML_ERR_COMMUNICATION


class NonFiniteError(ParmlError, ArithmeticError):
    """PARML_ERR_NONFINITE: the step's loss or gradients held a NaN or an
    infinity; it updated nothing (Trainer.skipped_steps counts these)."""

    code = _capi.PARML_ERR_NONFINITE


class AuthenticationError(ParmlError, ValueError):
    """An authenticated file was refused (the three subclasses say why)."""


class MissingTagError(AuthenticationError):
    """PARML_ERR_AUTH_MISSING: a key was given but the file carries no
    authentication tag (saved without a key, or its tag was removed)."""

    code = _capi.PARML_ERR_AUTH_MISSING


class WrongKeyError(AuthenticationError):
    """PARML_ERR_AUTH_KEY: the file is authenticated with another key, or it
    is authenticated and no key was given."""

    code = _capi.PARML_ERR_AUTH_KEY


class TamperedError(AuthenticationError):
    """PARML_ERR_AUTH_FAILED: the tag does not verify under the right key:
    the file's bytes were altered after it was saved."""

    code = _capi.PARML_ERR_AUTH_FAILED


class ClosedError(InvalidArgumentError):
    """An object was used after close(). (C reports a freed handle as an
    invalid argument; the binding catches it before the call.)"""


#: parml_status code -> exception class
ERRORS: dict[int, type[ParmlError]] = {
    cls.code: cls  # type: ignore[misc]
    for cls in (
        InvalidArgumentError,
        ShapeError,
        UnsupportedError,
        OutOfMemoryError,
        ParmlIOError,
        FormatError,
        StateError,
        BLASError,
        CancelledError,
        InternalError,
        CommunicationError,
        NonFiniteError,
        MissingTagError,
        WrongKeyError,
        TamperedError,
    )
}


def error_for(status: int, message: str) -> ParmlError:
    """The exception for a non-OK status (ParmlError itself for a code this
    package does not know, i.e. from a newer library)."""
    cls = ERRORS.get(status)
    if cls is None:
        return ParmlError(f"{message} (status {status})", status)
    return cls(message, status)


def check(status: int) -> None:
    """Raises the exception for `status` unless it is PARML_OK.

    Call it on the thread that made the call, before any other parml call:
    parml_last_error() is per thread and overwritten by the next failure.
    """
    if status != _capi.PARML_OK:
        text = _capi.parml_last_error()
        message = text.decode("utf-8", "replace") if text else ""
        if not message:
            message = _capi.parml_status_string(status).decode()
        raise error_for(status, message)


def take_text(call: Callable[[Any], int]) -> str:
    """Runs `call(byref(char_pointer))` for a C function that hands out a
    NUL-terminated text buffer, checks its status, and frees the buffer."""
    text = POINTER(c_char)()
    check(call(byref(text)))
    try:
        return ctypes.string_at(text).decode("utf-8", "replace")
    finally:
        _capi.parml_buffer_free(text)


__all__ = [
    "ParmlError",
    "InvalidArgumentError",
    "ShapeError",
    "UnsupportedError",
    "OutOfMemoryError",
    "ParmlIOError",
    "FormatError",
    "StateError",
    "BLASError",
    "CancelledError",
    "InternalError",
    "CommunicationError",
    "NonFiniteError",
    "AuthenticationError",
    "MissingTagError",
    "WrongKeyError",
    "TamperedError",
    "ClosedError",
    "LibraryNotFoundError",
    "LibraryVersionError",
    "ERRORS",
    "check",
    "error_for",
]
