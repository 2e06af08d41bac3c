"""The lifetime and locking shared by every wrapper of a C handle.

- ``close()`` frees the handle once; closing again is a no-op.
- ``closed`` says whether it was closed; any other use afterwards raises
  :class:`parml.ClosedError` (never reaches C with a dangling pointer).
- ``with obj:`` closes on exit; ``__del__`` closes as a fallback, except at
  interpreter shutdown, where the OS reclaims the memory (module globals and
  worker threads may already be gone then).
- ``detach()`` hands the raw pointer to the caller, who must free it.
- Every call into C holds the handle's lock. ctypes releases the GIL during a
  call, so two Python threads could otherwise use one handle at once, which
  the C API forbids. A model and the trainers built on it share one lock:
  the C API says such a pair is used from one thread at a time.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

from .errors import ClosedError, StateError


class Guard:
    """The lock of one handle, or of a model and its trainers together."""

    __slots__ = ("lock", "callback_thread")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        # The thread running a fit callback (which must not close the
        # trainer or its model; the C library decides what else it may do), or None.
        self.callback_thread: int | None = None


class _Use:
    """``with handle._use() as ptr``: lock, check open, yield the pointer."""

    __slots__ = ("handle",)

    def __init__(self, handle: "Handle") -> None:
        self.handle = handle

    def __enter__(self) -> Any:
        h = self.handle
        guard = h._guard
        # Inside a fit callback this thread already holds the (reentrant)
        # lock; the C library lets the callback read and save, and answers
        # PARML_ERR_STATE for calls that would change the running fit.
        guard.lock.acquire()
        ptr = h._ptr
        if ptr is None:
            guard.lock.release()
            raise ClosedError(f"{type(h).__name__} is closed")
        return ptr

    def __exit__(self, *exc: object) -> None:
        self.handle._guard.lock.release()


class Handle:
    """Base class of the wrappers: owns one C handle of one kind."""

    # The C function that frees this kind of handle (set by subclasses).
    _free_function: Callable[[Any], None]

    _ptr: Any = None
    _guard: Guard

    def __init__(self, ptr: Any, guard: Guard | None = None) -> None:
        self._guard = guard if guard is not None else Guard()
        self._ptr = ptr

    @property
    def closed(self) -> bool:
        """True once close() (or detach()) ran."""
        return self._ptr is None

    def _use(self) -> _Use:
        return _Use(self)

    @property
    def _as_parameter_(self) -> Any:
        """Lets a wrapper be passed straight to a parml._capi function
        (unlocked: the caller keeps to one thread per handle)."""
        if self._ptr is None:
            raise ClosedError(f"{type(self).__name__} is closed")
        return self._ptr

    def close(self) -> None:
        """Frees the C handle. Safe to call more than once."""
        guard = self._guard
        if guard.callback_thread == threading.get_ident():
            raise StateError(f"cannot close {type(self).__name__} inside a fit progress callback")
        with guard.lock:
            ptr, self._ptr = self._ptr, None
            if ptr is not None:
                self._release(ptr)

    def _release(self, ptr: Any) -> None:
        type(self)._free_function(ptr)

    def detach(self) -> Any:
        """Gives up ownership: returns the raw handle, which the caller must
        free with the matching parml_*_free, and leaves this object closed."""
        with self._use() as ptr:
            self._ptr = None
            return ptr

    def __enter__(self) -> "Handle":
        if self._ptr is None:
            raise ClosedError(f"{type(self).__name__} is closed")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self, _finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
        if _finalizing() or getattr(self, "_ptr", None) is None:
            return
        try:
            self.close()
        except Exception:
            pass

